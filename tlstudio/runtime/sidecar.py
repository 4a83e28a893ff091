"""The JSON sidecar of an exported model (``model.onnx`` → ``model.onnx.json``), read as
untrusted input: every field the runtime uses is checked for type and range, and a bad
one is reported as :class:`SidecarError` naming the file and the field.

The sidecar never chooses how the model file is loaded (its content does, see
:mod:`tlstudio.runtime.loader`); its ``model_format`` is only compared with the content.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import SidecarError
from .fusion import FUSION_METHODS

SIDECAR_FORMAT = "tlstudio-exported-model"
SIDECAR_VERSION = 1
MODEL_FORMATS = ("onnx", "torchscript")
#: network input side S in pixels: 16 px is below any backbone's useful size; 2048 px keeps
#: a batch of 16 preprocessed images under 1 GB
MIN_INPUT_SIZE, MAX_INPUT_SIZE = 16, 2048
#: classes (segmentation masks are uint16: 0 = background, 1..C) and template points
MAX_CLASSES, MAX_POINTS = 65535, 4096
#: a sidecar holds a run summary, not data; anything this large is not one
MAX_SIDECAR_BYTES = 16 * 1024 * 1024

#: output names and meanings per task (shapes: N images, C classes, P points, D latent)
OUTPUTS: dict[str, list[dict[str, str]]] = {
    "classify": [
        {
            "name": "probs",
            "shape": "N×C",
            "meaning": "class probabilities (softmax; per-class sigmoid when multi_label), "
            "calibrated: the run's temperature is part of the model",
        }
    ],
    "segment": [
        {
            "name": "probs",
            "shape": "N×(C+1)×S×S",
            "meaning": "per-pixel softmax; channel 0 = background, channel i+1 = classes[i]",
        }
    ],
    "landmarks": [
        {
            "name": "heatmaps",
            "shape": "N×P×h×w",
            "meaning": "one heatmap per template point; cell u covers input pixels "
            "[u·stride, (u+1)·stride)",
        },
        {
            "name": "keypoints",
            "shape": "N×P×3",
            "meaning": "decoded points (x, y, confidence): x, y in input pixels "
            "(continuous frame), confidence = heatmap peak in [0, 1]",
        },
    ],
    "autoencode": [
        {
            "name": "reconstruction",
            "shape": "N×3×S×S",
            "meaning": "reconstructed input in normalised space (undo with x·std + mean)",
        },
        {"name": "latent", "shape": "N×D", "meaning": "latent code (μ for a VAE)"},
        {
            "name": "error",
            "shape": "N",
            "meaning": "mean squared reconstruction error per image (normalised units)",
        },
    ],
    "detect": [
        {"name": "boxes", "shape": "K×4", "meaning": "x1, y1, x2, y2 in input pixels"},
        {"name": "scores", "shape": "K", "meaning": "detection scores in [0, 1], descending"},
        {"name": "labels", "shape": "K", "meaning": "class index 0..C-1 into classes"},
    ],
    "instances": [
        {"name": "boxes", "shape": "K×4", "meaning": "x1, y1, x2, y2 in input pixels"},
        {"name": "scores", "shape": "K", "meaning": "object scores in [0, 1], descending"},
        {"name": "labels", "shape": "K", "meaning": "class index 0..C-1 into classes"},
        {
            "name": "mask_probs",
            "shape": "K×M×M",
            "meaning": "each object's probability grid over its box: cell (i, j) covers "
            "[x1 + j·w/M, x1 + (j+1)·w/M) × [y1 + i·h/M, ...) shifted half an input pixel "
            "right and down; pixels above 0.5 are the object's (tlstudio.runtime.objects)",
        },
    ],
}
#: tasks a multi-task model ("classify,landmarks": one backbone, several heads) may join
JOINT_TASKS = ("classify", "landmarks", "segment")


def outputs_of(task: str) -> list[dict[str, str]]:
    """The outputs of a ``task`` model: :data:`OUTPUTS`' entry, or for a multi-task model
    each task's outputs in task order, named ``<task>_<name>`` ("landmarks_keypoints").
    KeyError for an unknown task."""
    tasks = task.split(",")
    if len(tasks) == 1:
        return OUTPUTS[task]
    return [{**o, "name": f"{t}_{o['name']}"} for t in tasks for o in OUTPUTS[t]]


def _known_task(task: object) -> bool:
    """True for a task of :data:`OUTPUTS`, or several different ones of :data:`JOINT_TASKS`
    joined by commas."""
    if not isinstance(task, str):
        return False
    tasks = task.split(",")
    if len(tasks) == 1:
        return task in OUTPUTS
    return len(set(tasks)) == len(tasks) and all(t in JOINT_TASKS for t in tasks)


#: tasks whose outputs are per class, so the sidecar must name at least one class
_CLASS_TASKS = ("classify", "detect", "segment", "instances")
#: tasks whose exported graph takes exactly one image (N = 1): the detectors
ONE_IMAGE_TASKS = ("detect", "instances")
#: members a detector ensemble's file may hold
MAX_ENSEMBLE_MEMBERS = 64


def output_specs(task: str, members: int = 0) -> list[dict[str, str]]:
    """The outputs of a ``task`` model (:func:`outputs_of`, also for a multi-task model);
    for an ensemble of ``members`` detectors (``members`` ≥ 2), each member's boxes,
    scores and labels in turn, named ``boxes_0, scores_0, labels_0, boxes_1, …`` (fused
    when decoded, see :mod:`tlstudio.runtime.fusion`)."""
    if not members:
        return [dict(o) for o in outputs_of(task)]
    return [
        {**o, "name": f"{o['name']}_{m}", "meaning": f"member {m}: {o['meaning']}"}
        for m in range(members)
        for o in OUTPUTS[task]
    ]


def sidecar_path(path: str | Path) -> Path:
    """The sidecar of a model file: its name plus ``.json``."""
    p = Path(path)
    return p.with_name(p.name + ".json")


@dataclass(frozen=True)
class Sidecar:
    """The checked fields of a sidecar; ``info`` is the whole JSON object as read.

    ``input_size`` S in pixels; ``mean``/``std`` per RGB channel for 0..1 values;
    ``class_names``/``class_ids`` in the model's class order (ids: database ids of the
    project the model came from, or None); ``point_names`` the landmark template's points
    (empty for other tasks); ``model_format`` as the sidecar states it (None if absent)."""

    path: Path
    info: dict[str, Any]
    task: str
    model_format: str | None
    multi_label: bool
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    class_names: tuple[str, ...]
    class_ids: tuple[int | None, ...]
    point_names: tuple[str, ...]
    #: a detector ensemble: its member count (0 = one model), how boxes are merged
    #: ("wbf" or "nms") and the IoU above which boxes of one class are one object
    ensemble_members: int = 0
    ensemble_combine: str = "wbf"
    ensemble_iou: float = 0.55

    @property
    def output_names(self) -> list[str]:
        """The model's outputs in order, by task (and ensemble members)."""
        return [o["name"] for o in output_specs(self.task, self.ensemble_members)]


