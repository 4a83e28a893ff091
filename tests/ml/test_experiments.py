"""Experiments on the tiny demo project: cross-validation, learning curve, pretrained vs
scratch, scikit-learn heads, and the ``experiment`` command."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tlstudio.cli import main
from tlstudio.core.demo import create_demo_project
from tlstudio.core.runs import RunStore
from tlstudio.ml import experiments as X
from tlstudio.ml import runner
from tlstudio.ml.runner import RunError, RunSpec
from tlstudio.ml.trainer import TrainConfig


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    project = create_demo_project(tmp_path_factory.mktemp("exp") / "demo", n_images=24, size=64)
    yield project
    project.close()


def small_spec(epochs: int = 1, **kw) -> RunSpec:
    cfg = TrainConfig(epochs=epochs, batch_size=8, lr=1e-3, freeze=0, device="cpu")
    return RunSpec(
        task="classify", backbone="resnet18", weights="none", train=cfg, input_size=64, **kw
    )


def splits(project) -> dict[int, str | None]:
    return {r.id: r.split for r in project.images()}


@pytest.mark.slow
def test_cross_validation_trains_k_folds_and_leaves_splits_alone(demo, monkeypatch):
    before = splits(demo)
    test_ids = {i for i, s in before.items() if s == "test"}
    seen: list[tuple[list[int], list[int]]] = []
    real = runner.train

    def spy(project, spec, **kw):
        seen.append((list(kw["image_ids"][0]), list(kw["image_ids"][1])))
        return real(project, spec, **kw)

    monkeypatch.setattr(runner, "train", spy)
    res = X.cross_validate(demo, small_spec(), k=3, seed=1)

    assert splits(demo) == before
    assert res.k == 3 and len(res.per_fold) == 3 and len(res.run_ids) == 3
    assert res.selection == "inner" and len(res.inner_sizes) == 3
    pool = set(before) - test_ids
    # each fold's model learns and picks its epoch on the other folds only: the images
    # it never saw are its held-out fold, and the held-out folds cover the pool once
    held = [pool - set(tr) - set(va) for tr, va in seen]
    assert set().union(*held) == pool and sum(len(h) for h in held) == len(pool)
    for tr, va in seen:
        assert not set(tr) & set(va) and not (set(tr) | set(va)) & test_ids
        assert va and len(va) < len(tr)  # the inner split picks the epoch
    # folds stored on the images (test images held out)
    folds = {r.id: r.fold for r in demo.images()}
    assert {folds[i] for i in pool} == {0, 1, 2} and all(folds[i] is None for i in test_ids)
    for f, h in enumerate(held):
        assert all(folds[i] == f for i in h)
    # mean / std over the folds' held-out scores, also stored with each fold run
    accs = [m["accuracy"] for m in res.per_fold]
    mean, std = res.summary["accuracy"]
    assert mean == pytest.approx(np.mean(accs)) and std == pytest.approx(np.std(accs, ddof=1))
    runs = RunStore(demo)
    cfgs = [runs.get(r).config["experiment"] for r in res.run_ids]
    assert [c["fold"] for c in cfgs] == [0, 1, 2] and all(c["kind"] == "cv" for c in cfgs)
    for r, h, m in zip(res.run_ids, held, res.per_fold, strict=True):
        fold = runs.get(r).config["fold"]
        assert fold["selection"] == "inner" and fold["images"] == len(h)
        assert fold["metrics"]["accuracy"] == pytest.approx(m["accuracy"])
    from tlstudio.ml.evaluation import cv_selection, cv_summary

    assert cv_summary(demo, res.run_ids)["accuracy"][0] == pytest.approx(mean)
    assert cv_selection(demo, res.run_ids) == "inner"


def test_cross_validation_rejects_too_many_folds(demo):
    with pytest.raises(RunError, match="smaller k"):
        X.cross_validate(demo, small_spec(), k=30)


@pytest.mark.slow
def test_learning_curve_grows_nested_stratified_subsets(demo, monkeypatch):
    seen: list[tuple[list[int], list[int]]] = []
    real = runner.train

    def spy(project, spec, **kw):
        seen.append((list(kw["image_ids"][0]), list(kw["image_ids"][1])))
        return real(project, spec, **kw)

    monkeypatch.setattr(runner, "train", spy)
    before = splits(demo)
    points = X.learning_curve(demo, small_spec(), fractions=(0.25, 0.5, 1.0), seed=0)
    train_ids = {i for i, s in before.items() if s == "train"}
    val_ids = sorted(i for i, s in before.items() if s == "val")
    assert [p.fraction for p in points] == [0.25, 0.5, 1.0]
    n = [p.n_train for p in points]
    assert n[0] < n[1] < n[2] == len(train_ids)
    assert all("accuracy" in p.metrics for p in points)
    for (tr, va), p in zip(seen, points, strict=True):
        assert sorted(va) == val_ids and set(tr) <= train_ids and len(tr) == p.n_train
    assert set(seen[0][0]) <= set(seen[1][0]) <= set(seen[2][0])
    # every class is represented even in the smallest subset
    labels = demo.primary_labels()
    assert {labels[i] for i in seen[0][0]} == {labels[i] for i in train_ids}
    assert splits(demo) == before


def test_learning_curve_rejects_bad_fractions(demo):
    with pytest.raises(RunError, match="fractions"):
        X.learning_curve(demo, small_spec(), fractions=(0.0, 1.0))


def test_scratch_spec_trains_everything_from_random_weights():
    spec = RunSpec(task="classify", weights="bundled", train=TrainConfig(freeze="all", epochs=3))
    s = X.scratch_spec(spec)
    assert s.weights == "none" and s.train.freeze == 0 and s.train.epochs == 3
    assert not runner.uses_feature_cache(s) and runner.uses_feature_cache(spec)
    assert spec.weights == "bundled" and spec.train.freeze == "all"  # original untouched


def test_compare_pretrained_vs_scratch(demo):
    spec = RunSpec(
        task="classify", backbone="efficientnet_lite0", weights="bundled",
        train=TrainConfig(epochs=1, batch_size=8, device="cpu"), input_size=64,
    )  # fmt: skip
    out = X.compare_pretrained_vs_scratch(demo, spec)
    assert set(out) == {"pretrained", "scratch"}
    assert out["pretrained"]["feature_cache"] and not out["scratch"]["feature_cache"]
    assert out["scratch"]["weights"] == "none" and out["scratch"]["freeze"] == 0
    assert out["pretrained"]["run_id"] != out["scratch"]["run_id"]
    assert all("accuracy" in out[a]["metrics"] for a in out)
    with pytest.raises(RunError, match="scratch"):
        X.compare_pretrained_vs_scratch(demo, X.scratch_spec(spec))


def test_sklearn_run_is_recorded_with_accuracy_and_predicts(demo):
    run_id, metrics = X.fit_sklearn_run(demo, "efficientnet_lite0", "bundled", "logreg", 64)
    assert 0.0 <= metrics["accuracy"] <= 1.0 and math.isfinite(metrics["val_loss"])
    assert metrics["train_accuracy"] == 1.0  # 1280 features, 16 images: separable
    runs = RunStore(demo)
    rec = runs.get(run_id)
    assert rec.status == "finished" and rec.metric_name == "accuracy"
    assert rec.best_metric == pytest.approx(metrics["accuracy"])
    assert (
        rec.config["experiment"]["head"] == "logreg"
        and rec.config["backbone"] == "efficientnet_lite0"
    )
    assert runs.epochs(run_id)[0][1]["accuracy"] == pytest.approx(metrics["accuracy"])

    # the stored head refits to the same predictions
    head, spec = X.load_sklearn_head(demo, run_id)
    assert spec.input_size == 64 and head.kind == "logreg"
    ids = demo.image_ids()
    assert X.predict_sklearn_run(demo, run_id, ids, device="cpu") == len(ids)
    val = [r.id for r in demo.images_in_split("val")]
    hits = [runs.prediction(run_id, i).payload["class_id"] == demo.tags(i)[0] for i in val]
    assert np.mean(hits) == pytest.approx(metrics["accuracy"])


def test_sklearn_run_rejects_unknown_head(demo):
    with pytest.raises(RunError, match="unknown head"):
        X.fit_sklearn_run(demo, "efficientnet_lite0", "bundled", "forest", 64)


def test_experiment_command_prints_tables(demo, capsys):
    args = ["experiment", str(demo.root), "--kind", "sklearn", "--head", "prototype",
            "--input-size", "64", "--weights", "bundled", "--device", "cpu"]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "prototype head" in out and "accuracy" in out
    args = ["experiment", str(demo.root), "--kind", "cv", "--k", "2", "--epochs", "1",
            "--backbone", "efficientnet_lite0", "--weights", "bundled", "--input-size", "64",
            "--device", "cpu"]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "2-fold cross-validation" in out and "fold 2" in out and "±" in out
    assert "accuracy" in out and "picked on an inner split" in out
    assert main([*args, "--selection", "last"]) == 0
    assert "last epoch, selected on nothing" in capsys.readouterr().out
