"""Trainer callbacks (no-op hooks, Lightning style), the cancel/pause token, the
trainer's default callbacks (:class:`ModelCheckpoint`, :class:`EarlyStopping`,
:class:`StopOnNonFiniteLoss`) and two for callers: :class:`EventRecorder` and
:class:`ConsoleProgress`.

Hooks run on the training thread, between batches; keep them short. Events are the
frozen dataclasses of :mod:`tlstudio.ml.events`. Epochs and steps are 0-based. A
callback ends a fit through ``trainer.should_stop`` (see :class:`~tlstudio.ml.trainer.Trainer`);
other threads use a :class:`CancelToken`.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar

from tlstudio.core.cancel import CancelToken as CancelToken  # re-exported: the trainer's flag
from tlstudio.ml.checkpoints import BEST_CHECKPOINT, LAST_CHECKPOINT, save_atomic
from tlstudio.ml.events import (
    BatchEnded,
    BatchSizeReduced,
    EpochEnded,
    FitEnded,
    FitStarted,
    TrainingFailed,
)

if TYPE_CHECKING:  # pragma: no cover
    from tlstudio.ml.trainer import Trainer

E = TypeVar("E")


class Callback:
    """Base class: every hook does nothing. Override the ones you need."""

    def on_fit_start(self, trainer: Trainer, event: FitStarted) -> None:
        """After the model, data and optimizer are ready, before the first epoch."""

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        """Before the epoch's first batch (after the freeze depth for the epoch is applied)."""

    def on_batch_start(self, trainer: Trainer, epoch: int, step: int) -> None:
        """Before the forward pass of a training batch."""

    def on_before_backward(self, trainer: Trainer, loss: float) -> None:
        """After the forward pass of training batch ``trainer.step``, with its loss (the
        batch mean), before the backward pass and the optimizer step."""

    def on_batch_end(self, trainer: Trainer, event: BatchEnded) -> None:
        """After the optimizer (and per-step scheduler) step of a training batch."""

    def on_batch_size_reduced(self, trainer: Trainer, event: BatchSizeReduced) -> None:
        """Out of memory: the epoch restarts with ``event.new`` images per batch."""

    def on_validation_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        """After the epoch's validation (also when there is no validation data), before
        ``on_epoch_end``: ``metrics`` are the epoch's (train_loss, val_loss and the
        ``metrics_fn`` values); ``trainer.best_epoch == epoch`` when the monitored metric
        improved. The epoch's checkpoints are written here."""

    def on_epoch_end(self, trainer: Trainer, event: EpochEnded) -> None:
        """After validation and after the epoch's checkpoints were written."""

    def on_fit_end(self, trainer: Trainer, event: FitEnded) -> None:
        """Once, when fit returns (finished, cancelled, stopped early or failed cleanly)."""

    def on_exception(self, trainer: Trainer, event: TrainingFailed) -> None:
        """Training failed: NaN loss or out of memory (then ``on_fit_end`` follows with
        status "failed"), or any other error (``kind="error"``; the exception is re-raised
        after this hook and ``on_fit_end`` is not called)."""


# --------------------------------------------------------------------------- defaults


