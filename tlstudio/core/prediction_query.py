"""Per-image verdicts on a run's stored predictions: right or wrong against the
labels, and how unsure the model was (for "label these next" ordering).

Read-only SQL over the ``predictions`` table and the project's labels, so the
image browser can filter and sort without torch. Every predicted image of the
run gets a :class:`PredictionStatus`:

- ``correct``: True / False, or None when the image has no labels of the run's
  kind to compare with (no tags, no boxes, no landmark set of the run's
  template, no mask).
- ``uncertainty`` in [0, 1]: higher = the model was less sure = label this next.
  None only where it cannot be known (see *segment*).
- ``reason``: one short line for a tool tip.

Per task (class ids are database ids, coordinates image pixels):

classify
    Single-label: correct when the arg-max class is among the tags.
    Uncertainty = 1 − (p1 − p2), the margin between the two most probable
    classes. The margin, not the normalised entropy, because it is what decides
    the predicted class (0 margin = a coin flip between two classes), it does not
    depend on how many classes the project has, and a long tail of small
    probabilities does not inflate it. Multi-label projects (one sigmoid per
    class): correct when the set of classes with p ≥ ``score_threshold`` equals
    the tag set (the arg-max alone would call an image with a missed tag right);
    uncertainty = max over classes of 1 − |2p − 1| (1 at p = 0.5).
detect
    Predicted boxes with score ≥ ``score_threshold`` are matched greedily (best
    score first) to unmatched labelled boxes of the same class with the highest
    IoU ≥ ``iou``. Correct when every labelled box is matched and no such
    predicted box is left unmatched. Uncertainty = max over all predicted boxes
    (any score) of 1 − |2s − 1|: the box the model is least decided about;
    1 when there is no predicted box at all.
instances
    As detect, with objects for boxes and the IoU of their pixels (the stored object
    map against the labelled objects; one joint histogram of the two maps gives every
    pair's overlap). Images without labelled objects: correct None.
landmarks
    The run's template (``config["template_id"]``); the prediction is compared
    with each labelled set of that template on the image and the closest one
    counts. Error = mean Euclidean distance over the points labelled visible or
    occluded (visibility > 0), divided by the **image diagonal** (always defined,
    unlike the labelled points' bounding box, which degenerates for collinear
    points). Correct when that normalised error < 0.1. Uncertainty =
    1 − mean point confidence (confidences clipped to [0, 1]).
segment
    IoU per class over the classes present (non-zero) in the labelled or the
    predicted mask, averaged (1 when both are all background). Correct when that
    mean IoU ≥ 0.5; uncertainty = 1 − mean IoU. Unlabelled images (no mask):
    correct None and uncertainty **None** — the stored prediction keeps no
    per-pixel probabilities, so there is nothing to measure doubt with.
autoencode
    Correct is None (nothing to compare). Uncertainty = the image's rank among
    the run's reconstruction errors, normalised to [0, 1] (0 = smallest error,
    1 = largest; ties share their mean rank; a single image gets 0).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, cast

import cv2
import numpy as np

from .annotations import decode_mask
from .errors import ValidationError
from .project import Project

UNCERTAIN = 0.5  # uncertainty from which the browser calls a prediction "low confidence"
LANDMARK_TOLERANCE = 0.1  # landmarks: correct below this mean error / image diagonal
SEGMENT_MIN_IOU = 0.5  # segment: correct from this mean IoU


@dataclass(frozen=True)
class PredictionStatus:
    """Verdict on one image's stored prediction (see the module docstring)."""

    correct: bool | None  # None: no labels of the run's kind on the image
    uncertainty: float | None  # in [0, 1], higher = less sure; None = unknown
    reason: str  # one short line, e.g. "predicted square (p=0.62), labelled circle"

    @property
    def mark(self) -> str:
        """'✓' right, '✗' wrong, '·' nothing to compare with."""
        return "·" if self.correct is None else ("✓" if self.correct else "✗")


