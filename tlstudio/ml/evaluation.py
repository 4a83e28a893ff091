"""Evaluate a trained run on a split: summary figures, per-class tables, confusion
matrix, precision-recall curves and per-image records, as plain data for the GUI,
the CLI and CSV export.

All metrics are computed in *image pixels* (predictions are scaled back from the
network input with :func:`tlstudio.ml.tasks.base.to_image_frame`; segmentation is
scored against the full-resolution stored masks), so pixel errors mean pixels of the
user's images. The curves drawn during training are computed in network-input pixels
and can differ slightly for landmarks and segmentation.

Class indices here are 0..C-1, positions in ``project.classes()`` (not database ids).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tlstudio.core.errors import CANCELLED, TlsError
from tlstudio.core.project import Project
from tlstudio.core.runs import RunRecord, RunStore

from . import metrics as M
from .callbacks import CancelToken

__all__ = [
    "DETECT_SCORE_THRESHOLD",
    "METRIC_LABELS",
    "NO_DOMAIN",
    "SPLITS",
    "Evaluation",
    "EvaluationCancelled",
    "EvaluationError",
    "ImageRecord",
    "best_epoch_metrics",
    "cv_group",
    "cv_selection",
    "cv_summary",
    "fold_metrics",
    "evaluate_run",
    "pr_curve",
]

#: the splits a run can be evaluated on
SPLITS = ("val", "test", "train")

#: the name of the group of images without a domain in per-domain tables
NO_DOMAIN = "(no domain)"

#: detections with a score below this are ignored in the per-image records (the
#: mAP and the PR curves use every detection the model returns)
DETECT_SCORE_THRESHOLD = 0.5

#: readable names of the summary keys (for tables, cards and CSV)
METRIC_LABELS = {
    "accuracy": "Accuracy",
    "balanced_accuracy": "Balanced accuracy",
    "f1_macro": "Macro F1",
    "precision_macro": "Macro precision",
    "recall_macro": "Macro recall",
    "roc_auc": "ROC-AUC (macro, one-vs-rest)",
    "f1_micro": "Micro F1",
    "subset_accuracy": "Exact-match accuracy",
    "hamming_accuracy": "Hamming accuracy",
    "map": "mAP@[.5:.95]",
    "map50": "mAP@.5",
    "map75": "mAP@.75",
    "mean_iou": "Mean IoU of matches",
    "segm_map": "Mask mAP@[.5:.95]",
    "segm_map50": "Mask mAP@.5",
    "segm_map75": "Mask mAP@.75",
    "segm_mean_iou": "Mean mask IoU of matches",
    "nme": "NME",
    "pck@0.05": "PCK@0.05",
    "pck@0.1": "PCK@0.1",
    "mean_error_px": "Mean error (px)",
    "miou": "Mean IoU",
    "mdice": "Mean Dice",
    "miou_with_background": "Mean IoU incl. background",
    "pixel_accuracy": "Pixel accuracy",
    "recon_error_mean": "Mean reconstruction error",
    "recon_error_median": "Median reconstruction error",
    "recon_error_p95": "95th percentile error",
    "recon_error_max": "Largest error",
    "ece": "Expected calibration error",
    "images": "Images",
}


class EvaluationError(TlsError):
    """A run cannot be evaluated on a split (the message says why)."""


class EvaluationCancelled(EvaluationError):
    """The evaluation was cancelled through its token."""

    kind = CANCELLED


@dataclass(frozen=True)
class ImageRecord:
    """One evaluated image.

    ``true``/``predicted`` are short readable descriptions (class names, box counts).
    ``score``: classify = probability of the predicted class; detect = best box score;
    landmarks = the image's NME; segment = the image's mean foreground IoU; autoencode
    = reconstruction MSE. ``error``: classify = 1 - probability of the true class;
    detect = missed + spurious boxes at IoU ≥ .5 among boxes scoring ≥
    :data:`DETECT_SCORE_THRESHOLD` (instances: objects, at mask IoU ≥ .5; score = best
    object score); landmarks = mean point distance in image pixels;
    segment = 1 - mean IoU; autoencode = reconstruction MSE (normalised input units).
    (multi-label: the largest |truth − probability| over the classes).
    ``correct``: classify = predicted class (set) equals the truth; detect, instances =
    error 0;
    landmarks = every visible point within 0.1 × normaliser; segment = mean IoU ≥ 0.5;
    autoencode = None (no ground truth). ``true_index``/``pred_index``: class indices
    for single-label classification, else None."""

    image_id: int
    true: str
    predicted: str
    score: float | None
    error: float | None
    correct: bool | None
    true_index: int | None = None
    pred_index: int | None = None


@dataclass
class Evaluation:
    """Everything measured on one split for one run (plain data, picklable).

    ``summary`` maps metric keys (see :data:`METRIC_LABELS`) to floats, NaN where
    undefined (``notes`` says why). ``per_class`` rows hold the keys of
    ``per_class_columns`` (landmarks: one row per template point; segment: background
    first; autoencode: one row per class tag). ``confusion`` is C×C counts, rows = true
    class, columns = predicted class (single-label classification only).
    ``pr_curves[name]`` = (precision, recall) arrays, one point per distinct score
    threshold in decreasing order (classify: one-vs-rest on the class's probability;
    detect: that class's boxes matched at IoU ≥ .5); a class with no positive example
    has no curve."""

    run_id: int
    task: str
    split: str
    image_ids: list[int]
    class_names: list[str]
    summary: dict[str, float]
    per_class: list[dict[str, Any]]
    per_class_columns: list[str]
    confusion: np.ndarray | None
    pr_curves: dict[str, tuple[np.ndarray, np.ndarray]]
    records: list[ImageRecord]
    notes: list[str] = field(default_factory=list)
    excluded: list[int] = field(default_factory=list)  # split images without the task's labels
    #: the summary per image domain (name → metrics, with "images"), when any evaluated
    #: image has a domain; images without one are grouped under :data:`NO_DOMAIN`
    by_domain: dict[str, dict[str, float]] = field(default_factory=dict)
    #: classification: {"temperature", "before", "after"} with calibration.Reliability
    #: objects ("before": without the run's temperature; None when none was fitted)
    calibration: dict[str, Any] | None = None

    def cell_images(self, true_i: int, pred_j: int) -> list[int]:
        """Image ids whose true class index is ``true_i`` and predicted index ``pred_j``
        (the images counted in confusion cell (true_i, pred_j)), in split order."""
        if self.confusion is None:
            raise ValueError("a confusion matrix exists for single-label classification only")
        return [
            r.image_id for r in self.records if r.true_index == true_i and r.pred_index == pred_j
        ]

    def record(self, image_id: int) -> ImageRecord | None:
        """The record of ``image_id``, or None if it was not evaluated."""
        for r in self.records:
            if r.image_id == image_id:
                return r
        return None

    def to_csv(self) -> str:
        """CSV text: a ``metric,value`` table of the summary, an empty line, the
        per-class table (header ``per_class_columns``) and, for single-label
        classification, an empty line and the confusion matrix (first column = true
        class, header = predicted classes)."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["metric", "value"])
        w.writerow(["run", self.run_id])
        w.writerow(["task", self.task])
        w.writerow(["split", self.split])
        for k, v in self.summary.items():
            w.writerow([k, _csv_value(v)])
        if self.per_class:
            w.writerow([])
            w.writerow(self.per_class_columns)
            for row in self.per_class:
                w.writerow([_csv_value(row.get(c)) for c in self.per_class_columns])
        if self.by_domain:
            keys = list(next(iter(self.by_domain.values())))
            w.writerow([])
            w.writerow(["domain", *keys])
            for name, row in self.by_domain.items():
                w.writerow([name, *[_csv_value(row.get(k)) for k in keys]])
        if self.confusion is not None:
            w.writerow([])
            w.writerow(["true \\ predicted", *self.class_names])
            for name, counts in zip(self.class_names, self.confusion.tolist(), strict=True):
                w.writerow([name, *counts])
        return buf.getvalue()


def _csv_value(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.6g}"
    return v


def _flt(v: Any) -> float:
    """Metric value -> float (None -> NaN)."""
    return float("nan") if v is None else float(v)


# --------------------------------------------------------------------------- curves


def pr_curve(positive: np.ndarray, score: np.ndarray, n_pos: int | None = None) -> tuple:
    """(precision, recall) at each distinct score threshold, highest first: point i
    counts every item scoring ≥ the i-th highest distinct score as predicted positive.
    ``n_pos`` = number of positives to recall (default: ``positive.sum()``; detection
    passes the ground-truth count, which includes boxes never detected)."""
    positive = np.asarray(positive, dtype=bool).reshape(-1)
    score = np.asarray(score, dtype=np.float64).reshape(-1)
    n_pos = int(positive.sum()) if n_pos is None else int(n_pos)
    if len(score) == 0 or n_pos == 0:
        return np.zeros(0), np.zeros(0)
    order = np.argsort(-score, kind="mergesort")
    s, p = score[order], positive[order]
    tp = np.cumsum(p, dtype=np.float64)
    fp = np.cumsum(~p, dtype=np.float64)
    last = np.r_[np.flatnonzero(s[1:] != s[:-1]), len(s) - 1]  # end of each tie group
    return tp[last] / (tp[last] + fp[last]), tp[last] / n_pos


def _step_ap(precision: np.ndarray, recall: np.ndarray) -> float | None:
    """Average precision as sum over thresholds of (ΔR · P), as scikit-learn computes it."""
    if len(recall) == 0:
        return None
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


# --------------------------------------------------------------------------- running the model


def _run_model(
    project: Project,
    run_id: int,
    split: str,
    device: str,
    batch_size: int,
    progress: Callable[[int, int], None] | None,
    token: CancelToken | None,
    tta: bool = False,
) -> tuple[Any, Any, list[dict[str, Any]], list[dict[str, Any]], list[int]]:
    """(spec, dataset, predictions in image pixels, targets in image pixels, excluded ids)."""
    import torch

    from . import data as data_mod
    from .backbones import get_spec
    from .devices import select_device
    from .runner import load_run_model
    from .tasks.base import to_image_frame

    model, spec = load_run_model(project, run_id)
    if tta:
        from .tta import with_tta

        model = with_tta(project, model, spec)
    ids = [r.id for r in project.images_in_split(split)]
    if not ids:
        raise EvaluationError(f"the {split!r} split is empty; assign images to it first")
    bspec = get_spec(spec.backbone)
    size = spec.resolved_input_size
    ds = data_mod.ProjectDataset(
        project, spec.task, ids, size, bspec.mean, bspec.std,
        template_id=spec.template_id, multi_label=spec.task == "classify" and project.multi_label,
    )  # fmt: skip
    if len(ds) == 0:
        raise EvaluationError(
            f"none of the {len(ids)} images in the {split!r} split has {spec.task} labels"
        )
    dev = select_device(device)
    model.to(dev)
    preds: list[dict[str, Any]] = []
    targets: list[dict[str, Any]] = []
    total = len(ds)
    if progress is not None:
        progress(0, total)
    for start in range(0, total, batch_size):
        if token is not None and token.is_cancelled:
            raise EvaluationCancelled(f"evaluation of run {run_id} cancelled")
        batch = [ds[i] for i in range(start, min(start + batch_size, total))]
        images = torch.stack([b[0] for b in batch]).to(dev)
        with torch.no_grad():
            out = model.predict_step(images)
        for p, (_img, t) in zip(out, batch, strict=True):
            oh, ow = (int(v) for v in t["orig_size"])
            orig = (oh, ow)
            p = {k: v.detach().cpu() if isinstance(v, torch.Tensor) else v for k, v in p.items()}
            preds.append(to_image_frame(p, (size, size), orig))
            tg = {k: v for k, v in t.items() if k not in ("mask", "masks", "ignore")}
            targets.append(to_image_frame(tg, (size, size), orig))
        if progress is not None:
            progress(len(preds), total)
    model.to("cpu")
    return spec, ds, preds, targets, list(ds.excluded)


# --------------------------------------------------------------------------- per task


def _classify(ds, preds, targets, names, ev: dict[str, Any]) -> None:
    probs = np.stack([M._np(p["probs"]).astype(np.float64).reshape(-1) for p in preds])
    ids = ds.image_ids
    c = len(names)
    if ds.multi_label:
        truth = np.stack([M._np(t["labels"]).reshape(-1) >= 0.5 for t in targets])
        r = M.multilabel_metrics(probs, truth.astype(np.float64), class_names=names)
        keys: tuple[str, ...] = ("f1_macro", "f1_micro", "precision_macro", "recall_macro",
                "subset_accuracy", "hamming_accuracy", "roc_auc")  # fmt: skip
        pred = probs >= r["threshold"]
        records = []
        for i, image_id in enumerate(ids):
            t_names = [names[k] for k in range(c) if truth[i, k]]
            p_names = [names[k] for k in range(c) if pred[i, k]]
            records.append(ImageRecord(
                image_id, ", ".join(t_names) or "—", ", ".join(p_names) or "—",
                float(probs[i].max()), float(np.abs(truth[i] - probs[i]).max()),
                bool(np.all(pred[i] == truth[i])),
            ))  # fmt: skip
        if r["roc_auc_undefined"]:
            ev["notes"].append(
                "ROC-AUC leaves out classes without both positive and negative images: "
                + ", ".join(r["roc_auc_undefined"])
            )
        ev["notes"].append(f"a class is predicted when its probability ≥ {r['threshold']:g}")
        positives = truth
    else:
        labels = np.array([int(M._np(t["label"]).reshape(())) for t in targets], dtype=np.int64)
        r = M.classification_metrics(probs, labels, names)
        keys = ("accuracy", "balanced_accuracy", "f1_macro", "precision_macro",
                "recall_macro", "roc_auc")  # fmt: skip
        ev["confusion"] = np.asarray(r["confusion_matrix"], dtype=np.int64).reshape(c, c)
        pred_idx = probs.argmax(axis=1)
        records = [
            ImageRecord(
                image_id,
                names[labels[i]],
                names[pred_idx[i]],
                float(probs[i, pred_idx[i]]),
                float(1.0 - probs[i, labels[i]]),
                bool(labels[i] == pred_idx[i]),
                int(labels[i]),
                int(pred_idx[i]),
            )  # fmt: skip
            for i, image_id in enumerate(ids)
        ]
        if r["roc_auc_reason"]:
            ev["notes"].append(f"ROC-AUC undefined: {r['roc_auc_reason']}")
        positives = labels[:, None] == np.arange(c)[None, :]
        for row, auc in zip(r["per_class"], r["roc_auc_per_class"], strict=True):
            row["roc_auc"] = auc
    ev["summary"] = {k: _flt(r[k]) for k in keys}
    per_class = []
    for k, row in enumerate(r["per_class"]):
        prec, rec = pr_curve(positives[:, k], probs[:, k])
        if len(rec):
            ev["pr_curves"][names[k]] = (prec, rec)
        per_class.append({
            "name": row["name"], "precision": row["precision"], "recall": row["recall"],
            "f1": row["f1"], "ap": _step_ap(prec, rec), "roc_auc": row["roc_auc"],
            "support": row["support"], "predicted": row["predicted"],
        })  # fmt: skip
    ev["per_class"] = per_class
    ev["per_class_columns"] = [
        "name", "precision", "recall", "f1", "ap", "roc_auc", "support", "predicted",
    ]  # fmt: skip
    ev["records"] = records


def _greedy_match(ious: np.ndarray, thr: float) -> np.ndarray:
    """For score-sorted detections (rows) and ground truth (columns): True where a
    detection is matched at IoU ≥ ``thr`` (COCO greedy matching, as mAP counts it)."""
    return M._match(ious, np.array([thr]))[0][0]


def _matched_rows(r, scores, hits, n_gt, names, columns: list[str], ev: dict[str, Any]) -> None:
    """Per-class rows (``columns`` of ``r["per_class"]``) and a PR curve per class from
    the detections' ``scores`` and ``hits`` (matched at IoU ≥ .5) against ``n_gt``."""
    per_class = []
    for k, row in enumerate(r["per_class"]):
        s = np.concatenate(scores[k]) if scores[k] else np.zeros(0)
        h = np.concatenate(hits[k]) if hits[k] else np.zeros(0, dtype=bool)
        prec, rec = pr_curve(h, s, n_pos=int(n_gt[k]))
        if len(rec):
            ev["pr_curves"][names[k]] = (prec, rec)
        per_class.append({key: row[key] for key in columns})
    ev["per_class"] = per_class
    ev["per_class_columns"] = columns


def _detect(ds, preds, targets, names, ev: dict[str, Any]) -> None:
    c = len(names)
    r = M.detection_metrics(preds, targets, c, names)
    ev["summary"] = {k: _flt(r[k]) for k in ("map", "map50", "map75", "mean_iou")}
    scores: list[list[np.ndarray]] = [[] for _ in range(c)]
    hits: list[list[np.ndarray]] = [[] for _ in range(c)]
    n_gt = np.zeros(c, dtype=np.int64)
    records = []
    for image_id, p, t in zip(ds.image_ids, preds, targets, strict=True):
        gb = M._np(t["boxes"]).astype(np.float64).reshape(-1, 4)
        gl = M._np(t["labels"]).astype(np.int64).reshape(-1) - 1
        db = M._np(p["boxes"]).astype(np.float64).reshape(-1, 4)
        dsc = M._np(p["scores"]).astype(np.float64).reshape(-1)
        dl = M._np(p["labels"]).astype(np.int64).reshape(-1)
        misses = spurious = 0
        for k in range(c):
            g = gb[gl == k]
            n_gt[k] += len(g)
            sel = np.flatnonzero(dl == k)
            sel = sel[np.argsort(-dsc[sel], kind="mergesort")]
            m = _greedy_match(M.box_iou(db[sel], g), 0.5)
            scores[k].append(dsc[sel])
            hits[k].append(m)
            keep = sel[dsc[sel] >= DETECT_SCORE_THRESHOLD]
            found = int(_greedy_match(M.box_iou(db[keep], g), 0.5).sum())
            spurious += len(keep) - found
            misses += len(g) - found
        shown_n = int((dsc >= DETECT_SCORE_THRESHOLD).sum())
        err = misses + spurious
        records.append(ImageRecord(
            image_id, f"{len(gb)} box{'es' if len(gb) != 1 else ''}",
            f"{shown_n} box{'es' if shown_n != 1 else ''}",
            float(dsc.max()) if len(dsc) else 0.0, float(err), err == 0,
        ))  # fmt: skip
    columns = ["name", "ap", "ap50", "ap75", "recall50", "num_gt", "num_pred"]
    _matched_rows(r, scores, hits, n_gt, names, columns, ev)
    ev["records"] = records
    ev["notes"].append(
        "mAP as COCO computes it (101-point interpolation, IoU .50:.05:.95); per-image"
        f" misses and spurious boxes count boxes scoring ≥ {DETECT_SCORE_THRESHOLD:g}"
    )


def _image_objects(project: Project, image_id: int, index: dict[int, int]) -> dict[str, Any]:
    """The target of one image for :func:`~tlstudio.ml.metrics.instance_metrics`, at the
    image's own size: its objects ("objects", "labels" 1..C, "boxes"), "image_size" and
    "ignore" (its ignore region and crowd objects), from the store."""
    from scipy.ndimage import find_objects  # type: ignore[import-untyped]  # no stubs

    from tlstudio.runtime.objects import ObjectMask

    rec = project.image(image_id)
    hw = (rec.height, rec.width)
    layer = project.instances.layer(image_id)
    ignore = project.instances.ignore(image_id)
    objects, labels = [], []
    if layer is not None:
        slices = find_objects(layer.map)
        for o in layer.objects:
            where = slices[o.number - 1] if o.number <= len(slices) else None
            if where is None:
                continue
            if o.iscrowd:  # COCO's rule: a crowd's pixels are not scored
                crowd = np.zeros(hw, bool)
                crowd[where] = layer.map[where] == o.number
                ignore = crowd if ignore is None else ignore | crowd
            elif o.class_id in index:
                crop = layer.map[where] == o.number
                objects.append(ObjectMask(where[1].start, where[0].start, crop))
                labels.append(index[o.class_id] + 1)
    boxes = [o.box for o in objects]
    return {
        "objects": objects, "labels": np.array(labels, np.int64),
        "boxes": np.array(boxes, np.float64).reshape(-1, 4), "image_size": hw,
        "ignore": ignore,
    }  # fmt: skip


def _instances(project, ds, preds, names, ev: dict[str, Any]) -> None:
    c = len(names)
    index = {cl.id: i for i, cl in enumerate(project.classes())}
    targets = [_image_objects(project, image_id, index) for image_id in ds.image_ids]
    r = M.instance_metrics(preds, targets, c, names)
    ev["summary"] = {
        k: _flt(r[k]) for k in ("segm_map", "segm_map50", "segm_map75", "map", "map50", "map75")
    }
    scores: list[list[np.ndarray]] = [[] for _ in range(c)]
    hits: list[list[np.ndarray]] = [[] for _ in range(c)]
    n_gt = np.zeros(c, dtype=np.int64)
    records = []
    for image_id, p, t in zip(ds.image_ids, preds, targets, strict=True):
        dets, gts, kept = M.instance_matches(p, t)
        gl = np.asarray(t["labels"], np.int64) - 1
        dsc = M._np(p["scores"]).astype(np.float64).reshape(-1)
        dl = M._np(p["labels"]).astype(np.int64).reshape(-1)
        misses = spurious = 0
        for k in range(c):
            g = [gts[j] for j in np.flatnonzero(gl == k)]
            n_gt[k] += len(g)
            sel = np.flatnonzero((dl == k) & kept)
            sel = sel[np.argsort(-dsc[sel], kind="mergesort")]
            m = _greedy_match(M.mask_iou([dets[j] for j in sel], g), 0.5)
            scores[k].append(dsc[sel])
            hits[k].append(m)
            shown = sel[dsc[sel] >= DETECT_SCORE_THRESHOLD]
            found = int(_greedy_match(M.mask_iou([dets[j] for j in shown], g), 0.5).sum())
            spurious += len(shown) - found
            misses += len(g) - found
        shown_n = int(((dsc >= DETECT_SCORE_THRESHOLD) & kept).sum())
        err = misses + spurious
        records.append(ImageRecord(
            image_id, _count(len(gts), "object"), _count(shown_n, "object"),
            float(dsc.max()) if len(dsc) else 0.0, float(err), err == 0,
        ))  # fmt: skip
    columns = ["name", "segm_ap", "segm_ap50", "segm_ap75", "ap50", "num_gt", "num_pred"]
    _matched_rows(r, scores, hits, n_gt, names, columns, ev)
    ev["records"] = records
    ev["notes"].append(
        "mask AP as COCO computes it for segmentation (IoU of the objects' pixels at image"
        " resolution, .50:.05:.95); box AP beside it; ignore regions and crowd objects are"
        f" not scored; per-image misses and spurious objects count objects scoring ≥"
        f" {DETECT_SCORE_THRESHOLD:g}"
    )


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'s' if n != 1 else ''}"


