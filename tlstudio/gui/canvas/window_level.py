"""Window/level of the shown image: the display window state, requests from the
Display panel and the keyboard, and the right-button drag that changes it.

A window is ``(center, width)`` in the image array's units (e.g. HU for DICOM CT
after rescale). The stored image and its labels never change; only the display
is re-rendered (:class:`~tlstudio.gui.canvas.image_layer.ImageLayer`).

Presets (:meth:`WindowLevel.presets`): the CT windows in HU where the image is in
HU, every window of the DICOM header, the image's default and its full range, each
with a fixed key (:data:`WINDOW_SHORTCUTS`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PySide6.QtCore import QObject, QPointF, Signal

from tlstudio.core.imageio import ImageData
from tlstudio.core.window_presets import CT_PRESETS

from .image_layer import ImageLayer, Window

HEADER_KEYS = ("Alt+6", "Alt+7", "Alt+8")  # the DICOM header's first three windows
FULL_KEY, DEFAULT_KEY = "Alt+9", "Alt+0"


def window_label(name: str, window: Window) -> str:
    """``"Lung (-600 / 1500)"``: a preset's name with its centre / width."""
    return f"{name} ({window[0]:g} / {window[1]:g})"


@dataclass(frozen=True)
class Preset:
    """A window the user can pick: ``kind`` is "ct" (HU), "header" (DICOM), "default"
    or "full"; ``key`` its shortcut ("" for header windows after the third)."""

    name: str
    window: Window
    kind: str
    key: str = ""

    @property
    def label(self) -> str:
        if self.kind in ("ct", "header"):
            return window_label(self.name, self.window)
        return self.name


CT_KEYS = tuple(f"Alt+{i + 1}" for i in range(len(CT_PRESETS)))
CT_PRESET_ITEMS = tuple(
    Preset(p.name, p.window, "ct", key) for p, key in zip(CT_PRESETS, CT_KEYS, strict=True)
)
DEFAULT_LABEL, FULL_LABEL = "Default window", "Full range"

WINDOW_SHORTCUTS: list[tuple[str, str]] = [
    *((p.key, f"Window preset for CT in HU: {p.label}") for p in CT_PRESET_ITEMS),
    (" / ".join(HEADER_KEYS), "Window: the DICOM header's 1st / 2nd / 3rd window"),
    (FULL_KEY, f"Window: {FULL_LABEL} (lowest to highest value of the image)"),
    (f"{DEFAULT_KEY}  or  R", f"Window: {DEFAULT_LABEL} (the DICOM header's, else from the data)"),
]
"""(key, description) of the window/level keys, for Help → Keyboard shortcuts."""


class WindowLevel(QObject):
    """The display window of :attr:`layer`'s image; ``window_changed`` after every change."""

    window_changed = Signal(float, float)  # center, width (array units)
    window_chosen = Signal(object)  # the user settled on a window (None: the default)

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

    def in_hu(self) -> bool:
        """True when the values are Hounsfield units (DICOM CT after rescale)."""
        return self.can_window() and self.layer.facts.in_hu

    def presets(self) -> list[Preset]:
        """The windows offered for this image, in menu order (empty for 8-bit images
        and before the pixels arrive): CT presets only where the values are in HU."""
        if not self.can_window() or self.data is None:
            return []
        out = list(CT_PRESET_ITEMS) if self.in_hu() else []
        for i, h in enumerate(self.layer.facts.header_windows):
            key = HEADER_KEYS[i] if i < len(HEADER_KEYS) else ""
            out.append(Preset(h.name, h.window, "header", key))
        lo, hi = self.data_range() or (0.0, 1.0)
        out.append(Preset(DEFAULT_LABEL, self.data.window, "default", DEFAULT_KEY))
        out.append(Preset(FULL_LABEL, ((lo + hi) / 2, max(hi - lo, 1.0)), "full", FULL_KEY))
        return out

    def apply(self, preset: Preset) -> None:
        """Show ``preset``'s window (the default one is forgotten, not stored)."""
        if preset.kind == "default":
            self.reset_window()
        else:
            self.set_window(*preset.window)

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
        """Re-render the display through (center, width) now; the image keeps it."""
        if self._show(center, width):
            self.window_chosen.emit(self._window)

    def reset_window(self) -> None:
        """Back to the image's default window (and forget the one it kept)."""
        if self.data is not None and self._show(*self.data.window):
            self.window_chosen.emit(None)

    def _show(self, center: float, width: float) -> bool:
        if self.data is None or not width > 0:
            return False
        self._window = (float(center), float(width))
        self.layer.render(self._window)
        self.window_changed.emit(*self._window)
        return True

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
        """The drag is over: the image keeps the window it ended on."""
        start, self._drag_start = self._drag_start, None
        if start is not None and self._window is not None and self._window != start:
            self.window_chosen.emit(self._window)

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
