"""Merging several detectors' boxes for one image (numpy only): the combination rule of a
detector ensemble, used both by :class:`tlstudio.ml.ensemble.EnsembleModel` and by an
exported ensemble's decoding (:func:`tlstudio.runtime.decode.decode_prediction`), so the
two give the same boxes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: boxes of one class overlapping more than this are one object
FUSION_IOU = 0.55
FUSION_METHODS = ("wbf", "nms")


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2])
    y2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-12)


def fuse_detections(
    detections: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
    *,
    method: str = "wbf",
    iou: float = FUSION_IOU,
) -> dict[str, np.ndarray]:
    """Merge one image's detections from several models (each (boxes K×4 xyxy, scores K,
    labels K)) into one set, sorted by score: {"boxes" float32 K×4, "scores" float32,
    "labels" int64, "agreement" float32 (fraction of the models with a box in each
    cluster)}.

    ``wbf``: per class, boxes in descending score order join the first cluster whose
    fused box they overlap at IoU > ``iou`` (else start one); a cluster's box is the
    score-weighted mean of its boxes and its score the sum of its scores divided by the
    number of models (at most 1). ``nms``: per class, the highest-scoring box of each
    cluster is kept with its own score."""
    n_models = len(detections)
    rows = []
    for m, (boxes, scores, labels) in enumerate(detections):
        b = np.asarray(boxes, np.float64).reshape(-1, 4)
        s = np.asarray(scores, np.float64).reshape(-1)
        lab = np.asarray(labels, np.int64).reshape(-1)
        rows += [(float(sc), int(lb), bx, m) for bx, sc, lb in zip(b, s, lab, strict=True)]
    rows.sort(key=lambda r: -r[0])
    out_boxes, out_scores, out_labels, out_agree = [], [], [], []
    for label in sorted({r[1] for r in rows}):
        clusters: list[list[tuple[float, np.ndarray, int]]] = []
        fused: list[np.ndarray] = []
        for score, lb, box, m in rows:
            if lb != label:
                continue
            match = -1
            if fused:
                overlaps = _iou(box, np.stack(fused))
                best = int(np.argmax(overlaps))
                if overlaps[best] > iou:
                    match = best
            if match < 0:
                clusters.append([(score, box, m)])
                fused.append(box.copy())
                continue
            clusters[match].append((score, box, m))
            if method == "wbf":
                w = np.array([c[0] for c in clusters[match]])
                fused[match] = (w[:, None] * np.stack([c[1] for c in clusters[match]])).sum(
                    0
                ) / max(w.sum(), 1e-12)
        for members, box in zip(clusters, fused, strict=True):
            scores_in = [c[0] for c in members]
            out_boxes.append(box if method == "wbf" else members[0][1])
            out_scores.append(
                min(1.0, sum(scores_in) / n_models) if method == "wbf" else members[0][0]
            )
            out_labels.append(label)
            out_agree.append(len({c[2] for c in members}) / n_models)
    order: np.ndarray | list[int] = (
        np.argsort(-np.asarray(out_scores), kind="stable") if out_scores else []
    )
    return {
        "boxes": np.array([out_boxes[i] for i in order], np.float32).reshape(-1, 4),
        "scores": np.array([out_scores[i] for i in order], np.float32),
        "labels": np.array([out_labels[i] for i in order], np.int64),
        "agreement": np.array([out_agree[i] for i in order], np.float32),
    }