def _landmarks(ds, preds, targets, point_names, ev: dict[str, Any]) -> None:
    pk = [M._np(p["keypoints"]).astype(np.float64) for p in preds]
    tk = [M._np(t["keypoints"]).astype(np.float64) for t in targets]
    r = M.landmark_metrics(pk, tk, norm="bbox", pck_thresholds=(0.05, 0.1), point_names=point_names)
    ev["summary"] = {k: _flt(r[k]) for k in ("nme", "pck@0.05", "pck@0.1", "mean_error_px")}
    ev["notes"].append(
        "NME and PCK are normalised per image by sqrt(w·h) of the bounding box of the"
        " visible ground-truth points (image pixels)"
    )
    if r["num_skipped"]:
        ev["notes"].append(
            f"{r['num_skipped']} image(s) left out of NME/PCK: fewer than two distinct"
            " visible points"
        )
    ev["per_class"] = [
        {"name": row["name"], "mean_error_px": row["mean_error_px"], "nme": row["nme"],
         "count": row["count"]}
        for row in r["per_point"]
    ]  # fmt: skip
    ev["per_class_columns"] = ["name", "mean_error_px", "nme", "count"]
    records = []
    for image_id, p, t in zip(ds.image_ids, pk, tk, strict=True):
        one = M.landmark_metrics([p], [t], norm="bbox", pck_thresholds=(0.1,))
        vis = int((t[:, 2] > 0).sum())
        nme = one["nme"]
        records.append(ImageRecord(
            image_id, f"{vis} visible point{'s' if vis != 1 else ''}",
            f"{len(p)} points", nme, one["mean_error_px"],
            None if one["pck@0.1"] is None else one["pck@0.1"] >= 1.0,
        ))  # fmt: skip
    ev["records"] = records


