"""Issue 15 §3–6 in the window, with mouse and keys: Instant (few-shot) predicts the
untagged images, Find learning rate sweeps and sets the rate without touching the
project, the Metrics view shows calibration before/after with a reliability diagram,
Inspect combines runs into an ensemble that every run picker offers, and the
Predictions dock predicts with test-time augmentation and shows the ensemble's spread."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QWidget

from tlstudio.core.project import Project
from tlstudio.core.runs import RunStore
from tlstudio.gui.app import create_main_window

LEFT = Qt.MouseButton.LeftButton
TIMEOUT_MS = 180_000


def _show(qtbot, root: Path, settings):
    window = create_main_window(root, settings)
    qtbot.addWidget(window)
    window.resize(1400, 900)
    window.show()
    qtbot.waitExposed(window)
    window.activateWindow()
    return window


def _close(window) -> None:
    from tlstudio.gui.workers.jobs import wait_for_jobs

    assert window.train_panel.shutdown(60_000)  # else close() asks in a box nobody answers
    window.close()
    assert wait_for_jobs(60_000)


def _click_tab(qtbot, tabs, title: str) -> QWidget:
    i = next(i for i in range(tabs.count()) if tabs.tabText(i) == title)
    bar = tabs.tabBar()
    qtbot.mouseClick(bar, LEFT, pos=bar.tabRect(i).center())
    assert tabs.currentIndex() == i
    return tabs.currentWidget()


@pytest.fixture(scope="module")
def fewshot_dir(tmp_path_factory) -> Path:
    """80 demo images (a dozen in val) with two few-shot runs on 64 px features
    (prototypes, logistic regression); copy before changing."""
    import torch

    from tlstudio.core.demo import create_demo_project
    from tlstudio.ml.experiments import fit_sklearn_run

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("confidence") / "demo"
    try:
        with create_demo_project(root, n_images=80, size=48) as project:
            for kind in ("prototype", "logreg"):
                fit_sklearn_run(project, "efficientnet_lite0", "bundled", kind, 64, device="cpu")
    finally:
        torch.set_num_threads(threads)
    return root


@pytest.fixture
def project_dir(fewshot_dir, tmp_path) -> Path:
    root = tmp_path / "demo"
    shutil.copytree(fewshot_dir, root)
    return root


@pytest.mark.usefixtures("torch_one_thread")
def test_instant_fewshot_predicts_the_untagged_images(qtbot, demo_dir, qsettings):
    with Project.open(demo_dir) as project:
        untagged = [r.id for r in project.images_in_split("train")][:2]
        with project.transaction():
            for image_id in untagged:
                project.set_tags(image_id, [])
    window = _show(qtbot, demo_dir, qsettings)
    try:
        _click_tab(qtbot, window.modes, "Train")
        dock = window.train_panel
        dock.config.wait_ready()
        view = _click_tab(qtbot, dock.tabs, "Instant few-shot")
        assert view is dock.instant
        qtbot.mouseClick(view.run_button, LEFT)
        qtbot.waitUntil(lambda: not view.is_busy(), timeout=TIMEOUT_MS)
        assert view.status.text().startswith("Run #"), view.status.text()
        project = window.app_state.project
        run_id = view.result.run_id
        assert window.app_state.run_id == run_id  # the Predictions dock and Inspect follow
        assert RunStore(project).get(run_id).checkpoint is not None
        listed = [view.results.item(i).text() for i in range(view.results.count())]
        assert len(listed) == 2 and all("→" in t and "%" in t for t in listed)
        for image_id in untagged:
            assert RunStore(project).prediction(run_id, image_id) is not None
        # a double-click (press/release, then the double-click) opens the image
        item = view.results.item(0)
        rect = view.results.visualItemRect(item)
        qtbot.mouseClick(view.results.viewport(), LEFT, pos=rect.center())
        qtbot.mouseDClick(view.results.viewport(), LEFT, pos=rect.center())
        qtbot.waitUntil(lambda: window.modes.currentIndex() == 0)
        assert window.app_state.image_id in untagged
    finally:
        _close(window)


@pytest.mark.usefixtures("torch_one_thread")
def test_find_learning_rate_sweeps_and_only_the_setting_changes(
    qtbot, demo_dir, qsettings, db_state
):
    window = _show(qtbot, demo_dir, qsettings)
    try:
        before = db_state(window.app_state.project.store.conn)
        _click_tab(qtbot, window.modes, "Train")
        dock = window.train_panel
        dock.config.wait_ready()
        view = _click_tab(qtbot, dock.tabs, "Find learning rate")
        view.iterations.selectAll()
        qtbot.keyClicks(view.iterations, "30")
        qtbot.keyClick(view.iterations, Qt.Key.Key_Enter)
        assert view.iterations.value() == 30
        qtbot.mouseClick(view.find_button, LEFT)
        qtbot.waitUntil(lambda: not view.is_busy(), timeout=TIMEOUT_MS)
        res = view.result
        assert res is not None and len(res.lrs) <= 30 and view.plot is not None
        assert db_state(window.app_state.project.store.conn) == before  # no run, no edit
        if res.suggested is None:
            assert view.suggestion.text().startswith("No suggestion")
            assert not view.use_button.isEnabled()
            return
        assert view.suggestion.text().startswith("Suggested learning rate")
        qtbot.mouseClick(view.use_button, LEFT)
        assert dock.config.spec().train.lr == pytest.approx(res.suggested, rel=1e-3)
    finally:
        _close(window)


@pytest.mark.usefixtures("torch_one_thread")
def test_metrics_view_shows_calibration_before_and_after(qtbot, project_dir, qsettings):
    window = _show(qtbot, project_dir, qsettings)
    try:
        _click_tab(qtbot, window.modes, "Inspect")
        panel = window.inspect_panel
        combo = panel.run_combo
        combo.setCurrentIndex(combo.findData(1))  # the prototype run
        view = panel.view("Metrics")
        qtbot.mouseClick(view.evaluate_button, LEFT)
        qtbot.waitUntil(lambda: view.evaluation is not None, timeout=TIMEOUT_MS)
        box = view.calibration_box
        assert box.isVisible()
        cal = RunStore(window.app_state.project).get(1).config["calibration"]
        text = box.text.text()
        assert f"{cal['ece_before']:.3f} → {cal['ece_after']:.3f}" in text
        assert set(box.bars) == {"raw", "calibrated"}
        assert all(0.0 <= a <= 1.0 for _c, a in box.bars["calibrated"])
        assert "Expected calibration error" in view.notes_label.text()
    finally:
        _close(window)


def _tick(qtbot, run_list, run_id: int) -> None:
    from tlstudio.gui.inspect.ensemble_dialog import RUN_ROLE

    row = next(i for i in range(run_list.count()) if run_list.item(i).data(RUN_ROLE) == run_id)
    item = run_list.item(row)
    qtbot.mouseClick(run_list.viewport(), LEFT, pos=run_list.visualItemRect(item).center())
    qtbot.keyClick(run_list, Qt.Key.Key_Space)  # toggles the ticked state of the current row


@pytest.mark.usefixtures("torch_one_thread")
def test_ensemble_is_made_in_inspect_and_predicts_with_its_spread(qtbot, project_dir, qsettings):
    window = _show(qtbot, project_dir, qsettings)
    try:
        _click_tab(qtbot, window.modes, "Inspect")
        panel = window.inspect_panel
        panel.run_combo.setCurrentIndex(panel.run_combo.findData(1))
        qtbot.mouseClick(panel.ensemble_button, LEFT)
        dialog = panel.ensemble_dialog
        qtbot.waitUntil(dialog.isVisible)
        assert dialog.checked_runs() == [1] and not dialog.ok_button.isEnabled()
        _tick(qtbot, dialog.run_list, 2)
        assert sorted(dialog.checked_runs()) == [1, 2] and dialog.ok_button.isEnabled()
        qtbot.mouseClick(dialog.ok_button, LEFT)
        qtbot.waitUntil(lambda: window.app_state.run_id == 3, timeout=TIMEOUT_MS)
        assert "ensemble of 2 (#1, #2)" in panel.run_combo.currentText()

        # the Predictions dock offers it too, and shows the members' disagreement
        _click_tab(qtbot, window.modes, "Label")
        dock = window.predictions
        qtbot.waitUntil(lambda: dock.run_combo.currentData() == 3)
        assert "ensemble of 2" in dock.run_combo.currentText()
        dock.target_combo.setCurrentIndex(dock.target_combo.findData("current"))
        window.app_state.set_image(window.app_state.project.image_ids()[0])
        qtbot.mouseClick(dock.predict_button, LEFT)
        qtbot.waitUntil(lambda: not dock.controller.is_running, timeout=TIMEOUT_MS)
        qtbot.waitUntil(lambda: "between the ensemble's models" in dock.description.text())
    finally:
        _close(window)


@pytest.mark.usefixtures("torch_one_thread")
def test_predictions_dock_predicts_with_test_time_augmentation(qtbot, project_dir, qsettings):
    window = _show(qtbot, project_dir, qsettings)
    try:
        dock = window.predictions
        dock.run_combo.setCurrentIndex(dock.run_combo.findData(2))  # logistic regression
        image_id = window.app_state.project.image_ids()[0]
        window.app_state.set_image(image_id)
        dock.target_combo.setCurrentIndex(dock.target_combo.findData("current"))
        store = RunStore(window.app_state.project)

        def predicted() -> np.ndarray:
            qtbot.mouseClick(dock.predict_button, LEFT)
            qtbot.waitUntil(lambda: not dock.controller.is_running, timeout=TIMEOUT_MS)
            probs = store.prediction(2, image_id).payload["probs"]
            return np.array([probs[k] for k in sorted(probs)])

        plain = predicted()
        assert dock.tta_check.isVisible() and not dock.tta_check.isChecked()
        qtbot.mouseClick(dock.tta_check, LEFT)
        assert dock.tta_check.isChecked()
        augmented = predicted()
        assert not np.allclose(plain, augmented, atol=1e-6)  # the mirror image was seen too
        assert np.isclose(augmented.sum(), 1.0)
        assert QApplication.activeModalWidget() is None
    finally:
        _close(window)


@pytest.mark.usefixtures("torch_one_thread")
def test_a_finished_run_says_what_its_figures_mean(qtbot, demo_dir, qsettings):
    from tlstudio.ml.runner import RunSpec
    from tlstudio.ml.train_config import TrainConfig

    with Project.open(demo_dir) as project:
        val = [r.id for r in project.images_in_split("val")]
        project.set_splits({val[-1]: "test"})  # a labelled test image, never trained on
        n_test = len(project.images_in_split("test"))
    assert n_test == 1
    window = _show(qtbot, demo_dir, qsettings)
    try:
        _click_tab(qtbot, window.modes, "Train")
        dock = window.train_panel
        dock.config.wait_ready()
        # the fast path: bundled frozen backbone, only the head trains on cached features
        dock.config.set_spec(
            RunSpec(task="classify", backbone="efficientnet_lite0", weights="bundled",
                    input_size=64, train=TrainConfig(epochs=2, batch_size=4, lr=3e-3))
        )  # fmt: skip
        button = dock.config.train_button
        qtbot.waitUntil(button.isEnabled, timeout=30_000)  # the panel checks the labels
        with qtbot.waitSignal(dock.controller.finished, timeout=TIMEOUT_MS):
            qtbot.mouseClick(button, LEFT)
        qtbot.waitUntil(lambda: "never used for selection" in dock.monitor.note_label.text())
        note = dock.monitor.note_label.text()
        assert f"{n_test} images" in note and "picked on those images" in note
    finally:
        _close(window)
