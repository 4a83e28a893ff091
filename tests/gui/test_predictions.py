"""The Predictions dock with a real canvas: predict in a thread, see the prediction
over the image, threshold it, accept it as labels and undo that."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QHBoxLayout, QMessageBox, QWidget

from tlstudio.core.annotations import SKIPPED, VISIBLE
from tlstudio.core.project import Project
from tlstudio.core.runs import RunStore

N_IMAGES = 8


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, dict[str, int]]:
    """A demo project (8 images of 64 px) with one finished 1-epoch resnet18 run per
    task (weights none, input 64 px); no predictions stored yet."""
    from tlstudio.core.demo import create_demo_project
    from tlstudio.ml import runner
    from tlstudio.ml.trainer import TrainConfig

    root = tmp_path_factory.mktemp("pred") / "demo"
    project = create_demo_project(root, n_images=N_IMAGES, size=64)
    runs = {}
    torch.set_num_threads(1)
    for task in ("classify", "detect", "landmarks", "segment"):
        spec = runner.RunSpec(task=task, backbone="resnet18", weights="none", input_size=64,
                              train=TrainConfig(epochs=1, batch_size=8, seed=0))  # fmt: skip
        runs[task] = runner.train(project, spec).run_id
    project.close()
    return root, runs


def _link_or_copy(src: str, dst: str) -> None:
    if src.endswith(".pt"):  # models are only read: share them
        os.link(src, dst)
    else:
        shutil.copy2(src, dst)


@pytest.fixture
def setup(qtbot, trained, tmp_path):
    """(app_state, canvas, panel, run ids) on a fresh copy of the trained project,
    shown in one window so the panel's Shift+A shortcut works."""
    from tlstudio.gui.canvas import CanvasView
    from tlstudio.gui.panels.predictions import PredictionsPanel
    from tlstudio.gui.state import AppState

    root, runs = trained
    copy = tmp_path / "demo"
    shutil.copytree(root, copy, copy_function=_link_or_copy)
    state = AppState()
    state.open_project(Project.open(copy))
    window = QWidget()
    canvas = CanvasView(state)
    panel = PredictionsPanel(state, canvas)
    lay = QHBoxLayout(window)
    lay.addWidget(canvas, 1)
    lay.addWidget(panel)
    window.resize(900, 600)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    window.activateWindow()
    yield state, canvas, panel, runs
    panel.shutdown()
    state.close_project()


def _choose_run(qtbot, panel, run_id: int) -> None:
    combo = panel.run_combo
    combo.setCurrentIndex(combo.findData(run_id))
    assert panel.app_state.run_id == run_id


def _predict(qtbot, panel, target: str) -> None:
    panel.target_combo.setCurrentIndex(panel.target_combo.findData(target))
    with qtbot.waitSignal(panel.controller.finished, timeout=120_000):
        qtbot.mouseClick(panel.predict_button, Qt.MouseButton.LeftButton)
    assert panel.controller.last_error is None
    assert not panel.progress.isVisible()


def _set_threshold(qtbot, panel, value: int) -> None:
    """Move the slider with the keyboard to ``value`` (hundredths)."""
    slider = panel.threshold_slider
    qtbot.keyClick(slider, Qt.Key.Key_Home)
    for _ in range(value):
        qtbot.keyClick(slider, Qt.Key.Key_Right)
    assert slider.value() == value


