"""Landmark tool: click the points of the current template in order."""

from __future__ import annotations

from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QKeyEvent, QMouseEvent

from tlstudio.core.annotations import OCCLUDED, SKIPPED, VISIBLE, LandmarkSet, Point
from tlstudio.core.commands import AddLandmarkSet
from tlstudio.core.errors import TlsError
from tlstudio.core.labelset import LandmarkTemplate

from ..items import Z_TOOL, LabelItem, LandmarkSetItem, point_color
from .base import Tool, ToolHost


class LandmarkTool(Tool):
    """Places one set of ``app_state.template_id``'s points, in template order.

    Left click places the next point (image px, clamped to the image); N or a right
    click skips it (visibility 0); O makes the next placed point occluded
    (visibility 1) instead of visible (2); Backspace takes back the last point;
    Esc drops the unfinished set. A label by the cursor names the next point. When
    the last point is placed or skipped, the set (class = the current class, or
    none) is added with one AddLandmarkSet command."""

    name = "landmarks"
    cursor = Qt.CursorShape.CrossCursor

    def __init__(self, view: ToolHost):
        super().__init__(view)
        self._template: LandmarkTemplate | None = None
        self._points: list[Point] = []
        self._occluded_next = False
        self._preview: LandmarkSetItem | None = None
        self._label: LabelItem | None = None
        self._cursor: QPointF | None = None

    # -- state -------------------------------------------------------------------
    @property
    def points(self) -> tuple[Point, ...]:
        """Points placed so far in the unfinished set."""
        return tuple(self._points)

    @property
    def occluded_next(self) -> bool:
        return self._occluded_next

    def busy(self) -> bool:
        return bool(self._points)

    def next_point_name(self) -> str | None:
        t = self._current_template()
        if t is None or len(self._points) >= len(t.points):
            return None
        return t.points[len(self._points)]

    def _current_template(self) -> LandmarkTemplate | None:
        tid = self.app_state.template_id
        project = self.app_state.project
        if tid is None or project is None:
            return None
        if self._template is None or self._template.id != tid:
            try:
                self._template = project.template(tid)
            except TlsError:
                return None
        return self._template

    # -- life cycle -------------------------------------------------------------
    def activate(self) -> None:
        super().activate()
        self._update_feedback()

    def cancel(self) -> bool:
        was = bool(self._points) or self._occluded_next
        self._points.clear()
        self._occluded_next = False
        self._update_feedback()
        return was

    def template_changed(self) -> None:
        self._template = None
        self.cancel()

    def leave(self) -> None:
        self._cursor = None
        if self._label is not None:
            self._label.setVisible(False)

    # -- events ------------------------------------------------------------------
    def press(self, pos: QPointF, event: QMouseEvent) -> None:
        p = self.view.navigator.clamp(pos)
        self._cursor = pos
        self._add(Point(p.x(), p.y(), OCCLUDED if self._occluded_next else VISIBLE))

    def move(self, pos: QPointF, event: QMouseEvent) -> None:
        self._cursor = pos
        self._update_label()

    def right_click(self, pos: QPointF) -> None:
        self._add(Point(0.0, 0.0, SKIPPED))

    def key_press(self, event: QKeyEvent) -> bool:
        key = event.key()
        if key == Qt.Key.Key_N:
            self._add(Point(0.0, 0.0, SKIPPED))
            return True
        if key == Qt.Key.Key_O:
            self._occluded_next = not self._occluded_next
            self._update_label()
            return True
        if key == Qt.Key.Key_Escape and self.busy():
            self.cancel()
            return True
        if key == Qt.Key.Key_Backspace and self._points:
            self._points.pop()
            self._update_feedback()
            return True
        return False

    # -- work ----------------------------------------------------------------------
    def _add(self, point: Point) -> None:
        template = self._current_template()
        if template is None:
            self.view.message.emit("Choose a landmark template before placing points.")
            return
        if self.view.image_id is None or template.id is None:  # project templates have ids
            return
        self._points.append(point)
        if point.visibility != SKIPPED:
            self._occluded_next = False  # O applies to one placed point
        if len(self._points) < len(template.points):
            self._update_feedback()
            return
        points = tuple(self._points)
        self._points.clear()
        self._occluded_next = False
        self._update_feedback()
        if all(p.visibility == SKIPPED for p in points):
            self.view.message.emit("Every point was skipped: no landmark set added.")
            return
        landmarks = LandmarkSet(template.id, points, self.app_state.landmark_class_id)
        self.view.push(AddLandmarkSet(self.view.image_id, landmarks))

    def _update_feedback(self) -> None:
        template = self._current_template()
        scene = self.view.scene()
        if self._preview is None:
            self._preview = LandmarkSetItem()
            self._preview.setZValue(Z_TOOL)
            scene.addItem(self._preview)
        if template is not None and self._points:
            color = self.view.annotations.class_color(self.app_state.landmark_class_id)
            self._preview.set_landmarks(self._points, template, color)
            self._preview.setVisible(True)
        else:
            self._preview.setVisible(False)
        self._update_label()

    def _update_label(self) -> None:
        if self._label is None:
            self._label = LabelItem(placement="cursor")
            self._label.setZValue(Z_TOOL + 1)
            self.view.scene().addItem(self._label)
        template = self._current_template()
        name = self.next_point_name()  # None when there is no template
        if (
            template is None
            or name is None
            or self._cursor is None
            or self.app_state.tool != self.name
        ):
            self._label.setVisible(False)
            return
        i = len(self._points)
        text = f"{i + 1}/{len(template.points)}  {name}"
        if self._occluded_next:
            text += "  (occluded)"
        self._label.set_text(text, point_color(i))
        self._label.setPos(self._cursor)
        self._label.setVisible(True)
