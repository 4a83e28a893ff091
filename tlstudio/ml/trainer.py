"""The training loop: a plain loop over a :class:`~tlstudio.ml.tasks.base.TaskModel`.

It builds its own DataLoaders, optimizer and learning-rate schedule, applies the freeze
schedule (head warm-up, freeze depth, progressive unfreezing), reports to callbacks
with the events of :mod:`tlstudio.ml.events`, checks a :class:`CancelToken` before every
batch, halves the batch on CUDA out-of-memory and uses AMP and channels_last on CUDA.
Writing ``last.pt``/``best.pt`` checkpoints that resume, early stopping and the stop on a
non-finite loss are default callbacks (:mod:`tlstudio.ml.callbacks`) that run before the
caller's; they end a fit through :attr:`Trainer.should_stop`.

Epochs and steps are 0-based in events and attributes; messages for people count from 1.
The number of torch threads is left alone (the caller applies the process's budget,
:mod:`tlstudio.ml.threads`); DataLoader workers follow ``config.num_workers``, or the budget
when it is None. Re-exported here for
callers: :class:`TrainConfig` (:mod:`tlstudio.ml.train_config`), :func:`select_device`
and :func:`seed_everything` (:mod:`tlstudio.ml.devices`), :func:`load_checkpoint`
(:mod:`tlstudio.ml.checkpoints`).
"""

from __future__ import annotations

import contextlib
import gc
import inspect
import math
import time
import warnings
from collections.abc import Callable, Iterator, Sequence, Sized
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from tlstudio.core.errors import ImageError
from tlstudio.ml import freezing
from tlstudio.ml.callbacks import (
    Callback,
    CancelToken,
    EarlyStopping,
    ModelCheckpoint,
    StopOnNonFiniteLoss,
)
from tlstudio.ml.checkpoints import (
    BEST_CHECKPOINT,
    CHECKPOINT_FORMAT,
    CheckpointError,
    load_checkpoint,
)
from tlstudio.ml.collate import collate
from tlstudio.ml.devices import (
    DeviceError,
    rng_state,
    seed_everything,
    select_device,
    set_rng_state,
)
from tlstudio.ml.events import (
    BatchEnded,
    BatchSizeReduced,
    EpochEnded,
    FitEnded,
    FitStarted,
    TrainingFailed,
)
from tlstudio.ml.tasks.base import TaskModel
from tlstudio.ml.train_config import OPTIMIZERS, SCHEDULES, TrainConfig, TrainConfigError
from tlstudio.runtime.threads import loader_workers

if TYPE_CHECKING:  # pragma: no cover
    from tlstudio.ml.distributed import DistributedFit

__all__ = [
    "OPTIMIZERS",
    "SCHEDULES",
    "CheckpointError",
    "DeviceError",
    "MetricsFn",
    "TrainConfig",
    "TrainConfigError",
    "Trainer",
    "load_checkpoint",
    "seed_everything",
    "select_device",
]

MetricsFn = Callable[[list[dict[str, Any]], list[dict[str, Any]]], dict[str, float]]

_LOWER_IS_BETTER = ("loss", "err", "mse", "mae", "nme", "distance")


# --------------------------------------------------------------------------- helpers


def _move(obj: Any, device: torch.device, non_blocking: bool) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=non_blocking)
    if isinstance(obj, dict):
        return {k: _move(v, device, non_blocking) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_move(v, device, non_blocking) for v in obj]
    return obj


def _to_cpu(obj: Any) -> Any:
    """Detach to the CPU; half-precision floats (from autocast) become float32."""
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu()
        return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


def _is_oom(exc: BaseException, device: torch.device | None) -> bool:
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    return (
        device is not None
        and device.type == "mps"
        and isinstance(exc, RuntimeError)
        and "out of memory" in str(exc).lower()
    )


def _size(data: Dataset[Any]) -> int:
    """Items in ``data``: the trainer takes map-style datasets that have a length."""
    if not isinstance(data, Sized):
        raise TypeError(f"{type(data).__name__} has no len(); the trainer needs a sized dataset")
    return len(data)


def _set_depth(backbone: nn.Module, depth: int) -> None:
    """:func:`freezing.set_freeze_depth` on the model's staged backbone: a Backbone, or a
    look-alike the trainer found by its ``stages`` (it reads ``stages``, ``frozen_depth``
    and ``train`` only)."""
    freezing.set_freeze_depth(backbone, depth)  # type: ignore[arg-type]  # typed Backbone there


