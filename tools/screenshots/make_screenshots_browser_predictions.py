"""Screenshots of the image browser filtered and sorted by a run's predictions.

    QT_QPA_PLATFORM=offscreen python tools/screenshots/make_screenshots_browser_predictions.py [OUT_DIR]

Trains a small classifier (EfficientNet-Lite0 with its bundled ImageNet weights,
frozen, 96 px, 15 epochs of the head: about 15 s on a CPU) on a 24-image demo
project, predicts every image, and writes into OUT_DIR (default ``docs/screenshots``):
``browser_predictions.png`` (grid, most uncertain first, ✓/✗ marks with the
uncertainty) and ``browser_predictions_wrong.png`` (list mode, "Prediction: wrong"). Not a test (pytest does not collect it).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from PySide6.QtWidgets import QApplication
from screenshot_support import wait_for

ROOT = Path(__file__).resolve().parents[2]


def make_screenshots(out_dir: str | Path, n_images: int = 24) -> list[Path]:
    """Render the browser states into ``out_dir``; returns the PNG paths."""
    import tlstudio.gui  # noqa: F401  (PySide6 signal fix first)
    from tlstudio.core.demo import create_demo_project
    from tlstudio.gui.panels.browser import BrowserPanel
    from tlstudio.gui.state import AppState
    from tlstudio.gui.workers.jobs import wait_for_jobs
    from tlstudio.ml.runner import RunSpec, predict, train
    from tlstudio.ml.trainer import TrainConfig

    app = QApplication.instance() or QApplication([])
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with tempfile.TemporaryDirectory() as tmp:
        project = create_demo_project(Path(tmp) / "demo", n_images=n_images, size=96)
        spec = RunSpec(  # bundled ImageNet weights, frozen: mostly right, some unsure
            task="classify",
            backbone="efficientnet_lite0",
            weights="auto",
            input_size=96,
            train=TrainConfig(epochs=15, batch_size=8, freeze="all", lr=1e-2, device="cpu"),
        )
        run_id = train(project, spec).run_id
        predict(project, run_id, device="cpu")

        state = AppState()
        browser = BrowserPanel(state)
        browser.synchronous_thumbnails = True  # every thumbnail drawn before the grab
        state.open_project(project)
        browser.resize(1200, 800)
        browser.show()
        state.set_run(run_id)
        wait_for(lambda: browser.prediction_statuses() is not None)
        browser.order.setCurrentIndex(browser.order.findData("uncertainty"))
        wait_for(lambda: browser.model.filter.order == "uncertainty")
        state.set_image(browser.model.id_at(0))
        app.processEvents()
        path = out / "browser_predictions.png"
        browser.grab().save(str(path))
        written.append(path)

        browser.set_grid(False)
        browser.order.setCurrentIndex(browser.order.findData("id"))
        browser.prediction.setCurrentIndex(browser.prediction.findData("wrong"))
        wait_for(lambda: browser.model.filter.prediction == "wrong")
        if browser.model.rowCount():
            state.set_image(browser.model.id_at(0))
        app.processEvents()
        path = out / "browser_predictions_wrong.png"
        browser.grab().save(str(path))
        written.append(path)

        browser.shutdown()
        wait_for_jobs()
        state.close_project()
    return written


if __name__ == "__main__":
    target = sys.argv[1] if len(sys.argv) > 1 else ROOT / "docs" / "screenshots"
    for p in make_screenshots(target):
        print(p)
