"""Screenshots of the training configuration panel, for the docs.

    QT_QPA_PLATFORM=offscreen python tests/gui/make_screenshots_train.py [OUT_DIR]

writes ``train_config.png`` (detection, "Fine-tune top stages", the augmentation
preview with boxes) and ``train_config_advanced.png`` (landmarks, advanced settings
open) into OUT_DIR (default ``docs/screenshots``). Not a test (pytest does not collect
it); ``test_train_config.py`` runs it once into a temporary folder so it keeps working.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QApplication
from screenshot_support import wait_for

ROOT = Path(__file__).resolve().parents[2]


def _settled(panel) -> bool:
    preview = panel.preview
    return (
        panel.has_facts()
        and panel.freeze_strip.stage_counts() is not None
        and preview.result() is not None
        and not preview.is_busy()
    )


def make_screenshots(out_dir: str | Path, n_images: int = 24) -> list[Path]:
    """Render the panel states into ``out_dir``; returns the PNG paths."""
    import tlstudio.gui  # noqa: F401  (PySide6 signal fix first)
    from tlstudio.core.demo import create_demo_project
    from tlstudio.gui.state import AppState
    from tlstudio.gui.training.config_panel import TrainConfigPanel

    app = QApplication.instance() or QApplication([])
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with tempfile.TemporaryDirectory() as tmp:
        state = AppState()
        state.open_project(create_demo_project(Path(tmp) / "demo", n_images=n_images, size=128))
        settings = QSettings(str(Path(tmp) / "settings.ini"), QSettings.Format.IniFormat)
        panel = TrainConfigPanel(state, settings=settings)
        panel.resize(900, 800)
        panel.show()
        panel.wait_ready()
        wait_for(panel.has_facts)

        spec = panel.spec()
        spec.task = "detect"
        panel.set_spec(spec)
        panel.preset_combo.setCurrentIndex(panel.preset_combo.findData("fine_tune_top"))
        panel.preview.shuffle(seed=7)
        wait_for(lambda: _settled(panel))
        path = out / "train_config.png"
        panel.grab().save(str(path))
        written.append(path)

        spec = panel.spec()
        spec.task = "landmarks"
        panel.set_spec(spec)
        panel.advanced_button.setChecked(True)
        panel.resize(900, 1000)
        wait_for(lambda: _settled(panel) and panel.preview.result().task == "landmarks")
        path = out / "train_config_advanced.png"
        panel.grab().save(str(path))
        written.append(path)

        panel.wait_idle()
        panel.close()
        panel.deleteLater()
        app.processEvents()
        state.close_project()
    return written


if __name__ == "__main__":
    target = sys.argv[1] if len(sys.argv) > 1 else ROOT / "docs" / "screenshots"
    for p in make_screenshots(target):
        print(p)
