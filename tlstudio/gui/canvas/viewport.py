"""Zoom, pan, fit and the mapping between image pixels and viewport (screen) pixels.

Scene coordinates are image pixels (see :mod:`tlstudio.gui.canvas.view`); the
view's transform is a pure scale (``zoom`` screen px per image px) plus the
scroll position, so ``image_to_view`` / ``view_to_image`` are exact inverses.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, QPoint, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QTransform
from PySide6.QtWidgets import QGraphicsPixmapItem, QGraphicsView


class Viewport(QObject):
    """Zoom and pan of a QGraphicsView over an image of :attr:`image_size` px.

    ``fitted`` stays True after :meth:`fit_to_window` until the user zooms or pans,
    so a resize keeps the whole image in view."""

    zoom_changed = Signal(float)  # screen px per image px

    ZOOM_STEP = 1.25  # per wheel notch and per +/- key
    MAX_ZOOM = 64.0
    FIT_MARGIN_PX = 8

    def __init__(self, view: QGraphicsView, pixmap_item: QGraphicsPixmapItem):
        super().__init__(view)
        self.view = view
        self.pixmap_item = pixmap_item  # its smoothing follows the zoom
        self.image_size: tuple[int, int] = (0, 0)  # (width, height) px; (0, 0): no image
        self.fitted = True

    # -- coordinates -----------------------------------------------------------------
    def image_to_view(self, x: float, y: float) -> QPointF:
        """Viewport (screen) position of the image point (x, y), sub-pixel precise."""
        return self.view.viewportTransform().map(QPointF(x, y))

    def view_to_image(self, pos: QPointF | QPoint) -> QPointF:
        """Image point (pixels, unclamped) under the viewport position ``pos``."""
        inverse, _ = self.view.viewportTransform().inverted()
        return inverse.map(QPointF(pos))

    def screen_to_image(self, px: float) -> float:
        """A length of ``px`` screen pixels in image pixels at the current zoom."""
        return px / max(self.zoom(), 1e-9)

    def clamp(self, pos: QPointF) -> QPointF:
        """``pos`` (image px) moved into the image rectangle [0, W] × [0, H]."""
        w, h = self.image_size
        return QPointF(min(max(pos.x(), 0.0), float(w)), min(max(pos.y(), 0.0), float(h)))

    # -- zoom and pan ----------------------------------------------------------------
    def zoom(self) -> float:
        """Screen pixels per image pixel."""
        return self.view.transform().m11()

    def fit_scale(self) -> float:
        """The zoom at which the whole image fits the viewport (with a small margin)."""
        w, h = self.image_size
        if not w or not h:
            return 1.0
        vp = self.view.viewport()
        m = 2 * self.FIT_MARGIN_PX
        return max(1e-4, min((vp.width() - m) / w, (vp.height() - m) / h))

    def fit_to_window(self) -> None:
        """Zoom so the whole image fits and centre it (kept fitted on resize until zoomed)."""
        w, h = self.image_size
        if not w or not h:
            return
        s = self.fit_scale()
        self.view.setTransform(QTransform.fromScale(s, s))
        self.update_scene_rect()
        self.view.centerOn(w / 2, h / 2)
        self.fitted = True
        self._after_zoom()

    def set_zoom(self, zoom: float, anchor: QPointF | None = None) -> None:
        """Set the zoom (screen px per image px), keeping the image point under
        ``anchor`` (viewport px; default the viewport centre) where it is."""
        if not all(self.image_size):
            return
        lo = min(self.fit_scale(), 1.0) / 4
        hi = max(self.MAX_ZOOM, self.fit_scale() * 4)
        zoom = min(max(zoom, lo), hi)
        if anchor is None:
            anchor = QPointF(self.view.viewport().rect().center())
        fixed = self.view_to_image(anchor)
        self.view.setTransform(QTransform.fromScale(zoom, zoom))
        self.update_scene_rect()
        drift = self.image_to_view(fixed.x(), fixed.y()) - anchor
        self._scroll_by(drift.x(), drift.y())
        self.fitted = False
        self._after_zoom()

    def zoom_by(self, factor: float, anchor: QPointF | None = None) -> None:
        self.set_zoom(self.zoom() * factor, anchor)

    def pan_by(self, dx: float, dy: float) -> None:
        """Move the image by (dx, dy) screen pixels."""
        self._scroll_by(-dx, -dy)
        self.fitted = False

    def resized(self) -> None:
        """The viewport changed size: stay fitted, or keep the pan margins right."""
        if self.fitted:
            self.fit_to_window()
        else:
            self.update_scene_rect()

    def update_scene_rect(self) -> None:
        # one viewport of margin around the image: it can be panned until an edge
        # reaches the opposite side of the window, never lost
        w, h = self.image_size
        if not w or not h:
            self.view.setSceneRect(QRectF(0, 0, 1, 1))
            return
        s = max(self.zoom(), 1e-9)
        vp = self.view.viewport()
        mx, my = vp.width() / s, vp.height() / s
        self.view.setSceneRect(QRectF(-mx, -my, w + 2 * mx, h + 2 * my))

    def _scroll_by(self, dx: float, dy: float) -> None:
        h, v = self.view.horizontalScrollBar(), self.view.verticalScrollBar()
        h.setValue(h.value() + round(dx))
        v.setValue(v.value() + round(dy))

    def _after_zoom(self) -> None:
        mode = (
            Qt.TransformationMode.SmoothTransformation
            if self.zoom() < 1
            else Qt.TransformationMode.FastTransformation  # crisp pixels when enlarged
        )
        if self.pixmap_item.transformationMode() != mode:
            self.pixmap_item.setTransformationMode(mode)
        self.zoom_changed.emit(self.zoom())
