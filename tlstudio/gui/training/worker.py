"""Training off the GUI thread: a :class:`TrainingWorker` runs
:func:`tlstudio.ml.runner.train` as a :class:`~tlstudio.gui.workers.jobs.BackgroundJob`
and turns its events into Qt signals; a :class:`TrainingController` owns the job's
lifecycle (start, pause, resume, cancel, wait).

Why a job and not a QThread of its own: the worker's many signals (batches, epochs,
pause) are emitted in the pool thread and reach the GUI queued and in order, like any
QObject's, and pause/resume/cancel go through the job's token; so training needs no
machinery of its own. It runs in the controller's private one-thread pool, so it never
waits behind short jobs in the global pool, nor they behind it.

Only plain data crosses threads: the frozen event dataclasses of
:mod:`tlstudio.ml.events`, ints, floats and strings. The worker opens its own
:class:`~tlstudio.core.project.Project` (SQLite connections belong to one thread).
torch and the runner are imported in the job (``needs_ml``), so the GUI never waits
for them.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, Signal

from tlstudio.core.cancel import CancelToken
from tlstudio.core.errors import DEVICE, MISSING, USER, ImageError, TlsError
from tlstudio.gui.workers.controller import ThreadController
from tlstudio.ml.callbacks import Callback
from tlstudio.ml.events import (
    BatchEnded,
    BatchSizeReduced,
    EpochEnded,
    FitEnded,
    FitStarted,
    TrainingFailed,
)

if TYPE_CHECKING:  # pragma: no cover
    from tlstudio.gui.state import AppState
    from tlstudio.ml.runner import RunSpec

#: Failure kinds sent with ``failed(kind, message)``.
FAILURE_KINDS = (
    "nan_loss",
    "out_of_memory",
    "missing_weights",
    "bad_image",
    "device",
    "config",
    "error",
)


class _WorkerToken(CancelToken):
    """A CancelToken that tells the worker when the training thread actually blocks
    in a pause (so the GUI can say "Paused" and the last batch is delivered first)."""

    def __init__(self) -> None:
        super().__init__()
        self.on_wait_start = lambda: None
        self.on_wait_end = lambda: None

    def wait_while_paused(self, poll_s: float = 0.05) -> bool:
        if not self.is_paused or self.is_cancelled:
            return not self.is_cancelled
        self.on_wait_start()
        try:
            return super().wait_while_paused(poll_s)
        finally:
            self.on_wait_end()


class _SignalBridge(Callback):
    """Trainer callback (runs on the training thread): events -> the worker's signals."""

    def __init__(self, worker: TrainingWorker, feature_cache: bool):
        self.w = worker
        self.feature_cache = feature_cache
        self.failure: TrainingFailed | None = None
        self._pending: BatchEnded | None = None
        self._pending_points: list[tuple[float, float, float]] = []
        self._last_emit = 0.0

    def flush(self) -> None:
        """Send the newest held-back batch (and the loss points gathered since the last send)."""
        if self._pending is None:
            return
        points, self._pending_points = self._pending_points, []
        event, self._pending = self._pending, None
        self._last_emit = time.monotonic()
        self.w.batch_points.emit(points)
        self.w.batch_ended.emit(event)

    def on_fit_start(self, trainer: Any, event: FitStarted) -> None:
        if self.feature_cache and not event.feature_cache:
            event = dataclasses.replace(event, feature_cache=True)
        self.w.main_metric_named.emit(str(getattr(trainer, "monitor", "") or "val_loss"))
        self.w.fit_started.emit(event)

    def on_batch_end(self, trainer: Any, event: BatchEnded) -> None:
        x = event.epoch + (event.step + 1) / max(event.steps_per_epoch, 1)
        self._pending_points.append((x, event.loss, event.lr))
        self._pending = event
        if time.monotonic() - self._last_emit >= self.w.batch_interval_s:
            self.flush()

    def on_batch_size_reduced(self, trainer: Any, event: BatchSizeReduced) -> None:
        self.flush()
        self._pending_points.clear()  # the epoch restarts
        self.w.batch_size_reduced.emit(event.old, event.new)

    def on_epoch_end(self, trainer: Any, event: EpochEnded) -> None:
        self.flush()
        self.w.epoch_ended.emit(event)

    def on_fit_end(self, trainer: Any, event: FitEnded) -> None:
        self.flush()
        self.w.ended_event = event
        self.w.fit_ended.emit(event)  # now, not after the model file is written

    def on_exception(self, trainer: Any, event: TrainingFailed) -> None:
        self.flush()
        self.failure = event


