"""The image browser: lazy rows, filters, navigation, thumbnails, row refresh."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import QSettings, Qt, QTimer
from PySide6.QtWidgets import QApplication

from tlstudio.core.commands import SetSplits, SetTags
from tlstudio.core.project import Project
from tlstudio.gui.app import create_main_window
from tlstudio.gui.panels import browser_model as browser_mod
from tlstudio.gui.panels.image_query import ImageFilter


@pytest.fixture
def window_with_unlabelled(qtbot, demo_dir: Path, qsettings: QSettings):
    """The demo window where images 2 and 4 (1-based positions) have no labels at all."""
    with Project.open(demo_dir) as p:
        ids = p.image_ids()
        for i in (ids[1], ids[3]):
            p.clear_annotations(i)
    window = create_main_window(demo_dir, qsettings)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    yield window, ids
    window.close()


def _row_text(browser, row: int) -> str:
    return browser.model.data(browser.model.index(row), Qt.ItemDataRole.DisplayRole)


def test_filter_unlabelled_shows_only_unlabelled_images(window_with_unlabelled):
    window, ids = window_with_unlabelled
    browser = window.browser
    browser.status.setCurrentIndex(browser.status.findData("unlabelled"))
    assert browser.model.ids() == [ids[1], ids[3]]
    assert browser.view.model().rowCount() == 2
    assert "unlabelled" in _row_text(browser, 0)
    assert browser.count_label.text() == "2 of 6 images"
    browser.status.setCurrentIndex(browser.status.findData("labelled"))
    assert browser.model.ids() == [i for i in ids if i not in (ids[1], ids[3])]
    browser.status.setCurrentIndex(browser.status.findData("mask"))
    assert len(browser.model.ids()) == 4
    browser.status.setCurrentIndex(browser.status.findData("all"))
    assert browser.model.rowCount() == 6


def test_split_class_and_name_filters(qtbot, main_window):
    browser, project = main_window.browser, main_window.app_state.project
    by_split = {s: [r.id for r in project.images_in_split(s)] for s in ("train", "val", "test")}
    browser.split.setCurrentIndex(browser.split.findData("train"))
    assert browser.model.ids() == by_split["train"]
    browser.split.setCurrentIndex(browser.split.findData("any"))

    square = project.class_by_name("square")
    uses = [i for i in project.image_ids() if square.id in _classes_of(project, i)]
    browser.klass.setCurrentIndex(browser.klass.findData(square.id))
    assert browser.model.ids() == uses and uses
    browser.klass.setCurrentIndex(0)

    qtbot.keyClicks(browser.search, "003")
    qtbot.waitUntil(lambda: browser.model.rowCount() == 1, timeout=2000)
    assert "demo_003.png" in _row_text(browser, 0)


def _classes_of(project, image_id):
    ann = project.annotations(image_id)
    found = set(ann.tags) | {b.class_id for b in ann.boxes}
    found |= {s.class_id for s in ann.landmarks}
    if ann.mask is not None:
        found |= set(int(v) for v in set(ann.mask.ravel().tolist()) if v)
    return found


def test_next_unlabelled_key_jumps_and_wraps(qtbot, window_with_unlabelled):
    window, ids = window_with_unlabelled
    window.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is window, timeout=2000)
    state, view = window.app_state, window.browser.view
    view.setFocus()
    assert state.image_id == ids[0]
    qtbot.keyClick(view, Qt.Key.Key_U, Qt.KeyboardModifier.ControlModifier)
    assert state.image_id == ids[1]
    qtbot.keyClick(view, Qt.Key.Key_U, Qt.KeyboardModifier.ControlModifier)
    assert state.image_id == ids[3]
    qtbot.keyClick(view, Qt.Key.Key_U, Qt.KeyboardModifier.ControlModifier)
    assert state.image_id == ids[1]  # wrapped round
    assert view.currentIndex().row() == 1


def test_clicking_a_row_selects_the_image(qtbot, main_window):
    browser, state = main_window.browser, main_window.app_state
    idx = browser.model.index(4)
    rect = browser.view.visualRect(idx)
    qtbot.mouseClick(browser.view.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert state.image_id == browser.model.id_at(4)
    state.set_image(browser.model.id_at(2))  # and the other way round
    assert browser.view.currentIndex().row() == 2


def test_current_row_refreshes_after_an_edit(qtbot, main_window):
    browser, state, project = (
        main_window.browser,
        main_window.app_state,
        main_window.app_state.project,
    )
    row = browser.model.row_of(state.image_id)
    tagged = project.tags(state.image_id)
    other = next(c for c in project.classes() if c.id not in tagged)
    assert other.name not in _row_text(browser, row)
    state.push(SetTags(state.image_id, [other.id]))
    qtbot.waitUntil(lambda: other.name in _row_text(browser, row).split("\n")[1], timeout=2000)
    state.push(SetTags(state.image_id, []))
    qtbot.waitUntil(lambda: other.name not in _row_text(browser, row), timeout=2000)


def test_set_split_of_selected_images_is_one_undo_step(qtbot, main_window):
    browser, state = main_window.browser, main_window.app_state
    ids = browser.model.ids()[:3]
    browser.set_split("test", ids)
    assert all(state.project.image(i).split == "test" for i in ids)
    assert main_window.action_table["undo"].text() == "&Undo Set split of 3 images to test"
    before = {i: state.project.image(i).split for i in ids}
    state.undo_stack.undo()
    assert {i: state.project.image(i).split for i in ids} != before
    state.push(SetSplits({ids[0]: None}))
    browser.split.setCurrentIndex(browser.split.findData("none"))
    assert browser.model.ids() == [ids[0]]


def test_rows_are_fetched_lazily_in_pages(qtbot, main_window, monkeypatch):
    monkeypatch.setattr(browser_mod, "PAGE", 2)
    model = main_window.browser.model
    model.reload()
    assert model._pages == {}  # nothing fetched before the view asks
    assert model.row(5).id == model.id_at(5)
    assert list(model._pages) == [2]
    model.invalidate()
    assert model._pages == {}


def test_thumbnails_load_in_the_background(qtbot, main_window):
    browser = main_window.browser
    loader = browser.model.loader
    assert loader is not None and not loader.synchronous
    placeholder = browser.model._placeholder
    idx = browser.model.index(0)
    qtbot.waitUntil(
        lambda: browser.model.data(idx, Qt.ItemDataRole.DecorationRole) is not placeholder,
        timeout=5000,
    )
    key = browser.model.row(0).sha256
    assert loader.cache.path_for(key).is_file()
    icon = browser.model.data(idx, Qt.ItemDataRole.DecorationRole)
    assert not icon.isNull() and icon is not loader.broken_icon


def test_a_broken_image_gets_the_broken_icon_not_an_error(qtbot, main_window):
    browser, project = main_window.browser, main_window.app_state.project
    qtbot.waitUntil(lambda: browser.model.loader.pending() == 0, timeout=5000)
    row = browser.model.row(1)
    row.absolute_path(project.root).write_bytes(b"garbage")
    # a fresh loader (the demo's thumbnails may be cached on disk already)
    browser.model.loader.cache.path_for(row.sha256).unlink(missing_ok=True)
    browser.model.loader._icons.pop(row.sha256, None)
    idx = browser.model.index(1)
    browser.model.data(idx, Qt.ItemDataRole.DecorationRole)
    qtbot.waitUntil(lambda: browser.model.loader.error(row.sha256) is not None, timeout=5000)
    assert (
        browser.model.data(idx, Qt.ItemDataRole.DecorationRole) is browser.model.loader.broken_icon
    )
    assert "thumbnail:" in browser.model.data(idx, Qt.ItemDataRole.ToolTipRole)


def test_grid_and_list_modes(qtbot, main_window):
    browser = main_window.browser
    main_window.action_table["grid"].trigger()
    assert not browser.grid_button.isChecked()
    assert not browser.view.isWrapping()
    assert "\n" not in _row_text(browser, 0)
    qtbot.mouseClick(browser.grid_button, Qt.MouseButton.LeftButton)
    assert main_window.action_table["grid"].isChecked() and browser.view.isWrapping()
    assert _row_text(browser, 0).count("\n") == 2


def test_filter_object_roundtrip(main_window):
    browser = main_window.browser
    flt = ImageFilter(status="boxes", split="val", class_id=None, text="demo")
    browser.set_filter(flt)
    assert browser.current_filter() == flt


def test_set_domain_of_selected_images_then_filter_by_it(qtbot, main_window):
    """Ctrl+click three images, right-click → Set domain…, type a new domain: one undo
    step; the domain filter appears and shows those images; undo takes it all back."""
    from PySide6.QtGui import QContextMenuEvent
    from PySide6.QtTest import QTest
    from PySide6.QtWidgets import QMenu

    browser, state = main_window.browser, main_window.app_state
    ids = browser.model.ids()
    assert not browser.domain.isVisible()  # no domains yet: no filter to offer
    viewport = browser.view.viewport()

    def click(row: int, modifier=Qt.KeyboardModifier.NoModifier, button=Qt.MouseButton.LeftButton):
        rect = browser.view.visualRect(browser.model.index(row))
        qtbot.mouseClick(viewport, button, modifier, rect.center())

    click(0)
    click(2, Qt.KeyboardModifier.ControlModifier)
    click(3, Qt.KeyboardModifier.ControlModifier)
    assert browser.selected_ids() == [ids[0], ids[2], ids[3]]

    seen: dict = {}

    def answer_dialog() -> None:
        dialog = QApplication.activeModalWidget()
        seen["title"] = dialog.windowTitle() if dialog is not None else None
        if dialog is None:
            return
        qtbot.keyClicks(QApplication.focusWidget(), "scanner B")
        qtbot.keyClick(QApplication.focusWidget(), Qt.Key.Key_Return)

    def choose_set_domain() -> None:
        menu = QApplication.activePopupWidget()
        assert isinstance(menu, QMenu)
        seen["items"] = [a.text() for a in menu.actions()]
        action = next(a for a in menu.actions() if a.text() == "Set domain…")
        QTimer.singleShot(200, answer_dialog)
        QTest.mouseClick(menu, Qt.MouseButton.LeftButton, pos=menu.actionGeometry(action).center())

    QTimer.singleShot(200, choose_set_domain)
    # a right-click: QTest's mouse events make no context-menu event, so send the one the
    # window system sends after the press
    pos = browser.view.visualRect(browser.model.index(2)).center()
    click(2, button=Qt.MouseButton.RightButton)
    event = QContextMenuEvent(QContextMenuEvent.Reason.Mouse, pos, viewport.mapToGlobal(pos))
    QApplication.sendEvent(viewport, event)
    qtbot.waitUntil(lambda: state.project.domains() == {"scanner B": 3}, timeout=5000)
    assert seen["items"] == ["Set split", "Set domain…"] and seen["title"] == "Set domain"
    assert [state.project.image(i).domain for i in ids[:4]] == [
        "scanner B",
        None,
        "scanner B",
        "scanner B",
    ]
    assert main_window.action_table["undo"].text() == "&Undo Set domain of 3 images to scanner B"
    qtbot.waitUntil(browser.domain.isVisible, timeout=2000)
    browser.domain.setCurrentIndex(browser.domain.findData("scanner B"))
    assert browser.model.ids() == [ids[0], ids[2], ids[3]]
    browser.domain.setCurrentIndex(browser.domain.count() - 1)  # "No domain"
    assert browser.model.ids() == [i for i in ids if i not in (ids[0], ids[2], ids[3])]
    browser.domain.setCurrentIndex(browser.domain.findData("scanner B"))
    assert "domain: scanner B" in browser.model.data(
        browser.model.index(0), Qt.ItemDataRole.ToolTipRole
    )
    main_window.action_table["undo"].trigger()
    assert state.project.domains() == {}
    qtbot.waitUntil(lambda: browser.model.rowCount() == len(ids), timeout=2000)
    qtbot.waitUntil(lambda: not browser.domain.isVisible(), timeout=2000)
