"""Screenshot of the Inspect mode's Export view, for the docs.

    QT_QPA_PLATFORM=offscreen python tools/screenshots/make_screenshots_export.py [OUT_DIR]

trains a classifier on a 48-image demo project (EfficientNet-Lite0 features, bundled
weights), exports it as ONNX and writes its report through the view's own buttons (file
dialogs answered automatically), then writes ``export.png`` (the view at 1200×800) into
OUT_DIR (default ``docs/screenshots``); with ``--report`` also ``export_report.html``, the
report itself (about 2 MB).
Not a test (pytest does not collect it).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from PySide6.QtWidgets import QApplication, QFileDialog
from screenshot_support import wait_for

ROOT = Path(__file__).resolve().parents[2]


def make_screenshots(out_dir: str | Path, keep_report: bool = False) -> list[Path]:
    """Render the view after an export and a report into ``out_dir``; return the files."""
    from tlstudio.core.demo import create_demo_project
    from tlstudio.gui.inspect.export_view import ExportView
    from tlstudio.gui.state import AppState
    from tlstudio.ml import runner
    from tlstudio.ml.runner import RunSpec
    from tlstudio.ml.trainer import TrainConfig

    app = QApplication.instance() or QApplication([])
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        project = create_demo_project(Path(tmp) / "shapes", n_images=48, size=128)
        spec = RunSpec(task="classify", backbone="efficientnet_lite0", weights="bundled",
                       train=TrainConfig(epochs=30, lr=3e-3, batch_size=16), input_size=96)  # fmt: skip
        run_id = runner.train(project, spec).run_id
        state = AppState()
        state.open_project(project)
        state.set_run(run_id)
        view = ExportView(state)
        view.resize(1200, 800)
        view.show()

        answers = iter([str(Path(tmp) / "shapes_classifier.onnx"), str(Path(tmp) / "report.html")])
        QFileDialog.getSaveFileName = staticmethod(lambda *a, **k: (next(answers), ""))
        done: list[str] = []
        view.export_finished.connect(lambda _r: done.append("export"))
        view.report_finished.connect(lambda _p: done.append("report"))
        view.failed.connect(lambda m: done.append("failed: " + m))
        view.export_button.click()
        wait_for(lambda: done)
        view.report_button.click()
        wait_for(lambda: len(done) == 2)
        if any(d.startswith("failed") for d in done):
            raise RuntimeError(done)
        app.processEvents()
        shot = out / "export.png"
        view.grab().save(str(shot))
        written = [shot]
        if keep_report:
            written.append(out / "export_report.html")
            shutil.copy(Path(tmp) / "report.html", written[-1])
        view.shutdown()
        state.close_project()
    return written


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--report"]
    target = args[0] if args else ROOT / "docs" / "screenshots"
    for p in make_screenshots(target, keep_report="--report" in sys.argv):
        print(p)
