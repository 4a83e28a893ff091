"""Start the window: ``run(project_dir)`` is what ``tlstudio [DIR]`` calls."""

from __future__ import annotations

import sys
import traceback
from pathlib import Path

from PySide6.QtCore import QCoreApplication, QSettings
from PySide6.QtWidgets import QApplication, QMessageBox

from tlstudio import __version__

ORGANIZATION = "tlstudio"
APPLICATION = "tlstudio"
_error_boxes: list[QMessageBox] = []


def create_application(argv: list[str] | None = None) -> QApplication:
    """The QApplication (made once), named so QSettings() finds tlstudio's settings."""
    QCoreApplication.setOrganizationName(ORGANIZATION)
    QCoreApplication.setApplicationName(APPLICATION)
    QCoreApplication.setApplicationVersion(__version__)
    app = QApplication.instance()
    if app is None:
        app = QApplication(sys.argv[:1] if argv is None else argv)
    app.setApplicationDisplayName("tlstudio")
    return app  # type: ignore[return-value]


def create_main_window(project_dir: str | Path | None = None, settings: QSettings | None = None):
    """The window, with ``project_dir`` opened (a failure shows a message box, no exception)."""
    from tlstudio.gui.main_window import MainWindow  # after the QApplication exists

    window = MainWindow(settings=settings)
    if project_dir is not None:
        window.open_project(project_dir)
    return window


def _install_excepthook() -> None:
    """An unexpected exception in a slot is shown, not fatal: the store is already safe
    (every edit is its own transaction)."""
    previous = sys.excepthook

    def hook(kind, value, tb) -> None:
        previous(kind, value, tb)
        text = "".join(traceback.format_exception_only(kind, value)).strip()
        box = QMessageBox(QMessageBox.Icon.Critical, "tlstudio: unexpected error", text)
        box.setDetailedText("".join(traceback.format_exception(kind, value, tb)))
        box.finished.connect(lambda _r: _error_boxes.remove(box))
        _error_boxes.append(box)  # unparented: keep it alive while it shows
        box.open()

    sys.excepthook = hook


def run(project_dir: str | None = None) -> int:
    """Open the main window (with the project at ``project_dir``) and run until it closes."""
    app = create_application()
    _install_excepthook()
    window = create_main_window(project_dir)
    window.show()
    return int(app.exec())