def prediction_status(
    project: Project, run_id: int, iou: float = 0.5, score_threshold: float = 0.5
) -> dict[int, PredictionStatus]:
    """Status of every image the run has a stored prediction for, by image id.

    ``iou``: detection match threshold; ``score_threshold``: detection boxes (and
    multi-label class probabilities) counted as predicted from this score.
    Raises :class:`ValidationError` for an unknown run or task."""
    conn = project.store.conn
    row = conn.execute("SELECT task, config FROM runs WHERE id = ?", (run_id,)).fetchone()
    if row is None:
        raise ValidationError(f"no run with id {run_id}")
    task, config = row[0], json.loads(row[1])
    if task == "classify":
        return _classify(project, run_id, score_threshold)
    if task == "detect":
        return _detect(project, run_id, iou, score_threshold)
    if task == "instances":
        return _instances(project, run_id, iou, score_threshold)
    if task == "landmarks":
        return _landmarks(project, run_id, config.get("template_id"))
    if task == "segment":
        return _segment(project, run_id)
    if task == "autoencode":
        return _autoencode(project, run_id)
    raise ValidationError(f"run {run_id}: unknown task {task!r}")


_PREDICTED = "SELECT image_id FROM predictions WHERE run_id = ?"
_UNREADABLE = PredictionStatus(None, None, "unreadable stored prediction")


def _payloads(project: Project, run_id: int) -> Iterable[tuple[int, dict[str, Any]]]:
    """(image id, stored payload) of a run's predictions; an unreadable payload comes as
    ``{}``, so reading any field of it fails with KeyError like a missing field."""
    for image_id, text in project.store.conn.execute(
        "SELECT image_id, payload FROM predictions WHERE run_id = ?", (run_id,)
    ):
        try:
            payload = json.loads(text)
        except ValueError:
            payload = None
        yield image_id, payload if isinstance(payload, dict) else {}


def _class_names(project: Project) -> dict[int, str]:
    return dict(project.store.conn.execute("SELECT id, name FROM classes"))


def _name(names: dict[int, str], class_id: int) -> str:
    return names.get(class_id, f"class {class_id}")


def _doubt(p: float) -> float:
    """1 − |2p − 1|: 1 at p = 0.5, 0 at p = 0 or 1."""
    return 1.0 - abs(2.0 * min(max(p, 0.0), 1.0) - 1.0)


# -- classify ---------------------------------------------------------------------------
def _classify(project: Project, run_id: int, threshold: float) -> dict[int, PredictionStatus]:
    conn = project.store.conn
    tags: dict[int, set[int]] = {}
    for image_id, class_id in conn.execute(
        f"SELECT image_id, class_id FROM tags WHERE image_id IN ({_PREDICTED})", (run_id,)
    ):
        tags.setdefault(image_id, set()).add(class_id)
    names = _class_names(project)
    multi = project.multi_label
    out: dict[int, PredictionStatus] = {}
    for image_id, payload in _payloads(project, run_id):
        try:
            probs = {int(k): float(v) for k, v in payload["probs"].items()}
        except (TypeError, KeyError, ValueError, AttributeError):
            out[image_id] = _UNREADABLE
            continue
        if not probs:
            out[image_id] = _UNREADABLE
            continue
        labelled = tags.get(image_id)
        if multi:
            out[image_id] = _multi_label(probs, labelled, threshold, names)
            continue
        best = max(probs, key=probs.__getitem__)
        p1 = probs[best]
        p2 = max((p for c, p in probs.items() if c != best), default=0.0)
        uncertainty = min(max(1.0 - (p1 - p2), 0.0), 1.0)
        said = f"predicted {_name(names, best)} (p={p1:.2f})"
        if not labelled:
            out[image_id] = PredictionStatus(None, uncertainty, f"{said}, no tag to compare")
        elif best in labelled:
            out[image_id] = PredictionStatus(True, uncertainty, said)
        else:
            tagged = ", ".join(sorted(_name(names, c) for c in labelled))
            out[image_id] = PredictionStatus(False, uncertainty, f"{said}, labelled {tagged}")
    return out


