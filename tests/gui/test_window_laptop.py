"""The first hour on a laptop (issue 10), window part: the layout of each mode survives a
close in any mode, Label and Inspect fit 1280×800 (1024×700 with scrolling), mode
switches never resize the window, the Predictions dock opens with its buttons in view."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from layout_support import controls_out_of_reach
from PySide6.QtCore import QPoint, QRect, QSettings, Qt
from PySide6.QtWidgets import QApplication, QScrollArea, QWidget

from tlstudio.gui.app import create_main_window

F2, F3, F4 = Qt.Key.Key_F2, Qt.Key.Key_F3, Qt.Key.Key_F4


def _show(qtbot, root: Path | None, settings: QSettings):
    window = create_main_window(root, settings)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    window.activateWindow()  # window shortcuts (F2–F4) need the active window
    qtbot.waitUntil(lambda: QApplication.activeWindow() is window)
    return window


def _mode(qtbot, window, key: Qt.Key) -> None:
    qtbot.keyClick(window, key)
    qtbot.wait(30)  # layout requests of the page just shown


def _labelling_docks_shown(window) -> tuple[bool, bool, bool]:
    return tuple(
        d.isVisible() for d in (window.classes_dock, window.display_dock, window.predictions_dock)
    )


# -- 1: the layout of each mode survives a close in any mode -----------------------------------


@pytest.mark.parametrize("close_in", [F3, F4])
def test_closing_in_train_or_inspect_keeps_the_label_docks(qtbot, demo_dir, qsettings, close_in):
    window = _show(qtbot, demo_dir, qsettings)
    window.display_dock.toggleViewAction().trigger()  # the user closes Display in Label mode
    assert _labelling_docks_shown(window) == (True, False, True)
    _mode(qtbot, window, F3)
    window.classes_dock.toggleViewAction().trigger()  # and wants Classes beside Train
    assert _labelling_docks_shown(window) == (True, False, False)
    _mode(qtbot, window, close_in)
    window.close()

    again = _show(qtbot, demo_dir, qsettings)
    assert again.modes.currentIndex() == 0
    assert _labelling_docks_shown(again) == (True, False, True)  # as the user left Label
    _mode(qtbot, again, F3)
    assert _labelling_docks_shown(again) == (True, False, False)  # as the user left Train
    _mode(qtbot, again, F4)
    assert _labelling_docks_shown(again) == (False, False, False)  # Inspect's default
    _mode(qtbot, again, F2)
    assert _labelling_docks_shown(again) == (True, False, True)
    again.close()


# -- 2, 3: Label and Inspect fit a laptop; mode switches never resize the window -------------


def _click_tab(qtbot, tabs, index: int) -> None:
    bar = tabs.tabBar()
    qtbot.mouseClick(bar, Qt.MouseButton.LeftButton, pos=bar.tabRect(index).center())
    qtbot.wait(30)


def _plots(window) -> list[QWidget]:
    import pyqtgraph as pg

    return [p for p in window.findChildren(pg.PlotWidget) if p.isVisibleTo(window)]


@pytest.mark.usefixtures("torch_one_thread")
@pytest.mark.parametrize("size", [(1280, 800), (1024, 700)])
def test_label_and_inspect_fit_a_laptop_and_modes_keep_the_window_size(
    qtbot, trained_demo_dir, tmp_path, size
):
    root = tmp_path / "demo"
    shutil.copytree(trained_demo_dir, root)
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    window = _show(qtbot, root, settings)
    window.resize(*size)
    qtbot.waitUntil(lambda: window.size().toTuple() == size)
    sideways_ok = size[0] < 1280
    limit = QRect(0, 0, 1024, 700)
    assert limit.contains(QRect(QPoint(0, 0), window.minimumSizeHint()))

    def check(where: str) -> None:
        assert window.size().toTuple() == size, f"{where} resized the window"
        assert controls_out_of_reach(window, horizontal_scroll_ok=sideways_ok) == [], where
        assert limit.contains(QRect(QPoint(0, 0), window.minimumSizeHint())), where

    qtbot.wait(50)
    check("Label mode")
    _mode(qtbot, window, F3)  # through Train, whose panel is the widest
    window.train_panel.config.wait_ready()
    qtbot.wait(50)
    assert window.size().toTuple() == size, "Train mode resized the window"
    _mode(qtbot, window, F4)
    inspect = window.inspect_panel
    for i in range(inspect.tabs.count()):
        _click_tab(qtbot, inspect.tabs, i)
        title = inspect.tabs.tabText(i)
        view = inspect.views[title]
        if title == "Metrics":
            qtbot.mouseClick(view.evaluate_button, Qt.MouseButton.LeftButton)
            qtbot.waitUntil(lambda v=view: v.evaluation is not None, timeout=60_000)
        elif title == "Latent space":
            with qtbot.waitSignal(view.computed, timeout=60_000):
                qtbot.mouseClick(view.compute_button, Qt.MouseButton.LeftButton)
        elif title == "Explain":
            qtbot.waitUntil(lambda v=view: v.result is not None, timeout=60_000)
        qtbot.wait(50)
        check(f"Inspect → {title}")
        if size == (1280, 800) and title in ("Metrics", "Latent space"):
            plots = _plots(window)
            assert plots and min(p.width() for p in plots) >= 300, title
    _mode(qtbot, window, F3)
    _mode(qtbot, window, F2)
    qtbot.wait(50)
    check("Label mode again")
    window.close()


# -- 4: the Predictions dock opens with its Accept buttons in view ------------------------------


def test_predictions_dock_starts_with_its_accept_buttons_in_view(qtbot, main_window):
    assert main_window.height() == 800  # a fresh window (1280×800), no saved layout
    panel = main_window.predictions
    qtbot.waitUntil(lambda: panel.accept_all_button.isVisible())
    qtbot.wait(50)  # the docks are sized once the window shows
    scroll = panel.findChild(QScrollArea)
    viewport = scroll.viewport()
    for button in (panel.accept_button, panel.accept_all_button, panel.predict_button):
        where = QRect(button.mapTo(viewport, QPoint(0, 0)), button.size())
        assert viewport.rect().contains(where), button.text()
    assert scroll.verticalScrollBar().value() == 0


# -- issue 16: the window's action table no longer hides QWidget.actions() --------------------


def test_action_table_leaves_qwidget_actions_alone(qtbot, main_window):
    assert isinstance(main_window.actions(), list)  # QWidget.actions(), callable again
    undo = main_window.action_table["undo"]
    assert undo.text() == "&Undo" and not undo.isEnabled()
    main_window.addAction(undo)
    assert undo in main_window.actions()


def test_the_importer_opens_no_dialog_module():
    """The controller reports; the window shows the result (no dialogs ↔ importer cycle)."""
    import ast

    import tlstudio.gui.workers.importer as importer

    tree = ast.parse(Path(importer.__file__).read_text(encoding="utf-8"))
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not any(m and m.startswith("tlstudio.gui.panels") for m in imported), imported
