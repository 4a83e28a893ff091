"""Instance predictions as labels (torch-free): objects above the score threshold become
objects of the image, replacing its objects or added on background, as one undo step;
the browser's verdicts match predicted objects to labelled ones by their pixels."""

from __future__ import annotations

import numpy as np
from test_instances import H, W, proj, rect

from tlstudio.core import commands as C
from tlstudio.core.prediction_query import prediction_status
from tlstudio.core.predictions import (
    accept_command,
    describe_prediction,
    merged_annotations,
    prediction_annotations,
    unlabelled_image_ids,
)
from tlstudio.core.project import Project
from tlstudio.core.runs import Prediction, RunStore

__all__ = ["proj"]  # the fixture (two 32×24 images, classes cell and nucleus), by its name


def _stored(p: Project, image_id: int) -> tuple[int, Prediction]:
    """A run with one stored instance prediction on ``image_id``: object 1 (cell, 0.9) at
    columns 2..10, object 2 (nucleus, 0.3) at columns 14..20, object 3 (cell, 0.8) whose
    pixels all went to object 1 where they overlapped."""
    cell, nucleus = (p.class_by_name(n).id for n in ("cell", "nucleus"))
    numbers = np.zeros((H, W), np.uint16)
    numbers[rect(2, 2, 10, 10)] = 1
    numbers[rect(14, 4, 20, 12)] = 2
    payload = {"objects": [
        {"number": 1, "class_id": cell, "score": 0.9, "xyxy": [2, 2, 10, 10]},
        {"number": 2, "class_id": nucleus, "score": 0.3, "xyxy": [14, 4, 20, 12]},
        {"number": 3, "class_id": cell, "score": 0.8, "xyxy": [3, 3, 9, 9]},
    ]}  # fmt: skip
    runs = RunStore(p)
    run_id = runs.start("instances", "resnet18", {}, "cpu")
    runs.set_prediction(run_id, image_id, payload, numbers, 0.9)
    pred = runs.prediction(run_id, image_id)
    assert pred is not None
    return run_id, pred


def test_objects_above_the_threshold_are_proposed_with_their_pixels(proj):
    iid = proj.image_ids()[0]
    _run, pred = _stored(proj, iid)
    cell, nucleus = (proj.class_by_name(n).id for n in ("cell", "nucleus"))
    ann = prediction_annotations(proj, "instances", pred, score_threshold=0.5)
    assert ann.instances is not None
    assert [(o.number, o.class_id) for o in ann.instances.objects] == [(1, cell)]  # 3: no pixel
    assert np.array_equal(ann.instances.map > 0, rect(2, 2, 10, 10))
    assert np.array_equal(ann.mask, np.where(rect(2, 2, 10, 10), cell, 0))
    low = prediction_annotations(proj, "instances", pred, score_threshold=0.2)
    assert [(o.number, o.class_id) for o in low.instances.objects] == [(1, cell), (2, nucleus)]
    assert "2 objects ≥ 0.20 (best: cell 0.90) — labels: 0 objects" == describe_prediction(
        proj, "instances", pred, proj.annotations(iid), 0.2
    )


def test_replace_takes_out_the_objects_and_add_paints_only_background(proj):
    iid = proj.image_ids()[0]
    run_id, pred = _stored(proj, iid)
    cell, nucleus = (proj.class_by_name(n).id for n in ("cell", "nucleus"))
    proj.instances.add(iid, nucleus, rect(0, 0, 6, 6))  # overlaps the predicted object 1
    painted = proj.mask(iid)
    painted[20:24, 28:32] = cell  # class-brush pixels of no object
    proj.set_mask(iid, painted)
    current = proj.annotations(iid)
    proposed = prediction_annotations(proj, "instances", pred, score_threshold=0.2)

    replaced = merged_annotations(current, proposed, "instances", "replace", False)
    assert replaced is not None
    assert sorted(o.class_id for o in replaced.instances.objects) == [cell, nucleus]
    assert not (replaced.mask[rect(0, 0, 6, 6) & ~rect(2, 2, 10, 10)]).any()  # old object gone
    assert (replaced.mask[20:24, 28:32] == cell).all()  # brush pixels stay

    added = merged_annotations(current, proposed, "instances", "add", False)
    assert added is not None
    layer = added.instances
    assert len(layer.objects) == 3 and layer.objects[0].class_id == nucleus
    old_number = layer.objects[0].number
    assert (layer.map[rect(0, 0, 6, 6)] == old_number).all()  # kept its pixels
    new_cell = next(o for o in layer.objects[1:] if o.class_id == cell)
    assert np.array_equal(layer.map == new_cell.number, rect(2, 2, 10, 10) & ~rect(0, 0, 6, 6))

    stack = C.UndoStack(proj)
    before = proj.annotations(iid)
    cmd = accept_command(proj, run_id, [iid], score_threshold=0.2, mode="add")
    assert cmd is not None and cmd.text == "Accept predictions on 1 image"
    stack.push(cmd)
    assert len(proj.instances.of_image(iid)) == 3
    assert unlabelled_image_ids(proj, "instances") == [proj.image_ids()[1]]
    stack.undo()
    assert proj.annotations(iid) == before


def test_browser_verdict_matches_objects_by_their_pixels(proj):
    iid = proj.image_ids()[0]
    run_id, _pred = _stored(proj, iid)
    cell = proj.class_by_name("cell").id
    status = prediction_status(proj, run_id, score_threshold=0.5)[iid]
    assert status.correct is None and "none labelled" in status.reason
    proj.instances.add(iid, cell, rect(2, 2, 10, 9))  # IoU 56 / 64 with object 1
    status = prediction_status(proj, run_id, score_threshold=0.5)[iid]
    assert status.correct is True and status.reason == "1 of 1 labelled objects found"
    proj.instances.add(iid, cell, rect(24, 14, 30, 20))  # a cell the model missed
    status = prediction_status(proj, run_id, score_threshold=0.5)[iid]
    assert status.correct is False and status.reason == "1 of 2 labelled objects found"
    assert prediction_status(proj, run_id, iou=0.9, score_threshold=0.5)[iid].reason == (
        "0 of 2 labelled objects found, 1 extra"
    )
