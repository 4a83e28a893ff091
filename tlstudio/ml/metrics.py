"""Evaluation metrics for the tasks, in numpy (no Qt, no torch import).

Inputs follow :mod:`tlstudio.ml.tasks.base`; every array argument may be a torch
tensor (any device), a numpy array or a nested list. All coordinates (boxes,
keypoints, masks) must be in one pixel frame per image, prediction and target alike
(during training: network-input pixels).

Class-index convention
    Classes are reported as 0..C-1, the positions in the project's class order.
    Classification labels are 0..C-1. For *detection* the two sides differ, exactly
    as the task contract says: predicted ``"labels"`` are 0..C-1 while target
    ``"labels"`` are 1..C (0 = background); :func:`detection_metrics` subtracts 1 from
    target labels (``target_label_base=1``) and rejects labels outside the expected
    range instead of guessing. *Segmentation* masks use 0 = background and 1..C on
    both sides; per-class tables there list the background as index 0 and class i at
    index i + 1 (its ``"class"`` field still says i).

Return values
    The full functions return JSON-serialisable dicts (Python floats/ints, lists,
    ``None`` and strings; a metric that is undefined is ``None`` in a table and NaN
    in a flat dict). :func:`metrics_fn_for` builds the trainer's ``metrics_fn``,
    which returns a flat ``dict[str, float]`` whose keys do not depend on the data,
    so curves stay continuous; undefined values are NaN (the trainer never picks a
    non-finite value as best). Which values it keeps per task is the table
    ``_FLAT_METRICS`` at the end of this module.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from tlstudio.runtime.objects import ObjectMask, grid_offset, paste_objects

__all__ = [
    "COCO_IOU_THRESHOLDS",
    "COCO_RECALL_THRESHOLDS",
    "MAIN_METRIC",
    "box_iou",
    "classification_metrics",
    "cross_validation_summary",
    "detection_metrics",
    "instance_metrics",
    "landmark_metrics",
    "mask_iou",
    "metrics_fn_for",
    "multilabel_metrics",
    "reconstruction_metrics",
    "segmentation_metrics",
]

#: IoU thresholds .50:.05:.95 and recall points 0:.01:1, built exactly as pycocotools does
COCO_IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
COCO_RECALL_THRESHOLDS = np.linspace(0.0, 1.0, int(np.round((1.0 - 0.0) / 0.01)) + 1, endpoint=True)

_NAN = float("nan")


# --------------------------------------------------------------------------- helpers


def _np(x: Any, dtype: Any = None) -> np.ndarray:
    """A numpy copy-or-view of a tensor / array / list (tensors are detached, moved to CPU)."""
    if hasattr(x, "detach"):  # torch.Tensor, without importing torch
        x = x.detach()
        if getattr(x, "dtype", None) is not None and str(x.dtype) == "torch.bfloat16":
            x = x.float()
        x = x.cpu().numpy()
    arr = np.asarray(x)
    return arr.astype(dtype, copy=False) if dtype is not None else arr


def _f(x: float | np.floating | None) -> float | None:
    """A plain float, or None for None/NaN (table entries)."""
    if x is None:
        return None
    v = float(x)
    return None if math.isnan(v) else v


def _nan(x: float | None) -> float:
    """Table value -> flat value (None -> NaN)."""
    return _NAN if x is None else float(x)


def _div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den elementwise, 0 where den == 0 (the zero_division=0 convention)."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.zeros(np.broadcast(num, den).shape, dtype=np.float64)
    np.divide(num, den, out=out, where=den != 0)
    return out


def _names(class_names: Sequence[str] | None, n: int) -> list[str]:
    if class_names is None:
        return [str(i) for i in range(n)]
    names = [str(c) for c in class_names]
    if len(names) != n:
        raise ValueError(f"{len(names)} class names for {n} classes")
    return names


def _midranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of ``x``, ties getting the average of their ranks."""
    n = len(x)
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    starts = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1]])
    ends = np.r_[starts[1:], n]
    ranks = np.empty(n, dtype=np.float64)
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    return ranks


