"""Graphics items of the labelling canvas.

Every item lives in scene coordinates, which are image pixel coordinates (see
:mod:`tlstudio.gui.canvas.view`). Outlines use cosmetic pens and handles, points
and text labels ignore the view transform, so they keep their on-screen size
(in screen pixels, ``*_PX`` constants) at every zoom.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from PySide6.QtCore import QLineF, QPointF, QRect, QRectF, Qt
from PySide6.QtGui import (
    QBrush,
    QColor,
    QFont,
    QFontMetricsF,
    QImage,
    QPainter,
    QPainterPath,
    QPen,
    QPolygonF,
)
from PySide6.QtWidgets import (
    QGraphicsEllipseItem,
    QGraphicsItem,
    QGraphicsLineItem,
    QGraphicsPathItem,
    QGraphicsRectItem,
    QStyleOptionGraphicsItem,
    QWidget,
)

from tlstudio.core.annotations import OCCLUDED, SKIPPED, Box, LandmarkSet, Point
from tlstudio.core.labelset import PALETTE, LandmarkTemplate

from .loader import ALPHA_FORMAT

NO_CLASS_COLOR = QColor("#ffd200")  # annotations without a class (landmark sets may have none)

# z order: image < mask < boxes < landmarks < tool feedback
Z_IMAGE, Z_MASK, Z_BOXES, Z_LANDMARKS, Z_TOOL = 0, 10, 20, 30, 100


def cosmetic_pen(color: QColor | str, width: float = 2.0, style=Qt.PenStyle.SolidLine) -> QPen:
    """A pen ``width`` screen pixels wide whatever the zoom."""
    pen = QPen(QColor(color), width, style)
    pen.setCosmetic(True)
    return pen


def text_color_for(background: QColor) -> QColor:
    """Black or white, whichever reads better on ``background``."""
    luma = 0.299 * background.red() + 0.587 * background.green() + 0.114 * background.blue()
    return QColor("black") if luma > 150 else QColor("white")


HALO_PEN = cosmetic_pen(QColor(0, 0, 0, 110), 4)


class _HaloLineItem(QGraphicsLineItem):
    """A skeleton edge: the pen's colour over a dark halo."""

    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem, widget=None) -> None:
        painter.setPen(HALO_PEN)
        painter.drawLine(self.line())
        super().paint(painter, option, widget)


class LabelItem(QGraphicsItem):
    """A short text on a filled rounded rectangle, constant screen size.

    ``placement``: "above" puts the label's bottom-left corner at the item's
    position (box class names); "cursor" puts it 16 screen px right of and
    below the position (the landmark tool's next-point name)."""

    def __init__(self, parent: QGraphicsItem | None = None, placement: str = "above"):
        super().__init__(parent)
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIgnoresTransformations)
        self.setAcceptedMouseButtons(Qt.MouseButton.NoButton)
        self._placement = placement
        self._text = ""
        self._bg = QColor(NO_CLASS_COLOR)
        self._font = QFont()
        self._font.setPointSizeF(9)
        self._rect = QRectF()

    @property
    def text(self) -> str:
        return self._text

    def set_text(self, text: str, background: QColor | str) -> None:
        self.prepareGeometryChange()
        self._text, self._bg = text, QColor(background)
        if not text:
            self._rect = QRectF()
        else:
            fm = QFontMetricsF(self._font)
            w, h = fm.horizontalAdvance(text) + 8, fm.height() + 2
            if self._placement == "cursor":
                self._rect = QRectF(16, 16, w, h)
            else:
                self._rect = QRectF(-1, -h, w, h)
        self.update()

    def boundingRect(self) -> QRectF:
        return self._rect

    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem, widget=None) -> None:
        if not self._text:
            return
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(self._bg)
        painter.drawRoundedRect(self._rect, 3, 3)
        painter.setPen(text_color_for(self._bg))
        painter.setFont(self._font)
        painter.drawText(self._rect, Qt.AlignmentFlag.AlignCenter, self._text)


