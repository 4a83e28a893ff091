"""The Objects tool in the whole MainWindow, driven by real mouse and key events: a drag
paints a new object (which stays selected, so the next drag adds to it), a click selects
an object, Shift+drag erases from it, Delete deletes it; each gesture is one undo step.
Objects are outlined, "colour by object" colours them one by one, ignore regions are
hatched; on large images the maps are encoded off the GUI thread and nothing is lost
when the project closes."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PySide6.QtCore import QPointF, Qt
from PySide6.QtTest import QTest

from tlstudio.core.project import Project
from tlstudio.gui.canvas.object_layer import object_color

L = Qt.MouseButton.LeftButton
NOMOD = Qt.KeyboardModifier.NoModifier
SHIFT = Qt.KeyboardModifier.ShiftModifier
CTRL = Qt.KeyboardModifier.ControlModifier


def _ready(qtbot, window):
    canvas = window.canvas
    qtbot.waitUntil(lambda: canvas.image_ready, timeout=10_000)
    canvas.setFocus()
    qtbot.keyClick(canvas, Qt.Key.Key_I)
    assert window.app_state.tool == "objects"
    assert window.action_table["tool_objects"].isChecked()
    return canvas


def _drag(qtbot, canvas, points, modifier=NOMOD):
    """A left-button drag through ``points`` (image px)."""
    view = canvas.viewport()
    qtbot.mousePress(view, L, modifier, canvas.mapFromScene(QPointF(*points[0])))
    for p in points[1:]:
        QTest.mouseMove(view, canvas.mapFromScene(QPointF(*p)))
    qtbot.mouseRelease(view, L, modifier, canvas.mapFromScene(QPointF(*points[-1])))


def _click(qtbot, canvas, x, y):
    qtbot.mouseClick(canvas.viewport(), L, NOMOD, canvas.mapFromScene(QPointF(x, y)))


def _stored(qtbot, canvas) -> None:
    qtbot.waitUntil(lambda: not canvas.mask_writer.busy, timeout=20_000)


def _free_row(label: np.ndarray, objects: np.ndarray | None, width: int) -> int:
    """A row whose middle ``width`` px (and 6 rows around) hold no label."""
    h, w = label.shape
    x0 = (w - width) // 2
    for y in range(8, h - 8):
        if not label[y - 6 : y + 7, x0 : x0 + width].any():
            return y
    raise AssertionError("no free row in the demo image")


def test_a_drag_paints_a_new_object_and_the_next_drag_adds_to_it(qtbot, main_window):
    canvas = _ready(qtbot, main_window)
    state = main_window.app_state
    project, iid = state.project, canvas.image_id
    before = project.instances.of_image(iid)
    label = project.mask(iid)
    y = _free_row(label, None, 60)
    canvas.set_brush_size(6)
    _drag(qtbot, canvas, [(34, y), (50, y), (64, y)])
    number = canvas.selection.id
    assert canvas.selection.kind == "object"
    _stored(qtbot, canvas)
    after = project.instances.of_image(iid)
    assert len(after) == len(before) + 1
    new = next(o for o in after if o.number == number)
    assert new.class_id == state.class_id
    region = project.instances.region(new.id)
    assert region[y, 36:62].all() and not region[y + 6].any()
    assert (project.mask(iid)[region] == state.class_id).all()

    _drag(qtbot, canvas, [(64, y), (80, y), (94, y)])  # selected: adds to it
    _stored(qtbot, canvas)
    grown = project.instances.region(new.id)
    assert len(project.instances.of_image(iid)) == len(after)
    assert grown[y, 36:92].all() and grown.sum() > region.sum()

    qtbot.keyClick(canvas, Qt.Key.Key_Z, CTRL)  # one stroke, one step
    _stored(qtbot, canvas)
    assert np.array_equal(project.instances.region(new.id), region)
    assert main_window.action_table["undo"].text() == "&Undo New object"
    qtbot.keyClick(canvas, Qt.Key.Key_Z, CTRL)
    _stored(qtbot, canvas)
    assert project.instances.of_image(iid) == before
    assert canvas.selection is None  # the object is gone
    qtbot.keyClick(canvas, Qt.Key.Key_Z, CTRL | Qt.KeyboardModifier.ShiftModifier)
    _stored(qtbot, canvas)
    again = project.instances.of_image(iid)
    assert [o.id for o in again] == [o.id for o in after]  # redo keeps the object's id


def test_escape_starts_another_object_and_touching_objects_stay_two(qtbot, main_window):
    canvas = _ready(qtbot, main_window)
    project, iid = main_window.app_state.project, canvas.image_id
    y = _free_row(project.mask(iid), None, 60)
    n_before = len(project.instances.of_image(iid))
    canvas.set_brush_size(6)
    _drag(qtbot, canvas, [(34, y), (60, y)])
    first = canvas.selection.id
    qtbot.keyClick(canvas, Qt.Key.Key_Escape)
    assert canvas.selection is None
    _drag(qtbot, canvas, [(58, y), (90, y)])  # overlaps the first object's end
    second = canvas.selection.id
    assert second != first
    _stored(qtbot, canvas)
    objects = {o.number: o for o in project.instances.of_image(iid)}
    assert len(objects) == n_before + 2
    a = project.instances.region(objects[first].id)
    b = project.instances.region(objects[second].id)
    assert not (a & b).any() and b[y, 58:88].all() and a[y, 36:55].all()
    assert objects[first].class_id == objects[second].class_id  # one class, two objects
    outlined = canvas.annotations.objects.outlines.paths
    assert {first, second} <= set(outlined)


def test_click_selects_shift_drag_erases_and_delete_deletes(qtbot, main_window):
    canvas = _ready(qtbot, main_window)
    project, iid = main_window.app_state.project, canvas.image_id
    target = max(
        project.instances.of_image(iid), key=lambda o: project.instances.region(o.id).sum()
    )
    region = project.instances.region(target.id)
    ys, xs = np.nonzero(region)
    cy, cx = int(np.median(ys)), int(np.median(xs))
    _click(qtbot, canvas, cx + 0.5, cy + 0.5)
    assert canvas.selection is not None and canvas.selection.id == target.number
    assert canvas.annotations.objects.outlines.selected == target.number

    canvas.set_brush_size(4)
    _drag(qtbot, canvas, [(xs.min() - 4, cy + 0.5), (xs.max() + 4, cy + 0.5)], SHIFT)
    _stored(qtbot, canvas)
    erased = project.instances.region(target.id)
    assert not erased[cy].any() and erased.sum() < region.sum()
    assert (project.mask(iid)[cy, xs.min() : xs.max() + 1] == 0).all()  # background now

    qtbot.keyClick(canvas, Qt.Key.Key_Delete)
    _stored(qtbot, canvas)
    assert target.number not in {o.number for o in project.instances.of_image(iid)}
    assert not project.mask(iid)[erased].any()
    qtbot.keyClick(canvas, Qt.Key.Key_Z, CTRL)
    qtbot.keyClick(canvas, Qt.Key.Key_Z, CTRL)
    _stored(qtbot, canvas)
    assert np.array_equal(project.instances.region(target.id), region)

    _click(qtbot, canvas, 1.5, 1.5)  # beside every object: nothing selected
    assert canvas.selection is None


def test_a_digit_key_gives_the_selected_object_that_class(qtbot, main_window):
    canvas = _ready(qtbot, main_window)
    project, iid = main_window.app_state.project, canvas.image_id
    target = project.instances.of_image(iid)[0]
    region = project.instances.region(target.id)
    tags = project.tags(iid)
    classes = project.classes()
    n = next(k for k, c in enumerate(classes, 1) if c.id != target.class_id)
    other = classes[n - 1]
    ys, xs = np.nonzero(region)
    _click(qtbot, canvas, float(xs[len(xs) // 2]) + 0.5, float(ys[len(ys) // 2]) + 0.5)
    assert canvas.selection is not None and canvas.selection.id == target.number

    qtbot.keyClick(canvas, getattr(Qt.Key, f"Key_{n}"))
    _stored(qtbot, canvas)
    (now,) = (o for o in project.instances.of_image(iid) if o.id == target.id)
    assert now.class_id == other.id
    assert (project.mask(iid)[region] == other.id).all()  # its pixels follow
    assert np.array_equal(project.instances.region(target.id), region)
    assert project.tags(iid) == tags  # the image is not tagged
    assert main_window.action_table["undo"].text() == f"&Undo Object class {other.name}"

    qtbot.keyClick(canvas, Qt.Key.Key_Z, CTRL)
    _stored(qtbot, canvas)
    assert project.instances.of_image(iid)[0].class_id == target.class_id
    assert (project.mask(iid)[region] == target.class_id).all()

    qtbot.keyClick(canvas, Qt.Key.Key_Escape)  # nothing selected: the key tags the image
    assert canvas.selection is None
    qtbot.keyClick(canvas, getattr(Qt.Key, f"Key_{n}"))
    assert other.id in project.tags(iid)


def test_colour_by_object_and_the_outlines_and_ignore_region(qtbot, main_window):
    canvas = _ready(qtbot, main_window)
    project, iid = main_window.app_state.project, canvas.image_id
    objects = project.instances.of_image(iid)
    layer = canvas.annotations
    assert set(layer.objects.outlines.paths) == {o.number for o in objects}
    first = objects[0]
    ys, xs = np.nonzero(project.instances.region(first.id))
    y, x = int(ys[len(ys) // 2]), int(xs[len(xs) // 2])
    class_rgb = project.class_info(first.class_id).color.lower()
    assert f"#{layer.mask_item.argb_at(x, y) & 0xFFFFFF:06x}" == class_rgb
    assert not layer.objects.fill.isVisible()

    main_window.display.color_by_object.click()
    assert layer.objects.fill.isVisible()
    assert layer.mask_item.argb_at(x, y) == 0  # the object's own colour instead
    assert (
        layer.objects.fill.argb_at(x, y) & 0xFFFFFF == object_color(first.number).rgb() & 0xFFFFFF
    )
    assert layer.objects.outlines.colors[first.number] == object_color(first.number)
    main_window.display.color_by_object.click()
    assert f"#{layer.mask_item.argb_at(x, y) & 0xFFFFFF:06x}" == class_rgb

    ignore = np.zeros(project.mask(iid).shape, bool)
    ignore[100:128, 0:40] = True
    project.instances.set_ignore(iid, ignore)
    main_window.app_state.data_changed.emit()
    path = layer.objects.ignore_item.path
    assert path.contains(QPointF(20, 114)) and not path.contains(QPointF(60, 60))
    image = canvas.grab().toImage()
    inside = image.pixelColor(canvas.mapFromScene(QPointF(20, 114)))
    assert abs(inside.red() - inside.green()) < 30 and abs(inside.green() - inside.blue()) < 30
    qtbot.keyClick(canvas, Qt.Key.Key_F)  # still drawn after a zoom change
    assert layer.objects.ignore_item.isVisible()


def _big_project(folder: Path, w: int = 2400, h: int = 1800) -> Path:
    rng = np.random.default_rng(0)
    img = folder / "big.png"
    folder.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(img), rng.integers(0, 255, (h, w, 3), np.uint8))
    with Project.create(folder / "big") as p:
        p.add_images([img])
        p.add_class("cell")
    return folder / "big"


def test_large_images_are_stored_off_the_gui_thread_and_nothing_is_lost(
    qtbot, main_window, tmp_path
):
    root = _big_project(tmp_path / "bigsrc")
    assert main_window.project_actions.open_project(root)
    canvas = main_window.canvas
    qtbot.waitUntil(lambda: canvas.image_id is not None, timeout=10_000)
    assert canvas.wait_for_image(30_000)
    qtbot.waitUntil(lambda: canvas.image_ready, timeout=30_000)
    canvas.setFocus()
    qtbot.keyClick(canvas, Qt.Key.Key_I)
    canvas.set_brush_size(80)
    _drag(qtbot, canvas, [(300, 300), (900, 320), (1500, 340)])
    # the stroke is on screen and on the undo stack; its maps are still being encoded
    assert canvas.mask_writer.busy
    assert canvas.annotations.objects.has_object(canvas.selection.id)
    qtbot.keyClick(canvas, Qt.Key.Key_Z, CTRL)  # undone before it was even stored
    qtbot.keyClick(canvas, Qt.Key.Key_Z, CTRL | Qt.KeyboardModifier.ShiftModifier)
    qtbot.keyClick(canvas, Qt.Key.Key_Escape)
    _drag(qtbot, canvas, [(300, 1200), (1500, 1240)])  # a second object, then close at once
    assert canvas.mask_writer.busy
    main_window.app_state.close_project()
    with Project.open(root) as p:
        (iid,) = p.image_ids()
        objects = p.instances.of_image(iid)
        assert len(objects) == 2
        first = p.instances.region(objects[0].id)
        assert first[310, 300:1500].all() and not first[1220].any()
        assert p.instances.region(objects[1].id)[1220, 320:1480].all()


def _instance_run(project, image_id: int) -> int:
    """A finished instance run (no model needed to accept) whose stored prediction for
    ``image_id`` holds two objects: a square patch (best score) and a smaller one."""
    from tlstudio.core.runs import RunStore

    rec = project.image(image_id)
    numbers = np.zeros((rec.height, rec.width), np.uint16)
    numbers[4:24, 4:24] = 1
    numbers[4:14, 100:110] = 2
    classes = [c.id for c in project.classes()]
    payload = {"objects": [
        {"number": 1, "class_id": classes[0], "score": 0.92, "xyxy": [4, 4, 24, 24]},
        {"number": 2, "class_id": classes[1], "score": 0.41, "xyxy": [100, 4, 110, 14]},
    ]}  # fmt: skip
    runs = RunStore(project)
    run_id = runs.start("instances", "resnet18", {}, "cpu")
    runs.set_prediction(run_id, image_id, payload, numbers, 0.92)
    runs.update(run_id, status="finished", checkpoint=f"runs/{run_id}/model.pt")
    return run_id


def test_predicted_objects_are_drawn_one_by_one_and_accepted_as_objects(qtbot, main_window):
    canvas = main_window.canvas
    qtbot.waitUntil(lambda: canvas.image_ready, timeout=10_000)
    state, panel = main_window.app_state, main_window.predictions
    project, iid = state.project, canvas.image_id
    run_id = _instance_run(project, iid)
    panel.refresh_runs()
    panel.run_combo.setCurrentIndex(panel.run_combo.findData(run_id))
    layer = canvas.prediction_layer
    classes = {c.id: c.name for c in project.classes()}
    first = classes[project.classes()[0].id]
    assert layer.shown_objects() == [f"{first} 0.92"]  # threshold 0.50
    assert layer.mask.argb_at(10, 10) != 0 and layer.mask.argb_at(104, 8) == 0
    assert {1} == {value for value, _path in layer.mask_outline.outlines}
    panel.threshold_slider.setValue(30)
    assert len(layer.shown_objects()) == 2 and layer.mask.argb_at(104, 8) != 0
    assert "2 objects ≥ 0.30" in panel.description.text()

    before = project.instances.of_image(iid)
    panel.mode_combo.setCurrentIndex(panel.mode_combo.findData("add"))
    qtbot.mouseClick(panel.accept_button, L)
    qtbot.waitUntil(lambda: len(project.instances.of_image(iid)) == len(before) + 2, timeout=10_000)
    added = [
        o for o in project.instances.of_image(iid) if o.number not in {b.number for b in before}
    ]
    regions = sorted(int(project.instances.region(o.id).sum()) for o in added)
    assert regions == [100, 400]
    assert main_window.action_table["undo"].text() == "&Undo Accept predictions on 1 image"
    qtbot.keyClick(canvas, Qt.Key.Key_Z, CTRL)
    assert project.instances.of_image(iid) == before
