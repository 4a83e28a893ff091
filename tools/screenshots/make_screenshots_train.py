"""Screenshots of the Train panel's configuration, in the whole window at 1280×800 (a
laptop), for the docs.

    QT_QPA_PLATFORM=offscreen python tools/screenshots/make_screenshots_train.py [OUT_DIR]

writes into OUT_DIR (default ``docs/screenshots``):

- ``train_quick.png``: the Quick view of a new project (the question that picks a
  strategy, the estimated time, the images);
- ``train_config.png``: "All settings…" for detection with "Fine-tune top stages":
  strategy, backbone table, freeze depth;
- ``train_config_advanced.png``: further down the same view, landmarks: the end of the
  advanced options, the augmentation with its preview (landmarks follow the flips).

Not a test (pytest does not collect it); ``tests/gui/test_train_config.py`` runs it once into a
temporary folder so it keeps working.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from PySide6.QtCore import QSettings
from screenshot_support import settle, wait_for

ROOT = Path(__file__).resolve().parents[2]
SIZE = (1280, 800)


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
    from tlstudio.core.demo import create_demo_project
    from tlstudio.gui.app import create_application, create_main_window
    from tlstudio.gui.workers.jobs import wait_for_jobs

    create_application()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "Shapes demo"
        create_demo_project(root, n_images=n_images, size=128).close()
        settings = QSettings(str(Path(tmp) / "settings.ini"), QSettings.Format.IniFormat)
        window = create_main_window(root, settings)
        window.resize(*SIZE)
        window.show()
        window.action_table["mode_train"].trigger()  # the Train page (F3)
        panel = window.train_panel.config
        panel.wait_ready()
        wait_for(panel.has_facts)
        settle(300)

        def grab(name: str) -> None:
            settle(200)
            path = out / name
            window.grab().save(str(path))
            written.append(path)

        grab("train_quick.png")

        panel.show_all_settings(True)
        spec = panel.spec()
        spec.task = "detect"
        panel.set_spec(spec)
        panel.preset_combo.setCurrentIndex(panel.preset_combo.findData("fine_tune_top"))
        panel.preview.shuffle(seed=7)
        wait_for(lambda: _settled(panel))
        grab("train_config.png")

        spec = panel.spec()
        spec.task = "landmarks"
        panel.set_spec(spec)
        panel.advanced_button.setChecked(True)
        wait_for(lambda: _settled(panel) and panel.preview.result().task == "landmarks")
        settle(100)
        bar = panel.full_scroll.verticalScrollBar()
        editor = panel.augment_editor
        top = editor.mapTo(panel.full_view, editor.rect().topLeft())
        bar.setValue(top.y() - 160)
        grab("train_config_advanced.png")

        panel.wait_idle()
        window.close()
        wait_for_jobs()
    return written


if __name__ == "__main__":
    target = sys.argv[1] if len(sys.argv) > 1 else ROOT / "docs" / "screenshots"
    for p in make_screenshots(target):
        print(p)