class _HandleItem(QGraphicsRectItem):
    def __init__(self, parent: QGraphicsItem):
        half = BoxItem.HANDLE_PX / 2
        super().__init__(-half, -half, 2 * half, 2 * half, parent)
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIgnoresTransformations)
        self.setAcceptedMouseButtons(Qt.MouseButton.NoButton)
        self.setBrush(QColor("white"))
        self.setPen(cosmetic_pen("black", 1))
        self.setVisible(False)


class BoxItem(QGraphicsRectItem):
    """One box, in image pixels: class-colour outline, class name above the
    top-left corner and, when selected, 8 resize handles.

    Handles are numbered clockwise from the top-left corner: 0 top-left, 1 top,
    2 top-right, 3 right, 4 bottom-right, 5 bottom, 6 bottom-left, 7 left."""

    HANDLE_PX = 8  # handle side, screen px

    def __init__(self, parent: QGraphicsItem | None = None):
        super().__init__(parent)
        self.setZValue(Z_BOXES)
        self.setAcceptedMouseButtons(Qt.MouseButton.NoButton)
        self.box: Box | None = None
        self._color = QColor(NO_CLASS_COLOR)
        self._selected = False
        self._label = LabelItem(self, "above")
        self._handles = [_HandleItem(self) for _ in range(8)]
        self._apply_style()

    def set_box(self, box: Box, color: QColor | str, label: str) -> None:
        """Show ``box`` (image pixels) with its class colour and name."""
        self.box = box
        self._color = QColor(color)
        self._label.set_text(label, self._color)
        self.set_preview_rect(QRectF(QPointF(box.x1, box.y1), QPointF(box.x2, box.y2)))
        self._apply_style()

    def set_preview_rect(self, rect: QRectF) -> None:
        """Move the drawing to ``rect`` (image px) without touching ``box`` (drag feedback)."""
        self.setRect(rect)
        self._label.setPos(rect.topLeft())
        for handle, p in zip(self._handles, self.handle_points(rect), strict=True):
            handle.setPos(p)

    def set_selected(self, selected: bool) -> None:
        self._selected = selected
        for h in self._handles:
            h.setVisible(selected)
        self._apply_style()

    @property
    def selected(self) -> bool:
        return self._selected

    @property
    def label_text(self) -> str:
        return self._label.text

    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem, widget=None) -> None:
        # a dark halo under the class colour keeps the outline readable on any image
        painter.setPen(HALO_PEN)
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.drawRect(self.rect())
        super().paint(painter, option, widget)

    def _apply_style(self) -> None:
        self.setPen(cosmetic_pen(self._color, 3 if self._selected else 2))
        fill = QColor(self._color)
        fill.setAlpha(50 if self._selected else 0)
        self.setBrush(fill if self._selected else Qt.BrushStyle.NoBrush)

    @staticmethod
    def handle_points(rect: QRectF) -> list[QPointF]:
        """The 8 handle centres of ``rect`` in image px, numbered as in the class docstring."""
        x0, y0, x1, y1 = rect.left(), rect.top(), rect.right(), rect.bottom()
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        return [
            QPointF(x0, y0), QPointF(cx, y0), QPointF(x1, y0), QPointF(x1, cy),
            QPointF(x1, y1), QPointF(cx, y1), QPointF(x0, y1), QPointF(x0, cy),
        ]  # fmt: skip

    def handle_at(self, pos: QPointF, tolerance: float) -> int | None:
        """Index of the handle within ``tolerance`` image px of ``pos`` (nearest first)."""
        best, best_d = None, tolerance
        for i, p in enumerate(self.handle_points(self.rect())):
            d = max(abs(p.x() - pos.x()), abs(p.y() - pos.y()))
            if d <= best_d:
                best, best_d = i, d
        return best


class _PointDot(QGraphicsEllipseItem):
    def __init__(self, parent: QGraphicsItem):
        super().__init__(parent)
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIgnoresTransformations)
        self.setAcceptedMouseButtons(Qt.MouseButton.NoButton)
        self.setZValue(1)  # above the skeleton lines


