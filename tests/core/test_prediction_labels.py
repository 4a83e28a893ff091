"""Stored predictions -> labels: per-task conversion, accept as one undo step."""

from __future__ import annotations

import numpy as np
import pytest

from tlstudio.core.annotations import SKIPPED, VISIBLE, Box, ImageAnnotations, LandmarkSet, Point
from tlstudio.core.commands import DeleteClass, SetTags, UndoStack
from tlstudio.core.errors import ValidationError
from tlstudio.core.predictions import (
    accept_command,
    describe_prediction,
    prediction_annotations,
    unlabelled_image_ids,
)
from tlstudio.core.runs import RunStore


def _run(project, task, template_id=None):
    runs = RunStore(project)
    run_id = runs.start(task, "resnet18", {"task": task, "template_id": template_id})
    return runs, run_id


def _ids(project):
    classes = {c.name: c.id for c in project.classes()}
    return project.image_ids(), classes


def test_classify_single_label_takes_the_argmax_only_above_threshold(project):
    images, cls = _ids(project)
    runs, run = _run(project, "classify")
    probs = {str(cls["cat"]): 0.2, str(cls["dog"]): 0.7, str(cls["bird"]): 0.1}
    runs.set_prediction(run, images[0], {"probs": probs, "class_id": cls["dog"]}, score=0.7)
    pred = runs.prediction(run, images[0])
    record = runs.get(run)

    assert prediction_annotations(project, record, pred, 0.5).tags == (cls["dog"],)
    assert prediction_annotations(project, "classify", pred, 0.8).is_empty


def test_classify_multi_label_takes_every_class_above_threshold_in_class_order(project):
    project.multi_label = True
    images, cls = _ids(project)
    runs, run = _run(project, "classify")
    probs = {str(cls["bird"]): 0.9, str(cls["cat"]): 0.6, str(cls["dog"]): 0.3}
    runs.set_prediction(run, images[0], {"probs": probs, "class_id": cls["bird"]}, score=0.9)
    pred = runs.prediction(run, images[0])

    assert prediction_annotations(project, "classify", pred, 0.5).tags == (cls["cat"], cls["bird"])
    assert prediction_annotations(project, "classify", pred, 0.95).tags == ()


def test_detect_keeps_boxes_at_or_above_threshold_clipped_to_the_image(project):
    images, cls = _ids(project)  # images are 32×24 px
    runs, run = _run(project, "detect")
    boxes = [
        {"class_id": cls["cat"], "score": 0.9, "xyxy": [2.0, 3.0, 12.5, 20.0]},
        {"class_id": cls["dog"], "score": 0.5, "xyxy": [-4.0, 10.0, 40.0, 30.0]},
        {"class_id": cls["bird"], "score": 0.49, "xyxy": [1.0, 1.0, 5.0, 5.0]},
    ]
    runs.set_prediction(run, images[1], {"boxes": boxes}, score=0.9)
    ann = prediction_annotations(project, "detect", runs.prediction(run, images[1]), 0.5)

    assert ann.boxes == (
        Box(cls["cat"], 2.0, 3.0, 12.5, 20.0),
        Box(cls["dog"], 0.0, 10.0, 32.0, 24.0),
    )
    assert not ann.tags and not ann.landmarks and ann.mask is None


def test_landmarks_skip_low_confidence_points_on_the_runs_template(project):
    images, _ = _ids(project)
    template = project.templates()[0]  # Face 5
    runs, run = _run(project, "landmarks", template.id)
    pts = [[4.0, 5.0, 0.9], [10.0, 6.0, 0.2], [40.0, 12.0, 0.8], [8.0, 18.0, 0.6], [16, 20, 0.1]]
    runs.set_prediction(run, images[0], {"points": pts}, score=0.52)
    record, pred = runs.get(run), runs.prediction(run, images[0])

    ann = prediction_annotations(project, record, pred, 0.5)
    (lms,) = ann.landmarks
    assert lms.template_id == template.id
    assert [p.visibility for p in lms.points] == [VISIBLE, SKIPPED, VISIBLE, VISIBLE, SKIPPED]
    assert (lms.points[0].x, lms.points[0].y) == (4.0, 5.0)
    assert (lms.points[2].x, lms.points[2].y) == (32.0, 12.0)  # clipped to the 32 px width
    assert prediction_annotations(project, record, pred, 0.95).is_empty


def test_segment_gives_the_predicted_mask_and_autoencode_says_it_has_no_labels(project):
    images, cls = _ids(project)
    runs, run = _run(project, "segment")
    mask = np.zeros((24, 32), np.uint16)
    mask[4:10, 5:15] = cls["bird"]
    runs.set_prediction(run, images[2], {"classes": [cls["bird"]]}, mask=mask)
    ann = prediction_annotations(project, "segment", runs.prediction(run, images[2]), 0.99)
    assert np.array_equal(ann.mask, mask)

    runs_ae, ae = _run(project, "autoencode")
    runs_ae.set_prediction(ae, images[2], {"latent": [0.1, 0.2], "error": 0.01}, score=0.01)
    with pytest.raises(ValidationError, match="no labels"):
        prediction_annotations(project, "autoencode", runs_ae.prediction(ae, images[2]))
    with pytest.raises(ValidationError, match="no labels"):
        accept_command(project, ae, images)


