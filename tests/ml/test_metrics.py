"""Metrics against hand-computed cases (and scikit-learn where it has the same metric)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    f1_score,
    precision_recall_fscore_support,
    roc_auc_score,
)

from tlstudio.ml.metrics import (
    MAIN_METRIC,
    classification_metrics,
    cross_validation_summary,
    detection_metrics,
    landmark_metrics,
    metrics_fn_for,
    multilabel_metrics,
    reconstruction_metrics,
    segmentation_metrics,
)

# --------------------------------------------------------------------------- classification

# true:      0 0 0 0 1 1 1 2 2 2
# predicted: 0 0 0 1 1 1 2 2 2 0
Y = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2])
P = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 0])


def _probs_for(pred: np.ndarray, c: int = 3) -> np.ndarray:
    return 0.1 + 0.7 * np.eye(c)[pred]  # rows sum to 1, arg-max = pred


def test_confusion_matrix_and_prf_by_hand():
    r = classification_metrics(_probs_for(P), Y, class_names=["a", "b", "c"])
    assert r["confusion_matrix"] == [[3, 1, 0], [0, 2, 1], [1, 0, 2]]  # rows true, cols predicted
    pc = r["per_class"]
    # precision = column: a 3/(3+1), b 2/(1+2), c 2/(1+2); recall = row: 3/4, 2/3, 2/3
    assert [row["precision"] for row in pc] == pytest.approx([0.75, 2 / 3, 2 / 3])
    assert [row["recall"] for row in pc] == pytest.approx([0.75, 2 / 3, 2 / 3])
    assert [row["f1"] for row in pc] == pytest.approx([0.75, 2 / 3, 2 / 3])
    assert [row["support"] for row in pc] == [4, 3, 3]
    assert r["accuracy"] == pytest.approx(0.7)
    assert r["balanced_accuracy"] == pytest.approx((0.75 + 2 / 3 + 2 / 3) / 3)
    assert r["f1_macro"] == pytest.approx((0.75 + 2 / 3 + 2 / 3) / 3)
    assert pc[0]["name"] == "a"


def test_classification_matches_sklearn_on_random_data():
    rng = np.random.default_rng(0)
    n, c = 200, 4
    y = rng.integers(0, c, n)
    logits = rng.normal(size=(n, c)) + 1.5 * np.eye(c)[y]
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    probs = np.round(probs, 2)  # ties in the scores
    probs /= probs.sum(1, keepdims=True)
    r = classification_metrics(torch.from_numpy(probs), torch.from_numpy(y))
    pred = probs.argmax(1)
    p, rc, f, _ = precision_recall_fscore_support(y, pred, labels=range(c), zero_division=0)
    assert [row["precision"] for row in r["per_class"]] == pytest.approx(p)
    assert [row["recall"] for row in r["per_class"]] == pytest.approx(rc)
    assert r["f1_macro"] == pytest.approx(f1_score(y, pred, average="macro"))
    assert r["accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert r["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred))
    ref = roc_auc_score(y, probs, multi_class="ovr", average="macro")
    assert r["roc_auc"] == pytest.approx(ref, abs=1e-12)
    assert r["roc_auc_reason"] is None


def test_binary_roc_auc_matches_sklearn():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 50)
    p1 = np.clip(0.3 * y + rng.uniform(size=50) * 0.7, 0, 1)
    r = classification_metrics(np.c_[1 - p1, p1], y)
    assert r["roc_auc"] == pytest.approx(roc_auc_score(y, p1))


def test_roc_auc_omitted_when_a_class_is_missing():
    y = np.array([0, 0, 1, 1])  # class "c" never occurs
    probs = np.array([[0.8, 0.1, 0.1], [0.5, 0.3, 0.2], [0.2, 0.7, 0.1], [0.1, 0.2, 0.7]])
    r = classification_metrics(probs, y, class_names=["a", "b", "c"])
    assert r["roc_auc"] is None
    assert "'c'" in r["roc_auc_reason"]
    assert r["roc_auc_per_class"][2] is None
    assert r["roc_auc_per_class"][0] == pytest.approx(1.0)
    # class c is predicted once (wrongly): it enters the macro P/R/F1 with zeros
    assert r["per_class"][2]["precision"] == 0.0
    assert r["f1_macro"] == pytest.approx(np.mean([1.0, 2 / 3, 0.0]))
    # balanced accuracy: mean recall over the classes present in the labels only
    assert r["balanced_accuracy"] == pytest.approx((1.0 + 0.5) / 2)


def test_classification_rejects_out_of_range_labels():
    with pytest.raises(ValueError, match="0..2"):
        classification_metrics(np.full((2, 3), 1 / 3), [0, 3])


def test_multilabel_by_hand_and_against_sklearn():
    targets = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 0]])
    probs = np.array([[0.9, 0.2, 0.6], [0.1, 0.4, 0.1], [0.7, 0.8, 0.3], [0.2, 0.1, 0.9]])
    # predicted at 0.5: [1,0,1], [0,0,0], [1,1,0], [0,0,1]
    r = multilabel_metrics(probs, targets)
    # class 0: tp 2 fp 0 fn 0 -> f1 1; class 1: tp 1 fn 1 -> p 1 r .5 f1 2/3;
    # class 2: tp 1 fp 1 -> p .5 r 1 f1 2/3
    assert [row["f1"] for row in r["per_class"]] == pytest.approx([1.0, 2 / 3, 2 / 3])
    assert r["f1_macro"] == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)
    assert r["subset_accuracy"] == pytest.approx(0.5)  # rows 0 and 2 exactly right
    assert r["f1_macro"] == pytest.approx(f1_score(targets, probs >= 0.5, average="macro"))
    assert r["f1_micro"] == pytest.approx(f1_score(targets, probs >= 0.5, average="micro"))
    ref_auc = np.mean([roc_auc_score(targets[:, k], probs[:, k]) for k in range(3)])
    assert r["roc_auc"] == pytest.approx(ref_auc)
    assert r["roc_auc_undefined"] == []


def test_multilabel_auc_skips_classes_without_both_groups():
    targets = np.array([[1, 0], [0, 0], [1, 0]])
    probs = np.array([[0.9, 0.1], [0.2, 0.3], [0.6, 0.2]])
    r = multilabel_metrics(probs, targets, class_names=["x", "y"])
    assert r["roc_auc"] == pytest.approx(1.0)
    assert r["roc_auc_undefined"] == ["y"]
    assert r["f1_macro"] == pytest.approx(1.0)  # "y": no positive anywhere, left out


# --------------------------------------------------------------------------- detection


def _det(boxes, scores, labels):
    return {
        "boxes": np.asarray(boxes, dtype=float).reshape(-1, 4),
        "scores": np.asarray(scores, dtype=float),
        "labels": np.asarray(labels, dtype=int),
    }


def _gt(boxes, labels):
    return {"boxes": np.asarray(boxes, dtype=float).reshape(-1, 4), "labels": np.asarray(labels)}


def test_perfect_detection_is_one():
    gts = [_gt([[0, 0, 10, 10], [20, 20, 40, 30]], [1, 2]), _gt([[5, 5, 15, 25]], [2])]
    preds = [
        _det([[0, 0, 10, 10], [20, 20, 40, 30]], [0.9, 0.8], [0, 1]),  # labels 0..C-1
        _det([[5, 5, 15, 25]], [0.7], [1]),
    ]
    r = detection_metrics(preds, gts, num_classes=2)
    assert r["map50"] == pytest.approx(1.0)
    assert r["map"] == pytest.approx(1.0)
    assert r["mean_iou"] == pytest.approx(1.0)
    assert [row["num_gt"] for row in r["per_class"]] == [1, 2]


def test_false_positive_ranked_between_two_true_positives():
    gts = [_gt([[0, 0, 10, 10], [20, 20, 30, 30]], [1, 1])]
    preds = [_det([[0, 0, 10, 10], [50, 50, 60, 60], [20, 20, 30, 30]], [0.9, 0.8, 0.7], [0, 0, 0])]
    # ranks: TP, FP, TP -> recall .5 .5 1, precision 1 .5 2/3 -> envelope 1, 2/3, 2/3.
    # 101 recall points: 0..0.50 (51 points) -> 1, 0.51..1 (50 points) -> 2/3
    expected = (51 * 1.0 + 50 * 2 / 3) / 101
    r = detection_metrics(preds, gts, num_classes=1)
    assert r["map50"] == pytest.approx(expected)
    assert r["map"] == pytest.approx(expected)  # both TPs are exact
    # a false positive scored below all true positives costs nothing
    low = [_det([[0, 0, 10, 10], [20, 20, 30, 30], [50, 50, 60, 60]], [0.9, 0.8, 0.7], [0, 0, 0])]
    assert detection_metrics(low, gts, 1)["map50"] == pytest.approx(1.0)
    # one ahead of the only true positive halves the precision everywhere
    one = [_gt([[0, 0, 10, 10]], [1])]
    high = [_det([[50, 50, 60, 60], [0, 0, 10, 10]], [0.9, 0.8], [0, 0])]
    assert detection_metrics(high, one, 1)["map50"] == pytest.approx(0.5)


def test_iou_062_counts_at_050_not_at_075():
    gts = [_gt([[0, 0, 10, 10]], [1])]
    preds = [_det([[0, 0, 10, 6.2]], [0.9], [0])]  # IoU = 62 / 100
    r = detection_metrics(preds, gts, num_classes=1)
    assert r["map50"] == pytest.approx(1.0)
    assert r["map75"] == pytest.approx(0.0)
    assert r["map"] == pytest.approx(0.3)  # matched at .50, .55, .60 of the ten thresholds
    assert r["map"] < r["map50"]
    assert r["mean_iou"] == pytest.approx(0.62)


def test_image_without_predictions_lowers_recall():
    gts = [_gt([[0, 0, 10, 10]], [1]), _gt([[0, 0, 10, 10]], [1]), _gt([], [])]
    preds = [_det([[0, 0, 10, 10]], [0.9], [0]), _det([], [], []), _det([], [], [])]
    r = detection_metrics(preds, gts, num_classes=1)
    # recall reaches .5 at precision 1: points 0..0.50 -> 1, the rest 0
    assert r["map50"] == pytest.approx(51 / 101)
    assert r["per_class"][0]["recall50"] == pytest.approx(0.5)


def test_classes_without_ground_truth_are_ignored():
    gts = [_gt([[0, 0, 10, 10]], [1])]
    preds = [_det([[0, 0, 10, 10], [30, 30, 40, 40]], [0.9, 0.95], [0, 2])]  # class 2: FP, no GT
    r = detection_metrics(preds, gts, num_classes=3, class_names=["a", "b", "c"])
    assert r["map50"] == pytest.approx(1.0)
    assert r["map"] == pytest.approx(1.0)
    assert r["per_class"][1]["ap50"] is None
    assert r["per_class"][2]["ap"] is None
    assert r["per_class"][2]["num_pred"] == 1
    assert r["per_class"][0]["name"] == "a"


def test_detection_wrong_class_does_not_match_and_accepts_tensors():
    gts = [{"boxes": torch.tensor([[0.0, 0, 10, 10]]), "labels": torch.tensor([1])}]
    preds = [
        {
            "boxes": torch.tensor([[0.0, 0, 10, 10]]),
            "scores": torch.tensor([0.9]),
            "labels": torch.tensor([1]),  # class 1 (0-based) vs GT class 0 (1 in 1..C)
        }
    ]
    r = detection_metrics(preds, gts, num_classes=2)
    assert r["map50"] == 0.0
    assert r["mean_iou"] is None


def test_detection_label_convention_is_enforced():
    with pytest.raises(ValueError, match="1..2"):  # target label 0 is background
        detection_metrics([_det([], [], [])], [_gt([[0, 0, 1, 1]], [0])], num_classes=2)
    with pytest.raises(ValueError, match="0..1"):  # predicted labels are 0..C-1
        detection_metrics([_det([[0, 0, 1, 1]], [0.5], [2])], [_gt([], [])], num_classes=2)


def test_detection_without_any_ground_truth_is_undefined():
    r = detection_metrics([_det([[0, 0, 1, 1]], [0.5], [0])], [_gt([], [])], num_classes=1)
    assert r["map50"] is None and r["map"] is None
    flat = metrics_fn_for("detect", 1)([_det([[0, 0, 1, 1]], [0.5], [0])], [_gt([], [])])
    assert math.isnan(flat["map50"])


# --------------------------------------------------------------------------- landmarks


def _kp(rows):
    return {"keypoints": torch.tensor(rows, dtype=torch.float32)}


def test_landmarks_known_offsets():
    # visible GT at (0,0), (10,0), (0,10) -> bbox 10×10 -> normaliser 10
    target = _kp([[0, 0, 2], [10, 0, 2], [0, 10, 1], [99, 99, 0]])
    pred = _kp([[3, 4, 0.9], [10, 0, 0.9], [0, 10, 0.9], [0, 0, 0.1]])  # errors 5, 0, 0
    r = landmark_metrics([pred], [target], pck_thresholds=(0.05, 0.5))
    assert r["nme"] == pytest.approx(5 / 3 / 10)
    assert r["pck@0.05"] == pytest.approx(2 / 3)
    assert r["pck@0.5"] == pytest.approx(1.0)  # 0.5 <= 0.5
    assert r["mean_error_px"] == pytest.approx(5 / 3)
    pp = r["per_point"]
    assert pp[0]["mean_error_px"] == pytest.approx(5.0)
    assert pp[0]["nme"] == pytest.approx(0.5)
    assert pp[3]["mean_error_px"] is None and pp[3]["count"] == 0

    # the visibility-0 point is ignored whatever is predicted for it
    pred2 = _kp([[3, 4, 0.9], [10, 0, 0.9], [0, 10, 0.9], [500, -7, 0.1]])
    assert landmark_metrics([pred2], [target])["nme"] == pytest.approx(r["nme"])


def test_landmarks_norm_modes_and_averaging_over_instances():
    targets = [_kp([[0, 0, 2], [20, 0, 2]]), _kp([[0, 0, 2], [0, 40, 2]])]
    preds = [_kp([[0, 3, 1], [20, 0, 1]]), _kp([[0, 0, 1], [6, 48, 1]])]  # errors 3,0 / 0,10
    # bbox of collinear points: max(w, h) -> 20 and 40; per instance 1.5/20 and 5/40
    r = landmark_metrics(preds, targets)
    assert r["nme"] == pytest.approx((1.5 / 20 + 5 / 40) / 2)
    r = landmark_metrics(preds, targets, norm="diag", image_size=(30, 40))  # diagonal 50
    assert r["nme"] == pytest.approx((1.5 + 5) / 2 / 50)
    assert r["pck@0.1"] == pytest.approx(3 / 4)  # 3/50, 0, 0 pass; 10/50 = 0.2 fails
    r = landmark_metrics(preds, targets, norm=10.0, pck_thresholds=(0.5,))
    assert r["nme"] == pytest.approx((0.15 + 0.5) / 2)
    assert r["pck@0.5"] == pytest.approx(3 / 4)  # 10 px / 10 = 1.0 > 0.5
    with pytest.raises(ValueError, match="image_size"):
        landmark_metrics(preds, targets, norm="diag")


def test_landmarks_instance_without_visible_points_is_skipped():
    targets = [_kp([[0, 0, 2], [10, 10, 2]]), _kp([[0, 0, 0], [10, 10, 0]])]
    preds = [_kp([[1, 0, 1], [10, 10, 1]]), _kp([[50, 50, 1], [50, 50, 1]])]
    r = landmark_metrics(preds, targets)
    assert r["nme"] == pytest.approx(0.5 / 10)
    assert r["num_instances"] == 1 and r["num_skipped"] == 1


# --------------------------------------------------------------------------- segmentation


def test_segmentation_known_masks():
    gt = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 0, 0], [2, 2, 0, 0]])
    pr = np.array([[0, 0, 1, 1], [0, 1, 1, 1], [2, 0, 0, 0], [2, 2, 0, 0]])
    r = segmentation_metrics([{"mask": torch.from_numpy(pr)}], [{"mask": torch.from_numpy(gt)}], 3)
    rows = {row["index"]: row for row in r["per_class"]}
    # class 1 (index 1): gt 4, pred 5, tp 4 -> IoU 4/5, Dice 8/9
    assert rows[1]["iou"] == pytest.approx(4 / 5)
    assert rows[1]["dice"] == pytest.approx(8 / 9)
    # class 2: gt 4, pred 3, tp 3 -> IoU 3/4, Dice 6/7
    assert rows[2]["iou"] == pytest.approx(3 / 4)
    assert rows[2]["dice"] == pytest.approx(6 / 7)
    # class 3 (index 3) occurs nowhere: undefined and not averaged
    assert rows[3]["iou"] is None and rows[3]["class"] == 2
    assert r["miou"] == pytest.approx((4 / 5 + 3 / 4) / 2)
    assert r["mdice"] == pytest.approx((8 / 9 + 6 / 7) / 2)
    assert r["pixel_accuracy"] == pytest.approx(14 / 16)
    # background: gt 8, pred 8, tp 7 -> 7/9
    assert rows[0]["iou"] == pytest.approx(7 / 9)
    assert r["miou_with_background"] == pytest.approx((7 / 9 + 4 / 5 + 3 / 4) / 3)


def test_segmentation_accumulates_over_images_and_ignores_255():
    a_gt, a_pr = np.array([[1, 1]]), np.array([[1, 0]])  # class 1: tp 1, fn 1
    b_gt, b_pr = np.array([[255, 1]]), np.array([[1, 1]])  # ignored pixel, tp 1
    r = segmentation_metrics([a_pr, b_pr], [a_gt, b_gt], 1)
    # accumulated: tp 2, fn 1, fp 0 -> 2/3 (the per-image mean would be (1/2 + 1) / 2)
    assert r["miou"] == pytest.approx(2 / 3)
    assert r["num_pixels"] == 3
    with pytest.raises(ValueError, match="0..1"):
        segmentation_metrics([np.array([[2]])], [np.array([[1]])], 1)
    with pytest.raises(ValueError, match="shape|vs"):
        segmentation_metrics([np.zeros((2, 2))], [np.zeros((2, 3))], 1)


# --------------------------------------------------------------------------- others


def test_reconstruction_metrics():
    r = reconstruction_metrics([{"error": 1.0}, {"error": 2.0}, {"error": 3.0}, {"error": 10.0}])
    assert r["mean"] == pytest.approx(4.0)
    assert r["median"] == pytest.approx(2.5)
    assert r["p95"] == pytest.approx(np.percentile([1, 2, 3, 10], 95))
    assert reconstruction_metrics([])["mean"] is None


def test_cross_validation_summary():
    folds = [{"acc": 1.0, "f1": 2.0}, {"acc": 3.0, "f1": 4.0}, {"acc": 5.0, "f1": float("nan")}]
    s = cross_validation_summary(folds)
    assert list(s) == ["acc", "f1"]
    assert s["acc"] == pytest.approx((3.0, 2.0))  # sample std, ddof=1
    assert s["f1"] == pytest.approx((3.0, math.sqrt(2)))  # NaN fold left out
    single = cross_validation_summary([{"acc": 0.5}])
    assert single["acc"][0] == 0.5 and math.isnan(single["acc"][1])


@pytest.mark.parametrize(
    ("task", "multi", "pred", "target", "expected"),
    [
        ("classify", False, {"probs": torch.tensor([0.2, 0.8])}, {"label": torch.tensor(1)}, 1.0),
        (
            "classify",
            True,
            {"probs": torch.tensor([0.9, 0.1])},
            {"labels": torch.tensor([1.0, 0.0])},
            1.0,
        ),
        (
            "detect",
            False,
            {
                "boxes": torch.tensor([[0.0, 0, 4, 4]]),
                "scores": torch.tensor([0.5]),
                "labels": torch.tensor([1]),
            },
            {"boxes": torch.tensor([[0.0, 0, 4, 4]]), "labels": torch.tensor([2])},
            1.0,
        ),
        (
            "landmarks",
            False,
            {"keypoints": torch.tensor([[0.0, 0, 1], [10, 10, 1]])},
            {"keypoints": torch.tensor([[0.0, 0, 2], [10, 10, 2]])},
            0.0,
        ),
        (
            "segment",
            False,
            {"mask": torch.tensor([[0, 2], [1, 1]])},
            {"mask": torch.tensor([[0, 2], [1, 1]])},
            1.0,
        ),
        ("autoencode", False, {"latent": torch.zeros(4), "error": 0.25}, {}, 0.25),
    ],
)
def test_metrics_fn_for_returns_flat_floats_with_main_metric(task, multi, pred, target, expected):
    fn = metrics_fn_for(task, num_classes=2, multi_label=multi)
    out = fn([pred, pred], [target, target])
    main = MAIN_METRIC["classify_multi" if multi else task]
    assert out[main] == pytest.approx(expected)
    assert all(isinstance(v, float) for v in out.values())
    assert set(fn([], [])) == set(out)  # same keys even with nothing to score


def test_metrics_fn_for_unknown_task():
    with pytest.raises(ValueError):
        metrics_fn_for("cluster", 2)
