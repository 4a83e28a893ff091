"""Class panel, template picker, display panel and import/missing-file panels."""

from __future__ import annotations

import json

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QApplication,
    QColorDialog,
    QFileDialog,
    QInputDialog,
    QMessageBox,
)

from tlstudio.core.annotations import Box
from tlstudio.core.commands import AddBox
from tlstudio.gui.panels.classes import ClassPanel
from tlstudio.gui.panels.image_query import class_counts


def _row_of(panel: ClassPanel, class_id: int) -> int:
    for i in range(panel.list.count()):
        if panel.list.item(i).data(Qt.ItemDataRole.UserRole) == class_id:
            return i
    raise AssertionError(f"class {class_id} not listed")


def _click_row(qtbot, panel: ClassPanel, row: int, double: bool = False) -> None:
    rect = panel.list.visualItemRect(panel.list.item(row))
    click = qtbot.mouseDClick if double else qtbot.mouseClick
    if double:
        qtbot.mouseClick(panel.list.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    click(panel.list.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())


# -- class panel ---------------------------------------------------------------------------------


def test_class_list_shows_swatches_and_counts(main_window):
    panel, project = main_window.classes, main_window.app_state.project
    counts = class_counts(project)
    assert panel.list.count() == 3
    for c in project.classes():
        item = panel.list.item(_row_of(panel, c.id))
        usage = project.class_usage(c.id)
        assert counts[c.id] == usage  # one grouped query agrees with the per-class one
        assert item.text() == f"{c.name}  ({sum(usage.values())})"
        assert not item.icon().isNull()


def test_add_class_through_the_panel(qtbot, main_window, monkeypatch):
    panel, state = main_window.classes, main_window.app_state
    monkeypatch.setattr(QInputDialog, "getText", lambda *a, **k: ("  hexagon ", True))
    qtbot.mouseClick(panel.add_button, Qt.MouseButton.LeftButton)
    info = state.project.class_by_name("hexagon")
    assert info is not None
    assert state.class_id == info.id
    assert panel.list.currentItem().text().startswith("hexagon")
    # a duplicate name is refused with a message, not an exception
    warnings = []
    monkeypatch.setattr(QMessageBox, "warning", lambda *a, **k: warnings.append(a[2]))
    qtbot.mouseClick(panel.add_button, Qt.MouseButton.LeftButton)
    assert warnings and "already exists" in warnings[0]
    assert len(state.project.classes()) == 4


def test_selecting_a_class_sets_the_current_class(qtbot, main_window):
    panel, state = main_window.classes, main_window.app_state
    square = state.project.class_by_name("square")
    _click_row(qtbot, panel, _row_of(panel, square.id))
    assert state.class_id == square.id
    state.set_class(state.project.class_by_name("circle").id)
    assert panel.list.currentItem().text().startswith("circle")


def test_rename_by_double_click_and_recolour(qtbot, main_window, monkeypatch):
    panel, project = main_window.classes, main_window.app_state.project
    circle = project.class_by_name("circle")
    monkeypatch.setattr(QInputDialog, "getText", lambda *a, **k: ("disc", True))
    _click_row(qtbot, panel, _row_of(panel, circle.id), double=True)
    assert project.class_info(circle.id).name == "disc"
    qtbot.waitUntil(lambda: panel.list.item(_row_of(panel, circle.id)).text().startswith("disc"))
    monkeypatch.setattr(QColorDialog, "getColor", lambda *a, **k: QColor("#123456"))
    qtbot.mouseClick(panel.color_button, Qt.MouseButton.LeftButton)
    assert project.class_info(circle.id).color == "#123456"
    assert main_window.action_table["undo"].text() == "&Undo Change class colour"


def test_merge_asks_with_counts_then_ctrl_z_restores_everything(
    qtbot, main_window, monkeypatch, db_state
):
    panel, state = main_window.classes, main_window.app_state
    project = state.project
    circle, square = project.class_by_name("circle"), project.class_by_name("square")
    usage_c, usage_s = project.class_usage(circle.id), project.class_usage(square.id)
    before = db_state(project.store.conn)
    state.set_class(circle.id)
    asked = []
    monkeypatch.setattr(QInputDialog, "getItem", lambda *a, **k: ("square", True))

    def answer(parent, title, text, *a, **k):
        asked.append(text)
        return QMessageBox.StandardButton.Yes

    monkeypatch.setattr(QMessageBox, "question", answer)
    qtbot.mouseClick(panel.merge_button, Qt.MouseButton.LeftButton)
    assert len(asked) == 1
    assert f"{usage_c['boxes']} boxes" in asked[0] and f"{usage_c['tags']} tag" in asked[0]
    assert "'circle' into 'square'" in asked[0]

    assert project.class_by_name("circle") is None
    merged = project.class_usage(square.id)
    assert merged["boxes"] == usage_c["boxes"] + usage_s["boxes"]
    assert merged["landmarks"] == usage_c["landmarks"] + usage_s["landmarks"]
    assert merged["tags"] == usage_c["tags"] + usage_s["tags"]  # single-label: no overlap
    assert state.class_id == square.id
    qtbot.waitUntil(lambda: panel.list.count() == 2)
    assert main_window.action_table["undo"].text() == "&Undo Merge classes"

    main_window.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is main_window, timeout=2000)
    main_window.browser.view.setFocus()
    qtbot.keyClick(main_window.browser.view, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert db_state(project.store.conn) == before
    qtbot.waitUntil(lambda: panel.list.count() == 3)
    assert main_window.action_table["undo"].text() == "&Undo"


def test_merge_or_delete_declined_changes_nothing(qtbot, main_window, monkeypatch, db_state):
    panel, project = main_window.classes, main_window.app_state.project
    before = db_state(project.store.conn)
    monkeypatch.setattr(QInputDialog, "getItem", lambda *a, **k: ("square", True))
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.No)
    qtbot.mouseClick(panel.merge_button, Qt.MouseButton.LeftButton)
    qtbot.mouseClick(panel.delete_button, Qt.MouseButton.LeftButton)
    assert db_state(project.store.conn) == before
    assert not main_window.action_table["undo"].isEnabled()


