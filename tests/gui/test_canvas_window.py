"""The canvas inside the whole MainWindow, driven with real mouse and key events:
focus clicks, the status-bar pixel readout."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtTest import QTest

L = Qt.MouseButton.LeftButton
NOMOD = Qt.KeyboardModifier.NoModifier


def _ready(qtbot, window):
    canvas = window.canvas
    qtbot.waitUntil(lambda: canvas.image_ready, timeout=5000)
    return canvas


def vp(canvas, x: float, y: float) -> QPoint:
    """Viewport position of the image point (x, y)."""
    return canvas.mapFromScene(QPointF(x, y))


def _focus_browser(qtbot, window) -> None:
    """Click the browser's current row: the focus goes there, the image stays."""
    view = window.browser.view
    rect = view.visualRect(view.currentIndex())
    qtbot.mouseClick(view.viewport(), L, NOMOD, rect.center())
    assert view.hasFocus()


def test_the_click_that_focuses_the_canvas_does_not_draw(qtbot, main_window):
    canvas = _ready(qtbot, main_window)
    project, state = main_window.app_state.project, main_window.app_state
    iid = canvas.image_id
    state.set_tool("landmarks")
    _focus_browser(qtbot, main_window)
    assert state.image_id == iid

    qtbot.mouseClick(canvas.viewport(), L, NOMOD, vp(canvas, 30, 40))
    assert canvas.hasFocus()
    assert canvas.tool.points == ()  # no stray landmark
    qtbot.mouseClick(canvas.viewport(), L, NOMOD, vp(canvas, 30, 40))
    assert len(canvas.tool.points) == 1  # once focused, a click places a point
    p = canvas.tool.points[0]
    assert (p.x, p.y) == pytest.approx((30, 40), abs=0.5)  # image px, not screen px

    # a box drag that starts by focusing the canvas draws nothing either
    qtbot.keyClick(canvas, Qt.Key.Key_Escape)
    state.set_tool("box")
    boxes = len(project.boxes(iid))
    _focus_browser(qtbot, main_window)
    for _ in range(2):
        qtbot.mousePress(canvas.viewport(), L, NOMOD, vp(canvas, 10, 10))
        QTest.mouseMove(canvas.viewport(), vp(canvas, 40, 50))
        qtbot.mouseRelease(canvas.viewport(), L, NOMOD, vp(canvas, 60, 70))
    stored = project.boxes(iid)
    assert len(stored) == boxes + 1  # only the second drag
    assert stored[-1].xyxy == (10.0, 10.0, 60.0, 70.0)


def test_pixel_readout_is_cleared_on_image_change_and_when_the_mouse_leaves(qtbot, main_window):
    canvas = _ready(qtbot, main_window)
    readout = main_window.readout
    QTest.mouseMove(canvas.viewport(), vp(canvas, 63.5, 62.5))
    assert readout.text().startswith("x 63, y 62: ")

    main_window.browser.view.setFocus()
    first = canvas.image_id
    qtbot.keyClick(main_window.browser.view, Qt.Key.Key_Down)
    qtbot.waitUntil(lambda: canvas.image_id != first and canvas.image_ready, timeout=5000)
    assert "x 63" not in readout.text() and readout.text().endswith("%")

    QTest.mouseMove(canvas.viewport(), vp(canvas, 10.5, 12.5))
    assert readout.text().startswith("x 10, y 12: ")
    # off the image (the grey margin around it): nothing to read
    QTest.mouseMove(canvas.viewport(), vp(canvas, -5, -5))
    assert not readout.text().startswith("x ")
    QTest.mouseMove(canvas.viewport(), vp(canvas, 10.5, 12.5))
    assert readout.text().startswith("x 10, y 12: ")
    # out of the canvas, onto the image list
    QTest.mouseMove(main_window.browser.view.viewport(), QPoint(5, 5))
    assert not readout.text().startswith("x ")