def _multi_label(
    probs: dict[int, float], labelled: set[int] | None, threshold: float, names: dict[int, str]
) -> PredictionStatus:
    predicted = {c for c, p in probs.items() if p >= threshold}
    uncertainty = max(_doubt(p) for p in probs.values())
    said = "predicted " + (", ".join(sorted(_name(names, c) for c in predicted)) or "no class")
    if not labelled:
        return PredictionStatus(None, uncertainty, f"{said}, no tag to compare")
    if predicted == labelled:
        return PredictionStatus(True, uncertainty, said)
    tagged = ", ".join(sorted(_name(names, c) for c in labelled))
    return PredictionStatus(False, uncertainty, f"{said}, labelled {tagged}")


# -- detect ----------------------------------------------------------------------------------
def box_iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """Intersection over union of two (x1, y1, x2, y2) boxes; 0 when either is empty."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _detect(
    project: Project, run_id: int, iou: float, threshold: float
) -> dict[int, PredictionStatus]:
    gt: dict[int, list[tuple[int, tuple[float, float, float, float]]]] = {}
    for image_id, class_id, *xyxy in project.store.conn.execute(
        f"SELECT image_id, class_id, x1, y1, x2, y2 FROM boxes WHERE image_id IN ({_PREDICTED})",
        (run_id,),
    ):
        gt.setdefault(image_id, []).append((class_id, tuple(xyxy)))
    out: dict[int, PredictionStatus] = {}
    for image_id, payload in _payloads(project, run_id):
        try:
            boxes = [
                (int(b["class_id"]), float(b["score"]), tuple(float(v) for v in b["xyxy"]))
                for b in payload["boxes"]
            ]
        except (TypeError, KeyError, ValueError):
            out[image_id] = _UNREADABLE
            continue
        uncertainty = max((_doubt(s) for _c, s, _b in boxes), default=1.0)
        kept = sorted((b for b in boxes if b[1] >= threshold), key=lambda b: -b[1])
        labelled = gt.get(image_id, [])
        if not labelled:
            said = f"{len(kept)} box{'es' if len(kept) != 1 else ''} predicted, none labelled"
            out[image_id] = PredictionStatus(None, uncertainty, said)
            continue
        # xyxy is not checked to hold 4 numbers (a stored payload could hold more)
        found, extra = _greedy(
            kept, labelled,
            lambda a, b: box_iou(cast(tuple[float, float, float, float], a), b), iou,
        )  # fmt: skip
        said = f"{found} of {len(labelled)} labelled boxes found"
        if extra:
            said += f", {extra} extra"
        out[image_id] = PredictionStatus(found == len(labelled) and not extra, uncertainty, said)
    return out


def _greedy(
    predicted: list[tuple[int, float, Any]], labelled: list[tuple[int, Any]], iou_of: Any,
    iou: float,
) -> tuple[int, int]:  # fmt: skip
    """(labelled items found, predicted items extra) when (class, score, key) predictions,
    best score first, take the unmatched labelled (class, key) item of their class with
    the highest ``iou_of(pred key, label key)`` ≥ ``iou``."""
    free = list(range(len(labelled)))
    extra = 0
    for class_id, _score, key in predicted:
        best, best_iou = None, iou
        for j in free:
            if labelled[j][0] == class_id:
                v = iou_of(key, labelled[j][1])
                if v >= best_iou:
                    best, best_iou = j, v
        if best is None:
            extra += 1
        else:
            free.remove(best)
    return len(labelled) - len(free), extra


def _instances(
    project: Project, run_id: int, iou: float, threshold: float
) -> dict[int, PredictionStatus]:
    conn = project.store.conn
    out: dict[int, PredictionStatus] = {}
    for image_id, text, png in conn.execute(
        "SELECT image_id, payload, mask FROM predictions WHERE run_id = ?", (run_id,)
    ):
        try:
            objects = [
                (int(o["class_id"]), float(o["score"]), int(o["number"]))
                for o in json.loads(text)["objects"]
            ]
            predicted = None if png is None else decode_mask(png)
        except (TypeError, KeyError, ValueError):
            out[image_id] = _UNREADABLE
            continue
        if predicted is not None:  # objects that lost every pixel to better ones are none
            counts = np.bincount(predicted.ravel())
            objects = [o for o in objects if o[2] < len(counts) and counts[o[2]]]
        uncertainty = max((_doubt(s) for _c, s, _n in objects), default=1.0)
        kept = sorted((o for o in objects if o[1] >= threshold), key=lambda o: -o[1])
        layer = project.instances.layer(image_id)
        if layer is None:
            said = f"{len(kept)} object{'s' if len(kept) != 1 else ''} predicted, none labelled"
            out[image_id] = PredictionStatus(None, uncertainty, said)
            continue
        if predicted is None or predicted.shape != layer.map.shape:
            predicted = np.zeros(layer.map.shape, np.uint16)
        k = max(int(predicted.max()), max((o[2] for o in objects), default=0)) + 1
        g = int(layer.map.max()) + 1
        joint = np.bincount(
            layer.map.ravel().astype(np.int64) * k + predicted.ravel(), minlength=g * k
        ).reshape(g, k)
        union = joint.sum(1)[:, None] + joint.sum(0)[None, :] - joint
        ious = np.divide(joint, union, out=np.zeros(joint.shape), where=union > 0)
        labelled = [(o.class_id, o.number) for o in layer.objects]
        found, extra = _greedy(kept, labelled, lambda p, lab, m=ious: float(m[lab, p]), iou)
        said = f"{found} of {len(labelled)} labelled objects found"
        if extra:
            said += f", {extra} extra"
        out[image_id] = PredictionStatus(found == len(labelled) and not extra, uncertainty, said)
    return out


# -- landmarks ---------------------------------------------------------------------------------
def _landmarks(
    project: Project, run_id: int, template_id: int | None
) -> dict[int, PredictionStatus]:
    conn = project.store.conn
    sets: dict[int, list[list[Any]]] = {}
    sql = (
        f"SELECT image_id, template_id, points FROM landmark_sets WHERE image_id IN ({_PREDICTED})"
    )
    for image_id, tid, points in conn.execute(sql, (run_id,)):
        if template_id is None or tid == template_id:
            sets.setdefault(image_id, []).append(json.loads(points))
    sizes = {
        i: (w, h)
        for i, w, h in conn.execute(
            f"SELECT id, width, height FROM images WHERE id IN ({_PREDICTED})", (run_id,)
        )
    }
    out: dict[int, PredictionStatus] = {}
    for image_id, payload in _payloads(project, run_id):
        try:
            pts = [(float(x), float(y), float(c)) for x, y, c in payload["points"]]
        except (TypeError, KeyError, ValueError):
            out[image_id] = _UNREADABLE
            continue
        conf = [min(max(c, 0.0), 1.0) for _x, _y, c in pts]
        uncertainty = 1.0 - sum(conf) / len(conf) if conf else 1.0
        errors = []
        for labelled in sets.get(image_id, []):
            if len(labelled) != len(pts):
                continue
            d = [
                math.hypot(px - lx, py - ly)
                for (px, py, _c), (lx, ly, v) in zip(pts, labelled, strict=True)
                if v > 0
            ]
            if d:
                errors.append(sum(d) / len(d))
        w, h = sizes.get(image_id, (0, 0))
        if not errors or not (w and h):
            said = f"mean confidence {1 - uncertainty:.2f}, no labelled points to compare"
            out[image_id] = PredictionStatus(None, uncertainty, said)
            continue
        err = min(errors)
        rel = err / math.hypot(w, h)
        said = f"mean error {err:.1f} px ({100 * rel:.1f}% of the image diagonal)"
        out[image_id] = PredictionStatus(rel < LANDMARK_TOLERANCE, uncertainty, said)
    return out


# -- segment ---------------------------------------------------------------------------------
def mean_iou(label: np.ndarray, predicted: np.ndarray) -> float:
    """Mean IoU over the non-zero class ids present in either H×W label map
    (1.0 when both are all background)."""
    k = int(max(label.max(initial=0), predicted.max(initial=0))) + 1
    # one pass: joint histogram of (label, predicted) class ids
    joint = np.bincount(
        label.ravel().astype(np.int64) * k + predicted.ravel(), minlength=k * k
    ).reshape(k, k)
    inter = np.diag(joint)[1:]
    union = joint.sum(1)[1:] + joint.sum(0)[1:] - inter
    present = union > 0
    return float(np.mean(inter[present] / union[present])) if present.any() else 1.0


# mean IoU by (label PNG digest, prediction PNG digest): a recompute after an edit
# decodes only the masks that changed (about 2 ms per 256 px image pair otherwise)
_IOU_CACHE: dict[tuple[bytes, bytes], float] = {}
_IOU_CACHE_SIZE = 100_000


def _cached_iou(label_png: bytes, predicted_png: bytes) -> float:
    key = (
        hashlib.blake2b(label_png, digest_size=16).digest(),
        hashlib.blake2b(predicted_png, digest_size=16).digest(),
    )
    found = _IOU_CACHE.get(key)
    if found is not None:
        return found
    predicted, label = decode_mask(predicted_png), decode_mask(label_png)
    if predicted.shape != label.shape:  # predictions are stored in the image frame
        h, w = label.shape
        predicted = cv2.resize(predicted, (w, h), interpolation=cv2.INTER_NEAREST)
    m = mean_iou(label, predicted)
    if len(_IOU_CACHE) >= _IOU_CACHE_SIZE:
        _IOU_CACHE.clear()
    _IOU_CACHE[key] = m
    return m


def _segment(project: Project, run_id: int) -> dict[int, PredictionStatus]:
    conn = project.store.conn
    labels = dict(
        conn.execute(f"SELECT image_id, png FROM masks WHERE image_id IN ({_PREDICTED})", (run_id,))
    )
    out: dict[int, PredictionStatus] = {}
    for image_id, png in conn.execute(
        "SELECT image_id, mask FROM predictions WHERE run_id = ?", (run_id,)
    ):
        if png is None:
            out[image_id] = _UNREADABLE
            continue
        if image_id not in labels:
            out[image_id] = PredictionStatus(None, None, "no mask labelled: accuracy unknown")
            continue
        try:
            m = _cached_iou(labels[image_id], png)
        except ValidationError:
            out[image_id] = _UNREADABLE
            continue
        out[image_id] = PredictionStatus(m >= SEGMENT_MIN_IOU, 1.0 - m, f"mean IoU {m:.2f}")
    return out


# -- autoencode ---------------------------------------------------------------------------------
def _autoencode(project: Project, run_id: int) -> dict[int, PredictionStatus]:
    errors: dict[int, float] = {}
    out: dict[int, PredictionStatus] = {}
    for image_id, payload in _payloads(project, run_id):
        try:
            errors[image_id] = float(payload["error"])
        except (TypeError, KeyError, ValueError):
            out[image_id] = _UNREADABLE
    if not errors:
        return out
    ids = list(errors)
    values = np.array([errors[i] for i in ids])
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(ids))
    ranks[order] = np.arange(len(ids))
    _, group = np.unique(values, return_inverse=True)  # ties share their mean rank
    ranks = (np.bincount(group, weights=ranks) / np.bincount(group))[group]
    scale = max(len(ids) - 1, 1)
    for i, image_id in enumerate(ids):
        u = float(ranks[i] / scale)
        said = f"reconstruction error {values[i]:.4g} (rank {100 * u:.0f}% from lowest)"
        out[image_id] = PredictionStatus(None, u, said)
    return out
