"""Screenshots of the Inspect → Metrics view for the docs.

    QT_QPA_PLATFORM=offscreen python tools/screenshots/make_screenshots_metrics.py [OUT_DIR]

writes into OUT_DIR (default ``docs/screenshots``), each at 1200×800:

- ``metrics.png``: fold 1 of a 3-fold cross-validation of a classifier
  (EfficientNet-Lite0, bundled weights, frozen backbone, 6 epochs) on a 60-image demo
  project, evaluated on the test split: k-fold mean ± std, and the most populated
  off-diagonal confusion cell clicked;
- ``metrics_val.png``: the same spec trained on the stored splits, on the val split;
- ``metrics_detect.png`` and ``metrics_landmarks.png``: a detector and a landmark
  model (ResNet-18 from scratch, a few epochs) on the val split.

Not a test (pytest does not collect it).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from screenshot_support import settle, wait_until

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def main(out_dir: Path) -> None:
    import torch
    from PySide6.QtWidgets import QApplication

    from tlstudio.core.demo import create_demo_project
    from tlstudio.gui.inspect.metrics_view import MetricsView
    from tlstudio.gui.state import AppState
    from tlstudio.ml import runner
    from tlstudio.ml.experiments import cross_validate
    from tlstudio.ml.runner import RunSpec
    from tlstudio.ml.trainer import TrainConfig

    torch.set_num_threads(1)
    out_dir.mkdir(parents=True, exist_ok=True)
    app = QApplication.instance() or QApplication(sys.argv)
    tmp = Path(tempfile.mkdtemp(prefix="tls_metrics_"))
    try:
        project = create_demo_project(tmp / "demo", n_images=60, size=96)
        clf = RunSpec(
            task="classify", backbone="efficientnet_lite0", weights="bundled",
            train=TrainConfig(epochs=6, lr=3e-3, batch_size=16, freeze="all"), input_size=96,
        )  # fmt: skip
        run_clf = runner.train(project, clf).run_id
        cv = cross_validate(project, clf, k=3)

        def scratch(task: str, epochs: int) -> int:
            spec = RunSpec(
                task=task, backbone="resnet18", weights="none", input_size=64,
                train=TrainConfig(epochs=epochs, lr=2e-3, batch_size=16),
            )  # fmt: skip
            return runner.train(project, spec).run_id

        run_det = scratch("detect", 4)
        run_lmk = scratch("landmarks", 6)

        state = AppState()
        state.open_project(project)
        view = MetricsView(state)
        view.resize(1200, 800)
        view.show()

        def shoot(run_id: int, split: str, name: str, after=None) -> None:
            state.set_run(run_id)
            view.set_split(split)
            view.evaluate()
            if not wait_until(lambda: not view.is_busy() and view.evaluation is not None):
                raise RuntimeError(f"evaluation of run {run_id} did not finish")
            if after is not None:
                after()
            settle(400)
            path = out_dir / name
            view.grab().save(str(path))
            print("wrote", path)

        def click_confused_cell() -> None:
            m = view.evaluation.confusion
            cells = [(m[i, j], i, j) for i in range(len(m)) for j in range(len(m)) if i != j]
            _count, i, j = max(cells)
            table = view.confusion_table
            rect = table.visualRect(view.confusion_model.index(i, j))
            QTest.mouseClick(table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())

        shoot(cv.run_ids[1], "test", "metrics.png", click_confused_cell)
        shoot(run_clf, "val", "metrics_val.png")
        shoot(run_det, "val", "metrics_detect.png")
        shoot(run_lmk, "val", "metrics_landmarks.png")
        view.shutdown()
        view.close()
        state.close_project()
        del app
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "screenshots")
