"""Raw outputs of an exported model → predictions in image pixels, in numpy.

The exported graphs already hold the task's own post-processing (detector box filtering
and non-maximum suppression, heatmap peak decoding); what is left is merging a detector
ensemble's member boxes (:func:`fuse_members`, as the PyTorch ensemble does), taking one
image's slice, scaling network-input coordinates to the image's own pixels and naming classes.
The arithmetic is that of :func:`tlstudio.ml.tasks.base.to_image_frame` (float32 scaling,
PyTorch's ``nearest-exact`` mask resize), so results equal the project's stored
predictions.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from .fusion import fuse_detections
from .objects import ObjectMask, grid_offset, instance_map, paste_objects
from .sidecar import Sidecar


def scale_xy(xy: np.ndarray, input_size: int, orig_hw: tuple[int, int]) -> np.ndarray:
    """A float32 copy of ``xy`` (… × 2k: x, y pairs in input pixels, continuous frame)
    with x scaled by width / S and y by height / S: image pixels."""
    out = np.array(xy, dtype=np.float32)
    out[..., 0::2] *= orig_hw[1] / input_size
    out[..., 1::2] *= orig_hw[0] / input_size
    return out


def resize_mask_nearest(mask: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """``mask`` (h × w label map) resized to ``out_hw`` by PyTorch's ``nearest-exact`` rule:
    output row i takes input row min(floor((i + 0.5) · h / H), h − 1), computed as
    PyTorch does (float32 scale, product rounded to float32), columns alike."""

    def source(n_in: int, n_out: int) -> np.ndarray:
        scale = np.float64(np.float32(n_in) / np.float32(n_out))
        pos = ((np.arange(n_out, dtype=np.float64) + 0.5) * scale).astype(np.float32)
        return np.minimum(np.floor(pos).astype(np.int64), n_in - 1)

    h, w = mask.shape
    if (h, w) == tuple(out_hw):
        return mask.copy()
    return mask[source(h, out_hw[0])[:, None], source(w, out_hw[1])[None, :]]


def _objects(side: Sidecar, raw: dict[str, np.ndarray], orig_hw: tuple[int, int]) -> dict:
    """An instance model's objects pasted at the image's size (see :mod:`.objects`)."""
    s = side.input_size
    xyxy = scale_xy(raw["boxes"].reshape(-1, 4), s, orig_hw)
    pasted = paste_objects(raw["mask_probs"], xyxy, orig_hw, grid_offset((s, s), orig_hw))
    kept: list[ObjectMask] = []
    objects: list[dict[str, Any]] = []
    for obj, b, sc, c in zip(pasted, xyxy.tolist(), raw["scores"].tolist(),
                             raw["labels"].tolist(), strict=True):  # fmt: skip
        if not obj.area:
            continue
        kept.append(obj)
        objects.append({"number": len(kept), "class": side.class_names[int(c)],
                        "class_id": side.class_ids[int(c)], "score": float(sc),
                        "xyxy": [float(v) for v in b]})  # fmt: skip
    return {"objects": objects, "mask": instance_map(kept, orig_hw),
            "score": max((o["score"] for o in objects), default=0.0)}  # fmt: skip


def fuse_members(side: Sidecar, raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A detector ensemble's per-member outputs (``boxes_m``, ``scores_m``, ``labels_m``)
    merged as the ensemble merges them (:func:`~tlstudio.runtime.fusion.fuse_detections`
    with the sidecar's ``ensemble.combine`` and ``ensemble.iou``): ``boxes``, ``scores``,
    ``labels`` and ``agreement`` (fraction of the members that found each box)."""
    parts = [
        (raw[f"boxes_{m}"], raw[f"scores_{m}"], raw[f"labels_{m}"])
        for m in range(side.ensemble_members)
    ]
    return fuse_detections(parts, method=side.ensemble_combine, iou=side.ensemble_iou)


def decode_prediction(
    side: Sidecar, raw: dict[str, np.ndarray], k: int, orig_hw: tuple[int, int]
) -> dict[str, Any]:
    """Image ``k`` of a batch's raw outputs as a prediction payload in image pixels
    (``orig_hw`` = the image's height, width); see :class:`~tlstudio.runtime.ExportedModel`
    for the keys per task."""
    if "," in side.task:
        return _joint_prediction(side, raw, k, orig_hw)
    names, ids = side.class_names, side.class_ids
    size = side.input_size
    if side.task == "classify":
        probs = raw["probs"][k].astype(float).tolist()
        i = int(np.argmax(probs))
        return {"class": names[i], "class_id": ids[i], "score": float(max(probs)),
                "probs": dict(zip(names, probs, strict=True))}  # fmt: skip
    if side.task == "detect" and side.ensemble_members:
        raw = fuse_members(side, raw)
    if side.task == "detect":
        xyxy = scale_xy(raw["boxes"].reshape(-1, 4), size, orig_hw).tolist()
        scores = [float(sc) for sc in raw["scores"].tolist()]
        labels = [int(lbl) for lbl in raw["labels"].tolist()]
        boxes = [
            {"class": names[c], "class_id": ids[c], "score": sc, "xyxy": [float(v) for v in b]}
            for b, sc, c in zip(xyxy, scores, labels, strict=True)
        ]
        if "agreement" in raw:  # an ensemble: the fraction of members that found each box
            for box, agree in zip(boxes, raw["agreement"].tolist(), strict=True):
                box["agreement"] = float(agree)
        top = max(scores, default=0.0)
        return {"boxes": boxes, "score": top}
    if side.task == "instances":
        return _objects(side, raw, orig_hw)
    if side.task == "landmarks":
        kp = np.asarray(raw["keypoints"][k], dtype=np.float32)
        pts = np.concatenate([scale_xy(kp[:, :2], size, orig_hw), kp[:, 2:3]], axis=1)
        points = [[float(x), float(y), float(c)] for x, y, c in pts.tolist()]
        return {"points": points, "names": list(side.point_names),
                "score": float(np.mean([p[2] for p in points])) if points else None}  # fmt: skip
    if side.task == "segment":
        mask = resize_mask_nearest(raw["probs"][k].argmax(0), orig_hw).astype(np.uint16)
        present = sorted(int(v) for v in np.unique(mask) if v)
        return {"classes": [names[v - 1] for v in present], "mask": mask, "score": None}
    err = float(raw["error"][k])  # autoencode
    return {"latent": [float(v) for v in raw["latent"][k].tolist()], "error": err, "score": err}


def _joint_prediction(
    side: Sidecar, raw: dict[str, np.ndarray], k: int, orig_hw: tuple[int, int]
) -> dict[str, Any]:
    """A multi-task model's prediction: each task's payload side by side (their keys do not
    clash: classify "class", "class_id", "probs"; landmarks "points", "names"; segment
    "classes", "mask"), "tasks" in order and the first task's "score"."""
    tasks = side.task.split(",")
    out: dict[str, Any] = {"tasks": tasks}
    score = None
    for i, task in enumerate(tasks):
        prefix = f"{task}_"
        own = {n[len(prefix) :]: v for n, v in raw.items() if n.startswith(prefix)}
        part = decode_prediction(dataclasses.replace(side, task=task), own, k, orig_hw)
        if i == 0:
            score = part.get("score")
        out.update(part)
    out["score"] = score
    return out