#: ``failed`` kind of a tlstudio error of each :mod:`tlstudio.core.errors` kind
_FAILURE_OF_KIND = {MISSING: "missing_weights", DEVICE: "device", USER: "config"}


def _out_of_memory(exc: BaseException) -> bool:
    import torch

    if isinstance(exc, (MemoryError, torch.cuda.OutOfMemoryError)):
        return True
    # other accelerators (Apple's MPS) say so only in a RuntimeError's message
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def failure_kind(exc: BaseException) -> str:
    """The ``failed`` kind (:data:`FAILURE_KINDS`) of an exception raised by a run: an
    unreadable image, running out of memory, else by the error's
    :func:`~tlstudio.core.errors.error_kind` (missing weights, device, configuration);
    ``"error"`` for anything else, errors of the file system included."""
    if isinstance(exc, ImageError):
        return "bad_image"
    if _out_of_memory(exc):
        return "out_of_memory"
    if isinstance(exc, TlsError):  # not OSError's kinds: a missing file is no missing weights
        return _FAILURE_OF_KIND.get(exc.kind, "error")
    return "error"


class TrainingWorker(QObject):
    """Runs one :class:`RunSpec` on the project at ``project_root`` when :meth:`run` is
    called, in the thread that calls it (a :class:`TrainingController`'s job). Every signal
    carries plain data; they are emitted in that thread.

    ``threads``: CPU threads for this run (None: the window's thread budget,
    :mod:`tlstudio.runtime.threads`). ``batch_interval_s``: ``batch_ended`` is sent at most once per
    interval, always with the newest batch; the batches in between are not lost, their
    (x in epochs, loss, lr) points arrive together in ``batch_points``."""

    main_metric_named = Signal(str)  # the metric the trainer monitors, before fit_started
    fit_started = Signal(object)  # FitStarted
    batch_ended = Signal(object)  # BatchEnded (the newest; at most ~10 a second)
    batch_points = Signal(object)  # list[(x_epochs, loss, lr)] of every batch since the last
    epoch_ended = Signal(object)  # EpochEnded
    fit_ended = Signal(object)  # FitEnded, as the fit ends (the model file is written after it)
    failed = Signal(str, str)  # kind (see FAILURE_KINDS), message for people
    batch_size_reduced = Signal(int, int)  # old, new
    extraction_progress = Signal(str, int, int)  # stage ("features train"), done, total
    pause_changed = Signal(bool)  # True once the training thread really waits, False after

    def __init__(
        self,
        project_root: str | Path,
        spec: RunSpec,
        *,
        threads: int | None = None,
        batch_interval_s: float = 0.1,
    ):
        super().__init__()
        self.project_root = Path(project_root)
        self.spec = copy.deepcopy(spec)
        self.threads = threads
        self.batch_interval_s = batch_interval_s
        self.token = _WorkerToken()
        self.token.on_wait_start = self._paused_now
        self.token.on_wait_end = lambda: self.pause_changed.emit(False)
        self.run_id = -1
        self.ended_event: FitEnded | None = None
        self.used_threads: int | None = None
        self._bridge: _SignalBridge | None = None
        self._extract_last = 0.0

    # -- any thread -------------------------------------------------------------------------
    def pause(self) -> None:
        self.token.pause()

    def resume(self) -> None:
        self.token.resume()

    def cancel(self) -> None:
        self.token.cancel()

    # -- training thread ----------------------------------------------------------------------
    def _paused_now(self) -> None:
        if self._bridge is not None:
            self._bridge.flush()
        self.pause_changed.emit(True)

    def _progress(self, stage: str, done: int, total: int) -> None:
        """Feature extraction progress; also where a pause takes hold during extraction."""
        now = time.monotonic()
        if done >= total or now - self._extract_last >= self.batch_interval_s:
            self._extract_last = now
            self.extraction_progress.emit(stage, done, total)
        if self.token.is_paused:
            self.token.wait_while_paused()

    def run(self) -> int:
        """Train; return the run id (-1 if no run could be recorded). Failures come as
        ``failed``; nothing is raised."""
        started = time.perf_counter()
        try:
            self._run(started)
        except BaseException as exc:  # a bug: say what it was instead of failing the job
            self.failed.emit("error", f"{type(exc).__name__}: {exc}")
        return self.run_id

    def _run(self, started: float) -> None:
        from tlstudio.core.project import Project

        try:
            project = Project.open(self.project_root)
        except Exception as exc:
            self.failed.emit("error", f"cannot open the project {self.project_root}: {exc}")
            return
        try:
            from tlstudio.ml.threads import apply_for_window

            self.used_threads = apply_for_window(self.threads)
            self._train(project, started)
        finally:
            project.close()

    def _train(self, project: Any, started: float) -> None:
        from tlstudio.core.runs import RunStore
        from tlstudio.ml import runner
        from tlstudio.ml.features import ExtractionCancelled

        spec = self.spec
        runs = RunStore(project)
        last_id = max((r.id for r in runs.list()), default=0)
        bridge = self._bridge = _SignalBridge(self, runner.uses_feature_cache(spec))
        try:
            result = runner.train(
                project, spec, callbacks=[bridge], token=self.token, progress=self._progress
            )
        except ExtractionCancelled:
            bridge.flush()
            self.run_id = self._new_run_id(runs, last_id)
            if self.run_id > 0:
                runs.update(self.run_id, status="cancelled", error=None)
            self.fit_ended.emit(
                FitEnded("cancelled", 0, None, None, None, time.perf_counter() - started, None)
            )
            return
        except Exception as exc:
            bridge.flush()
            kind = bridge.failure.kind if bridge.failure is not None else failure_kind(exc)
            if kind == "error":
                kind = failure_kind(exc)
            message = str(exc) or type(exc).__name__
            self.run_id = self._new_run_id(runs, last_id)
            if self.run_id < 0:  # failed before the runner recorded a run: record it here
                self.run_id = self._record_failure(runs, spec, message, started)
            self.failed.emit(kind, message)
            return
        self.run_id = result.run_id
        if result.failure is not None:
            self.failed.emit(result.failure.kind, result.failure.message)

    @staticmethod
    def _new_run_id(runs: Any, last_id: int) -> int:
        ids = [r.id for r in runs.list() if r.id > last_id]
        return ids[-1] if ids else -1

    @staticmethod
    def _record_failure(runs: Any, spec: Any, message: str, started: float) -> int:
        try:
            run_id = runs.start(spec.task, spec.backbone, spec.to_dict(), spec.train.device)
            runs.update(
                run_id, status="failed", error=message, duration_s=time.perf_counter() - started
            )
            return run_id
        except Exception:  # the store itself is broken; the failed signal still goes out
            return -1


