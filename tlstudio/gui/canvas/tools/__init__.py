"""Canvas tools (one class per tool) and the canvas's keyboard shortcuts."""

from .base import Tool, ToolHost, new_gesture
from .box import MIN_BOX_PX, BoxTool
from .landmark import LandmarkTool
from .mask import MASK_MODES, MaskTool
from .objects import ObjectTool
from .select import SelectTool

TOOL_CLASSES: dict[str, type[Tool]] = {
    t.name: t for t in (SelectTool, BoxTool, LandmarkTool, MaskTool, ObjectTool)
}

TOOL_SHORTCUTS: list[tuple[str, str]] = [
    ("V", "Select tool: click a box or landmark point to select it, drag to move it"),
    ("B", "Box tool: drag to draw a box of the current class"),
    ("L", "Landmark tool: click the template's points in order"),
    ("M", "Mask tool, brush: paint the current class"),
    ("E", "Mask tool, eraser: paint background"),
    ("P", "Mask tool, polygon: click the corners, then double-click or Enter to fill"),
    ("I", "Objects tool: drag paints a new object (it stays selected: drags add to it)"),
    ("Click", "Objects tool: select the object under the mouse (beside all objects: none)"),
    ("Shift+drag", "Objects tool: erase from the selected object"),
    ("[  /  ]", "Brush smaller / larger (mask and objects)"),
    ("N  or right-click", "Landmarks: skip the next point (not labelled)"),
    ("O", "Landmarks: place the next point as occluded"),
    ("Backspace", "Landmarks / polygon: take back the last point"),
    ("Enter", "Polygon: close and fill"),
    (
        "Esc",
        "Cancel the unfinished drag, landmark set or polygon; else clear the selection"
        " (objects: the next stroke paints a new object)",
    ),
    ("Shift+click", "Select tool: toggle a landmark point between visible and occluded"),
    ("Drag a handle", "Select tool: resize the selected box"),
    ("Del  /  Backspace", "Delete the selected box, landmark set or object"),
    (
        "1 … 9",
        "Tag the image with the 1st … 9th class (multi-label project: toggle it);"
        " with an object selected, give the object that class",
    ),
    ("Mouse wheel", "Zoom in / out at the cursor"),
    ("+  /  -", "Zoom in / out"),
    ("F  or  Ctrl+0", "Fit the image to the window"),
    ("Ctrl+1", "Zoom to 100 % (one image pixel per screen pixel)"),
    ("Middle drag  or  Space+drag", "Pan"),
    (
        "Right drag",
        "Window/level of 16-bit and DICOM images: horizontal = width, vertical = centre",
    ),
    ("R", "Reset window/level to the image's default"),
]
"""(key, description) for every shortcut the canvas handles, for Help → Keyboard shortcuts."""

__all__ = [
    "MASK_MODES",
    "MIN_BOX_PX",
    "TOOL_CLASSES",
    "TOOL_SHORTCUTS",
    "BoxTool",
    "LandmarkTool",
    "MaskTool",
    "ObjectTool",
    "SelectTool",
    "Tool",
    "ToolHost",
    "new_gesture",
]
