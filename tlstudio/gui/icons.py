"""The window's icons: the application icon and one icon per tool, view and mode.

The SVG files ship in the package (``tlstudio/resources/icons``, copied there from
``resources/`` by ``resources/make_icons.py``) and are read through
:mod:`importlib.resources`, so they are found in an installed wheel, an editable
checkout and the frozen build alike. :func:`decorate_window` puts them on the
window's actions, mode tabs and prediction buttons, and gives the toolbar's Mask
button a menu of the mask modes.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING

from PySide6.QtCore import QByteArray, QRectF, Qt
from PySide6.QtGui import QAction, QActionGroup, QGuiApplication, QIcon, QPainter, QPalette, QPixmap
from PySide6.QtSvg import QSvgRenderer
from PySide6.QtWidgets import QMenu, QToolBar, QToolButton

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

    from tlstudio.gui.canvas.view import CanvasView
    from tlstudio.gui.main_window import MainWindow

APP_ICON = "tlstudio"
ICON_FOLDER = ("resources", "icons")  # inside the tlstudio package
# action name (tlstudio.gui.actions.SPECS) -> icon name
ACTION_ICONS: dict[str, str] = {
    "tool_select": "select",
    "tool_box": "box",
    "tool_landmarks": "landmarks",
    "tool_mask": "mask_brush",
    "tool_objects": "objects",
    "fit": "fit",
    "zoom_1to1": "zoom_1to1",
    "mode_label": "mode_label",
    "mode_train": "mode_train",
    "mode_inspect": "mode_inspect",
}
# mask mode (tlstudio.gui.canvas.tools.MASK_MODES) -> (icon name, menu text with its key)
MASK_MODE_ITEMS: dict[str, tuple[str, str]] = {
    "brush": ("mask_brush", "Brush (M)"),
    "eraser": ("mask_eraser", "Eraser (E)"),
    "polygon": ("mask_polygon", "Polygon (P)"),
}
PREDICT_ICON, ACCEPT_ICON = "predict", "accept"
ICON_NAMES = (
    *ACTION_ICONS.values(),
    *(name for name, _text in MASK_MODE_ITEMS.values()),
    PREDICT_ICON,
    ACCEPT_ICON,
    APP_ICON,
)
# The SVGs draw outlines in INK; on a dark palette it becomes INK_ON_DARK so they stay visible.
INK, INK_ON_DARK = "#2f3b45", "#dde3e8"
PIXMAP_SIZES = (16, 20, 24, 32, 48, 64, 128, 256)  # px; Qt picks and scales the nearest


def icon_file(name: str) -> Traversable:
    """The packaged SVG of icon ``name`` (may not exist: check ``.is_file()``)."""
    return resources.files("tlstudio").joinpath(*ICON_FOLDER, f"{name}.svg")


def _dark_palette() -> bool:
    app = QGuiApplication.instance()
    if app is None:
        return False
    window = QGuiApplication.palette().color(QPalette.ColorRole.Window)
    return window.lightness() < 128


@cache
def _icon(name: str, dark: bool) -> QIcon:
    data = icon_file(name).read_bytes()
    if dark:
        data = data.replace(INK.encode(), INK_ON_DARK.encode())
    renderer = QSvgRenderer(QByteArray(data))
    if not renderer.isValid():
        raise ValueError(f"icon {name!r}: {icon_file(name)} is not a valid SVG")
    out = QIcon()
    for size in PIXMAP_SIZES:
        pixmap = QPixmap(size, size)
        pixmap.fill(Qt.GlobalColor.transparent)
        painter = QPainter(pixmap)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        renderer.render(painter, QRectF(0, 0, size, size))
        painter.end()
        out.addPixmap(pixmap)
    return out


def icon(name: str) -> QIcon:
    """Icon ``name`` (one of :data:`ICON_NAMES`), drawn for the current palette (light or
    dark). Raises FileNotFoundError when the package lacks it."""
    return _icon(name, _dark_palette())


def app_icon() -> QIcon:
    """The application icon (window title bar, task switcher, About box)."""
    return icon(APP_ICON)


def decorate_window(window: MainWindow, modes: Sequence[str] = ()) -> None:
    """Put the icons on ``window`` (a :class:`~tlstudio.gui.main_window.MainWindow`): its
    actions, the toolbars (text beside the icon, so the words stay), the mode tabs
    (``modes``: action names in tab order), the Predict/Accept buttons; and the Mask
    tool's button gets a menu of the mask modes."""
    actions = window.action_table
    for name, icon_name in ACTION_ICONS.items():
        actions[name].setIcon(icon(icon_name))
    for bar in window.findChildren(QToolBar):
        bar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
    for index, name in enumerate(modes):
        window.modes.setTabIcon(index, actions[name].icon())
    predictions = window.predictions
    predictions.predict_button.setIcon(icon(PREDICT_ICON))
    for widget in (predictions.accept_action, predictions.accept_button,
                   predictions.accept_all_button):  # fmt: skip
        widget.setIcon(icon(ACCEPT_ICON))
    _add_mask_mode_menu(window)


def _add_mask_mode_menu(window: MainWindow) -> None:
    """The Mask button opens the mask tool; its arrow picks brush, eraser or polygon (the
    canvas's M/E/P keys). The button shows the current mode's icon."""
    mask_action = window.action_table["tool_mask"]
    button = window.tool_bar.widgetForAction(mask_action)
    if not isinstance(button, QToolButton):
        return  # the action has no toolbar button
    canvas = window.canvas
    menu = QMenu(button)
    menu.setObjectName("maskModeMenu")
    group = QActionGroup(menu)
    by_mode: dict[str, QAction] = {}
    for mode, (icon_name, text) in MASK_MODE_ITEMS.items():
        act = menu.addAction(icon(icon_name), text)
        act.setObjectName(f"action_mask_{mode}")
        act.setCheckable(True)
        group.addAction(act)
        act.triggered.connect(lambda _=False, mode=mode: _choose_mask_mode(window, canvas, mode))
        by_mode[mode] = act

    def show_mode(mode: str) -> None:
        by_mode[mode].setChecked(True)
        mask_action.setIcon(icon(MASK_MODE_ITEMS[mode][0]))

    canvas.mask_mode_changed.connect(show_mode)
    show_mode(canvas.mask_mode())
    button.setMenu(menu)
    button.setPopupMode(QToolButton.ToolButtonPopupMode.MenuButtonPopup)


def _choose_mask_mode(window: MainWindow, canvas: CanvasView, mode: str) -> None:
    canvas.set_mask_mode(mode)
    window.app_state.set_tool("mask")
