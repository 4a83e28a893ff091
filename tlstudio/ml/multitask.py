"""Multi-task runs: several task heads over one shared backbone, trained together.

A multi-task run's task is its tasks joined by commas ("classify,landmarks", see
:mod:`tlstudio.ml.tasks.joint`); the first task is the one whose main metric selects the
best epoch. Each image carries the labels it has: the dataset (:class:`MultiTaskDataset`)
takes every image labelled for at least one of the tasks and names those in the target's
``"present"`` (a tuple of task names); the other tasks' keys are absent.

Loss (:meth:`MultiTaskModel.training_step`): each task's own loss over the images of the
batch that have its labels (images without them contribute to the other tasks only),
combined either with fixed weights, ``Σ w_t·L_t``, or with uncertainty weighting (Kendall,
Gal and Cipolla 2018, in the form ``Σ exp(-s_t)·L_t + s_t`` with one learnt
``s_t = log σ_t²`` per task, starting at 0).

Predictions (:meth:`MultiTaskModel.predict_step`) are one dict per image holding every
task's keys side by side: classify "probs" (C), landmarks "keypoints" (P×3), segment
"mask" (H×W; the per-pixel probabilities are left out, their key would clash with
classify's). Stored predictions (``tlstudio predict``) merge the tasks' payloads the same
way: {"probs", "class_id"} of classify, {"points"} of landmarks, {"classes"} and the mask
of segment, with the first task's score.

Metrics: each task's metrics over the images that have its labels, named
``"<task>/<metric>"`` ("classify/accuracy", "landmarks/nme").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from tlstudio.core.project import Project
from tlstudio.ml.data import ProjectDataset
from tlstudio.ml.metrics import metrics_fn_for
from tlstudio.ml.tasks.base import TaskModel
from tlstudio.ml.tasks.decoder import eval_mode
from tlstudio.ml.tasks.factory import TaskConfigError, build_task_model
from tlstudio.ml.tasks.joint import TASK_WEIGHTS_UNCERTAINTY, check_tasks, split_tasks
from tlstudio.ml.tasks.landmarks import decode_heatmaps

if TYPE_CHECKING:  # pragma: no cover
    from tlstudio.ml.runner import RunSpec

PRESENT = "present"
"""Target key: the tasks whose labels the image has (tuple of task names)."""


class MultiTaskDataset(ProjectDataset):
    """The images of ``image_ids`` labelled for at least one of ``task``'s tasks, each with
    the targets of the tasks it has labels for and ``"present"`` naming them. One
    augmentation moves the image and all its labels together."""

    def __init__(
        self,
        project: Project,
        task: str,
        image_ids: Sequence[int],
        input_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        transform: Any = None,
        template_id: int | None = None,
        multi_label: bool = False,
    ):
        tasks = check_tasks(task)
        # the first task builds this dataset's pixels and settings; the others add labels
        super().__init__(
            project, tasks[0], image_ids, input_size, mean, std, transform,
            template_id=template_id, multi_label=multi_label,
        )  # fmt: skip
        parts: dict[str, ProjectDataset] = {tasks[0]: self}
        for name in tasks[1:]:
            parts[name] = ProjectDataset(
                project, name, image_ids, input_size, mean, std, None,
                template_id=template_id, multi_label=multi_label,
            )  # fmt: skip
            if name == "landmarks":
                self.template = parts[name].template
                self.template_id = parts[name].template_id
        self.task = ",".join(tasks)
        self.tasks = tasks
        by_task = {name: {it.image_id: it for it in part.items} for name, part in parts.items()}
        self.items, self.present, self.excluded = [], [], []
        for image_id in (int(i) for i in image_ids):
            have = tuple(name for name in tasks if image_id in by_task[name])
            if not have:
                self.excluded.append(image_id)
                continue
            merged = by_task[have[0]][image_id]
            for name in have[1:]:
                extra = by_task[name][image_id]
                merged = dataclasses.replace(merged, **_labels_of(extra))
            self.items.append(merged)
            self.present.append(have)

    def count(self, task: str) -> int:
        """Images with ``task``'s labels."""
        return sum(task in have for have in self.present)

    def class_labels(self) -> np.ndarray:
        raise ValueError("a multi-task dataset has no single list of class labels")

    def __getitem__(self, index: int) -> tuple[Tensor, dict[str, Any]]:
        it = self.items[index]
        image, sample = self._input_and_sample(index)
        target: dict[str, Any] = {
            "image_id": it.image_id,
            "orig_size": it.orig_size,
            PRESENT: self.present[index],
        }
        for name in self.present[index]:
            self._fill_target(name, it, sample, target)
        return image, target


def _labels_of(item: Any) -> dict[str, Any]:
    """The label fields an item of one task sets (those not None or empty)."""
    out = {}
    for f in dataclasses.fields(item):
        value = getattr(item, f.name)
        if f.name in ("image_id", "path", "sha256", "orig_size") or value is None:
            continue
        if isinstance(value, tuple) and not value:
            continue
        out[f.name] = value
    return out