def test_delete_class_confirms_with_counts(qtbot, main_window, monkeypatch):
    panel, state = main_window.classes, main_window.app_state
    project = state.project
    triangle = project.class_by_name("triangle")
    usage = project.class_usage(triangle.id)
    state.set_class(triangle.id)
    asked = []
    monkeypatch.setattr(
        QMessageBox,
        "question",
        lambda p, t, text, *a, **k: asked.append(text) or QMessageBox.StandardButton.Yes,
    )
    qtbot.mouseClick(panel.delete_button, Qt.MouseButton.LeftButton)
    assert f"{usage['boxes']} boxes" in asked[0]
    assert project.class_by_name("triangle") is None
    assert state.class_id in {c.id for c in project.classes()}  # moved to a class that exists


def test_tag_image_button_sets_the_tag(qtbot, main_window):
    panel, state = main_window.classes, main_window.app_state
    project = state.project
    image_id = state.image_id
    other = next(c for c in project.classes() if c.id not in project.tags(image_id))
    state.set_class(other.id)
    qtbot.mouseClick(panel.tag_button, Qt.MouseButton.LeftButton)
    assert project.tags(image_id) == (other.id,)
    main_window.action_table["tag_image"].trigger()  # again: single-label toggles it off
    assert project.tags(image_id) == ()


def test_counts_follow_edits(qtbot, main_window):
    panel, state = main_window.classes, main_window.app_state
    square = state.project.class_by_name("square")
    n = sum(state.project.class_usage(square.id).values())
    state.push(AddBox(state.image_id, Box(square.id, 1, 1, 20, 20)))
    row = _row_of(panel, square.id)
    qtbot.waitUntil(lambda: panel.list.item(row).text() == f"square  ({n + 1})", timeout=2000)


# -- templates ------------------------------------------------------------------------------------


