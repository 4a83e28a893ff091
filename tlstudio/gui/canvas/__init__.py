"""The labelling canvas: :class:`CanvasView` with its items and tools.

Scene coordinates are image pixel coordinates throughout (see :mod:`.view`)."""

from .items import BoxItem, LandmarkSetItem, MaskOverlayItem
from .tools import TOOL_SHORTCUTS, BoxTool, LandmarkTool, MaskTool, SelectTool, Tool
from .view import CanvasView, Selection

__all__ = [
    "TOOL_SHORTCUTS",
    "BoxItem",
    "BoxTool",
    "CanvasView",
    "LandmarkSetItem",
    "LandmarkTool",
    "MaskOverlayItem",
    "MaskTool",
    "Selection",
    "SelectTool",
    "Tool",
]
