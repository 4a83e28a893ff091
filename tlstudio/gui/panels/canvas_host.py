"""The centre of the Label mode: the annotation canvas and its keyboard shortcuts.

Imports the canvas directly: a canvas that fails to import stops the window from
opening with the error, instead of hiding it behind a stand-in."""

from __future__ import annotations

from tlstudio.gui.canvas import TOOL_SHORTCUTS, CanvasView
from tlstudio.gui.canvas.window_level import WINDOW_SHORTCUTS
from tlstudio.gui.state import AppState


def tool_shortcuts() -> list[tuple[str, str]]:
    """(key, description) of every key the canvas handles, for the shortcuts dialog."""
    return [(str(k), str(d)) for k, d in (*TOOL_SHORTCUTS, *WINDOW_SHORTCUTS)]


def create_canvas(app_state: AppState) -> CanvasView:
    """The labelling canvas following ``app_state``."""
    return CanvasView(app_state)
