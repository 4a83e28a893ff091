"""A multi-task run (classify,landmarks) in the window: History lists it and says that the
Train panel cannot reuse its settings; Inspect → Metrics says it measures single-task runs
and names the command that measures each task. The Train panel does not offer multi-task
runs."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

from tlstudio.gui.app import create_main_window

LEFT = Qt.MouseButton.LeftButton

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, int]:
    """(folder, run id) of a closed 12-image demo project with a tiny classify,landmarks run."""
    from tlstudio.core.demo import create_demo_project
    from tlstudio.ml import runner
    from tlstudio.ml.runner import RunSpec
    from tlstudio.ml.trainer import TrainConfig

    root = tmp_path_factory.mktemp("mt_gui") / "mt"
    with create_demo_project(root, n_images=12, size=64) as project:
        spec = RunSpec(task="classify,landmarks", backbone="resnet18", weights="none",
                       train=TrainConfig(epochs=1, batch_size=4, freeze=0), input_size=32)  # fmt: skip
        run_id = runner.train(project, spec).run_id
    return root, run_id


@pytest.fixture
def window(qtbot, trained, tmp_path: Path, qsettings):
    root = tmp_path / "mt"
    shutil.copytree(trained[0], root)
    w = create_main_window(root, qsettings)
    qtbot.addWidget(w)
    w.show()
    qtbot.waitExposed(w)
    w.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is w)
    w.app_state.set_run(trained[1])
    yield w
    w.close()


def _click_tab(qtbot, tabs, title: str):
    i = next(i for i in range(tabs.count()) if tabs.tabText(i) == title)
    bar = tabs.tabBar()
    qtbot.mouseClick(bar, LEFT, pos=bar.tabRect(i).center())
    return tabs.currentWidget()


def test_history_lists_and_metrics_evaluate_a_multitask_run(qtbot, window) -> None:
    qtbot.keyClick(window, Qt.Key.Key_F3)
    history = window.train_panel.history
    qtbot.waitUntil(lambda: history.table.rowCount() > 0, timeout=10_000)
    table = history.table
    cells = [table.item(0, c).text() for c in range(table.columnCount())]
    assert "classify,landmarks" in cells and "classify/accuracy" in cells
    rect = table.visualItemRect(table.item(0, 0))
    qtbot.mouseClick(table.viewport(), LEFT, pos=rect.center())
    assert history.selected_run_ids() == [window.app_state.run_id]
    # Reuse settings: the panel cannot train several tasks, and says so
    qtbot.mouseClick(history.reuse_button, LEFT)
    qtbot.waitUntil(lambda: "several tasks" in history.info_label.text(), timeout=30_000)
    assert "--task classify,landmarks" in history.info_label.text()

    qtbot.keyClick(window, Qt.Key.Key_F4)
    metrics = _click_tab(qtbot, window.inspect_panel.tabs, "Metrics")
    qtbot.mouseClick(metrics.evaluate_button, LEFT)
    # not built for several tasks: the view says so in plain words and where to look
    status = metrics.status_label
    qtbot.waitUntil(lambda: "several tasks" in status.text(), timeout=60_000)
    assert "trains several tasks (classify,landmarks)" in status.text()
    assert "tlstudio evaluate" in status.text()
    qtbot.waitUntil(lambda: not metrics.is_busy(), timeout=10_000)
    assert metrics.evaluate_button.isEnabled()


def test_predictions_dock_draws_each_tasks_prediction(qtbot, trained, tmp_path: Path) -> None:
    from PySide6.QtWidgets import QHBoxLayout, QWidget

    from tlstudio.core.project import Project
    from tlstudio.core.runs import RunStore
    from tlstudio.gui.canvas.view import CanvasView
    from tlstudio.gui.panels.predictions import PredictionsPanel
    from tlstudio.gui.state import AppState

    root = tmp_path / "mt"
    shutil.copytree(trained[0], root)
    run_id = trained[1]
    state = AppState()
    state.open_project(Project.open(root))
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
    try:
        project = state.project
        image = project.image_ids()[0]
        state.set_image(image)
        combo = panel.run_combo
        combo.setCurrentIndex(combo.findData(run_id))
        assert state.run_id == run_id
        panel.target_combo.setCurrentIndex(panel.target_combo.findData("current"))
        with qtbot.waitSignal(panel.controller.finished, timeout=120_000):
            qtbot.mouseClick(panel.predict_button, LEFT)
        assert panel.controller.last_error is None
        payload = RunStore(project).prediction(run_id, image).payload
        qtbot.keyClick(panel.threshold_slider, Qt.Key.Key_Home)  # threshold 0: every point
        layer = canvas.prediction_layer
        assert layer.landmarks.shown_points() == list(range(len(payload["points"])))
        assert layer.probabilities.ranked  # the class probabilities are drawn too
        text = panel.description.text()
        names = {c.name for c in project.classes()}
        assert " · " in text and any(n in text for n in names)
    finally:
        panel.shutdown()
        state.close_project()