def test_predict_all_images_draws_boxes_in_image_pixels_and_threshold_hides_some(qtbot, setup):
    state, canvas, panel, runs = setup
    project = state.project
    images = project.image_ids()
    state.set_image(images[0])
    _choose_run(qtbot, panel, runs["detect"])
    assert "No prediction" in panel.description.text()

    _predict(qtbot, panel, "all")

    store = RunStore(project)
    assert sorted(i for i, _s in store.predicted_images(runs["detect"])) == images
    payload = store.prediction(runs["detect"], images[0]).payload["boxes"]
    assert payload, "the detector predicted no box at all"
    _set_threshold(qtbot, panel, 0)
    shown = canvas.prediction_layer.shown_boxes()
    assert len(shown) == len(payload)
    names = {c.id: c.name for c in project.classes()}
    for item, box in zip(canvas.prediction_layer.boxes, payload, strict=True):
        r = item.rect()
        assert (r.left(), r.top(), r.right(), r.bottom()) == pytest.approx(box["xyxy"], abs=1e-4)
        assert item.caption == f"{names[box['class_id']]} {box['score']:.2f}"
        assert item.scene() is canvas.scene()
        assert item.acceptedMouseButtons() == Qt.MouseButton.NoButton  # tools edit labels

    cut = int(max(b["score"] for b in payload) * 100)  # keeps the best box
    assert min(b["score"] for b in payload) < cut / 100, "every box has the same score"
    _set_threshold(qtbot, panel, cut)
    expected = sum(1 for b in payload if b["score"] >= cut / 100)
    assert 0 < len(canvas.prediction_layer.shown_boxes()) == expected < len(payload)
    assert panel.threshold_label.text() == f"{cut / 100:.2f}"

    # next image: the overlay follows it
    state.set_image(images[1])
    other = store.prediction(runs["detect"], images[1]).payload["boxes"]
    assert canvas.prediction().image_id == images[1]
    assert len(canvas.prediction_layer.boxes) == len(other)

    # ground truth on/off; predictions on/off
    label_items = [canvas.box_item(b.id) for b in project.boxes(images[1])]
    assert label_items and all(i.isVisible() for i in label_items)
    qtbot.mouseClick(panel.show_labels, Qt.MouseButton.LeftButton)
    assert not any(i.isVisible() for i in label_items) and not canvas.mask_item.isVisible()
    qtbot.mouseClick(panel.show_predictions, Qt.MouseButton.LeftButton)
    assert canvas.prediction_layer.shown_boxes() == []
    qtbot.mouseClick(panel.show_labels, Qt.MouseButton.LeftButton)
    assert all(i.isVisible() for i in label_items) and canvas.mask_item.isVisible()


def test_accept_current_image_with_shift_a_then_undo_restores_the_store(qtbot, setup, db_state):
    state, canvas, panel, runs = setup
    project = state.project
    image = project.image_ids()[2]
    state.set_image(image)
    _choose_run(qtbot, panel, runs["detect"])
    _predict(qtbot, panel, "current")
    assert [i for i, _s in RunStore(project).predicted_images(runs["detect"])] == [image]
    payload = RunStore(project).prediction(runs["detect"], image).payload["boxes"]
    _set_threshold(qtbot, panel, 0)
    before = db_state(project.store.conn)

    canvas.setFocus()
    qtbot.keyClick(canvas, Qt.Key.Key_A, Qt.KeyboardModifier.ShiftModifier)

    got = sorted((b.class_id, *(round(v, 3) for v in b.xyxy)) for b in project.boxes(image))
    want = sorted((b["class_id"], *(round(v, 3) for v in b["xyxy"])) for b in payload)
    assert got == want  # replace mode: the labelled boxes are gone
    assert len(canvas.annotations.box_ids()) == len(payload)  # the canvas shows the new labels
    assert state.undo_stack.undo_text == "Accept predictions on 1 image"
    state.undo_stack.undo()
    assert db_state(project.store.conn) == before


def test_accept_all_asks_with_the_count_and_is_one_undo_step(qtbot, setup, db_state):
    state, canvas, panel, runs = setup
    project = state.project
    images = project.image_ids()
    state.set_image(images[0])
    _choose_run(qtbot, panel, runs["classify"])
    _predict(qtbot, panel, "all")
    _set_threshold(qtbot, panel, 0)
    store = RunStore(project)
    argmax = {i: store.prediction(runs["classify"], i).payload["class_id"] for i in images}
    changed = [i for i in images if project.tags(i) != (argmax[i],)]
    assert changed, "the untrained classifier agrees with every label"
    assert "%" in panel.description.text() and "label:" in panel.description.text()
    before = db_state(project.store.conn)
    steps = state.undo_stack.count

    qtbot.mouseClick(panel.accept_all_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: panel.confirm_box is not None, timeout=30_000)  # built off-thread
    box = panel.confirm_box
    assert box is not None and f"on {len(changed)} image" in box.text()
    qtbot.mouseClick(box.button(QMessageBox.StandardButton.Yes), Qt.MouseButton.LeftButton)

    assert {i: project.tags(i) for i in images} == {i: (argmax[i],) for i in images}
    assert state.undo_stack.count == steps + 1
    n = len(changed)
    assert state.undo_stack.undo_text == f"Accept predictions on {n} image{'s' if n > 1 else ''}"
    state.undo_stack.undo()
    assert db_state(project.store.conn) == before


