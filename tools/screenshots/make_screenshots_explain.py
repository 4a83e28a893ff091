"""Screenshots of the Explain view, for the docs.

    QT_QPA_PLATFORM=offscreen python tools/screenshots/make_screenshots_explain.py [OUT_DIR]

trains an EfficientNet-Lite0 classifier (bundled weights, frozen, head only; a few
seconds on CPU) on a 24-image demo project of 160 px and writes ``explain.png``
(Grad-CAM heatmap over an image) and ``explain_activations.png`` (the Activations tab)
into OUT_DIR (default ``docs/screenshots``), the view at 1200×800. Not a test (pytest
does not collect it).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from PySide6.QtWidgets import QApplication
from screenshot_support import wait_for

ROOT = Path(__file__).resolve().parents[2]


def make_screenshots(out_dir: str | Path) -> list[Path]:
    """Render the view into ``out_dir``; returns the PNG paths."""
    import tlstudio.gui  # noqa: F401  (PySide6 signal fix first)
    from tlstudio.core.demo import create_demo_project
    from tlstudio.gui.inspect.explain_view import ExplainView
    from tlstudio.gui.state import AppState
    from tlstudio.ml import runner
    from tlstudio.ml.runner import RunSpec
    from tlstudio.ml.trainer import TrainConfig

    app = QApplication.instance() or QApplication([])
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        project = create_demo_project(Path(tmp) / "demo", n_images=24, size=160)
        spec = RunSpec(
            task="classify", backbone="efficientnet_lite0", weights="bundled", input_size=160,
            train=TrainConfig(epochs=40, lr=1e-2, batch_size=8, freeze="all", device="cpu"),
        )  # fmt: skip
        run_id = runner.train(project, spec).run_id
        state = AppState()
        state.open_project(project)
        view = ExplainView(state)
        view.resize(1200, 800)
        view.show()
        shown: list[int] = []
        view.explained.connect(lambda: shown.append(1))
        state.set_run(run_id)
        state.set_image(project.image_ids()[3])
        wait_for(lambda: view.result is not None and not view._busy and shown)
        view.opacity_slider.setValue(55)
        app.processEvents()
        paths = [out / "explain.png", out / "explain_activations.png"]
        view.grab().save(str(paths[0]))
        view.tabs.setCurrentIndex(1)
        app.processEvents()
        view.grab().save(str(paths[1]))
        view.shutdown()
        state.close_project()
        import shiboken6

        shiboken6.delete(view)  # now, not at interpreter exit after the QApplication
    return paths


if __name__ == "__main__":
    target = sys.argv[1] if len(sys.argv) > 1 else ROOT / "docs" / "screenshots"
    for p in make_screenshots(target):
        print(p)
