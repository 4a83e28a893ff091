"""End-to-end runs on the demo project: train, record, predict, evaluate, CLI."""

from __future__ import annotations

import math

import pytest

from tlstudio.cli import main
from tlstudio.core.demo import create_demo_project
from tlstudio.core.runs import RunStore
from tlstudio.ml import features as features_mod
from tlstudio.ml import runner
from tlstudio.ml.callbacks import EventRecorder
from tlstudio.ml.events import EpochEnded, TrainingFailed
from tlstudio.ml.runner import RunSpec
from tlstudio.ml.trainer import TrainConfig


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    project = create_demo_project(tmp_path_factory.mktemp("runs") / "demo", n_images=24, size=64)
    yield project
    project.close()


def small_spec(task: str, **train) -> RunSpec:
    cfg = TrainConfig(
        epochs=train.pop("epochs", 2), batch_size=8, lr=train.pop("lr", 1e-3), **train
    )
    return RunSpec(task=task, backbone="resnet18", weights="none", train=cfg, input_size=64)


def test_fast_path_records_run_and_second_run_reuses_cached_features(demo, monkeypatch):
    spec = RunSpec(
        task="classify",
        backbone="efficientnet_lite0",
        weights="bundled",
        train=TrainConfig(epochs=8, lr=3e-3, batch_size=8),
        input_size=96,
    )
    rec = EventRecorder()
    first = runner.train(demo, spec, callbacks=[rec])
    assert first.feature_cache
    runs = RunStore(demo)
    run = runs.get(first.run_id)
    assert run.status == "finished" and run.metric_name == "accuracy"
    epochs = runs.epochs(first.run_id)
    assert len(epochs) == 8
    assert epochs[-1][1]["train_loss"] < epochs[0][1]["train_loss"]
    assert (demo.root / run.checkpoint).is_file()

    calls = []
    real = features_mod.extract_features

    def counting(*args, **kwargs):
        X, stats = real(*args, **kwargs)
        calls.append(stats)
        return X, stats

    monkeypatch.setattr(runner, "extract_features", counting)
    second = runner.train(demo, spec)
    assert second.feature_cache
    assert [s.computed for s in calls] == [0, 0]
    assert sum(s.forward_calls for s in calls) == 0
    assert sum(s.cached for s in calls) > 0


def test_predict_stores_predictions_in_image_pixels(demo):
    result = runner.train(demo, small_spec("detect", epochs=1))
    ids = demo.image_ids()[:3]
    assert runner.predict(demo, result.run_id, ids, device="cpu") == 3
    runs = RunStore(demo)
    for image_id in ids:
        pred = runs.prediction(result.run_id, image_id)
        assert pred is not None
        rec = demo.image(image_id)
        for box in pred.payload["boxes"]:
            x1, y1, x2, y2 = box["xyxy"]
            assert -1 <= x1 <= x2 <= rec.width + 1 and -1 <= y1 <= y2 <= rec.height + 1
            assert box["class_id"] in {c.id for c in demo.classes()}
    # predictions are not labels
    assert demo.stats()["kinds"]["boxes"] == sum(len(demo.boxes(i)) for i in demo.image_ids())


@pytest.mark.slow
@pytest.mark.parametrize("task", ["segment", "landmarks", "autoencode"])
def test_every_dense_task_trains_records_and_predicts(demo, task):
    result = runner.train(demo, small_spec(task, freeze=2))
    assert not result.feature_cache
    assert RunStore(demo).get(result.run_id).status == "finished"
    assert runner.predict(demo, result.run_id, demo.image_ids()[:2], device="cpu") == 2
    pred = RunStore(demo).prediction(result.run_id, demo.image_ids()[0])
    if task == "segment":
        rec = demo.image(demo.image_ids()[0])
        assert pred.mask is not None and pred.mask.shape == (rec.height, rec.width)
    if task == "landmarks":
        assert len(pred.payload["points"]) == 5
    if task == "autoencode":
        assert math.isfinite(pred.payload["error"])


