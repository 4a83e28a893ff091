"""Evaluating trained runs on a split (tlstudio.ml.evaluation) on a tiny demo project."""

from __future__ import annotations

import csv
import io
import math

import numpy as np
import pytest
import torch

from tlstudio.core.demo import create_demo_project
from tlstudio.core.runs import RunStore
from tlstudio.ml import runner
from tlstudio.ml.callbacks import CancelToken
from tlstudio.ml.evaluation import (
    EvaluationCancelled,
    EvaluationError,
    cv_group,
    cv_summary,
    evaluate_run,
    pr_curve,
)
from tlstudio.ml.experiments import cross_validate
from tlstudio.ml.runner import RunSpec
from tlstudio.ml.trainer import TrainConfig


def small_spec(task: str, epochs: int = 1) -> RunSpec:
    cfg = TrainConfig(epochs=epochs, batch_size=8, lr=2e-3)
    return RunSpec(task=task, backbone="resnet18", weights="none", train=cfg, input_size=64)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    torch.set_num_threads(1)
    project = create_demo_project(tmp_path_factory.mktemp("eval") / "demo", n_images=24, size=64)
    yield project
    project.close()


@pytest.fixture(scope="module")
def clf_run(demo) -> int:
    torch.set_num_threads(1)
    return runner.train(demo, small_spec("classify", epochs=2)).run_id


def test_pr_curve_points_per_distinct_threshold():
    prec, rec = pr_curve(np.array([1, 0, 1, 0]), np.array([0.9, 0.8, 0.7, 0.1]))
    np.testing.assert_allclose(prec, [1.0, 0.5, 2 / 3, 0.5])
    np.testing.assert_allclose(rec, [0.5, 0.5, 1.0, 1.0])
    # tied scores form one point; n_pos counts positives never scored (missed boxes)
    prec, rec = pr_curve(np.array([1, 0, 1]), np.array([0.9, 0.9, 0.1]), n_pos=4)
    np.testing.assert_allclose(prec, [0.5, 2 / 3])
    np.testing.assert_allclose(rec, [0.25, 0.5])
    assert [len(a) for a in pr_curve(np.zeros(3), np.ones(3))] == [0, 0]


def test_classify_confusion_counts_split_and_cells_match_records(demo, clf_run):
    ev = evaluate_run(demo, clf_run, "train", device="cpu")
    train_ids = [r.id for r in demo.images_in_split("train")]
    names = [c.name for c in demo.classes()]
    assert ev.task == "classify" and ev.class_names == names
    assert ev.image_ids == train_ids
    assert ev.confusion.shape == (3, 3)
    assert int(ev.confusion.sum()) == len(train_ids)
    # the truth comes from the project's tags
    by_id = {c.id: c.name for c in demo.classes()}
    for r in ev.records:
        assert r.true == by_id[demo.tags(r.image_id)[0]]
    for i in range(3):
        for j in range(3):
            cell = ev.cell_images(i, j)
            assert len(cell) == ev.confusion[i, j]
            expected = [r.image_id for r in ev.records
                        if (r.true, r.predicted) == (names[i], names[j])]  # fmt: skip
            assert cell == expected
    correct = [r.correct for r in ev.records]
    assert ev.summary["accuracy"] == pytest.approx(sum(correct) / len(correct))
    assert ev.summary["images"] == len(train_ids)
    assert {row["name"] for row in ev.per_class} == set(names)
    assert [row["support"] for row in ev.per_class] == ev.confusion.sum(axis=1).tolist()
    for name, (prec, rec) in ev.pr_curves.items():
        assert name in names and len(prec) == len(rec) > 0
        assert rec[-1] == pytest.approx(1.0)  # the lowest threshold recalls every positive


def test_classify_predictions_agree_with_stored_predictions(demo, clf_run):
    """evaluate_run (dataset path) and runner.predict (file path) predict the same class."""
    ev = evaluate_run(demo, clf_run, "val", device="cpu")
    runner.predict(demo, clf_run, ev.image_ids, device="cpu")
    store = RunStore(demo)
    by_id = {c.id: c.name for c in demo.classes()}
    for r in ev.records:
        pred = store.prediction(clf_run, r.image_id)
        assert by_id[pred.payload["class_id"]] == r.predicted
        assert pred.score == pytest.approx(r.score, abs=1e-4)


def test_csv_parses_into_summary_per_class_and_confusion(demo, clf_run):
    ev = evaluate_run(demo, clf_run, "val", device="cpu")
    rows = list(csv.reader(io.StringIO(ev.to_csv())))
    blanks = [i for i, r in enumerate(rows) if not r]
    assert len(blanks) == 2
    summary = dict(rows[1 : blanks[0]])
    assert summary["split"] == "val" and summary["task"] == "classify"
    assert float(summary["accuracy"]) == pytest.approx(ev.summary["accuracy"], abs=1e-5)
    table = rows[blanks[0] + 1 : blanks[1]]
    assert table[0] == ev.per_class_columns
    assert [r[0] for r in table[1:]] == ev.class_names
    recall = table[0].index("recall")
    for row, ref in zip(table[1:], ev.per_class, strict=True):
        assert float(row[recall]) == pytest.approx(ref["recall"], abs=1e-5)
    matrix = rows[blanks[1] + 1 :]
    assert matrix[0][1:] == ev.class_names
    assert [[int(v) for v in r[1:]] for r in matrix[1:]] == ev.confusion.tolist()


