"""The training loop on a toy task model (tiny conv net, random 16×16 images, CPU)."""

from __future__ import annotations

import io
import math
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from tlstudio.core.errors import TlsError
from tlstudio.ml.callbacks import Callback, CancelToken, ConsoleProgress, EventRecorder
from tlstudio.ml.events import (
    BatchEnded,
    BatchSizeReduced,
    EpochEnded,
    FitEnded,
    FitStarted,
    TrainingFailed,
)
from tlstudio.ml.tasks.base import TaskModel
from tlstudio.ml.trainer import (
    DeviceError,
    TrainConfig,
    TrainConfigError,
    Trainer,
    load_checkpoint,
    seed_everything,
    select_device,
)

N_CLASSES = 3


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """The toy convs gain nothing from intra-op threads; one thread avoids spin-waits on a
    busy machine. Restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class ToyBackbone(nn.Module):
    """Two conv-BN-ReLU stages (16×16 → 4×4), average-pooled to 16 features."""

    def __init__(self) -> None:
        super().__init__()
        self.stages = nn.ModuleList(
            [
                nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU()),
                nn.Sequential(nn.Conv2d(8, 16, 3, 2, 1), nn.BatchNorm2d(16), nn.ReLU()),
            ]
        )
        self.spec = SimpleNamespace(stages=(SimpleNamespace(name="s1"), SimpleNamespace(name="s2")))
        self.frozen_depth = 0
        self.out_channels = 16

    def train(self, mode: bool = True) -> ToyBackbone:
        super().train(mode)
        if mode:
            for stage in self.stages[: self.frozen_depth]:
                stage.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.stages:
            x = stage(x)
        return x.mean((2, 3))


class ToyClassifier(TaskModel):
    """Backbone + dropout + linear head; ``nan_from_epoch`` makes the loss NaN from then on."""

    task = "classify"
    main_metric = "accuracy"
    higher_is_better = True

    def __init__(self, nan_from_epoch: int | None = None) -> None:
        super().__init__(ToyBackbone())
        self.head = nn.Sequential(nn.Dropout(0.2), nn.Linear(16, N_CLASSES))
        self.nan_from_epoch = nan_from_epoch
        self.epoch = 0  # set by a callback in the NaN test

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(images))

    def training_step(self, images, targets):
        labels = torch.stack([t["label"] for t in targets])
        loss = F.cross_entropy(self(images), labels)
        if self.nan_from_epoch is not None and self.epoch >= self.nan_from_epoch:
            loss = loss * float("nan")
        return {"loss": loss}

    @torch.no_grad()
    def predict_step(self, images):
        return [{"probs": p} for p in torch.softmax(self(images), -1)]


class ToyData(Dataset):
    """``n`` images 3×16×16: noise plus a bright channel equal to the class."""

    def __init__(self, n: int = 48, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.labels = torch.arange(n) % N_CLASSES
        self.images = torch.randn(n, 3, 16, 16, generator=g) * 0.5
        self.images[torch.arange(n), self.labels] += 1.0

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.images[i], {"label": self.labels[i], "image_id": i}


def accuracy(preds: list[dict[str, Any]], targets: list[dict[str, Any]]) -> dict[str, float]:
    hits = sum(
        int(p["probs"].argmax()) == int(t["label"]) for p, t in zip(preds, targets, strict=True)
    )
    return {"accuracy": hits / max(len(preds), 1)}


class HookLog(Callback):
    """Records hook names (and the trainer's freeze depth at each epoch start)."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.depths: list[int | None] = []

    def on_fit_start(self, trainer, event):
        self.calls.append(("fit_start",))

    def on_epoch_start(self, trainer, epoch):
        self.calls.append(("epoch_start", epoch))
        self.depths.append(trainer.freeze_depth)

    def on_batch_start(self, trainer, epoch, step):
        self.calls.append(("batch_start", epoch, step))

    def on_batch_end(self, trainer, event):
        self.calls.append(("batch_end", event.epoch, event.step))

    def on_epoch_end(self, trainer, event):
        self.calls.append(("epoch_end", event.epoch))

    def on_fit_end(self, trainer, event):
        self.calls.append(("fit_end",))


def make(
    tmp_path: Path | None = None,
    *,
    model: TaskModel | None = None,
    callbacks=(),
    model_seed: int = 0,
    n_train: int = 48,
    val: bool = True,
    **cfg: Any,
) -> tuple[Trainer, EventRecorder]:
    settings = {"epochs": 3, "batch_size": 16, "lr": 1e-2, "freeze": 0, "device": "cpu"}
    settings.update(cfg)
    if model is None:
        torch.manual_seed(model_seed)
        model = ToyClassifier()
    rec = EventRecorder()
    trainer = Trainer(
        model,
        ToyData(n_train, seed=1),
        ToyData(24, seed=2) if val else None,
        TrainConfig(**settings),
        metrics_fn=accuracy,
        callbacks=[rec, *callbacks],
        checkpoint_dir=tmp_path,
        run_id=7,
    )
    return trainer, rec


def losses(rec: EventRecorder) -> list[float]:
    return [e.loss for e in rec.of_type(BatchEnded)]


# --------------------------------------------------------------------------- basics


def test_loss_decreases_and_accuracy_rises():
    trainer, rec = make(epochs=6, schedule="none")
    end = trainer.fit()
    assert end.status == "finished" and end.epochs_run == 6
    epochs = rec.of_type(EpochEnded)
    assert epochs[-1].train_loss < 0.7 * epochs[0].train_loss
    assert epochs[-1].metrics["val_loss"] < epochs[0].metrics["val_loss"]
    assert epochs[-1].metrics["accuracy"] >= 0.9
    assert end.metric_name == "accuracy" and end.best_metric == max(
        e.metrics["accuracy"] for e in epochs
    )


def test_events_in_order_with_sane_numbers(tmp_path):
    log = HookLog()
    trainer, rec = make(tmp_path, callbacks=[log], epochs=2, schedule="cosine", lr=0.01)
    end = trainer.fit()
    spe = 3  # 48 images / 16
    expected = [("fit_start",)]
    for e in range(2):
        expected.append(("epoch_start", e))
        for s in range(spe):
            expected += [("batch_start", e, s), ("batch_end", e, s)]
        expected.append(("epoch_end", e))
    expected.append(("fit_end",))
    assert log.calls == expected

    started = rec.of_type(FitStarted)[0]
    assert (started.run_id, started.epochs, started.steps_per_epoch) == (7, 2, spe)
    assert (started.train_images, started.val_images, started.device) == (48, 24, "cpu")
    assert 0 < started.trainable_params == started.total_params  # freeze=0: all trainable
    batches = rec.of_type(BatchEnded)
    total = 2 * spe
    for k, b in enumerate(batches):
        assert b.steps_per_epoch == spe
        assert b.eta_s >= 0 and math.isfinite(b.eta_s)
        assert b.images_per_s > 0 and math.isfinite(b.loss)
        # CosineAnnealingLR over all steps, stepped per batch; lr is the one the batch used
        assert b.lr == pytest.approx(0.01 * (1 + math.cos(math.pi * k / total)) / 2)
    assert batches[-1].eta_s <= batches[0].eta_s
    ends = rec.of_type(EpochEnded)
    assert [e.epoch for e in ends] == [0, 1]
    assert set(ends[0].metrics) == {"train_loss", "val_loss", "accuracy"}
    assert ends[0].metrics["train_loss"] == ends[0].train_loss
    assert ends[0].val_loss == ends[0].metrics["val_loss"] and ends[0].is_best
    assert ends[0].duration_s > 0 and ends[0].epochs == 2
    assert isinstance(rec.events[-1], FitEnded) and rec.events[-1] is end
    assert end.checkpoint == str(tmp_path / "best.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "last.pt"]  # no temp files
    ckpt = load_checkpoint(tmp_path / "last.pt")
    assert ckpt["epoch"] == 1 and ckpt["config"]["epochs"] == 2 and ckpt["monitor"] == "accuracy"


def test_cancel_from_callback_stops_within_one_batch(tmp_path):
    class CancelAt(Callback):
        def on_batch_end(self, trainer, event):
            if (event.epoch, event.step) == (1, 1):
                trainer.token.cancel()

    trainer, rec = make(tmp_path, callbacks=[CancelAt()], epochs=4)
    end = trainer.fit()
    assert end.status == "cancelled" and end.epochs_run == 1
    last = rec.of_type(BatchEnded)[-1]
    assert (last.epoch, last.step) == (1, 1)
    assert [e.epoch for e in rec.of_type(EpochEnded)] == [0]
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 0


def test_pause_and_resume_from_another_thread():
    token = CancelToken()
    resumed_at: list[float] = []
    batch_starts: list[tuple[int, int, float]] = []

    class PauseOnce(Callback):
        def on_batch_start(self, trainer, epoch, step):
            batch_starts.append((epoch, step, time.monotonic()))

        def on_batch_end(self, trainer, event):
            if (event.epoch, event.step) == (0, 0):
                token.pause()

                def later():
                    time.sleep(0.3)
                    resumed_at.append(time.monotonic())
                    token.resume()

                threading.Thread(target=later, daemon=True).start()

    trainer, rec = make(callbacks=[PauseOnce()], epochs=1)
    trainer.token = token
    t0 = time.monotonic()
    end = trainer.fit()
    assert end.status == "finished"
    assert time.monotonic() - t0 >= 0.3
    assert batch_starts[1][:2] == (0, 1) and batch_starts[1][2] >= resumed_at[0]
    assert len(rec.of_type(BatchEnded)) == 3


def test_cancel_token_wait_returns_promptly_on_cancel():
    token = CancelToken()
    assert token.wait_while_paused() is True  # not paused: returns at once
    token.pause()
    assert token.is_paused
    threading.Timer(0.1, token.cancel).start()
    t0 = time.monotonic()
    assert token.wait_while_paused(poll_s=5.0) is False
    assert time.monotonic() - t0 < 2.0 and token.is_cancelled


# --------------------------------------------------------------------------- failures


def test_nan_loss_stops_and_best_checkpoint_stays_valid(tmp_path):
    class TellEpoch(Callback):
        def on_epoch_start(self, trainer, epoch):
            trainer.model.epoch = epoch

    torch.manual_seed(0)
    model = ToyClassifier(nan_from_epoch=2)
    trainer, rec = make(tmp_path, model=model, callbacks=[TellEpoch()], epochs=4)
    end = trainer.fit()
    assert end.status == "failed" and end.epochs_run == 2
    failed = rec.of_type(TrainingFailed)
    assert len(failed) == 1 and failed[0].kind == "nan_loss"
    assert (failed[0].epoch, failed[0].step) == (2, 0)
    assert "epoch 3" in failed[0].message and "learning rate" in failed[0].message
    assert [e.epoch for e in rec.of_type(EpochEnded)] == [0, 1]
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 1  # nothing written for epoch 2
    best = load_checkpoint(tmp_path / "best.pt")
    assert best["epoch"] in (0, 1) and end.checkpoint == str(tmp_path / "best.pt")
    fresh = ToyClassifier()
    fresh.load_state_dict(best["model"])
    assert all(
        torch.isfinite(t).all() for t in fresh.state_dict().values() if t.is_floating_point()
    )


def test_huge_learning_rate_gives_nan_loss_failure():
    trainer, rec = make(epochs=5, lr=1e10, optimizer="sgd", schedule="none", val=False)
    end = trainer.fit()
    assert end.status == "failed"
    (failed,) = rec.of_type(TrainingFailed)
    assert failed.kind == "nan_loss"


def test_other_exception_reported_then_reraised():
    trainer, rec = make(epochs=1)

    def boom(images, targets):
        raise ValueError("boom at the forward pass")

    trainer.model.training_step = boom
    with pytest.raises(ValueError, match="boom"):
        trainer.fit()
    (failed,) = rec.of_type(TrainingFailed)
    assert failed.kind == "error" and "boom" in failed.message
    assert not rec.of_type(FitEnded)


def test_out_of_memory_halves_the_batch_and_restarts_the_epoch():
    trainer, rec = make(epochs=2, schedule="onecycle", lr=0.01)
    real = trainer.model.training_step
    calls = {"n": 0}

    def flaky(images, targets):
        calls["n"] += 1
        if calls["n"] == 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")
        return real(images, targets)

    trainer.model.training_step = flaky
    end = trainer.fit()
    assert end.status == "finished" and end.epochs_run == 2
    assert rec.of_type(BatchSizeReduced) == [BatchSizeReduced(old=16, new=8)]
    assert trainer.batch_size == 8
    batches = rec.of_type(BatchEnded)
    # one batch at 16, then the epoch restarts with 6 steps of 8, then 6 more
    assert [(b.epoch, b.step, b.steps_per_epoch) for b in batches[:2]] == [(0, 0, 3), (0, 0, 6)]
    assert len(batches) == 1 + 12 and all(b.steps_per_epoch == 6 for b in batches[1:])
    # the one-cycle schedule was refitted to the new step count: it ends near lr / (25 * 1e4)
    assert batches[-1].lr < 1e-4 * 0.01 and max(b.lr for b in batches) == pytest.approx(
        0.01, rel=0.05
    )
    assert len(rec.of_type(EpochEnded)) == 2


def test_out_of_memory_at_batch_one_fails():
    trainer, rec = make(epochs=2, batch_size=2)

    def always(images, targets):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    trainer.model.training_step = always
    end = trainer.fit()
    assert end.status == "failed" and end.epochs_run == 0
    assert rec.of_type(BatchSizeReduced) == [BatchSizeReduced(old=2, new=1)]
    (failed,) = rec.of_type(TrainingFailed)
    assert failed.kind == "out_of_memory" and "1 image per batch" in failed.message


# --------------------------------------------------------------------------- resume, seeds


def _final_weights(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}


def test_resume_reproduces_the_uninterrupted_run_exactly(tmp_path):
    cfg = dict(
        epochs=4, schedule="cosine", freeze=1, head_warmup_epochs=1, progressive_every=1,
        stage_lr_decay=0.5, grad_clip=5.0, seed=3,
    )  # fmt: skip
    full, rec_full = make(tmp_path / "full", **cfg)
    full.fit()

    class StopAfterEpoch1(Callback):
        def on_epoch_end(self, trainer, event):
            if event.epoch == 1:
                trainer.token.cancel()

    part, _ = make(tmp_path / "part", callbacks=[StopAfterEpoch1()], **cfg)
    assert part.fit().status == "cancelled"
    log = HookLog()
    resumed, rec_res = make(tmp_path / "part", callbacks=[log], model_seed=99, **cfg)
    end = resumed.fit(resume_from=tmp_path / "part" / "last.pt")
    assert end.status == "finished" and end.epochs_run == 4
    assert rec_res.epochs_started == [2, 3]
    assert log.depths == [0, 0]
    assert losses(rec_res) == losses(rec_full)[-6:]
    a, b = _final_weights(full), _final_weights(resumed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert end.best_metric == rec_full.of_type(FitEnded)[0].best_metric


def test_same_seed_gives_bit_identical_losses_and_other_seed_differs():
    runs = []
    for seed in (5, 5, 6):
        trainer, rec = make(epochs=2, seed=seed, val=False)
        trainer.fit()
        runs.append(losses(rec))
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_seed_everything_repeats_random_streams():
    import random

    import numpy as np

    seed_everything(11)
    a = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    seed_everything(11)
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == a


# --------------------------------------------------------------------------- freezing


def test_head_warmup_then_progressive_unfreezing():
    log = HookLog()
    snapshots = []

    class Snap(Callback):
        def on_epoch_end(self, trainer, event):
            stages = trainer.model.backbone.stages
            snapshots.append(
                [stages[0][0].weight.detach().clone(), stages[1][0].weight.detach().clone(),
                 stages[0][1].running_mean.clone()]
            )  # fmt: skip

    trainer, rec = make(
        callbacks=[log, Snap()], epochs=4, freeze="all", head_warmup_epochs=1, progressive_every=1
    )
    bn_before = trainer.model.backbone.stages[0][1].running_mean.clone()
    first_stage_before = trainer.model.backbone.stages[0][0].weight.detach().clone()
    trainer.fit()
    # warm-up: all frozen; then "all" (=2), 1, 0
    assert log.depths == [2, 2, 1, 0]
    started = rec.of_type(FitStarted)[0]
    assert started.trainable_params < started.total_params
    s0 = [first_stage_before, *[s[0] for s in snapshots]]
    s1 = [s[1] for s in snapshots]
    assert torch.equal(s0[0], s0[1]) and torch.equal(s0[1], s0[2]) and torch.equal(s0[2], s0[3])
    assert not torch.equal(s0[3], s0[4])  # stage 1 trains in the last epoch only
    assert torch.equal(s1[0], s1[1]) and not torch.equal(s1[1], s1[2])
    # while frozen, stage 0's BatchNorm keeps its running statistics (eval mode)
    bn = [bn_before, *[s[2] for s in snapshots]]
    assert all(torch.equal(bn[0], bn[k]) for k in (1, 2, 3)) and not torch.equal(bn[3], bn[4])


def test_frozen_stage_batchnorm_statistics_do_not_move():
    trainer, _ = make(epochs=2, freeze=1)
    bn = trainer.model.backbone.stages[0][1]
    before = (bn.running_mean.clone(), trainer.model.backbone.stages[0][0].weight.detach().clone())
    trainer.fit()
    assert torch.equal(before[0], bn.running_mean)
    assert torch.equal(before[1], trainer.model.backbone.stages[0][0].weight)


def test_stage_lr_decay_gives_discriminative_groups():
    trainer, _ = make(epochs=1, freeze=0, stage_lr_decay=0.1, schedule="none")
    trainer.fit()
    lrs = {g["name"]: g["lr"] for g in trainer.optimizer.param_groups}
    assert lrs == pytest.approx({"head": 1e-2, "s2": 1e-3, "s1": 1e-4})


# --------------------------------------------------------------------------- schedules


@pytest.mark.parametrize("schedule", ["cosine", "onecycle", "step", "none"])
def test_schedules_change_lr_as_expected(schedule, tmp_path):
    trainer, rec = make(
        tmp_path, epochs=4, schedule=schedule, lr=0.01, step_size=2, gamma=0.5, val=False
    )
    trainer.fit()
    ckpt = load_checkpoint(tmp_path / "last.pt")  # weights_only=True copes with every schedule
    assert (ckpt["scheduler"] is None) == (schedule == "none")
    lrs = [b.lr for b in rec.of_type(BatchEnded)]
    epoch_lrs = [e.lr for e in rec.of_type(EpochEnded)]
    assert len(lrs) == 12
    if schedule == "cosine":
        assert lrs[0] == pytest.approx(0.01)
        assert all(a > b for a, b in zip(lrs[:-1], lrs[1:], strict=True))
        assert lrs[6] == pytest.approx(0.005)
    elif schedule == "onecycle":
        peak = max(range(12), key=lambda i: lrs[i])
        assert lrs[0] == pytest.approx(0.01 / 25)
        assert lrs[peak] == pytest.approx(0.01, rel=0.1) and 2 <= peak <= 5
        assert lrs[-1] < lrs[0]
    elif schedule == "step":
        assert epoch_lrs == pytest.approx([0.01, 0.01, 0.005, 0.005])
        assert lrs == pytest.approx([0.01] * 6 + [0.005] * 6)
    else:
        assert lrs == pytest.approx([0.01] * 12)


def test_sgd_optimizer_trains():
    trainer, rec = make(epochs=4, optimizer="sgd", lr=0.05, schedule="step", step_size=3)
    trainer.fit()
    assert isinstance(trainer.optimizer, torch.optim.SGD)
    ends = rec.of_type(EpochEnded)
    assert ends[-1].train_loss < ends[0].train_loss


# --------------------------------------------------------------------------- early stopping, monitor


def test_early_stopping_on_a_metric_that_stops_improving(tmp_path):
    scores = iter([0.5, 0.7, 0.6, 0.7, 0.65, 0.9])

    trainer, rec = make(tmp_path, epochs=6, early_stopping_patience=2, monitor="score")
    trainer.metrics_fn = lambda preds, targets: {"score": next(scores)}
    end = trainer.fit()
    assert end.status == "stopped_early" and end.epochs_run == 4
    assert (end.best_epoch, end.best_metric, end.metric_name) == (1, 0.7, "score")
    assert [e.is_best for e in rec.of_type(EpochEnded)] == [True, True, False, False]
    assert load_checkpoint(tmp_path / "best.pt")["epoch"] == 1
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 3


def test_loss_monitor_is_lower_is_better_and_no_val_falls_back_to_train_loss():
    trainer, rec = make(epochs=3, val=False, schedule="none")
    end = trainer.fit()
    assert end.metric_name == "train_loss"
    ends = rec.of_type(EpochEnded)
    assert set(ends[0].metrics) == {"train_loss"} and ends[0].val_loss is None
    assert end.best_metric == min(e.train_loss for e in ends)

    trainer, _ = make(epochs=1, monitor="accuracy", val=False)
    with pytest.raises(TrainConfigError, match="validation"):
        trainer.fit()


# --------------------------------------------------------------------------- config, device


def test_config_round_trip_and_validation():
    cfg = TrainConfig(epochs=3, freeze=2, monitor="val_loss", grad_clip=1.0)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    assert TrainConfig.from_dict({"freeze": "3", "unknown": 1}).freeze == 3
    assert TrainConfig.from_dict({}).freeze == "all"
    for bad in ({"optimizer": "adam"}, {"schedule": "poly"}, {"freeze": -1}, {"lr": 0}):
        with pytest.raises(TrainConfigError, match=next(iter(bad))):
            TrainConfig(**bad).validate()
    trainer, _ = make(epochs=1, freeze=5)
    with pytest.raises(TrainConfigError, match="only 2 stages"):
        trainer.fit()


def test_cuda_unavailable_gives_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceError, match="CUDA is not available") as err:
        select_device("cuda")
    assert isinstance(err.value, TlsError) and "cpu" in str(err.value)
    with pytest.raises(DeviceError):
        select_device("cuda:1")
    with pytest.raises(DeviceError, match="unknown device"):
        select_device("tpu")
    assert select_device("cpu").type == "cpu"
    if not torch.backends.mps.is_available():
        assert select_device("auto").type == "cpu"
    trainer, rec = make(epochs=1, device="cuda")
    with pytest.raises(DeviceError):
        trainer.fit()
    assert rec.of_type(TrainingFailed)[0].kind == "error"


# --------------------------------------------------------------------------- console


def test_console_progress_plain_stream_prints_one_line_per_epoch():
    out = io.StringIO()
    trainer, _ = make(callbacks=[ConsoleProgress(out)], epochs=2)
    trainer.fit()
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert lines[0].startswith("training on cpu: 48 train / 24 val images")
    epoch_lines = [line for line in lines if line.startswith("epoch ")]
    assert len(epoch_lines) == 2
    assert "val_loss" in epoch_lines[0] and "accuracy" in epoch_lines[0]
    assert lines[-1].startswith("finished after 2 epochs")


def test_console_progress_tty_redraws_one_line():
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Tty()
    trainer, _ = make(callbacks=[ConsoleProgress(out, min_interval_s=0.0)], epochs=1)
    trainer.fit()
    text = out.getvalue()
    assert "\repoch 1/1 [" in text and "img/s" in text and "ETA" in text and "loss" in text
    assert "epoch 1/1  train_loss" in text


# --------------------------------------------------------------------------- stop requests


def test_should_stop_from_a_callback_ends_the_fit_after_that_epoch(tmp_path):
    class StopAt(Callback):
        def __init__(self, epoch: int) -> None:
            self.epoch = epoch

        def on_batch_end(self, trainer, event):
            if (event.epoch, event.step) == (self.epoch, 0):
                trainer.should_stop = True

    trainer, rec = make(tmp_path, callbacks=[StopAt(1)], epochs=4)
    end = trainer.fit()
    assert end.status == "stopped_early" and end.epochs_run == 2
    assert [(b.epoch, b.step) for b in rec.of_type(BatchEnded)][-1] == (1, 2)  # epoch finished
    assert [e.epoch for e in rec.of_type(EpochEnded)] == [0, 1]
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 1
    # a request during the last epoch changes nothing
    trainer, _ = make(callbacks=[StopAt(1)], epochs=2)
    assert trainer.fit().status == "finished"


def test_failure_from_a_callback_ends_the_fit_before_the_backward_pass(tmp_path):
    failure = TrainingFailed("error", "the data looked wrong", 1, 1)

    class FailAt(Callback):
        def on_before_backward(self, trainer, loss):
            assert math.isfinite(loss) and (trainer.epoch, trainer.step) != (1, 2)
            if (trainer.epoch, trainer.step) == (1, 1):
                trainer.failure, trainer.should_stop = failure, True

    trainer, rec = make(tmp_path, callbacks=[FailAt()], epochs=3)
    end = trainer.fit()
    assert end.status == "failed" and end.epochs_run == 1
    assert rec.of_type(TrainingFailed) == [failure]
    assert [(b.epoch, b.step) for b in rec.of_type(BatchEnded)][-1] == (1, 0)
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 0