def _segment(project, ds, preds, names, ev: dict[str, Any]) -> None:
    classes = project.classes()
    c = len(classes)
    pm_list, tm_list, records = [], [], []
    for image_id, p in zip(ds.image_ids, preds, strict=True):
        mask = project.mask(image_id)
        pm = M._np(p["mask"]).astype(np.int64)
        if mask is None:  # the mask was removed since the dataset was built
            tm = np.zeros_like(pm)
        else:
            lut = np.zeros(max(int(mask.max()), max(cl.id for cl in classes)) + 1, np.int64)
            for i, cl in enumerate(classes):
                lut[cl.id] = i + 1
            tm = lut[mask.astype(np.int64)]
            ignore = project.instances.ignore(image_id)
            if ignore is not None:  # left out of the metrics (segmentation_metrics' 255)
                tm[ignore] = 255
        pm_list.append(pm)
        tm_list.append(tm)
        one = M.segmentation_metrics([pm], [tm], c, names)
        miou = one["miou"]
        present = [names[j - 1] for j in range(1, c + 1) if np.any(tm == j)]
        found = [names[j - 1] for j in range(1, c + 1) if np.any(pm == j)]
        records.append(ImageRecord(
            image_id, ", ".join(present) or "background", ", ".join(found) or "background",
            miou, None if miou is None else 1.0 - miou,
            None if miou is None else miou >= 0.5,
        ))  # fmt: skip
    r = M.segmentation_metrics(pm_list, tm_list, c, names)
    ev["summary"] = {
        k: _flt(r[k]) for k in ("miou", "mdice", "pixel_accuracy", "miou_with_background")
    }
    ev["per_class"] = [
        {key: row[key] for key in ("name", "iou", "dice", "gt_pixels", "pred_pixels")}
        for row in r["per_class"]
    ]
    ev["per_class_columns"] = ["name", "iou", "dice", "gt_pixels", "pred_pixels"]
    ev["records"] = records
    ev["notes"].append(
        "IoU and Dice are pooled over every pixel of the split at image resolution;"
        " mean IoU/Dice average the classes present in the truth or the prediction"
    )


