"""Screenshots of the main window for the docs.

    QT_QPA_PLATFORM=offscreen python tools/screenshots/make_screenshots_window.py [OUT_DIR]

writes ``main_window*.png`` into OUT_DIR (default ``docs/screenshots``): the window
on a demo project, the thumbnail list mode with a filter, the missing-files banner,
the import result dialog and the keyboard shortcuts. Not a test (pytest does not
collect it); ``tests/gui/test_window.py`` runs it once into a temporary folder.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from PySide6.QtCore import QSettings
from screenshot_support import settle, wait_until

ROOT = Path(__file__).resolve().parents[2]


def make_screenshots(out_dir: Path) -> list[Path]:
    from tlstudio.core.demo import create_demo_project
    from tlstudio.core.project import Project
    from tlstudio.gui.app import create_application, create_main_window
    from tlstudio.gui.panels.image_query import ImageFilter
    from tlstudio.gui.workers.jobs import wait_for_jobs

    create_application()
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="tlstudio_shots_"))
    written: list[Path] = []
    try:
        root = tmp / "Shapes demo"
        with create_demo_project(root, n_images=24, size=192) as p:
            ids = p.image_ids()
            for i in (ids[3], ids[7], ids[8]):
                p.clear_annotations(i)
        settings = QSettings(str(tmp / "settings.ini"), QSettings.Format.IniFormat)

        def shoot(widget, name: str) -> None:
            path = out_dir / name
            widget.grab().save(str(path))
            written.append(path)

        window = create_main_window(root, settings)
        window.resize(1280, 800)
        window.show()
        loader = window.browser.model.loader
        wait_until(lambda: loader is not None and loader.pending() == 0)
        window.browser.go_to_row(1)
        wait_until(lambda: bool(getattr(window.canvas, "image_ready", True)))
        settle()
        wait_until(lambda: loader.pending() == 0)
        settle()
        shoot(window, "main_window.png")

        window.browser.set_grid(False)
        window.browser.set_filter(ImageFilter(status="unlabelled"))
        settle()
        wait_until(lambda: loader.pending() == 0)
        shoot(window, "main_window_list_unlabelled.png")

        window.show_shortcuts().resize(620, 860)
        settle()
        shoot(window.shortcuts_dialog, "main_window_shortcuts.png")
        window.shortcuts_dialog.close()

        bad = tmp / "incoming"
        bad.mkdir()
        (bad / "scan_0001.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
        (bad / "notes.tif").write_bytes(b"")
        shutil.copy(root / "images" / "demo_000.png", bad / "copy_of_demo.png")
        try:  # a compressed DICOM: its reason carries the codec to install
            from pydicom.data import get_testdata_file

            dicom = get_testdata_file("MR_small_jpeg_ls_lossless.dcm")
        except ImportError:
            dicom = None
        if dicom is not None:
            shutil.copy(dicom, bad / "MR_0001.dcm")
        window.project_actions.import_paths([bad], mode="images")
        wait_until(lambda: window.importer.last_result is not None and not window.importer.busy)
        settle()
        if window.import_result_dialog is not None:
            shoot(window.import_result_dialog, "main_window_import_result.png")
            window.import_result_dialog.close()
        window.close()

        # a project whose files moved: the banner names them
        with Project.open(root) as p:
            records = p.images()[:2]
            moved = [p.image_path(r) for r in records]
        for f in moved:
            f.rename(tmp / f.name)
        window = create_main_window(root, settings)
        window.resize(1280, 800)
        window.show()
        wait_until(window.banner.isVisible)
        window.app_state.set_image(records[0].id)
        settle(300)
        shoot(window, "main_window_missing.png")
        window.close()
        wait_for_jobs()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return written


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "screenshots"
    for p in make_screenshots(target):
        print(p)
