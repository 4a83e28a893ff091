"""Learning-rate finder (Smith 2017; as in fastai): train for a few hundred batches while
the learning rate grows exponentially from ``start_lr`` to ``end_lr``, record the loss
of each batch, and suggest the rate where the smoothed loss falls fastest.

The sweep trains a throw-away copy of the model the run would train (same backbone,
weights, freeze depth, per-stage rate decay, optimiser, batch size and augmentation, on
the train split) and never writes to the project: no run is recorded and no setting
changes. Only the feature cache may gain vectors (on the fast path: a fully frozen
backbone, where batches of cached features are swept in a fraction of a second).

Stopping: an exponential moving average of the batch losses (weight ``beta`` on the
past, bias-corrected) is kept while sweeping; the sweep stops once it exceeds
``diverge`` × its lowest value, or a loss is not finite. Curve: the batch losses
smoothed by a centred moving average (a twentieth of the batches, at least 5) after the
sweep: unlike the running average it does not lag, which over 100 batches would move
the fall of the curve to rates several times too high. Suggestion: the rate at the
steepest descent of that curve against log10(rate), searched between the first tenth of
the sweep and the curve's minimum.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from tlstudio.core.errors import TlsError
from tlstudio.core.project import Project

from . import data as data_mod
from . import freezing
from .backbones import Backbone, get_spec
from .callbacks import CancelToken
from .collate import collate
from .devices import seed_everything, select_device
from .transforms import AugmentConfig


class LrFindError(TlsError):
    """The sweep cannot run (no training images, bad range; the message says why)."""


@dataclass
class LrFindResult:
    """``lrs`` and ``losses`` per batch, ``smoothed`` losses; ``suggested`` rate (None
    when the curve gives none, ``reason`` says why or how it was chosen); ``stopped``:
    "done", "diverged" or "cancelled"; ``feature_cache`` when cached features were swept."""

    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    suggested: float | None
    reason: str
    stopped: str
    feature_cache: bool = False
    images: int = 0
    notes: list[str] = field(default_factory=list)


def centred_average(values: Sequence[float], window: int) -> list[float]:
    """Moving average over ``window`` values centred on each one (fewer at the ends)."""
    v = np.asarray(values, np.float64)
    half = max(0, int(window) // 2)
    csum = np.concatenate([[0.0], np.cumsum(v)])
    out = []
    for i in range(len(v)):
        lo, hi = max(0, i - half), min(len(v), i + half + 1)
        out.append(float((csum[hi] - csum[lo]) / (hi - lo)))
    return out


def suggest(lrs: Sequence[float], smoothed: Sequence[float]) -> tuple[float | None, str]:
    """(rate, why): the steepest fall of ``smoothed`` against log10(``lrs``) between the
    first tenth of the points and the minimum of the curve."""
    n = len(lrs)
    if n < 10:
        return None, f"too few batches ({n}) to read a slope"
    x = np.log10(np.asarray(lrs, np.float64))
    y = np.asarray(smoothed, np.float64)
    lo = max(1, n // 10)
    hi = int(np.argmin(y))
    if hi - lo < 3:
        return None, "the loss was lowest at the start of the sweep: start lower (--start)"
    grad = np.gradient(y[lo : hi + 1], x[lo : hi + 1])
    i = lo + int(np.argmin(grad))
    if grad[i - lo] >= 0:
        return None, "the loss never fell: the model may not learn from these settings"
    return float(lrs[i]), "steepest fall of the smoothed loss"


def lr_find(
    project: Project,
    spec: Any,
    *,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    iterations: int = 100,
    beta: float = 0.98,
    diverge: float = 4.0,
    token: CancelToken | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> LrFindResult:
    """Sweep ``iterations`` batches of ``spec`` (a :class:`~tlstudio.ml.runner.RunSpec`)
    from ``start_lr`` to ``end_lr`` (see the module docstring). ``progress(done, total)``
    counts batches; ``token`` stops the sweep (status "cancelled", what was measured is
    kept)."""
    from .features import FeatureCache, extract_features, weights_id
    from .runner import (
        RunError,
        _CachedHead,
        _FeatureDataset,
        _weights_choice,
        build_model,
        uses_feature_cache,
    )

    if not (0 < start_lr < end_lr):
        raise LrFindError(f"the sweep needs 0 < start ({start_lr:g}) < end ({end_lr:g})")
    if iterations < 10:
        raise LrFindError(f"a sweep needs at least 10 batches, got {iterations}")
    cfg = spec.train
    seed_everything(cfg.seed)
    train_ids, _val = data_mod.train_val_ids(project, seed=cfg.seed)
    if spec.task == "landmarks" and spec.template_id is None:
        spec.template_id = data_mod.choose_template(project, train_ids)
    bspec = get_spec(spec.backbone)
    augment = spec.augment if spec.augment is not None else AugmentConfig.none()
    train_ds, _ = data_mod.make_datasets(
        project, spec.task, spec.resolved_input_size, bspec.mean, bspec.std, augment,
        template_id=spec.template_id, seed=cfg.seed, image_ids=(train_ids, []),
    )  # fmt: skip
    if len(train_ds) == 0:
        raise RunError(f"no training images with {spec.task} labels; label some or assign splits")
    device = select_device(cfg.device)
    model = build_model(project, spec)
    model.to(device)
    fast = uses_feature_cache(spec)
    if fast:
        wid = weights_id(spec.backbone, _weights_choice(spec.weights))
        X, _ = extract_features(
            model.backbone, train_ds, FeatureCache(project.cache_dir), wid,
            device=device, token=token,
        )  # fmt: skip
        fit_model: Any = _CachedHead(model)
        data: Any = _FeatureDataset(X, train_ds)
        groups: list[dict[str, Any]] = [{"params": list(fit_model.parameters()), "factor": 1.0}]
    else:
        fit_model, data = model, train_ds
        backbone = model.backbone
        if isinstance(backbone, Backbone):  # staged: frozen and decayed per stage
            freezing.set_freeze_depth(backbone, cfg.freeze)
            stage_ids = {id(p) for p in backbone.parameters()}
            head = [p for p in model.parameters() if p.requires_grad and id(p) not in stage_ids]
            groups = [{"params": head, "factor": 1.0}] if head else []
            for g in freezing.param_groups(backbone, None, 1.0, cfg.stage_lr_decay):
                groups.append({"params": g["params"], "factor": g["lr"]})
        else:
            params = [p for p in model.parameters() if p.requires_grad]
            groups = [{"params": params, "factor": 1.0}]
    groups = [g for g in groups if g["params"]]
    if not groups:
        raise LrFindError("nothing to train: every parameter of the model is frozen")
    for g in groups:
        g["lr"] = start_lr * g["factor"]
    if cfg.optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(
            groups, lr=start_lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )
    else:
        opt = torch.optim.AdamW(groups, lr=start_lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    loader = torch.utils.data.DataLoader(
        data, batch_size=min(cfg.batch_size, len(data)), shuffle=True, generator=gen,
        collate_fn=collate, drop_last=len(data) > cfg.batch_size,
    )  # fmt: skip
    ratio = end_lr / start_lr
    lrs: list[float] = []
    losses: list[float] = []
    avg, best, stopped = 0.0, math.inf, "done"
    fit_model.train()
    freezing.apply_frozen_bn_eval(fit_model)
    batches: Iterator[Any] = iter(())
    for i in range(iterations):
        if token is not None and token.is_cancelled:
            stopped = "cancelled"
            break
        try:
            images, targets = next(batches)
        except StopIteration:
            batches = iter(loader)
            images, targets = next(batches)
        lr = start_lr * ratio ** (i / (iterations - 1))
        for g in opt.param_groups:
            g["lr"] = lr * g["factor"]
        images = images.to(device)
        targets = [
            {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in t.items()}
            for t in targets
        ]
        opt.zero_grad(set_to_none=True)
        loss = fit_model.training_step(images, targets)["loss"]
        value = float(loss.detach())
        if not math.isfinite(value):
            stopped = "diverged"
            break
        loss.backward()
        opt.step()
        avg = beta * avg + (1 - beta) * value
        running = avg / (1 - beta ** (i + 1))
        lrs.append(lr)
        losses.append(value)
        best = min(best, running)
        if progress is not None:
            progress(i + 1, iterations)
        if i > 5 and running > diverge * best:
            stopped = "diverged"
            break
    smoothed = centred_average(losses, max(5, iterations // 20))
    rate, why = suggest(lrs, smoothed)
    notes = []
    if fast:
        notes.append("swept the head on cached features (the backbone is frozen)")
    return LrFindResult(lrs, losses, smoothed, rate, why, stopped, fast, len(train_ds), notes)