def _autoencode(project, ds, preds, names, ev: dict[str, Any]) -> None:
    errors = np.array([float(M._np(p["error"])) for p in preds], dtype=np.float64)
    r = M.reconstruction_metrics(errors)
    ev["summary"] = {
        "recon_error_mean": _flt(r["mean"]),
        "recon_error_median": _flt(r["median"]),
        "recon_error_p95": _flt(r["p95"]),
        "recon_error_max": _flt(r["max"]),
    }
    index = {cl.id: i for i, cl in enumerate(project.classes())}
    groups: dict[str, list[float]] = {}
    records = []
    for image_id, e in zip(ds.image_ids, errors, strict=True):
        tags = [names[index[t]] for t in project.tags(image_id) if t in index]
        for name in tags or ["(untagged)"]:
            groups.setdefault(name, []).append(float(e))
        records.append(ImageRecord(image_id, ", ".join(tags) or "—", "", float(e), float(e), None))
    ev["per_class"] = [
        {"name": name, "images": len(v), "mean_error": float(np.mean(v)),
         "median_error": float(np.median(v)), "max_error": float(np.max(v))}
        for name, v in sorted(groups.items(), key=lambda kv: (names + [kv[0]]).index(kv[0]))
    ]  # fmt: skip
    ev["per_class_columns"] = ["name", "images", "mean_error", "median_error", "max_error"]
    ev["records"] = records
    ev["notes"].append(
        "reconstruction error = mean squared error per image in normalised input units;"
        " rows group the images by class tag (an image with two tags counts in both)"
    )


