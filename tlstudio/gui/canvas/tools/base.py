"""The tool contract: the canvas forwards left-button mouse events, right clicks
and keys to the active tool, with positions in image pixel (= scene) coordinates.

Tools see the canvas only through :class:`ToolHost`, so they never import the view."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Protocol

import numpy as np
from PySide6.QtCore import QPointF, Qt, SignalInstance
from PySide6.QtGui import QKeyEvent, QMouseEvent
from PySide6.QtWidgets import QGraphicsScene, QWidget

from tlstudio.core.annotations import InstanceLayer
from tlstudio.core.commands import Command

from ..items import BrushCursorItem

if TYPE_CHECKING:
    from tlstudio.gui.canvas.annotation_layer import AnnotationLayer
    from tlstudio.gui.canvas.viewport import Viewport
    from tlstudio.gui.state import AppState


class ToolHost(Protocol):
    """The members of the canvas that tools use (positions in image pixels)."""

    app_state: AppState
    annotations: AnnotationLayer  # drawn labels, selection, mask overlay, objects
    navigator: Viewport  # image size, clamping, screen px -> image px at the zoom
    message: SignalInstance  # emit(str): a short note for the status bar

    @property
    def image_id(self) -> int | None: ...
    def scene(self) -> QGraphicsScene: ...
    def viewport(self) -> QWidget: ...
    def push(self, command: Command) -> bool: ...
    def push_mask(self, label: np.ndarray, text: str = ...) -> bool: ...
    def push_objects(self, label: np.ndarray, layer: InstanceLayer, text: str) -> bool: ...


_gestures = itertools.count(1)


def new_gesture() -> int:
    """A fresh gesture key: commands pushed with the same key merge into one undo step."""
    return next(_gestures)


class Tool:
    """Base class: every handler is a no-op. ``pos`` is always in image pixels
    (unclamped: it may lie outside the image; use :meth:`Viewport.clamp <tlstudio.gui.canvas.viewport.Viewport.clamp>`).

    The canvas calls :meth:`press`/:meth:`move`/:meth:`release` for the left
    button (``move`` also while no button is down, for hover feedback),
    :meth:`right_click` for a right click that did not become a window/level drag,
    and :meth:`key_press` before its own shortcuts (return True to consume the key).
    """

    name = ""
    cursor = Qt.CursorShape.ArrowCursor

    def __init__(self, view: ToolHost):
        self.view = view

    @property
    def app_state(self) -> AppState:
        return self.view.app_state

    # -- life cycle -------------------------------------------------------------
    def activate(self) -> None:
        """The tool became the active one."""
        self.view.viewport().setCursor(self.cursor)

    def deactivate(self) -> None:
        """Another tool takes over: drop unfinished work and feedback items."""
        self.cancel()
        self.leave()

    def cancel(self) -> bool:
        """Drop unfinished work (a drag, a half-placed set). True if there was some."""
        return False

    def busy(self) -> bool:
        """True while the tool holds unfinished work that Esc would cancel."""
        return False

    def image_changed(self) -> None:
        """A different image (or none) is shown."""
        self.cancel()

    def annotations_reloaded(self) -> None:
        """The canvas re-read the annotations from the store (after any push, undo or redo)."""

    def leave(self) -> None:
        """The mouse left the canvas: hide hover feedback."""

    # -- events ------------------------------------------------------------------
    def press(self, pos: QPointF, event: QMouseEvent) -> None:
        pass

    def move(self, pos: QPointF, event: QMouseEvent) -> None:
        pass

    def release(self, pos: QPointF, event: QMouseEvent) -> None:
        pass

    def double_click(self, pos: QPointF, event: QMouseEvent) -> None:
        """Second press of a double click; by default an ordinary press."""
        self.press(pos, event)

    def right_click(self, pos: QPointF) -> None:
        pass

    def key_press(self, event: QKeyEvent) -> bool:
        return False


class BrushCursor:
    """The round brush outline that follows the mouse over the image, for the tools that
    paint with a brush; its item is made on first use. ``pos``: the mouse in image px
    (None once it left the canvas)."""

    def __init__(self, view: ToolHost):
        self.view = view
        self.pos: QPointF | None = None
        self._item: BrushCursorItem | None = None

    def update(self, diameter: float, shown: bool, erase: bool = False) -> None:
        """Draw the outline at :attr:`pos` with ``diameter`` image px while ``shown``."""
        if self._item is None:
            self._item = BrushCursorItem()
            self.view.scene().addItem(self._item)
        pos = self.pos if shown else None
        if pos is not None:
            self._item.set_radius(diameter / 2, erase=erase)
            self._item.setPos(pos)
        self._item.setVisible(pos is not None)

    def leave(self) -> None:
        """The mouse left the canvas: hide the outline."""
        self.pos = None
        if self._item is not None:
            self._item.setVisible(False)
