"""The objects (instances) and the ignore region of the shown image on the canvas.

Every object is outlined in its class colour (or, with "colour by object", filled and
outlined in a colour of its own, so touching objects of one class read as two); the
selected object is drawn thicker with a white dash. The ignore region (pixels left out of
training and metrics) is hatched grey. Positions are image pixels (= scene coordinates).

The layer shows an :class:`~.mask_writer.ObjectsState`: the objects as stored, or as the
canvas asked the MaskWriter to store them. What it draws are the *effective* objects
(pixels whose label-map class is no longer the object's are left out, as
:meth:`InstanceStore.layer <tlstudio.core.instances.InstanceStore.layer>` reports them).
Edits go through the canvas, never through the layer.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QPainter, QPainterPath
from PySide6.QtWidgets import QGraphicsItem, QGraphicsScene, QStyleOptionGraphicsItem

from tlstudio.core.annotations import Instance, InstanceLayer
from tlstudio.core.instances import decode_flags, effective_layer, instance_row, state_layers
from tlstudio.core.project import Project

from .items import HALO_PEN, NO_CLASS_COLOR, Z_MASK, MaskOverlayItem, cosmetic_pen, region_paths
from .mask_writer import ObjectsState

Z_OBJECT_FILL, Z_OBJECT_OUTLINES, Z_IGNORE = Z_MASK + 0.5, Z_MASK + 1, Z_MASK + 1.5
IGNORE_FILL = QColor(80, 80, 80, 165)  # greyed out ...
IGNORE_HATCH = QColor(225, 225, 225, 150)  # ... and hatched, readable on any image


def object_color(number: int) -> QColor:
    """The colour of object ``number`` when objects are coloured one by one: hues a
    golden angle apart, so neighbouring numbers differ clearly."""
    return QColor.fromHsvF((number * 0.618034) % 1.0, 0.7, 0.95)


class ObjectOutlineItem(QGraphicsItem):
    """Object outlines over a dark halo (cosmetic pens: same width at every zoom)."""

    def __init__(self) -> None:
        super().__init__()
        self.setAcceptedMouseButtons(Qt.MouseButton.NoButton)
        self.setZValue(Z_OBJECT_OUTLINES)
        self.paths: dict[int, QPainterPath] = {}
        self.colors: dict[int, QColor] = {}
        self.selected: int | None = None
        self._rect = QRectF()

    def set_outlines(self, paths: dict[int, QPainterPath], colors: dict[int, QColor]) -> None:
        """``paths`` and ``colors`` by object number."""
        self.prepareGeometryChange()
        self.paths, self.colors = paths, colors
        rect = QRectF()
        for path in paths.values():
            rect = rect.united(path.boundingRect())
        self._rect = rect
        self.update()

    def set_selected(self, number: int | None) -> None:
        if number != self.selected:
            self.selected = number
            self.update()

    def boundingRect(self) -> QRectF:
        return self._rect.adjusted(-3, -3, 3, 3)

    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem, widget=None) -> None:
        painter.setBrush(Qt.BrushStyle.NoBrush)
        for number, path in self.paths.items():
            if number == self.selected:
                continue
            painter.setPen(HALO_PEN)
            painter.drawPath(path)
            painter.setPen(cosmetic_pen(self.colors.get(number, NO_CLASS_COLOR), 1.5))
            painter.drawPath(path)
        selected = self.selected
        selected_path = self.paths.get(selected) if selected is not None else None
        if selected is not None and selected_path is not None:  # last: on top of its neighbours
            painter.setPen(cosmetic_pen(QColor(0, 0, 0, 160), 6))
            painter.drawPath(selected_path)
            painter.setPen(cosmetic_pen(self.colors.get(selected, NO_CLASS_COLOR), 3))
            painter.drawPath(selected_path)
            painter.setPen(cosmetic_pen("white", 1.5, Qt.PenStyle.DashLine))
            painter.drawPath(selected_path)


class IgnoreRegionItem(QGraphicsItem):
    """The ignore region: grey, hatched at a constant screen density, dashed outline."""

    def __init__(self) -> None:
        super().__init__()
        self.setAcceptedMouseButtons(Qt.MouseButton.NoButton)
        self.setZValue(Z_IGNORE)
        self.path = QPainterPath()

    def set_region(self, region: np.ndarray | None) -> None:
        """The region as a bool H×W map (None: none)."""
        self.prepareGeometryChange()
        path = QPainterPath()
        if region is not None and region.any():
            path = region_paths(region.astype(np.uint8)).get(1, path)
            path.setFillRule(Qt.FillRule.OddEvenFill)  # holes stay holes
        self.path = path
        self.update()

    def boundingRect(self) -> QRectF:
        return self.path.boundingRect().adjusted(-2, -2, 2, 2)

    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem, widget=None) -> None:
        if self.path.isEmpty():
            return
        painter.fillPath(self.path, IGNORE_FILL)
        device = painter.transform().map(self.path)  # hatch in screen px, not image px
        painter.save()
        painter.resetTransform()
        painter.fillPath(device, QBrush(IGNORE_HATCH, Qt.BrushStyle.BDiagPattern))
        painter.restore()
        painter.setPen(HALO_PEN)
        painter.drawPath(self.path)
        painter.setPen(cosmetic_pen(QColor(235, 235, 235), 1.2, Qt.PenStyle.DashLine))
        painter.drawPath(self.path)


class ObjectLayer:
    """Objects and ignore region of one image, drawn over the label map (see the module
    doc). ``state``: the objects shown, raw (as stored or pending); ``effective``: the
    objects as they count against the label map shown."""

    def __init__(self, scene: QGraphicsScene):
        self.fill = MaskOverlayItem()  # "colour by object": each object in its own colour
        self.fill.setZValue(Z_OBJECT_FILL)
        self.outlines = ObjectOutlineItem()
        self.ignore_item = IgnoreRegionItem()
        for item in (self.fill, self.outlines, self.ignore_item):
            scene.addItem(item)
        self.state = ObjectsState(None)
        self.effective: InstanceLayer | None = None
        self.ignore: np.ndarray | None = None
        self.color_by_object = False
        self.class_colors: dict[int, QColor] = {}
        self._visible = True
        self._ignore_png: bytes | None = None
        self._basis: tuple[int, int] | None = None  # ids of (state, label) drawn
        self._apply_visibility()

    # -- contents ----------------------------------------------------------------------
    def set_image(self, size: tuple[int, int]) -> None:
        """A new image of ``size`` (width, height) px: nothing drawn yet."""
        self.state = ObjectsState(None)
        self.effective = None
        self.ignore = None
        self._ignore_png = None
        self._basis = None
        self.fill.set_size(*size)
        self.outlines.set_outlines({}, {})
        self.outlines.set_selected(None)
        self.ignore_item.set_region(None)

    def sync(self, project: Project, image_id: int, label: np.ndarray | None,
             pending: ObjectsState | None, colors: dict[int, QColor]) -> bool:  # fmt: skip
        """Show ``pending`` (objects on their way to the store) or else the stored
        objects, against the label map ``label`` shown; decodes only what changed.
        Returns True when the effective objects changed."""
        self.class_colors = colors
        if pending is None:
            stored = project.instances.state(image_id)
            shown = self.state
            rows = stored.rows
            same = (
                shown.encoded
                and shown.png == stored.instance_map
                and tuple(instance_row(o) for o in shown.objects) == rows
                and self._ignore_png == stored.ignore
            )
            if not same:
                layer, ignore = state_layers(stored)
                pending = ObjectsState(
                    None if layer is None else layer.map,
                    () if layer is None else layer.objects,
                    stored.ignore, stored.instance_map, True,
                )  # fmt: skip
                if stored.ignore != self._ignore_png:
                    self._ignore_png = stored.ignore
                    self.ignore = ignore
                    self.ignore_item.set_region(ignore)
        elif pending.ignore != self._ignore_png:
            self._ignore_png = pending.ignore
            self.ignore = None if pending.ignore is None else decode_flags(pending.ignore)
            self.ignore_item.set_region(self.ignore)
        if pending is not None:
            self.state = pending
        return self._update_effective(label)

    def _update_effective(self, label: np.ndarray | None, force: bool = False) -> bool:
        basis = (id(self.state), id(label))
        if basis == self._basis and not force:
            self._paint_outlines()  # colours may have changed
            return False
        self._basis = basis
        raw = None
        if self.state.numbers is not None and self.state.objects:
            raw = InstanceLayer(self.state.numbers, self.state.objects)
        self.effective = effective_layer(raw, label)
        self._paint_fill()
        self._paint_outlines(rebuild=True)
        return True

    def show_consistent(self, state: ObjectsState, label: np.ndarray | None) -> None:
        """Show ``state``, made with ``label`` so that every object pixel holds its
        object's class there (an edit of the Objects tool): no recount needed."""
        self.state = state
        self._basis = (id(state), id(label))
        eff = None
        if state.numbers is not None and state.objects:
            eff = InstanceLayer(state.numbers, state.objects)
        self.effective = eff
        self._paint_fill()
        self._paint_outlines(rebuild=True)

    def refresh(self, label: np.ndarray | None) -> bool:
        """The label map shown changed (a stroke, or its feedback dropped): recount."""
        return self._update_effective(label)

    # -- lookups -------------------------------------------------------------------------
    def number_at(self, x: float, y: float) -> int:
        """The number of the object at image point (x, y), 0 for none."""
        eff = self.effective
        if eff is None or not self._visible:
            return 0
        col, row = int(np.floor(x)), int(np.floor(y))
        h, w = eff.map.shape
        if not (0 <= col < w and 0 <= row < h):
            return 0
        return int(eff.map[row, col])

    def has_object(self, number: int) -> bool:
        return self.object(number) is not None

    def object(self, number: int | None) -> Instance | None:
        """The (effective) object numbered ``number``, or None."""
        if self.effective is None or number is None:
            return None
        return self.effective.by_number().get(number)

    def object_window(self, number: int, rect: tuple[int, int, int, int]) -> np.ndarray:
        """Bool mask of object ``number``'s pixels in columns x0:x1, rows y0:y1 of
        ``rect`` = (x0, y0, x1, y1)."""
        x0, y0, x1, y1 = rect
        if self.effective is None:
            return np.zeros((y1 - y0, x1 - x0), bool)
        window: np.ndarray = self.effective.map[y0:y1, x0:x1] == number
        return window

    def editable(self, size: tuple[int, int]) -> InstanceLayer:
        """A copy of the effective objects to edit (an empty layer of ``size`` (width,
        height) when there are none)."""
        if self.effective is None:
            return InstanceLayer(np.zeros((size[1], size[0]), np.uint16))
        return InstanceLayer(self.effective.map.copy(), self.effective.objects)

    # -- looks ---------------------------------------------------------------------------
    def set_selected(self, number: int | None) -> None:
        self.outlines.set_selected(number)

    def set_color_by_object(self, on: bool) -> None:
        self.color_by_object = bool(on)
        self._paint_fill()
        self._paint_outlines()
        self._apply_visibility()

    def set_visible(self, visible: bool) -> None:
        self._visible = bool(visible)
        self._apply_visibility()

    def set_opacity(self, opacity: float) -> None:
        self.fill.setOpacity(opacity)

    def _apply_visibility(self) -> None:
        self.fill.setVisible(self._visible and self.color_by_object)
        self.outlines.setVisible(self._visible)
        self.ignore_item.setVisible(self._visible)

    def _colors(self) -> dict[int, QColor]:
        eff = self.effective
        if eff is None:
            return {}
        if self.color_by_object:
            return {o.number: object_color(o.number) for o in eff.objects}
        return {o.number: self.class_colors.get(o.class_id, NO_CLASS_COLOR) for o in eff.objects}

    def _paint_fill(self) -> None:
        if not self.color_by_object:
            return
        eff = self.effective
        self.fill.set_colors({o.number: object_color(o.number) for o in eff.objects} if eff else {})
        self.fill.set_label_map(None if eff is None else eff.map)

    def _paint_outlines(self, rebuild: bool = False) -> None:
        eff = self.effective
        paths = region_paths(eff.map) if rebuild and eff is not None else self.outlines.paths
        if eff is None:
            paths = {}
        self.outlines.set_outlines(paths, self._colors())
