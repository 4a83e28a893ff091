"""Trainer checkpoint files: their names, format number, atomic writing and safe reading.

What a checkpoint holds is decided by :meth:`tlstudio.ml.trainer.Trainer.checkpoint_state`;
when it is written by :class:`tlstudio.ml.callbacks.ModelCheckpoint`.

torch is imported by the functions, not the module: the window imports the callbacks (and
so this module) at start-up, long before it trains anything.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tlstudio.core.atomic import replacing
from tlstudio.core.errors import FORMAT, TlsError

CHECKPOINT_FORMAT = 1
LAST_CHECKPOINT = "last.pt"
BEST_CHECKPOINT = "best.pt"


class CheckpointError(TlsError):
    """A checkpoint cannot be read or does not fit the model/configuration."""

    kind = FORMAT


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a trainer checkpoint onto the CPU with ``weights_only=True``.

    Keys: format, epoch, global_step, batch_size, model, optimizer, scheduler, scaler,
    best_value, best_epoch, monitor, bad_epochs, metrics, config, rng, run_id, task."""
    import torch

    path = Path(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:
        from .pickle_scan import load_failure

        raise CheckpointError(
            f"{path}: not a readable checkpoint: {load_failure(path, exc)}"
        ) from exc
    if not isinstance(ckpt, dict) or "model" not in ckpt or "epoch" not in ckpt:
        raise CheckpointError(f"{path}: not a tlstudio trainer checkpoint")
    return ckpt


def save_atomic(obj: Any, path: Path) -> None:
    """torch.save, atomically (never a half-written checkpoint or model)."""
    import torch

    with replacing(path) as tmp, open(tmp, "wb") as f:
        torch.save(obj, f)
