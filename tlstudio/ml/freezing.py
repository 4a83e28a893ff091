"""Freeze depth, parameter counts, per-stage learning rates and progressive unfreezing.

Freeze depth = the number of leading stages (counted from the input) whose weights stay
fixed: ``len(backbone.stages)`` or ``"all"`` is feature extraction, 0 is full
fine-tuning. Frozen stages also stay in eval mode (BatchNorm statistics fixed, no
dropout/stochastic depth) even when the model is put in train mode.
"""

from __future__ import annotations

from typing import Any, Literal

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from tlstudio.ml.backbones import Backbone

FreezeDepth = int | Literal["all"]


def _resolve_depth(backbone: Backbone, depth: FreezeDepth) -> int:
    n = len(backbone.stages)
    if depth == "all":
        return n
    if isinstance(depth, bool) or not isinstance(depth, int) or not 0 <= depth <= n:
        raise ValueError(f"freeze depth must be 0..{n} or 'all', got {depth!r}")
    return depth


def set_freeze_depth(backbone: Backbone, depth: FreezeDepth) -> None:
    """Freeze the first ``depth`` stages and unfreeze the rest (absolute, not incremental).

    Also re-applies the current train/eval mode so newly frozen stages switch to eval
    and newly unfrozen ones follow the backbone's mode.
    """
    d = _resolve_depth(backbone, depth)
    for i, stage in enumerate(backbone.stages):
        stage.requires_grad_(i >= d)
    backbone.frozen_depth = d
    backbone.train(backbone.training)


def freeze_depth(backbone: Backbone) -> int:
    """The backbone's current freeze depth (number of frozen leading stages)."""
    return backbone.frozen_depth


def apply_frozen_bn_eval(module: nn.Module) -> None:
    """Put every BatchNorm layer whose parameters are all frozen into eval mode.

    For models not built from a :class:`Backbone` (which does this itself); call after
    ``module.train()``. BatchNorm without affine parameters is left alone.
    """
    for m in module.modules():
        if isinstance(m, _BatchNorm):
            params = list(m.parameters(recurse=False))
            if params and not any(p.requires_grad for p in params):
                m.eval()


def count_parameters(module: nn.Module) -> tuple[int, int]:
    """(trainable, total) number of parameter elements; shared parameters count once."""
    trainable = total = 0
    for p in module.parameters():
        total += p.numel()
        if p.requires_grad:
            trainable += p.numel()
    return trainable, total


def param_groups(
    backbone: Backbone,
    head: nn.Module | None,
    base_lr: float,
    stage_decay: float = 1.0,
) -> list[dict[str, Any]]:
    """Optimizer parameter groups with discriminative learning rates.

    The head gets ``base_lr``, the last stage ``base_lr * stage_decay``, the one before
    ``base_lr * stage_decay**2`` and so on. Frozen parameters and empty groups are left
    out. Each group has ``"name"`` (``"head"`` or the stage name), ``"params"`` and ``"lr"``.
    Rebuild the optimizer's groups after changing the freeze depth.
    """
    if base_lr <= 0 or stage_decay <= 0:
        raise ValueError(f"base_lr and stage_decay must be > 0, got {base_lr}, {stage_decay}")
    groups: list[dict[str, Any]] = []
    if head is not None:
        params = [p for p in head.parameters() if p.requires_grad]
        if params:
            groups.append({"name": "head", "params": params, "lr": base_lr})
    n = len(backbone.stages)
    for i in reversed(range(n)):
        params = [p for p in backbone.stages[i].parameters() if p.requires_grad]
        if params:
            lr = base_lr * stage_decay ** (n - i)
            groups.append({"name": backbone.spec.stages[i].name, "params": params, "lr": lr})
    return groups


class ProgressiveUnfreezer:
    """Unfreezes one more stage (the topmost frozen one) every ``every_n_epochs`` epochs.

    Starts at ``start_depth`` (applied on construction) and stops at ``min_depth``.
    Epochs are counted from 0. After a change the optimizer must be given the newly
    trainable parameters (e.g. rebuilt from :func:`param_groups`).
    """

    def __init__(
        self,
        backbone: Backbone,
        start_depth: FreezeDepth,
        every_n_epochs: int,
        min_depth: int = 0,
    ) -> None:
        if every_n_epochs < 1:
            raise ValueError(f"every_n_epochs must be >= 1, got {every_n_epochs}")
        self.backbone = backbone
        self.start_depth = _resolve_depth(backbone, start_depth)
        self.min_depth = _resolve_depth(backbone, min_depth)
        if self.min_depth > self.start_depth:
            raise ValueError(f"min_depth {min_depth} is above start_depth {start_depth}")
        self.every_n_epochs = every_n_epochs
        set_freeze_depth(backbone, self.start_depth)

    def depth_at(self, epoch: int) -> int:
        """Freeze depth the schedule prescribes for ``epoch`` (0-based)."""
        steps = max(epoch, 0) // self.every_n_epochs
        return max(self.min_depth, self.start_depth - steps)

    def on_epoch_start(self, epoch: int) -> bool:
        """Apply the depth for ``epoch``; True if the freeze depth changed."""
        target = self.depth_at(epoch)
        if target == self.backbone.frozen_depth:
            return False
        set_freeze_depth(self.backbone, target)
        return True