def read_sidecar(path: str | Path) -> Sidecar:
    """Read and check the sidecar at ``path``; raise :class:`SidecarError` naming the file
    and field on anything the runtime cannot use safely."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_SIDECAR_BYTES:
            raise SidecarError(path, "", f"{size} bytes; a sidecar is a few kilobytes")
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SidecarError(path, "", f"cannot read the sidecar ({exc.strerror or exc})") from exc
    except UnicodeDecodeError as exc:
        raise SidecarError(path, "", "not UTF-8 text") from exc
    try:
        info = json.loads(text)
    except ValueError as exc:
        raise SidecarError(path, "", f"not valid JSON ({exc})") from exc
    except RecursionError as exc:
        raise SidecarError(path, "", "not valid JSON (nested too deeply)") from exc
    return parse_sidecar(info, path)


def parse_sidecar(info: Any, path: Path) -> Sidecar:
    """Check the decoded sidecar JSON ``info`` (errors name ``path``)."""
    check = _Checker(path)
    if not isinstance(info, dict) or info.get("format") != SIDECAR_FORMAT:
        raise SidecarError(
            path, "format", f"not a tlstudio model sidecar (want {SIDECAR_FORMAT!r})"
        )
    version = check.integer(info, "format_version", 1, 10**6)
    if version > SIDECAR_VERSION:
        raise SidecarError(
            path, "format_version",
            f"written by a newer tlstudio (sidecar version {version}); update tlstudio",
        )  # fmt: skip
    task = info.get("task")
    if not _known_task(task):
        raise SidecarError(
            path, "task",
            f"unknown task {task!r}; one of {', '.join(OUTPUTS)}, or several of "
            f"{', '.join(JOINT_TASKS)} joined by commas",
        )  # fmt: skip
    assert isinstance(task, str)  # _known_task
    tasks = task.split(",")
    model_format = info.get("model_format")
    if model_format is not None and model_format not in MODEL_FORMATS:
        raise SidecarError(path, "model_format", f"{model_format!r} is not onnx or torchscript")
    multi_label = info.get("multi_label", False)
    if not isinstance(multi_label, bool):
        raise SidecarError(path, "multi_label", f"must be true or false, not {multi_label!r}")

    pre = check.mapping(info, "preprocessing")
    size = check.integer(pre, "input_size", MIN_INPUT_SIZE, MAX_INPUT_SIZE, "preprocessing.")
    mean = check.triple(pre, "mean", "preprocessing.", positive=False)
    std = check.triple(pre, "std", "preprocessing.", positive=True)

    names, ids = check.classes(info.get("classes"), required=any(t in _CLASS_TASKS for t in tasks))
    points: tuple[str, ...] = ()
    if "landmarks" in tasks:
        template = check.mapping(info, "template")
        points = check.names(template.get("points"), "template.points", MAX_POINTS)
    members, combine, iou = 0, "wbf", 0.55
    ens_combine: Any
    ens_iou: Any
    if info.get("ensemble") is not None:
        if task != "detect":
            raise SidecarError(path, "ensemble", f"only detectors are exported as members, "
                               f"not a {task} model")  # fmt: skip
        ens = check.mapping(info, "ensemble")
        members = check.integer(ens, "members", 2, MAX_ENSEMBLE_MEMBERS, "ensemble.")
        ens_combine, ens_iou = ens.get("combine"), ens.get("iou")
        if ens_combine not in FUSION_METHODS:
            raise SidecarError(path, "ensemble.combine", f"{_shown(ens_combine)} is not wbf or nms")
        if (isinstance(ens_iou, bool) or not isinstance(ens_iou, int | float)
                or not 0 < ens_iou < 1):  # fmt: skip
            raise SidecarError(path, "ensemble.iou", f"{_shown(ens_iou)} is not a number in (0, 1)")
        combine, iou = str(ens_combine), float(ens_iou)
    want_names = [o["name"] for o in output_specs(task, members)]
    outputs = info.get("outputs")
    listed = [o.get("name") for o in outputs] if isinstance(outputs, list) else None
    if outputs is not None and (
        listed != want_names or not all(isinstance(o, dict) for o in outputs)
    ):
        what = f"an ensemble of {members} detectors" if members else f"a {task} model"
        raise SidecarError(path, "outputs", f"{what} has the outputs {', '.join(want_names)}")
    return Sidecar(
        path=path, info=info, task=task, model_format=model_format, multi_label=multi_label,
        input_size=size, mean=mean, std=std, class_names=names, class_ids=ids,
        point_names=points, ensemble_members=members, ensemble_combine=combine,
        ensemble_iou=iou,
    )  # fmt: skip


class _Checker:
    """Type and range checks that raise :class:`SidecarError` for one sidecar file."""

    def __init__(self, path: Path):
        self.path = path

    def fail(self, field: str, reason: str) -> SidecarError:
        return SidecarError(self.path, field, reason)

    def mapping(self, obj: dict[str, Any], key: str) -> dict[str, Any]:
        value = obj.get(key)
        if not isinstance(value, dict):
            raise self.fail(key, f"must be an object, not {_shown(value)}")
        return value

    def integer(self, obj: dict[str, Any], key: str, lo: int, hi: int, prefix: str = "") -> int:
        value = obj.get(key)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(prefix + key, f"must be a whole number, not {_shown(value)}")
        if not lo <= value <= hi:
            raise self.fail(prefix + key, f"{value} is outside {lo}..{hi}")
        return value

    def triple(
        self, obj: dict[str, Any], key: str, prefix: str, *, positive: bool
    ) -> tuple[float, float, float]:
        value: Any = obj.get(key)
        ok = isinstance(value, list) and len(value) == 3
        ok = ok and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
        if not ok:
            raise self.fail(prefix + key, f"must be 3 numbers (R, G, B), not {_shown(value)}")
        if not all(math.isfinite(v) and abs(v) <= 1e6 for v in value):
            raise self.fail(prefix + key, f"{value} holds a value that is not a finite number")
        if positive and not all(v > 0 for v in value):
            raise self.fail(prefix + key, f"{value} must be greater than 0 (it divides)")
        return (float(value[0]), float(value[1]), float(value[2]))

    def names(self, value: Any, field: str, limit: int) -> tuple[str, ...]:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(field, f"must be a list of names, not {_shown(value)}")
        if not 1 <= len(value) <= limit:
            raise self.fail(field, f"{len(value)} entries; allowed 1..{limit}")
        return tuple(value)

    def classes(
        self, value: Any, *, required: bool
    ) -> tuple[tuple[str, ...], tuple[int | None, ...]]:
        if value is None and not required:
            return (), ()
        if not isinstance(value, list) or not all(isinstance(c, dict) for c in value):
            raise self.fail("classes", f"must be a list of objects, not {_shown(value)}")
        if required and not value:
            raise self.fail("classes", "is empty; the model's outputs are per class")
        if len(value) > MAX_CLASSES:
            raise self.fail("classes", f"{len(value)} classes; at most {MAX_CLASSES}")
        names: list[str] = []
        ids: list[int | None] = []
        for i, c in enumerate(value):
            name, cid = c.get("name"), c.get("id")
            if not isinstance(name, str) or not name.strip():
                raise self.fail(
                    f"classes[{i}].name", f"must be a non-empty name, not {_shown(name)}"
                )
            if cid is not None and (isinstance(cid, bool) or not isinstance(cid, int)):
                raise self.fail(f"classes[{i}].id", f"must be a whole number, not {_shown(cid)}")
            names.append(name)
            ids.append(cid)
        dup = sorted(n for n, k in Counter(names).items() if k > 1)
        if dup:
            raise self.fail("classes", f"class names repeat: {', '.join(dup[:5])}")
        return tuple(names), tuple(ids)


def _shown(value: Any) -> str:
    """A short rendering of a JSON value for an error message."""
    text = json.dumps(value, ensure_ascii=False) if value is not None else "missing"
    return text if len(text) <= 40 else text[:37] + "..."