def test_evaluate_gives_confusion_matrix_over_the_split(demo):
    result = runner.train(demo, small_spec("classify", epochs=1, freeze=3))
    out = runner.evaluate(demo, result.run_id, "val", device="cpu")
    n_val = len(demo.images_in_split("val"))
    assert out["images"] == n_val
    cm = out["detail"]["confusion_matrix"]
    assert sum(map(sum, cm)) == n_val


def test_nan_loss_is_recorded_as_failed_with_the_reason(demo):
    rec = EventRecorder()
    spec = small_spec("classify", epochs=3, freeze=0, lr=1e12, optimizer="sgd")
    result = runner.train(demo, spec, callbacks=[rec])
    failures = rec.of_type(TrainingFailed)
    assert failures and failures[0].kind == "nan_loss"
    run = RunStore(demo).get(result.run_id)
    assert run.status == "failed"
    assert "loss" in run.error


def test_cli_train_prints_validation_metrics_and_run_id(demo, capsys):
    status = main(["train", str(demo.root), "--task", "classify", "--backbone", "resnet18",
                   "--weights", "none", "--freeze", "3", "--epochs", "1", "--input-size", "64"])  # fmt: skip
    out = capsys.readouterr().out
    assert status == 0
    assert "val accuracy " in out
    run_id = int(out.strip().splitlines()[-1].split()[1])
    assert main(["evaluate", str(demo.root), str(run_id)]) == 0
    assert "confusion matrix" in capsys.readouterr().out
    assert main(["predict", str(demo.root), str(run_id), "--images", "1"]) == 0
    assert RunStore(demo).prediction(run_id, 1) is not None


def test_unknown_run_is_a_clear_error(demo, capsys):
    assert main(["evaluate", str(demo.root), "999"]) == 2
    assert "no run with id 999" in capsys.readouterr().err


def test_epoch_events_reach_callbacks(demo):
    rec = EventRecorder()
    runner.train(demo, small_spec("classify", epochs=2, freeze="all"), callbacks=[rec])
    assert [e.epoch for e in rec.of_type(EpochEnded)] == [0, 1]


def test_cli_train_preset_sets_the_strategy_and_explicit_options_win(demo, monkeypatch):
    from tlstudio.ml import presets
    from tlstudio.ml.backbones import get_spec
    from tlstudio.ml.transforms import AugmentConfig

    seen: list[RunSpec] = []
    monkeypatch.setattr(
        "tlstudio.cli_ml.train_and_report", lambda _p, spec, **_kw: seen.append(spec) or 0
    )
    n = len(get_spec("resnet18").stages)
    base = ["train", str(demo.root), "--task", "classify", "--backbone", "resnet18"]
    for preset in presets.PRESETS:  # the GUI's strategy names, one by one
        assert main([*base, "--preset", preset.name]) == 0
        t, augment = seen[-1].train, seen[-1].augment
        assert (t.freeze, t.lr, t.epochs) == (preset.freeze_value(n), preset.lr, preset.epochs)
        assert (t.stage_lr_decay, t.progressive_every, t.head_warmup_epochs) == (
            preset.stage_lr_decay, preset.progressive_every, preset.head_warmup_epochs
        )  # fmt: skip
        assert augment == (AugmentConfig() if preset.augment else None)
    assert seen[1].train.freeze == n - 2  # "fine-tune top stages": all but the top two
    # explicit options override the preset, the rest of the preset stays
    assert main([*base, "--preset", "fine_tune_top", "--epochs", "3", "--lr", "0.01",
                 "--freeze", "1", "--augment", "none"]) == 0  # fmt: skip
    t = seen[-1].train
    assert (t.epochs, t.lr, t.freeze, seen[-1].augment) == (3, 0.01, 1, None)
    assert t.stage_lr_decay == 0.5
    # without a preset the documented defaults hold
    assert main(base) == 0
    t = seen[-1].train
    assert (t.freeze, t.epochs, t.lr, seen[-1].augment) == ("all", 10, 1e-3, None)


def test_cli_train_unknown_preset_is_a_usage_error(demo, capsys):
    status = main(["train", str(demo.root), "--task", "classify", "--preset", "fastest"])
    assert status == 2
    assert "feature_extraction" in capsys.readouterr().err
