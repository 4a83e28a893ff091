"""Icons: every icon the GUI names ships in the package and draws; the window shows them
(tools, modes, Predict/Accept, window icon) with the words beside them; the Mask button's
menu picks the mask mode."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QPoint, Qt, QTimer
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication, QMenu, QToolButton

from tlstudio.gui import icons
from tlstudio.gui.actions import SPECS

ROOT = Path(__file__).resolve().parents[2]


def _drawn_pixels(icon: QIcon, size: int = 24) -> int:
    image = icon.pixmap(size, size).toImage()
    return sum(
        1
        for y in range(image.height())
        for x in range(image.width())
        if image.pixelColor(x, y).alpha()
    )


def test_every_icon_the_gui_names_is_in_the_package_and_draws(qapp) -> None:
    for name in icons.ICON_NAMES:
        assert icons.icon_file(name).is_file(), (
            f"icon {name!r} missing from tlstudio/resources/icons"
        )
        assert _drawn_pixels(icons.icon(name)) > 20, f"icon {name!r} draws (almost) nothing"


def test_icon_table_names_real_actions() -> None:
    action_names = {spec.name for spec in SPECS}
    assert set(icons.ACTION_ICONS) <= action_names
    tools = {s.name for s in SPECS if s.section == "Tools"}
    assert tools <= set(icons.ACTION_ICONS), "a tool without an icon"


def test_package_icons_are_the_resources_sources() -> None:
    """resources/ holds the sources; the package carries identical copies (make_icons.py)."""
    package = ROOT / "tlstudio" / "resources" / "icons"
    for svg in sorted((ROOT / "resources" / "toolbar").glob("*.svg")):
        copy = package / svg.name
        assert copy.is_file() and copy.read_bytes() == svg.read_bytes(), (
            f"{copy} differs from {svg}: run resources/make_icons.py"
        )
    app_svg = ROOT / "resources" / "app" / "tlstudio.svg"
    assert (package / "tlstudio.svg").read_bytes() == app_svg.read_bytes()
    unused = {p.stem for p in package.glob("*.svg")} - set(icons.ICON_NAMES)
    assert not unused, f"icons no code names: {unused}"


def test_dark_palette_draws_light_outlines(qapp) -> None:
    light = icons._icon("select", False).pixmap(24, 24).toImage()
    dark = icons._icon("select", True).pixmap(24, 24).toImage()
    outline = [(x, y) for y in range(24) for x in range(24) if light.pixelColor(x, y).alpha() == 255
               and light.pixelColor(x, y).lightness() < 80]  # fmt: skip
    assert outline, "the select icon has a dark outline"
    assert all(dark.pixelColor(x, y).lightness() > 180 for x, y in outline)


def test_window_shows_icons_with_words(main_window) -> None:
    app = QApplication.instance()
    assert not app.windowIcon().isNull()
    assert app.applicationName() == "tlstudio" and app.organizationName() == "tlstudio"
    assert app.desktopFileName() == "tlstudio"
    bar = main_window.tool_bar
    assert bar.toolButtonStyle() == Qt.ToolButtonStyle.ToolButtonTextBesideIcon
    for action in bar.actions():
        if action.isSeparator():
            continue
        button = bar.widgetForAction(action)
        assert isinstance(button, QToolButton)
        assert not button.icon().isNull(), f"toolbar button {action.text()!r} has no icon"
        assert button.text().replace("&", ""), "the words stay beside the icon"
    tabs = main_window.modes
    assert all(not tabs.tabIcon(i).isNull() for i in range(tabs.count()))
    assert not main_window.predictions.predict_button.icon().isNull()
    assert not main_window.predictions.accept_button.icon().isNull()


def _click_menu_item(menu_holder: dict, text: str) -> None:
    """While a popup menu is open (it runs its own event loop), click its item ``text``."""
    from PySide6.QtTest import QTest

    menu = QApplication.activePopupWidget()
    assert isinstance(menu, QMenu), "the Mask button's menu is open"
    menu_holder["texts"] = [a.text() for a in menu.actions()]
    action = next(a for a in menu.actions() if a.text().startswith(text))
    QTest.mouseClick(menu, Qt.MouseButton.LeftButton, pos=menu.actionGeometry(action).center())


def test_mask_button_menu_picks_the_mode_and_the_tool(main_window, qtbot) -> None:
    actions, canvas = main_window.action_table, main_window.canvas
    actions["tool_select"].trigger()
    button = main_window.tool_bar.widgetForAction(actions["tool_mask"])
    assert button.popupMode() == QToolButton.ToolButtonPopupMode.MenuButtonPopup
    seen: dict = {}
    QTimer.singleShot(300, lambda: _click_menu_item(seen, "Eraser"))
    arrow = QPoint(button.width() - 4, button.height() // 2)  # the arrow part opens the menu
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton, pos=arrow)
    qtbot.waitUntil(lambda: canvas.mask_mode() == "eraser")
    assert seen["texts"] == ["Brush (M)", "Eraser (E)", "Polygon (P)"]
    assert main_window.app_state.tool == "mask"
    assert actions["tool_mask"].icon().cacheKey() == icons.icon("mask_eraser").cacheKey()
    # the canvas's own key (P) changes the mode: the button follows
    canvas.setFocus()
    qtbot.keyClick(canvas, Qt.Key.Key_P)
    assert canvas.mask_mode() == "polygon"
    assert actions["tool_mask"].icon().cacheKey() == icons.icon("mask_polygon").cacheKey()
