"""Prediction off the GUI thread: :func:`predict_images` runs
:func:`tlstudio.ml.runner.predict` (which stores the predictions in the project) as a
:class:`~tlstudio.gui.workers.jobs.BackgroundJob`, and a :class:`PredictController`
runs one at a time (start, cancel, wait).

The job opens its own :class:`~tlstudio.core.project.Project` (SQLite connections
belong to one thread) and imports torch and the runner in its thread, so the GUI never
waits for them. Only ints and strings cross threads.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QCoreApplication, QObject, Signal

from tlstudio.core.cancel import CancelToken
from tlstudio.core.errors import ProjectError
from tlstudio.gui.workers.jobs import BackgroundJob, Progress, job_pool

if TYPE_CHECKING:  # pragma: no cover
    from tlstudio.gui.state import AppState


class PredictedCount:
    """Images predicted and stored so far: written by the job's thread, read on the GUI
    thread once the job has ended (also after a cancel or a failure)."""

    def __init__(self) -> None:
        self.value = 0


def predict_images(
    project_root: Path,
    run_id: int,
    image_ids: list[int] | None,
    token: CancelToken,
    progress: Progress,
    *,
    count: PredictedCount,
    threads: int | None = None,
    batch_size: int = 16,
    device: str = "auto",
    tta: bool = False,
) -> int:
    """Predict run ``run_id`` on ``image_ids`` (None: every image) of the project at
    ``project_root`` and store the predictions; returns how many were stored (fewer once
    ``token`` is cancelled: it stops after the current batch). ``progress(done, total)``
    counts images. ``threads``: CPU threads (None: the window's thread budget,
    :mod:`tlstudio.runtime.threads`). ``tta``: with test-time augmentation (:mod:`tlstudio.ml.tta`)."""
    from tlstudio.core.project import Project

    try:
        project = Project.open(project_root)
    except Exception as exc:
        raise ProjectError(f"cannot open the project {project_root}: {exc}") from exc
    try:
        from tlstudio.ml import runner
        from tlstudio.ml.threads import apply_for_window

        apply_for_window(threads)

        def report(done: int, total: int) -> None:
            count.value = done
            progress(done, total)

        total = len(image_ids) if image_ids is not None else project.image_count()
        progress(0, total)
        count.value = runner.predict(
            project, run_id, image_ids, batch_size=batch_size, device=device,
            progress=report, token=token, tta=tta,
        )  # fmt: skip
        return count.value
    finally:
        project.close()


class PredictController(QObject):
    """Runs one prediction at a time.

    ``started(run_id, total)`` and ``running_changed(True)`` follow :meth:`start`;
    ``progress(done, total)`` (images) comes at most every 0.1 s and for the last batch;
    ``failed(message)`` says why it stopped early; then ``running_changed(False)`` and
    last ``finished(n)`` (images predicted and stored, also after a cancel or a failure),
    after ``app_state.predictions_changed`` was emitted when any prediction was stored.

    ``threads``: torch threads while predicting (see :func:`predict_images`)."""

    started = Signal(int, int)  # run id, images to predict (-1: every image)
    progress = Signal(int, int)  # done, total (images)
    failed = Signal(str)
    running_changed = Signal(bool)
    finished = Signal(int)

    def __init__(
        self,
        app_state: AppState | None = None,
        parent: QObject | None = None,
        *,
        threads: int | None = None,
        batch_size: int = 16,
    ):
        super().__init__(parent)
        self.app_state = app_state
        self.threads = threads
        self.batch_size = batch_size
        self.job: BackgroundJob | None = None
        self.last_count: int | None = None
        self.last_error: str | None = None
        self._pool = job_pool(self, 1, "predict")
        app = QCoreApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self.shutdown)

    @property
    def is_running(self) -> bool:
        return self.job is not None

    def start(
        self,
        run_id: int,
        image_ids: Sequence[int] | None = None,
        project_root: str | Path | None = None,
        *,
        tta: bool = False,
    ) -> bool:
        """Predict ``run_id`` on ``image_ids`` (None: every image) of ``project_root``
        (default: the open project), with test-time augmentation when ``tta``. False if
        one is already running or no project is open."""
        root = self._project_root(project_root)
        if self.is_running or root is None:
            return False
        self.last_error = None
        ids = None if image_ids is None else [int(i) for i in image_ids]
        count = PredictedCount()
        threads, batch_size, run = self.threads, self.batch_size, int(run_id)
        job = BackgroundJob(
            lambda token, progress: predict_images(
                root,
                run,
                ids,
                token,
                progress,
                count=count,
                threads=threads,
                batch_size=batch_size,
                tta=tta,
            ),  # fmt: skip
            context=self,
            needs_ml=True,
            progress_interval_s=0.1,
            name="predict",
        )
        job.progressed.connect(lambda done, total, _stage: self.progress.emit(done, total))
        job.succeeded.connect(lambda n: self._ended(int(n), None))
        job.failed.connect(
            lambda _kind, message: self._ended(count.value, f"Prediction failed: {message}")
        )
        job.cancelled.connect(lambda: self._ended(count.value, None))
        self.job = job.start(self._pool)
        self.running_changed.emit(True)
        self.started.emit(run, len(ids) if ids is not None else -1)
        return True

    def cancel(self) -> None:
        """Ask the prediction to stop after its current batch (returns at once)."""
        if self.job is not None:
            self.job.cancel()

    def wait(self, ms: int = -1) -> bool:
        """Block until the prediction has ended (at most ``ms`` ms; -1: no limit) and
        deliver ``finished``. True if nothing is left running. For shutdown and tests:
        the GUI thread is blocked meanwhile."""
        return self.job is None or self.job.wait(ms)

    def shutdown(self, ms: int = 30_000) -> bool:
        """Cancel and wait (window closing)."""
        self.cancel()
        return self.wait(ms)

    def _project_root(self, project_root: str | Path | None) -> Path | None:
        if project_root is not None:
            return Path(project_root)
        project = self.app_state.project if self.app_state is not None else None
        return None if project is None else project.root

    def _ended(self, count: int, error: str | None) -> None:
        self.job = None
        self.last_count = count
        if error is not None:
            self.last_error = error
            self.failed.emit(error)
        if count and self.app_state is not None and self.app_state.project is not None:
            self.app_state.predictions_changed.emit()
        self.running_changed.emit(False)
        self.finished.emit(count)
