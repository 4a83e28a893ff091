"""One long job at a time in its own QThread: the training controller's lifecycle
(start, cancel, wait, shutdown, the order of the last signals). Everything else runs as
a :class:`~tlstudio.gui.workers.jobs.BackgroundJob`; training moves there later.

A worker is a QObject with a ``run()`` slot, ``cancel()``, a ``done`` flag it sets just
before emitting ``finished(int)``, and no parent (it is moved to the thread)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QCoreApplication, QObject, Qt, QThread, Signal, Slot

if TYPE_CHECKING:  # pragma: no cover
    from tlstudio.gui.state import AppState


class ThreadController(QObject):
    """Owns the thread of one worker at a time. ``running_changed(True)`` follows the
    start; when the worker ends, :meth:`_worker_ended` runs, then ``running_changed(False)``
    and ``finished(value)`` come last, after the thread has ended. ``thread`` stays the
    last job's QThread until the next start."""

    running_changed = Signal(bool)
    finished = Signal(int)

    def __init__(self, app_state: AppState | None = None, parent: QObject | None = None):
        super().__init__(parent)
        self.app_state = app_state
        self.thread: QThread | None = None
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

    def _launch(self, worker: QObject, name: str) -> None:
        """Run ``worker.run`` in a new thread called ``name``."""
        if self.thread is not None:  # the previous job's finished thread
            self.thread.deleteLater()
        self.worker = worker
        self.thread = thread = QThread(self)
        thread.setObjectName(name)
        worker.moveToThread(thread)
        thread.started.connect(worker.run)
        # Direct: the thread ends as soon as run() returns, even while the GUI thread is
        # blocked in wait() and cannot handle queued signals.
        worker.finished.connect(thread.quit, Qt.ConnectionType.DirectConnection)
        worker.finished.connect(self._on_worker_finished)
        thread.start()
        self.running_changed.emit(True)

    def cancel(self) -> None:
        """Ask the job to stop after its current step (returns at once)."""
        if self.worker is not None:
            self.worker.cancel()

    def wait(self, ms: int = -1) -> bool:
        """Block until the thread has ended (at most ``ms`` ms; -1: no limit) and deliver
        ``finished``. True if nothing is left running. For shutdown and tests: the GUI
        thread is blocked meanwhile."""
        thread = self.thread
        if self.worker is None or thread is None:
            return True
        done = thread.wait() if ms < 0 else thread.wait(ms)
        if done:
            self._finalize()
        return done

    def shutdown(self, ms: int = 30_000) -> bool:
        """Cancel and wait (window closing)."""
        self.cancel()
        return self.wait(ms)

    @Slot(int)
    def _on_worker_finished(self, _value: int) -> None:
        # A late signal of a job already finalized by wait() must not end the next one.
        if self.worker is None or not self.worker.done:
            return
        self._finalize()

    def _finalize(self) -> None:
        worker, thread = self.worker, self.thread
        if worker is None:
            return
        if thread is not None:
            thread.quit()  # run() has returned: this only ends the idle event loop
            thread.wait()
        self.worker = None  # the thread has ended, so dropping the worker here is safe
        value = self._worker_ended(worker)
        self.running_changed.emit(False)
        self.finished.emit(value)

    def _worker_ended(self, worker: Any) -> int:
        """Record the ended worker's results; return what ``finished`` carries."""
        raise NotImplementedError
