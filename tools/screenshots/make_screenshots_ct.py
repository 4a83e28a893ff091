"""Screenshot of the Label window on a DICOM CT with its window/level presets.

    QT_QPA_PLATFORM=offscreen python tools/screenshots/make_screenshots_ct.py [OUT_DIR]

writes ``canvas_ct_presets.png`` (the window at 1280×800, or its minimum width if larger) into OUT_DIR (default ``docs/screenshots``):
pydicom's CT_small.dcm with two named windows added to its header, shown through the
soft-tissue preset, the Display dock's preset combo and View → Window preset open.
Not a test; ``tests/gui/test_canvas_display.py`` runs it once into a temporary folder.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from screenshot_support import settle, wait_for  # noqa: E402


def make_screenshots(out_dir: Path) -> list[Path]:
    import pydicom
    from pydicom.data import get_testdata_file
    from PySide6.QtCore import QPoint, QSettings
    from PySide6.QtGui import QPainter

    from tlstudio.core.project import Project
    from tlstudio.gui.app import create_application, create_main_window

    create_application()
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="tlstudio_ct_shot_"))
    try:
        ct = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
        ct.WindowCenter, ct.WindowWidth = [40, 350], [400, 1500]
        ct.WindowCenterWidthExplanation = ["ABDOMEN", "SPINE"]
        src = tmp / "src"
        src.mkdir()
        ct.save_as(src / "ct_small.dcm")
        with Project.create(tmp / "CT demo") as p:
            p.add_images([src / "ct_small.dcm"])
            p.add_class("liver")
        settings = QSettings(str(tmp / "settings.ini"), QSettings.Format.IniFormat)
        window = create_main_window(tmp / "CT demo", settings)
        window.resize(1280, 800)
        window.show()
        state, canvas = window.app_state, window.canvas
        state.set_image(state.project.image_ids()[0])
        wait_for(lambda: canvas.image_ready)
        soft = next(p for p in canvas.window_level.presets() if p.name == "Soft tissue")
        window.display.apply_preset(soft)
        settle(300)
        shot = window.grab()
        # View → Window preset, drawn where the menus open (menus are their own windows)
        bar = window.menuBar()
        view_action = next(a for a in bar.actions() if a.text() == "&View")
        view_menu = view_action.menu()
        at = bar.actionGeometry(view_action).bottomLeft() + bar.pos()
        view_menu.popup(window.mapToGlobal(at))
        settle(200)
        sub = window.display.preset_menu.menuAction()
        sub_at = at + QPoint(view_menu.width() - 4, view_menu.actionGeometry(sub).top())
        view_menu.setActiveAction(sub)
        painter = QPainter(shot)
        painter.drawPixmap(at, view_menu.grab())
        painter.drawPixmap(sub_at, window.display.preset_menu.grab())
        painter.end()
        view_menu.hide()
        out = out_dir / "canvas_ct_presets.png"
        shot.save(str(out))
        window.close()
        return [out]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "screenshots"
    for path in make_screenshots(target):
        print(path)
