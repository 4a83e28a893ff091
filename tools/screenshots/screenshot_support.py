"""Event-loop waits for the screenshot scripts (``make_screenshots_*.py``, not tests)."""

from __future__ import annotations

import time
from collections.abc import Callable

from PySide6.QtCore import QEventLoop, QTimer


def wait_until(condition: Callable[[], bool], timeout_s: float = 300.0) -> bool:
    """Run the event loop until ``condition()`` holds (polled every 20 ms) or
    ``timeout_s`` passes; returns ``condition()``."""
    loop = QEventLoop()
    deadline = time.monotonic() + timeout_s
    timer = QTimer()
    timer.setInterval(20)
    timer.timeout.connect(lambda: (condition() or time.monotonic() > deadline) and loop.quit())
    timer.start()
    if not condition():
        loop.exec()
    timer.stop()
    return condition()


def wait_for(condition: Callable[[], bool], timeout_s: float = 300.0) -> None:
    """:func:`wait_until`, raising TimeoutError when the condition never holds."""
    if not wait_until(condition, timeout_s):
        raise TimeoutError(f"the window did not settle within {timeout_s:g} s")


def settle(ms: int = 300) -> None:
    """Run the event loop for ``ms`` milliseconds (repaints, queued signals)."""
    loop = QEventLoop()
    QTimer.singleShot(ms, loop.quit)
    loop.exec()
