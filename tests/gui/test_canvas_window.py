"""The canvas inside the whole MainWindow, driven with real mouse and key events:
focus clicks, the status-bar pixel readout."""

from __future__ import annotations

import numpy as np
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


# -- brush strokes are stored off the GUI thread ------------------------------------------------


@pytest.fixture
def slow_encode(monkeypatch):
    """Mask encoding that takes 0.4 s (as a big image's does), so writes are pending."""
    import time

    from tlstudio.gui.canvas import mask_writer

    real = mask_writer.encode_label

    def slow(label):
        time.sleep(0.4)
        return real(label)

    monkeypatch.setattr(mask_writer, "encode_label", slow)


def _stroke(qtbot, canvas, points) -> None:
    qtbot.mousePress(canvas.viewport(), L, NOMOD, vp(canvas, *points[0]))
    for p in points[1:]:
        QTest.mouseMove(canvas.viewport(), vp(canvas, *p))
    qtbot.mouseRelease(canvas.viewport(), L, NOMOD, vp(canvas, *points[-1]))


def _brush(qtbot, window):
    canvas = _ready(qtbot, window)
    canvas.setFocus()
    qtbot.keyClick(canvas, Qt.Key.Key_M)  # mask tool, brush
    canvas.set_brush_size(8)
    return canvas


def test_a_stroke_pending_when_the_window_closes_is_stored(
    qtbot, main_window, demo_dir, slow_encode
):
    from tlstudio.core.project import Project

    canvas = _brush(qtbot, main_window)
    iid, cid = canvas.image_id, main_window.app_state.class_id
    _stroke(qtbot, canvas, [(10, 100), (60, 100), (110, 100)])
    assert canvas.mask_writer.busy  # still encoding
    assert main_window.app_state.undo_stack.count == 1  # undoable at once
    assert (canvas.label_map()[100, 10:110] == cid).all()  # and on screen
    main_window.close()
    with Project.open(demo_dir) as project:
        assert (project.mask(iid)[100, 10:110] == cid).all()


def test_undo_and_redo_while_a_stroke_is_being_stored(qtbot, main_window, slow_encode):
    canvas = _brush(qtbot, main_window)
    state = main_window.app_state
    project, iid, cid = state.project, canvas.image_id, state.class_id
    before = project.mask(iid)
    _stroke(qtbot, canvas, [(10, 90), (110, 90)])
    assert canvas.mask_writer.busy and np.array_equal(project.mask(iid), before)
    qtbot.keyClick(canvas, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)  # undo at once
    assert np.array_equal(canvas.label_map(), before)  # the screen follows at once
    qtbot.waitUntil(lambda: not canvas.mask_writer.busy, timeout=10_000)
    assert np.array_equal(project.mask(iid), before)
    qtbot.keyClick(canvas, Qt.Key.Key_Y, Qt.KeyboardModifier.ControlModifier)  # redo
    qtbot.waitUntil(lambda: not canvas.mask_writer.busy, timeout=10_000)
    painted = project.mask(iid)
    assert (painted[90, 10:110] == cid).all()

    # two strokes in a row, then two undos: the store ends at the first stroke
    _stroke(qtbot, canvas, [(10, 110), (110, 110)])
    _stroke(qtbot, canvas, [(10, 120), (110, 120)])
    qtbot.keyClick(canvas, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: not canvas.mask_writer.busy, timeout=10_000)
    stored = project.mask(iid)
    assert (stored[110, 10:110] == cid).all() and not (stored[120, 10:110] == cid).all()
    assert np.array_equal(canvas.label_map(), stored)
    # another edit (a class tag) first stores any pending stroke, so it sees it
    _stroke(qtbot, canvas, [(10, 126), (110, 126)])
    assert canvas.mask_writer.busy
    qtbot.keyClick(canvas, Qt.Key.Key_2)
    assert not canvas.mask_writer.busy and (project.mask(iid)[126, 10:110] == cid).all()


# -- a big image shows a reduced decode first ----------------------------------------------------