# --------------------------------------------------------------------------- entry point


def evaluate_run(
    project: Project,
    run_id: int,
    split: str = "val",
    *,
    device: str = "auto",
    batch_size: int = 16,
    progress: Callable[[int, int], None] | None = None,
    token: CancelToken | None = None,
    tta: bool = False,
) -> Evaluation:
    """Run ``run_id``'s saved model over the images of ``split`` that carry labels for
    its task and measure it (see :class:`Evaluation`). ``progress(done, total)`` counts
    images. Raises :class:`EvaluationCancelled` when ``token`` is cancelled,
    :class:`EvaluationError` when the split has no image labelled for the task and
    :class:`~tlstudio.ml.runner.RunError` when the run has no usable model. torch is
    imported here, not when the module is imported (the GUI reads CV summaries without
    it). ``tta``: with test-time augmentation (:mod:`tlstudio.ml.tta`). Classification
    also measures calibration (:attr:`Evaluation.calibration`, summary key "ece")."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    task = RunStore(project).get(run_id).task
    if "," in task:  # a multi-task run (tlstudio.ml.multitask)
        raise EvaluationError(
            f"run {run_id} trains several tasks ({task}); this measures single-task runs. "
            f"Each task's metrics: tlstudio evaluate {project.root} {run_id} --split {split}"
        )
    spec, ds, preds, targets, excluded = _run_model(
        project, run_id, split, device, batch_size, progress, token, tta
    )
    ev = _measure(project, spec.task, ds, preds, targets)
    calibration = None
    if spec.task == "classify" and preds:
        calibration = _calibration(project, run_id, ds, preds, targets)
        ev["summary"]["ece"] = calibration["after"].ece
    ev["summary"]["images"] = float(len(ds))
    if excluded:
        ev["notes"].append(
            f"{len(excluded)} image(s) of the {split} split have no {spec.task} labels"
            " and were left out"
        )
    return Evaluation(
        run_id=run_id, task=spec.task, split=split, image_ids=list(ds.image_ids),
        class_names=list(ds.class_names), summary=ev["summary"], per_class=ev["per_class"],
        per_class_columns=ev["per_class_columns"], confusion=ev["confusion"],
        pr_curves=ev["pr_curves"], records=ev["records"], notes=ev["notes"],
        excluded=excluded, by_domain=_by_domain(project, spec.task, ds, preds, targets),
        calibration=calibration,
    )  # fmt: skip


def _measure(project: Project, task: str, ds: Any, preds: list, targets: list) -> dict[str, Any]:
    """The task's figures for ``ds`` (anything with ``image_ids``, ``class_names``,
    ``multi_label`` and ``template_id``) and its predictions and targets, in order."""
    names = list(ds.class_names)
    ev: dict[str, Any] = {"notes": [], "pr_curves": {}, "confusion": None}
    if task == "classify":
        _classify(ds, preds, targets, names, ev)
    elif task == "detect":
        _detect(ds, preds, targets, names, ev)
    elif task == "landmarks":
        points = list(project.template(ds.template_id).points)
        _landmarks(ds, preds, targets, points, ev)
    elif task == "segment":
        _segment(project, ds, preds, names, ev)
    elif task == "instances":
        _instances(project, ds, preds, names, ev)
    elif task == "autoencode":
        _autoencode(project, ds, preds, names, ev)
    else:  # pragma: no cover - RunSpec only holds known tasks
        raise EvaluationError(f"unknown task {task!r}")
    return ev


@dataclass
class _Part:
    """Some of a dataset's images, as :func:`_measure` reads a dataset."""

    image_ids: list[int]
    class_names: list[str]
    multi_label: bool
    template_id: int | None


