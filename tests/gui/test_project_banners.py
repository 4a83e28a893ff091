"""The window on a project it cannot write, and when another program holds the write lock
(issue 11 §11, §12): a banner, the edit kept for Retry, never a traceback."""

from __future__ import annotations

import sqlite3

from PySide6.QtCore import Qt

from tlstudio.core import store as store_mod
from tlstudio.core.store import DB_NAME


def _show_first_image(qtbot, window) -> int:
    state = window.app_state
    iid = state.project.image_ids()[0]
    state.set_image(iid)
    qtbot.waitUntil(lambda: window.canvas.image_ready)
    window.canvas.setFocus()
    return iid


def test_a_busy_project_keeps_the_refused_edit_for_retry(qtbot, main_window) -> None:
    window, state = main_window, main_window.app_state
    project = state.project
    project.store.conn.execute("PRAGMA busy_timeout = 100")  # the test waits 0.1 s, not 15
    iid = _show_first_image(qtbot, window)
    second = project.classes()[1]
    before = project.tags(iid)
    assert before != (second.id,)

    other = sqlite3.connect(project.root / DB_NAME)  # another program, mid-write
    other.execute("BEGIN IMMEDIATE")
    try:
        qtbot.keyClick(window.canvas, Qt.Key.Key_2)  # tag with the second class
        bar = window.refused_bar
        assert bar.isVisible()
        text = bar.label.text()
        assert "Not saved" in text and "the project is busy" in text and "Retry" in text
        assert "busy" in window.statusBar().currentMessage()
        assert project.tags(iid) == before  # nothing was stored
        qtbot.mouseClick(bar.retry_button, Qt.MouseButton.LeftButton)  # still locked
        assert bar.isVisible() and project.tags(iid) == before
        window.grab().save("/tmp/harden11_busy.png")
    finally:
        other.rollback()
        other.close()
    qtbot.mouseClick(window.refused_bar.retry_button, Qt.MouseButton.LeftButton)
    assert not window.refused_bar.isVisible()
    assert project.tags(iid) == (second.id,)


def test_a_read_only_project_shows_a_banner_and_refuses_edits(
    qtbot, main_window, demo_dir, monkeypatch
) -> None:
    # as the file system says for a project.sqlite of mode 0444 (root ignores modes)
    monkeypatch.setattr(store_mod, "_why_not_writable", lambda path: "project.sqlite is read-only")
    window = main_window
    assert not window.read_only_banner.isVisible()
    assert window.open_project(demo_dir)
    project = window.app_state.project
    assert project.read_only
    banner = window.read_only_banner
    assert banner.isVisible()
    assert "read-only: edits are disabled" in banner.label.text()
    assert "project.sqlite is read-only" in banner.label.text()
    assert window.windowTitle().startswith("demo (read-only)")
    iid = _show_first_image(qtbot, window)
    before = project.annotations(iid)
    qtbot.keyClick(window.canvas, Qt.Key.Key_2)
    assert "edits are disabled" in window.statusBar().currentMessage()
    assert project.annotations(iid) == before
    assert not window.refused_bar.isVisible()
    window.resize(1280, 800)
    window.grab().save("/tmp/harden11_read_only.png")