def _binary_auc(positive: np.ndarray, score: np.ndarray) -> float | None:
    """Area under the ROC curve (Mann-Whitney U with mid-ranks for ties, which equals
    the trapezoidal ROC area); None when one of the two groups is empty.

    Not scikit-learn's ``roc_auc_score``: that raises on NaN scores (a diverging model's
    validation pass) and differs from this in the last bit in about a third of cases."""
    positive = positive.astype(bool)
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = _midranks(np.asarray(score, dtype=np.float64))
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def _prf(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> tuple[np.ndarray, ...]:
    precision = _div(tp, tp + fp)
    recall = _div(tp, tp + fn)
    f1 = _div(2 * precision * recall, precision + recall)
    return precision, recall, f1


def _mean(values: Iterable[float | None]) -> float | None:
    vals = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    return float(np.mean(vals)) if vals else None


# --------------------------------------------------------------------------- classification


def classification_metrics(
    probs: Any, labels: Any, class_names: Sequence[str] | None = None
) -> dict[str, Any]:
    """Single-label classification metrics.

    ``probs`` is N×C scores (the prediction is the arg-max), ``labels`` N true class
    indices 0..C-1. Returns ``accuracy``, ``balanced_accuracy`` (mean recall over the
    classes present in ``labels``), per-class ``precision``/``recall``/``f1``/``support``
    in ``per_class`` (a ratio with a zero denominator is 0, as in scikit-learn's
    ``zero_division=0``), their macro means ``precision_macro``/``recall_macro``/
    ``f1_macro`` over the classes that occur in the labels *or* the predictions (a class
    absent from both has no meaningful score and is left out), ``confusion_matrix``
    (C×C ints, rows = true class, columns = predicted class), and ``roc_auc``: the
    macro one-vs-rest ROC-AUC from each class's own score column, or None with
    ``roc_auc_reason`` when a class has no example in ``labels`` (or C < 2).
    ``roc_auc_per_class`` lists each class's one-vs-rest AUC (None where undefined).
    """
    p = _np(probs, np.float64)
    y = _np(labels).reshape(-1)
    if p.ndim == 1 and p.size == 0:
        p = p.reshape(0, len(class_names) if class_names is not None else 0)
    if p.ndim != 2:
        raise ValueError(f"probs must be N×C, got shape {p.shape}")
    n, c = p.shape
    if len(y) != n:
        raise ValueError(f"{n} score rows but {len(y)} labels")
    y = y.astype(np.int64)
    if n and (y.min() < 0 or y.max() >= c):
        raise ValueError(f"labels must be in 0..{c - 1}, got {y.min()}..{y.max()}")
    names = _names(class_names, c)

    pred = p.argmax(axis=1) if n else np.zeros(0, dtype=np.int64)
    cm = np.bincount(y * c + pred, minlength=c * c).reshape(c, c)
    tp = np.diag(cm)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    precision, recall, f1 = _prf(tp, predicted - tp, support - tp)
    active = (support > 0) | (predicted > 0)

    aucs = [_binary_auc(y == k, p[:, k]) for k in range(c)]
    missing = [names[k] for k in range(c) if support[k] == 0]
    if c < 2:
        roc_auc, reason = None, "ROC-AUC needs at least two classes"
    elif missing:
        roc_auc = None
        reason = "no example of class " + ", ".join(repr(m) for m in missing) + " in the labels"
    elif n and len(np.unique(y)) < 2:
        roc_auc, reason = None, "the labels hold a single class"
    else:
        roc_auc, reason = _mean(aucs), None

    return {
        "n": int(n),
        "class_names": names,
        "accuracy": float(tp.sum() / n) if n else None,
        "balanced_accuracy": _mean(recall[support > 0]) if n else None,
        "precision_macro": _mean(precision[active]),
        "recall_macro": _mean(recall[active]),
        "f1_macro": _mean(f1[active]),
        "per_class": [
            {
                "class": k,
                "name": names[k],
                "precision": float(precision[k]),
                "recall": float(recall[k]),
                "f1": float(f1[k]),
                "support": int(support[k]),
                "predicted": int(predicted[k]),
            }
            for k in range(c)
        ],
        "confusion_matrix": cm.astype(int).tolist(),
        "roc_auc": roc_auc,
        "roc_auc_reason": reason,
        "roc_auc_per_class": aucs,
    }


def multilabel_metrics(
    probs: Any,
    targets: Any,
    threshold: float = 0.5,
    class_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Multi-label classification metrics.

    ``probs`` N×C independent class probabilities, ``targets`` N×C multi-hot (a target
    ≥ 0.5 counts as positive); a class is predicted when its probability ≥
    ``threshold``. Returns per-class ``precision``/``recall``/``f1``/``support``/``roc_auc``
    (``per_class``), ``f1_macro``/``precision_macro``/``recall_macro`` (mean over the
    classes with a positive in the targets or the predictions; None if there is none),
    ``f1_micro``, ``subset_accuracy`` (rows whose whole label set is exactly right),
    ``hamming_accuracy`` (fraction of correct (row, class) decisions) and ``roc_auc``,
    the mean of the per-class ROC-AUCs that are defined (a class needs both positive
    and negative rows; None if no class qualifies, ``roc_auc_undefined`` names those
    left out).
    """
    p = _np(probs, np.float64)
    t = _np(targets, np.float64)
    if p.ndim != 2 or p.shape != t.shape:
        raise ValueError(f"probs and targets must both be N×C, got {p.shape} and {t.shape}")
    n, c = p.shape
    names = _names(class_names, c)
    truth = t >= 0.5
    pred = p >= threshold
    tp = (pred & truth).sum(axis=0)
    fp = (pred & ~truth).sum(axis=0)
    fn = (~pred & truth).sum(axis=0)
    precision, recall, f1 = _prf(tp, fp, fn)
    active = (tp + fp + fn) > 0
    mp, mr, mf = _prf(np.array(tp.sum()), np.array(fp.sum()), np.array(fn.sum()))
    aucs = [_binary_auc(truth[:, k], p[:, k]) for k in range(c)]
    return {
        "n": int(n),
        "class_names": names,
        "threshold": float(threshold),
        "f1_macro": _mean(f1[active]),
        "precision_macro": _mean(precision[active]),
        "recall_macro": _mean(recall[active]),
        "f1_micro": float(mf) if tp.sum() + fp.sum() + fn.sum() else None,
        "precision_micro": float(mp) if tp.sum() + fp.sum() + fn.sum() else None,
        "recall_micro": float(mr) if tp.sum() + fp.sum() + fn.sum() else None,
        "subset_accuracy": float(np.all(pred == truth, axis=1).mean()) if n else None,
        "hamming_accuracy": float((pred == truth).mean()) if n and c else None,
        "per_class": [
            {
                "class": k,
                "name": names[k],
                "precision": float(precision[k]),
                "recall": float(recall[k]),
                "f1": float(f1[k]),
                "support": int(truth[:, k].sum()),
                "predicted": int(pred[:, k].sum()),
                "roc_auc": aucs[k],
            }
            for k in range(c)
        ],
        "roc_auc": _mean(aucs),
        "roc_auc_undefined": [names[k] for k in range(c) if aucs[k] is None],
    }


# --------------------------------------------------------------------------- detection


def _boxes(x: Any) -> np.ndarray:
    b = _np(x, np.float64)
    return b.reshape(-1, 4)


def box_iou(a: Any, b: Any) -> np.ndarray:
    """IoU matrix (len(a)×len(b)) of xyxy boxes, areas w·h without the +1 pixel
    convention, as pycocotools computes it; 0 where the union is empty."""
    a, b = _boxes(a), _boxes(b)
    wa = np.clip(a[:, 2] - a[:, 0], 0, None)
    ha = np.clip(a[:, 3] - a[:, 1], 0, None)
    wb = np.clip(b[:, 2] - b[:, 0], 0, None)
    hb = np.clip(b[:, 3] - b[:, 1], 0, None)
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    union = (wa * ha)[:, None] + (wb * hb)[None, :] - inter
    return _div(inter, union)


def _match(ious: np.ndarray, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """COCO greedy matching of score-sorted detections (rows) to ground truth (columns).

    For each threshold and each detection in score order, the unmatched ground-truth
    box with the highest IoU ≥ threshold is taken (ties: the later one, as in
    pycocotools). Returns ``matched`` T×D bool and ``matched_iou`` T×D (0 if unmatched).
    """
    nt = len(thresholds)
    nd, ng = ious.shape
    matched = np.zeros((nt, nd), dtype=bool)
    matched_iou = np.zeros((nt, nd), dtype=np.float64)
    if nd == 0 or ng == 0:
        return matched, matched_iou
    for ti, thr in enumerate(thresholds):
        best = min(float(thr), 1 - 1e-10)
        taken = np.zeros(ng, dtype=bool)
        for d in range(nd):
            row = np.where(taken, -1.0, ious[d])
            g = ng - 1 - int(np.argmax(row[::-1]))  # last index of the maximum
            if row[g] >= best:
                taken[g] = True
                matched[ti, d] = True
                matched_iou[ti, d] = row[g]
    return matched, matched_iou


def _average_precision(
    scores: np.ndarray, matched: np.ndarray, n_gt: int, rec_thrs: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """COCO AP per IoU threshold from all detections of one class (T×D ``matched``):
    precision made monotone (right-to-left running max), sampled at ``rec_thrs``
    (first detection reaching each recall; 0 beyond the last recall), averaged.
    Returns (AP per threshold, final recall per threshold)."""
    nt = matched.shape[0]
    if len(scores) == 0:
        return np.zeros(nt), np.zeros(nt)
    order = np.argsort(-scores, kind="mergesort")
    m = matched[:, order]
    tp = np.cumsum(m, axis=1, dtype=np.float64)
    fp = np.cumsum(~m, axis=1, dtype=np.float64)
    ap = np.zeros(nt)
    rec = np.zeros(nt)
    nd = len(scores)
    for ti in range(nt):
        rc = tp[ti] / n_gt
        pr = tp[ti] / (tp[ti] + fp[ti] + np.spacing(1))
        pr = np.maximum.accumulate(pr[::-1])[::-1]
        idx = np.searchsorted(rc, rec_thrs, side="left")
        q = np.where(idx < nd, pr[np.minimum(idx, nd - 1)], 0.0)
        ap[ti] = q.mean()
        rec[ti] = rc[-1]
    return ap, rec


def _labels_checked(labels: Any, base: int, c: int, what: str) -> np.ndarray:
    out = _np(labels, np.int64).reshape(-1) - base
    if len(out) and (out.min() < 0 or out.max() >= c):
        raise ValueError(f"{what} must be in {base}..{base + c - 1}, got {out + base}")
    return out


def detection_metrics(
    preds: Sequence[Mapping[str, Any]],
    targets: Sequence[Mapping[str, Any]],
    num_classes: int,
    class_names: Sequence[str] | None = None,
    *,
    max_dets: int = 100,
    target_label_base: int = 1,
    pred_label_base: int = 0,
) -> dict[str, Any]:
    """COCO-style box mAP, computed in numpy.

    ``preds[i]`` holds "boxes" K×4 xyxy, "scores" K and "labels" K in
    ``pred_label_base``..``pred_label_base + C - 1`` (0..C-1, the task contract);
    ``targets[i]`` holds "boxes" and "labels" in ``target_label_base``..(1..C,
    0 = background). Both are reduced to class indices 0..C-1; out-of-range labels
    raise ValueError. Boxes of one image share one pixel frame.

    Protocol (pycocotools' ``COCOeval`` for bbox, area range "all", no crowd):
    per image and class the ``max_dets`` best-scoring detections are greedily
    matched in score order to the unmatched ground truth of that class with the
    highest IoU ≥ t, for t in .50:.05:.95; per class, detections of all images are
    ranked by score, the precision envelope is sampled at 101 recall points and
    averaged; a class's AP counts only if the class has ground truth (classes with
    none, including those with only false positives, are ignored).

    Returns ``map`` (AP@[.5:.95]), ``map50``, ``map75`` (None when no class has ground
    truth), ``mean_iou`` (mean IoU of the detections matched at IoU ≥ .5; None if
    none), ``per_class`` rows (``class``, ``name``, ``ap``, ``ap50``, ``ap75``,
    ``recall50`` = recall at IoU .5 with all ``max_dets`` detections, ``num_gt``,
    ``num_pred``) and the counts ``num_images``, ``num_gt``, ``num_pred``.
    """
    if len(preds) != len(targets):
        raise ValueError(f"{len(preds)} predictions but {len(targets)} targets")
    c = int(num_classes)
    images: list[_Scored] = []
    for i, (pr, tg) in enumerate(zip(preds, targets, strict=True)):
        gb = _boxes(tg.get("boxes", np.zeros((0, 4))))
        gl = _labels_checked(
            tg.get("labels", np.zeros(0)), target_label_base, c, f"target {i}: box labels"
        )
        db = _boxes(pr.get("boxes", np.zeros((0, 4))))
        ds = _np(pr.get("scores", np.zeros(0)), np.float64).reshape(-1)
        dl = _labels_checked(
            pr.get("labels", np.zeros(0)), pred_label_base, c, f"prediction {i}: labels"
        )
        if len(gb) != len(gl):
            raise ValueError(f"target {i}: {len(gb)} boxes but {len(gl)} labels")
        if not len(db) == len(ds) == len(dl):
            raise ValueError(f"prediction {i}: {len(db)} boxes, {len(ds)} scores, {len(dl)} labels")
        images.append(_Scored(gl, dl, ds, partial(_box_iou_at, db, gb)))
    return _coco_table(images, c, _names(class_names, c), max_dets)


def _box_iou_at(db: np.ndarray, gb: np.ndarray, d: np.ndarray, g: np.ndarray) -> np.ndarray:
    """IoU of detection boxes ``db[d]`` with ground-truth boxes ``gb[g]`` (see
    :attr:`_Scored.iou`)."""
    return box_iou(db[d], gb[g])


def _mask_iou_at(
    dets: Sequence[ObjectMask], gts: Sequence[ObjectMask], d: np.ndarray, g: np.ndarray
) -> np.ndarray:
    """IoU of detected objects ``dets[d]`` with ground-truth objects ``gts[g]`` (see
    :attr:`_Scored.iou`)."""
    return mask_iou([dets[k] for k in d], [gts[k] for k in g])


@dataclass(frozen=True)
class _Scored:
    """One image for :func:`_coco_table`: ground-truth classes ``gl`` (0..C-1),
    detection classes ``dl`` and scores ``ds``, and ``iou(det indices, gt indices)``
    → their IoU matrix (detections × ground truth)."""

    gl: np.ndarray
    dl: np.ndarray
    ds: np.ndarray
    iou: Callable[[np.ndarray, np.ndarray], np.ndarray]


def _coco_table(
    images: Sequence[_Scored], c: int, names: list[str], max_dets: int
) -> dict[str, Any]:
    """COCO AP over ``images`` (see :func:`detection_metrics` for the protocol and the
    result), whatever the IoU is between (boxes, or object pixels)."""
    thrs = COCO_IOU_THRESHOLDS
    nt = len(thrs)
    scores: list[list[np.ndarray]] = [[] for _ in range(c)]
    matches: list[list[np.ndarray]] = [[] for _ in range(c)]
    n_gt = np.zeros(c, dtype=np.int64)
    n_pred = np.zeros(c, dtype=np.int64)
    matched_ious: list[np.ndarray] = []

    for im in images:
        for k in np.unique(np.r_[im.gl, im.dl]):
            g = np.flatnonzero(im.gl == k)
            n_gt[k] += len(g)
            sel = np.flatnonzero(im.dl == k)
            if len(sel) == 0:
                continue
            sel = sel[np.argsort(-im.ds[sel], kind="mergesort")][:max_dets]
            n_pred[k] += len(sel)
            m, m_iou = _match(im.iou(sel, g), thrs)
            scores[k].append(im.ds[sel])
            matches[k].append(m)
            matched_ious.append(m_iou[0][m[0]])

    ap = np.full((nt, c), np.nan)
    rec = np.full((nt, c), np.nan)
    for k in range(c):
        if n_gt[k] == 0:
            continue
        s = np.concatenate(scores[k]) if scores[k] else np.zeros(0)
        m = np.concatenate(matches[k], axis=1) if matches[k] else np.zeros((nt, 0), dtype=bool)
        ap[:, k], rec[:, k] = _average_precision(s, m, int(n_gt[k]), COCO_RECALL_THRESHOLDS)

    has_gt = n_gt > 0
    i75 = int(np.argmin(np.abs(thrs - 0.75)))
    all_ious = np.concatenate(matched_ious) if matched_ious else np.zeros(0)
    return {
        "map": float(ap[:, has_gt].mean()) if has_gt.any() else None,
        "map50": float(ap[0, has_gt].mean()) if has_gt.any() else None,
        "map75": float(ap[i75, has_gt].mean()) if has_gt.any() else None,
        "mean_iou": float(all_ious.mean()) if len(all_ious) else None,
        "per_class": [
            {
                "class": k,
                "name": names[k],
                "ap": _f(ap[:, k].mean()) if has_gt[k] else None,
                "ap50": _f(ap[0, k]),
                "ap75": _f(ap[i75, k]),
                "recall50": _f(rec[0, k]),
                "num_gt": int(n_gt[k]),
                "num_pred": int(n_pred[k]),
            }
            for k in range(c)
        ],
        "class_names": names,
        "num_images": len(images),
        "num_gt": int(n_gt.sum()),
        "num_pred": int(n_pred.sum()),
        "max_dets": int(max_dets),
    }


# --------------------------------------------------------------------------- instances

#: a detection with at least this fraction of its pixels in an ignore region (or a crowd
#: object) is left out of mask AP, as COCO leaves out detections matched to crowds
IGNORED_FRACTION = 0.5


def _without(o: ObjectMask, ignore: np.ndarray | None) -> tuple[ObjectMask, float]:
    """(the object without the ignored pixels, the fraction of its pixels ignored)."""
    h, w = o.crop.shape
    if ignore is None or not h or not w:
        return o, 0.0
    window = ignore[o.y0 : o.y0 + h, o.x0 : o.x0 + w]
    hit = o.crop & window
    n = int(o.crop.sum())
    if not n or not hit.any():
        return o, 0.0
    return ObjectMask(o.x0, o.y0, o.crop & ~window), float(hit.sum()) / n


def mask_iou(dets: Sequence[ObjectMask], gts: Sequence[ObjectMask]) -> np.ndarray:
    """IoU matrix (len(dets)×len(gts)) of objects' pixels (pycocotools' segm IoU without
    crowds); 0 where the union is empty. Objects of one image share one pixel frame."""
    out = np.zeros((len(dets), len(gts)))
    areas_g = [g.area for g in gts]
    for i, d in enumerate(dets):
        dh, dw = d.crop.shape
        area_d = d.area
        for j, g in enumerate(gts):
            gh, gw = g.crop.shape
            x0, y0 = max(d.x0, g.x0), max(d.y0, g.y0)
            x1, y1 = min(d.x0 + dw, g.x0 + gw), min(d.y0 + dh, g.y0 + gh)
            inter = 0
            if x0 < x1 and y0 < y1:
                a = d.crop[y0 - d.y0 : y1 - d.y0, x0 - d.x0 : x1 - d.x0]
                b = g.crop[y0 - g.y0 : y1 - g.y0, x0 - g.x0 : x1 - g.x0]
                inter = int(np.count_nonzero(a & b))
            union = area_d + areas_g[j] - inter
            out[i, j] = inter / union if union else 0.0
    return out


def _target_objects(tg: Mapping[str, Any]) -> tuple[list[ObjectMask], tuple[int, int]]:
    """A target's objects and its frame (height, width): "objects" (ObjectMasks) with
    "image_size", or "masks" K×H×W."""
    if "objects" in tg:
        hw = tuple(int(v) for v in tg["image_size"])
        return list(tg["objects"]), (hw[0], hw[1])
    masks = _np(tg["masks"]).astype(bool)
    return [ObjectMask.from_mask(m) for m in masks], (int(masks.shape[-2]), int(masks.shape[-1]))


def _pred_objects(pr: Mapping[str, Any], hw: tuple[int, int]) -> list[ObjectMask]:
    """A prediction's objects: "objects" as given, or "mask_probs" pasted over "boxes" in
    the target's frame (network-input pixels: the grid sits half a pixel off the box)."""
    if "objects" in pr:
        return list(pr["objects"])
    return paste_objects(
        _np(pr["mask_probs"], np.float32), _boxes(pr["boxes"]), hw, grid_offset(hw, hw)
    )


def instance_matches(
    pred: Mapping[str, Any], target: Mapping[str, Any]
) -> tuple[list[ObjectMask], list[ObjectMask], np.ndarray]:
    """(predicted objects, ground-truth objects, kept detections) of one image with the
    pixels of its ignore region ("ignore", H×W bool) taken out of both; detections
    mostly in it (:data:`IGNORED_FRACTION`) are not kept."""
    gts, hw = _target_objects(target)
    dets = _pred_objects(pred, hw)
    ignore = target.get("ignore")
    ignore = None if ignore is None else _np(ignore).astype(bool).reshape(hw)
    gts = [_without(g, ignore)[0] for g in gts]
    kept, cleaned = [], []
    for d in dets:
        dc, frac = _without(d, ignore)
        kept.append(frac < IGNORED_FRACTION)
        cleaned.append(dc)
    return cleaned, gts, np.array(kept, dtype=bool)


def instance_metrics(
    preds: Sequence[Mapping[str, Any]],
    targets: Sequence[Mapping[str, Any]],
    num_classes: int,
    class_names: Sequence[str] | None = None,
    *,
    max_dets: int = 100,
) -> dict[str, Any]:
    """COCO mask AP ("segm") and box AP of instance predictions, in numpy.

    ``preds[i]``: "boxes", "scores", "labels" (0..C-1) as for detection, and per object
    either "mask_probs" (M×M grids, pasted in the target's frame) or "objects"
    (:class:`~tlstudio.runtime.objects.ObjectMask`). ``targets[i]``: "labels" (1..C),
    "boxes", and "masks" K×H×W or "objects" with "image_size" (H, W); optionally
    "ignore" (H×W bool): its pixels count for no object, and detections mostly inside
    it are left out (crowds belong there too).

    Matching and averaging are :func:`detection_metrics`' with the IoU of the objects'
    pixels. Returns ``segm_map``, ``segm_map50``, ``segm_map75``, ``segm_mean_iou``,
    the box figures ``map``, ``map50``, ``map75``, and ``per_class`` rows (``class``,
    ``name``, ``segm_ap``, ``segm_ap50``, ``segm_ap75``, ``segm_recall50``, ``ap50`` of
    the boxes, ``num_gt``, ``num_pred``)."""
    if len(preds) != len(targets):
        raise ValueError(f"{len(preds)} predictions but {len(targets)} targets")
    c = int(num_classes)
    names = _names(class_names, c)
    images: list[_Scored] = []
    box_preds = []
    for i, (pr, tg) in enumerate(zip(preds, targets, strict=True)):
        dets, gts, kept = instance_matches(pr, tg)
        gl = _labels_checked(tg.get("labels", np.zeros(0)), 1, c, f"target {i}: labels")
        dl = _labels_checked(pr.get("labels", np.zeros(0)), 0, c, f"prediction {i}: labels")
        ds = _np(pr.get("scores", np.zeros(0)), np.float64).reshape(-1)
        if len(gts) != len(gl) or not len(dets) == len(dl) == len(ds):
            raise ValueError(
                f"image {i}: {len(gts)} objects for {len(gl)} labels, "
                f"{len(dets)} predicted objects for {len(dl)} labels and {len(ds)} scores"
            )
        keep = np.flatnonzero(kept)
        dets = [dets[k] for k in keep]
        images.append(_Scored(gl, dl[keep], ds[keep], partial(_mask_iou_at, dets, gts)))
        box_preds.append({k: (_np(v)[keep] if k in ("boxes", "scores", "labels") else v)
                          for k, v in pr.items()})  # fmt: skip
    segm = _coco_table(images, c, names, max_dets)
    box = detection_metrics(box_preds, targets, c, names, max_dets=max_dets)
    return {
        "segm_map": segm["map"], "segm_map50": segm["map50"], "segm_map75": segm["map75"],
        "segm_mean_iou": segm["mean_iou"],
        "map": box["map"], "map50": box["map50"], "map75": box["map75"],
        "per_class": [
            {"class": k, "name": names[k], "segm_ap": s["ap"], "segm_ap50": s["ap50"],
             "segm_ap75": s["ap75"], "segm_recall50": s["recall50"], "ap50": b["ap50"],
             "num_gt": s["num_gt"], "num_pred": s["num_pred"]}
            for k, (s, b) in enumerate(zip(segm["per_class"], box["per_class"], strict=True))
        ],
        "class_names": names,
        "num_images": len(images),
        "num_gt": segm["num_gt"],
        "num_pred": segm["num_pred"],
    }  # fmt: skip


# --------------------------------------------------------------------------- landmarks


def _keypoint_stack(items: Any) -> np.ndarray:
    """N×P×3 from a sequence of dicts with "keypoints", of P×3 arrays, or an N×P×3 array."""
    if isinstance(items, Sequence) and not isinstance(items, np.ndarray):
        rows = [_np(it["keypoints"] if isinstance(it, Mapping) else it, np.float64) for it in items]
        if not rows:
            return np.zeros((0, 0, 3))
        shapes = {r.shape for r in rows}
        if len(shapes) != 1:
            raise ValueError(f"keypoint arrays differ in shape: {sorted(shapes)}")
        arr = np.stack(rows)
    else:
        arr = _np(items, np.float64)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[2] < 2:
        raise ValueError(f"keypoints must be N×P×3, got shape {arr.shape}")
    return arr


def landmark_metrics(
    preds: Any,
    targets: Any,
    norm: str | float = "bbox",
    pck_thresholds: Sequence[float] = (0.05, 0.1),
    *,
    image_size: tuple[int, int] | Sequence[tuple[int, int]] | None = None,
    point_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Landmark errors, one template instance per image.

    ``preds``/``targets``: sequences of dicts with "keypoints" P×3 (or P×3 arrays, or
    N×P×3 arrays); predictions are (x, y, confidence), targets (x, y, visibility
    0/1/2). Only target points with visibility > 0 (labelled, visible or occluded)
    count; the confidence is not used.

    Normaliser per instance, in pixels:
    - ``"bbox"``: sqrt(w·h) of the bounding box of the instance's *visible* ground-truth
      points; when those points are collinear (w·h = 0) max(w, h) is used, and an
      instance with fewer than two distinct visible points has no normaliser;
    - ``"diag"``: the image diagonal sqrt(H² + W²); needs ``image_size`` = (H, W) in the
      keypoints' frame, one for all images or one per image;
    - a positive number: that fixed length for every instance.

    Returns ``nme``: mean over instances (with visible points and a normaliser) of the
    instance's mean point distance divided by its normaliser; ``pck@t`` for each ``t``
    (key formatted with ``:g``): fraction of those visible points whose normalised
    distance is ≤ t; ``mean_error_px``: mean pixel distance over all visible points;
    ``per_point`` rows (``index``, ``name``, ``mean_error_px``, ``nme``, ``count``; None
    where a point is never visible); ``num_instances`` (used) and ``num_skipped``.
    """
    p = _keypoint_stack(preds)
    t = _keypoint_stack(targets)
    if p.shape[:2] != t.shape[:2]:
        raise ValueError(f"predictions {p.shape} and targets {t.shape} differ in N×P")
    if t.shape[0] and t.shape[2] < 3:
        raise ValueError("target keypoints need a visibility column (x, y, v)")
    n, npts = t.shape[:2]
    vis = t[..., 2] > 0 if n else np.zeros((0, npts), dtype=bool)
    dist = np.linalg.norm(p[..., :2] - t[..., :2], axis=-1)

    scale = np.full(n, np.nan)
    if isinstance(norm, str) and norm == "bbox":
        for i in range(n):
            pts = t[i, vis[i], :2]
            if len(pts) == 0:
                continue
            w, h = np.ptp(pts[:, 0]), np.ptp(pts[:, 1])
            s = math.sqrt(w * h) if w * h > 0 else max(w, h)
            if s > 0:
                scale[i] = s
    elif isinstance(norm, str) and norm == "diag":
        if image_size is None:
            raise ValueError("norm='diag' needs image_size=(height, width) in the keypoints' frame")
        sizes = np.asarray(image_size, dtype=np.float64)
        if sizes.ndim == 1:
            sizes = np.broadcast_to(sizes, (n, 2))
        if sizes.shape != (n, 2):
            raise ValueError(f"image_size must be (H, W) or N×2, got shape {sizes.shape}")
        scale[:] = np.hypot(sizes[:, 0], sizes[:, 1])
    elif isinstance(norm, int | float) and not isinstance(norm, bool):
        if not norm > 0:
            raise ValueError(f"a numeric norm must be positive, got {norm}")
        scale[:] = float(norm)
    else:
        raise ValueError(f"norm must be 'bbox', 'diag' or a positive number, got {norm!r}")

    used = vis.any(axis=1) & np.isfinite(scale) & (scale > 0)
    nd = dist / np.where(used, scale, 1.0)[:, None]
    uvis = vis & used[:, None]
    per_inst = [nd[i, vis[i]].mean() for i in np.flatnonzero(used)]
    pooled = nd[uvis]
    out: dict[str, Any] = {
        "nme": float(np.mean(per_inst)) if per_inst else None,
        "norm": norm,
    }
    for thr in pck_thresholds:
        out[f"pck@{thr:g}"] = float((pooled <= thr).mean()) if len(pooled) else None
    out["mean_error_px"] = float(dist[vis].mean()) if vis.any() else None
    names = (
        [str(s) for s in point_names] if point_names is not None else [str(j) for j in range(npts)]
    )
    if len(names) != npts:
        raise ValueError(f"{len(names)} point names for {npts} points")
    out["per_point"] = [
        {
            "index": j,
            "name": names[j],
            "mean_error_px": float(dist[vis[:, j], j].mean()) if vis[:, j].any() else None,
            "nme": float(nd[uvis[:, j], j].mean()) if uvis[:, j].any() else None,
            "count": int(vis[:, j].sum()),
        }
        for j in range(npts)
    ]
    out["num_instances"] = int(used.sum())
    out["num_skipped"] = int(n - used.sum())
    return out


# --------------------------------------------------------------------------- segmentation


def _mask(item: Any) -> np.ndarray:
    m = item["mask"] if isinstance(item, Mapping) else item
    return _np(m)


def segmentation_metrics(
    preds: Any,
    targets: Any,
    num_classes: int,
    class_names: Sequence[str] | None = None,
    *,
    ignore_index: int | None = 255,
) -> dict[str, Any]:
    """Semantic segmentation metrics accumulated over the whole dataset.

    ``preds``/``targets``: sequences of dicts with "mask" (or H×W arrays), int labels
    0 = background, 1..C = class; a prediction and its target must have the same
    shape. Target pixels equal to ``ignore_index`` are left out; any other value
    outside 0..C raises ValueError. One (C+1)×(C+1) confusion matrix (rows = true,
    columns = predicted, index 0 = background) is summed over all images, then per
    class IoU = TP/(TP+FP+FN) and Dice = 2TP/(2TP+FP+FN).

    Returns ``miou``/``mdice``: means over the *foreground* classes that occur in the
    ground truth or the prediction (None if none does); ``miou_with_background`` the
    same with the background included; ``pixel_accuracy`` over all counted pixels;
    ``per_class`` rows for background (index 0, ``class`` None) and each class
    (``class`` 0..C-1), with ``iou``/``dice`` None where the class occurs nowhere;
    ``confusion_matrix`` (nested ints) and ``num_pixels``.
    """
    preds, targets = list(preds), list(targets)
    if len(preds) != len(targets):
        raise ValueError(f"{len(preds)} predictions but {len(targets)} targets")
    c = int(num_classes)
    k = c + 1
    names = _names(class_names, c)
    cm = np.zeros((k, k), dtype=np.int64)
    for i, (pr, tg) in enumerate(zip(preds, targets, strict=True)):
        pm, tm = _mask(pr), _mask(tg)
        if pm.shape != tm.shape:
            raise ValueError(f"image {i}: prediction mask {pm.shape} vs target {tm.shape}")
        pm, tm = pm.astype(np.int64).reshape(-1), tm.astype(np.int64).reshape(-1)
        keep = tm != ignore_index if ignore_index is not None else np.ones(tm.shape, dtype=bool)
        tm, pm = tm[keep], pm[keep]
        if len(tm) and (tm.min() < 0 or tm.max() > c):
            raise ValueError(f"target {i}: mask values must be in 0..{c} (or {ignore_index})")
        if len(pm) and (pm.min() < 0 or pm.max() > c):
            raise ValueError(f"prediction {i}: mask values must be in 0..{c}")
        cm += np.bincount(tm * k + pm, minlength=k * k).reshape(k, k)

    tp = np.diag(cm).astype(np.float64)
    gt = cm.sum(axis=1)
    pd = cm.sum(axis=0)
    present = (gt + pd) > 0
    iou = np.where(present, _div(tp, gt + pd - tp), np.nan)
    dice = np.where(present, _div(2 * tp, gt + pd), np.nan)
    total = int(cm.sum())
    return {
        "miou": _mean(iou[1:]),
        "mdice": _mean(dice[1:]),
        "miou_with_background": _mean(iou),
        "pixel_accuracy": float(tp.sum() / total) if total else None,
        "per_class": [
            {
                "index": j,
                "class": None if j == 0 else j - 1,
                "name": "background" if j == 0 else names[j - 1],
                "iou": _f(iou[j]),
                "dice": _f(dice[j]),
                "gt_pixels": int(gt[j]),
                "pred_pixels": int(pd[j]),
            }
            for j in range(k)
        ],
        "confusion_matrix": cm.astype(int).tolist(),
        "num_pixels": total,
    }


# --------------------------------------------------------------------------- reconstruction


def reconstruction_metrics(errors: Any) -> dict[str, Any]:
    """Summary of per-image reconstruction errors (any unit; the autoencoder reports
    mean squared error in normalised input units): ``mean``, ``median``, ``p95``
    (linear-interpolated 95th percentile), ``max``, ``n``; None for an empty input."""
    if isinstance(errors, np.ndarray) or hasattr(errors, "detach"):
        e = _np(errors, np.float64).reshape(-1)
    else:
        e = np.array(
            [float(_np(x["error"] if isinstance(x, Mapping) else x)) for x in errors],
            dtype=np.float64,
        )
    if len(e) == 0:
        return {"mean": None, "median": None, "p95": None, "max": None, "n": 0}
    return {
        "mean": float(e.mean()),
        "median": float(np.median(e)),
        "p95": float(np.percentile(e, 95)),
        "max": float(e.max()),
        "n": len(e),
    }


# --------------------------------------------------------------------------- trainer glue


def _stack(items: list[dict[str, Any]], key: str, width: int) -> np.ndarray:
    """N×width float64 rows from ``item[key]`` of each item (0×width when there is none)."""
    if not items:
        return np.zeros((0, width))
    return np.stack([_np(it[key], np.float64).reshape(-1) for it in items])


def _classify_full(preds: list, targets: list, c: int, threshold: float) -> dict[str, Any]:
    labels = np.array([int(_np(t["label"]).reshape(())) for t in targets], dtype=np.int64)
    return classification_metrics(_stack(preds, "probs", c), labels)


def _classify_multi_full(preds: list, targets: list, c: int, threshold: float) -> dict[str, Any]:
    probs, labels = _stack(preds, "probs", c), _stack(targets, "labels", c)
    return multilabel_metrics(probs, labels, threshold=threshold)


def _detect_full(preds: list, targets: list, c: int, threshold: float) -> dict[str, Any]:
    return detection_metrics(preds, targets, c)


def _instances_full(preds: list, targets: list, c: int, threshold: float) -> dict[str, Any]:
    return instance_metrics(preds, targets, c)


def _landmarks_full(preds: list, targets: list, c: int, threshold: float) -> dict[str, Any]:
    return landmark_metrics(preds, targets, norm="bbox", pck_thresholds=(0.05, 0.1))


def _segment_full(preds: list, targets: list, c: int, threshold: float) -> dict[str, Any]:
    return segmentation_metrics(preds, targets, c)


def _autoencode_full(preds: list, targets: list, c: int, threshold: float) -> dict[str, Any]:
    return reconstruction_metrics(preds)


@dataclass(frozen=True)
class _FlatMetrics:
    """One task's row: ``full(preds, targets, num_classes, threshold)`` computes the full
    metrics; ``keys`` maps each flat key to its entry there; ``main`` is the flat key of
    the task's main metric."""

    full: Callable[[list, list, int, float], dict[str, Any]]
    keys: dict[str, str]
    main: str


def _same(*names: str) -> dict[str, str]:
    return {n: n for n in names}


_FLAT_METRICS: dict[str, _FlatMetrics] = {
    "classify": _FlatMetrics(
        _classify_full,
        _same(
            "accuracy",
            "balanced_accuracy",
            "precision_macro",
            "recall_macro",
            "f1_macro",
            "roc_auc",
        ),
        "accuracy",
    ),
    "classify_multi": _FlatMetrics(
        _classify_multi_full,
        _same(
            "f1_macro",
            "f1_micro",
            "precision_macro",
            "recall_macro",
            "subset_accuracy",
            "hamming_accuracy",
            "roc_auc",
        ),
        "f1_macro",
    ),
    "detect": _FlatMetrics(_detect_full, _same("map50", "map", "map75", "mean_iou"), "map50"),
    "instances": _FlatMetrics(
        _instances_full,
        _same("segm_map50", "segm_map", "segm_map75", "map50", "map"),
        "segm_map50",
    ),
    "landmarks": _FlatMetrics(
        _landmarks_full, _same("nme", "pck@0.05", "pck@0.1", "mean_error_px"), "nme"
    ),
    "segment": _FlatMetrics(_segment_full, _same("miou", "mdice", "pixel_accuracy"), "miou"),
    "autoencode": _FlatMetrics(
        _autoencode_full,
        {"recon_error": "mean", "recon_error_median": "median", "recon_error_p95": "p95"},
        "recon_error",
    ),
}

#: the key of each task's main metric in :func:`metrics_fn_for`'s output
MAIN_METRIC = {task: row.main for task, row in _FLAT_METRICS.items()}


def metrics_fn_for(
    task: str,
    num_classes: int,
    multi_label: bool = False,
    *,
    threshold: float = 0.5,
) -> Callable[[list[dict[str, Any]], list[dict[str, Any]]], dict[str, float]]:
    """The trainer's ``metrics_fn`` for ``task``: called with every validation image's
    ``predict_step`` output and target, it returns a flat ``dict[str, float]`` (NaN
    where undefined, same keys every call) containing the task's main metric:

    - classify: ``accuracy``, ``balanced_accuracy``, ``precision_macro``,
      ``recall_macro``, ``f1_macro``, ``roc_auc``; multi-label (targets "labels"
      multi-hot, predicted when prob ≥ ``threshold``): ``f1_macro``, ``f1_micro``,
      ``precision_macro``, ``recall_macro``, ``subset_accuracy``, ``hamming_accuracy``,
      ``roc_auc``
    - detect: ``map50``, ``map``, ``map75``, ``mean_iou``
    - instances: ``segm_map50``, ``segm_map``, ``segm_map75`` (mask AP), ``map50``,
      ``map`` (box AP)
    - landmarks: ``nme`` (bbox normaliser), ``pck@0.05``, ``pck@0.1``, ``mean_error_px``
    - segment: ``miou``, ``mdice``, ``pixel_accuracy``
    - autoencode: ``recon_error`` (mean), ``recon_error_median``, ``recon_error_p95``
    """
    if "," in task:  # a multi-task run: each task's metrics, as "<task>/<metric>"
        from tlstudio.ml.multitask import multitask_metrics_fn

        return multitask_metrics_fn(task, num_classes, multi_label)
    key = "classify_multi" if task == "classify" and multi_label else task
    if task == "classify_multi" or key not in _FLAT_METRICS:  # a row name, not a task
        raise ValueError(f"unknown task {task!r}")
    row = _FLAT_METRICS[key]
    c = int(num_classes)

    def fn(preds: list[dict[str, Any]], targets: list[dict[str, Any]]) -> dict[str, float]:
        full = row.full(preds, targets, c, threshold)
        return {flat: _nan(full[key]) for flat, key in row.keys.items()}

    return fn


def cross_validation_summary(
    per_fold: Sequence[Mapping[str, float]],
) -> dict[str, tuple[float, float]]:
    """(mean, sample standard deviation with ddof = 1) of each metric over the folds.

    Keys are the union over folds, in first-seen order; a fold missing a metric, or
    holding NaN/inf for it, is left out of that metric. The std is NaN with fewer
    than two values, the mean NaN with none."""
    keys: list[str] = []
    for fold in per_fold:
        keys.extend(k for k in fold if k not in keys)
    out: dict[str, tuple[float, float]] = {}
    for k in keys:
        vals = [
            float(f[k])
            for f in per_fold
            if k in f and f[k] is not None and math.isfinite(float(f[k]))
        ]
        mean = float(np.mean(vals)) if vals else _NAN
        std = float(np.std(vals, ddof=1)) if len(vals) >= 2 else _NAN
        out[k] = (mean, std)
    return out
