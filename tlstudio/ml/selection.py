"""Honest model selection: what a run's figures mean, and a score that was not used to
pick it.

The trainer keeps the epoch whose validation metric was best, so the validation figure
of that epoch was chosen on those very images and leans optimistic. After a run,
:func:`after_training` records in the run's config:

- ``"selection"``: the epoch kept (0-based), the metric it was picked by and its value,
  and on what ("val", or "train_loss" without validation images);
- ``"calibration"`` (classification): the temperature fitted on the validation split
  (:mod:`tlstudio.ml.calibration`);
- ``"test"``: the kept model's metrics on the test split (with the temperature
  applied), when the project has labelled test images the run never trained or
  selected on — reported as "test, never used for selection".

:func:`outputs_on` and :func:`score_ids` run a model over any image ids (cached
features when the backbone is frozen); k-fold cross-validation scores each fold's model
on its held-out fold with them (:func:`tlstudio.ml.experiments.cross_validate`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from tlstudio.core.errors import Cancelled
from tlstudio.core.project import Project
from tlstudio.core.runs import RunStore

from . import calibration
from . import data as data_mod
from .backbones import get_spec
from .callbacks import CancelToken
from .collate import collate
from .ensemble import probabilistic
from .metrics import metrics_fn_for
from .tasks.base import TaskModel

#: the words shown next to every test figure
TEST_LABEL = "test, never used for selection"


@dataclass
class Outputs:
    """A model's outputs over images: ``preds`` (``predict_step`` dicts, network-input
    pixels, CPU), ``targets`` (the dataset's, CPU), ``logits`` N×C (classification, before
    any temperature; else None) and ``image_ids`` (those with labels for the task)."""

    preds: list[dict[str, Any]]
    targets: list[dict[str, Any]]
    logits: np.ndarray | None
    image_ids: list[int]


def _cpu(v: Any) -> Any:
    return v.detach().cpu() if isinstance(v, torch.Tensor) else v


def _dataset(project: Project, spec: Any, ids: Sequence[int]) -> data_mod.ProjectDataset:
    bspec = get_spec(spec.backbone)
    return data_mod.project_dataset(
        project, spec.task, list(ids), spec.resolved_input_size, bspec.mean, bspec.std,
        template_id=spec.template_id,
        multi_label="classify" in spec.task.split(",") and project.multi_label,
    )  # fmt: skip


def outputs_on(
    project: Project,
    model: TaskModel,
    spec: Any,
    ids: Sequence[int],
    *,
    device: str | torch.device = "cpu",
    token: CancelToken | None = None,
    batch_size: int = 32,
) -> Outputs:
    """Run ``model`` (eval mode, already on ``device``) over the images of ``ids`` that
    carry labels for the spec's task. A classifier on a fully frozen backbone reads its
    features from the project's feature cache, as training did."""
    from .features import FeatureCache, extract_features, weights_id
    from .runner import _NoBackbone, _weights_choice, uses_feature_cache
    from .tasks.classify import ClassifierModel

    ds = _dataset(project, spec, ids)
    model.eval()
    if len(ds) == 0:
        return Outputs([], [], None, [])
    key = "labels" if ds.multi_label else "label"
    # the one model with a head over pooled features (an ensemble has none)
    if spec.task == "classify" and uses_feature_cache(spec) and isinstance(model, ClassifierModel):
        wid = weights_id(spec.backbone, _weights_choice(spec.weights))
        backbone: Any = model.backbone
        if isinstance(backbone, _NoBackbone):  # a head alone: built only for uncached images

            def backbone() -> torch.nn.Module:
                from .backbones import build_backbone

                return build_backbone(spec.backbone, _weights_choice(spec.weights))

        X, _ = extract_features(
            backbone, ds, FeatureCache(project.cache_dir), wid, device=device, token=token,
            name=spec.backbone,
        )  # fmt: skip
        with torch.no_grad():
            logits = model.head(torch.from_numpy(X).to(device)).float().cpu()
        probs = model.probabilities(logits)
        labels = ds.class_labels()
        targets: list[dict[str, Any]] = [{key: torch.as_tensor(y)} for y in labels]
        return Outputs([{"probs": p} for p in probs], targets, logits.numpy(), ds.image_ids)
    preds: list[dict[str, Any]] = []
    targets = []
    logit_rows: list[torch.Tensor] = []
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, collate_fn=collate)
    with torch.no_grad():
        for images, tg in loader:
            if token is not None and token.is_cancelled:
                raise Cancelled("scoring cancelled")
            images = images.to(device)
            if spec.task == "classify":
                logits = model(images).float().cpu()
                logit_rows.append(logits)
                preds += [{"probs": p} for p in probabilistic(model).probabilities(logits)]
            else:
                preds += [{k: _cpu(v) for k, v in p.items()} for p in model.predict_step(images)]
            targets += [{k: _cpu(v) for k, v in t.items()} for t in tg]
    logits_np = torch.cat(logit_rows).numpy() if logit_rows else None
    return Outputs(preds, targets, logits_np, ds.image_ids)


