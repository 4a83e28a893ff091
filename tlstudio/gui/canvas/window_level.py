"""Window/level of the shown image: the display window state, requests from the
Display panel and the keyboard, and the right-button drag that changes it.

A window is ``(center, width)`` in the image array's units (e.g. HU for DICOM CT
after rescale). The stored image and its labels never change; only the display
is re-rendered (:class:`~tlstudio.gui.canvas.image_layer.ImageLayer`).
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QObject, QPointF, Signal

from tlstudio.core.imageio import ImageData

from .image_layer import ImageLayer, Window


class WindowLevel(QObject):
    """The display window of :attr:`layer`'s image; ``window_changed`` after every change."""

    window_changed = Signal(float, float)  # center, width (array units)

    def __init__(self, layer: ImageLayer, parent: QObject | None = None):
        super().__init__(parent)
        self.layer = layer
        self._window: Window | None = None
        self._data_range: tuple[float, float] | None = None
        self._drag_start: Window | None = None

    # -- state -------------------------------------------------------------------------
    @property
    def data(self) -> ImageData | None:
        return self.layer.data

    def window(self) -> Window | None:
        """The display window (center, width), None before the pixels arrive."""
        return self._window

    def default_window(self) -> Window | None:
        """The image's own window (DICOM header, else a robust percentile range)."""
        return None if self.data is None else self.data.window

    def data_range(self) -> tuple[float, float] | None:
        """(min, max) of the image's values (colour samples, NaN ignored), array units."""
        if self.data is None:
            return None
        if self._data_range is None:
            a = self.data.array
            if a.ndim == 3 and a.shape[2] in (2, 4):
                a = a[..., :-1]
            if a.dtype.kind == "f":
                self._data_range = (float(np.nanmin(a)), float(np.nanmax(a)))
            else:
                self._data_range = (float(a.min()), float(a.max()))
        return self._data_range

    def can_window(self) -> bool:
        """True when the window can change (images that are not 8-bit)."""
        return self.data is not None and self.data.array.dtype != np.uint8

    # -- changes -------------------------------------------------------------------------
    def clear(self) -> None:
        """A new image: no window until its pixels arrive."""
        self._window = None
        self._data_range = None
        self._drag_start = None

    def shown(self, window: Window) -> None:
        """The layer put the image on screen through ``window``."""
        self._window = (float(window[0]), float(window[1]))
        self.window_changed.emit(*self._window)

    def set_window(self, center: float, width: float) -> None:
        """Re-render the display through (center, width) now."""
        if self.data is None:
            return
        self._window = (float(center), float(width))
        self.layer.render(self._window)
        self.window_changed.emit(*self._window)

    def reset_window(self) -> None:
        """Back to the image's default window."""
        if self.data is not None:
            self.set_window(*self.data.window)

    def request_window(self, center: float, width: float) -> None:
        """An interactive change: big images render in the background, latest wins."""
        if self.data is None:
            return
        self._window = (float(center), float(width))
        self.layer.request(self._window)
        self.window_changed.emit(*self._window)

    # -- right-button drag -----------------------------------------------------------------
    def begin_drag(self) -> None:
        self._drag_start = self._window

    def end_drag(self) -> None:
        self._drag_start = None

    def drag(self, delta: QPointF) -> None:
        """Window from the drag start moved by ``delta`` screen px: right = wider,
        down = higher centre; 256 px of drag = one default width."""
        if self.data is None or self._drag_start is None:
            return
        c0, w0 = self._drag_start
        default_width = max(abs(self.data.window[1]), 1e-6)
        step = default_width / 256
        floor = 1.0 if self.data.array.dtype.kind in "ui" else default_width / 1000
        width = max(w0 + delta.x() * step, floor)
        center = c0 + delta.y() * step
        self.request_window(center, width)