def point_color(index: int) -> QColor:
    """Colour of the ``index``-th point of a template (same in every set)."""
    return QColor(PALETTE[index % len(PALETTE)])


class LandmarkSetItem(QGraphicsItem):
    """Points of one landmark set (image px) with the template's skeleton.

    Each point has its own colour (by index in the template). Visible points are
    filled discs, occluded points hollow rings, skipped points are not drawn;
    hovering a point shows its name. Skeleton lines take the set's class colour
    and join only points that are both placed and not skipped. ``points`` may be
    shorter than the template (a set being placed)."""

    POINT_PX = 5.0  # point radius, screen px

    def __init__(self, parent: QGraphicsItem | None = None):
        super().__init__(parent)
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemHasNoContents)
        self.setAcceptedMouseButtons(Qt.MouseButton.NoButton)
        self.setZValue(Z_LANDMARKS)
        self.points: tuple[Point, ...] = ()
        self.template: LandmarkTemplate | None = None
        self.landmarks: LandmarkSet | None = None  # the stored set shown, if any
        self._color = QColor(NO_CLASS_COLOR)
        self._selected = False
        self._selected_point: int | None = None
        self._dots: list[_PointDot] = []
        self._lines: list[_HaloLineItem] = []

    def boundingRect(self) -> QRectF:
        return QRectF()

    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem, widget=None) -> None:
        pass  # the children draw

    def set_landmarks(
        self,
        points: Sequence[Point],
        template: LandmarkTemplate,
        color: QColor | str,
        landmarks: LandmarkSet | None = None,
    ) -> None:
        """Show ``points`` (image px) of ``template``; ``landmarks`` is the stored set, if any."""
        self.points, self.template, self.landmarks = tuple(points), template, landmarks
        self._color = QColor(color)
        self._rebuild()

    def set_points(self, points: Sequence[Point]) -> None:
        """Show other points with the same template and colour (drag feedback, placing)."""
        self.points = tuple(points)
        self._rebuild()

    def set_selected(self, selected: bool, point: int | None = None) -> None:
        self._selected, self._selected_point = selected, point if selected else None
        self._rebuild()

    @property
    def selected(self) -> bool:
        return self._selected

    def point_at(self, pos: QPointF, tolerance: float) -> int | None:
        """Index of the drawn point nearest ``pos`` within ``tolerance`` image px."""
        best, best_d = None, tolerance * tolerance
        for i, p in enumerate(self.points):
            if p.visibility == SKIPPED:
                continue
            d = (p.x - pos.x()) ** 2 + (p.y - pos.y()) ** 2
            if d <= best_d:
                best, best_d = i, d
        return best

    def _rebuild(self) -> None:
        names = self.template.points if self.template else ()
        edges = self.template.skeleton if self.template else ()
        drawn = [
            (a, b)
            for a, b in edges
            if a < len(self.points)
            and b < len(self.points)
            and self.points[a].visibility != SKIPPED
            and self.points[b].visibility != SKIPPED
        ]
        while len(self._lines) < len(drawn):
            line = _HaloLineItem(self)
            line.setAcceptedMouseButtons(Qt.MouseButton.NoButton)
            self._lines.append(line)
        pen = cosmetic_pen(self._color, 3 if self._selected else 2)
        for line, (a, b) in zip(self._lines, drawn, strict=False):
            pa, pb = self.points[a], self.points[b]
            line.setLine(QLineF(pa.x, pa.y, pb.x, pb.y))
            line.setPen(pen)
            line.setVisible(True)
        for line in self._lines[len(drawn) :]:
            line.setVisible(False)

        while len(self._dots) < len(self.points):
            self._dots.append(_PointDot(self))
        for i, (dot, p) in enumerate(zip(self._dots, self.points, strict=False)):
            if p.visibility == SKIPPED:
                dot.setVisible(False)
                continue
            r = self.POINT_PX * (1.5 if i == self._selected_point else 1.0)
            dot.setRect(-r, -r, 2 * r, 2 * r)
            dot.setPos(p.x, p.y)
            color = point_color(i)
            if p.visibility == OCCLUDED:
                dot.setBrush(Qt.BrushStyle.NoBrush)
                dot.setPen(cosmetic_pen(color, 2.5))
            else:
                dot.setBrush(color)
                edge = "white" if (self._selected or i == self._selected_point) else "black"
                dot.setPen(cosmetic_pen(edge, 1.5 if i == self._selected_point else 1))
            name = names[i] if i < len(names) else f"point {i + 1}"
            dot.setToolTip(name + (" (occluded)" if p.visibility == OCCLUDED else ""))
            dot.setVisible(True)
        for dot in self._dots[len(self.points) :]:
            dot.setVisible(False)