class ModelCheckpoint(Callback):
    """Writes :meth:`~tlstudio.ml.trainer.Trainer.checkpoint_state` to ``folder`` (created
    if needed) after every epoch as ``last.pt``, and as ``best.pt`` when the monitored
    metric improved; both atomically. A multi-process fit would let rank 0 alone write."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def on_validation_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        state = trainer.checkpoint_state(epoch, metrics)
        save_atomic(state, self.folder / LAST_CHECKPOINT)
        if trainer.best_epoch == epoch:
            save_atomic(state, self.folder / BEST_CHECKPOINT)


class EarlyStopping(Callback):
    """Stops the fit once the monitored metric has not improved for ``patience`` epochs
    in a row (``trainer.epochs_without_improvement``; a non-finite value never improves)."""

    def __init__(self, patience: int) -> None:
        self.patience = int(patience)

    def on_epoch_end(self, trainer: Trainer, event: EpochEnded) -> None:
        if trainer.epochs_without_improvement >= self.patience:
            trainer.should_stop = True


class StopOnNonFiniteLoss(Callback):
    """Fails the fit (``kind="nan_loss"``) at the first training batch whose loss is NaN or
    infinite, before its backward pass, so the weights and checkpoints stay finite."""

    def on_before_backward(self, trainer: Trainer, loss: float) -> None:
        if math.isfinite(loss):
            return
        epoch, step = trainer.epoch, trainer.step
        trainer.failure = TrainingFailed(
            "nan_loss",
            f"the loss became {loss} at epoch {epoch + 1}, batch {step + 1}; "
            f"training stopped. Lower the learning rate (now {trainer.config.lr:g}) "
            "or set gradient clipping.",
            epoch,
            step,
        )
        trainer.should_stop = True


# --------------------------------------------------------------------------- for callers


class EventRecorder(Callback):
    """Keeps every event in ``events`` (in order) and the epochs started in ``epochs_started``."""

    def __init__(self) -> None:
        self.events: list[Any] = []
        self.epochs_started: list[int] = []

    def of_type(self, cls: type[E]) -> list[E]:
        """The recorded events of one class, in order."""
        return [e for e in self.events if isinstance(e, cls)]

    def on_fit_start(self, trainer: Trainer, event: FitStarted) -> None:
        self.events.append(event)

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        self.epochs_started.append(epoch)

    def on_batch_end(self, trainer: Trainer, event: BatchEnded) -> None:
        self.events.append(event)

    def on_batch_size_reduced(self, trainer: Trainer, event: BatchSizeReduced) -> None:
        self.events.append(event)

    def on_epoch_end(self, trainer: Trainer, event: EpochEnded) -> None:
        self.events.append(event)

    def on_fit_end(self, trainer: Trainer, event: FitEnded) -> None:
        self.events.append(event)

    def on_exception(self, trainer: Trainer, event: TrainingFailed) -> None:
        self.events.append(event)


def format_duration(seconds: float) -> str:
    """Seconds as ``M:SS`` or ``H:MM:SS``."""
    s = max(0, int(round(seconds)))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _fmt(value: float) -> str:
    return f"{value:.4g}"


class ConsoleProgress(Callback):
    """Prints progress to ``stream`` (default stderr).

    On a TTY one line is redrawn with carriage returns (epoch, bar, step, loss, lr,
    images/s, ETA); otherwise nothing is printed per batch. Each epoch ends with one
    line holding the train loss and the validation metrics. Redraws are limited to
    ``min_interval_s``."""

    def __init__(self, stream: IO[str] | None = None, width: int = 24, min_interval_s: float = 0.1):
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.min_interval_s = min_interval_s
        isatty = getattr(self.stream, "isatty", None)
        try:
            self.tty = bool(isatty()) if callable(isatty) else False
        except (ValueError, OSError):
            self.tty = False
        self._last_draw = 0.0
        self._line_len = 0

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()

    def _clear(self) -> None:
        if self.tty and self._line_len:
            self._write("\r" + " " * self._line_len + "\r")
            self._line_len = 0

    def on_fit_start(self, trainer: Trainer, event: FitStarted) -> None:
        val = f" / {event.val_images} val" if event.val_images else ""
        self._write(
            f"training on {event.device}: {event.train_images} train{val} images, "
            f"{event.epochs} epochs × {event.steps_per_epoch} steps, "
            f"{event.trainable_params:,} of {event.total_params:,} parameters trainable\n"
        )

    def on_batch_end(self, trainer: Trainer, event: BatchEnded) -> None:
        if not self.tty:
            return
        now = time.monotonic()
        last = event.step + 1 == event.steps_per_epoch
        if not last and now - self._last_draw < self.min_interval_s:
            return
        self._last_draw = now
        done = (event.step + 1) / max(event.steps_per_epoch, 1)
        filled = int(round(done * self.width))
        bar = "#" * filled + "." * (self.width - filled)
        epochs = getattr(getattr(trainer, "config", None), "epochs", None)
        of = f"/{epochs}" if epochs else ""
        line = (
            f"epoch {event.epoch + 1}{of} [{bar}] {event.step + 1}/{event.steps_per_epoch} "
            f"loss {_fmt(event.loss)} lr {event.lr:.2e} {event.images_per_s:.1f} img/s "
            f"ETA {format_duration(event.eta_s)}"
        )
        pad = max(0, self._line_len - len(line))
        self._write("\r" + line + " " * pad)
        self._line_len = len(line)

    def on_batch_size_reduced(self, trainer: Trainer, event: BatchSizeReduced) -> None:
        self._clear()
        self._write(f"out of memory: batch size {event.old} -> {event.new}, restarting the epoch\n")

    def on_epoch_end(self, trainer: Trainer, event: EpochEnded) -> None:
        self._clear()
        parts = [f"epoch {event.epoch + 1}/{event.epochs}", f"train_loss {_fmt(event.train_loss)}"]
        for name, value in event.metrics.items():
            if name != "train_loss":
                parts.append(f"{name} {_fmt(value)}")
        parts.append(f"lr {event.lr:.2e}")
        parts.append(f"({event.duration_s:.1f} s)")
        if event.is_best:
            parts.append("*best")
        self._write("  ".join(parts) + "\n")

    def on_fit_end(self, trainer: Trainer, event: FitEnded) -> None:
        self._clear()
        text = (
            f"{event.status} after {event.epochs_run} epochs in {format_duration(event.duration_s)}"
        )
        if event.best_epoch is not None and event.best_metric is not None:
            text += f"; best {event.metric_name} {_fmt(event.best_metric)} at epoch {event.best_epoch + 1}"
        if event.checkpoint:
            text += f"; checkpoint {event.checkpoint}"
        self._write(text + "\n")

    def on_exception(self, trainer: Trainer, event: TrainingFailed) -> None:
        self._clear()
        self._write(f"training failed ({event.kind}): {event.message}\n")