def _by_domain(
    project: Project, task: str, ds: Any, preds: list, targets: list
) -> dict[str, dict[str, float]]:
    """The summary of each image domain among the evaluated images (by name, then
    :data:`NO_DOMAIN`), with "images"; empty when none of them has a domain."""
    domain_of = project.domain_by_image()
    groups: dict[str, list[int]] = {}
    for k, image_id in enumerate(ds.image_ids):
        groups.setdefault(domain_of.get(image_id) or NO_DOMAIN, []).append(k)
    if set(groups) <= {NO_DOMAIN}:
        return {}
    out: dict[str, dict[str, float]] = {}
    for name in sorted(groups, key=lambda g: (g == NO_DOMAIN, g)):
        rows = groups[name]
        part = _Part([ds.image_ids[k] for k in rows], list(ds.class_names), ds.multi_label,
                     getattr(ds, "template_id", None))  # fmt: skip
        ev = _measure(project, task, part, [preds[k] for k in rows], [targets[k] for k in rows])
        out[name] = {**ev["summary"], "images": float(len(rows))}
    return out


# --------------------------------------------------------------------------- cross-validation


def _experiment(rec: RunRecord) -> dict[str, Any]:
    exp = rec.config.get("experiment") if isinstance(rec.config, dict) else None
    return exp if isinstance(exp, dict) else {}