def region_paths(label: np.ndarray) -> dict[int, QPainterPath]:
    """The outline of every non-zero value's region of an H×W map (image px, through
    the centres of the region's border pixels; holes included), by value. One pass finds
    every region's bounding box, so the cost is the image plus the regions' own areas."""
    import cv2  # loaded by tlstudio.core already; kept local like other heavy modules
    from scipy.ndimage import find_objects  # type: ignore[import-untyped]  # no scipy-stubs here

    out: dict[int, QPainterPath] = {}
    if label is None or not label.any():
        return out
    for index, where in enumerate(find_objects(label)):
        if where is None:
            continue
        value = index + 1
        crop = (label[where] == value).astype(np.uint8)
        contours, _ = cv2.findContours(crop, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
        path = QPainterPath()
        dx, dy = where[1].start + 0.5, where[0].start + 0.5
        for c in contours:
            pts = c.reshape(-1, 2).astype(float)
            path.addPolygon(QPolygonF([QPointF(x + dx, y + dy) for x, y in pts]))
            path.closeSubpath()
        out[value] = path
    return out


class MaskOverlayItem(QGraphicsItem):
    """A label map drawn in per-class colours over the image, at (0, 0), one item
    pixel per image pixel.

    Holds a premultiplied ARGB32 buffer the size of the image: :meth:`set_label_map`
    fills it all, :meth:`update_region` only the rectangle a brush touched (and
    repaints only that part of the screen). Opacity (0–1) and visibility are the
    item's own (``setOpacity``, ``setVisible``)."""

    def __init__(self, parent: QGraphicsItem | None = None):
        super().__init__(parent)
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemUsesExtendedStyleOption)
        self.setAcceptedMouseButtons(Qt.MouseButton.NoButton)
        self.setZValue(Z_MASK)
        self.setOpacity(0.5)
        self._w = self._h = 0
        self._lut = np.zeros(65536, np.uint32)  # class id -> 0xAARRGGBB
        self._colors: dict[int, int] = {}
        self._buffer: np.ndarray | None = None  # H×W uint32, shares memory with _image
        self._image: QImage | None = None
        self.incremental = True  # False: every update re-renders the whole map (benchmarks)

    # -- configuration -------------------------------------------------------
    def set_size(self, width: int, height: int) -> None:
        """Image size in pixels; drops the current overlay."""
        self.prepareGeometryChange()
        self._w, self._h = int(width), int(height)
        self._buffer = self._image = None
        self.update()

    def set_colors(self, colors: Mapping[int, QColor | str]) -> bool:
        """Class id -> colour. Returns True when the colours changed (caller re-renders)."""
        packed = {int(k): QColor(v).rgb() | 0xFF000000 for k, v in colors.items()}
        if packed == self._colors:
            return False
        self._colors = packed
        lut = np.full(65536, QColor("#bbbbbb").rgb() | 0xFF000000, np.uint32)  # unknown ids
        lut[0] = 0
        for cid, argb in packed.items():
            if 0 < cid < 65536:
                lut[cid] = argb
        self._lut = lut
        return True

    # -- content -------------------------------------------------------------------
    def set_label_map(self, label: np.ndarray | None) -> None:
        """Render the whole H×W label map (None or all zero: nothing shown)."""
        if label is None or not label.any():
            if self._buffer is not None:
                self._buffer[:] = 0
            self.update()
            return
        buffer = self._ensure_buffer()
        np.take(self._lut, label, out=buffer, mode="clip")
        self.update()

    def update_region(self, label: np.ndarray, rect: tuple[int, int, int, int]) -> None:
        """Re-render columns x0:x1, rows y0:y1 of ``label`` (image px) and repaint them."""
        if not self.incremental:
            self.set_label_map(label)
            return
        x0, y0, x1, y1 = rect
        buffer = self._ensure_buffer()
        np.take(self._lut, label[y0:y1, x0:x1], out=buffer[y0:y1, x0:x1], mode="clip")
        self.update(QRectF(x0, y0, x1 - x0, y1 - y0))

    def _ensure_buffer(self) -> np.ndarray:
        """The H×W ARGB buffer behind the shown image, made on first use."""
        if self._buffer is None:
            self._buffer = np.zeros((self._h, self._w), np.uint32)
            self._image = QImage(self._buffer.data, self._w, self._h, self._w * 4, ALPHA_FORMAT)
        return self._buffer

    def argb_at(self, x: int, y: int) -> int:
        """The overlay colour 0xAARRGGBB at pixel (x, y) before opacity (0 = transparent)."""
        if self._buffer is None:
            return 0
        return int(self._buffer[y, x])

    # -- QGraphicsItem ------------------------------------------------------------
    def boundingRect(self) -> QRectF:
        return QRectF(0, 0, self._w, self._h)

    def paint(
        self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None
    ) -> None:
        if self._image is None:
            return
        exposed = option.exposedRect.intersected(self.boundingRect())
        if exposed.isEmpty():
            return
        r = QRectF(exposed.toAlignedRect().intersected(QRect(0, 0, self._w, self._h)))
        painter.drawImage(r, self._image, r)


