"""One training run in several processes: DistributedDataParallel under ``torchrun``.

``torchrun`` (directly, or started by SLURM's ``srun``) starts one process per device and
tells each its place through the environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``/``MASTER_PORT``). :func:`init_from_env` joins that group: NCCL when the
processes train on CUDA GPUs (process ``LOCAL_RANK`` takes GPU ``LOCAL_RANK``), gloo on
the CPU. Every collective waits at most :func:`collective_timeout_s` seconds, so a job
whose peer is gone fails instead of hanging.

What differs from a one-process fit (see :class:`DistributedFit`, which the trainer
calls at a few hooks):

- each epoch's shuffled order is drawn from the trainer's generator (reseeded every
  epoch from the run's seed), identically in every process, and each process takes every
  ``world_size``-th image of it (:class:`ShardSampler`, a ``DistributedSampler``); so
  ``N`` processes × batch ``b`` see the same global batches as one process × ``N·b``;
- the training step goes through ``DistributedDataParallel``, which averages gradients;
- the batch loss, the epoch losses and the validation outputs are reduced over the
  processes before callbacks see them, so every process computes the same metrics;
- stop decisions (early stopping, a non-finite loss, a failure a callback reports,
  cancel) are taken on rank 0 and broadcast, so every process stops at the same batch;
- only rank 0 writes: the runner gives it alone the checkpoint folder and the project
  store (the other ranks open the project read-only).

``TLSTUDIO_DIST_TIMEOUT_S`` overrides the collective timeout (default 1800 s).
"""

from __future__ import annotations

import datetime
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DistributedSampler, Sampler

from tlstudio.core.errors import TlsError
from tlstudio.ml.devices import DeviceError, seed_everything

if TYPE_CHECKING:  # pragma: no cover
    from tlstudio.core.project import Project
    from tlstudio.ml.trainer import Trainer

TIMEOUT_ENV = "TLSTUDIO_DIST_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 1800.0
_TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
#: tasks whose BatchNorm is converted to SyncBatchNorm by default (on GPUs): their
#: batches per process are small (a few large images), so per-process statistics are poor
SYNC_BN_TASKS = ("detect", "segment")


class DistributedError(TlsError):
    """A multi-process run cannot be set up as asked (the message says why)."""


@dataclass(frozen=True)
class DistContext:
    """This process's place in a job: ``rank`` of ``world_size`` processes, ``local_rank``
    on its machine (``local_world_size`` processes there), the ``backend`` ("nccl" or
    "gloo") and the ``device`` it trains on ("cpu" or "cuda:N")."""

    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    backend: str
    device: str

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes the project store, checkpoints and the model."""
        return self.rank == 0

    @property
    def nodes(self) -> int:
        """Machines taking part (processes per machine are assumed equal, as torchrun starts them)."""
        return max(1, self.world_size // max(1, self.local_world_size))

    def describe_device(self) -> str:
        """The device column of a run: ``cpu ×2 (gloo)``, ``cuda ×8 (nccl, 2 nodes)``."""
        kind = self.device.split(":")[0]
        nodes = f", {self.nodes} nodes" if self.nodes > 1 else ""
        return f"{kind} ×{self.world_size} ({self.backend}{nodes})"

    def layout(self, batch_per_process: int, sync_batchnorm: bool) -> dict[str, Any]:
        """What a run records about its processes (plain JSON)."""
        return {
            "world_size": self.world_size,
            "nodes": self.nodes,
            "backend": self.backend,
            "batch_per_process": int(batch_per_process),
            "global_batch": int(batch_per_process) * self.world_size,
            "sync_batchnorm": bool(sync_batchnorm),
        }


# --------------------------------------------------------------------------- the group


def launched_by_torchrun() -> bool:
    """True when ``torchrun`` (or another launcher that sets RANK, WORLD_SIZE and
    LOCAL_RANK) started this process."""
    return all(v in os.environ for v in _TORCHRUN_VARS)


def collective_timeout_s() -> float:
    """Seconds a collective (and the start of the group) may wait for the other processes."""
    text = os.environ.get(TIMEOUT_ENV, "")
    try:
        value = float(text) if text else DEFAULT_TIMEOUT_S
    except ValueError:
        raise DistributedError(f"{TIMEOUT_ENV}={text!r}: not a number of seconds") from None
    if not value > 0:
        raise DistributedError(f"{TIMEOUT_ENV}={text!r}: must be more than 0 seconds")
    return value


def _device_for(choice: str, local_rank: int) -> str:
    """The device of process ``local_rank`` for the run's device ``choice``."""
    p = (choice or "auto").strip().lower()
    if p == "auto":
        p = "cuda" if torch.cuda.is_available() else "cpu"
    if p == "cpu":
        return "cpu"
    if p == "mps":
        raise DistributedError(
            "several processes train on CUDA GPUs or on the CPU; Apple's MPS cannot take "
            "part in a distributed job (use --device cpu, or one process)"
        )
    if p == "cuda" or p.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise DeviceError(
                f"device {choice!r} was requested but CUDA is not available on this machine; "
                "use --device cpu (gloo) or run where the GPUs are"
            )
        if p != "cuda":
            raise DistributedError(
                f"device {choice!r}: with torchrun each process takes the GPU of its local "
                "rank; give --device cuda (or auto) and choose GPUs with CUDA_VISIBLE_DEVICES"
            )
        count = torch.cuda.device_count()
        if local_rank >= count:
            raise DeviceError(
                f"process {local_rank} on this machine has no GPU: {count} CUDA device(s); "
                "start at most that many processes per machine (--nproc_per_node)"
            )
        return f"cuda:{local_rank}"
    raise DeviceError(f"unknown device {choice!r}; use auto, cpu or cuda")