def metrics_of(project: Project, spec: Any, out: Outputs) -> dict[str, float]:
    """The task's metrics (:func:`~tlstudio.ml.metrics.metrics_fn_for`, as training's
    validation computes them) of ``out``."""
    multi = "classify" in spec.task.split(",") and project.multi_label
    fn = metrics_fn_for(spec.task, len(project.classes()), multi_label=multi)
    return {k: float(v) for k, v in fn(out.preds, out.targets).items()}


def score_ids(
    project: Project,
    run_id: int,
    ids: Sequence[int],
    *,
    device: str = "auto",
    token: CancelToken | None = None,
) -> tuple[dict[str, float], int]:
    """(metrics, images scored) of run ``run_id``'s saved model (with its temperature)
    on the images ``ids``."""
    from .devices import select_device
    from .runner import load_run_model

    model, spec = load_run_model(project, run_id)
    dev = select_device(device)
    model.to(dev)
    out = outputs_on(project, model, spec, ids, device=dev, token=token)
    return (metrics_of(project, spec, out) if out.preds else {}), len(out.preds)


def test_ids(project: Project, used: Sequence[int]) -> list[int]:
    """The test split's images, unless any of them was used for training or selection
    (``used``: the run's train and val ids); then none: a score on them would not be a
    test score."""
    ids = [r.id for r in project.images_in_split("test")]
    return [] if set(ids) & set(used) else ids


@dataclass
class AfterTraining:
    """What :func:`after_training` measured (also stored in the run's config)."""

    selection: dict[str, Any]
    calibration: dict[str, Any] | None
    test: dict[str, Any] | None


# torch's CPU random state is left as it was (data loaders draw from it), so what a later
# run in the same process draws does not depend on this scoring
@torch.random.fork_rng(devices=[])
def after_training(
    project: Project,
    run_id: int,
    model: TaskModel,
    spec: Any,
    image_ids: tuple[Sequence[int], Sequence[int]],
    *,
    best_epoch: int | None,
    metric_name: str | None,
    best_metric: float | None,
    keep: str = "best",
    device: str | torch.device = "cpu",
    token: CancelToken | None = None,
) -> AfterTraining:
    """Record how run ``run_id``'s kept ``model`` was selected, fit its temperature on the
    val images (classification) and score it on the test split (see the module
    docstring). ``image_ids`` = (train ids, val ids) of the run; ``keep`` "best" (the
    best validation epoch) or "last" (the last epoch, selected on nothing). torch's CPU
    random state is the same afterwards."""
    train_ids, val_ids = list(image_ids[0]), list(image_ids[1])
    picked_on = "nothing (the last epoch)" if keep == "last" else "val" if val_ids else "train_loss"
    selection = {
        "epoch": best_epoch, "metric": metric_name, "value": best_metric,
        "picked_on": picked_on, "keep": keep,
    }  # fmt: skip
    model.to(device)
    model.eval()
    cal = None
    if spec.task == "classify" and val_ids:
        out = outputs_on(project, model, spec, val_ids, device=device, token=token)
        if out.logits is not None and len(out.logits):
            multi = bool(project.multi_label)
            labels = np.stack([t["labels" if multi else "label"].numpy() for t in out.targets])
            cal = calibration.calibration_record(out.logits, labels, multi_label=multi)
            model.temperature = float(cal["temperature"])  # type: ignore[assignment]
    test = None
    ids = test_ids(project, [*train_ids, *val_ids])
    if ids:
        out = outputs_on(project, model, spec, ids, device=device, token=token)
        if out.preds:
            test = {"metrics": metrics_of(project, spec, out), "images": len(out.preds),
                    "label": TEST_LABEL}  # fmt: skip
    RunStore(project).update_config(run_id, selection=selection, calibration=cal, test=test)
    return AfterTraining(selection, cal, test)


def describe(
    val: dict[str, float], result: AfterTraining | None, *, epochs_run: int | None = None
) -> list[str]:
    """Lines for the end of a run: the selected epoch's validation figures (labelled as
    picked on those images) and the test figures (labelled as never used for selection)."""
    shown = {k: v for k, v in val.items() if k not in ("train_loss", "lr", "duration_s")}
    lines = []
    sel = result.selection if result is not None else {}
    epoch = sel.get("epoch")
    how = ""
    if epoch is not None:
        of = f" of {epochs_run}" if epochs_run else ""
        if sel.get("picked_on") == "val":
            how = f" (epoch {epoch + 1}{of}, picked on these validation images: leans optimistic)"
        else:
            how = f" (epoch {epoch + 1}{of}, picked on {sel.get('picked_on')})"
    for name, value in shown.items():
        line = f"val {name.removeprefix('val_').replace('_', ' ')} {value:.3f}"
        lines.append(line + how if name == sel.get("metric") else line)
    if how and lines and not any(how in line for line in lines):
        lines[0] += how
    if result is not None and result.test:
        t = result.test
        for i, (name, value) in enumerate(t["metrics"].items()):
            line = f"test {name.replace('_', ' ')} {value:.3f}"
            if i == 0:
                line += f" ({TEST_LABEL}; {t['images']} images)"
            lines.append(line)
    if result is not None and result.calibration and "ece_before" in result.calibration:
        c = result.calibration
        lines.append(
            f"calibration: temperature {c['temperature']:.3g} fitted on {c['images']} val "
            f"images; ECE {c['ece_before']:.3f} -> {c['ece_after']:.3f}"
        )
    return lines
