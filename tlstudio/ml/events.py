"""Trainer events: frozen dataclasses of plain numbers and strings, safe to send
across threads (the GUI turns them into Qt signals). Times are seconds."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class FitStarted:
    run_id: int | None
    epochs: int
    steps_per_epoch: int
    train_images: int
    val_images: int
    device: str
    trainable_params: int
    total_params: int
    feature_cache: bool = False  # True when only the head trains on cached features


@dataclass(frozen=True)
class BatchEnded:
    epoch: int  # 0-based
    step: int  # 0-based within the epoch
    steps_per_epoch: int
    loss: float
    lr: float
    images_per_s: float
    eta_s: float  # estimated seconds until the fit ends


@dataclass(frozen=True)
class EpochEnded:
    epoch: int
    epochs: int
    train_loss: float
    val_loss: float | None
    metrics: dict[str, float] = field(default_factory=dict)  # validation metrics
    lr: float = 0.0
    duration_s: float = 0.0
    is_best: bool = False


@dataclass(frozen=True)
class FitEnded:
    status: str  # finished | cancelled | failed | stopped_early
    epochs_run: int
    best_epoch: int | None
    best_metric: float | None
    metric_name: str | None
    duration_s: float
    checkpoint: str | None  # path of the best checkpoint, if one was written


@dataclass(frozen=True)
class TrainingFailed:
    kind: str  # nan_loss | out_of_memory | missing_weights | bad_image | error
    message: str
    epoch: int | None = None
    step: int | None = None


@dataclass(frozen=True)
class BatchSizeReduced:
    """CUDA ran out of memory; the trainer retries with a smaller batch."""

    old: int
    new: int
