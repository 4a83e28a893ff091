"""Box tool: drag to draw a box of the current class."""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QKeyEvent, QMouseEvent
from PySide6.QtWidgets import QGraphicsRectItem

from tlstudio.core.annotations import Box
from tlstudio.core.commands import AddBox

from ..items import Z_TOOL, cosmetic_pen
from .base import Tool, ToolHost

MIN_BOX_PX = 2  # boxes narrower or lower than this (image px) are not drawn


def snapped_rect(a: QPointF, b: QPointF) -> QRectF:
    """The rectangle spanned by ``a`` and ``b`` (image px) with corners rounded to pixel edges."""
    x1, x2 = sorted((round(a.x()), round(b.x())))
    y1, y2 = sorted((round(a.y()), round(b.y())))
    return QRectF(x1, y1, x2 - x1, y2 - y1)


class BoxTool(Tool):
    """Drag from corner to corner. The box takes ``app_state.class_id``, is clamped
    to the image and snapped to whole pixels; drags under 2 px either way are ignored."""

    name = "box"
    cursor = Qt.CursorShape.CrossCursor

    def __init__(self, view: ToolHost):
        super().__init__(view)
        self._start: QPointF | None = None
        self._preview: QGraphicsRectItem | None = None

    def busy(self) -> bool:
        return self._start is not None

    def press(self, pos: QPointF, event: QMouseEvent) -> None:
        if self.app_state.class_id is None:
            self.view.message.emit("Choose a class before drawing a box.")
            return
        self._start = self.view.navigator.clamp(pos)
        if self._preview is None:
            self._preview = QGraphicsRectItem()
            self._preview.setZValue(Z_TOOL)
            self.view.scene().addItem(self._preview)
        color = self.view.annotations.class_color(self.app_state.class_id)
        self._preview.setPen(cosmetic_pen(color, 2, Qt.PenStyle.DashLine))
        self._preview.setRect(QRectF(self._start, self._start))
        self._preview.setVisible(True)

    def move(self, pos: QPointF, event: QMouseEvent) -> None:
        if self._start is not None and self._preview is not None:
            self._preview.setRect(snapped_rect(self._start, self.view.navigator.clamp(pos)))

    def release(self, pos: QPointF, event: QMouseEvent) -> None:
        if self._start is None:
            return
        rect = snapped_rect(self._start, self.view.navigator.clamp(pos))
        self.cancel()
        image_id, class_id = self.view.image_id, self.app_state.class_id
        if image_id is None or class_id is None:
            return
        if rect.width() < MIN_BOX_PX or rect.height() < MIN_BOX_PX:
            return
        box = Box(class_id, rect.left(), rect.top(), rect.right(), rect.bottom())
        self.view.push(AddBox(image_id, box))

    def cancel(self) -> bool:
        was = self._start is not None
        self._start = None
        if self._preview is not None:
            self._preview.setVisible(False)
        return was

    def key_press(self, event: QKeyEvent) -> bool:
        if event.key() == Qt.Key.Key_Escape and self.busy():
            self.cancel()
            return True
        return False