def init_from_env(device: str = "auto") -> DistContext | None:
    """Join the process group torchrun set up; None when this process was not started by
    torchrun. ``device`` is the run's device choice (auto, cpu, cuda). A group that is
    already initialised (a second call) is reused."""
    if not launched_by_torchrun():
        return None
    try:
        rank = int(os.environ["RANK"])
        world = int(os.environ["WORLD_SIZE"])
        local_rank = int(os.environ["LOCAL_RANK"])
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    except ValueError as exc:
        raise DistributedError(f"torchrun's environment is not readable ({exc})") from None
    dev = _device_for(device, local_rank)
    backend = "nccl" if dev.startswith("cuda") else "gloo"
    if not dist.is_initialized():
        timeout = datetime.timedelta(seconds=collective_timeout_s())
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
            dist.init_process_group(
                backend, timeout=timeout, device_id=torch.device("cuda", local_rank)
            )
        else:
            dist.init_process_group(backend, timeout=timeout)
    return DistContext(rank, world, local_rank, local_world, backend, dev)


def shutdown() -> None:
    """Leave the process group (when one was joined)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    """Wait until every process got here."""
    if ctx.backend == "nccl":
        dist.barrier(device_ids=[ctx.local_rank])
    else:
        dist.barrier()


def broadcast_object(ctx: DistContext, obj: Any) -> Any:
    """Rank 0's ``obj`` (any picklable value) in every process."""
    box = [obj if ctx.is_main else None]
    dist.broadcast_object_list(box, src=0, device=_comm_device(ctx))
    return box[0]


def all_gather_objects(ctx: DistContext, obj: Any) -> list[Any]:
    """Every process's ``obj``, in rank order."""
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def sum_values(ctx: DistContext, values: Sequence[float]) -> list[float]:
    """``values`` summed element-wise over the processes (float64)."""
    t = torch.tensor(list(values), dtype=torch.float64, device=_comm_device(ctx))
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return [float(v) for v in t.cpu()]


def _comm_device(ctx: DistContext) -> torch.device:
    """Where tensors of a collective live: NCCL moves CUDA tensors only."""
    return torch.device(ctx.device) if ctx.backend == "nccl" else torch.device("cpu")


def open_project(root: Any, ctx: DistContext) -> Project:
    """The project for this process: rank 0 opens it for editing first (finishing what a
    killed process left), the others then open it read-only, so one process writes."""
    from tlstudio.core.project import Project

    project = Project.open(root) if ctx.is_main else None
    barrier(ctx)
    return project if project is not None else Project.open(root, read_only=True)


