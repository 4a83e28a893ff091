"""The class brush on an image with objects (instances), in the whole MainWindow: the
brush writes the label map as before; pixels it repaints with another class leave the
object, and undo gives them back."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPointF, Qt
from PySide6.QtTest import QTest

from tlstudio.core.commands import CreateInstance

L = Qt.MouseButton.LeftButton
NOMOD = Qt.KeyboardModifier.NoModifier
CTRL = Qt.KeyboardModifier.ControlModifier


def test_brush_over_an_object_takes_its_pixels_and_undo_returns_them(qtbot, main_window):
    canvas = main_window.canvas
    qtbot.waitUntil(lambda: canvas.image_ready, timeout=5000)
    state = main_window.app_state
    project, iid = state.project, canvas.image_id
    rec = project.image(iid)
    other = next(c.id for c in project.classes() if c.id != state.class_id)
    before = project.instances.layer(iid)  # the demo's shapes are objects
    region = np.zeros((rec.height, rec.width), bool)
    region[80:120, 20:100] = True
    create = CreateInstance(iid, other, region)
    state.push(create)
    assert create.instance is not None and create.instance.id is not None
    obj = create.instance.id
    assert np.array_equal(project.instances.region(obj), region)

    canvas.setFocus()
    qtbot.keyClick(canvas, Qt.Key.Key_M)  # mask tool, brush with the current class
    canvas.set_brush_size(8)
    qtbot.mousePress(canvas.viewport(), L, NOMOD, canvas.mapFromScene(QPointF(10, 100)))
    QTest.mouseMove(canvas.viewport(), canvas.mapFromScene(QPointF(60, 100)))
    QTest.mouseMove(canvas.viewport(), canvas.mapFromScene(QPointF(110, 100)))
    qtbot.mouseRelease(canvas.viewport(), L, NOMOD, canvas.mapFromScene(QPointF(110, 100)))
    qtbot.waitUntil(lambda: not canvas.mask_writer.busy, timeout=10_000)
    painted = project.mask(iid)
    assert (painted[100, 20:100] == state.class_id).all()  # the brush wrote the label map
    left = project.instances.region(obj)
    assert not left[100, 20:100].any() and left.sum() < region.sum()  # the object lost them
    assert left[85, 20:100].all()  # and kept the rest

    qtbot.keyClick(canvas, Qt.Key.Key_Z, CTRL)
    qtbot.waitUntil(lambda: not canvas.mask_writer.busy, timeout=10_000)
    assert np.array_equal(project.instances.region(obj), region)
    assert (canvas.label_map()[region] == other).all()  # and the canvas shows them
    qtbot.keyClick(canvas, Qt.Key.Key_Z, CTRL)  # the object's creation is one step too
    assert project.instances.layer(iid) == before
