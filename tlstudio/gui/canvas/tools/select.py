"""Select tool: pick, move and resize boxes; pick, drag and toggle landmark points."""

from __future__ import annotations

from dataclasses import dataclass, replace

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QKeyEvent, QMouseEvent

from tlstudio.core.annotations import OCCLUDED, VISIBLE, Box, LandmarkSet, Point
from tlstudio.core.commands import EditBox, EditLandmarkSet, move_point

from .base import Tool, ToolHost, new_gesture
from .box import MIN_BOX_PX

# which box edges each handle moves (left, top, right, bottom); see BoxItem
_HANDLE_EDGES = {
    0: (True, True, False, False),
    1: (False, True, False, False),
    2: (False, True, True, False),
    3: (False, False, True, False),
    4: (False, False, True, True),
    5: (False, False, False, True),
    6: (True, False, False, True),
    7: (True, False, False, False),
}
_HANDLE_CURSORS = {
    0: Qt.CursorShape.SizeFDiagCursor,
    4: Qt.CursorShape.SizeFDiagCursor,
    2: Qt.CursorShape.SizeBDiagCursor,
    6: Qt.CursorShape.SizeBDiagCursor,
    1: Qt.CursorShape.SizeVerCursor,
    5: Qt.CursorShape.SizeVerCursor,
    3: Qt.CursorShape.SizeHorCursor,
    7: Qt.CursorShape.SizeHorCursor,
}


@dataclass
class _Drag:
    kind: str  # "move", "resize" or "point"
    start: QPointF  # press position, image px
    gesture: int
    box: Box | None = None  # box as stored at the press
    handle: int | None = None
    landmarks: LandmarkSet | None = None  # set as stored at the press
    point: int | None = None
    new_box: Box | None = None
    new_landmarks: LandmarkSet | None = None


def moved_box(box: Box, dx: float, dy: float, width: int, height: int) -> Box:
    """``box`` shifted by whole pixels (dx, dy rounded), kept inside a width×height image."""
    w, h = box.x2 - box.x1, box.y2 - box.y1
    x1 = min(max(box.x1 + round(dx), 0.0), max(width - w, 0.0))
    y1 = min(max(box.y1 + round(dy), 0.0), max(height - h, 0.0))
    return replace(box, x1=x1, y1=y1, x2=x1 + w, y2=y1 + h)


def resized_box(box: Box, handle: int, pos: QPointF, width: int, height: int) -> Box:
    """``box`` with the edges of ``handle`` moved to ``pos`` (rounded to pixel edges),
    inside the image and at least MIN_BOX_PX wide and high (edges never cross)."""
    left, top, right, bottom = _HANDLE_EDGES[handle]
    x = min(max(round(pos.x()), 0), width)
    y = min(max(round(pos.y()), 0), height)
    x1, y1, x2, y2 = box.xyxy
    if left:
        x1 = min(x, x2 - MIN_BOX_PX)
    if right:
        x2 = max(x, x1 + MIN_BOX_PX)
    if top:
        y1 = min(y, y2 - MIN_BOX_PX)
    if bottom:
        y2 = max(y, y1 + MIN_BOX_PX)
    return replace(box, x1=float(x1), y1=float(y1), x2=float(x2), y2=float(y2))