def test_boxes_drawn_on_the_preview_are_in_full_image_pixels(
    qtbot, tmp_path, qsettings, monkeypatch
):
    import threading

    import cv2

    from tlstudio.core.project import Project
    from tlstudio.gui.app import create_application, create_main_window
    from tlstudio.gui.canvas import loader

    rng = np.random.default_rng(2)
    pixels = cv2.resize(rng.integers(0, 255, (12, 16, 3), dtype=np.uint8), (800, 600))
    (tmp_path / "src").mkdir()
    cv2.imwrite(str(tmp_path / "src" / "photo.jpg"), pixels)
    with Project.create(tmp_path / "p") as p:
        p.add_images([tmp_path / "src" / "photo.jpg"])
        p.add_class("part")
    gate = threading.Event()  # holds the full decode until the test has drawn its box
    real_decode = loader.decode
    monkeypatch.setattr(loader, "decode", lambda path: gate.wait(10) and real_decode(path))

    create_application()
    window = create_main_window(None, qsettings)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    canvas = window.canvas
    canvas.sync_max_pixels = 0  # every image counts as big: decoded in the background
    with qtbot.waitSignal(canvas.image_layer.preview_shown, timeout=10_000):
        window.open_project(tmp_path / "p")
        window.app_state.set_image(window.app_state.project.image_ids()[0])
    assert canvas.image_layer.previewing and not canvas.image_ready
    assert canvas.display_pixmap().width() == 200  # a quarter of the width, stretched
    assert canvas.image_layer.item.sceneBoundingRect().width() == 800

    window.app_state.set_tool("box")
    canvas.setFocus()
    qtbot.mousePress(canvas.viewport(), L, NOMOD, vp(canvas, 100, 120))
    QTest.mouseMove(canvas.viewport(), vp(canvas, 300, 250))
    qtbot.mouseRelease(canvas.viewport(), L, NOMOD, vp(canvas, 640, 480))
    project = window.app_state.project
    (box,) = project.boxes(canvas.image_id)
    assert box.xyxy == pytest.approx((100, 120, 640, 480), abs=1)  # full-resolution pixels

    with qtbot.waitSignal(canvas.image_loaded, timeout=10_000):
        gate.set()
    assert canvas.image_ready and not canvas.image_layer.previewing
    assert canvas.display_pixmap().width() == 800
    assert canvas.image_layer.item.sceneBoundingRect().width() == 800
    assert canvas.box_item(box.id).rect().right() == pytest.approx(640, abs=1)
    window.close()


# -- the Display dock ---------------------------------------------------------------------------


def test_display_panel_drives_the_mask_and_label_layers(qtbot, main_window):
    canvas, panel = main_window.canvas, main_window.display
    qtbot.waitUntil(lambda: canvas.image_ready, timeout=5000)
    assert canvas.mask_item.opacity() == pytest.approx(0.5)
    panel.opacity.setFocus()
    qtbot.keyClick(panel.opacity, Qt.Key.Key_End)
    assert canvas.mask_item.opacity() == 1.0 and panel.opacity_label.text() == "100 %"

    show_mask = main_window.action_table["show_mask"]  # the View menu action and the box: one state
    show_mask.trigger()
    assert not panel.show_mask.isChecked() and not canvas.mask_item.isVisible()
    qtbot.keyClick(panel.show_mask, Qt.Key.Key_Space)
    assert show_mask.isChecked() and canvas.mask_item.isVisible()

    boxes, landmarks = panel.layer_boxes
    iid = canvas.image_id
    box_id = main_window.app_state.project.boxes(iid)[0].id
    boxes.setFocus()
    qtbot.keyClick(boxes, Qt.Key.Key_Space)
    assert not canvas.box_item(box_id).isVisible()
    qtbot.keyClick(boxes, Qt.Key.Key_Space)
    assert canvas.box_item(box_id).isVisible()
    # an 8-bit image: no window/level, no presets
    assert not panel.preset.isEnabled() and not panel.center.isEnabled()
