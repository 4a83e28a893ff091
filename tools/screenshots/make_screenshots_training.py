"""Screenshots of the Train panel during and after runs, in the whole window at 1280×800
(a laptop), for the docs.

    QT_QPA_PLATFORM=offscreen python tools/screenshots/make_screenshots_training.py [OUT_DIR]

writes into OUT_DIR (default ``docs/screenshots``):

- ``train_running.png``: the Monitor during a run (a ResNet-18 without pretrained
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
    from PySide6.QtCore import QSettings

    from tlstudio.core.demo import create_demo_project
    from tlstudio.gui.app import create_application, create_main_window
    from tlstudio.gui.workers.jobs import wait_for_jobs

    create_application()
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="tlstudio_train_shots_"))
    written: list[Path] = []
    window = None
    try:
        create_demo_project(tmp / "Shapes demo", n_images=40, size=96).close()
        settings = QSettings(str(tmp / "settings.ini"), QSettings.Format.IniFormat)
        window = create_main_window(tmp / "Shapes demo", settings)
        window.resize(1280, 800)
        window.show()
        window.action_table["mode_train"].trigger()  # the Train page (F3)
        dock = window.train_panel
        dock.config.wait_ready()
        wait_until(dock.config.has_facts, 30)
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
        window.grab().save(str(path))
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
        window.grab().save(str(path))
        written.append(path)
        dock.shutdown()
    finally:
        if window is not None:
            window.close()
        wait_for_jobs()
        shutil.rmtree(tmp, ignore_errors=True)
    return written


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "screenshots"
    for p in make_screenshots(target):
        print(p)