class BrushCursorItem(QGraphicsItem):
    """The brush outline: a circle of ``radius`` image px, black under white so it
    reads on any background."""

    def __init__(self, parent: QGraphicsItem | None = None):
        super().__init__(parent)
        self.setAcceptedMouseButtons(Qt.MouseButton.NoButton)
        self.setZValue(Z_TOOL)
        self._r = 5.0
        self._erase = False

    def set_radius(self, radius: float, erase: bool = False) -> None:
        self.prepareGeometryChange()
        self._r, self._erase = float(radius), erase
        self.update()

    def boundingRect(self) -> QRectF:
        r = self._r
        return QRectF(-r, -r, 2 * r, 2 * r)

    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem, widget=None) -> None:
        rect = self.boundingRect()
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.setPen(cosmetic_pen("black", 3))
        painter.drawEllipse(rect)
        style = Qt.PenStyle.DashLine if self._erase else Qt.PenStyle.SolidLine
        painter.setPen(cosmetic_pen("white", 1, style))
        painter.drawEllipse(rect)


class PolygonPreviewItem(QGraphicsPathItem):
    """The polygon being drawn (image px): edges, a faint fill and the rubber band to the cursor."""

    def __init__(self, parent: QGraphicsItem | None = None):
        super().__init__(parent)
        self.setAcceptedMouseButtons(Qt.MouseButton.NoButton)
        self.setZValue(Z_TOOL)

    def set_polygon(
        self, vertices: Sequence[QPointF], cursor: QPointF | None, color: QColor | str
    ) -> None:
        path = QPainterPath()
        if vertices:
            path.moveTo(vertices[0])
            for v in vertices[1:]:
                path.lineTo(v)
            if cursor is not None:
                path.lineTo(cursor)
            if len(vertices) >= 2:
                path.closeSubpath()
        c = QColor(color)
        self.setPen(cosmetic_pen(c, 2))
        fill = QColor(c)
        fill.setAlpha(60)
        self.setBrush(QBrush(fill))
        self.setPath(path)
