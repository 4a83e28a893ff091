"""Prediction off the GUI thread: a :class:`PredictWorker` in a QThread runs
:func:`tlstudio.ml.runner.predict` (which stores the predictions in the project)
and a :class:`PredictController` owns the thread (start, cancel, wait).

The worker opens its own :class:`~tlstudio.core.project.Project` (SQLite
connections belong to one thread) and imports torch and the runner in its
thread, so the GUI never waits for them. Only ints and strings cross threads.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Signal, Slot

from tlstudio.gui.workers.controller import ThreadController
from tlstudio.ml.callbacks import CancelToken

if TYPE_CHECKING:  # pragma: no cover
    from tlstudio.gui.state import AppState


class PredictWorker(QObject):
    """Predicts run ``run_id`` on ``image_ids`` of the project at ``project_root`` in
    the thread it was moved to (start it with :meth:`run`).

    ``progress(done, total)`` (images) comes at most every ``progress_interval_s``
    and always for the last batch; then ``failed(message)`` if it failed, and
    ``finished(n)`` last, with the number of images predicted and stored (also
    after a cancel or a failure).

    ``threads``: torch intra-op threads while predicting (None: one core fewer than
    the machine has, so the GUI keeps one; 0: leave torch's setting alone)."""

    progress = Signal(int, int)
    failed = Signal(str)
    finished = Signal(int)

    def __init__(
        self,
        project_root: str | Path,
        run_id: int,
        image_ids: Sequence[int] | None,
        *,
        threads: int | None = None,
        batch_size: int = 16,
        device: str = "auto",
        progress_interval_s: float = 0.1,
    ):
        super().__init__()
        self.project_root = Path(project_root)
        self.run_id = int(run_id)
        self.image_ids = None if image_ids is None else [int(i) for i in image_ids]
        self.threads = threads
        self.batch_size = batch_size
        self.device = device
        self.progress_interval_s = progress_interval_s
        self.token = CancelToken()
        self.done = False  # set on the worker thread just before ``finished``
        self.count = 0
        self.error: str | None = None
        self._last = 0.0

    def cancel(self) -> None:
        """Stop after the current batch (any thread)."""
        self.token.cancel()

    def _fail(self, message: str) -> None:
        self.error = message
        self.failed.emit(message)

    def _progress(self, done: int, total: int) -> None:
        self.count = done
        now = time.monotonic()
        if done >= total or now - self._last >= self.progress_interval_s:
            self._last = now
            self.progress.emit(done, total)

    @Slot()
    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # never let anything escape into Qt
            self._fail(f"Prediction failed: {exc or type(exc).__name__}")
        finally:
            self.done = True
            self.finished.emit(self.count)

    def _run(self) -> None:
        from tlstudio.core.project import Project

        try:
            project = Project.open(self.project_root)
        except Exception as exc:
            self._fail(f"Cannot open the project {self.project_root}: {exc}")
            return
        try:
            import torch

            from tlstudio.gui.training.worker import default_torch_threads
            from tlstudio.ml import runner

            previous = torch.get_num_threads()
            n = self.threads
            if n is None:
                n = default_torch_threads(torch_default=previous)
            if n:
                torch.set_num_threads(n)
            try:
                total = len(self.image_ids) if self.image_ids is not None else None
                self.progress.emit(0, total if total is not None else project.image_count())
                self.count = runner.predict(
                    project, self.run_id, self.image_ids, batch_size=self.batch_size,
                    device=self.device, progress=self._progress, token=self.token,
                )  # fmt: skip
            finally:
                if n:
                    torch.set_num_threads(previous)
        finally:
            project.close()


class PredictController(ThreadController):
    """Owns the prediction thread: one prediction at a time.

    ``started(run_id, total)`` follows :meth:`start`; ``progress(done, total)`` relays
    the worker's; ``failed(message)`` says why it stopped early; ``finished(n)`` (images
    predicted) comes last, after the thread has ended, and after
    ``app_state.predictions_changed`` was emitted when any prediction was stored."""

    started = Signal(int, int)  # run id, images to predict
    progress = Signal(int, int)  # done, total (images)
    failed = Signal(str)

    def __init__(
        self,
        app_state: AppState | None = None,
        parent: QObject | None = None,
        *,
        threads: int | None = None,
        batch_size: int = 16,
    ):
        super().__init__(app_state, parent)
        self.threads = threads
        self.batch_size = batch_size
        self.last_count: int | None = None
        self.last_error: str | None = None

    def start(
        self,
        run_id: int,
        image_ids: Sequence[int] | None = None,
        project_root: str | Path | None = None,
    ) -> bool:
        """Predict ``run_id`` on ``image_ids`` (None: every image) of ``project_root``
        (default: the open project). False if one is already running or no project is open."""
        root = self._project_root(project_root)
        if self.is_running or root is None:
            return False
        self.last_error = None
        worker = PredictWorker(
            root, run_id, image_ids, threads=self.threads, batch_size=self.batch_size
        )
        worker.progress.connect(self.progress)
        worker.failed.connect(self._on_failed)
        self._launch(worker, "predict")
        total = len(image_ids) if image_ids is not None else -1
        self.started.emit(int(run_id), total)
        return True

    @Slot(str)
    def _on_failed(self, message: str) -> None:
        if self.worker is None:
            return
        self.last_error = message
        self.failed.emit(message)

    def _worker_ended(self, worker: PredictWorker) -> int:
        self.last_count = worker.count
        if worker.error is not None and self.last_error is None:  # wait() ran first
            self.last_error = worker.error
            self.failed.emit(worker.error)
        if worker.count and self.app_state is not None and self.app_state.project is not None:
            self.app_state.predictions_changed.emit()
        return worker.count