class LoopToken(Protocol):
    """What the loop reads of :attr:`Trainer.token`: a :class:`CancelToken`, or in a
    multi-process fit the view all processes agree on."""

    @property
    def is_cancelled(self) -> bool: ...

    @property
    def is_paused(self) -> bool: ...

    def wait_while_paused(self) -> object: ...

    def cancel(self) -> None: ...


def _epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch * 7919 + 1) % 2**63


class _StopFit(Exception):
    """Internal: end the fit cleanly with ``status`` (events were already sent)."""

    def __init__(self, status: str):
        super().__init__(status)
        self.status = status


# --------------------------------------------------------------------------- trainer


class Trainer:
    """Trains ``model`` on ``train_data`` (items ``(image 3×H×W, target dict)``).

    ``metrics_fn(predictions, targets)`` gets every validation image's
    ``model.predict_step`` output and its target (CPU tensors) and returns named metrics.
    ``sampler_factory(train_data, generator)`` (or ``(train_data)``) may return a
    Sampler for the training loader, e.g. class-balanced; it should draw from
    ``generator``, which the trainer reseeds every epoch. ``checkpoint_dir`` (created if
    needed) receives ``last.pt`` every epoch and ``best.pt`` when the monitored metric
    improves; without it nothing is written.

    Default callbacks run before ``callbacks``, in this order: :class:`ModelCheckpoint`
    (with ``checkpoint_dir``), :class:`EarlyStopping` (with
    ``config.early_stopping_patience``) and :class:`StopOnNonFiniteLoss`.

    A callback ends the fit by setting ``should_stop``: after the current epoch (status
    "stopped_early"; a request in the last epoch changes nothing), or, with ``failure``
    set as well, at once (status "failed", after ``on_exception`` with ``failure``);
    the trainer looks after ``on_before_backward``, ``on_batch_end``,
    ``on_validation_end`` and ``on_epoch_end``. Other threads use ``token`` (cancel, pause) instead.

    ``distributed`` (a :class:`~tlstudio.ml.distributed.DistributedFit`) makes this one
    process of a multi-process fit: the sampler shards each epoch, the step goes through
    DistributedDataParallel, losses and validation outputs are reduced over the processes,
    stop decisions are rank 0's, and only rank 0 writes checkpoints.

    During a fit, callbacks may read ``model``, ``config``, ``token``, ``device``,
    ``optimizer``, ``scheduler``, ``epoch``, ``step``, ``global_step``, ``batch_size``,
    ``steps_per_epoch``, ``freeze_depth``, ``monitor``, ``best_value``, ``best_epoch``,
    ``epochs_without_improvement``.
    """

    def __init__(
        self,
        model: TaskModel,
        train_data: Dataset,
        val_data: Dataset | None,
        config: TrainConfig,
        *,
        collate_fn: Callable[[list[Any]], Any] | None = None,
        metrics_fn: MetricsFn | None = None,
        callbacks: Sequence[Callback] = (),
        token: CancelToken | None = None,
        checkpoint_dir: Path | None = None,
        run_id: int | None = None,
        sampler_factory: Callable[..., Any] | None = None,
        distributed: DistributedFit | None = None,
    ) -> None:
        self.model = model
        self.train_data = train_data
        self.val_data = val_data if val_data is not None and _size(val_data) > 0 else None
        self.config = config
        self.collate_fn = collate_fn or collate
        self.metrics_fn = metrics_fn
        self.callbacks = list(callbacks)
        self.token: LoopToken = token if token is not None else CancelToken()
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.run_id = run_id
        self.sampler_factory = sampler_factory
        self.distributed = distributed
        if distributed is not None:
            self.token = distributed.agreed_token(self.token)

        self.device: torch.device | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
        self.scaler: torch.amp.GradScaler | None = None
        self.epoch = 0
        self.step = 0
        self.global_step = 0
        self.batch_size = config.batch_size
        self.steps_per_epoch = 0
        self.freeze_depth: int | None = None
        self.monitor: str | None = None
        self.best_value: float | None = None
        self.best_epoch: int | None = None
        self.epochs_without_improvement = 0
        self.should_stop = False
        self.failure: TrainingFailed | None = None

        self._fit_callbacks: list[Callback] = []
        self._train_loader: DataLoader | None = None
        self._val_loader: DataLoader | None = None
        self._train_gen = torch.Generator()
        self._val_gen = torch.Generator()
        self._amp_dtype: torch.dtype | None = None
        self._channels_last = False
        self._higher_better = False
        self._monitor_explicit = False
        self._epochs_done = 0
        self._ema_step_s: float | None = None
        self._ema_ips: float | None = None
        self._val_s = 0.0

    # ----------------------------------------------------------------- public

    def fit(self, resume_from: Path | None = None) -> FitEnded:
        """Train for ``config.epochs`` epochs (or continue after the epoch saved in
        ``resume_from``, a ``last.pt``/``best.pt``) and return how the fit ended.

        A NaN loss or out-of-memory at batch size 1 ends with status "failed" (after
        ``on_exception``); any other exception is sent to ``on_exception`` as
        ``kind="error"`` (``"bad_image"`` for unreadable images) and re-raised."""
        t0 = time.perf_counter()
        self._fit_callbacks = [*self._default_callbacks(), *self.callbacks]
        try:
            return self._fit(resume_from, t0)
        except Exception as exc:
            kind = "bad_image" if isinstance(exc, ImageError) else "error"
            event = TrainingFailed(kind, str(exc) or type(exc).__name__, self.epoch, self.step)
            for cb in self._fit_callbacks:
                with contextlib.suppress(Exception):  # the original error matters more
                    cb.on_exception(self, event)
            raise

    def checkpoint_state(self, epoch: int, metrics: dict[str, float]) -> dict[str, Any]:
        """Everything a resume needs after ``epoch`` (keys: see :func:`load_checkpoint`);
        ``metrics`` are the epoch's. Tensors are the live ones: save before training on."""
        return {
            "format": CHECKPOINT_FORMAT,
            "epoch": epoch,
            "global_step": self.global_step,
            "batch_size": self.batch_size,
            "model": self.model.state_dict(),
            "optimizer": self._optimizer().state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "best_value": self.best_value,
            "best_epoch": self.best_epoch,
            "monitor": self.monitor,
            "bad_epochs": self.epochs_without_improvement,
            "metrics": dict(metrics),
            "config": self.config.to_dict(),
            "rng": rng_state(),
            "run_id": self.run_id,
            "task": self.model.task,
            "steps_per_epoch": self.steps_per_epoch,
            "world_size": 1 if self.distributed is None else self.distributed.ctx.world_size,
        }

    @property
    def checkpoint_path(self) -> Path | None:
        """``best.pt`` in the checkpoint folder, if that file exists."""
        if self.checkpoint_dir is None:
            return None
        p = self.checkpoint_dir / BEST_CHECKPOINT
        return p if p.exists() else None

    # ----------------------------------------------------------------- setup

    def _default_callbacks(self) -> list[Callback]:
        callbacks: list[Callback] = []
        if self.checkpoint_dir is not None and (
            self.distributed is None or self.distributed.is_main
        ):
            callbacks.append(ModelCheckpoint(self.checkpoint_dir))
        if self.config.early_stopping_patience is not None:
            callbacks.append(EarlyStopping(self.config.early_stopping_patience))
        callbacks.append(StopOnNonFiniteLoss())
        return callbacks

    def _optimizer(self) -> torch.optim.Optimizer:
        """The fit's optimizer (built by :meth:`fit` before the first batch)."""
        if self.optimizer is None:
            raise RuntimeError("the trainer has an optimizer only during a fit")
        return self.optimizer

    def _device(self) -> torch.device:
        """The fit's device (chosen by :meth:`fit` before anything moves)."""
        if self.device is None:
            raise RuntimeError("the trainer has a device only during a fit")
        return self.device

    def _backbone_stages(self) -> tuple[nn.Module, nn.ModuleList] | None:
        """The model's backbone and its stages, if it has a non-empty ``stages`` list."""
        backbone = getattr(self.model, "backbone", None)
        stages = getattr(backbone, "stages", None)
        if backbone is not None and isinstance(stages, nn.ModuleList) and len(stages) > 0:
            return backbone, stages
        return None

    def _depth_for_epoch(self, epoch: int, n_stages: int) -> int:
        cfg = self.config
        base = n_stages if cfg.freeze == "all" else int(cfg.freeze)
        if base > n_stages:
            raise TrainConfigError(
                f"freeze = {cfg.freeze!r}: the backbone has only {n_stages} stages"
            )
        if epoch < cfg.head_warmup_epochs:
            return n_stages
        if cfg.progressive_every > 0:
            return max(0, base - (epoch - cfg.head_warmup_epochs) // cfg.progressive_every)
        return base

    def _apply_freeze(self, epoch: int) -> None:
        found = self._backbone_stages()
        if found is None:
            return
        backbone, stages = found
        depth = self._depth_for_epoch(epoch, len(stages))
        if depth != self.freeze_depth:
            _set_depth(backbone, depth)
            self.freeze_depth = depth

    def _set_train_mode(self) -> None:
        self.model.train()
        freezing.apply_frozen_bn_eval(self.model)

    def _param_groups(self) -> list[dict[str, Any]]:
        """Groups over every parameter that trains at any epoch of this fit.

        Parameters still frozen in a given epoch have no gradient, so the optimizer skips
        them (weight decay included); listing them up front keeps the optimizer, its
        state and the schedule intact when stages unfreeze, and makes resume exact."""
        cfg = self.config
        found = self._backbone_stages()
        if found is None:
            params = [p for p in self.model.parameters() if p.requires_grad]
            groups = [{"name": "all", "params": params, "lr": cfg.lr}] if params else []
        else:
            backbone, stages = found
            fit_depth = self.freeze_depth
            if fit_depth is None:
                raise RuntimeError("the freeze depth is applied before the optimizer is built")
            stage_ids = {id(p) for p in stages.parameters()}
            head = [
                p for p in self.model.parameters() if p.requires_grad and id(p) not in stage_ids
            ]
            groups = [{"name": "head", "params": head, "lr": cfg.lr}] if head else []
            n = len(stages)
            min_depth = min(self._depth_for_epoch(e, n) for e in range(cfg.epochs))
            _set_depth(backbone, min_depth)
            try:
                if getattr(backbone, "spec", None) is not None:
                    # a look-alike with a spec has the stage names param_groups reads
                    groups += freezing.param_groups(
                        backbone,  # type: ignore[arg-type]  # typed Backbone in freezing.py
                        None,
                        cfg.lr,
                        cfg.stage_lr_decay,
                    )
                else:
                    for i in reversed(range(n)):
                        ps = [p for p in stages[i].parameters() if p.requires_grad]
                        if ps:
                            lr = cfg.lr * cfg.stage_lr_decay ** (n - i)
                            groups.append({"name": f"stage{i}", "params": ps, "lr": lr})
            finally:
                _set_depth(backbone, fit_depth)
        if not groups:
            raise TrainConfigError("nothing to train: every parameter of the model is frozen")
        for g in groups:
            g["nominal_lr"] = g["lr"]
        return groups

    def _build_optimizer(self) -> torch.optim.Optimizer:
        cfg = self.config
        groups = self._param_groups()
        if cfg.optimizer == "sgd":
            return torch.optim.SGD(
                groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
            )
        return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)

    def _build_scheduler(self, total_steps: int, position: int) -> Any:
        """A fresh schedule for the optimizer, advanced to ``position`` (steps for the
        per-step schedules, epochs for "step")."""
        cfg = self.config
        opt = self._optimizer()
        for g in opt.param_groups:
            g["lr"] = g["nominal_lr"]
        sched: Any
        if cfg.schedule == "cosine":
            for g in opt.param_groups:
                g["initial_lr"] = g["nominal_lr"]
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(total_steps, 1))
        elif cfg.schedule == "onecycle":
            sched = torch.optim.lr_scheduler.OneCycleLR(
                opt,
                max_lr=[g["nominal_lr"] for g in opt.param_groups],
                total_steps=max(total_steps, 1),
                cycle_momentum=not (cfg.optimizer == "sgd" and cfg.momentum == 0),
            )
        elif cfg.schedule == "step":
            for g in opt.param_groups:
                g["initial_lr"] = g["nominal_lr"]
            sched = torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.step_size, gamma=cfg.gamma)
        else:
            return None
        with warnings.catch_warnings():
            warnings.simplefilter(
                "ignore", UserWarning
            )  # "scheduler.step() before optimizer.step()"
            for _ in range(position):
                sched.step()
        return sched

    def _make_sampler(self) -> Any:
        sampler = None
        if self.sampler_factory is not None:
            try:
                n_args = len(inspect.signature(self.sampler_factory).parameters)
            except (TypeError, ValueError):
                n_args = 2
            if n_args >= 2:
                sampler = self.sampler_factory(self.train_data, self._train_gen)
            else:
                sampler = self.sampler_factory(self.train_data)
        if self.distributed is not None:
            return self.distributed.train_sampler(
                sampler, _size(self.train_data), self._train_gen, self.config.seed
            )
        return sampler

    def _build_loaders(self) -> None:
        cfg = self.config
        bs = self.batch_size
        cuda = self.device is not None and self.device.type == "cuda"
        workers = loader_workers() if cfg.num_workers is None else cfg.num_workers
        common: dict[str, Any] = {
            "num_workers": workers,
            "pin_memory": cuda,
            "collate_fn": self.collate_fn,
            "persistent_workers": workers > 0,
        }
        sampler = self._make_sampler()
        n = len(sampler) if sampler is not None else _size(self.train_data)
        # A trailing batch of one image breaks BatchNorm in train mode; drop only that.
        drop_last = n > bs and n % bs == 1
        self._train_loader = DataLoader(
            self.train_data,
            batch_size=bs,
            shuffle=sampler is None,
            sampler=sampler,
            drop_last=drop_last,
            generator=self._train_gen,
            **common,
        )
        self._val_loader = None
        if self.val_data is not None:
            dist = self.distributed
            self._val_loader = DataLoader(
                self.val_data,
                batch_size=bs,
                shuffle=False,
                sampler=None if dist is None else dist.val_sampler(_size(self.val_data)),
                generator=self._val_gen,
                **common,
            )
        self.steps_per_epoch = len(self._train_loader)
        if self.steps_per_epoch == 0:
            raise TrainConfigError("the training set yields no batches")

    def _resolve_monitor(self) -> None:
        cfg = self.config
        model = self.model
        self._monitor_explicit = cfg.monitor is not None
        monitor = cfg.monitor or model.main_metric or "val_loss"
        if self.val_data is None and monitor != "train_loss":
            if self._monitor_explicit:
                raise TrainConfigError(
                    f"monitor = {monitor!r} needs validation data; use 'train_loss' or add a validation split"
                )
            monitor = "train_loss"
        elif self.metrics_fn is None and monitor not in ("val_loss", "train_loss"):
            if self._monitor_explicit:
                raise TrainConfigError(f"monitor = {monitor!r} needs a metrics_fn that computes it")
            monitor = "val_loss"
        self.monitor = monitor
        if monitor == model.main_metric:
            self._higher_better = bool(model.higher_is_better)
        else:
            low = monitor.lower()
            self._higher_better = not any(k in low for k in _LOWER_IS_BETTER)

    # ----------------------------------------------------------------- loop

    def _emit(self, hook: str, *args: Any) -> None:
        for cb in self._fit_callbacks:
            getattr(cb, hook)(self, *args)

    def _fail(self, event: TrainingFailed) -> NoReturn:
        """End the fit now with status "failed", after ``on_exception(event)``."""
        self.failure, self.should_stop = event, True
        self._emit("on_exception", event)
        raise _StopFit("failed")

    def _stop_if_failed(self) -> None:
        """A callback asked to stop with a failure (``should_stop`` and ``failure``)."""
        if self.should_stop and self.failure is not None:
            self._fail(self.failure)

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self._amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type="cuda", dtype=self._amp_dtype)

    def _to_device(self, images: torch.Tensor, targets: Any) -> tuple[torch.Tensor, Any]:
        device = self._device()
        nb = device.type == "cuda"
        images = images.to(device, non_blocking=nb)
        if self._channels_last and images.dim() == 4:
            images = images.contiguous(memory_format=torch.channels_last)
        return images, _move(targets, device, nb)

    def _lr(self) -> float:
        """The head's current learning rate (the base lr times the schedule's factor)."""
        g = self._optimizer().param_groups[0]
        return float(g["lr"]) * self.config.lr / g["nominal_lr"]

    def _fit(self, resume_from: Path | None, t0: float) -> FitEnded:
        cfg = self.config
        cfg.validate()
        if _size(self.train_data) == 0:
            raise TrainConfigError("no training images")
        seed_everything(cfg.seed)
        if self.distributed is not None:
            self.distributed.seed(cfg.seed)
        self.device = select_device(cfg.device)
        cuda = self.device.type == "cuda"
        self.model.to(self.device)
        self._channels_last = cuda and cfg.channels_last
        if self._channels_last:
            self.model.to(memory_format=torch.channels_last)
        self._amp_dtype = None
        if cuda and cfg.amp:
            # Emulated bfloat16 (pre-Ampere GPUs) is slow: use float16 with a GradScaler there.
            bf16 = torch.cuda.is_bf16_supported(including_emulation=False)
            self._amp_dtype = torch.bfloat16 if bf16 else torch.float16
        self.scaler = (
            torch.amp.GradScaler("cuda", enabled=True) if self._amp_dtype == torch.float16 else None
        )

        ckpt = load_checkpoint(resume_from) if resume_from is not None else None
        start_epoch = int(ckpt["epoch"]) + 1 if ckpt is not None else 0
        self.batch_size = int(ckpt.get("batch_size", cfg.batch_size)) if ckpt else cfg.batch_size
        self.epoch, self.step = start_epoch, 0
        self._build_loaders()
        self.freeze_depth = None
        self._apply_freeze(min(start_epoch, cfg.epochs - 1))
        self.optimizer = self._build_optimizer()
        self.global_step = start_epoch * self.steps_per_epoch
        self.scheduler = self._build_scheduler(cfg.epochs * self.steps_per_epoch, 0)
        self._resolve_monitor()
        self.best_value = self.best_epoch = None
        self.epochs_without_improvement = 0
        self.should_stop, self.failure = False, None
        self._epochs_done = start_epoch
        self._ema_step_s = self._ema_ips = None
        self._val_s = 0.0
        if ckpt is not None and resume_from is not None:
            self._restore(ckpt, Path(resume_from))

        trainable, total = freezing.count_parameters(self.model)
        self._emit(
            "on_fit_start",
            FitStarted(
                run_id=self.run_id,
                epochs=cfg.epochs,
                steps_per_epoch=self.steps_per_epoch,
                train_images=_size(self.train_data),
                val_images=_size(self.val_data) if self.val_data is not None else 0,
                device=str(self.device),
                trainable_params=trainable,
                total_params=total,
            ),
        )
        status = "finished"
        try:
            for epoch in range(start_epoch, cfg.epochs):
                if self.token.is_cancelled:
                    raise _StopFit("cancelled")
                self._run_epoch(epoch)
                if self.should_stop and epoch + 1 < cfg.epochs:
                    status = "stopped_early"
                    break
                if self.token.is_cancelled:
                    raise _StopFit("cancelled")
        except _StopFit as stop:
            status = stop.status
        path = self.checkpoint_path
        end = FitEnded(
            status=status,
            epochs_run=self._epochs_done,
            best_epoch=self.best_epoch,
            best_metric=self.best_value,
            metric_name=self.monitor,
            duration_s=time.perf_counter() - t0,
            checkpoint=str(path) if path is not None and self.best_epoch is not None else None,
        )
        self._emit("on_fit_end", end)
        return end

    def _restore(self, ckpt: dict[str, Any], path: Path) -> None:
        self.model.load_state_dict(ckpt["model"])
        try:
            self._optimizer().load_state_dict(ckpt["optimizer"])
        except ValueError as exc:
            raise CheckpointError(
                f"{path}: the optimizer state does not fit this configuration ({exc}); "
                "resume with the settings the run was started with"
            ) from exc
        same_steps = int(ckpt.get("steps_per_epoch", self.steps_per_epoch)) == self.steps_per_epoch
        if self.scheduler is not None and ckpt.get("scheduler") is not None and same_steps:
            self.scheduler.load_state_dict(ckpt["scheduler"])
        elif self.scheduler is not None:
            # Another process count (or batch) cuts epochs into other steps: the schedule
            # goes on from the same point of the run, counted in this fit's steps.
            start = int(ckpt["epoch"]) + 1
            position = start if self.config.schedule == "step" else start * self.steps_per_epoch
            self.scheduler = self._build_scheduler(
                self.config.epochs * self.steps_per_epoch, position
            )
        if self.scaler is not None and ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        if same_steps:
            self.global_step = int(ckpt.get("global_step", self.global_step))
        if ckpt.get("monitor") == self.monitor:
            self.best_value = ckpt.get("best_value")
            self.best_epoch = ckpt.get("best_epoch")
            self.epochs_without_improvement = int(ckpt.get("bad_epochs", 0))
        if ckpt.get("rng") is not None:
            set_rng_state(ckpt["rng"])

    def _retry_on_oom(
        self, epoch: int, run: Callable[[], Any], reset: Callable[[], None], epochs_left: int
    ) -> Any:
        """Call ``run``; on out-of-memory call ``reset``, halve the batch and call it again.

        ``epochs_left``: training epochs still to run from ``global_step`` on (for the schedule)."""
        while True:
            try:
                return run()
            except Exception as exc:
                if not _is_oom(exc, self.device):
                    raise
                if self.distributed is not None:
                    from tlstudio.ml.distributed import oom_error

                    raise oom_error(self.distributed.ctx, self.batch_size, exc) from exc
            # Outside the except block, so the traceback (and its tensors) is gone.
            reset()
            self._shrink_batch(epoch, epochs_left)

    def _shrink_batch(self, epoch: int, epochs_left: int) -> None:
        self._optimizer().zero_grad(set_to_none=True)
        gc.collect()
        device = self._device()
        if device.type == "cuda":
            torch.cuda.empty_cache()
        if self.scaler is not None:  # forget a half-done unscale_/step of the failed batch
            scaler = torch.amp.GradScaler("cuda", enabled=True)
            scaler.load_state_dict(self.scaler.state_dict())
            self.scaler = scaler
        old = self.batch_size
        if old <= 1:
            self._fail(
                TrainingFailed(
                    "out_of_memory",
                    f"the {device.type.upper()} device ran out of memory at epoch {epoch + 1} "
                    "even with 1 image per batch; use a smaller input size or backbone, "
                    "or train on the CPU",
                    epoch,
                    self.step,
                )
            )
        new = old // 2
        self.batch_size = new
        self._emit("on_batch_size_reduced", BatchSizeReduced(old=old, new=new))
        self._build_loaders()
        if self.config.schedule in ("cosine", "onecycle"):
            # Keep the schedule ending on the last step: the remaining epochs now have
            # more, smaller steps.
            step = self.global_step
            total = step + epochs_left * self.steps_per_epoch
            self.scheduler = self._build_scheduler(total, step)

    def _run_epoch(self, epoch: int) -> None:
        """Train and validate one epoch, then ``on_validation_end`` (checkpoints) and
        ``on_epoch_end`` (early stopping)."""
        cfg = self.config
        self.epoch = epoch
        t_epoch = time.perf_counter()
        self._apply_freeze(epoch)
        self._set_train_mode()
        self._emit("on_epoch_start", epoch)

        step_start = self.global_step

        def reset_train() -> None:
            self.global_step = step_start

        left = cfg.epochs - epoch
        train_loss, lr = self._retry_on_oom(
            epoch, lambda: self._train_batches(epoch), reset_train, left
        )
        if self.scheduler is not None and cfg.schedule == "step":
            self.scheduler.step()

        t_val = time.perf_counter()
        val_loss, val_metrics = self._retry_on_oom(
            epoch, lambda: self._validate(epoch), lambda: None, left - 1
        )
        self._val_s = time.perf_counter() - t_val if self.val_data is not None else 0.0
        self._set_train_mode()

        metrics: dict[str, float] = {"train_loss": train_loss}
        if val_loss is not None:
            metrics["val_loss"] = val_loss
        metrics.update(val_metrics)
        if self.monitor not in metrics:
            raise TrainConfigError(
                f"monitor {self.monitor!r} is not among the epoch's metrics ({', '.join(metrics)})"
            )
        is_best = self._track_best(epoch, metrics[self.monitor])
        self._epochs_done = epoch + 1
        self._emit("on_validation_end", epoch, metrics)
        self._agree_on_stop()
        self._stop_if_failed()
        self._emit(
            "on_epoch_end",
            EpochEnded(
                epoch=epoch,
                epochs=cfg.epochs,
                train_loss=train_loss,
                val_loss=val_loss,
                metrics=metrics,
                lr=lr,
                duration_s=time.perf_counter() - t_epoch,
                is_best=is_best,
            ),
        )
        self._agree_on_stop()
        self._stop_if_failed()

    def _track_best(self, epoch: int, value: float) -> bool:
        """Update the best value of the monitored metric; True if ``value`` is a new best
        (a non-finite value never is)."""
        is_best = math.isfinite(value) and (
            self.best_value is None
            or (value > self.best_value if self._higher_better else value < self.best_value)
        )
        if is_best:
            self.best_value, self.best_epoch = float(value), epoch
            self.epochs_without_improvement = 0
        else:
            self.epochs_without_improvement += 1
        return is_best

    def _batches(self, loader: DataLoader) -> Iterator[tuple[int, Any, float]]:
        """(step, batch, seconds spent loading it), honouring pause and cancel."""
        t_mark = time.perf_counter()
        for step, batch in enumerate(loader):
            load_s = time.perf_counter() - t_mark
            if self.token.is_paused:
                self.token.wait_while_paused()
            if self.token.is_cancelled:
                raise _StopFit("cancelled")
            yield step, batch, load_s
            t_mark = time.perf_counter()

    def _train_batches(self, epoch: int) -> tuple[float, float]:
        """Run the epoch's training batches; (mean train loss per image, last lr)."""
        cfg = self.config
        opt = self._optimizer()
        per_step_schedule = self.scheduler is not None and cfg.schedule in ("cosine", "onecycle")
        self._train_gen.manual_seed(_epoch_seed(cfg.seed, epoch))
        spe = self.steps_per_epoch
        loss_sum, seen, lr = 0.0, 0, self._lr()
        loader = self._train_loader
        if loader is None:
            raise RuntimeError("the training loader is built before the first epoch")
        for step, (images, targets), load_s in self._batches(loader):
            t_start = time.perf_counter()
            self.step = step
            self._emit("on_batch_start", epoch, step)
            n = int(images.shape[0])
            images, targets = self._to_device(images, targets)
            lr = self._lr()
            opt.zero_grad(set_to_none=True)
            with self._autocast():
                out = self._training_step(images, targets)
            loss = out["loss"]
            loss_value = self._mean_over_processes(float(loss.detach()))
            self._emit("on_before_backward", loss_value)
            self._agree_on_stop()
            self._stop_if_failed()
            if self.scaler is not None:
                self.scaler.scale(loss).backward()
            else:
                loss.backward()
            del loss, out
            if cfg.grad_clip is not None:
                if self.scaler is not None:
                    self.scaler.unscale_(opt)
                params = [p for g in opt.param_groups for p in g["params"] if p.grad is not None]
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            if self.scaler is not None:
                self.scaler.step(opt)
                self.scaler.update()
            else:
                opt.step()
            if per_step_schedule and self.scheduler is not None:
                with warnings.catch_warnings():
                    # GradScaler skips optimizer.step() on inf gradients; that is expected.
                    warnings.simplefilter("ignore", UserWarning)
                    self.scheduler.step()
            self.global_step += 1
            loss_sum += loss_value * n
            seen += n

            dt = load_s + (time.perf_counter() - t_start)
            ips = n / dt if dt > 0 else 0.0
            if self._ema_step_s is None or self._ema_ips is None:  # both set together
                self._ema_step_s, self._ema_ips = dt, ips
            else:
                self._ema_step_s = 0.8 * self._ema_step_s + 0.2 * dt
                self._ema_ips = 0.8 * self._ema_ips + 0.2 * ips
            remaining = (spe - step - 1) + (cfg.epochs - epoch - 1) * spe
            eta = remaining * self._ema_step_s + (cfg.epochs - epoch) * self._val_s
            self._emit(
                "on_batch_end",
                BatchEnded(
                    epoch=epoch,
                    step=step,
                    steps_per_epoch=spe,
                    loss=loss_value,
                    lr=lr,
                    images_per_s=self._ema_ips,
                    eta_s=max(0.0, eta),
                ),
            )
            self._agree_on_stop()
            self._stop_if_failed()
            if self.token.is_cancelled:
                raise _StopFit("cancelled")
        loss_sum, seen = self._sum_over_processes(loss_sum, seen)
        return loss_sum / max(seen, 1), lr

    def _validate(self, epoch: int) -> tuple[float | None, dict[str, float]]:
        """Mean validation loss per image and ``metrics_fn``'s metrics (model in eval mode)."""
        if self._val_loader is None:
            return None, {}
        model = self.model
        model.eval()
        self._val_gen.manual_seed(self.config.seed)
        loss_sum, seen = 0.0, 0
        preds: list[dict[str, Any]] = []
        targets_all: list[dict[str, Any]] = []
        with torch.no_grad():
            for _step, (images, targets), _ in self._batches(self._val_loader):
                n = int(images.shape[0])
                x, t = self._to_device(images, targets)
                with self._autocast():
                    losses = model.validation_loss(x, t)
                loss_sum += float(losses["loss"].detach()) * n
                seen += n
                if self.metrics_fn is not None:
                    with self._autocast():
                        out = model.predict_step(x)
                    preds.extend(_to_cpu(out))
                    targets_all.extend(targets)
        loss_sum, seen = self._sum_over_processes(loss_sum, seen)
        metrics: dict[str, float] = {}
        if self.metrics_fn is not None:
            preds, targets_all = self._gather_over_processes(preds, targets_all)
            metrics = {k: float(v) for k, v in self.metrics_fn(preds, targets_all).items()}
        return loss_sum / max(seen, 1), metrics

    # ----------------------------------------------------------------- across processes
    # In a multi-process fit (``distributed``) every process computes the same losses,
    # metrics and best epoch from reduced values, and stops where rank 0 decides.

    def _training_step(self, images: torch.Tensor, targets: Any) -> dict[str, Any]:
        """The model's training step; through DistributedDataParallel in a multi-process fit."""
        if self.distributed is None:
            return self.model.training_step(images, targets)
        return self.distributed.training_step(self.model, images, targets)

    def _mean_over_processes(self, loss: float) -> float:
        """A training batch's loss averaged over the processes: one process, unchanged."""
        return loss if self.distributed is None else self.distributed.mean_loss(loss)

    def _agree_on_stop(self) -> None:
        """Every process takes rank 0's ``should_stop``, ``failure`` and cancel request."""
        if self.distributed is not None:
            self.distributed.agree(self)

    def _sum_over_processes(self, loss_sum: float, seen: int) -> tuple[float, int]:
        """(loss sum, images) summed over the training processes."""
        if self.distributed is None:
            return loss_sum, seen
        return self.distributed.sum_counts(loss_sum, seen)

    def _gather_over_processes(
        self, preds: list[dict[str, Any]], targets: list[dict[str, Any]]
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Every process's validation predictions and targets, in dataset order."""
        if self.distributed is None:
            return preds, targets
        return self.distributed.gather_outputs(preds, targets)
