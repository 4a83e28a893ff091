"""The older call style of one plain function ``fn()`` off the GUI thread, kept for the
Train panel's modules until they move to :class:`~tlstudio.gui.workers.jobs.BackgroundJob`
(which runs these calls: there is one background machinery)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QThreadPool, Signal

from tlstudio.gui.workers.jobs import BackgroundJob, wait_for_jobs


class BackgroundCall(QObject):
    """``fn()`` as a :class:`BackgroundJob`; ``succeeded(result)`` or ``failed(message)``
    on the GUI thread, nothing if ``context`` was deleted meanwhile."""

    succeeded = Signal(object)
    failed = Signal(str)

    def __init__(self, fn: Callable[[], Any], context: QObject | None = None):
        super().__init__()
        self.job = BackgroundJob(lambda _token, _progress: fn(), context=context)
        self.job.succeeded.connect(self.succeeded)
        self.job.failed.connect(lambda _kind, message: self.failed.emit(message))
        self.job.adapter = self  # alive as long as the job is

    def start(self, pool: QThreadPool | None = None) -> BackgroundCall:
        self.job.start(pool)
        return self


def run_in_background(
    fn: Callable[[], Any],
    on_success: Callable[[Any], None],
    on_failure: Callable[[str], None] | None = None,
    context: QObject | None = None,
) -> BackgroundJob:
    """Start ``fn`` in the global thread pool; callbacks run on the GUI thread, and not
    at all if ``context`` was deleted meanwhile."""
    job = BackgroundJob(lambda _token, _progress: fn(), context=context)
    job.succeeded.connect(on_success)
    if on_failure is not None:
        job.failed.connect(lambda _kind, message: on_failure(message))
    return job.start()


def wait_for_background(msecs: int = -1) -> bool:
    """Wait until every background pool is idle (window shutdown and tests)."""
    return wait_for_jobs(msecs)