def test_landmark_prediction_shows_rings_and_accepts_skipped_low_points(qtbot, setup):
    state, canvas, panel, runs = setup
    project = state.project
    image = project.image_ids()[0]
    state.set_image(image)
    _choose_run(qtbot, panel, runs["landmarks"])
    _predict(qtbot, panel, "current")
    points = RunStore(project).prediction(runs["landmarks"], image).payload["points"]
    cut = int(max(p[2] for p in points) * 100)  # keeps the most confident point
    assert min(p[2] for p in points) < cut / 100, "all points have the same confidence"
    _set_threshold(qtbot, panel, cut)
    layer = canvas.prediction_layer.landmarks
    kept = [i for i, p in enumerate(points) if p[2] >= cut / 100]
    assert layer.shown_points() == kept and 0 < len(kept) < len(points)
    for i in kept:
        ring = layer.ring(i)
        assert ring.isVisible()
        assert (ring.pos().x(), ring.pos().y()) == pytest.approx(points[i][:2], abs=1e-4)
    mode = panel.mode_combo
    mode.setCurrentIndex(mode.findData("add"))
    old_sets = project.landmark_sets(image)
    qtbot.mouseClick(panel.accept_button, Qt.MouseButton.LeftButton)
    sets = project.landmark_sets(image)
    assert sets[: len(old_sets)] == old_sets  # add mode keeps the labelled sets
    (new,) = sets[len(old_sets) :]
    assert [p.visibility for p in new.points] == [
        VISIBLE if i in kept else SKIPPED for i in range(len(points))
    ]


def test_cancel_stops_early_and_a_missing_model_is_reported(qtbot, setup):
    state, canvas, panel, runs = setup
    project = state.project
    state.set_image(project.image_ids()[0])
    _choose_run(qtbot, panel, runs["classify"])
    panel.controller.batch_size = 1  # cancel is checked between batches
    panel.target_combo.setCurrentIndex(panel.target_combo.findData("all"))
    with qtbot.waitSignal(panel.controller.finished, timeout=120_000) as done:
        qtbot.mouseClick(panel.predict_button, Qt.MouseButton.LeftButton)
        assert panel.cancel_button.isVisible() and not panel.predict_button.isEnabled()
        qtbot.mouseClick(panel.cancel_button, Qt.MouseButton.LeftButton)
    stored = len(RunStore(project).predicted_images(runs["classify"]))
    assert done.args == [stored] and stored < N_IMAGES
    assert panel.predict_button.isEnabled() and not panel.cancel_button.isVisible()

    model = project.root / RunStore(project).get(runs["classify"]).checkpoint
    model.unlink()
    with qtbot.waitSignals([panel.message, panel.controller.finished], timeout=60_000):
        qtbot.mouseClick(panel.predict_button, Qt.MouseButton.LeftButton)
    assert "model file" in panel.description.text() and "missing" in panel.description.text()
    assert str(model) in panel.controller.last_error


def test_segment_prediction_is_its_own_overlay_and_accept_replaces_the_mask(qtbot, setup):
    from PySide6.QtGui import QColor

    state, canvas, panel, runs = setup
    project = state.project
    image = project.image_ids()[1]
    state.set_image(image)
    _choose_run(qtbot, panel, runs["segment"])
    _predict(qtbot, panel, "current")
    predicted = RunStore(project).prediction(runs["segment"], image).mask
    assert predicted is not None and predicted.any(), "the segmenter predicted background only"
    overlay = canvas.prediction_layer.mask
    assert overlay.isVisible() and overlay is not canvas.mask_item
    assert overlay.zValue() > canvas.mask_item.zValue()
    assert overlay.opacity() != canvas.mask_item.opacity()
    rows, cols = predicted.nonzero()
    y, x = int(rows[0]), int(cols[0])
    color = QColor(project.class_info(int(predicted[y, x])).color)
    assert overlay.argb_at(x, y) == color.rgb() & 0xFFFFFFFF
    assert "Mask:" in panel.description.text()

    qtbot.mouseClick(panel.show_predictions, Qt.MouseButton.LeftButton)
    assert not overlay.isVisible()
    qtbot.mouseClick(panel.accept_button, Qt.MouseButton.LeftButton)
    assert (project.mask(image) == predicted).all()
    assert (canvas.label_map() == predicted).all()  # the canvas shows the new label map
