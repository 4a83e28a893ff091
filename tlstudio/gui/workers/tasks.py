"""Run one plain function off the GUI thread and get its result back on it.

Used for short one-off jobs (finding missing files, relinking, exporting): the
function gets no Qt objects and, if it needs the project, opens its own
connection (SQLite connections belong to one thread)."""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import Any

import shiboken6
from PySide6.QtCore import QObject, QThreadPool, Signal

_live: set[BackgroundCall] = set()  # keep relays alive until their result is delivered


class BackgroundCall(QObject):
    """``fn()`` in a pool thread; ``succeeded(result)`` or ``failed(message)`` on the GUI thread."""

    succeeded = Signal(object)
    failed = Signal(str)
    _done = Signal(bool, object)

    def __init__(self, fn: Callable[[], Any], context: QObject | None = None):
        super().__init__()
        self._fn = fn
        self._context = context
        self._done.connect(self._deliver)

    def start(self, pool: QThreadPool | None = None) -> BackgroundCall:
        _live.add(self)
        (pool or QThreadPool.globalInstance()).start(self._run)
        return self

    def _run(self) -> None:
        try:
            ok, value = True, self._fn()
        except Exception as exc:  # reported to the GUI, never raised in a pool thread
            ok, value = False, f"{exc}" or traceback.format_exc(limit=1)
        try:
            self._done.emit(ok, value)
        except RuntimeError:  # the application is shutting down
            pass

    def _deliver(self, ok: bool, value: object) -> None:
        _live.discard(self)
        if self._context is not None and not shiboken6.isValid(self._context):
            return  # the widget that asked is gone
        if ok:
            self.succeeded.emit(value)
        else:
            self.failed.emit(str(value))


def run_in_background(
    fn: Callable[[], Any],
    on_success: Callable[[Any], None],
    on_failure: Callable[[str], None] | None = None,
    context: QObject | None = None,
) -> BackgroundCall:
    """Start ``fn`` in the global thread pool; callbacks run on the GUI thread,
    and not at all if ``context`` was deleted meanwhile."""
    call = BackgroundCall(fn, context)
    call.succeeded.connect(on_success)
    if on_failure is not None:
        call.failed.connect(on_failure)
    return call.start()


def wait_for_background(msecs: int = -1) -> bool:
    """Wait for the global pool (window shutdown and tests)."""
    return QThreadPool.globalInstance().waitForDone(msecs)
