"""Mask tool: paint, erase or fill polygons in the image's label map."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QKeyEvent, QMouseEvent

from ..items import PolygonPreviewItem
from ..raster import fill_polygon, paint_segment
from .base import BrushCursor, Tool, ToolHost

MASK_MODES = ("brush", "eraser", "polygon")
MIN_BRUSH, MAX_BRUSH = 1, 1000


class MaskTool(Tool):
    """Edits the label map (H×W, pixel = class id, 0 = background) of the shown image.

    ``brush`` paints ``app_state.class_id`` with a round brush of :attr:`brush_size`
    image px (diameter; a pixel is painted when its centre is within half of it of
    the mouse path); ``eraser`` paints 0; ``polygon``: clicks add vertices, a
    double click or Enter fills the polygon with the current class, Backspace
    removes the last vertex, Esc drops it. A stroke or a fill is pushed as one
    undo step when it ends (mouse release / close); the store gets it from the
    canvas's MaskWriter, encoded off the GUI thread.
    During a stroke only the touched rectangle of the overlay is redrawn."""

    name = "mask"
    cursor = Qt.CursorShape.CrossCursor

    def __init__(self, view: ToolHost):
        super().__init__(view)
        self.mode = "brush"
        self.brush_size = 20
        self._label: np.ndarray | None = None  # working copy of the label map during a stroke
        self._last: QPointF | None = None
        self._value = 0
        self._vertices: list[QPointF] = []
        self._brush = BrushCursor(view)
        self._polygon_item: PolygonPreviewItem | None = None

    # -- settings -------------------------------------------------------------------
    def set_mode(self, mode: str) -> None:
        if mode not in MASK_MODES:
            raise ValueError(f"unknown mask mode {mode!r}; expected one of {MASK_MODES}")
        if mode != self.mode:
            self.cancel()
            self.mode = mode
        self._update_cursor()

    def set_brush_size(self, size: int) -> None:
        self.brush_size = int(min(max(size, MIN_BRUSH), MAX_BRUSH))
        self._update_cursor()

    def busy(self) -> bool:
        return self._label is not None or bool(self._vertices)

    # -- life cycle -------------------------------------------------------------------
    def activate(self) -> None:
        super().activate()
        self._update_cursor()

    def cancel(self) -> bool:
        was = self.busy()
        if self._label is not None:
            self._label = None
            self._last = None
            self.view.annotations.refresh_mask()  # put back the stored map
        self._vertices.clear()
        self._update_polygon()
        return was

    def annotations_reloaded(self) -> None:
        if self._label is not None:  # the store changed mid-stroke (undo from the menu)
            self._label = None
            self._last = None

    def leave(self) -> None:
        self._brush.leave()

    # -- events ----------------------------------------------------------------------
    def press(self, pos: QPointF, event: QMouseEvent) -> None:
        if self.view.image_id is None:
            return
        class_id = self.app_state.class_id
        if self.mode != "eraser" and class_id is None:
            self.view.message.emit("Choose a class before painting a mask.")
            return
        if self.mode == "polygon":
            self._vertices.append(self.view.navigator.clamp(pos))
            self._update_polygon()
            return
        self._label = label = self.view.annotations.editable_mask()
        self._value = 0 if self.mode == "eraser" or class_id is None else int(class_id)
        self._last = pos
        self._paint(label, pos, pos)

    def move(self, pos: QPointF, event: QMouseEvent) -> None:
        self._brush.pos = pos
        self._update_cursor()
        if self._label is not None and self._last is not None:
            self._paint(self._label, self._last, pos)
            self._last = pos
        elif self._vertices:
            self._update_polygon()

    def release(self, pos: QPointF, event: QMouseEvent) -> None:
        if self._label is None:
            return
        label, self._label, self._last = self._label, None, None
        text = "Erase mask" if self._value == 0 else "Paint mask"
        self.view.push_mask(label, text)

    def double_click(self, pos: QPointF, event: QMouseEvent) -> None:
        if self.mode == "polygon":
            self.close_polygon()
        else:
            self.press(pos, event)

    def key_press(self, event: QKeyEvent) -> bool:
        key = event.key()
        if self.mode == "polygon" and self._vertices:
            if key in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
                self.close_polygon()
                return True
            if key == Qt.Key.Key_Backspace:
                self._vertices.pop()
                self._update_polygon()
                return True
        if key == Qt.Key.Key_Escape and self.busy():
            self.cancel()
            return True
        return False

    # -- work ------------------------------------------------------------------------
    def close_polygon(self) -> None:
        """Fill the polygon drawn so far with the current class (needs 3 vertices)."""
        vertices, self._vertices = self._vertices, []
        self._update_polygon()
        class_id = self.app_state.class_id
        if len(vertices) < 3 or class_id is None or self.view.image_id is None:
            if vertices:
                self.view.message.emit("A polygon needs at least 3 points.")
            return
        label = self.view.annotations.editable_mask()
        rect = fill_polygon(label, [(v.x(), v.y()) for v in vertices], int(class_id))
        if rect is None:
            return
        self.view.annotations.mask_item.update_region(label, rect)
        self.view.push_mask(label, "Fill polygon")

    def _paint(self, label: np.ndarray, a: QPointF, b: QPointF) -> None:
        """Paint the stroke segment a→b (image px) into ``label``, the stroke's working copy."""
        rect = paint_segment(
            label, (a.x(), a.y()), (b.x(), b.y()), self.brush_size / 2, self._value
        )
        if rect is not None:
            self.view.annotations.mask_item.update_region(label, rect)

    def _update_cursor(self) -> None:
        shown = self.mode in ("brush", "eraser") and self.app_state.tool == self.name
        self._brush.update(self.brush_size, shown, erase=self.mode == "eraser")

    def _update_polygon(self) -> None:
        if self._polygon_item is None:
            self._polygon_item = PolygonPreviewItem()
            self.view.scene().addItem(self._polygon_item)
        if not self._vertices:
            self._polygon_item.setVisible(False)
            return
        color = self.view.annotations.class_color(self.app_state.class_id)
        self._polygon_item.set_polygon(self._vertices, self._brush.pos, color)
        self._polygon_item.setVisible(True)