def describe_failure(exc: BaseException, ctx: DistContext) -> str:
    """The error a run records when process ``ctx.rank`` failed with ``exc``: a collective
    that lost its peers says so (the peer's own error is in the job's output)."""
    text = str(exc) or type(exc).__name__
    lost = isinstance(exc, dist.DistError) or any(
        s in text for s in ("closed by peer", "Connection reset", "Timed out", "timed out")
    )
    where = f"process {ctx.rank} of {ctx.world_size}"
    if lost and isinstance(exc, RuntimeError):
        first = text.strip().splitlines()[0][:200]
        return (
            f"{where} lost contact with the others: another process of the job failed or "
            f"stopped (its error is in the job's output) ({first})"
        )
    return f"{where}: {text}"


def record_failure(exc: BaseException) -> None:
    """Write ``exc`` to the error file torchrun gave this process, so torchrun's summary of
    a failed job names this rank's error (not only its exit code)."""
    if "TORCHELASTIC_ERROR_FILE" not in os.environ:
        return
    try:
        from torch.distributed.elastic.multiprocessing.errors import ErrorHandler

        ErrorHandler().record_exception(exc)
    except Exception as inner:  # the error itself is already printed; do not hide it
        print(f"warning: could not record the error for torchrun ({inner})", file=sys.stderr)


# --------------------------------------------------------------------------- BatchNorm


def use_sync_batchnorm(choice: bool | None, task: str, ctx: DistContext | None) -> bool:
    """Whether a run's BatchNorm becomes SyncBatchNorm: ``choice`` True/False, or None =
    on for detection and segmentation with several GPU processes. PyTorch runs
    SyncBatchNorm on GPUs only, so asking for it with CPU processes is an error."""
    if ctx is None or ctx.world_size < 2:
        return False
    if choice is None:
        return task in SYNC_BN_TASKS and ctx.backend == "nccl"
    if choice and ctx.backend != "nccl":
        raise DistributedError(
            "SyncBatchNorm runs on GPUs only (PyTorch's SyncBatchNorm refuses CPU tensors); "
            "with CPU processes keep BatchNorm per process (--sync-bn off)"
        )
    return bool(choice)


def convert_sync_batchnorm(model: nn.Module) -> nn.Module:
    """``model`` with every BatchNorm layer replaced by SyncBatchNorm (same parameters,
    buffers and state-dict keys, so its checkpoints load into a plain model)."""
    return nn.SyncBatchNorm.convert_sync_batchnorm(model)


# --------------------------------------------------------------------------- samplers


class ShardSampler(DistributedSampler):
    """This process's share of each epoch: the epoch's order (from ``inner``, or a
    permutation drawn from ``generator``, exactly as a one-process loader would draw it),
    padded by repeating its start to a multiple of ``num_replicas``, then every
    ``num_replicas``-th index from ``rank`` on. The trainer reseeds ``generator`` every
    epoch from the run's seed, so every process cuts the same order."""

    def __init__(
        self,
        dataset_len: int,
        num_replicas: int,
        rank: int,
        generator: torch.Generator,
        inner: Sampler | None = None,
        seed: int = 0,
    ) -> None:
        self._len = int(dataset_len)
        self.inner = inner
        self.generator = generator
        n = len(inner) if inner is not None else self._len  # type: ignore[arg-type]
        # set_epoch is not needed: the generator is reseeded every epoch by the trainer
        super().__init__(range(n), num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)  # type: ignore[arg-type]

    def _order(self) -> list[int]:
        if self.inner is not None:
            return [int(i) for i in self.inner]
        return torch.randperm(self._len, generator=self.generator).tolist()

    def __iter__(self) -> Iterator[int]:
        order = self._order()
        if not order:
            return iter(())
        padding = self.total_size - len(order)
        while padding > 0:  # fewer images than processes repeats the order several times
            order += order[:padding]
            padding = self.total_size - len(order)
        return iter(order[self.rank : self.total_size : self.num_replicas])


class StrideSampler(Sampler[int]):
    """Validation share of process ``rank``: indices ``rank, rank + world, …`` in order,
    with no padding (every image is validated once; shares differ by at most one)."""

    def __init__(self, dataset_len: int, num_replicas: int, rank: int) -> None:
        self.indices = list(range(rank, int(dataset_len), num_replicas))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def interleave(parts: Sequence[Sequence[Any]]) -> list[Any]:
    """Undo :class:`StrideSampler`: part ``r`` holds items ``r, r + n, …`` of a list cut
    among ``n = len(parts)`` processes; returns that list in its original order."""
    out: list[Any] = []
    longest = max((len(p) for p in parts), default=0)
    for i in range(longest):
        for p in parts:
            if i < len(p):
                out.append(p[i])
    return out


