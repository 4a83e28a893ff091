"""Turning full-depth image arrays into display pixels, on the GUI thread or in a worker.

The display buffer is an ``H×W×4`` uint8 array in the byte order of
``QImage.Format_RGB32`` / ``Format_ARGB32_Premultiplied`` (the raster paint
engine's native formats, so drawing never converts per paint). A QPixmap made
from it shares its memory: whoever holds the pixmap must keep the array alive.
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, QRunnable, Signal
from PySide6.QtGui import QImage, QPixmap

from tlstudio.core.imageio import ImageData, read_image
from tlstudio.core.reduced import read_reduced
from tlstudio.core.window_presets import DisplayFacts, display_facts
from tlstudio.core.windowing import to_display
from tlstudio.gui.workers.jobs import job_pool

_LITTLE = sys.byteorder == "little"
# 0xAARRGGBB as a native uint32 is B, G, R, A in memory on little-endian machines
OPAQUE_FORMAT = QImage.Format.Format_RGB32 if _LITTLE else QImage.Format.Format_RGBX8888
ALPHA_FORMAT = (
    QImage.Format.Format_ARGB32_Premultiplied
    if _LITTLE
    else QImage.Format.Format_RGBA8888_Premultiplied
)


PREVIEW_FACTOR = 4  # a preview has about 1/4 of the width and height


def render_display(array: np.ndarray, window: tuple[float, float]) -> tuple[np.ndarray, bool]:
    """Display buffer (H×W×4 uint8, see the module docstring) and whether it has alpha.

    ``window = (center, width)`` in array units, applied with
    :func:`tlstudio.core.windowing.to_display`; ``(128, 256)`` on uint8 data is the
    identity and skips the lookup."""
    import cv2  # heavy: imported when the first image is shown

    if array.dtype == np.uint8 and tuple(window) == (128.0, 256.0):
        d = array
    else:
        d = to_display(array, window)
    if d.ndim == 3 and d.shape[2] == 1:
        d = d[..., 0]
    d = np.ascontiguousarray(d)
    if d.ndim == 2:
        code = cv2.COLOR_GRAY2BGRA if _LITTLE else cv2.COLOR_GRAY2RGBA
        return cv2.cvtColor(d, code), False
    if d.shape[2] == 3:
        code = cv2.COLOR_RGB2BGRA if _LITTLE else cv2.COLOR_RGB2RGBA
        return cv2.cvtColor(d, code), False
    # RGBA: premultiply so the buffer can be drawn as it is
    alpha = d[..., 3:4].astype(np.uint16)
    rgb = ((d[..., :3].astype(np.uint16) * alpha + 127) // 255).astype(np.uint8)
    out = np.concatenate([rgb[..., ::-1] if _LITTLE else rgb, d[..., 3:4]], axis=2)
    return np.ascontiguousarray(out), True


def buffer_to_pixmap(buffer: np.ndarray, has_alpha: bool) -> QPixmap:
    """A QPixmap over ``buffer``'s memory (no copy with the raster backend): keep ``buffer`` alive."""
    h, w = buffer.shape[:2]
    image = QImage(
        buffer.data, w, h, buffer.strides[0], ALPHA_FORMAT if has_alpha else OPAQUE_FORMAT
    )
    return QPixmap.fromImage(image)


class PixelCache:
    """Least-recently-used decoded images, bounded by their bytes (array + display buffer)."""

    def __init__(self, max_bytes: int = 512 * 2**20):
        self.max_bytes = max_bytes
        self._entries: OrderedDict[object, tuple[object, int]] = OrderedDict()
        self._bytes = 0

    def get(self, key: object) -> object | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        self._entries.move_to_end(key)
        return entry[0]

    def put(self, key: object, value: object, nbytes: int) -> None:
        if key in self._entries:
            self._bytes -= self._entries.pop(key)[1]
        if nbytes > self.max_bytes:
            return
        self._entries[key] = (value, nbytes)
        self._bytes += nbytes
        while self._bytes > self.max_bytes:
            _, (_, n) = self._entries.popitem(last=False)
            self._bytes -= n

    def clear(self) -> None:
        self._entries.clear()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)