def cv_group(project: Project, run_id: int) -> list[int]:
    """Run ids of the k-fold cross-validation experiment ``run_id`` belongs to (itself
    included, in fold order), or [] if it is not a fold of one.

    :func:`tlstudio.ml.experiments.cross_validate` records ``{"kind": "cv", "k", "fold",
    "seed", "group"}``; runs with a "group" id are grouped by it. Older runs have none:
    folds 0..k-1 were trained one after the other, so an experiment is a run of
    consecutive "cv" runs (by id) with the same k, seed and training config and rising
    fold numbers; a fold number that does not rise starts a new experiment."""
    runs = [r for r in RunStore(project).list() if _experiment(r).get("kind") == "cv"]
    runs.sort(key=lambda r: r.id)
    this = next((r for r in runs if r.id == run_id), None)
    if this is not None and _experiment(this).get("group") is not None:  # recorded since v0.1
        group = _experiment(this)["group"]
        return [r.id for r in sorted(runs, key=lambda r: _experiment(r).get("fold", 0))
                if _experiment(r).get("group") == group]  # fmt: skip

    def key(r: RunRecord) -> tuple:
        exp = _experiment(r)
        cfg = {k: v for k, v in r.config.items() if k != "experiment"}
        return exp.get("k"), exp.get("seed"), repr(sorted(cfg.items()))

    groups: list[list[RunRecord]] = []
    for r in runs:
        last = groups[-1][-1] if groups else None
        if (
            last is not None
            and key(last) == key(r)
            and int(_experiment(r).get("fold", -1)) > int(_experiment(last).get("fold", -1))
        ):
            groups[-1].append(r)
        else:
            groups.append([r])
    for g in groups:
        if any(r.id == run_id for r in g):
            return [r.id for r in g]
    return []


