"""Screenshots of issue 15 §3–6 in the window, for the docs.

    QT_QPA_PLATFORM=offscreen python tools/screenshots/make_screenshots_confidence.py [OUT_DIR] [W H]

writes into OUT_DIR (default ``docs/screenshots``), the window at W×H (default 1280×800):

- ``metrics_calibration.png``: Inspect → Metrics of a prototype few-shot head on an
  80-image demo project (val split): ECE before/after its temperature and the
  reliability diagram;
- ``ensemble_dialog.png``: Inspect → Ensemble… with two runs ticked;
- ``train_instant.png``: Train → Instant few-shot after a click, with predictions of the
  untagged images;
- ``train_lr_finder.png``: Train → Find learning rate after a sweep;
- ``predictions_ensemble.png``: the Predictions dock on an ensemble run (spread line,
  the test-time augmentation box);
- ``train_monitor_honest.png``: Train → Monitor after a 3-epoch run: the note on the kept
  epoch, the test score never used for selection and the calibration.

Not a test (pytest does not collect it).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
# screenshot_support: next to this script once the scripts moved here, in tests/gui before
sys.path[1:1] = [str(Path(__file__).resolve().parent), str(ROOT / "tests" / "gui")]

from screenshot_support import settle, wait_for  # noqa: E402


def main(out_dir: Path, size: tuple[int, int]) -> None:
    import torch
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    from tlstudio.core.demo import create_demo_project
    from tlstudio.gui.app import create_main_window
    from tlstudio.ml.experiments import fit_sklearn_run

    torch.set_num_threads(2)
    out_dir.mkdir(parents=True, exist_ok=True)
    app = QApplication.instance() or QApplication(sys.argv)
    tmp = Path(tempfile.mkdtemp(prefix="tls_confidence_"))
    try:
        with create_demo_project(tmp / "demo", n_images=80, size=96) as project:
            for kind in ("prototype", "logreg"):
                fit_sklearn_run(project, "efficientnet_lite0", "bundled", kind, 96, device="cpu")
            train = [r.id for r in project.images_in_split("train")]
            with project.transaction():
                for image_id in train[:12]:
                    project.set_tags(image_id, [])  # untagged: Instant predicts them
        settings = QSettings(str(tmp / "settings.ini"), QSettings.Format.IniFormat)
        window = create_main_window(tmp / "demo", settings)
        window.resize(*size)
        window.show()
        settle(500)

        def grab(name: str, widget=None) -> None:
            settle(400)
            (widget or window).grab().save(str(out_dir / name))
            print(out_dir / name)

        window.modes.setCurrentIndex(2)
        panel = window.inspect_panel
        panel.run_combo.setCurrentIndex(panel.run_combo.findData(1))
        view = panel.view("Metrics")
        view.evaluate()
        wait_for(lambda: view.evaluation is not None)
        grab("metrics_calibration.png")

        panel.open_ensemble_dialog()
        dialog = panel.ensemble_dialog
        from PySide6.QtCore import Qt

        for i in range(dialog.run_list.count()):
            dialog.run_list.item(i).setCheckState(Qt.CheckState.Checked)
        grab("ensemble_dialog.png", dialog)
        dialog.create_ensemble()
        wait_for(lambda: window.app_state.run_id == 3)

        window.modes.setCurrentIndex(0)
        window.app_state.set_image(train[0])
        dock = window.predictions
        dock.target_combo.setCurrentIndex(dock.target_combo.findData("current"))
        dock.predict()
        wait_for(lambda: not dock.controller.is_running)
        grab("predictions_ensemble.png")

        window.modes.setCurrentIndex(1)
        train_panel = window.train_panel
        train_panel.config.wait_ready()
        train_panel.tabs.setCurrentWidget(train_panel.instant)
        train_panel.instant.start()
        wait_for(lambda: not train_panel.instant.is_busy())
        grab("train_instant.png")

        train_panel.tabs.setCurrentWidget(train_panel.lr_finder)
        train_panel.lr_finder.start()
        wait_for(lambda: not train_panel.lr_finder.is_busy())
        grab("train_lr_finder.png")

        from tlstudio.ml.runner import RunSpec
        from tlstudio.ml.train_config import TrainConfig

        train_panel.config.set_spec(
            RunSpec(task="classify", backbone="efficientnet_lite0", weights="bundled",
                    input_size=96, train=TrainConfig(epochs=3, batch_size=8, lr=3e-3))
        )  # fmt: skip
        wait_for(train_panel.config.train_button.isEnabled)
        train_panel.config.train_button.click()
        wait_for(lambda: not train_panel.controller.is_running)
        wait_for(lambda: "never used" in train_panel.monitor.note_label.text(), 30)
        grab("train_monitor_honest.png")
        window.close()
        app.processEvents()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "screenshots"
    wh = (int(sys.argv[2]), int(sys.argv[3])) if len(sys.argv) > 3 else (1280, 800)
    main(out, wh)
