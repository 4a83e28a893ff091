"""The independent runs of an experiment (folds, arms, curve points) in parallel worker
processes, one device each.

Each worker process is started fresh (``spawn``: no copied torch or CUDA state), takes
one device from the list for its whole life, opens the project itself and trains the runs
it is given with :func:`tlstudio.ml.runner.train`, so every run is recorded exactly as a
run trained in this process would be, by its own process (the run's owner). The store
takes writers from several processes: each run's writes are short transactions (start,
one row per epoch, the end), well inside the store's busy timeout. On the CPU each worker
gets an equal share of the cores for its torch threads.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tlstudio.core.errors import error_message

from .devices import select_device
from .runner import RunError, RunSpec, TrainResult


@dataclass(frozen=True)
class RunJob:
    """One run of an experiment: ``spec`` with ``image_ids`` = (train ids, val ids) (None:
    the stored splits) and the ``experiment`` entry of its config; ``label`` names it in
    messages ("fold 2/5"); ``keep`` the epoch whose model is saved ("best" or "last", as
    :func:`tlstudio.ml.runner.train` takes it)."""

    spec: RunSpec
    image_ids: tuple[list[int], list[int]] | None
    experiment: dict[str, Any] | None
    label: str
    keep: str = "best"


@dataclass(frozen=True)
class _Failed:
    message: str


def parse_devices(devices: str | None, workers: int | None) -> list[str] | None:
    """The worker devices of ``--devices cuda:0,cuda:1`` or ``--workers N`` (N CPU workers);
    None when neither asks for parallel runs. Each device is checked here."""
    if devices and workers:
        raise RunError("give --devices or --workers, not both")
    if workers is not None:
        if workers < 1:
            raise RunError(f"--workers must be at least 1, got {workers}")
        return ["cpu"] * workers if workers > 1 else None
    if not devices:
        return None
    out = [d.strip() for d in devices.split(",") if d.strip()]
    if not out:
        raise RunError(f"--devices {devices!r}: name at least one device (cuda:0,cuda:1)")
    for d in out:
        select_device(d)  # DeviceError naming the device when it is not there
    return out


class RunPool:
    """Worker processes, one per entry of ``devices`` (a device may repeat: ``["cpu"] * 2``).
    ``on_done(job, result)`` is called in this process as each run ends."""

    def __init__(
        self,
        devices: Sequence[str],
        on_done: Callable[[RunJob, TrainResult], None] | None = None,
    ) -> None:
        if not devices:
            raise RunError("a run pool needs at least one device")
        self.devices = list(devices)
        self.on_done = on_done

    def threads_per_worker(self) -> int:
        """Torch threads of each worker: the machine's cores shared equally."""
        return max(1, (os.cpu_count() or 1) // len(self.devices))

    def run(
        self, root: str | Path, jobs: Sequence[RunJob], token: Any = None
    ) -> list[TrainResult | None]:
        """Train ``jobs`` on the project at ``root``; their results in ``jobs`` order (None
        for a job that did not start: cancelled through ``token``, or after a failure). The
        first run that raised ends the pool (runs already going finish first) and is
        raised as RunError naming the job."""
        results: list[TrainResult | None] = [None] * len(jobs)
        if not jobs:
            return results
        ctx = multiprocessing.get_context("spawn")
        queue = ctx.Queue()
        for device in self.devices:
            queue.put(device)
        failure: str | None = None
        with ProcessPoolExecutor(
            max_workers=min(len(self.devices), len(jobs)),
            mp_context=ctx,
            initializer=_init_worker,
            initargs=(queue, self.threads_per_worker()),
        ) as pool:
            pending: dict[Future, int] = {
                pool.submit(_train_job, str(Path(root).resolve()), job): i
                for i, job in enumerate(jobs)
            }
            try:
                while pending:
                    done, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        i = pending.pop(future)
                        if future.cancelled():
                            continue
                        try:
                            out = future.result()
                        except BrokenProcessPool as exc:
                            out = _Failed(f"its worker process died ({exc})")
                        if isinstance(out, _Failed):
                            failure = failure or f"{jobs[i].label}: {out.message}"
                        else:
                            results[i] = out
                            if self.on_done is not None:
                                self.on_done(jobs[i], out)
                    stop = failure is not None or (
                        token is not None and getattr(token, "is_cancelled", False)
                    )
                    if stop:
                        for future in pending:
                            future.cancel()
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise
        if failure is not None:
            raise RunError(failure)
        return results


# --------------------------------------------------------------------------- in the workers

_WORKER: dict[str, Any] = {}


def _init_worker(queue: Any, threads: int) -> None:
    import torch

    # every worker finds its device waiting (one per device, never more workers than
    # devices); the timeout turns a broken start into a failed pool instead of a hang
    _WORKER["device"] = queue.get(timeout=120)
    torch.set_num_threads(threads)


def _train_job(root: str, job: RunJob) -> TrainResult | _Failed:
    """Train one job in a worker (its project opened once per worker)."""
    from tlstudio.core.project import Project

    from . import runner

    try:
        project = _WORKER.get("project")
        if project is None:
            project = _WORKER["project"] = Project.open(root)
        spec = job.spec
        spec.train.device = _WORKER["device"]
        return runner.train(
            project, spec, image_ids=job.image_ids, experiment=job.experiment, keep=job.keep
        )
    except Exception as exc:  # sent back as text: not every exception survives pickling
        return _Failed(error_message(exc))
