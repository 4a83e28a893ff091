"""Screenshots of the Train panel for the docs.

    QT_QPA_PLATFORM=offscreen python tests/gui/make_screenshots_training.py [OUT_DIR]

writes into OUT_DIR (default ``docs/screenshots``):

- ``train_running.png``: the Train panel during a run (a ResNet-18 without pretrained
  weights on the demo project, 8 epochs), grabbed after the fourth epoch with the hover
  readout showing;
- ``run_history.png``: the History tab after three runs with different freeze depths,
  two of them overlaid.

Not a test (pytest does not collect it).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from screenshot_support import settle, wait_until

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def spec(freeze: int, epochs: int):
    from tlstudio.ml.runner import RunSpec
    from tlstudio.ml.trainer import TrainConfig

    return RunSpec(
        task="classify",
        backbone="resnet18",
        weights="none",
        input_size=64,
        train=TrainConfig(epochs=epochs, batch_size=4, freeze=freeze, lr=1e-3, device="cpu"),
    )


def make_screenshots(out_dir: Path) -> list[Path]:
    from PySide6.QtWidgets import QApplication

    from tlstudio.core.demo import create_demo_project
    from tlstudio.gui.state import AppState
    from tlstudio.gui.training.train_dock import TrainDock
    from tlstudio.gui.workers.tasks import wait_for_background

    _app = QApplication.instance() or QApplication(sys.argv)
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="tlstudio_train_shots_"))
    written: list[Path] = []
    state = AppState()
    try:
        state.open_project(create_demo_project(tmp / "Shapes demo", n_images=40, size=96))
        dock = TrainDock(state)
        dock.resize(1500, 760)
        dock.show()
        dock.config.wait_ready()
        settle(500)

        # -- a run in progress ------------------------------------------------------------
        dock.config.set_spec(spec(freeze=2, epochs=8))
        wait_until(dock.config.train_button.isEnabled, 30)
        dock.config.train_button.click()
        m = dock.monitor
        wait_until(lambda: len(m.epoch_x) >= 4 and m.last_batch is not None
                   and m.last_batch.step >= 2)  # fmt: skip
        m.redraw()
        m.show_readout(2.5)
        settle(100)
        path = out_dir / "train_running.png"
        dock.grab().save(str(path))
        written.append(path)
        wait_until(lambda: not dock.controller.is_running)

        # -- two more runs, then the history --------------------------------------------------
        for freeze in (0, 4):
            assert dock.start(spec(freeze=freeze, epochs=8))
            wait_until(lambda: not dock.controller.is_running)
        dock.tabs.setCurrentWidget(dock.history)
        settle(200)
        ids = [r.id for r in dock.history.runs]
        dock.history.select_runs(ids[:2])
        settle(300)
        path = out_dir / "run_history.png"
        dock.grab().save(str(path))
        written.append(path)
        dock.shutdown()
        dock.close()
    finally:
        wait_for_background()
        state.close_project()
        shutil.rmtree(tmp, ignore_errors=True)
    return written


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "screenshots"
    for p in make_screenshots(target):
        print(p)