def best_epoch_metrics(project: Project, run_id: int) -> dict[str, float]:
    """Validation metrics recorded for the run's best epoch (the saved model): the
    epoch whose main metric equals the run's best value, else the last epoch; "lr" and
    "duration_s" are left out. Empty if no epoch was recorded."""
    runs = RunStore(project)
    rec = runs.get(run_id)
    epochs = runs.epochs(run_id)
    if not epochs:
        return {}
    row = epochs[-1][1]
    name, best = rec.metric_name, rec.best_metric
    if name and best is not None:
        with_metric = [m for _e, m in epochs if m.get(name) is not None]
        if with_metric:
            row = min(with_metric, key=lambda m: abs(float(m[name]) - best))
    return {k: float(v) for k, v in row.items() if k not in ("lr", "duration_s") and v is not None}


def fold_metrics(project: Project, run_id: int) -> dict[str, float]:
    """A k-fold run's score on its held-out fold: the one recorded after training
    (config ``"fold"``: a model selected without that fold, see
    :func:`tlstudio.ml.experiments.cross_validate`), else (folds from before) the best
    epoch's validation metrics, which were picked on the fold itself."""
    fold = RunStore(project).get(run_id).config.get("fold")
    if isinstance(fold, dict) and isinstance(fold.get("metrics"), dict):
        return {k: float(v) for k, v in fold["metrics"].items() if v is not None}
    return best_epoch_metrics(project, run_id)


def cv_selection(project: Project, run_ids: Sequence[int]) -> str | None:
    """How the folds' models were selected: "inner", "last", or None (selected on their
    own held-out fold: folds recorded before honest selection)."""
    kinds = set()
    for rid in run_ids:
        fold = RunStore(project).get(rid).config.get("fold")
        kinds.add(fold.get("selection") if isinstance(fold, dict) else None)
    return kinds.pop() if len(kinds) == 1 else None


def cv_summary(project: Project, run_ids: Sequence[int]) -> dict[str, tuple[float, float]]:
    """(mean, sample std with ddof = 1) of each fold score (:func:`fold_metrics`) over
    the given fold runs; runs that did not finish are left out. NaN std with fewer than
    two folds."""
    runs = RunStore(project)
    per_fold = [fold_metrics(project, rid) for rid in run_ids if runs.get(rid).status == "finished"]
    return M.cross_validation_summary([f for f in per_fold if f])


def _calibration(project: Project, run_id: int, ds, preds, targets) -> dict[str, Any]:
    from .calibration import before_and_after, stored_temperature

    multi = bool(ds.multi_label)
    probs = np.stack([M._np(p["probs"]).astype(np.float64).reshape(-1) for p in preds])
    key = "labels" if multi else "label"
    truth = np.stack([M._np(t[key]) for t in targets])
    t = stored_temperature(RunStore(project).get(run_id).config)
    return before_and_after(probs, truth, t, multi_label=multi)
