"""The image's pixels on the canvas: decoding, the decoded-image cache and rendering
through a display window.

The pixmap item sits at scene (0, 0) with one item pixel per image pixel, so scene
coordinates are image pixels. Images up to :attr:`ImageLayer.sync_max_pixels` are
decoded on the GUI thread; larger ones (and their re-renders during a window/level
drag) in a worker thread. A big JPEG is first shown from a reduced decode (the
preview), scaled up to cover the same W×H image pixels, so scene coordinates stay
full-image pixels while the full decode runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PySide6.QtCore import QCoreApplication, QDeadlineTimer, QObject, Qt, Signal
from PySide6.QtGui import QPixmap, QTransform
from PySide6.QtWidgets import QGraphicsPixmapItem, QGraphicsScene

from tlstudio.core.errors import TlsError
from tlstudio.core.imageio import ImageData
from tlstudio.core.project import ImageRecord
from tlstudio.core.window_presets import NO_FACTS, DisplayFacts

from .items import Z_IMAGE
from .loader import (
    BackgroundRenderer,
    Decoded,
    PixelCache,
    buffer_to_pixmap,
    decode,
    render_display,
)

Window = tuple[float, float]  # (center, width) in array units


class Shown(NamedTuple):
    """A decoded image rendered through ``window`` into a display ``buffer``."""

    decoded: Decoded
    window: Window
    buffer: np.ndarray
    alpha: bool


def as_window(window: Sequence[float]) -> Window:
    return (float(window[0]), float(window[1]))


class ImageLayer(QObject):
    """Shows one image through a window; :attr:`data` is the decoded image at full
    depth (None until its pixels arrive). ``preview_shown`` when a reduced decode is
    on screen, ``loaded`` (data, window) once the full image is, ``failed`` with a
    plain-words reason."""

    preview_shown = Signal()
    loaded = Signal(object, object)  # ImageData, window it is shown through
    failed = Signal(str)
    render_failed = Signal(str)

    def __init__(self, scene: QGraphicsScene, parent: QObject | None = None):
        super().__init__(parent)
        self.sync_max_pixels = 4_000_000
        self.cache_bytes = 512 * 2**20
        self.preview = True  # big JPEGs: show a reduced decode while the full one runs
        self.item = QGraphicsPixmapItem()
        self.item.setZValue(Z_IMAGE)
        self.item.setShapeMode(QGraphicsPixmapItem.ShapeMode.BoundingRectShape)
        self.item.setAcceptedMouseButtons(Qt.MouseButton.NoButton)
        scene.addItem(self.item)
        self.record: ImageRecord | None = None
        self.decoded: Decoded | None = None
        self.previewing = False  # a reduced decode is on screen
        self._buffer: np.ndarray | None = None  # the pixmap shares this memory
        self.cache = PixelCache(self.cache_bytes)
        self._renderer = BackgroundRenderer(self)
        self._renderer.done.connect(self._on_rendered)
        self._renderer.preview.connect(self._on_preview)
        self._renderer.failed.connect(self._on_render_failed)
        self._load_token: int | None = None
        self._render_token: int | None = None
        self._wanted: Window | None = None  # latest window asked of a background render

    # -- state -------------------------------------------------------------------------
    @property
    def data(self) -> ImageData | None:
        """The shown image at full depth, None until it is decoded."""
        return None if self.decoded is None else self.decoded.data

    @property
    def facts(self) -> DisplayFacts:
        """What the image's header says about its display (empty until decoded)."""
        return NO_FACTS if self.decoded is None else self.decoded.facts

    @property
    def busy(self) -> bool:
        """True while a decode or a background render is on its way."""
        return self._load_token is not None or self._render_token is not None

    def pixmap(self) -> QPixmap:
        return self.item.pixmap()

    def pixel_value(self, x: float, y: float) -> object:
        """Full-depth value of the pixel containing image point (x, y): a number, a
        tuple per channel, or None outside the image or before it is decoded."""
        if self.data is None:
            return None
        a = self.data.array
        col, row = int(np.floor(x)), int(np.floor(y))
        if not (0 <= row < a.shape[0] and 0 <= col < a.shape[1]):
            return None
        v = a[row, col]
        return tuple(v.tolist()) if np.ndim(v) else v.item()

    # -- loading -------------------------------------------------------------------------
    def clear(self) -> None:
        """Show nothing; results of earlier loads and renders are dropped when they come."""
        self._load_token = self._render_token = None
        self.record = None
        self.decoded = None
        self._show(None)

    def load(self, record: ImageRecord, path: Path, window: Window | None = None) -> None:
        """Decode ``path`` (the file of ``record``) and show it through ``window``
        (None: the image's default). Emits ``loaded`` or ``failed``; from the cache
        or for small images before returning."""
        self.clear()
        self.record = record
        cached = self._cached()
        if cached is not None:
            if window is None or as_window(window) == cached.window:
                self._arrived(*cached, cache=False)
            else:
                buffer, alpha = render_display(cached.decoded.data.array, window)
                self._arrived(cached.decoded, as_window(window), buffer, alpha, cache=False)
            return
        if record.width * record.height > self.sync_max_pixels:
            self._load_token = self._renderer.load(path, window, self.preview)
            return
        try:
            decoded = decode(path)
            shown = as_window(decoded.data.window if window is None else window)
            buffer, alpha = render_display(decoded.data.array, shown)
        except (TlsError, OSError, ValueError) as exc:
            self.failed.emit(str(exc))
            return
        self._arrived(decoded, shown, buffer, alpha)

    def wait(self, msecs: int = 10_000) -> bool:
        """Block until background decoding and rendering are done and shown (tests, scripts)."""
        deadline = QDeadlineTimer(msecs)
        while self.busy:
            self._renderer.wait(max(1, int(deadline.remainingTime())))
            QCoreApplication.sendPostedEvents(self._renderer)
            QCoreApplication.sendPostedEvents()
            if deadline.hasExpired():
                return False
        return True

    # -- rendering -----------------------------------------------------------------------
    def render(self, window: Window) -> None:
        """Re-render the decoded image through ``window`` now, on this thread."""
        if self.data is None:
            return
        self._render_token = None  # a pending background render is outdated
        cached = self._cached()
        if cached is not None and cached.decoded is self.decoded and cached.window == window:
            self._show(cached.buffer, cached.alpha)
            return
        buffer, alpha = render_display(self.data.array, window)
        self._show(buffer, alpha)

    def request(self, window: Window) -> None:
        """Re-render through ``window``: at once for small images, else in the worker
        (the latest request wins; intermediate ones are skipped)."""
        if self.data is None:
            return
        h, w = self.data.array.shape[:2]
        if h * w <= self.sync_max_pixels:
            self.render(window)
            return
        self._wanted = as_window(window)
        if self._render_token is None and self.decoded is not None:
            self._render_token = self._renderer.render(self.decoded, self._wanted)

    # -- internals -----------------------------------------------------------------------
    def _cache_key(self) -> tuple[int, str] | None:
        return None if self.record is None else (self.record.id, self.record.sha256)

    def _cached(self) -> Shown | None:
        entry = self.cache.get(self._cache_key())
        return entry if isinstance(entry, Shown) else None

    def _show(self, buffer: np.ndarray | None, alpha: bool = False) -> None:
        """Show a full-size display buffer (None: nothing)."""
        pixmap = QPixmap() if buffer is None else buffer_to_pixmap(buffer, alpha)
        self.item.setTransform(QTransform())
        self.previewing = False
        self.item.setPixmap(pixmap)
        self._buffer = buffer  # after setPixmap: the old pixmap is gone

    def _arrived(
        self, decoded: Decoded, window: Window, buffer: np.ndarray, alpha: bool, cache: bool = True
    ) -> None:
        if cache:
            self.cache.max_bytes = self.cache_bytes
            nbytes = decoded.data.array.nbytes + buffer.nbytes
            self.cache.put(self._cache_key(), Shown(decoded, window, buffer, alpha), nbytes)
        self.decoded = decoded
        self._show(buffer, alpha)
        self.loaded.emit(decoded.data, window)

    def _on_preview(self, token: int, buffer: np.ndarray, alpha: bool) -> None:
        if token != self._load_token or self.record is None:
            return  # another image's, or the full image is there already
        self._show(buffer, alpha)
        h, w = buffer.shape[:2]
        # stretch the reduced pixels over the full W×H: scene stays in full-image pixels
        self.item.setTransform(QTransform.fromScale(self.record.width / w, self.record.height / h))
        self.previewing = True
        self.preview_shown.emit()

    def _on_rendered(
        self, token: int, decoded: Decoded, window: Window, buffer: np.ndarray, alpha: bool
    ) -> None:
        if token == self._load_token:
            self._load_token = None
            self._arrived(decoded, window, buffer, alpha)
        elif token == self._render_token and decoded is self.decoded:
            self._render_token = None
            self._show(buffer, alpha)
            if self._wanted is not None and self._wanted != window:
                # the drag went on meanwhile: render the latest
                self._render_token = self._renderer.render(decoded, self._wanted)

    def _on_render_failed(self, token: int, text: str) -> None:
        if token == self._load_token:
            self._load_token = None
            self.failed.emit(text)
        elif token == self._render_token:
            self._render_token = None
            self.render_failed.emit(text)
