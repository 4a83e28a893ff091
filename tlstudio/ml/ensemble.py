"""Ensembles: several runs (k-fold models, seeds) combined as one predictor.

An ensemble is recorded as a run of its own (task and preprocessing of its members,
config ``"ensemble": {"members": [run ids], "combine": ...}``, model file
``runs/<id>/ensemble.json`` naming the members), so it shows in every run picker and
:func:`tlstudio.ml.runner.load_run_model` returns an :class:`EnsembleModel` for it:
predict, evaluate, the Metrics view, the report and ONNX export (one file with every
member inside) take it like any run. The members' own files are used; deleting a member
breaks the ensemble (loading it then says which member is gone).

How members are combined (each member with its own calibration temperature):

- classify: mean of the members' probabilities; ``"spread"`` = their standard deviation
  per class (across members), the uncertainty shown beside a prediction;
- segment: mean of the per-pixel probabilities; ``"spread"`` = the mean over pixels of
  the standard deviation of the winning class's probability;
- landmarks: mean of the heatmaps, decoded once; ``"point_spread"`` = per point the
  standard deviation of the members' own decoded x and y (input pixels);
- detect: the union of the members' boxes merged by weighted box fusion ("wbf",
  Solovyev et al. 2021: boxes of one class overlapping at IoU > 0.55 become one, their
  corners averaged with score weights, the score averaged over the members, so a box
  only some members find scores lower) or non-maximum suppression over the union
  ("nms"); ``"agreement"`` = the fraction of members that found each box.

Members must share the task, input size, preprocessing (backbone mean/std) and, for
landmarks, the template and heatmap stride. Autoencoders are not combined.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor, nn

from tlstudio.core.atomic import write_text_atomic
from tlstudio.core.errors import TlsError
from tlstudio.core.project import Project
from tlstudio.core.runs import RunRecord, RunStore
from tlstudio.runtime.fusion import FUSION_IOU, fuse_detections

from .tasks.base import TaskModel
from .tasks.decoder import eval_mode
from .tasks.landmarks import decode_heatmaps

MANIFEST_FILE = "ensemble.json"
COMBINES = {"detect": ("wbf", "nms")}
DEFAULT_COMBINE = {"detect": "wbf"}
#: config entries of a member that describe that member's training, not the ensemble
_MEMBER_ONLY = ("experiment", "warnings", "calibration", "selection", "test")


class EnsembleError(TlsError):
    """Runs cannot be combined, or an ensemble cannot be loaded (the message says why)."""


@runtime_checkable
class Probabilistic(Protocol):
    """A classification model that turns its logits into class probabilities
    (:class:`~tlstudio.ml.tasks.classify.ClassifierModel`, :class:`EnsembleModel`)."""

    def probabilities(self, logits: Tensor) -> Tensor: ...


def probabilistic(model: nn.Module) -> Probabilistic:
    """``model`` as a :class:`Probabilistic`; TypeError if it has no ``probabilities``."""
    if not isinstance(model, Probabilistic):
        raise TypeError(f"{type(model).__name__} gives no class probabilities")
    return model


def heatmap_stride_of(model: nn.Module) -> int:
    """Input pixels per heatmap cell of a landmark model (a LandmarkModel, or an ensemble
    or TTA of one); TypeError if ``model`` has no ``heatmap_stride``."""
    stride = getattr(model, "heatmap_stride", None)
    if stride is None:
        raise TypeError(f"{type(model).__name__} has no heatmap stride")
    return int(stride)


# --------------------------------------------------------------------------- boxes


def fuse_boxes(
    detections: Sequence[dict[str, Any]],
    *,
    method: str = "wbf",
    iou: float = FUSION_IOU,
) -> dict[str, Tensor]:
    """:func:`tlstudio.runtime.fusion.fuse_detections` (the rule, shared with exported
    ensembles) over detections given as dicts of tensors ("boxes" K×4 xyxy, "scores" K,
    "labels" K); tensors back: {"boxes", "scores", "labels", "agreement"}."""

    def arr(t: Any) -> np.ndarray:
        return np.asarray(torch.as_tensor(t).detach().cpu())

    fused = fuse_detections(
        [(arr(d["boxes"]), arr(d["scores"]), arr(d["labels"])) for d in detections],
        method=method,
        iou=iou,
    )
    return {k: torch.from_numpy(v) for k, v in fused.items()}


# --------------------------------------------------------------------------- model


class EnsembleModel(TaskModel):
    """Members combined as one task model (see the module docstring).

    For export and the Inspect views it behaves like a single model of its task:
    classify ``forward`` returns the log of the mean probabilities (``probabilities``
    gives them back; logit for multi-label), segment the log of the mean per-pixel
    probabilities, landmarks the mean heatmaps (``heatmap_stride`` as the members').
    It has no single backbone (``backbone`` is None)."""

    def __init__(
        self,
        members: Sequence[TaskModel],
        *,
        member_ids: Sequence[int] = (),
        combine: str = "mean",
    ):
        nn.Module.__init__(self)
        if len(members) < 2:
            raise EnsembleError("an ensemble needs at least two members")
        self.members = nn.ModuleList(members)
        # TaskModel (tasks/base.py) types backbone as a Module; an ensemble has none
        self.backbone = None  # type: ignore[assignment]
        first = members[0]
        self.task = first.task
        self.member_ids = [int(i) for i in member_ids]
        self.combine = combine
        self.main_metric = first.main_metric
        self.higher_is_better = first.higher_is_better
        self.multi_label = bool(getattr(first, "multi_label", False))
        if self.task == "landmarks":
            self.heatmap_stride = heatmap_stride_of(first)

    def task_members(self) -> list[TaskModel]:
        """The members (the ModuleList holds them as plain modules)."""
        out = []
        for m in self.members:
            if not isinstance(m, TaskModel):
                raise TypeError(f"an ensemble member is a {type(m).__name__}, not a TaskModel")
            out.append(m)
        return out

    # -- dense outputs -------------------------------------------------------------------
    def member_probabilities(self, images: Tensor) -> Tensor:
        """M×N×… per-member probabilities (classify: N×C; segment: N×(C+1)×H×W) or
        heatmaps (landmarks: N×P×h×w)."""
        outs = []
        for m in self.members:
            z = m(images).float()
            if self.task == "classify":
                outs.append(probabilistic(m).probabilities(z))
            elif self.task == "segment":
                outs.append(torch.softmax(z, dim=1))
            elif self.task == "landmarks":
                outs.append(z)
            else:
                raise EnsembleError(f"a {self.task} ensemble has no dense output")
        return torch.stack(outs)

    def forward(self, images: Tensor) -> Tensor:
        mean = self.member_probabilities(images).mean(dim=0)
        if self.task == "landmarks":
            return mean
        p = mean.clamp(1e-12, 1.0)
        if self.task == "classify" and self.multi_label:
            return torch.log(p) - torch.log1p(-p.clamp(max=1 - 1e-7))
        return torch.log(p)

    def probabilities(self, logits: Tensor) -> Tensor:
        """The inverse of :meth:`forward`'s log for classification (mean probabilities)."""
        return torch.sigmoid(logits) if self.multi_label else torch.softmax(logits, dim=-1)

    # -- predictions -------------------------------------------------------------------
    @torch.no_grad()
    def predict_step(self, images: Tensor) -> list[dict[str, Any]]:
        """The task's ``predict_step`` outputs (network-input pixels) plus the spread
        between members ("spread", "point_spread" or per-box "agreement")."""
        with eval_mode(self):
            if self.task == "detect":
                per_member = [m.predict_step(images) for m in self.task_members()]
                method = ensemble_combine(self)
                return [
                    fuse_boxes([pm[i] for pm in per_member], method=method)
                    for i in range(len(images))
                ]
            stack = self.member_probabilities(images)
        mean = stack.mean(dim=0)
        if self.task == "classify":
            spread = stack.std(dim=0, unbiased=False)
            return [{"probs": p, "spread": s} for p, s in zip(mean, spread, strict=True)]
        if self.task == "segment":
            mask = mean.argmax(dim=1)
            win = stack.gather(2, mask[None, :, None].expand(len(stack), -1, 1, -1, -1))
            spread = win.std(dim=0, unbiased=False).flatten(1).mean(dim=1)
            return [
                {"mask": m, "probs": p, "spread": float(s)}
                for m, p, s in zip(mask, mean, spread, strict=True)
            ]
        kps = decode_heatmaps(mean, self.heatmap_stride)
        own = torch.stack([decode_heatmaps(h, self.heatmap_stride) for h in stack])
        spread = own[..., :2].std(dim=0, unbiased=False)  # N×P×2
        return [{"keypoints": k, "point_spread": s} for k, s in zip(kps, spread, strict=True)]

    def training_step(self, images: Tensor, targets: list[dict[str, Any]]) -> dict[str, Tensor]:
        raise EnsembleError("an ensemble is not trained; train its members")


# --------------------------------------------------------------------------- runs


def _spec(rec: RunRecord):
    from .runner import RunSpec

    return RunSpec.from_dict(rec.config)


def create_ensemble(
    project: Project, member_ids: Sequence[int], *, combine: str | None = None
) -> int:
    """Record runs ``member_ids`` as one ensemble run and return its id. ``combine``:
    detect "wbf" (default) or "nms"; other tasks "mean". Raises :class:`EnsembleError`
    naming the first member that does not fit."""
    from .backbones import get_spec

    ids = list(dict.fromkeys(int(i) for i in member_ids))
    if len(ids) < 2:
        raise EnsembleError("an ensemble needs at least two different runs")
    runs = RunStore(project)
    recs = []
    for i in ids:
        try:
            rec = runs.get(i)
        except TlsError as exc:
            raise EnsembleError(f"run {i} does not exist") from exc
        if "ensemble" in rec.config:
            raise EnsembleError(f"run {i} is an ensemble itself; combine its members instead")
        if not rec.checkpoint and (rec.config.get("experiment") or {}).get("kind") != "sklearn":
            raise EnsembleError(f"run {i} has no saved model (status {rec.status})")
        recs.append(rec)
    first, spec0 = recs[0], _spec(recs[0])
    if first.task == "autoencode":
        raise EnsembleError("autoencoders are not combined into ensembles")
    b0 = get_spec(spec0.backbone)
    for rec in recs[1:]:
        spec = _spec(rec)
        b = get_spec(spec.backbone)
        why = None
        if rec.task != first.task:
            why = f"it is a {rec.task} run, run {first.id} a {first.task} run"
        elif spec.resolved_input_size != spec0.resolved_input_size:
            why = (
                f"its input size is {spec.resolved_input_size} px, run {first.id}'s "
                f"{spec0.resolved_input_size} px"
            )
        elif (tuple(b.mean), tuple(b.std)) != (tuple(b0.mean), tuple(b0.std)):
            why = f"its backbone {spec.backbone} normalises images unlike {spec0.backbone}"
        elif rec.task == "landmarks" and spec.template_id != spec0.template_id:
            why = "it predicts another landmark template"
        if why:
            raise EnsembleError(f"run {rec.id} cannot join run {first.id} in an ensemble: {why}")
    allowed = COMBINES.get(first.task, ("mean",))
    combine = combine or DEFAULT_COMBINE.get(first.task, "mean")
    if combine not in allowed:
        raise EnsembleError(
            f"a {first.task} ensemble combines by {' or '.join(allowed)}, not {combine!r}"
        )
    config = {k: v for k, v in first.config.items() if k not in _MEMBER_ONLY}
    config["ensemble"] = {"members": ids, "combine": combine}
    backbones = list(dict.fromkeys(r.backbone for r in recs))
    backbone = backbones[0] if len(backbones) == 1 else "+".join(backbones)
    run_id = runs.start(first.task, backbone, config, None)
    manifest = runs.run_dir(run_id) / MANIFEST_FILE
    write_text_atomic(manifest, json.dumps({"members": ids, "combine": combine}, indent=1))
    runs.update(
        run_id,
        status="finished",
        checkpoint=os.path.relpath(manifest, project.root),
        metric_name=first.metric_name,
        duration_s=0.0,
    )
    return run_id


def ensemble_combine(model: nn.Module) -> str:
    """How a detector ensemble merges its members' boxes: "wbf" or "nms"."""
    return "nms" if getattr(model, "combine", "wbf") == "nms" else "wbf"


def members_of(rec: RunRecord) -> list[int]:
    """The member run ids of an ensemble run's record ([] for other runs)."""
    ens = rec.config.get("ensemble") if isinstance(rec.config, dict) else None
    return [int(i) for i in ens.get("members", [])] if isinstance(ens, dict) else []


def load_ensemble(project: Project, rec: RunRecord) -> tuple[EnsembleModel, Any]:
    """The :class:`EnsembleModel` of ensemble run ``rec`` (eval mode, CPU) and the spec its
    members share."""
    from .runner import RunError, load_run_model

    ids = members_of(rec)
    runs = RunStore(project)
    models = []
    for i in ids:
        try:
            runs.get(i)
        except TlsError as exc:
            raise RunError(
                f"ensemble run {rec.id}: its member run {i} is gone (deleted); "
                "make the ensemble again from the runs that are left"
            ) from exc
        model, _spec_i = load_run_model(project, i)
        models.append(model)
    combine = str((rec.config.get("ensemble") or {}).get("combine", "mean"))
    return EnsembleModel(models, member_ids=ids, combine=combine).eval(), _spec(rec)