class MultiTaskModel(TaskModel):
    """One backbone, several task heads. ``members`` are single-task models built over the
    very same backbone object (its weights are shared, not copied); their heads run on one
    pass of the backbone. ``task_weights``: one weight per task, or "uncertainty"."""

    task_weights: Tensor  # a buffer: the fixed weights (all 1 under uncertainty weighting)
    log_vars: nn.Parameter  # uncertainty weighting only

    def __init__(
        self,
        backbone: nn.Module,
        members: dict[str, TaskModel],
        task_weights: Sequence[float] | str | None = None,
    ):
        super().__init__(backbone)
        if len(members) < 2:
            raise TaskConfigError("a multi-task model needs at least two tasks")
        for name, member in members.items():
            if member.backbone is not backbone:
                raise TaskConfigError(f"the {name} head must sit on the shared backbone")
        self.members = nn.ModuleDict(members)
        self.tasks = tuple(members)
        self.task = ",".join(self.tasks)
        first = members[self.tasks[0]]
        self.main_metric = f"{self.tasks[0]}/{first.main_metric}"
        self.higher_is_better = first.higher_is_better
        if "landmarks" in members:  # read by the export's sidecar (heatmap_stride_of)
            landmarks: Any = members["landmarks"]
            self.heatmap_stride = int(landmarks.heatmap_stride)
        self.uncertainty = task_weights == TASK_WEIGHTS_UNCERTAINTY
        if self.uncertainty:
            #: s_t = log σ_t² per task, learnt with the heads
            self.log_vars = nn.Parameter(torch.zeros(len(members)))
            weights = [1.0] * len(members)
        elif task_weights is None:
            weights = [1.0] * len(members)
        elif isinstance(task_weights, str):
            raise TaskConfigError(f"task_weights {task_weights!r}: give numbers or 'uncertainty'")
        else:
            weights = [float(w) for w in task_weights]
            if len(weights) != len(members):
                raise TaskConfigError(
                    f"{len(weights)} task weight(s) for {len(members)} tasks; give one per task"
                )
        self.register_buffer("task_weights", torch.tensor(weights, dtype=torch.float32))

    def outputs(self, images: Tensor) -> dict[str, Tensor]:
        """Each task's raw output from one backbone pass: classify logits N×C, landmarks
        heatmaps N×P×h×w, segment logits N×(C+1)×H×W."""
        backbone: Any = self.backbone  # a Backbone (build_multitask_model)
        feats = backbone.forward_features(images)
        hw = (int(images.shape[-2]), int(images.shape[-1]))
        out: dict[str, Tensor] = {}
        for name in self.tasks:
            member: Any = self.members[name]
            if name == "classify":
                out[name] = member.head(feats[-1].mean(dim=(2, 3)))
            elif name == "landmarks":
                out[name] = member.decoder(feats, output_size=member.heatmap_size(hw))
            elif name == "segment":
                out[name] = member.decoder(feats, output_size=hw)
            else:  # check_tasks refuses the others before a model is built
                raise TaskConfigError(f"{name} cannot be part of a multi-task model")
        return out

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        """The tasks' raw outputs (see :meth:`outputs`), in task order."""
        out = self.outputs(images)
        return tuple(out[name] for name in self.tasks)

    def task_loss(self, name: str, output: Tensor, targets: list[dict[str, Any]]) -> Tensor:
        """Task ``name``'s own loss of ``output`` against ``targets`` (all labelled for it)."""
        member: Any = self.members[name]
        if name == "classify":
            return member.loss_from_logits(output, targets)["loss"]
        if name == "landmarks":
            return member.loss_from_heatmaps(output, targets)["loss"]
        return member.loss_from_logits(output, targets)["loss"]

    def combined_loss(
        self, outputs: dict[str, Tensor], targets: list[dict[str, Any]]
    ) -> dict[str, Tensor]:
        """{"loss", "<task>_loss" per task with labels in the batch}: each task's loss over
        the images that have its labels, weighted (see the module docstring)."""
        parts: dict[str, Tensor] = {}
        total: Tensor | None = None
        for k, name in enumerate(self.tasks):
            rows = [i for i, t in enumerate(targets) if name in t.get(PRESENT, self.tasks)]
            if not rows:
                continue
            out = outputs[name]
            index = torch.tensor(rows, device=out.device)
            loss = self.task_loss(name, out.index_select(0, index), [targets[i] for i in rows])
            parts[f"{name}_loss"] = loss.detach()
            if self.uncertainty:
                s = self.log_vars[k]
                term = torch.exp(-s) * loss + s
            else:
                term = self.task_weights[k] * loss
            total = term if total is None else total + term
        if total is None:  # no image with any label: nothing to learn, a zero with a gradient
            total = torch.stack([o.sum() for o in outputs.values()]).sum() * 0.0
        return {"loss": total, **parts}

    def training_step(self, images: Tensor, targets: list[dict[str, Any]]) -> dict[str, Tensor]:
        return self.combined_loss(self.outputs(images), targets)

    @torch.no_grad()
    def predict_step(self, images: Tensor) -> list[dict[str, Any]]:
        """One dict per image with every task's keys (see the module docstring)."""
        with eval_mode(self):
            out = self.outputs(images)
        per_key: dict[str, Tensor] = {}
        for name, value in out.items():
            member: Any = self.members[name]
            if name == "classify":
                per_key["probs"] = member.probabilities(value.float())
            elif name == "landmarks":
                per_key["keypoints"] = decode_heatmaps(value.float(), member.heatmap_stride)
            else:
                per_key["mask"] = value.float().argmax(1)
        n = images.shape[0]
        return [{k: v[i] for k, v in per_key.items()} for i in range(n)]

    def weights_now(self) -> dict[str, float]:
        """Each task's effective loss weight: the fixed weight, or exp(-s_t)."""
        if self.uncertainty:
            w = torch.exp(-self.log_vars.detach()).tolist()
        else:
            w = self.task_weights.tolist()
        return dict(zip(self.tasks, (float(v) for v in w), strict=True))