@pytest.mark.parametrize(
    ("task", "keys", "columns"),
    [
        ("detect", {"map", "map50", "map75"}, ["name", "ap", "ap50", "ap75"]),
        ("landmarks", {"nme", "pck@0.05", "pck@0.1", "mean_error_px"}, ["name", "mean_error_px"]),
        ("segment", {"miou", "mdice", "pixel_accuracy"}, ["name", "iou", "dice"]),
        ("autoencode", {"recon_error_mean", "recon_error_median"}, ["name", "images"]),
    ],
)
def test_other_tasks_give_their_metrics(demo, task, keys, columns):
    run_id = runner.train(demo, small_spec(task)).run_id
    ev = evaluate_run(demo, run_id, "val", device="cpu")
    val_ids = [r.id for r in demo.images_in_split("val")]
    assert ev.task == task and ev.image_ids == val_ids
    assert keys <= set(ev.summary)
    assert ev.per_class_columns[: len(columns)] == columns
    assert [r.image_id for r in ev.records] == val_ids
    assert ev.confusion is None
    with pytest.raises(ValueError, match="single-label classification"):
        ev.cell_images(0, 0)
    if task == "detect":
        n_boxes = sum(len(demo.boxes(i)) for i in val_ids)
        assert sum(row["num_gt"] for row in ev.per_class) == n_boxes
        assert set(ev.pr_curves) <= set(ev.class_names)
        assert all(r.true == f"{len(demo.boxes(r.image_id))} box" + "es" * (
            len(demo.boxes(r.image_id)) != 1) for r in ev.records)  # fmt: skip
    if task == "landmarks":
        template = demo.template(RunSpec.from_dict(RunStore(demo).get(run_id).config).template_id)
        assert [row["name"] for row in ev.per_class] == list(template.points)
        # every demo point is visible, so the pooled mean is the mean of the image means
        errors = [r.error for r in ev.records]
        assert ev.summary["mean_error_px"] == pytest.approx(np.mean(errors))
        assert any("sqrt(w·h)" in n for n in ev.notes)  # the normaliser is named
    if task == "segment":
        assert ev.per_class[0]["name"] == "background"
        pixels = sum(demo.image(i).width * demo.image(i).height for i in val_ids)
        assert sum(row["gt_pixels"] for row in ev.per_class) == pixels  # image resolution
        assert 0.0 <= ev.summary["miou"] <= 1.0
    if task == "autoencode":
        errors = [r.error for r in ev.records]
        assert ev.summary["recon_error_mean"] == pytest.approx(np.mean(errors))
        assert all(r.correct is None for r in ev.records)
    assert ev.to_csv().startswith("metric,value\n")


def test_cancel_and_empty_split_fail_with_clear_errors(demo, clf_run):
    token = CancelToken()
    token.cancel()
    with pytest.raises(EvaluationCancelled):
        evaluate_run(demo, clf_run, "val", device="cpu", token=token)
    with pytest.raises(ValueError, match="unknown split"):
        evaluate_run(demo, clf_run, "holdout")
    test_ids = [r.id for r in demo.images_in_split("test")]
    demo.set_splits(dict.fromkeys(test_ids, "train"))
    try:
        with pytest.raises(EvaluationError, match="'test' split is empty"):
            evaluate_run(demo, clf_run, "test", device="cpu")
    finally:
        demo.set_splits(dict.fromkeys(test_ids, "test"))


def test_cv_group_separates_experiments_and_summarises_folds(demo, clf_run):
    spec = small_spec("classify")
    first = cross_validate(demo, spec, k=2, seed=0)
    second = cross_validate(demo, spec, k=2, seed=0)
    assert cv_group(demo, first.run_ids[1]) == first.run_ids
    assert cv_group(demo, second.run_ids[0]) == second.run_ids
    assert cv_group(demo, clf_run) == []
    summary = cv_summary(demo, second.run_ids)
    for name in ("accuracy", "f1_macro"):
        mean, std = summary[name]
        ref_mean, ref_std = second.summary[name]
        assert mean == pytest.approx(ref_mean)
        assert (math.isnan(std) and math.isnan(ref_std)) or std == pytest.approx(ref_std)


def test_multi_label_classify_has_no_confusion_but_per_class_scores(tmp_path):
    project = create_demo_project(tmp_path / "multi", n_images=12, size=64)
    try:
        project.multi_label = True
        run_id = runner.train(project, small_spec("classify")).run_id
        ev = evaluate_run(project, run_id, "train", device="cpu")
        assert ev.confusion is None
        assert {"f1_macro", "f1_micro", "subset_accuracy"} <= set(ev.summary)
        names = {c.id: c.name for c in project.classes()}
        for r in ev.records:  # the truth is the image's tag set
            assert r.true == ", ".join(names[t] for t in sorted(
                project.tags(r.image_id), key=list(names).index))  # fmt: skip
        exact = [r.correct for r in ev.records]
        assert ev.summary["subset_accuracy"] == pytest.approx(sum(exact) / len(exact))
        assert [row["name"] for row in ev.per_class] == list(names.values())
    finally:
        project.close()
