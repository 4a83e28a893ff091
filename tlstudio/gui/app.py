"""Start the window: ``run(project_dir)`` is what ``tlstudio [DIR]`` calls.

When Qt cannot start its platform plugin (missing system libraries, no display), the
user sees the doctor's Qt section (what is missing, the apt-get line) instead of Qt's
message, which blames libxcb-cursor0 whatever is missing and suggests reinstalling.
"""

from __future__ import annotations

import os
import signal
import sys
import traceback
from pathlib import Path
from typing import cast

from PySide6.QtCore import (
    QCoreApplication,
    QSettings,
    QTimer,
    QtMsgType,
    qInstallMessageHandler,
)
from PySide6.QtWidgets import QApplication, QMessageBox

from tlstudio import __version__
from tlstudio.doctor import FAIL, Check, format_checks
from tlstudio.doctor import qt as qt_doctor

ORGANIZATION = "tlstudio"  # QSettings: ~/.config/tlstudio/tlstudio.conf, registry, plist
APPLICATION = "tlstudio"
DISPLAY_NAME = "tlstudio"
DESKTOP_FILE = "tlstudio"  # packaging/tlstudio.desktop: task switchers match windows to it
_error_boxes: list[QMessageBox] = []


def create_application(argv: list[str] | None = None) -> QApplication:
    """The QApplication (made once), named so QSettings() finds tlstudio's settings and the
    desktop shows its name and icon. If Qt cannot start its platform, print the doctor's
    Qt section and exit with status 1 (Qt would abort)."""
    QCoreApplication.setOrganizationName(ORGANIZATION)
    QCoreApplication.setApplicationName(APPLICATION)
    QCoreApplication.setApplicationVersion(__version__)
    app = cast("QApplication | None", QApplication.instance())
    if app is None:
        previous = qInstallMessageHandler(_explain_fatal_platform_error)
        try:
            app = QApplication(sys.argv[:1] if argv is None else argv)
        finally:
            qInstallMessageHandler(previous)
            _held_messages.clear()
    app.setApplicationDisplayName(DISPLAY_NAME)
    app.setDesktopFileName(DESKTOP_FILE)
    from tlstudio.gui.icons import app_icon

    app.setWindowIcon(app_icon())
    return app


_held_messages: list[str] = []


def _explain_fatal_platform_error(mode: QtMsgType, _context: object, message: str) -> None:
    """Message handler while the QApplication starts: holds Qt's messages; on the fatal
    "no Qt platform plugin could be initialized" prints the doctor's Qt section instead
    and exits 1. Non-fatal messages are printed as Qt would."""
    if mode != QtMsgType.QtFatalMsg:
        _held_messages.append(message)
        if "qt.qpa" not in message and "platform plugin" not in message:
            print(message, file=sys.stderr)
        return
    checks = qt_doctor.qt_checks()
    if all(c.status != FAIL for c in checks):  # the doctor sees no cause: say Qt's
        said = " / ".join(m.splitlines()[0] for m in [*_held_messages, message] if m.strip())
        checks.append(Check(qt_doctor.SECTION, "start", FAIL, f"Qt could not start: {said}",
                            "QT_DEBUG_PLUGINS=1 tlstudio  shows Qt's plugin search"))  # fmt: skip
    print(_cannot_open(checks), file=sys.stderr, flush=True)
    os._exit(1)  # Qt aborts after a fatal message; leave with a plain status instead


def _cannot_open(checks: list[Check]) -> str:
    return (
        "tlstudio cannot open its window.\n\n"
        + format_checks(checks)
        + "\n\n(tlstudio doctor checks everything else; the command-line tools work "
        "without a window: tlstudio --help)"
    )


def create_main_window(project_dir: str | Path | None = None, settings: QSettings | None = None):
    """The window as the app shows it (icons on its tools and modes), with ``project_dir``
    opened (a failure shows a message box, no exception)."""
    from tlstudio.gui.icons import decorate_window
    from tlstudio.gui.main_window import MODES, MainWindow  # after the QApplication exists

    window = MainWindow(settings=settings)
    decorate_window(window, MODES)
    if project_dir is not None:
        window.open_project(project_dir)
    return window


def check_platform() -> bool:
    """Before Qt starts: True if its platform plugin can load (possibly after switching
    between xcb and wayland); else print the doctor's Qt section and return False."""
    problems = qt_doctor.startup_problems()
    if not problems:
        return True
    other = qt_doctor.fallback_platform()
    if other is not None:
        os.environ["QT_QPA_PLATFORM"] = other
        print(f"note: using Qt's '{other}' platform; the default one cannot start:\n"
              + format_checks(problems), file=sys.stderr)  # fmt: skip
        return True
    print(_cannot_open(qt_doctor.qt_checks()), file=sys.stderr)
    return False


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
    """Open the main window (with the project at ``project_dir``) and run until it closes.
    Returns 1 without a window when Qt's platform cannot start (the reason is printed)."""
    if not check_platform():
        return 1
    app = create_application()
    _install_excepthook()
    _close_on_terminate(app)
    from tlstudio.gui.gc_thread import GuiThreadCollector

    GuiThreadCollector(app)  # no collection in pool threads (see gc_thread)
    _use_thread_setting()
    window = create_main_window(project_dir)
    window.show()
    return int(app.exec())


def _use_thread_setting() -> None:
    """The "CPU threads" setting becomes the process's thread budget, before torch starts
    (its default for every thread, also of jobs that start no training)."""
    from tlstudio.gui.thread_setting import apply_thread_setting
    from tlstudio.runtime.threads import prepare_environment

    prepare_environment(apply_thread_setting(QSettings()))


def _close_on_terminate(app: QApplication) -> None:
    """SIGTERM and SIGINT (``kill``, Ctrl+C in the terminal, logging out) close the window
    as its close button does: settings are saved and the exit status is 0. A signal that
    comes while the window is still being built closes it once the event loop runs."""

    def close(_signum: int, _frame: object) -> None:
        QTimer.singleShot(0, app.closeAllWindows)

    signal.signal(signal.SIGTERM, close)
    signal.signal(signal.SIGINT, close)
    # Python runs signal handlers only between bytecodes; while Qt waits for events none
    # run, so a timer wakes the interpreter four times a second.
    wake = QTimer(app)
    wake.timeout.connect(lambda: None)
    wake.start(250)


def main(argv: list[str] | None = None) -> int:
    """``tlstudio-gui [PROJECT_DIR]``: the window alone (a GUI script: no console on
    Windows; an unreadable project is reported in a message box)."""
    args = sys.argv[1:] if argv is None else argv
    if argv is None:
        from tlstudio.core.bytecode import compile_in_background

        compile_in_background()  # for the next start, when Python writes no bytecode
    if len(args) > 1 or (args and args[0].startswith("-")):
        print("usage: tlstudio-gui [PROJECT_DIR]  (the commands: tlstudio --help)", file=sys.stderr)
        return 2
    return run(args[0] if args else None)
