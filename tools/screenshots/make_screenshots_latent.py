"""Screenshots of the Inspect views "Latent space" and "Anomalies" for the docs.

    QT_QPA_PLATFORM=offscreen python tools/screenshots/make_screenshots_latent.py [OUT_DIR]

writes into OUT_DIR (default ``docs/screenshots``):

- ``latent.png``: t-SNE of the pooled features of an EfficientNet-Lite0 classifier
  (bundled ImageNet weights, frozen, head trained 15 epochs) on a 90-image demo project,
  coloured by label, with a lasso selection and the hover thumbnail showing;
- ``latent_error.png``: the same map coloured by right/wrong predictions;
- ``anomaly.png``: the Anomalies view of a small autoencoder (40 epochs) on the same
  project, the highest-error image selected.

Not a test (pytest does not collect it).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
from PySide6.QtCore import QPointF, Qt
from PySide6.QtTest import QTest
from screenshot_support import settle, wait_until

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def main(out_dir: Path) -> None:
    import torch

    from tlstudio.core.demo import create_demo_project
    from tlstudio.gui.app import create_application
    from tlstudio.gui.inspect.anomaly_view import AnomalyView
    from tlstudio.gui.inspect.latent_view import LatentView
    from tlstudio.gui.state import AppState
    from tlstudio.ml import runner
    from tlstudio.ml.runner import RunSpec
    from tlstudio.ml.trainer import TrainConfig

    torch.set_num_threads(1)
    out_dir.mkdir(parents=True, exist_ok=True)
    app = create_application()
    tmp = Path(tempfile.mkdtemp(prefix="tls-latent-"))
    project = create_demo_project(tmp / "demo", n_images=90, size=96)
    clf = runner.train(
        project,
        RunSpec(
            task="classify",
            backbone="efficientnet_lite0",
            weights="bundled",
            input_size=96,
            train=TrainConfig(epochs=15, lr=3e-3, batch_size=16),
        ),
    ).run_id
    runner.predict(project, clf, device="cpu")
    ae = runner.train(
        project,
        RunSpec(
            task="autoencode",
            backbone="resnet18",
            weights="none",
            input_size=64,
            model_options={"encoder": "small", "latent_dim": 16},
            train=TrainConfig(epochs=40, lr=2e-3, batch_size=16),
        ),
    ).run_id

    state = AppState()
    state.open_project(project)
    state.set_run(clf)
    view = LatentView(state)
    view.resize(1200, 800)
    view.show()
    view.method_combo.setCurrentIndex(1)  # t-SNE
    view.compute()
    assert wait_until(lambda: view._result is not None and not view.is_busy()), "no result"
    settle()
    xy = view.coordinates
    # lasso around the points nearest the first point's cluster (a circle in data units)
    centre = xy[np.argmin(xy[:, 0])]
    r = 0.25 * float(np.ptp(xy[:, 0]))
    angles = np.linspace(0, 2 * np.pi, 40, endpoint=False)
    view._lassoed(np.column_stack([centre[0] + r * np.cos(angles), centre[1] + r * np.sin(angles)]),
                  Qt.KeyboardModifier.NoModifier)  # fmt: skip
    # hover the point farthest right
    i = int(np.argmax(xy[:, 0]))
    scene = view.viewbox.mapViewToScene(QPointF(float(xy[i, 0]), float(xy[i, 1])))
    pos = view.plot.mapFromScene(scene)
    QTest.mouseMove(view.plot.viewport(), pos)
    wait_until(lambda: view.popup.isVisible() and view.popup_image.pixmap() is not None, 10)
    settle(600)
    QTest.mouseMove(view.plot.viewport(), pos)
    settle(200)
    view.grab().save(str(out_dir / "latent.png"))
    view.clear_selection()
    view.popup.hide()
    view.colour_combo.setCurrentIndex(3)  # error
    settle()
    view.grab().save(str(out_dir / "latent_error.png"))
    view.shutdown()
    view.close()

    state.set_run(ae)
    anomaly = AnomalyView(state)
    anomaly.resize(1200, 800)
    anomaly.show()
    assert wait_until(lambda: anomaly.ranking_ready(), 300), "no ranking"
    anomaly.list_view.setCurrentIndex(anomaly.model.index(0))
    assert wait_until(lambda: anomaly.reconstruction_shown(), 60), "no reconstruction"
    settle(800)
    anomaly.grab().save(str(out_dir / "anomaly.png"))
    anomaly.shutdown()
    state.close_project()
    app.processEvents()
    print(f"wrote {out_dir}/latent.png, latent_error.png, anomaly.png")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "screenshots")
