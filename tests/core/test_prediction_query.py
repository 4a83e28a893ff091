"""Right/wrong and uncertainty of stored predictions, per task, from hand-written
predictions (no training): tlstudio.core.prediction_query."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tlstudio.core.annotations import Box, LandmarkSet, Point
from tlstudio.core.errors import ValidationError
from tlstudio.core.prediction_query import box_iou, mean_iou, prediction_status
from tlstudio.core.runs import RunStore

# the `project` fixture: 6 images of 32×24 px, classes cat, dog, bird, template "Face 5"


def _classes(project):
    return {c.name: c.id for c in project.classes()}


def _probs(project, **p):
    """A classify payload from {class name: probability}."""
    ids = _classes(project)
    probs = {str(ids[n]): v for n, v in p.items()}
    best = max(p, key=p.get)
    return {"probs": probs, "class_id": ids[best]}


def test_classify_right_wrong_unlabelled_and_margin(project):
    c = _classes(project)
    ids = project.image_ids()
    project.set_tags(ids[0], [c["cat"]])
    project.set_tags(ids[1], [c["cat"]])
    runs = RunStore(project)
    run = runs.start("classify", "resnet18", {"task": "classify"})
    runs.set_prediction(run, ids[0], _probs(project, cat=0.9, dog=0.06, bird=0.04), score=0.9)
    runs.set_prediction(run, ids[1], _probs(project, cat=0.3, dog=0.6, bird=0.1), score=0.6)
    runs.set_prediction(run, ids[2], _probs(project, cat=0.4, dog=0.35, bird=0.25), score=0.4)

    st = prediction_status(project, run)
    assert set(st) == {ids[0], ids[1], ids[2]}  # images without a prediction are absent
    assert st[ids[0]].correct is True
    assert st[ids[0]].uncertainty == pytest.approx(1 - (0.9 - 0.06))
    assert st[ids[1]].correct is False
    assert st[ids[1]].uncertainty == pytest.approx(1 - (0.6 - 0.3))
    assert "predicted dog" in st[ids[1]].reason and "labelled cat" in st[ids[1]].reason
    assert st[ids[2]].correct is None  # no tag to compare with
    assert st[ids[2]].uncertainty == pytest.approx(0.95)
    assert (st[ids[0]].mark, st[ids[1]].mark, st[ids[2]].mark) == ("✓", "✗", "·")


def test_classify_multi_label_compares_the_thresholded_set(project):
    project.multi_label = True
    c = _classes(project)
    ids = project.image_ids()
    project.set_tags(ids[0], [c["cat"], c["dog"]])
    project.set_tags(ids[1], [c["cat"], c["dog"]])
    runs = RunStore(project)
    run = runs.start("classify", "resnet18", {"task": "classify"})
    runs.set_prediction(run, ids[0], _probs(project, cat=0.9, dog=0.7, bird=0.1))
    runs.set_prediction(run, ids[1], _probs(project, cat=0.9, dog=0.45, bird=0.1))
    st = prediction_status(project, run)
    assert st[ids[0]].correct is True
    assert st[ids[1]].correct is False  # the arg-max (cat) is a tag, but dog was missed
    assert st[ids[1]].uncertainty == pytest.approx(1 - abs(2 * 0.45 - 1))


def _box(class_id, score, xyxy):
    return {"class_id": class_id, "score": score, "xyxy": list(xyxy)}


def test_detect_matching_by_class_iou_and_score(project):
    c = _classes(project)
    ids = project.image_ids()
    for i in ids[:5]:
        project.add_box(i, Box(c["cat"], 2, 2, 12, 12))
        project.add_box(i, Box(c["dog"], 16, 4, 28, 20))
    runs = RunStore(project)
    run = runs.start("detect", "resnet18", {"task": "detect"})
    cat, dog = (2, 2, 12, 12), (16, 4, 28, 20)
    cases = {
        ids[0]: [_box(c["cat"], 0.95, cat), _box(c["dog"], 0.9, (17, 4, 28, 20))],  # right
        ids[1]: [_box(c["cat"], 0.95, cat)],  # dog missed
        ids[2]: [_box(c["cat"], 0.95, cat), _box(c["bird"], 0.9, dog)],  # dog: wrong class
        ids[3]: [_box(c["cat"], 0.95, cat), _box(c["dog"], 0.9, (22, 4, 28, 20))],  # IoU 0.5
        # an extra confident box is wrong; a low-score one does not count but is doubtful
        ids[4]: [_box(c["cat"], 0.9, cat), _box(c["dog"], 0.8, dog), _box(c["cat"], 0.7, dog)],
        ids[5]: [_box(c["cat"], 0.55, cat)],  # nothing labelled
    }
    for i, boxes in cases.items():
        runs.set_prediction(run, i, {"boxes": boxes}, score=max(b["score"] for b in boxes))
    st = prediction_status(project, run)
    assert [st[i].correct for i in ids] == [True, False, False, True, False, None]
    assert "1 of 2 labelled boxes found" in st[ids[1]].reason
    assert "1 extra" in st[ids[4]].reason
    assert st[ids[0]].uncertainty == pytest.approx(1 - abs(2 * 0.9 - 1))
    assert st[ids[4]].uncertainty == pytest.approx(1 - abs(2 * 0.7 - 1))
    assert st[ids[5]].uncertainty == pytest.approx(0.9)
    # a stricter IoU makes the half-overlapping dog box a miss
    assert prediction_status(project, run, iou=0.6)[ids[3]].correct is False
    # a lower score threshold makes the 0.7 box an extra detection
    runs.set_prediction(run, ids[0], {"boxes": [*cases[ids[0]], _box(c["cat"], 0.3, dog)]})
    assert prediction_status(project, run)[ids[0]].correct is True
    assert prediction_status(project, run, score_threshold=0.2)[ids[0]].correct is False


def test_detect_no_predicted_box_is_most_uncertain(project):
    c = _classes(project)
    i = project.image_ids()[0]
    project.add_box(i, Box(c["cat"], 2, 2, 12, 12))
    runs = RunStore(project)
    run = runs.start("detect", "resnet18", {"task": "detect"})
    runs.set_prediction(run, i, {"boxes": []}, score=0.0)
    st = prediction_status(project, run)[i]
    assert st.correct is False and st.uncertainty == 1.0


def test_box_iou():
    assert box_iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert box_iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert box_iou((0, 0, 10, 10), (10, 0, 20, 10)) == 0.0


def test_landmarks_error_relative_to_the_image_diagonal(project):
    face = project.template_by_name("Face 5")
    n = len(face.points)
    ids = project.image_ids()
    labelled = [(5.0 + 3 * k, 6.0 + k) for k in range(n)]
    for i in ids[:3]:
        pts = tuple(Point(x, y) for x, y in labelled)
        project.add_landmark_set(i, LandmarkSet(face.id, pts))
    diag = math.hypot(32, 24)  # 40 px
    runs = RunStore(project)
    run = runs.start("landmarks", "resnet18", {"task": "landmarks", "template_id": face.id})

    def shifted(dx, conf):
        return {"points": [[x + dx, y, conf] for x, y in labelled]}

    runs.set_prediction(run, ids[0], shifted(0.09 * diag, 0.8))  # 9 % of the diagonal: right
    runs.set_prediction(run, ids[1], shifted(0.11 * diag, 0.3))  # 11 %: wrong
    runs.set_prediction(run, ids[2], shifted(0.0, 1.7))  # confidence is clipped to 1
    runs.set_prediction(run, ids[3], shifted(0.0, 0.5))  # no landmarks labelled
    st = prediction_status(project, run)
    assert [st[i].correct for i in ids[:4]] == [True, False, True, None]
    assert st[ids[0]].uncertainty == pytest.approx(0.2)
    assert st[ids[1]].uncertainty == pytest.approx(0.7)
    assert st[ids[2]].uncertainty == pytest.approx(0.0)
    assert "9.0% of the image diagonal" in st[ids[0]].reason


def test_landmarks_skipped_points_do_not_count_and_the_closest_set_wins(project):
    face = project.template_by_name("Face 5")
    n = len(face.points)
    i = project.image_ids()[0]
    near = [Point(4.0 + k, 4.0, 2) for k in range(n)]
    near[0] = Point(30.0, 20.0, 0)  # skipped: far from the prediction but ignored
    project.add_landmark_set(i, LandmarkSet(face.id, tuple(near)))
    far = tuple(Point(20.0 + k, 20.0, 2) for k in range(n))
    project.add_landmark_set(i, LandmarkSet(face.id, far))
    runs = RunStore(project)
    run = runs.start("landmarks", "resnet18", {"task": "landmarks", "template_id": face.id})
    runs.set_prediction(run, i, {"points": [[4.0 + k, 4.0, 0.9] for k in range(n)]})
    st = prediction_status(project, run)[i]
    assert st.correct is True and "mean error 0.0 px" in st.reason


def test_segment_mean_iou_over_present_classes(project):
    c = _classes(project)
    ids = project.image_ids()
    label = np.zeros((24, 32), np.uint16)
    label[:, :16] = c["cat"]
    for i in ids[:3]:
        project.set_mask(i, label)
    runs = RunStore(project)
    run = runs.start("segment", "resnet18", {"task": "segment"})
    good = label.copy()
    good[:, 12:16] = 0  # cat IoU 12/16 = 0.75
    bad = np.zeros_like(label)
    bad[:, :8] = c["cat"]  # cat IoU 8/16
    bad[:, 20:] = c["dog"]  # dog IoU 0 -> mean 0.25
    for i, m in ((ids[0], good), (ids[1], bad), (ids[2], label), (ids[3], good)):
        runs.set_prediction(run, i, {"classes": sorted(int(v) for v in np.unique(m) if v)}, m)
    st = prediction_status(project, run)
    assert st[ids[0]].correct is True and st[ids[0]].uncertainty == pytest.approx(0.25)
    assert st[ids[1]].correct is False and st[ids[1]].uncertainty == pytest.approx(0.75)
    assert st[ids[2]].correct is True and st[ids[2]].uncertainty == 0.0
    assert st[ids[3]].correct is None and st[ids[3]].uncertainty is None  # no mask labelled
    # relabelling is seen (results are cached by mask content, not by image)
    project.set_mask(ids[0], bad)  # now: cat IoU 8/12, dog IoU 0
    project.set_mask(ids[3], good)
    st = prediction_status(project, run)
    assert st[ids[0]].correct is False
    assert st[ids[0]].uncertainty == pytest.approx(1 - (8 / 12) / 2)
    assert st[ids[3]].correct is True


def test_mean_iou_of_two_backgrounds_is_one():
    z = np.zeros((4, 4), np.uint16)
    assert mean_iou(z, z) == 1.0
    one = z.copy()
    one[0, 0] = 3
    assert mean_iou(z, one) == 0.0


def test_autoencode_uncertainty_is_the_error_rank(project):
    ids = project.image_ids()
    runs = RunStore(project)
    run = runs.start("autoencode", "resnet18", {"task": "autoencode"})
    for i, err in zip(ids, [0.5, 0.1, 0.3, 0.3, 2.0], strict=False):
        runs.set_prediction(run, i, {"latent": [0.0], "error": err}, score=err)
    st = prediction_status(project, run)
    assert [st[i].uncertainty for i in ids[:5]] == pytest.approx([0.75, 0.0, 0.375, 0.375, 1.0])
    assert all(st[i].correct is None for i in ids[:5])


def test_bad_payloads_and_unknown_runs(project):
    ids = project.image_ids()
    runs = RunStore(project)
    run = runs.start("classify", "resnet18", {"task": "classify"})
    runs.set_prediction(run, ids[0], {"probs": "nonsense"})
    runs.set_prediction(run, ids[1], {"probs": {}})
    runs.set_prediction(run, ids[2], {})
    project.store.conn.execute(
        "UPDATE predictions SET payload = 'not json' WHERE run_id = ? AND image_id = ?",
        (run, ids[2]),
    )
    st = prediction_status(project, run)
    for i in ids[:3]:
        assert st[i].correct is None and st[i].uncertainty is None
        assert "unreadable" in st[i].reason
    with pytest.raises(ValidationError, match="no run with id 999"):
        prediction_status(project, 999)
    other = runs.start("count", "resnet18", {})
    with pytest.raises(ValidationError, match="unknown task 'count'"):
        prediction_status(project, other)


def test_other_runs_predictions_are_ignored(project):
    c = _classes(project)
    ids = project.image_ids()
    project.set_tags(ids[0], [c["cat"]])
    runs = RunStore(project)
    a = runs.start("classify", "resnet18", {"task": "classify"})
    b = runs.start("classify", "resnet18", {"task": "classify"})
    runs.set_prediction(a, ids[0], _probs(project, cat=0.9, dog=0.1, bird=0.0))
    runs.set_prediction(b, ids[0], _probs(project, cat=0.1, dog=0.9, bird=0.0))
    runs.set_prediction(b, ids[1], _probs(project, cat=0.1, dog=0.9, bird=0.0))
    assert list(prediction_status(project, a)) == [ids[0]]
    assert prediction_status(project, a)[ids[0]].correct is True
    assert prediction_status(project, b)[ids[0]].correct is False
