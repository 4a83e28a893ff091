"""Child process of bench_window.py: ``tlstudio PROJECT`` as the command line starts it,
printing ``ROWS {marks}`` once the image browser painted its first rows with the event
loop idle, then closing the window. Marks are seconds since this script started (after
the interpreter's own start-up). The package is whatever ``PYTHONPATH`` names first."""

from __future__ import annotations

import json
import sys
import time

T0 = time.perf_counter()
MARK = "ROWS "


def main(project: str) -> int:
    import tlstudio.cli
    from tlstudio.gui import app

    marks: dict[str, float] = {"imports_s": time.perf_counter() - T0}
    build = app.create_main_window

    def create(project_dir=None, settings=None):
        from PySide6.QtCore import QEvent, QObject, QTimer

        marks["qapplication_s"] = time.perf_counter() - T0
        window = build(project_dir, settings)
        marks["window_built_s"] = time.perf_counter() - T0
        view = window.browser.view

        def idle() -> None:
            marks["rows_s"] = time.perf_counter() - T0
            marks["rows"] = view.model().rowCount()
            print(MARK + json.dumps(marks), flush=True)
            window.close()

        class FirstRows(QObject):
            done = False

            def eventFilter(self, obj, event) -> bool:
                if (not self.done and event.type() == QEvent.Type.Paint
                        and view.model().rowCount() > 0):  # fmt: skip
                    self.done = True
                    QTimer.singleShot(0, idle)  # after this paint, with the loop idle
                return False

        window._first_rows = FirstRows(window)
        view.viewport().installEventFilter(window._first_rows)
        return window

    app.create_main_window = create
    return tlstudio.cli.main([project])


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
