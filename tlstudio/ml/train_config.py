"""Training settings (:class:`TrainConfig`) and their validation."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from tlstudio.core.errors import TlsError

OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("cosine", "onecycle", "step", "none")


class TrainConfigError(TlsError, ValueError):
    """A training setting is impossible (the message names the field and the value)."""


@dataclass
class TrainConfig:
    """Training settings. ``lr`` is the head's learning rate (the peak for onecycle)."""

    epochs: int = 10
    batch_size: int = 16
    lr: float = 1e-3
    optimizer: str = "adamw"  # adamw | sgd
    momentum: float = 0.9  # SGD only
    weight_decay: float = 1e-4
    schedule: str = "cosine"  # cosine | onecycle (per step) | step (per epoch) | none
    step_size: int = 10  # epochs between decays of the step schedule
    gamma: float = 0.1  # factor of the step schedule
    freeze: int | str = "all"  # leading backbone stages kept fixed; "all" = feature extraction
    stage_lr_decay: float = 1.0  # stage k below the head trains at lr * decay**k
    head_warmup_epochs: int = 0  # epochs with the whole backbone frozen before `freeze` applies
    progressive_every: int = 0  # >0: unfreeze one more stage every N epochs, down to 0
    early_stopping_patience: int | None = None  # epochs without improvement before stopping
    monitor: str | None = None  # metric for best checkpoint / early stopping
    grad_clip: float | None = None  # max global gradient norm
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    amp: bool = True  # CUDA only: bfloat16 autocast, or float16 with a GradScaler
    channels_last: bool = True  # CUDA only
    num_workers: int = 0

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
        if self.num_workers < 0:
            raise bad("num_workers", "must be >= 0")