@dataclass(frozen=True)
class Decoded:
    """A decoded image (full depth) with what its header says about displaying it."""

    data: ImageData
    facts: DisplayFacts


def decode(path: Path) -> Decoded:
    """Read ``path`` at full depth (:func:`read_image`) with its display facts."""
    data = read_image(path)
    return Decoded(data, display_facts(path, data.window))


class _Sink(QObject):
    """Lives in the GUI thread; workers emit through it (queued connections)."""

    done = Signal(int, object, object, object, bool)  # token, Decoded, window, buffer, alpha
    preview = Signal(int, object, bool)  # token, reduced buffer, alpha
    failed = Signal(int, str)  # token, message


class _Job(QRunnable):
    def __init__(
        self,
        sink: _Sink,
        token: int,
        path: Path | None,
        decoded: Decoded | None,
        window: tuple[float, float] | None,
        preview: bool = False,
    ):
        super().__init__()
        self.sink, self.token, self.path = sink, token, path
        self.decoded, self.window, self.preview = decoded, window, preview

    def run(self) -> None:
        try:
            if self.preview and self.path is not None:
                self._send_preview(self.path)
            if self.decoded is not None:
                decoded = self.decoded
            elif self.path is not None:
                decoded = decode(self.path)
            else:
                raise ValueError("nothing to load: neither a decoded image nor a path")
            window = self.window if self.window is not None else decoded.data.window
            buffer, alpha = render_display(decoded.data.array, window)
        except Exception as exc:  # reported to the GUI, never lost in the thread
            self._emit(self.sink.failed, self.token, str(exc))
            return
        self._emit(self.sink.done, self.token, decoded, window, buffer, alpha)

    def _send_preview(self, path: Path) -> None:
        small = read_reduced(path, PREVIEW_FACTOR)
        if small is not None:  # a quick look while the full image decodes
            buffer, alpha = render_display(small, (128.0, 256.0))
            self._emit(self.sink.preview, self.token, buffer, alpha)

    @staticmethod
    def _emit(signal, *args: object) -> None:
        try:
            signal.emit(*args)
        except RuntimeError:  # the canvas was deleted meanwhile
            pass


class BackgroundRenderer(QObject):
    """Decodes and renders images in a worker thread; results come back as signals
    on the GUI thread, tagged with the token that :meth:`load` / :meth:`render` returned."""

    done = Signal(int, object, object, object, bool)  # token, Decoded, window, buffer, alpha
    preview = Signal(int, object, bool)  # token, reduced display buffer, alpha
    failed = Signal(int, str)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        # QRunnables, not BackgroundJobs: a load sends a preview buffer midway and the
        # canvas drops superseded results by token (latency: tests/bench/bench_canvas.py)
        self._pool = job_pool(self, 2, "image loader")
        self._sink = _Sink(self)
        self._sink.done.connect(self.done)
        self._sink.preview.connect(self.preview)
        self._sink.failed.connect(self.failed)
        self._token = 0

    def load(
        self, path: Path, window: tuple[float, float] | None = None, preview: bool = True
    ) -> int:
        """Read ``path`` and render it with ``window`` (None: the image's default); with
        ``preview`` a JPEG first sends a reduced decode (see :func:`read_reduced`)."""
        self._token += 1
        self._pool.start(_Job(self._sink, self._token, path, None, window, preview))
        return self._token

    def render(self, decoded: Decoded, window: tuple[float, float]) -> int:
        """Render already decoded ``decoded`` with ``window``."""
        self._token += 1
        self._pool.start(_Job(self._sink, self._token, None, decoded, window))
        return self._token

    def wait(self, msecs: int = 10_000) -> bool:
        """Block until the running jobs finish (tests, shutdown)."""
        return self._pool.waitForDone(msecs)
