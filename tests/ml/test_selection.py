"""Honest model selection: a run records the epoch it kept and what picked it, and scores
the kept model on the test split (labelled as never used for selection); k-fold with
"last" keeps the last epoch."""

from __future__ import annotations

import pytest
import torch

from tlstudio.cli import main
from tlstudio.core.demo import create_demo_project
from tlstudio.core.runs import RunStore
from tlstudio.ml import experiments as X
from tlstudio.ml import runner
from tlstudio.ml.checkpoints import load_checkpoint
from tlstudio.ml.runner import RunSpec
from tlstudio.ml.selection import TEST_LABEL, score_ids
from tlstudio.ml.trainer import TrainConfig


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    project = create_demo_project(tmp_path_factory.mktemp("sel") / "demo", n_images=24, size=48)
    yield project
    project.close()


def spec(epochs: int = 2) -> RunSpec:
    cfg = TrainConfig(epochs=epochs, batch_size=8, lr=1e-3, freeze=0, device="cpu")
    return RunSpec(task="classify", backbone="resnet18", weights="none", train=cfg,
                   input_size=48)  # fmt: skip


def test_run_records_its_selected_epoch_and_a_test_score_never_used_to_pick_it(demo):
    res = runner.train(demo, spec())
    cfg = RunStore(demo).get(res.run_id).config
    sel = cfg["selection"]
    assert sel["epoch"] == res.ended.best_epoch and sel["picked_on"] == "val"
    assert sel["value"] == pytest.approx(res.ended.best_metric)
    test = cfg["test"]
    test_ids = [r.id for r in demo.images_in_split("test")]
    assert test["label"] == TEST_LABEL and test["images"] == len(test_ids)
    # the stored figure is the saved model's score on the test images
    again, n = score_ids(demo, res.run_id, test_ids, device="cpu")
    assert n == len(test_ids) and again["accuracy"] == pytest.approx(test["metrics"]["accuracy"])
    assert res.after.test == test


def test_no_test_score_when_a_test_image_was_trained_on(demo):
    train_ids = [r.id for r in demo.images_in_split("train")]
    val_ids = [r.id for r in demo.images_in_split("val")]
    test_ids = [r.id for r in demo.images_in_split("test")]
    res = runner.train(demo, spec(1), image_ids=([*train_ids, test_ids[0]], val_ids))
    assert "test" not in RunStore(demo).get(res.run_id).config and res.after.test is None


def test_train_command_labels_validation_and_test_figures(demo, capsys):
    args = ["train", str(demo.root), "--task", "classify", "--backbone", "resnet18",
            "--weights", "none", "--freeze", "0", "--epochs", "2", "--input-size", "48",
            "--device", "cpu"]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "picked on these validation images: leans optimistic" in out
    assert "test accuracy" in out and f"({TEST_LABEL};" in out


@pytest.mark.slow
def test_cross_validation_with_last_keeps_the_last_epoch(demo):
    res = X.cross_validate(demo, spec(2), k=2, seed=3, selection="last")
    runs = RunStore(demo)
    for run_id, scores in zip(res.run_ids, res.per_fold, strict=True):
        rec = runs.get(run_id)
        assert rec.config["selection"]["keep"] == "last" and rec.config["selection"]["epoch"] == 1
        saved = torch.load(demo.root / rec.checkpoint, weights_only=True)["model"]
        last = load_checkpoint(runs.last_checkpoint(run_id))["model"]
        assert all(torch.equal(saved[k], last[k]) for k in saved)
        assert scores["accuracy"] == pytest.approx(runs.epochs(run_id)[-1][1]["accuracy"])
