"""A Train-panel tab that runs one background job at a time (Instant few-shot, Find
learning rate): start, progress bar, Cancel, and a status line when it ends."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtWidgets import QLabel, QProgressBar, QPushButton, QWidget

from tlstudio.gui.workers.jobs import BackgroundJob, JobFn


class JobTab(QWidget):
    """Subclasses build ``progress``, ``cancel_button`` and ``status`` (the line that says
    how the job ended), say which inputs to lock in :meth:`_lock_inputs`, and show a result
    in the ``done`` callback they give :meth:`_run`."""

    progress: QProgressBar
    cancel_button: QPushButton
    status: QLabel

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._job: BackgroundJob | None = None

    def is_busy(self) -> bool:
        return self._job is not None

    def cancel(self) -> None:
        if self._job is not None:
            self._job.cancel()

    def shutdown(self) -> None:
        """Cancel the job and wait for it (the window is closing)."""
        if self._job is not None:
            self._job.cancel()
            self._job.wait()

    def _run(
        self, fn: JobFn, *, name: str, failed: str, done: Callable[[BackgroundJob, Any], None]
    ) -> None:
        """Start ``fn`` (see :class:`BackgroundJob`); a failure shows as "``failed``: why"."""
        job = BackgroundJob(fn, context=self, progress_interval_s=0.1, name=name)
        job.progressed.connect(self._progressed)
        job.succeeded.connect(lambda r, j=job: done(j, r))
        job.failed.connect(lambda _k, msg, j=job: self._ended(j, f"{failed}: {msg}"))
        job.cancelled.connect(lambda j=job: self._ended(j, "Cancelled."))
        self._job = job.start()
        self._set_busy(True)

    def _progressed(self, done: int, total: int, stage: str) -> None:
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)
        if stage:
            self.progress.setFormat(f"{stage}: %v / %m")

    def _ended(self, job: BackgroundJob, text: str) -> None:
        if self._job is job:
            self._job = None
        self._set_busy(False)
        self.status.setText(text)

    def _set_busy(self, busy: bool) -> None:
        self._lock_inputs(busy)
        self.progress.setVisible(busy)
        self.cancel_button.setVisible(busy)
        if busy:
            self.progress.setRange(0, 0)

    def _lock_inputs(self, busy: bool) -> None:
        """Disable the tab's own inputs while the job runs."""
        raise NotImplementedError
