"""The latent-space plot's pieces: one pixel-mode scatter item for all points, the
ViewBox that draws the lasso, and the point-in-polygon test behind it.

All points are ONE pyqtgraph ``ScatterPlotItem`` in pixel mode with its symbol cache
(``pxMode=True, useCache=True``): every point is a fragment of one pre-rendered atlas,
drawn in one ``drawPixmapFragments`` call. Brushes are shared objects, one per colour
(a per-point list of references, never per-point QBrush objects). Hit tests (hover,
click) and the lasso are vectorised numpy on the points' data coordinates.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pyqtgraph as pg  # type: ignore[import-untyped]  # no stubs or py.typed
from numpy.typing import NDArray
from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QColor, QPainterPath, QPen
from PySide6.QtWidgets import QGraphicsPathItem


def points_in_polygon(xy: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Boolean mask of the rows of ``xy`` (N×2) inside ``polygon`` (M×2, closed
    implicitly), even-odd rule; vectorised over points, one pass per edge."""
    x, y = xy[:, 0], xy[:, 1]
    inside = np.zeros(len(xy), dtype=bool)
    px, py = polygon[:, 0], polygon[:, 1]
    jx, jy = np.roll(px, 1), np.roll(py, 1)
    for x1, y1, x2, y2 in zip(px, py, jx, jy, strict=True):
        if y1 == y2:
            continue
        crosses = (y1 > y) != (y2 > y)
        x_at = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
        inside ^= crosses & (x < x_at)
    return inside


class AtlasScatter(pg.ScatterPlotItem):
    """A pixel-mode, cached ScatterPlotItem whose points each take one of a few styles.

    :meth:`set_points` and :meth:`set_categories` give each point a category (index into
    a short list of brushes) and look the pre-rendered symbol up in the atlas once per
    category, assigning its atlas rectangle to all points of the category with numpy.
    ``setData(brush=list)`` instead builds and hashes a style tuple per point in Python:
    at 100,000 points that is seconds per recolour (tests/bench/bench_latent.py). This
    writes pyqtgraph's per-point record fields (``data['brush']``, ``['sourceRect']``),
    stable since 0.12; if they change, the plain ``setData`` path is used instead, and
    tests/gui/test_latent_view.py compares both renderings pixel by pixel.

    Clicks are left to the ViewBox: the base class would build one SpotItem object per
    point (``pointsAt``) on the first click."""

    data: NDArray[np.void]  # the base class's per-point records (fields x, y, brush, …)

    def mouseClickEvent(self, ev) -> None:
        ev.ignore()

    def set_points(self, x: np.ndarray, y: np.ndarray, cats: np.ndarray, brushes) -> None:
        """Replace all points: data coordinates ``x``, ``y`` (N floats) and category per
        point ``cats`` (N ints indexing ``brushes``, a short sequence of QBrush)."""
        brushes = np.array(list(brushes), dtype=object)
        try:
            data = np.empty(len(x), dtype=self.data.dtype)  # object fields start as None
            data["x"], data["y"] = x, y
            data["sourceRect"] = 0  # 0 = not looked up in the atlas yet
            data["hovered"] = False
            data["size"] = -1  # -1 = the item's size option
            data["visible"] = True
            self.data = data
            self._assign(cats, brushes)
            self._updateMaxSpotSizes(data=data)
            self.prepareGeometryChange()
            self.informViewBoundsChanged()
            self.bounds = [None, None]
            self.sigPlotChanged.emit(self)
        except (KeyError, ValueError, AttributeError, TypeError):
            self.clear()
            self.setData(x=x, y=y, brush=list(brushes[cats]))

    def set_categories(self, cats: np.ndarray, brushes) -> None:
        """New category per point (same points); see :meth:`set_points`."""
        brushes = np.array(list(brushes), dtype=object)
        try:
            self._assign(cats, brushes)
        except (KeyError, ValueError, AttributeError, TypeError):
            self.setBrush(list(brushes[cats]))

    def _assign(self, cats: np.ndarray, brushes: np.ndarray) -> None:
        data = self.data
        if len(data) != len(cats):
            raise ValueError("one category per point needed")
        if not (self.opts["pxMode"] and self.opts["useCache"]):
            raise ValueError("the atlas path needs pxMode and useCache")
        data["brush"] = brushes[cats]
        symbol, size, pen = self.opts["symbol"], self.opts["size"], self.opts["pen"]
        rects = self.fragmentAtlas[[(symbol, size, pen, b) for b in brushes]]
        for c, rect in enumerate(rects):
            data["sourceRect"][cats == c] = rect
        self._maybeRebuildAtlas()
        self.invalidate()


class LassoViewBox(pg.ViewBox):
    """A ViewBox whose left drag draws a lasso (in lasso mode or with Shift) and whose
    left click reports the scene position; other gestures pan/zoom as usual."""

    def __init__(self, on_click: Callable, on_lasso: Callable, lasso_mode: Callable[[], bool]):
        super().__init__()
        self._on_click = on_click
        self._on_lasso = on_lasso
        self._lasso_mode = lasso_mode
        self._points: list[QPointF] | None = None
        #: keyboard modifiers of the last mouse press (set by the view's event filter)
        self.press_modifiers = Qt.KeyboardModifier.NoModifier
        self.lasso_item = QGraphicsPathItem()
        pen = QPen(QColor("#222222"))
        pen.setCosmetic(True)
        pen.setWidthF(1.5)
        pen.setStyle(Qt.PenStyle.DashLine)
        self.lasso_item.setPen(pen)
        self.lasso_item.setBrush(QColor(30, 30, 30, 25))
        self.lasso_item.setZValue(1000)
        self.addItem(self.lasso_item, ignoreBounds=True)

    def mouseClickEvent(self, ev) -> None:
        if ev.button() == Qt.MouseButton.LeftButton:
            ev.accept()
            self._on_click(ev.scenePos(), ev.modifiers())
        else:
            super().mouseClickEvent(ev)

    def mouseDragEvent(self, ev, axis=None) -> None:
        if ev.button() != Qt.MouseButton.LeftButton:
            super().mouseDragEvent(ev, axis)
            return
        if ev.isStart():
            mods = ev.modifiers() | self.press_modifiers  # Shift held at the press counts
            shift = bool(mods & Qt.KeyboardModifier.ShiftModifier)
            self._points = [] if (self._lasso_mode() or shift) else None
        if self._points is None:
            super().mouseDragEvent(ev, axis)
            return
        ev.accept()
        if not self._points:
            self._points.append(self.mapSceneToView(ev.buttonDownScenePos()))
        self._points.append(self.mapSceneToView(ev.scenePos()))
        path = QPainterPath(self._points[0])
        for p in self._points[1:]:
            path.lineTo(p)
        path.closeSubpath()
        self.lasso_item.setPath(path)
        if ev.isFinish():
            polygon = np.array([(p.x(), p.y()) for p in self._points], dtype=np.float64)
            self._points = None
            self.lasso_item.setPath(QPainterPath())
            self._on_lasso(polygon, ev.modifiers())
