"""Storing label maps without holding the GUI thread.

A committed brush stroke on a 4000×3000 image needs a PNG encode (about a second)
and a class count; :class:`MaskWriter` does both in a worker thread and writes the
bytes to the store on the GUI thread when they are ready (the store's connection
belongs to that thread; the write itself takes milliseconds). Meanwhile the stroke
is on screen and on the undo stack (:class:`MaskEdit`).

Order: per image the latest request wins. A request that finishes encoding after a
newer one was made for the same image is not written, so undo and redo while a
write is pending end with the store holding the state the user last asked for.
Nothing is lost: the writer is a write barrier of the project's store, so every
other edit and closing the project (the window's close) first wait for pending
writes and store them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from itertools import count

import numpy as np
from PySide6.QtCore import QObject, Signal

from tlstudio.core.annotations import encode_mask
from tlstudio.core.commands import Command
from tlstudio.core.errors import TlsError
from tlstudio.core.project import Project


@dataclass(eq=False)
class MaskState:
    """A label map (H×W, pixel = class id; None: no mask) and, once encoded, the PNG
    bytes and class ids that the store keeps for it. Never modify ``label``."""

    label: np.ndarray | None
    png: bytes | None = None
    present: list[int] | None = None

    @property
    def encoded(self) -> bool:
        return self.present is not None


def encode_label(label: np.ndarray) -> tuple[bytes | None, list[int]]:
    """PNG bytes and class ids of ``label`` (None, []: an empty map). Runs in the worker."""
    if not label.any():
        return None, []
    return encode_mask(label)


class _Sink(QObject):
    """Lives on the GUI thread; the worker's completion callbacks emit through it."""

    encoded = Signal(int)  # request number


class MaskWriter(QObject):
    """Writes :class:`MaskState` s of images of :attr:`project` (see the module doc).

    ``written(image_id)`` after a stored mask changed; ``failed(text)`` when one could
    not be stored (the canvas then shows the store again)."""

    written = Signal(int)
    failed = Signal(str)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.project: Project | None = None
        self.blocking = False  # True: encode on the calling thread (the old way; benchmarks)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mask-encode")
        self._sink = _Sink(self)
        self._sink.encoded.connect(self._finish)
        self._numbers = count(1)
        self._latest: dict[int, tuple[int, MaskState]] = {}  # image id -> newest request
        self._jobs: dict[int, tuple[int, MaskState, Future]] = {}  # request -> encoding
        self._skip_barrier = False

    # -- project ---------------------------------------------------------------------
    def attach(self, project: Project | None) -> None:
        """Write into ``project`` (None: none); becomes a write barrier of its store."""
        if self.project is not None:
            self.flush()
            if self._barrier in self.project.store.write_barriers:
                self.project.store.write_barriers.remove(self._barrier)
        self.project = project
        if project is not None:
            project.store.write_barriers.append(self._barrier)

    # -- requests ----------------------------------------------------------------------
    def store(self, image_id: int, state: MaskState) -> None:
        """Make ``state`` the image's stored mask: now if it is encoded (or empty),
        else as soon as the worker has encoded it."""
        number = next(self._numbers)
        self._latest[image_id] = (number, state)
        if state.label is None or state.encoded:
            self._write(image_id, number, state)
        elif self.blocking:
            state.png, state.present = encode_label(state.label)
            self._write(image_id, number, state)
        else:
            future = self._executor.submit(encode_label, state.label)
            self._jobs[number] = (image_id, state, future)
            future.add_done_callback(partial(self._notify, number))

    def pending(self, image_id: int) -> MaskState | None:
        """The state asked for the image that is not stored yet, else None."""
        entry = self._latest.get(image_id)
        return None if entry is None else entry[1]

    @property
    def busy(self) -> bool:
        return bool(self._latest)

    def flush(self) -> None:
        """Wait for every encode still running and store what is pending (GUI thread)."""
        for number in sorted(self._jobs):
            self._finish(number)

    @contextmanager
    def own_edit(self) -> Iterator[None]:
        """The next outermost transaction is the canvas's own mask edit: it needs no
        flush first (its write is ordered by this writer)."""
        self._skip_barrier = True
        try:
            yield
        finally:
            self._skip_barrier = False

    def shutdown(self) -> None:
        """Store what is pending and stop the worker."""
        self.flush()
        self._executor.shutdown(wait=True)

    # -- internals -----------------------------------------------------------------------
    def _barrier(self) -> None:
        if self._skip_barrier:
            self._skip_barrier = False  # one transaction only: the next one is not ours
            return
        self.flush()

    def _notify(self, number: int, _future: Future) -> None:  # in the worker thread
        try:
            self._sink.encoded.emit(number)
        except RuntimeError:  # the canvas is gone; flush() at close did the writing
            pass

    def _finish(self, number: int) -> None:
        job = self._jobs.pop(number, None)
        if job is None:
            return  # flush() handled it already
        image_id, state, future = job
        try:
            state.png, state.present = future.result()
        except Exception as exc:  # noqa: BLE001 - reported, never lost in the thread
            self._latest.pop(image_id, None)
            self.failed.emit(f"Cannot store the mask: {exc}")
            return
        self._write(image_id, number, state)

    def _write(self, image_id: int, number: int, state: MaskState) -> None:
        if self._latest.get(image_id, (None,))[0] != number:
            return  # a newer request for this image was made meanwhile: it is stored instead
        del self._latest[image_id]
        if self.project is None:
            return
        png, present = (None, []) if state.label is None else (state.png, state.present or [])
        try:
            if self.project.store.in_transaction:
                self.project.write_encoded_mask(image_id, png, present)
            else:
                with self.own_edit():
                    self.project.write_encoded_mask(image_id, png, present)
        except (TlsError, sqlite3.Error) as exc:
            self.failed.emit(f"Cannot store the mask: {exc}")
            return
        self.written.emit(image_id)


class MaskEdit(Command):
    """Replace the label map of one image (one undo step); the store gets it through
    the :class:`MaskWriter`, so doing and undoing never encode on the GUI thread."""

    def __init__(
        self, writer: MaskWriter, image_id: int, old: MaskState, new: MaskState, text: str
    ):
        self.writer, self.image_id = writer, image_id
        self.old, self.new = old, new
        self.text = text

    def do(self, project: Project) -> None:
        self.writer.store(self.image_id, self.new)

    def undo(self, project: Project) -> None:
        self.writer.store(self.image_id, self.old)
