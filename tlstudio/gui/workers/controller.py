"""One long job at a time: the training controller's lifecycle (start, cancel, wait,
shutdown, the order of the last signals) on the GUI's one background idiom, a
:class:`~tlstudio.gui.workers.jobs.BackgroundJob` in the controller's own one-thread pool.

A worker is a QObject with ``run()`` (called in the pool thread; returns an int, what
``finished`` carries), a ``token`` (the job's :class:`~tlstudio.core.cancel.CancelToken`:
cancel and pause reach ``run`` through it) and signals of its own, emitted in the pool
thread and so delivered queued, in order, before ``finished``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from PySide6.QtCore import QCoreApplication, QObject, Signal

from tlstudio.gui.workers.jobs import BackgroundJob, job_pool

if TYPE_CHECKING:  # pragma: no cover
    from tlstudio.core.cancel import CancelToken
    from tlstudio.gui.state import AppState


class Worker(Protocol):
    """What :meth:`ThreadController._launch` runs (see the module text)."""

    @property
    def token(self) -> CancelToken: ...

    def run(self) -> int: ...


class ThreadController(QObject):
    """Runs one worker at a time in :attr:`pool` (one thread, named ``name``).
    ``running_changed(True)`` follows the start; when the worker's job ends,
    :meth:`_worker_ended` runs, then ``running_changed(False)`` and ``finished(value)`` come
    last, once the pool is idle. ``job`` stays the last job until the next start."""

    running_changed = Signal(bool)
    finished = Signal(int)

    def __init__(
        self, app_state: AppState | None = None, parent: QObject | None = None, name: str = "job"
    ):
        super().__init__(parent)
        self.app_state = app_state
        self.pool = job_pool(self, 1, name)
        self.job: BackgroundJob | None = None
        self.worker: Any = None
        app = QCoreApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self.shutdown)

    @property
    def is_running(self) -> bool:
        return self.worker is not None

    def _project_root(self, project_root: str | Path | None) -> Path | None:
        """``project_root``, or the open project's folder; None if neither."""
        if project_root is not None:
            return Path(project_root)
        project = self.app_state.project if self.app_state is not None else None
        return None if project is None else project.root

    def _launch(self, worker: Worker, name: str) -> None:
        """Run ``worker.run`` as a job called ``name`` (it needs the ML modules)."""
        self.worker = worker
        job = BackgroundJob(
            lambda _token, _progress: worker.run(),
            context=self,
            name=name,
            needs_ml=True,
            token=worker.token,
        )
        job.finished.connect(lambda: self._finalize(job))
        self.job = job.start(self.pool)
        self.running_changed.emit(True)

    def cancel(self) -> None:
        """Ask the job to stop after its current step (returns at once)."""
        if self.job is not None and self.worker is not None:
            self.job.cancel()

    def wait(self, ms: int = -1) -> bool:
        """Block until the job has ended (at most ``ms`` ms; -1: no limit) and deliver
        ``finished``. True if nothing is left running. For shutdown and tests: the GUI
        thread is blocked meanwhile."""
        if self.worker is None or self.job is None:
            return True
        return self.job.wait(ms)  # delivering the outcome runs _finalize

    def shutdown(self, ms: int = 30_000) -> bool:
        """Cancel and wait (window closing)."""
        self.cancel()
        return self.wait(ms)

    def _finalize(self, job: BackgroundJob) -> None:
        worker = self.worker
        if job is not self.job or worker is None:
            return
        self.pool.waitForDone()  # run() has returned: only the job's last steps are left
        self.worker = None
        value = self._worker_ended(worker)
        self.running_changed.emit(False)
        self.finished.emit(value)

    def _worker_ended(self, worker: Any) -> int:
        """Record the ended worker's results; return what ``finished`` carries."""
        raise NotImplementedError
