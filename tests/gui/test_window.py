"""The main window: opening projects, keys, undo, imports, missing files, settings."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QAction, QDropEvent, QKeySequence
from PySide6.QtWidgets import QApplication, QInputDialog, QMessageBox

from tlstudio.core.project import Project
from tlstudio.gui.app import create_main_window


def _active(qtbot, window) -> None:
    window.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is window, timeout=2000)


def _wait_idle(qtbot, window) -> None:
    qtbot.waitUntil(lambda: not window.importer.busy, timeout=10000)


# -- opening ---------------------------------------------------------------------------------


def test_open_demo_project_shows_name_rows_and_first_image(main_window, demo_dir):
    assert main_window.windowTitle() == "demo — tlstudio"
    assert main_window.app_state.project.root == demo_dir.resolve()
    assert main_window.browser.model.rowCount() == 6
    first = main_window.app_state.project.image_ids()[0]
    assert main_window.app_state.image_id == first
    assert main_window.browser.count_label.text() == "6 images"


def test_open_a_folder_that_is_no_project_shows_a_message(qtbot, tmp_path, qsettings):
    window = create_main_window(tmp_path / "nothing here", qsettings)
    qtbot.addWidget(window)
    assert window.app_state.project is None
    assert window.windowTitle() == "tlstudio"
    boxes = [b for b in window.findChildren(QMessageBox) if b.isVisible()]
    assert boxes and "nothing here" in boxes[0].text()
    window.close()


def test_close_project_clears_title_and_browser(qtbot, main_window):
    main_window.action_table["close_project"].trigger()
    assert main_window.app_state.project is None
    assert main_window.windowTitle() == "tlstudio"
    assert main_window.browser.model.rowCount() == 0
    assert not main_window.action_table["import_images"].isEnabled()


# -- keys --------------------------------------------------------------------------------------


def test_next_and_previous_image_keys(qtbot, main_window):
    _active(qtbot, main_window)
    ids = main_window.app_state.project.image_ids()
    view = main_window.browser.view
    view.setFocus()
    assert main_window.app_state.image_id == ids[0]
    qtbot.keyClick(view, Qt.Key.Key_PageDown)
    assert main_window.app_state.image_id == ids[1]
    qtbot.keyClick(view, Qt.Key.Key_Right, Qt.KeyboardModifier.ControlModifier)
    assert main_window.app_state.image_id == ids[2]
    qtbot.keyClick(view, Qt.Key.Key_PageUp)
    assert main_window.app_state.image_id == ids[1]
    qtbot.keyClick(view, Qt.Key.Key_Left, Qt.KeyboardModifier.ControlModifier)
    qtbot.keyClick(view, Qt.Key.Key_Left, Qt.KeyboardModifier.ControlModifier)  # stays at the start
    assert main_window.app_state.image_id == ids[0]
    assert view.currentIndex().row() == 0


def test_tool_keys_and_toolbar_set_the_tool(qtbot, main_window):
    _active(qtbot, main_window)
    state = main_window.app_state
    main_window.browser.view.setFocus()
    qtbot.keyClick(main_window.browser.view, Qt.Key.Key_B)
    assert state.tool == "box"
    main_window.action_table["tool_landmarks"].trigger()
    assert state.tool == "landmarks"
    state.set_tool("mask")  # and back: the toolbar follows the state
    assert main_window.action_table["tool_mask"].isChecked()
    assert not main_window.action_table["tool_box"].isChecked()


def test_undo_with_ctrl_z_reverts_and_edit_menu_text_follows(qtbot, main_window, monkeypatch):
    _active(qtbot, main_window)
    project = main_window.app_state.project
    undo, redo = main_window.action_table["undo"], main_window.action_table["redo"]
    assert undo.text() == "&Undo" and not undo.isEnabled()
    monkeypatch.setattr(QInputDialog, "getText", lambda *a, **k: ("bird", True))
    qtbot.mouseClick(main_window.classes.add_button, Qt.MouseButton.LeftButton)
    assert project.class_by_name("bird") is not None
    assert undo.text() == "&Undo Add class 'bird'"
    assert undo in main_window.edit_menu.actions()

    main_window.browser.view.setFocus()
    qtbot.keyClick(main_window.browser.view, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert project.class_by_name("bird") is None
    assert undo.text() == "&Undo" and not undo.isEnabled()
    assert redo.text() == "&Redo Add class 'bird'"

    qtbot.keyClick(main_window.browser.view, Qt.Key.Key_Y, Qt.KeyboardModifier.ControlModifier)
    assert project.class_by_name("bird") is not None
    qtbot.keyClick(
        main_window.browser.view,
        Qt.Key.Key_Z,
        Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier,
    )  # a no-op redo: nothing left to redo
    assert project.class_by_name("bird") is not None


def test_shortcuts_dialog_lists_every_shortcut(qtbot, main_window):
    dialog = main_window.show_shortcuts()
    qtbot.addWidget(dialog)
    text = dialog.text()
    keyed = [a for a in main_window.findChildren(QAction) if a.shortcuts()]
    assert len(keyed) >= 20
    for act in keyed:
        for key in act.shortcuts():
            assert key.toString(QKeySequence.SequenceFormat.NativeText) in text, act.text()
        assert act.text().replace("&", "").split(" Add")[0] in text
    for key in ("PgDown", "Ctrl+Right", "Ctrl+U", "Ctrl+Shift+Z", "Ctrl+Y", "Home / End"):
        assert key in text
    from tlstudio.gui.panels.canvas_host import tool_shortcuts

    for key, what in tool_shortcuts():
        assert key in text and what in text


# -- imports -----------------------------------------------------------------------------------


@pytest.fixture
def import_folder(tmp_path, make_images) -> Path:
    folder = tmp_path / "incoming"
    make_images(folder, 3, (40, 30), prefix="new", seed=5)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not really a png")
    (folder / "empty.jpg").write_bytes(b"")
    return folder


def test_import_images_with_a_bad_file_lists_it_and_adds_the_rest(
    qtbot, main_window, import_folder
):
    project = main_window.app_state.project
    with qtbot.waitSignal(main_window.importer.finished, timeout=20000) as blocker:
        assert main_window.project_actions.import_paths([import_folder], mode="images")
        assert main_window.importer.busy
    result = blocker.args[0]
    assert result.images_added == 3
    failed = {Path(f).name for f, _ in result.failed}
    assert failed == {"broken.png", "empty.jpg"}
    assert project.image_count() == 9
    assert main_window.browser.model.rowCount() == 9
    dialog = main_window.import_result_dialog
    assert dialog is not None and dialog.isVisible()
    rows = dialog.rows()
    assert any(f.endswith("broken.png") and reason for f, reason in rows)
    assert any(f.endswith("empty.jpg") for f, _ in rows)
    assert not main_window.importer.busy
    dialog.close()


def test_dropping_files_imports_them_in_the_background(qtbot, main_window, import_folder):
    files = sorted(import_folder.glob("new*.png"))[:2]
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(f)) for f in files])
    event = QDropEvent(
        QPointF(200, 200), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )  # fmt: skip
    with qtbot.waitSignal(main_window.importer.finished, timeout=20000) as blocker:
        main_window.dropEvent(event)
    assert blocker.args[0].images_added == 2
    assert not blocker.args[0].failed
    assert main_window.acceptDrops() and not main_window.canvas.acceptDrops()
    assert main_window.app_state.project.image_count() == 8
    assert main_window.browser.model.rowCount() == 8


def test_dropping_a_label_file_imports_labels_and_clears_history(
    qtbot, main_window, tmp_path, monkeypatch
):
    from tlstudio.core.demo import create_demo_project
    from tlstudio.core.formats import export_labels

    with create_demo_project(tmp_path / "other", n_images=2, size=64, seed=3) as other:
        exported = export_labels(other, "coco", tmp_path / "export")
        n_boxes = sum(len(other.boxes(i)) for i in other.image_ids())
    state = main_window.app_state
    boxes_before = sum(len(state.project.boxes(i)) for i in state.project.image_ids())
    monkeypatch.setattr(QInputDialog, "getText", lambda *a, **k: ("extra", True))
    main_window.classes.add_class()
    assert state.undo_stack.can_undo
    with qtbot.waitSignal(main_window.importer.finished, timeout=20000) as blocker:
        main_window.project_actions.import_paths([exported])
    result = blocker.args[0]
    assert not result.failed, result.failed
    assert [fmt for _, fmt, _ in result.labels] == ["coco"]
    assert state.project.image_count() == 8
    boxes_after = sum(len(state.project.boxes(i)) for i in state.project.image_ids())
    assert n_boxes > 0 and boxes_after == boxes_before + n_boxes
    assert not state.undo_stack.can_undo  # undoing "Add class" could delete imported labels
    assert main_window.action_table["undo"].text() == "&Undo"
    assert main_window.browser.model.rowCount() == 8


def test_a_malformed_label_file_is_listed_and_changes_nothing(qtbot, main_window, tmp_path):
    bad = tmp_path / "labels.json"
    bad.write_text('{"images": [], "annotations": "nonsense", "categories": []}')
    before = main_window.app_state.project.stats()
    with qtbot.waitSignal(main_window.importer.finished, timeout=20000) as blocker:
        main_window.project_actions.import_paths([bad])
    result = blocker.args[0]
    assert [Path(f).name for f, _ in result.failed] == ["labels.json"]  # all or nothing
    assert main_window.app_state.project.stats() == before
    assert main_window.import_result_dialog.rows()[0][0].endswith("labels.json")


def test_cancel_stops_an_import(qtbot, main_window, tmp_path, make_images):
    folder = tmp_path / "many"
    make_images(folder, 40, (64, 48), seed=9)
    controller = main_window.importer
    with qtbot.waitSignal(controller.finished, timeout=20000) as blocker:
        main_window.project_actions.import_paths([folder], mode="images")
        controller.cancel()
    result = blocker.args[0]
    assert result.cancelled
    assert result.images_added < 40
    assert main_window.app_state.project.image_count() == 6 + result.images_added


# -- missing files -------------------------------------------------------------------------------


def test_missing_image_file_shows_banner_and_relink_finds_it(qtbot, demo_dir, qsettings, tmp_path):
    with Project.open(demo_dir) as p:
        rec = p.images()[2]
        gone = p.image_path(rec)
    moved = tmp_path / "moved"
    moved.mkdir()
    shutil.move(gone, moved / gone.name)

    window = create_main_window(demo_dir, qsettings)
    qtbot.addWidget(window)
    window.show()
    banner = window.banner
    qtbot.waitUntil(banner.isVisible, timeout=5000)
    assert gone.name in banner.label.text()
    assert "1 image file is missing" in banner.label.text()

    # selecting it shows a message instead of raising
    with qtbot.waitSignal(window.canvas.message, timeout=5000) as said:
        window.app_state.set_image(rec.id)
    assert window.app_state.image_id == rec.id
    assert gone.name in said.args[0]
    assert gone.name in window.statusBar().currentMessage()

    with qtbot.waitSignal(banner.relinked, timeout=5000) as blocker:
        banner.relink_from(moved)
    assert blocker.args == [1]
    assert not banner.isVisible()
    assert window.app_state.project.missing_images() == []
    window.close()


# -- settings --------------------------------------------------------------------------------------


def test_recent_projects_are_kept_in_settings_and_pruned(qtbot, main_window, demo_dir, tmp_path):
    from tlstudio.core.demo import create_demo_project

    recent = main_window.project_actions.recent
    assert recent.paths() == [str(demo_dir.resolve())]
    other = tmp_path / "other"
    create_demo_project(other, n_images=2, size=64).close()
    assert main_window.open_project(other)
    assert main_window.windowTitle() == "other — tlstudio"
    assert recent.paths() == [str(other.resolve()), str(demo_dir.resolve())]

    main_window.project_actions.fill_recent_menu(main_window.recent_menu)
    entries = [a.text() for a in main_window.recent_menu.actions() if a.text()]
    assert any(str(demo_dir.resolve()) in t for t in entries)
    opener = next(
        a for a in main_window.recent_menu.actions() if str(demo_dir.resolve()) in a.text()
    )
    opener.trigger()
    assert main_window.app_state.project.root == demo_dir.resolve()

    main_window.action_table["close_project"].trigger()
    shutil.rmtree(other)
    assert recent.paths() == [str(demo_dir.resolve())]  # the vanished project is dropped
    assert main_window.settings.value("recent/projects") in (
        [str(demo_dir.resolve())],
        str(demo_dir.resolve()),
    )

    for i in range(12):
        recent.add(tmp_path / f"p{i}")
    assert len(recent._read()) == 10


def test_geometry_and_docks_persist(qtbot, demo_dir, qsettings, tmp_path):
    from PySide6.QtCore import QSettings

    fresh = create_main_window(None, QSettings(str(tmp_path / "x.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(fresh)
    default_size = fresh.size()
    fresh.close()
    window = create_main_window(demo_dir, qsettings)
    qtbot.addWidget(window)
    window.show()
    window.resize(760, 560)
    size = window.size()
    window.classes_dock.hide()
    window.close()
    again = create_main_window(None, qsettings)
    qtbot.addWidget(again)
    again.show()
    assert again.size() == size != default_size
    assert again.classes_dock.isHidden()
    assert not again.browser_dock.isHidden()
    again.close()


def test_no_project_drop_hint_and_window_without_project(qtbot, qsettings, tmp_path):
    window = create_main_window(None, qsettings)
    qtbot.addWidget(window)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(tmp_path))])
    event = QDropEvent(
        QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )  # fmt: skip
    window.dropEvent(event)
    assert "Open or create a project" in window.statusBar().currentMessage()
    assert not window.importer.busy
    window.close()


def test_mask_array_api_untouched_by_window(main_window):
    # the window never writes annotations on its own: the demo masks are intact
    project = main_window.app_state.project
    masks = [project.mask(i) for i in project.image_ids()]
    assert all(isinstance(m, np.ndarray) and m.any() for m in masks)


def test_screenshot_script_still_runs(qtbot, tmp_path, screenshot_script):
    paths = screenshot_script("make_screenshots_window").make_screenshots(tmp_path / "shots")
    names = {p.name for p in paths}
    assert {"main_window.png", "main_window_missing.png", "main_window_import_result.png"} <= names
    assert all(p.stat().st_size > 5000 for p in paths)


def test_run_shows_the_window_and_returns_the_exit_status(qtbot, demo_dir, tmp_path, monkeypatch):
    from PySide6.QtCore import QEventLoop, QSettings, QTimer

    from tlstudio.gui import app as app_module
    from tlstudio.gui.main_window import MainWindow

    monkeypatch.setattr(app_module, "_install_excepthook", lambda: None)  # keep pytest's hook
    for fmt in (QSettings.Format.NativeFormat, QSettings.Format.IniFormat):
        QSettings.setPath(fmt, QSettings.Scope.UserScope, str(tmp_path / "user-settings"))
    seen = {}

    def fake_exec(_app) -> int:
        # a real QApplication.exec() would leave the test session's application closing
        loop = QEventLoop()

        def close_it() -> None:
            shown = [
                w
                for w in QApplication.topLevelWidgets()
                if isinstance(w, MainWindow) and w.isVisible()
            ]
            seen["titles"] = [w.windowTitle() for w in shown]
            for w in shown:
                w.close()
            loop.exit(3)

        QTimer.singleShot(100, close_it)
        return loop.exec()

    monkeypatch.setattr(QApplication, "exec", fake_exec)
    assert app_module.run(str(demo_dir)) == 3
    assert seen["titles"] == ["demo — tlstudio"]
    assert QApplication.organizationName() == "tlstudio"
    stored = QSettings().value("recent/projects")
    assert str(demo_dir.resolve()) in (stored if isinstance(stored, list) else [stored])


def test_f3_opens_the_train_panel_and_a_run_started_there_is_recorded(
    qtbot, main_window, demo_dir, monkeypatch
):
    from PySide6.QtWidgets import QMessageBox

    from tlstudio.core.runs import RunStore
    from tlstudio.ml.runner import RunSpec
    from tlstudio.ml.trainer import TrainConfig

    qtbot.keyClick(main_window, Qt.Key.Key_F3)
    assert main_window.modes.currentIndex() == 1 and main_window.train_panel.isVisible()
    assert main_window.action_table["mode_train"].isChecked()
    dock = main_window.train_panel
    spec = RunSpec(task="classify", backbone="resnet18", weights="none", input_size=32,
                   train=TrainConfig(epochs=30, batch_size=4, freeze=3))  # fmt: skip
    with qtbot.waitSignal(dock.controller.fit_started, timeout=120_000):
        assert dock.start(spec)
    # closing during training asks first; "No" keeps the window and the run
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.No)
    assert not main_window.close()
    assert dock.controller.is_running
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Yes)
    assert main_window.close()
    assert dock.controller.job.is_finished and dock.controller.pool.activeThreadCount() == 0
    with Project.open(demo_dir) as project:
        (run,) = RunStore(project).list()
        assert run.status == "cancelled" and run.task == "classify"
