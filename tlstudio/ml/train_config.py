"""Training settings (:class:`TrainConfig`) and their validation."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from tlstudio.core.errors import TlsError
from tlstudio.ml.setting import setting

OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("cosine", "onecycle", "step", "none")


class TrainConfigError(TlsError, ValueError):
    """A training setting is impossible (the message names the field and the value)."""


@dataclass
class TrainConfig:
    """Training settings. ``lr`` is the head's learning rate (the peak for onecycle)."""

    # Fields with a label get an editor in the Train panel (tlstudio.ml.setting).
    epochs: int = setting(
        10, label="Epochs", range=(1, 10000), help="Passes over the training images."
    )
    batch_size: int = setting(
        16,
        label="Batch size",
        range=(1, 4096),
        help="Images per optimiser step; lower it if memory runs out.",
    )
    lr: float = setting(
        1e-3,
        label="Learning rate",
        range=(1e-7, 10.0),
        log=True,
        help="Learning rate of the head; the peak rate for the one-cycle schedule.",
    )
    optimizer: str = setting(
        "adamw",
        label="Optimiser",
        choices=(("adamw", "AdamW"), ("sgd", "SGD + momentum")),
        help="The optimiser: AdamW adapts per weight; SGD with momentum is the classic choice.",
    )
    momentum: float = 0.9  # SGD only
    weight_decay: float = setting(
        1e-4,
        label="Weight decay",
        range=(0.0, 1.0),
        log=True,
        help="Weight decay (L2 penalty) that keeps weights small to curb overfitting.",
    )
    schedule: str = setting(
        "cosine",
        label="Schedule",
        choices=(
            ("cosine", "cosine"),
            ("onecycle", "one-cycle"),
            ("step", "step"),
            ("none", "constant"),
        ),
        help="How the learning rate changes over training.",
    )  # cosine | onecycle (per step) | step (per epoch) | none
    step_size: int = 10  # epochs between decays of the step schedule
    gamma: float = 0.1  # factor of the step schedule
    freeze: int | str = "all"  # leading backbone stages kept fixed; "all" = feature extraction
    stage_lr_decay: float = setting(
        1.0,
        label="Per-stage LR decay",
        range=(0.05, 1.0),
        step=0.05,
        help="Each stage below the head trains at this factor times the rate of the stage above it (1 = same rate).",
    )
    head_warmup_epochs: int = setting(
        0,
        label="Head warm-up",
        range=(0, 1000),
        suffix=" epochs",
        help="Epochs that train only the head, with the whole backbone frozen, before the freeze depth applies.",
    )
    progressive_every: int = setting(
        0,
        label="Unfreeze every",
        range=(0, 1000),
        suffix=" epochs",
        off="off",
        help="Unfreeze one more stage from the top every this many epochs (off = fixed freeze depth).",
    )
    early_stopping_patience: int | None = setting(
        None,
        label="Early stopping",
        range=(0, 1000),
        suffix=" epochs",
        off="off",
        help="Stop when the validation metric has not improved for this many epochs (off = train all epochs).",
    )
    monitor: str | None = None  # metric for best checkpoint / early stopping
    grad_clip: float | None = None  # max global gradient norm
    seed: int = setting(
        0,
        label="Seed",
        range=(0, 2**31 - 1),
        help="Random seed for splits, initial head weights and augmentation, so runs repeat.",
    )
    device: str = setting(
        "auto",
        label="Device",
        choices=(("auto", "auto"), ("cpu", "CPU"), ("cuda", "CUDA GPU"), ("mps", "Apple GPU")),
        help="Where to train: auto picks a GPU when there is one.",
    )  # auto | cpu | cuda | cuda:N | mps
    amp: bool = True  # CUDA only: bfloat16 autocast, or float16 with a GradScaler
    channels_last: bool = True  # CUDA only
    num_workers: int | None = None  # DataLoader workers; None: the process's thread budget
    # several processes (torchrun): BatchNorm statistics over all processes' images
    # (SyncBatchNorm, GPUs only) or per process; None = on for detect/segment on GPUs
    sync_batchnorm: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of every field."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys are ignored, missing ones get defaults."""
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in d.items() if k in names}
        freeze = values.get("freeze")
        if isinstance(freeze, str) and freeze.strip().isdigit():
            values["freeze"] = int(freeze)
        return cls(**values)

    def validate(self) -> None:
        """Raise :class:`TrainConfigError` naming the first impossible field."""

        def bad(name: str, why: str) -> TrainConfigError:
            return TrainConfigError(f"{name} = {getattr(self, name)!r}: {why}")

        if self.epochs < 1:
            raise bad("epochs", "must be >= 1")
        if self.batch_size < 1:
            raise bad("batch_size", "must be >= 1")
        if not self.lr > 0:
            raise bad("lr", "must be > 0")
        if self.optimizer not in OPTIMIZERS:
            raise bad("optimizer", f"use one of {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise bad("schedule", f"use one of {', '.join(SCHEDULES)}")
        if self.momentum < 0 or self.weight_decay < 0:
            raise bad("momentum" if self.momentum < 0 else "weight_decay", "must be >= 0")
        if self.step_size < 1:
            raise bad("step_size", "must be >= 1")
        if not self.gamma > 0:
            raise bad("gamma", "must be > 0")
        if self.freeze != "all" and (
            isinstance(self.freeze, bool) or not isinstance(self.freeze, int) or self.freeze < 0
        ):
            raise bad("freeze", "must be 'all' or a number of stages >= 0")
        if not self.stage_lr_decay > 0:
            raise bad("stage_lr_decay", "must be > 0")
        if self.head_warmup_epochs < 0 or self.progressive_every < 0:
            name = "head_warmup_epochs" if self.head_warmup_epochs < 0 else "progressive_every"
            raise bad(name, "must be >= 0")
        if self.early_stopping_patience is not None and self.early_stopping_patience < 1:
            raise bad("early_stopping_patience", "must be >= 1 or None")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise bad("grad_clip", "must be > 0 or None")
        if self.num_workers is not None and self.num_workers < 0:
            raise bad("num_workers", "must be >= 0")
