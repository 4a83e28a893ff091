"""Objects tool: paint objects (instances), one at a time, with the round brush.

- a drag paints a new object of the current class; the new object stays selected, so the
  next strokes add to it (Esc, or a click beside it, and the next stroke starts another);
- with an object selected, a drag adds to it (its pixels leave the objects that had them);
  Shift+drag takes pixels out of it;
- a click selects the object under the mouse (or nothing); Delete deletes the selected one,
  1–9 give it the n-th class (see ``LabelEdits.class_key``).

Each stroke is one undo step. Positions are image pixels; the brush is the mask tool's
(size in image px, ``[`` / ``]``). While a stroke is drawn only the overlay's touched
rectangle is redrawn; at release the new label map and object map are computed here
(numpy, whole image) and the MaskWriter encodes and stores both in its thread.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QKeyEvent, QMouseEvent

from tlstudio.core.annotations import InstanceLayer
from tlstudio.core.instances import grow_object, new_object, shrink_object

from ..raster import paint_segment
from .base import BrushCursor, Tool, ToolHost

CLICK_PX = 3  # a press that moves less than this (screen px) before release is a click


class ObjectTool(Tool):
    """Paints, selects and deletes objects (see the module doc)."""

    name = "objects"
    cursor = Qt.CursorShape.CrossCursor

    def __init__(self, view: ToolHost):
        super().__init__(view)
        self.brush_size = 20
        self._press: QPointF | None = None  # press position (viewport px) while down
        self._erase = False
        self._region: np.ndarray | None = None  # uint8 H×W stroke pixels while painting
        self._label: np.ndarray | None = None  # label map with the stroke's feedback
        self._original: np.ndarray | None = None  # the label map before the stroke
        self._last: QPointF | None = None
        self._rect: tuple[int, int, int, int] | None = None  # the stroke's bounding box
        self._brush = BrushCursor(view)

    def set_brush_size(self, size: int) -> None:
        self.brush_size = int(size)
        self._update_cursor()

    def busy(self) -> bool:
        return self._press is not None

    # -- life cycle ---------------------------------------------------------------------
    def activate(self) -> None:
        super().activate()
        self._update_cursor()

    def cancel(self) -> bool:
        was = self.busy()
        if self._region is not None:
            self.view.annotations.refresh_mask()  # drop the stroke's feedback
        self._press = self._region = self._label = self._original = self._last = None
        return was

    def annotations_reloaded(self) -> None:
        if self._region is not None:  # the store changed mid-stroke (undo from the menu)
            self._press = self._region = self._label = self._original = self._last = None

    def leave(self) -> None:
        self._brush.leave()

    # -- events ---------------------------------------------------------------------------
    def press(self, pos: QPointF, event: QMouseEvent) -> None:
        if self.view.image_id is None:
            return
        self._press = event.position()
        self._erase = bool(event.modifiers() & Qt.KeyboardModifier.ShiftModifier)
        self._last = pos

    def move(self, pos: QPointF, event: QMouseEvent) -> None:
        self._brush.pos = pos
        self._update_cursor()
        if self._press is None:
            return
        if self._region is None:
            if (event.position() - self._press).manhattanLength() < CLICK_PX:
                return
            if not self._start():
                self._press = None
                return
        self._paint(self._last or pos, pos)
        self._last = pos

    def release(self, pos: QPointF, event: QMouseEvent) -> None:
        if self._press is None:
            return
        if self._region is None:  # a click
            self._press = None
            number = self.view.annotations.objects.number_at(pos.x(), pos.y())
            if number:
                self.view.annotations.select_object(number)
            else:
                self.view.annotations.clear_selection()
            return
        self._paint(self._last or pos, pos)
        rect, original = self._rect, self._original
        region = None
        if rect is not None:
            x0, y0, x1, y1 = rect
            region = self._region[y0:y1, x0:x1].astype(bool)
        self.cancel_feedback()
        if rect is None or region is None:
            self.view.annotations.refresh_mask()
            return
        self._commit(region, rect, original)

    def key_press(self, event: QKeyEvent) -> bool:
        if event.key() == Qt.Key.Key_Escape and self.busy():
            self.cancel()
            return True
        return False

    # -- work ----------------------------------------------------------------------------
    def _start(self) -> bool:
        """Begin painting a stroke; False (with a note) when it cannot be one."""
        layer = self.view.annotations
        selected = layer.selected_object()
        if self._erase and selected is None:
            self.view.message.emit("Select an object to erase from (click it), then Shift+drag.")
            return False
        if selected is None and self.app_state.class_id is None:
            self.view.message.emit("Choose a class before painting an object.")
            return False
        w, h = layer.size
        self._region = np.zeros((h, w), np.uint8)
        self._original = layer.label_map()
        self._label = layer.editable_mask()
        self._rect = None
        return True

    def _paint(self, a: QPointF, b: QPointF) -> None:
        if self._region is None or self._label is None:
            return
        rect = paint_segment(self._region, (a.x(), a.y()), (b.x(), b.y()), self.brush_size / 2, 1)
        if rect is None:
            return
        x0, y0, x1, y1 = rect
        if self._rect is not None:
            a0, b0, a1, b1 = self._rect
            self._rect = (min(a0, x0), min(b0, y0), max(a1, x1), max(b1, y1))
        else:
            self._rect = rect
        layer = self.view.annotations
        hit = self._region[y0:y1, x0:x1].astype(bool)
        before = (
            self._original[y0:y1, x0:x1]
            if self._original is not None
            else np.zeros(hit.shape, np.uint16)
        )
        selected = layer.selected_object()
        if self._erase and selected is not None:
            mine = layer.objects.object_window(selected, rect)
            self._label[y0:y1, x0:x1] = np.where(hit & mine, 0, before)
        else:
            value = self._stroke_class()
            self._label[y0:y1, x0:x1] = np.where(hit, value, before)
        layer.mask_item.update_region(self._label, rect)

    def _stroke_class(self) -> int:
        layer = self.view.annotations
        inst = layer.objects.object(layer.selected_object())
        return inst.class_id if inst is not None else int(self.app_state.class_id or 0)

    def cancel_feedback(self) -> None:
        """End the stroke (its feedback stays until the canvas shows the edit)."""
        self._press = self._region = self._label = self._original = self._last = None

    def _commit(
        self, region: np.ndarray, rect: tuple[int, int, int, int], original: np.ndarray | None
    ) -> None:
        """Push the stroke: ``region`` (bool) covers columns x0:x1, rows y0:y1 of ``rect``;
        the edit touches only that window of the (copied) maps."""
        view = self.view
        layer = view.annotations
        if not region.any():
            layer.refresh_mask()
            return
        w, h = layer.size
        label = np.zeros((h, w), np.uint16) if original is None else original.copy()
        objects = layer.objects.editable(layer.size)
        x0, y0, x1, y1 = rect
        window = label[y0:y1, x0:x1]  # views: the pure edits write through them
        part = InstanceLayer(objects.map[y0:y1, x0:x1], objects.objects)
        selected = layer.selected_object()
        if selected is not None and not layer.objects.has_object(selected):
            selected = None
        if selected is None:
            class_id = self.app_state.class_id
            if class_id is None:
                layer.refresh_mask()
                return
            part, inst = new_object(window, part, int(class_id), region)
            if view.push_objects(label, InstanceLayer(objects.map, part.objects), "New object"):
                layer.select_object(inst.number)
            return
        if self._erase:
            part, text = shrink_object(window, part, selected, region), "Erase from object"
        else:
            part, text = grow_object(window, part, selected, region), "Add to object"
        view.push_objects(label, InstanceLayer(objects.map, part.objects), text)

    def _update_cursor(self) -> None:
        self._brush.update(self.brush_size, self.app_state.tool == self.name)
