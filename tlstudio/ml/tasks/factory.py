"""Build a task model from a task name, a backbone and options, with clear errors.

Options per task (keyword arguments of :func:`build_task_model`; anything else is an error):

- classify:   head ("linear"|"mlp"|"knn"), hidden, dropout, label_smoothing, class_weights,
              neighbours, knn_k (knn: stored training features, neighbours voting)
- detect:     arch ("fcos"|"fasterrcnn"), input_size, min_score, fpn_channels,
              detections_per_image
- landmarks:  heatmap_stride (1|2|4|8), sigma (heatmap cells), width
- segment:    width, dice_weight, predict_probs
- instances:  input_size, min_score, fpn_channels, detections_per_image (Mask R-CNN)
- autoencode: encoder ("backbone"|"small"), latent_dim, vae, beta, input_size

``input_size`` defaults to ``backbone.spec.input_size`` (64 for the small autoencoder
without a backbone); pass the size the dataset actually feeds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from torch import nn

from tlstudio.core.errors import TlsError
from tlstudio.ml.tasks.base import TASKS, TaskModel

if TYPE_CHECKING:  # pragma: no cover
    from tlstudio.ml.backbones import Backbone


class TaskConfigError(TlsError, ValueError):
    """A task model cannot be built from these settings (unknown task or option, missing
    backbone, too few classes or points, ...). The message says what to change."""


_OPTIONS: dict[str, frozenset[str]] = {
    "classify": frozenset(
        {"head", "hidden", "dropout", "label_smoothing", "class_weights", "neighbours", "knn_k"}
    ),
    "detect": frozenset(
        {"arch", "input_size", "min_score", "fpn_channels", "detections_per_image"}
    ),
    "landmarks": frozenset({"heatmap_stride", "sigma", "width"}),
    "segment": frozenset({"width", "dice_weight", "predict_probs"}),
    "instances": frozenset({"input_size", "min_score", "fpn_channels", "detections_per_image"}),
    "autoencode": frozenset({"encoder", "latent_dim", "vae", "beta", "input_size"}),
}


def _present(task: str, backbone: nn.Module | None) -> nn.Module:
    """``backbone``, which ``task`` needs."""
    if backbone is None:
        raise TaskConfigError(f"{task} needs a backbone")
    return backbone


def _staged(task: str, backbone: nn.Module | None) -> Backbone:
    """The backbone of a task whose decoder reads its stages (every task but classify)."""
    # A Backbone by this function's contract; only classification also takes a stand-in
    # with ``out_channels`` (a head trained on cached features).
    return cast("Backbone", _present(task, backbone))


def build_task_model(
    task: str,
    backbone: nn.Module | None,
    *,
    num_classes: int = 0,
    num_points: int = 0,
    multi_label: bool = False,
    **options: Any,
) -> TaskModel:
    """The task model for ``task`` over ``backbone`` (a :class:`~tlstudio.ml.backbones.Backbone`;
    classification also takes a module with ``out_channels``, e.g. a cached-features stand-in).

    ``num_classes``: C project classes, not counting background (classify, detect,
    segment); ``num_points``: template points (landmarks); ``multi_label``: classify only.
    ``backbone`` may be None only for ``autoencode`` with ``encoder="small"``.
    Raises :class:`TaskConfigError` for any bad combination.
    """
    if task not in TASKS:
        raise TaskConfigError(f"unknown task {task!r}; use one of {', '.join(TASKS)}")
    unknown = sorted(set(options) - _OPTIONS[task])
    if unknown:
        allowed = ", ".join(sorted(_OPTIONS[task])) or "none"
        raise TaskConfigError(
            f"option(s) {', '.join(unknown)} do not apply to {task}; allowed: {allowed}"
        )
    if multi_label and task != "classify":
        raise TaskConfigError(f"multi_label applies to classification only, not {task}")
    needs_backbone = not (task == "autoencode" and options.get("encoder", "backbone") == "small")
    if needs_backbone and backbone is None:
        raise TaskConfigError(f"{task} needs a backbone")
    if task in ("classify", "detect", "segment", "instances"):
        minimum = 2 if task == "classify" and not multi_label else 1
        if num_classes < minimum:
            what = "single-label classification" if task == "classify" else task
            raise TaskConfigError(f"{what} needs at least {minimum} class(es), got {num_classes}")
    if task == "landmarks" and num_points < 1:
        raise TaskConfigError(f"landmarks need at least one template point, got {num_points}")
    if task in ("detect", "instances", "autoencode") and "input_size" not in options:
        spec = getattr(backbone, "spec", None)
        options["input_size"] = spec.input_size if spec is not None else 64

    try:
        if task == "classify":
            from tlstudio.ml.tasks.classify import ClassifierModel

            return ClassifierModel(
                _present(task, backbone), num_classes, multi_label=multi_label, **options
            )
        if task == "detect":
            from tlstudio.ml.tasks.detect import DetectorModel

            return DetectorModel(_staged(task, backbone), num_classes, **options)
        if task == "landmarks":
            from tlstudio.ml.tasks.landmarks import LandmarkModel

            return LandmarkModel(_staged(task, backbone), num_points, **options)
        if task == "segment":
            from tlstudio.ml.tasks.segment import SegmenterModel

            return SegmenterModel(_staged(task, backbone), num_classes, **options)
        if task == "instances":
            from tlstudio.ml.tasks.instances import InstanceModel

            return InstanceModel(_staged(task, backbone), num_classes, **options)
        from tlstudio.ml.tasks.autoencode import AutoencoderModel

        enc = options.pop("encoder", "backbone")
        return AutoencoderModel(
            enc, _staged(task, backbone) if enc == "backbone" else None, **options
        )
    except TaskConfigError:
        raise
    except ValueError as exc:
        raise TaskConfigError(f"{task}: {exc}") from exc
