"""Screenshots of the whole window in Inspect mode and in Label mode with predictions.

    QT_QPA_PLATFORM=offscreen python tools/screenshots/make_screenshots_inspect.py [OUT_DIR]

Creates a 60-image demo project, trains an EfficientNet-Lite0 classifier on cached
features (bundled weights, about 20 s on 2 cores), predicts every image, then writes
``window_inspect_metrics.png``, ``window_inspect_latent.png`` and
``window_predictions.png`` into OUT_DIR (default ``docs/screenshots``). Not a test.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QApplication
from screenshot_support import wait_for

ROOT = Path(__file__).resolve().parents[2]


def make_screenshots(out_dir: str | Path) -> list[Path]:
    import tlstudio.gui  # noqa: F401
    from tlstudio.core.demo import create_demo_project
    from tlstudio.ml import runner
    from tlstudio.ml.runner import RunSpec
    from tlstudio.ml.trainer import TrainConfig

    app = QApplication.instance() or QApplication([])
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "shapes"
        project = create_demo_project(root, n_images=60, size=128)
        spec = RunSpec(task="classify", backbone="efficientnet_lite0", weights="bundled",
                       train=TrainConfig(epochs=20, lr=3e-3, batch_size=16), input_size=96)  # fmt: skip
        run_id = runner.train(project, spec).run_id
        runner.predict(project, run_id)
        project.close()

        from tlstudio.gui.app import create_main_window

        settings = QSettings(str(Path(tmp) / "settings.ini"), QSettings.Format.IniFormat)
        window = create_main_window(root, settings)
        window.resize(1280, 800)
        window.show()
        app.processEvents()

        window.action_table["mode_inspect"].trigger()
        metrics = window.inspect_panel.view("Metrics")
        metrics.set_split("test")
        metrics.evaluate()
        wait_for(lambda: not metrics.is_busy() and metrics.evaluation is not None)
        app.processEvents()
        path = out / "window_inspect_metrics.png"
        window.grab().save(str(path))
        written.append(path)

        latent = window.inspect_panel.view("Latent space")
        latent.compute()
        wait_for(lambda: len(latent.coordinates) > 0)
        for _ in range(20):
            app.processEvents()
            time.sleep(0.02)
        path = out / "window_inspect_latent.png"
        window.grab().save(str(path))
        written.append(path)

        window.action_table["mode_label"].trigger()
        window.app_state.set_image(window.app_state.project.image_ids()[5])
        window.canvas.wait_for_image()
        for _ in range(20):
            app.processEvents()
            time.sleep(0.02)
        path = out / "window_predictions.png"
        window.grab().save(str(path))
        written.append(path)
        window.close()
    return written


if __name__ == "__main__":
    target = sys.argv[1] if len(sys.argv) > 1 else ROOT / "docs" / "screenshots"
    for p in make_screenshots(target):
        print(p)