# --------------------------------------------------------------------------- the fit


class _StepModule(nn.Module):
    """Makes ``model.training_step`` the ``forward`` DistributedDataParallel hooks into."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: Any, targets: Any) -> Any:
        model: Any = self.model  # a TaskModel
        return model.training_step(images, targets)


class _AgreedToken:
    """The trainer's view of a cancel token in a multi-process fit: cancelled only once
    rank 0's token said so at the last agreement, so every process sees the same answer at
    the same batch. Pausing is not offered across processes."""

    def __init__(self, token: Any) -> None:
        self.local = token
        self.is_cancelled = False
        self.is_paused = False

    def wait_while_paused(self) -> None:
        """Never paused: nothing to wait for."""

    def cancel(self) -> None:
        self.local.cancel()


class DistributedFit:
    """The trainer's multi-process hooks for process ``ctx.rank`` of ``ctx.world_size``.

    ``find_unused_parameters``: DistributedDataParallel checks every step for parameters
    that got no gradient (some detection heads skip parts of the model on some images);
    that costs a traversal of the autograd graph per step."""

    def __init__(self, ctx: DistContext, *, find_unused_parameters: bool = True) -> None:
        self.ctx = ctx
        self.find_unused_parameters = find_unused_parameters
        self._ddp: nn.Module | None = None
        self._ddp_key: tuple[int, ...] | None = None

    @property
    def is_main(self) -> bool:
        return self.ctx.is_main

    # -- set-up
    def agreed_token(self, token: Any) -> _AgreedToken:
        """The token the trainer reads (see :class:`_AgreedToken`)."""
        return token if isinstance(token, _AgreedToken) else _AgreedToken(token)

    def seed(self, seed: int) -> None:
        """Rank-dependent random state for augmentation and dropout (the weights are the
        same everywhere regardless: DistributedDataParallel copies rank 0's at the start)."""
        if self.ctx.rank:
            seed_everything(seed + 1_000_003 * self.ctx.rank)

    def train_sampler(
        self, inner: Sampler | None, dataset_len: int, generator: torch.Generator, seed: int
    ) -> ShardSampler:
        return ShardSampler(
            dataset_len, self.ctx.world_size, self.ctx.rank, generator, inner=inner, seed=seed
        )

    def val_sampler(self, dataset_len: int) -> StrideSampler:
        return StrideSampler(dataset_len, self.ctx.world_size, self.ctx.rank)

    # -- the training step
    def training_step(self, model: nn.Module, images: Any, targets: Any) -> Any:
        """``model.training_step`` through DistributedDataParallel. The wrapper is rebuilt
        when the set of trainable parameters changes (progressive unfreezing), at the same
        epoch in every process."""
        key = tuple(i for i, p in enumerate(model.parameters()) if p.requires_grad)
        if self._ddp is None or key != self._ddp_key:
            from torch.nn.parallel import DistributedDataParallel

            cuda = self.ctx.backend == "nccl"
            self._ddp = DistributedDataParallel(
                _StepModule(model),
                device_ids=[self.ctx.local_rank] if cuda else None,
                find_unused_parameters=self.find_unused_parameters,
            )
            self._ddp_key = key
        return self._ddp(images, targets)

    # -- reductions
    def mean_loss(self, value: float) -> float:
        """The batch loss averaged over the processes (NaN anywhere gives NaN)."""
        return sum_values(self.ctx, [value])[0] / self.ctx.world_size

    def sum_counts(self, loss_sum: float, seen: int) -> tuple[float, int]:
        total, count = sum_values(self.ctx, [loss_sum, float(seen)])
        return total, int(round(count))

    def gather_outputs(
        self, preds: list[dict[str, Any]], targets: list[dict[str, Any]]
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Every process's validation outputs, back in dataset order (see :func:`interleave`)."""
        parts = all_gather_objects(self.ctx, (preds, targets))
        return interleave([p for p, _ in parts]), interleave([t for _, t in parts])

    # -- stopping together
    def agree(self, trainer: Trainer) -> None:
        """Give every process rank 0's ``should_stop``, ``failure`` and cancel flag."""
        token = trainer.token
        local_cancel = bool(getattr(token, "local", token).is_cancelled)
        flags = [
            float(trainer.should_stop),
            float(trainer.failure is not None),
            float(local_cancel) if self.is_main else 0.0,
        ]
        t = torch.tensor(flags, dtype=torch.float64, device=_comm_device(self.ctx))
        dist.broadcast(t, src=0)
        should_stop, has_failure, cancelled = (bool(v) for v in t.cpu().tolist())
        failure = broadcast_object(self.ctx, trainer.failure) if has_failure else None
        trainer.should_stop = should_stop
        trainer.failure = failure
        if isinstance(token, _AgreedToken):
            token.is_cancelled = token.is_cancelled or cancelled


def oom_error(ctx: DistContext, batch_size: int, exc: BaseException) -> DeviceError:
    """Out of memory in a multi-process fit: halving the batch in one process would break
    step with the others, so the run stops and says what to change."""
    return DeviceError(
        f"process {ctx.rank} ran out of {ctx.device} memory at {batch_size} images per "
        f"process ({exc.__class__.__name__}); lower the batch size (--batch) or the input size"
    )


# --------------------------------------------------------------------------- fast path


class _Shard:
    """Items ``indices`` of an unaugmented project dataset (what feature extraction reads)."""

    transform = None

    def __init__(self, dataset: Any, indices: Sequence[int]) -> None:
        self.dataset, self.indices = dataset, list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Any:
        return self.dataset[self.indices[i]]

    def content_key(self, i: int) -> str:
        return self.dataset.content_key(self.indices[i])

    def preprocess_signature(self) -> Any:
        return self.dataset.preprocess_signature()


def extract_features_sharded(
    ctx: DistContext,
    backbone: nn.Module,
    dataset: Any,
    cache: Any,
    weights_id: str | None,
    *,
    device: torch.device,
    progress: Callable[[int, int], None] | None = None,
    token: Any = None,
) -> np.ndarray:
    """Pooled features (N×C float32, dataset order) of ``dataset`` with the extraction cut
    among the processes: rank 0 reads what the cache holds and says which images are
    missing; each process computes every ``world_size``-th of those; rank 0 gathers them,
    stores them in the cache and sends the whole matrix to every process."""
    from tlstudio.ml.features import extract_features

    n = len(dataset)
    use_cache = cache is not None and weights_id is not None
    group = ""
    rows: list[np.ndarray | None] = [None] * n
    if ctx.is_main and use_cache:
        spec = getattr(backbone, "spec", None)
        name = spec.name if spec is not None else type(backbone).__name__
        group = cache.open_group(name, weights_id, dataset.preprocess_signature())
        rows = [cache.get(group, dataset.content_key(i)) for i in range(n)]
    missing = broadcast_object(ctx, [i for i in range(n) if rows[i] is None])
    mine = missing[ctx.rank :: ctx.world_size]
    computed = np.zeros((0, 0), np.float32)
    if mine:
        computed, _ = extract_features(
            backbone, _Shard(dataset, mine), None, None, device=device, token=token
        )
    parts = all_gather_objects(ctx, computed)
    X: np.ndarray | None = None
    if ctx.is_main:
        for i, row in zip(missing, interleave([list(p) for p in parts]), strict=True):
            rows[i] = row
            if use_cache:
                cache.put(group, dataset.content_key(i), row)
        done = [r for r in rows if r is not None]
        if len(done) != n:  # every image was cached or computed by one of the processes
            raise DistributedError(f"features of {n - len(done)} image(s) were not gathered")
        dim = done[0].shape[0] if done else 0
        X = np.stack(done).astype(np.float32) if n else np.zeros((0, dim), np.float32)
        if progress is not None:
            progress(n, n)
    return broadcast_object(ctx, X)


# --------------------------------------------------------------------------- commands


def run_in_job(root: Any, device: str, body: Callable[[Project, DistContext], int]) -> int:
    """For a command started by torchrun: join the group (``device``: the run's choice),
    open the project at ``root`` for this rank (:func:`open_project`), return
    ``body(project, ctx)``, and leave the group. An error is recorded for torchrun's
    summary (:func:`record_failure`) and raised again."""
    ctx = init_from_env(device)
    if ctx is None:
        raise DistributedError("not started by torchrun (RANK, WORLD_SIZE, LOCAL_RANK unset)")
    try:
        project = open_project(root, ctx)
        try:
            return body(project, ctx)
        finally:
            project.close()
    except BaseException as exc:
        record_failure(exc)
        raise
    finally:
        shutdown()
