"""Screenshots of the Predictions dock beside the canvas, with real trained runs on a
demo project (not collected by pytest).

    QT_QPA_PLATFORM=offscreen .venv/bin/python tools/screenshots/make_screenshots_predictions.py

Writes docs/screenshots/predictions.png (detection), predictions_classify.png,
predictions_landmarks.png and predictions_segment.png, each a 1200×800 px widget. Trains three small runs on
the CPU first (10–15 minutes on 2 busy cores) in a temporary demo project; pass that
project's folder (printed) as the argument to reuse its runs."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QDockWidget, QMainWindow

OUT = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def _wait(app: QApplication, controller, timeout_s: float = 600) -> None:
    end = time.monotonic() + timeout_s
    while controller.is_running and time.monotonic() < end:
        controller.wait(50)
        app.processEvents()
    app.processEvents()


def main() -> int:
    import torch

    from tlstudio.core.demo import create_demo_project
    from tlstudio.gui.canvas import CanvasView
    from tlstudio.gui.panels.predictions import PredictionsPanel
    from tlstudio.gui.state import AppState
    from tlstudio.ml import runner
    from tlstudio.ml.trainer import TrainConfig

    torch.set_num_threads(2)
    app = QApplication.instance() or QApplication(sys.argv)
    OUT.mkdir(parents=True, exist_ok=True)
    if len(sys.argv) > 1:
        from tlstudio.core.project import Project
        from tlstudio.core.runs import RunStore

        project = Project.open(sys.argv[1])
        done = [r for r in RunStore(project).list() if r.status == "finished"]
        runs = {r.task: r.id for r in done}
    else:
        project = create_demo_project(Path(tempfile.mkdtemp()) / "demo", n_images=40, size=128)
        print(f"project: {project.root}", flush=True)
        runs = {}
    specs = {
        "detect": runner.RunSpec(task="detect", backbone="efficientnet_lite0", weights="bundled",
                                 input_size=128, train=TrainConfig(epochs=12, batch_size=8,
                                                                    lr=2e-3, freeze=0)),
        "classify": runner.RunSpec(task="classify", backbone="efficientnet_lite0",
                                   weights="bundled", input_size=96,
                                   train=TrainConfig(epochs=15, batch_size=8, lr=3e-3)),
        "landmarks": runner.RunSpec(task="landmarks", backbone="resnet18", weights="none",
                                    input_size=128, train=TrainConfig(epochs=15, batch_size=8,
                                                                       lr=2e-3, freeze=0)),
        "segment": runner.RunSpec(task="segment", backbone="resnet18", weights="none",
                                  input_size=128, train=TrainConfig(epochs=15, batch_size=8,
                                                                     lr=2e-3, freeze=0)),
    }  # fmt: skip
    for task, spec in specs.items():
        if task in runs:
            continue
        t0 = time.perf_counter()
        runs[task] = runner.train(project, spec).run_id
        print(f"trained {task} in {time.perf_counter() - t0:.0f} s", flush=True)
    state = AppState()
    state.open_project(project)
    window = QMainWindow()
    canvas = CanvasView(state)
    panel = PredictionsPanel(state, canvas)
    window.setCentralWidget(canvas)
    dock = QDockWidget("Predictions", window)
    dock.setWidget(panel)
    window.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
    window.resize(1200, 800)
    window.show()
    app.processEvents()

    test_ids = [r.id for r in project.images_in_split("test")]
    for task, name, image, threshold in (
        ("detect", "predictions", test_ids[0], 40),
        ("classify", "predictions_classify", test_ids[1], 0),
        ("landmarks", "predictions_landmarks", test_ids[2], 20),
        ("segment", "predictions_segment", test_ids[3], 50),
    ):
        state.set_run(runs[task])
        state.set_image(image)
        panel.target_combo.setCurrentIndex(panel.target_combo.findData("test"))
        panel.predict()
        _wait(app, panel.controller)
        panel.threshold_slider.setValue(threshold)
        canvas.fit_to_window()
        app.processEvents()
        path = OUT / f"{name}.png"
        window.grab().save(str(path))
        print(f"{path}: {panel.description.text()}", flush=True)
    panel.shutdown()
    state.close_project()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
