"""Mouse and keyboard input of the canvas: which gesture a press starts (pan, window/
level drag, right click, tool) and what each canvas key does.

:class:`CanvasInput` keeps the gesture state; :class:`~.view.CanvasView` hands it
its Qt events and falls back to QGraphicsView for what it does not take. Mouse
positions are viewport px on the event and image px for tools.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QKeyEvent, QMouseEvent, QWheelEvent

from .tools.mask import MAX_BRUSH, MIN_BRUSH

if TYPE_CHECKING:
    from .view import CanvasView

_K = Qt.Key
_B = Qt.MouseButton
TOOL_KEYS = {_K.Key_V: "select", _K.Key_B: "box", _K.Key_L: "landmarks", _K.Key_I: "objects"}
MASK_KEYS = {_K.Key_M: "brush", _K.Key_E: "eraser", _K.Key_P: "polygon"}
DIGITS = {getattr(_K, f"Key_{n}"): n for n in range(1, 10)}
PLAIN_KEYS = (
    set(TOOL_KEYS)
    | set(MASK_KEYS)
    | set(DIGITS)
    | {
        _K.Key_N, _K.Key_O, _K.Key_F, _K.Key_R, _K.Key_BracketLeft, _K.Key_BracketRight,
        _K.Key_Plus, _K.Key_Minus, _K.Key_Equal, _K.Key_Space, _K.Key_Return, _K.Key_Enter,
    }
)  # fmt: skip
"""Keys without Ctrl/Alt that the canvas takes over window shortcuts while it has focus."""


def _plain(event: QKeyEvent) -> bool:
    mods = event.modifiers() & ~Qt.KeyboardModifier.KeypadModifier
    return mods in (Qt.KeyboardModifier.NoModifier, Qt.KeyboardModifier.ShiftModifier)


class CanvasInput:
    """Routes the canvas's mouse and key events. Every ``*_press``/``*_move``/...
    returns False when the event is not the canvas's (the view passes it on)."""

    WINDOW_DRAG_PX = 4  # a right drag shorter than this is a right click
    ZOOM_STEP = 1.25  # per wheel notch and per +/- key

    def __init__(self, view: CanvasView):
        self.view = view
        self.space_down = False
        # the next press is the click that focused the canvas: tools ignore it
        self.focus_click = False
        self.mode: str | None = None  # "pan", "tool", "right", "window" or "focus"
        self._right_click_ok = True  # a right click (not a drag) reaches the tool
        self._button = _B.NoButton  # the button that started the gesture
        self._pan_last = QPointF()
        self._right_start = QPointF()

    @property
    def _has_image(self) -> bool:
        return self.view.image_id is not None

    def _pos(self, event: QMouseEvent | QWheelEvent) -> QPointF:
        return self.view.view_to_image(event.position())

    def _set_cursor(self, shape: Qt.CursorShape) -> None:
        self.view.viewport().setCursor(shape)

    # -- mouse ---------------------------------------------------------------------------
    def press(self, event: QMouseEvent) -> bool:
        button, tool = event.button(), self.view.tool
        focusing, self.focus_click = self.focus_click, False
        if self.mode is not None:
            if button != self._button and event.buttons() & self._button:
                return True  # a second button during a gesture: ignore it
            self._end_stale_gesture(event)  # its release never came (e.g. a lost grab)
        self._button = button
        if button == _B.MiddleButton or (button == _B.LeftButton and self.space_down):
            self.mode = "pan"
            self._pan_last = event.position()
            self._set_cursor(Qt.CursorShape.ClosedHandCursor)
        elif button == _B.RightButton:
            self.mode = "right"
            self._right_start = event.position()
            self._right_click_ok = not focusing
            self.view.window_level.begin_drag()
        elif button == _B.LeftButton and self._has_image:
            # a click that only brings the focus here (from the browser, a panel) must
            # not draw: the user looked at the image, they did not label it yet
            self.mode = "focus" if focusing else "tool"
            if not focusing:
                tool.press(self._pos(event), event)
        else:
            return False
        return True

    def double_click(self, event: QMouseEvent) -> bool:
        if (
            event.button() == _B.LeftButton
            and not self.space_down
            and self._has_image
            and self.mode is None
        ):
            self.mode, self._button = "tool", event.button()
            self.view.tool.double_click(self._pos(event), event)
            return True
        return self.press(event)

    def move(self, event: QMouseEvent) -> None:
        view, mode = self.view, self.mode
        pos = self._pos(event)
        if self._has_image:
            view.cursor_moved.emit(pos.x(), pos.y())
        if mode == "pan":
            d = event.position() - self._pan_last
            self._pan_last = event.position()
            view.navigator.pan_by(d.x(), d.y())
        elif mode == "focus":
            return
        elif mode in ("right", "window"):
            d = event.position() - self._right_start
            far = d.manhattanLength() >= self.WINDOW_DRAG_PX
            if mode == "right" and far and view.window_level.can_window():
                self.mode = mode = "window"
            if mode == "window":
                view.window_level.drag(d)
        elif self._has_image:
            view.tool.move(pos, event)

    def release(self, event: QMouseEvent) -> bool:
        mode, button, tool = self.mode, event.button(), self.view.tool
        if mode == "pan" and button in (_B.MiddleButton, _B.LeftButton):
            self.mode = None
            self._set_cursor(Qt.CursorShape.OpenHandCursor if self.space_down else tool.cursor)
        elif mode in ("right", "window") and button == _B.RightButton:
            self.mode = None
            if mode == "window":
                self.view.window_level.end_drag()
            elif self._has_image and self._right_click_ok:
                tool.right_click(self._pos(event))
        elif mode in ("tool", "focus") and button == _B.LeftButton:
            self.mode = None
            if mode == "tool":
                tool.release(self._pos(event), event)
        else:
            return False
        return True

    def _end_stale_gesture(self, event: QMouseEvent) -> None:
        mode, self.mode = self.mode, None
        if mode == "tool":
            self.view.tool.release(self._pos(event), event)
        elif mode == "window":
            self.view.window_level.end_drag()
        self._set_cursor(self.view.tool.cursor)

    def wheel(self, event: QWheelEvent) -> None:
        if not self._has_image:
            return
        delta = event.angleDelta().y() or event.angleDelta().x()
        if not delta:
            delta = event.pixelDelta().y()
        if delta:
            self.view.navigator.zoom_by(self.ZOOM_STEP ** (delta / 120), event.position())
        event.accept()

    # -- keys ----------------------------------------------------------------------------
    def wants_key(self, event: QKeyEvent) -> bool:
        """True for keys the canvas takes over window shortcuts (ShortcutOverride)."""
        if not _plain(event):
            return False
        key = event.key()
        if key in (_K.Key_Delete, _K.Key_Backspace, _K.Key_Escape):
            return self.view.annotations.selection is not None or self.view.tool.busy()
        return key in PLAIN_KEYS and self._has_image

    def key_press(self, event: QKeyEvent) -> bool:
        view = self.view
        if view.tool.key_press(event):
            return True
        key = event.key()
        ctrl = bool(event.modifiers() & Qt.KeyboardModifier.ControlModifier)
        if ctrl and key == _K.Key_0:
            view.fit_to_window()
        elif ctrl and key == _K.Key_1:
            view.zoom_1to1()
        elif not _plain(event):
            return False
        elif key == _K.Key_Space:
            if not event.isAutoRepeat():
                self.space_down = True
                if self.mode is None:
                    self._set_cursor(Qt.CursorShape.OpenHandCursor)
        elif key in TOOL_KEYS:
            view.app_state.set_tool(TOOL_KEYS[_K(key)])
        elif key in MASK_KEYS:
            view.set_mask_mode(MASK_KEYS[_K(key)])
            view.app_state.set_tool("mask")
        elif key in DIGITS:
            view.edits.class_key(DIGITS[_K(key)])
        elif key == _K.Key_F:
            view.fit_to_window()
        elif key in (_K.Key_Plus, _K.Key_Equal, _K.Key_Minus):
            view.navigator.zoom_by(self.ZOOM_STEP if key != _K.Key_Minus else 1 / self.ZOOM_STEP)
        elif key == _K.Key_R:
            view.reset_window()
        elif key in (_K.Key_BracketLeft, _K.Key_BracketRight):
            n = view.brush_size()
            if key == _K.Key_BracketLeft:
                view.set_brush_size(max(MIN_BRUSH, min(n - 1, round(n / 1.25))))
            else:
                view.set_brush_size(min(MAX_BRUSH, max(n + 1, round(n * 1.25))))
        elif key in (_K.Key_Delete, _K.Key_Backspace):
            return view.edits.delete_selection()
        elif key == _K.Key_Escape:
            view.annotations.clear_selection()
        else:
            return False
        return True

    def key_release(self, event: QKeyEvent) -> bool:
        if event.key() == _K.Key_Space and not event.isAutoRepeat():
            self.space_down = False
            if self.mode is None:
                self._set_cursor(self.view.tool.cursor)
            return True
        return False

    def focus_gained(self, reason: Qt.FocusReason) -> None:
        self.focus_click = reason == Qt.FocusReason.MouseFocusReason

    def focus_lost(self) -> None:
        self.space_down = False
        self.focus_click = False
