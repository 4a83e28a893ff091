"""Turn a run's stored predictions into labels (model-assisted labelling).

Qt-free and torch-free: it reads the :class:`~tlstudio.core.runs.Prediction`
payloads that :func:`tlstudio.ml.runner.predict` stored (coordinates in image
pixels, origin at the top-left corner; class ids are database ids) and builds
annotations and undoable commands from them.

Scores and the threshold are in [0, 1]: a class probability (classify), a box
score (detect), an object's score (instances) or a point's heatmap confidence
(landmarks). Segmentation masks have no per-pixel score, so the threshold does not
apply to them.

An instance prediction stores its objects in the payload (``"objects"``: number,
class id, score, box) and their pixels as the prediction's mask: an object map,
pixel = the object's number (where two predicted objects overlap, the better-scoring
one has the pixel).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Any

import numpy as np

from .annotations import (
    SKIPPED,
    VISIBLE,
    Box,
    ImageAnnotations,
    Instance,
    InstanceLayer,
    LandmarkSet,
    Point,
)
from .commands import CommandGroup, SetAnnotations
from .errors import ValidationError
from .instances import MAX_NUMBER, pruned
from .project import Project
from .runs import Prediction, RunRecord, RunStore

ACCEPT_MODES = ("replace", "add")
#: Tasks whose predictions can become labels (autoencoders predict none).
LABEL_TASKS = ("classify", "detect", "landmarks", "segment", "instances")
NO_LABELS_NOTE = (
    "autoencoder runs predict no labels (only a latent vector and a reconstruction error); "
    "there is nothing to accept"
)


def run_template_id(record: RunRecord) -> int | None:
    """The landmark template a run was trained on (None for other tasks)."""
    value = record.config.get("template_id")
    return None if value is None else int(value)


def prediction_class_ids(task: str, prediction: Prediction) -> set[int]:
    """Every class id (database id) a prediction refers to."""
    p = prediction.payload
    if task == "classify":
        return {int(k) for k in p.get("probs", {})}
    if task == "detect":
        return {int(b["class_id"]) for b in p.get("boxes", [])}
    if task == "instances":
        return {int(o["class_id"]) for o in p.get("objects", [])}
    if task == "segment":
        ids = {int(c) for c in p.get("classes", [])}
        if prediction.mask is not None:
            ids |= {int(v) for v in np.unique(prediction.mask) if v}
        return ids
    return set()


def check_classes(project: Project, task: str, prediction: Prediction) -> None:
    """Raise ValidationError if the prediction names classes the project no longer has."""
    missing = sorted(prediction_class_ids(task, prediction) - {c.id for c in project.classes()})
    if missing:
        raise ValidationError(
            f"run #{prediction.run_id} predicts class ids {missing}, which no longer exist in "
            "the project (deleted or merged?); train and predict again on the current classes"
        )


def prediction_annotations(
    project: Project,
    record_or_task: RunRecord | str,
    prediction: Prediction,
    score_threshold: float = 0.5,
    template_id: int | None = None,
) -> ImageAnnotations:
    """The labels a prediction proposes for its image, as an ImageAnnotations with
    only the predicted kind filled (no ids):

    - classify: the argmax class as a tag if its probability is ≥ the threshold;
      in a multi-label project every class with probability ≥ the threshold;
    - detect: every box with score ≥ the threshold, clipped to the image;
    - landmarks: one set on the run's template (``template_id``, default: the run's);
      points with confidence < the threshold are SKIPPED (visibility 0), the others
      VISIBLE and clipped to the image; no set at all when every point is skipped;
    - segment: the predicted label map (the threshold does not apply);
    - instances: every object with score ≥ the threshold, with the pixels it has in the
      stored object map (``instances``; ``mask`` = the label map they paint).

    Autoencoder runs (and unknown tasks) raise ValidationError, as do predictions
    naming classes the project no longer has."""
    if isinstance(record_or_task, RunRecord):
        task = record_or_task.task
        if template_id is None:
            template_id = run_template_id(record_or_task)
    else:
        task = str(record_or_task)
    if task == "autoencode":
        raise ValidationError(NO_LABELS_NOTE)
    if "," in task:
        raise ValidationError(
            f"accepting a multi-task run's predictions ({task}) as labels is not built; "
            "accept those of a single-task run"
        )
    if task not in LABEL_TASKS:
        raise ValidationError(f"unknown task {task!r}; expected one of {', '.join(LABEL_TASKS)}")
    check_classes(project, task, prediction)
    t = float(score_threshold)
    rec = project.image(prediction.image_id)
    out = ImageAnnotations(prediction.image_id)
    p = prediction.payload
    if task == "classify":
        probs = {int(k): float(v) for k, v in p.get("probs", {}).items()}
        if not probs:
            return out
        if project.multi_label:
            order = {c.id: c.position for c in project.classes()}
            tags = sorted((c for c, v in probs.items() if v >= t), key=lambda c: order[c])
        else:
            best = max(probs, key=probs.__getitem__)
            tags = [best] if probs[best] >= t else []
        return replace(out, tags=tuple(tags))
    if task == "detect":
        boxes = []
        for b in p.get("boxes", []):
            if float(b["score"]) < t:
                continue
            x1, y1, x2, y2 = (float(v) for v in b["xyxy"])
            x1, x2 = min(max(x1, 0.0), rec.width), min(max(x2, 0.0), rec.width)
            y1, y2 = min(max(y1, 0.0), rec.height), min(max(y2, 0.0), rec.height)
            if x1 < x2 and y1 < y2:
                boxes.append(Box(int(b["class_id"]), x1, y1, x2, y2))
        return replace(out, boxes=tuple(boxes))
    if task == "instances":
        return _proposed_objects(out, prediction, rec.width, rec.height, t)
    if task == "landmarks":
        if template_id is None:
            raise ValidationError(
                f"run #{prediction.run_id}: no landmark template recorded for this run"
            )
        template = project.template(template_id)
        raw = p.get("points", [])
        if len(raw) != len(template.points):
            raise ValidationError(
                f"run #{prediction.run_id} predicts {len(raw)} points but template "
                f"{template.name!r} has {len(template.points)}; predict again"
            )
        points = []
        for x, y, conf in raw:
            if float(conf) < t:
                points.append(Point(0.0, 0.0, SKIPPED))
            else:
                px = min(max(float(x), 0.0), float(rec.width))
                py = min(max(float(y), 0.0), float(rec.height))
                points.append(Point(px, py, VISIBLE))
        if all(pt.visibility == SKIPPED for pt in points):
            return out
        return replace(out, landmarks=(LandmarkSet(template_id, tuple(points)),))
    # segment
    mask = prediction.mask
    if mask is None or not mask.any():
        return out
    if mask.shape != (rec.height, rec.width):
        raise ValidationError(
            f"image {rec.path}: predicted mask is {mask.shape[1]}×{mask.shape[0]} px, "
            f"image is {rec.width}×{rec.height} px; predict again"
        )
    return replace(out, mask=mask.astype(np.uint16))


def _proposed_objects(
    out: ImageAnnotations, prediction: Prediction, width: int, height: int, threshold: float
) -> ImageAnnotations:
    objects = [o for o in prediction.payload.get("objects", []) if float(o["score"]) >= threshold]
    numbers = prediction.mask
    if numbers is None or not objects:
        return out
    if numbers.shape != (height, width):
        raise ValidationError(
            f"image {prediction.image_id}: predicted objects cover {numbers.shape[1]}×"
            f"{numbers.shape[0]} px, the image is {width}×{height} px; predict again"
        )
    lut = np.zeros(max(int(numbers.max()), max(int(o["number"]) for o in objects)) + 1, np.uint16)
    for o in objects:
        lut[int(o["number"])] = int(o["number"])
    layer = pruned(InstanceLayer(
        lut[numbers], tuple(Instance(int(o["number"]), int(o["class_id"])) for o in objects)
    ))  # fmt: skip
    if layer is None:
        return out
    return replace(out, mask=layer.semantic(), instances=layer)


def _merged_objects(current: ImageAnnotations, proposed: ImageAnnotations, mode: str
                    ) -> ImageAnnotations:  # fmt: skip
    """``current`` with the proposed objects: "replace" takes out the current objects
    (their pixels become background) and paints the proposed ones; "add" paints proposed
    pixels that are background now, as new objects numbered after the current ones."""
    new = proposed.instances
    assert new is not None and proposed.mask is not None  # _proposed_objects made both
    mask = np.zeros(new.map.shape, np.uint16) if current.mask is None else current.mask.copy()
    old = current.instances
    if mode == "replace":
        if old is not None:
            mask[old.map > 0] = 0
        painted = new.map > 0
        mask[painted] = proposed.mask[painted]
        return replace(current, mask=mask, instances=new)
    offset = 0 if old is None else max((o.number for o in old.objects), default=0)
    if offset + max(o.number for o in new.objects) > MAX_NUMBER:
        raise ValidationError(f"image {current.image_id}: too many objects to add more")
    numbers = np.zeros(new.map.shape, np.uint16) if old is None else old.map.copy()
    free = (mask == 0) & (new.map > 0)
    numbers[free] = new.map[free] + offset
    mask[free] = proposed.mask[free]
    added = tuple(replace(o, number=o.number + offset) for o in new.objects)
    layer = pruned(InstanceLayer(numbers, (*(old.objects if old else ()), *added)))
    return replace(current, mask=mask, instances=layer)


def merged_annotations(
    current: ImageAnnotations, proposed: ImageAnnotations, task: str, mode: str, multi_label: bool
) -> ImageAnnotations | None:
    """``current`` with ``proposed`` written in, or None if nothing would change.

    ``mode="replace"``: the labels of the task's kind are replaced (tags; boxes;
    landmark sets on the proposed template; the mask). ``mode="add"`` never removes
    or changes a label: tags are added (single-label: only on untagged images),
    boxes and landmark sets appended, and mask pixels (and predicted objects' pixels)
    painted only where the current mask is background (0). Objects: see
    :func:`_merged_objects`."""
    if mode not in ACCEPT_MODES:
        raise ValidationError(f"unknown accept mode {mode!r}; use 'replace' or 'add'")
    new = current
    if task == "classify" and proposed.tags:
        if mode == "replace":
            tags = proposed.tags
        elif multi_label:
            tags = (*current.tags, *(c for c in proposed.tags if c not in current.tags))
        else:
            tags = current.tags or proposed.tags
        new = replace(current, tags=tuple(tags))
    elif task == "detect" and proposed.boxes:
        boxes = proposed.boxes if mode == "replace" else (*current.boxes, *proposed.boxes)
        new = replace(current, boxes=tuple(boxes))
    elif task == "landmarks" and proposed.landmarks:
        tid = proposed.landmarks[0].template_id
        kept = current.landmarks
        if mode == "replace":
            kept = tuple(s for s in kept if s.template_id != tid)
        new = replace(current, landmarks=(*kept, *proposed.landmarks))
    elif task == "instances" and proposed.instances is not None:
        new = _merged_objects(current, proposed, mode)
    elif task == "segment" and proposed.mask is not None:
        if mode == "replace" or current.mask is None:
            mask = proposed.mask
        else:
            mask = np.where(current.mask == 0, proposed.mask, current.mask).astype(np.uint16)
        new = replace(current, mask=mask)
    return None if new == current else new


def accept_command(
    project: Project,
    run_id: int,
    image_ids: Iterable[int],
    score_threshold: float = 0.5,
    mode: str = "replace",
) -> CommandGroup | None:
    """One undoable step that writes run ``run_id``'s predictions as labels on
    ``image_ids`` (see :func:`prediction_annotations` and :func:`merged_annotations`).

    Images without a stored prediction, with nothing above the threshold, or whose
    labels would not change are skipped; None when no image is left. The step's
    text says how many images it labels ("Accept predictions on 12 images").
    Raises ValidationError for autoencoder runs, unknown modes and predictions
    naming classes that no longer exist."""
    if mode not in ACCEPT_MODES:
        raise ValidationError(f"unknown accept mode {mode!r}; use 'replace' or 'add'")
    runs = RunStore(project)
    record = runs.get(run_id)
    if record.task == "autoencode":
        raise ValidationError(NO_LABELS_NOTE)
    multi = project.multi_label
    commands = []
    for image_id in image_ids:
        pred = runs.prediction(run_id, image_id)
        if pred is None:
            continue
        proposed = prediction_annotations(project, record, pred, score_threshold)
        if proposed.is_empty:
            continue
        new = merged_annotations(project.annotations(image_id), proposed, record.task, mode, multi)
        if new is not None:
            commands.append(SetAnnotations(new, text="Accept prediction"))
    if not commands:
        return None
    n = len(commands)
    return CommandGroup(commands, f"Accept predictions on {n} image{'s' if n != 1 else ''}")


def accept_count(command: CommandGroup | None) -> int:
    """How many images an :func:`accept_command` step labels (0 for None)."""
    return 0 if command is None else len(command.commands)


def unlabelled_image_ids(project: Project, task: str, template_id: int | None = None) -> list[int]:
    """Images without labels of the kind ``task`` predicts (no tag for classify, no box
    for detect, no set on ``template_id`` for landmarks, no mask for segment, no object
    for instances); every
    image with no labels at all for other tasks. Id order."""
    c = project.store.conn
    sql = {
        "classify": "SELECT id FROM images i WHERE NOT EXISTS"
        " (SELECT 1 FROM tags WHERE image_id = i.id) ORDER BY id",
        "detect": "SELECT id FROM images i WHERE NOT EXISTS"
        " (SELECT 1 FROM boxes WHERE image_id = i.id) ORDER BY id",
        "segment": "SELECT id FROM images i WHERE NOT EXISTS"
        " (SELECT 1 FROM masks WHERE image_id = i.id) ORDER BY id",
        "instances": "SELECT id FROM images i WHERE NOT EXISTS"
        " (SELECT 1 FROM instances WHERE image_id = i.id) ORDER BY id",
    }
    if task in sql:
        return [r[0] for r in c.execute(sql[task])]
    if task == "landmarks" and template_id is not None:
        rows = c.execute(
            "SELECT id FROM images i WHERE NOT EXISTS (SELECT 1 FROM landmark_sets"
            " WHERE image_id = i.id AND template_id = ?) ORDER BY id",
            (template_id,),
        )
        return [r[0] for r in rows]
    return [
        r[0]
        for r in c.execute(
            "SELECT id FROM images i WHERE NOT EXISTS (SELECT 1 FROM tags WHERE image_id = i.id)"
            " AND NOT EXISTS (SELECT 1 FROM boxes WHERE image_id = i.id)"
            " AND NOT EXISTS (SELECT 1 FROM landmark_sets WHERE image_id = i.id)"
            " AND NOT EXISTS (SELECT 1 FROM masks WHERE image_id = i.id) ORDER BY id"
        )
    ]


def describe_prediction(
    project: Project,
    task: str,
    prediction: Prediction | None,
    labels: ImageAnnotations | None = None,
    score_threshold: float = 0.5,
) -> str:
    """One line for people about a prediction and how it compares with the labels,
    e.g. ``circle 91% — label: square ✗`` (classify) or ``3 boxes ≥ 0.50 (best:
    circle 0.87) — labels: 2 boxes``."""
    if prediction is None:
        return "No prediction for this image yet: press Predict."
    if "," in task:  # a multi-task run: each task's line in turn
        return " · ".join(
            describe_prediction(project, t, prediction, labels, score_threshold)
            for t in task.split(",")
        )
    names = {c.id: c.name for c in project.classes()}
    p = prediction.payload

    def name(cid: int) -> str:
        return names.get(int(cid), f"deleted class {cid}")

    if task == "classify":
        probs = {int(k): float(v) for k, v in p.get("probs", {}).items()}
        if not probs:
            return "Empty prediction."
        best = max(probs, key=probs.__getitem__)
        text = f"{name(best)} {probs[best]:.0%}"
        spread = p.get("spread")  # an ensemble's: how far its members' probabilities differ
        if isinstance(spread, dict) and str(best) in spread:
            text += f" ± {float(spread[str(best)]):.0%} between the ensemble's models"
        if project.multi_label:
            above = [name(c) for c, v in probs.items() if v >= score_threshold]
            text = f"≥ {score_threshold:.2f}: {', '.join(above) or 'none'}"
        if labels is not None:
            if not labels.tags:
                text += " — no label yet"
            else:
                tags = ", ".join(name(c) for c in labels.tags)
                ok = best in labels.tags
                text += f" — label: {tags} {'✓' if ok else '✗'}"
        return text

    def scored(items: list[dict[str, Any]], what: str, plural: str, labelled: int | None) -> str:
        kept = [b for b in items if float(b["score"]) >= score_threshold]
        text = f"{len(kept)} {what if len(kept) == 1 else plural} ≥ {score_threshold:.2f}"
        if items:
            top = max(items, key=lambda b: float(b["score"]))
            text += f" (best: {name(top['class_id'])} {float(top['score']):.2f}"
            if "agreement" in top:  # an ensemble's fused box
                text += f", found by {float(top['agreement']):.0%} of the ensemble's models"
            text += ")"
        if labelled is not None:
            text += f" — labels: {labelled} {what if labelled == 1 else plural}"
        return text

    if task == "detect":
        n_boxes = None if labels is None else len(labels.boxes)
        return scored(p.get("boxes", []), "box", "boxes", n_boxes)
    if task == "instances":
        numbers = prediction.mask
        counts = np.bincount(numbers.ravel()) if numbers is not None else np.zeros(1, np.int64)
        objects = [  # objects that lost every pixel to better-scoring ones are no objects
            o
            for o in p.get("objects", [])
            if int(o["number"]) < len(counts) and counts[o["number"]]
        ]
        n_objects = None
        if labels is not None:
            n_objects = len(labels.instances.objects) if labels.instances is not None else 0
        return scored(objects, "object", "objects", n_objects)
    if task == "landmarks":
        pts = p.get("points", [])
        n_kept = sum(1 for pt in pts if float(pt[2]) >= score_threshold)
        mean = float(np.mean([pt[2] for pt in pts])) if pts else 0.0
        text = f"{n_kept} of {len(pts)} points ≥ {score_threshold:.2f}, mean confidence {mean:.2f}"
        spread = p.get("spread")
        if isinstance(spread, list) and spread:
            px = float(np.mean([np.hypot(float(sx), float(sy)) for sx, sy in spread]))
            text += f", the ensemble's models differ by {px:.1f} px on average"
        if labels is not None:
            n = len(labels.landmarks)
            text += f" — labels: {n} landmark set{'s' if n != 1 else ''}"
        return text
    if task == "segment":
        mask = prediction.mask
        if mask is None or not mask.any():
            text = "Mask: background only"
        else:
            ids, counts = np.unique(mask[mask > 0], return_counts=True)
            parts = sorted(zip(counts.tolist(), ids.tolist(), strict=True), reverse=True)
            text = "Mask: " + ", ".join(f"{name(c)} {_percent(n / mask.size)}" for n, c in parts)
        if labels is not None:
            if labels.mask is None or prediction.mask is None:
                text += " — no mask label" if labels.mask is None else ""
            elif labels.mask.shape == prediction.mask.shape:
                agree = float(np.mean(labels.mask == prediction.mask))
                text += f" — {agree:.0%} of pixels agree with the label"
        return text
    if task == "autoencode":
        return f"Reconstruction error {float(p.get('error', 0.0)):.4g} (no labels to accept)"
    return f"Prediction of an unknown task {task!r}"


def _percent(fraction: float) -> str:
    """ "37%", or "<1%" for a small non-zero fraction."""
    return "<1%" if 0 < fraction < 0.005 else f"{fraction:.0%}"