class TrainingController(ThreadController):
    """Owns the training job: one run at a time, in the one-thread pool ``training``.

    Every worker signal is relayed under the same name (delivered on the GUI thread);
    ``started(spec)`` follows :meth:`start`, ``finished(run_id)`` comes last, after the job
    has ended (``job.is_finished`` is then True and ``pool`` idle), and ``running_changed``
    around both. ``job`` stays the last run's job until the next start."""

    started = Signal(object)  # RunSpec
    main_metric_named = Signal(str)
    fit_started = Signal(object)
    batch_ended = Signal(object)
    batch_points = Signal(object)
    epoch_ended = Signal(object)
    fit_ended = Signal(object)
    failed = Signal(str, str)
    batch_size_reduced = Signal(int, int)
    extraction_progress = Signal(str, int, int)
    pause_changed = Signal(bool)

    _RELAYED = (
        "main_metric_named",
        "fit_started",
        "batch_ended",
        "batch_points",
        "epoch_ended",
        "fit_ended",
        "failed",
        "batch_size_reduced",
        "extraction_progress",
        "pause_changed",
    )

    def __init__(
        self,
        app_state: AppState | None = None,
        parent: QObject | None = None,
        *,
        threads: int | None = None,
        batch_interval_s: float = 0.1,
    ):
        super().__init__(app_state, parent, name="training")
        self.threads = threads
        self.batch_interval_s = batch_interval_s
        self.last_run_id: int | None = None
        self.last_used_threads: int | None = None  # torch threads the last run trained with

    @property
    def is_paused(self) -> bool:
        return self.worker is not None and self.worker.token.is_paused

    def start(self, spec: RunSpec, project_root: str | Path | None = None) -> bool:
        """Train ``spec`` on ``project_root`` (default: the open project). False if a run is
        already going or no project is open."""
        root = self._project_root(project_root)
        if self.is_running or root is None:
            return False
        worker = TrainingWorker(
            root, spec, threads=self.threads, batch_interval_s=self.batch_interval_s
        )
        for name in self._RELAYED:
            getattr(worker, name).connect(getattr(self, name))
        self._launch(worker, "training")
        self.started.emit(spec)
        return True

    def pause(self) -> None:
        if self.worker is not None:
            self.worker.pause()

    def resume(self) -> None:
        if self.worker is not None:
            self.worker.resume()

    def _worker_ended(self, worker: TrainingWorker) -> int:
        self.last_run_id = worker.run_id
        self.last_used_threads = worker.used_threads
        return worker.run_id