def test_template_picker_builtin_and_file(qtbot, main_window, monkeypatch, tmp_path):
    panel, state = main_window.classes, main_window.app_state
    project = state.project
    templates = project.templates()
    assert panel.template.count() == len(templates)
    panel.template.setCurrentIndex(panel.template.count() - 1)
    assert state.template_id == templates[-1].id

    # every built-in is already in the demo: the menu offers them disabled
    panel.builtin_menu.aboutToShow.emit()
    assert panel.builtin_menu.actions() and not any(
        a.isEnabled() for a in panel.builtin_menu.actions()
    )

    path = tmp_path / "hand.json"
    path.write_text(json.dumps({"name": "Hand 3", "points": ["wrist", "thumb", "index"],
                                "skeleton": [[0, 1], [0, 2]], "flip_pairs": []}))  # fmt: skip
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(path), ""))
    qtbot.mouseClick(panel.load_button, Qt.MouseButton.LeftButton)
    hand = project.template_by_name("Hand 3")
    assert hand is not None and state.template_id == hand.id
    qtbot.waitUntil(lambda: panel.template.count() == len(templates) + 1, timeout=2000)
    assert panel.template.currentData() == hand.id
    assert main_window.action_table["undo"].text() == "&Undo Add template 'Hand 3'"


def test_builtin_template_is_added_through_the_menu(qtbot, app_state):
    for t in app_state.project.templates():
        if not app_state.project.store.conn.execute(
            "SELECT 1 FROM landmark_sets WHERE template_id = ?", (t.id,)
        ).fetchone():
            app_state.project.delete_template(t.id)
    panel = ClassPanel(app_state)
    qtbot.addWidget(panel)
    panel.builtin_menu.aboutToShow.emit()
    enabled = [a for a in panel.builtin_menu.actions() if a.isEnabled()]
    assert enabled
    name = enabled[0].text().rsplit(" (", 1)[0]
    enabled[0].trigger()
    added = app_state.project.template_by_name(name)
    assert added is not None and app_state.template_id == added.id


# -- display panel ------------------------------------------------------------------------------


def test_window_level_controls_follow_the_real_canvas(qtbot, tmp_path, qsettings, write_image):
    import numpy as np

    from tlstudio.core.project import Project
    from tlstudio.gui.app import create_main_window

    rng = np.random.default_rng(1)
    files = [
        write_image(tmp_path / "src" / "grey16.png", rng.integers(1000, 5000, (40, 50)).astype(np.uint16)),
        write_image(tmp_path / "src" / "rgb8.png", rng.integers(0, 255, (40, 50, 3)).astype(np.uint8)),
    ]  # fmt: skip
    with Project.create(tmp_path / "p") as p:
        p.add_images(files)
    window = create_main_window(tmp_path / "p", qsettings)
    qtbot.addWidget(window)
    canvas, panel = window.canvas, window.display
    qtbot.waitUntil(lambda: canvas.image_ready, timeout=5000)
    assert panel.center.isEnabled()  # a 16-bit image: window/level applies
    lo, hi = canvas.window_level.data_range()
    qtbot.mouseClick(panel.full_button, Qt.MouseButton.LeftButton)
    assert canvas.display_window() == ((lo + hi) / 2, hi - lo)
    assert (panel.center.value(), panel.width_.value()) == pytest.approx(
        ((lo + hi) / 2, hi - lo), abs=0.1
    )
    panel.width_.setValue(500.0)
    assert canvas.display_window()[1] == 500.0
    qtbot.mouseClick(panel.default_button, Qt.MouseButton.LeftButton)
    assert canvas.display_window() == canvas.window_level.default_window()
    window.browser.next_image()  # an 8-bit image: nothing to window
    qtbot.waitUntil(lambda: canvas.image_ready, timeout=5000)
    assert not panel.center.isEnabled()
    window.close()


def test_status_readout_shows_zoom_and_pixel(qtbot, main_window):
    canvas, readout = main_window.canvas, main_window.readout
    qtbot.waitUntil(lambda: canvas.image_ready, timeout=5000)
    main_window.action_table["zoom_1to1"].trigger()
    assert readout.text().endswith("100 %")
    canvas.cursor_moved.emit(3.2, 4.7)
    value = canvas.pixel_value(3.2, 4.7)
    assert readout.text().startswith(f"x 3, y 4: {', '.join(str(v) for v in value)}")
