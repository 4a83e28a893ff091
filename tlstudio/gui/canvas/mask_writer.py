"""Storing label maps and objects without holding the GUI thread.

A committed brush stroke on a 4000×3000 image needs a PNG encode (about a second)
and a class count; :class:`MaskWriter` does both in a worker thread and writes the
bytes to the store on the GUI thread when they are ready (the store's connection
belongs to that thread; the write itself takes milliseconds). Meanwhile the stroke
is on screen and on the undo stack (:class:`MaskEdit`). An object edit (the Objects
tool) changes the label map and the object map together: its :class:`MaskState`
carries an :class:`ObjectsState`, both maps are encoded in the worker and written in
one transaction (``InstanceStore.restore``), so label map and objects never disagree
in the store and one writer orders every pixel edit of an image.

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
from dataclasses import dataclass, replace
from functools import partial
from itertools import count

import numpy as np
from PySide6.QtCore import QObject, Signal

from tlstudio.core.annotations import Instance, encode_mask
from tlstudio.core.commands import Command
from tlstudio.core.errors import TlsError
from tlstudio.core.instances import PixelState, instance_row
from tlstudio.core.project import Project


@dataclass(eq=False)
class ObjectsState:
    """An image's objects as stored (or about to be): ``numbers`` the H×W uint16 object
    map (None: no object), ``objects`` one :class:`Instance` per number (id None for a
    new object until it is stored; the writer fills it in), ``ignore`` the stored PNG of
    the ignore region (the canvas does not change it) and, once encoded, ``png`` of the
    map. Pixels whose label-map class is not their object's do not count as the
    object's (see :mod:`tlstudio.core.instances`). Never modify ``numbers``."""

    numbers: np.ndarray | None
    objects: tuple[Instance, ...] = ()
    ignore: bytes | None = None
    png: bytes | None = None
    encoded: bool = False


@dataclass(eq=False)
class MaskState:
    """A label map (H×W, pixel = class id; None: no mask) and, once encoded, the PNG
    bytes and class ids that the store keeps for it; ``objects``: the image's objects to
    store with it (None: leave the stored objects as they are, as a class-brush stroke
    does). Never modify ``label``."""

    label: np.ndarray | None
    png: bytes | None = None
    present: list[int] | None = None
    objects: ObjectsState | None = None

    @property
    def encoded(self) -> bool:
        return self.present is not None and (self.objects is None or self.objects.encoded)


def encode_label(label: np.ndarray) -> tuple[bytes | None, list[int]]:
    """PNG bytes and class ids of ``label`` (None, []: an empty map). Runs in the worker."""
    if not label.any():
        return None, []
    return encode_mask(label)


def _encode(state: MaskState) -> tuple[bytes | None, list[int], bytes | None]:
    """(label PNG, class ids, object-map PNG) of ``state``, as needed. Runs in the worker."""
    png, present = (state.png, state.present) if state.present is not None else (None, [])
    if state.present is None and state.label is not None:
        png, present = encode_label(state.label)
    numbers = None
    objects = state.objects
    if objects is not None and not objects.encoded and objects.numbers is not None:
        numbers = encode_mask(objects.numbers)[0]
    elif objects is not None:
        numbers = objects.png
    return png, present, numbers


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
        if state.encoded or (state.label is None and state.objects is None):
            self._write(image_id, number, state)
        elif self.blocking:
            _fill(state, _encode(state))
            self._write(image_id, number, state)
        else:
            future = self._executor.submit(_encode, state)
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
            _fill(state, future.result())
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
        try:
            if self.project.store.in_transaction:
                self._store(image_id, state)
            else:
                with self.own_edit():
                    self._store(image_id, state)
        except (TlsError, sqlite3.Error) as exc:
            self.failed.emit(f"Cannot store the mask: {exc}")
            return
        self.written.emit(image_id)

    def _store(self, image_id: int, state: MaskState) -> None:
        assert self.project is not None  # checked by _write
        png, present = (None, []) if state.label is None else (state.png, state.present or [])
        objects = state.objects
        if objects is None:
            self.project.write_encoded_mask(image_id, png, present)
            return
        rows = tuple(instance_row(o) for o in objects.objects)
        mask = None if png is None else (png, present)
        pixels = PixelState(mask, objects.png if rows else None, rows, objects.ignore)
        self.project.instances.restore(image_id, pixels)
        if any(o.id is None for o in objects.objects):  # new objects: keep the ids they got
            ids = dict(
                self.project.store.conn.execute(
                    "SELECT number, id FROM instances WHERE image_id = ?", (image_id,)
                )
            )
            objects.objects = tuple(replace(o, id=ids.get(o.number)) for o in objects.objects)


def _fill(state: MaskState, encoded: tuple[bytes | None, list[int], bytes | None]) -> None:
    state.png, state.present, numbers = encoded
    if state.objects is not None:
        state.objects.png, state.objects.encoded = numbers, True


class MaskEdit(Command):
    """Replace the label map (and, with :class:`ObjectsState` s, the objects) of one image
    (one undo step); the store gets it through the :class:`MaskWriter`, so doing and
    undoing never encode on the GUI thread."""

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