class SelectTool(Tool):
    """Click selects a box or a landmark point; dragging moves it, dragging one of
    the selected box's handles resizes it. Shift+click on a point toggles it between
    visible and occluded. Every drag is pushed as one command at release (its own
    gesture key, so it is one undo step); Esc during a drag puts things back."""

    name = "select"
    cursor = Qt.CursorShape.ArrowCursor
    POINT_PX = 8  # pick radius around a landmark point, screen px
    BOX_EDGE_PX = 3  # slack around a box's edges when picking it, screen px
    HANDLE_PX = 7  # pick half-size around a handle, screen px

    def __init__(self, view: ToolHost):
        super().__init__(view)
        self._drag: _Drag | None = None

    def busy(self) -> bool:
        return self._drag is not None

    # -- events -------------------------------------------------------------------
    def press(self, pos: QPointF, event: QMouseEvent) -> None:
        view, layer = self.view, self.view.annotations
        sel = layer.selection
        if sel is not None and sel.kind == "box":
            item = layer.box_item(sel.id)
            if item is not None and item.box is not None:
                handle = item.handle_at(pos, view.navigator.screen_to_image(self.HANDLE_PX))
                if handle is not None:
                    self._drag = _Drag("resize", pos, new_gesture(), box=item.box, handle=handle)
                    return
        hit = layer.landmark_point_at(pos, view.navigator.screen_to_image(self.POINT_PX))
        hit_item = layer.landmark_item(hit[0]) if hit is not None else None
        if hit is not None and hit_item is not None and hit_item.landmarks is not None:
            set_id, index = hit
            landmarks = hit_item.landmarks
            layer.select_landmarks(set_id, index)
            if event.modifiers() & Qt.KeyboardModifier.ShiftModifier:
                self._toggle_occluded(landmarks, index)
                return
            self._drag = _Drag("point", pos, new_gesture(), landmarks=landmarks, point=index)
            return
        box_id = layer.box_at(pos, view.navigator.screen_to_image(self.BOX_EDGE_PX))
        if box_id is not None:
            layer.select_box(box_id)
            item = layer.box_item(box_id)
            if item is not None and item.box is not None:  # box_at picks only drawn boxes
                self._drag = _Drag("move", pos, new_gesture(), box=item.box)
            return
        layer.set_selection(None)

    def move(self, pos: QPointF, event: QMouseEvent) -> None:
        drag = self._drag
        if drag is None:
            self._hover(pos)
            return
        w, h = self.view.navigator.image_size
        # each kind of drag is made (in press) with the fields it uses
        if drag.kind == "move" and drag.box is not None:
            d = pos - drag.start
            drag.new_box = moved_box(drag.box, d.x(), d.y(), w, h)
            self._preview_box(drag.new_box)
        elif drag.kind == "resize" and drag.box is not None and drag.handle is not None:
            drag.new_box = resized_box(drag.box, drag.handle, pos, w, h)
            self._preview_box(drag.new_box)
        elif drag.kind == "point" and drag.landmarks is not None and drag.point is not None:
            p = self.view.navigator.clamp(pos)
            old = drag.landmarks.points[drag.point]
            drag.new_landmarks = move_point(
                drag.landmarks, drag.point, Point(p.x(), p.y(), old.visibility)
            )
            set_id = drag.landmarks.id
            item = self.view.annotations.landmark_item(set_id) if set_id is not None else None
            if item is not None:
                item.set_points(drag.new_landmarks.points)

    def release(self, pos: QPointF, event: QMouseEvent) -> None:
        drag, self._drag = self._drag, None
        if drag is None:
            return
        if drag.new_box is not None and drag.new_box != drag.box:
            self.view.push(EditBox(drag.new_box, gesture=drag.gesture))
        elif drag.new_landmarks is not None and drag.new_landmarks != drag.landmarks:
            self.view.push(
                EditLandmarkSet(drag.new_landmarks, gesture=drag.gesture, text="Move landmark")
            )
        else:
            self.view.annotations.refresh_items()  # a drag that changed nothing: drop its feedback

    def key_press(self, event: QKeyEvent) -> bool:
        if event.key() == Qt.Key.Key_Escape and self._drag is not None:
            self.cancel()
            return True
        return False

    def cancel(self) -> bool:
        if self._drag is None:
            return False
        self._drag = None
        self.view.annotations.refresh_items()
        return True

    def annotations_reloaded(self) -> None:
        # the store changed under a drag (an undo from the menu): the drag's start is stale
        self._drag = None

    # -- helpers -----------------------------------------------------------------
    def _toggle_occluded(self, landmarks: LandmarkSet, index: int) -> None:
        p = landmarks.points[index]
        vis = OCCLUDED if p.visibility == VISIBLE else VISIBLE
        new = move_point(landmarks, index, Point(p.x, p.y, vis))
        text = "Mark landmark occluded" if vis == OCCLUDED else "Mark landmark visible"
        self.view.push(EditLandmarkSet(new, gesture=new_gesture(), text=text))

    def _preview_box(self, box: Box) -> None:
        item = self.view.annotations.box_item(box.id) if box.id is not None else None
        if item is not None:
            item.set_preview_rect(QRectF(QPointF(box.x1, box.y1), QPointF(box.x2, box.y2)))

    def _hover(self, pos: QPointF) -> None:
        view, layer = self.view, self.view.annotations
        shape = Qt.CursorShape.ArrowCursor
        sel = layer.selection
        handle = None
        if sel is not None and sel.kind == "box":
            item = layer.box_item(sel.id)
            if item is not None:
                handle = item.handle_at(pos, view.navigator.screen_to_image(self.HANDLE_PX))
        if handle is not None:
            shape = _HANDLE_CURSORS[handle]
        elif (
            layer.landmark_point_at(pos, view.navigator.screen_to_image(self.POINT_PX)) is not None
        ):
            shape = Qt.CursorShape.PointingHandCursor
        elif layer.box_at(pos, view.navigator.screen_to_image(self.BOX_EDGE_PX)) is not None:
            shape = Qt.CursorShape.SizeAllCursor
        if view.viewport().cursor().shape() != shape:
            view.viewport().setCursor(shape)