class MultiTaskGraph(nn.Module):
    """The exported graph of a multi-task model: each task's outputs in task order, as the
    single-task exports give them (classify probs; landmarks heatmaps, keypoints; segment
    per-pixel softmax)."""

    def __init__(self, model: TaskModel):
        super().__init__()
        if not isinstance(model, MultiTaskModel):
            raise TypeError(f"a multi-task run's model is a {type(model).__name__}")
        self.model = model

    def forward(self, image: Tensor) -> tuple[Tensor, ...]:
        out = self.model.outputs(image)
        result: list[Tensor] = []
        for name in self.model.tasks:
            member: Any = self.model.members[name]
            if name == "classify":
                result.append(member.probabilities(out[name]))
            elif name == "landmarks":
                result += [out[name], decode_heatmaps(out[name], member.heatmap_stride)]
            else:
                result.append(torch.softmax(out[name], dim=1))
        return tuple(result)


def build_multitask_model(project: Project, spec: RunSpec, backbone: nn.Module) -> TaskModel:
    """The multi-task model of ``spec`` (task "classify,landmarks"...) over ``backbone``.

    ``spec.model_options``: "task_weights" (numbers or "uncertainty"), and per task a dict
    of that task's options under its name ({"landmarks": {"sigma": 3}})."""
    tasks = check_tasks(spec.task)
    options = dict(spec.model_options)
    weights = options.pop("task_weights", None)
    unknown = sorted(set(options) - set(tasks))
    if unknown:
        raise TaskConfigError(
            f"multi-task option(s) {', '.join(unknown)}: give task_weights, or each task's "
            f"options under its name ({', '.join(tasks)})"
        )
    members: dict[str, TaskModel] = {}
    for name in tasks:
        own = dict(options.get(name) or {})
        num_points = 0
        if name == "landmarks":
            if spec.template_id is None:
                raise TaskConfigError("landmarks need a template: no landmark set was found")
            num_points = len(project.template(spec.template_id).points)
        if name == "segment":
            own["predict_probs"] = False  # their key would clash with classify's "probs"
        members[name] = build_task_model(
            name, backbone, num_classes=len(project.classes()), num_points=num_points,
            multi_label=name == "classify" and project.multi_label, **own,
        )  # fmt: skip
    return MultiTaskModel(backbone, members, weights)


def multitask_metrics_fn(
    task: str, num_classes: int, multi_label: bool = False
) -> Callable[[list[dict[str, Any]], list[dict[str, Any]]], dict[str, float]]:
    """The trainer's ``metrics_fn`` of a multi-task run: each task's metrics
    (:func:`~tlstudio.ml.metrics.metrics_fn_for`) over the images that have its labels,
    as ``"<task>/<metric>"`` (NaN for a task without labelled images)."""
    tasks = split_tasks(task)
    fns = {
        name: metrics_fn_for(name, num_classes, multi_label=multi_label and name == "classify")
        for name in tasks
    }

    def fn(preds: list[dict[str, Any]], targets: list[dict[str, Any]]) -> dict[str, float]:
        out: dict[str, float] = {}
        for name, metric in fns.items():
            rows = [i for i, t in enumerate(targets) if name in t.get(PRESENT, tasks)]
            values = metric([preds[i] for i in rows], [targets[i] for i in rows])
            out.update({f"{name}/{k}": v for k, v in values.items()})
        return out

    return fn


PayloadFn = Callable[[str, dict[str, Any], Any], tuple[dict, np.ndarray | None, float | None]]


def multitask_payload(
    task: str, pred: dict[str, Any], classes: Any, payload: PayloadFn
) -> tuple[dict, np.ndarray | None, float | None]:
    """A stored prediction of a multi-task run: the tasks' payloads merged (their keys do
    not clash), segment's mask, and the first task's score."""
    body: dict[str, Any] = {"tasks": list(split_tasks(task))}
    mask, score = None, None
    for k, name in enumerate(split_tasks(task)):
        part, part_mask, part_score = payload(name, pred, classes)
        body.update(part)
        if part_mask is not None:
            mask = part_mask
        if k == 0:
            score = part_score
    return body, mask, score