def test_accept_replace_is_one_undo_step_that_restores_the_store_exactly(project, db_state):
    images, cls = _ids(project)
    stack = UndoStack(project)
    stack.push(SetTags(images[0], [cls["cat"]]))
    project.add_box(images[1], Box(cls["cat"], 1, 1, 9, 9))
    runs, run = _run(project, "detect")
    box = {"class_id": cls["dog"], "score": 0.8, "xyxy": [3.0, 4.0, 20.0, 22.0]}
    weak = {"class_id": cls["dog"], "score": 0.1, "xyxy": [3.0, 4.0, 20.0, 22.0]}
    runs.set_prediction(run, images[1], {"boxes": [box]}, score=0.8)
    runs.set_prediction(run, images[2], {"boxes": [box, box]}, score=0.8)
    runs.set_prediction(run, images[3], {"boxes": [weak]}, score=0.1)  # nothing above 0.5
    before = db_state(project.store.conn)

    command = accept_command(project, run, images, 0.5, mode="replace")
    assert command.text == "Accept predictions on 2 images"
    stack.push(command)
    assert project.boxes(images[1]) == (
        Box(cls["dog"], 3.0, 4.0, 20.0, 22.0, project.boxes(images[1])[0].id),
    )
    assert len(project.boxes(images[2])) == 2
    assert project.boxes(images[3]) == ()
    assert project.tags(images[0]) == (cls["cat"],)  # other kinds are untouched

    stack.undo()
    assert db_state(project.store.conn) == before
    assert stack.undo_text == "Set class"  # the accept was exactly one step


def test_accept_add_keeps_existing_labels(project):
    images, cls = _ids(project)
    old = project.add_box(images[0], Box(cls["cat"], 1, 1, 9, 9))
    runs, run = _run(project, "detect")
    runs.set_prediction(
        run, images[0], {"boxes": [{"class_id": cls["dog"], "score": 0.9,
                                    "xyxy": [10.0, 10.0, 20.0, 20.0]}]}, score=0.9,
    )  # fmt: skip
    UndoStack(project).push(accept_command(project, run, [images[0]], 0.5, mode="add"))
    boxes = project.boxes(images[0])
    assert boxes[0] == old
    assert [(b.class_id, b.xyxy) for b in boxes[1:]] == [(cls["dog"], (10.0, 10.0, 20.0, 20.0))]

    # single-label tags: add never overwrites an existing tag
    project.set_tags(images[1], [cls["cat"]])
    runs_c, crun = _run(project, "classify")
    for i in images[1:3]:
        runs_c.set_prediction(crun, i, {"probs": {str(cls["bird"]): 0.9}}, score=0.9)
    command = accept_command(project, crun, images[1:3], 0.5, mode="add")
    assert command.text == "Accept predictions on 1 image"
    UndoStack(project).push(command)
    assert project.tags(images[1]) == (cls["cat"],)
    assert project.tags(images[2]) == (cls["bird"],)


def test_accept_add_paints_mask_only_on_background(project):
    images, cls = _ids(project)
    label = np.zeros((24, 32), np.uint16)
    label[0:5, 0:5] = cls["cat"]
    project.set_mask(images[0], label)
    pred = np.zeros((24, 32), np.uint16)
    pred[2:10, 2:10] = cls["dog"]
    runs, run = _run(project, "segment")
    runs.set_prediction(run, images[0], {"classes": [cls["dog"]]}, mask=pred)
    UndoStack(project).push(accept_command(project, run, [images[0]], 0.5, mode="add"))
    got = project.mask(images[0])
    assert (got[0:5, 0:5] == cls["cat"]).all()
    assert (got[5:10, 2:10] == cls["dog"]).all() and (got[2:5, 5:10] == cls["dog"]).all()
    assert int((got == cls["dog"]).sum()) == 64 - 9


def test_accept_with_deleted_class_is_a_clear_error(project):
    images, cls = _ids(project)
    runs, run = _run(project, "detect")
    runs.set_prediction(
        run, images[0], {"boxes": [{"class_id": cls["bird"], "score": 0.9,
                                    "xyxy": [1.0, 1.0, 5.0, 5.0]}]}, score=0.9,
    )  # fmt: skip
    UndoStack(project).push(DeleteClass(cls["bird"]))
    with pytest.raises(ValidationError, match=rf"run #{run} predicts class ids \[{cls['bird']}\]"):
        accept_command(project, run, images)


def test_unlabelled_images_and_description(project):
    images, cls = _ids(project)
    project.set_tags(images[0], [cls["cat"]])
    project.add_landmark_set(
        images[1], LandmarkSet(project.templates()[0].id, tuple(Point(1, 1) for _ in range(5)))
    )
    assert unlabelled_image_ids(project, "classify") == images[1:]
    assert unlabelled_image_ids(project, "landmarks", project.templates()[0].id) == [
        i for i in images if i != images[1]
    ]
    runs, run = _run(project, "classify")
    probs = {str(cls["cat"]): 0.05, str(cls["dog"]): 0.04, str(cls["bird"]): 0.91}
    runs.set_prediction(run, images[0], {"probs": probs}, score=0.91)
    pred = runs.prediction(run, images[0])
    text = describe_prediction(project, "classify", pred, project.annotations(images[0]))
    assert text == "bird 91% — label: cat ✗"
    assert describe_prediction(project, "classify", pred, ImageAnnotations(images[0])) == (
        "bird 91% — no label yet"
    )
