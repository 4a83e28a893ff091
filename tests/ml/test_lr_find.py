"""The learning-rate finder: an exponential sweep, a suggestion read off the smoothed
loss, and a project left exactly as it was."""

from __future__ import annotations

import numpy as np
import pytest

from tlstudio.cli import main
from tlstudio.core.demo import create_demo_project
from tlstudio.core.runs import RunStore
from tlstudio.ml.lr_find import LrFindError, centred_average, lr_find, suggest
from tlstudio.ml.runner import RunSpec
from tlstudio.ml.trainer import TrainConfig


def test_suggestion_is_the_steepest_fall_before_the_minimum():
    lrs = np.logspace(-6, 0, 61)
    x = np.log10(lrs)
    loss = 2.0 - np.tanh((x + 3.0) * 2)  # falls fastest at 1e-3
    loss[x > -1] += (x[x > -1] + 1) * 20  # then blows up
    rate, why = suggest(lrs, loss)
    assert rate == pytest.approx(1e-3, rel=0.3) and "steepest" in why
    assert suggest(lrs[:5], loss[:5])[0] is None
    rate, why = suggest(lrs, np.linspace(1, 3, 61))  # never falls
    assert rate is None and "start lower" in why


def test_centred_curve_does_not_lag_so_a_noisy_sweep_suggests_the_right_rate():
    lrs = np.logspace(-6, 0, 100)  # a 100-batch sweep: 16.5 batches per decade
    x = np.log10(lrs)
    noisy = 2.0 - np.tanh((x + 3.0) * 2) + np.random.default_rng(0).normal(0, 0.05, 100)
    smoothed = centred_average(noisy, 5)
    assert len(smoothed) == 100 and smoothed[50] == pytest.approx(np.mean(noisy[48:53]))
    assert smoothed[0] == pytest.approx(np.mean(noisy[:3]))  # fewer values at the ends
    rate, _why = suggest(lrs, smoothed)
    assert rate == pytest.approx(1e-3, rel=0.5)
    # a running average (weight 0.98 on the past) lags by decades on such a sweep
    avg, running = 0.0, []
    for i, v in enumerate(noisy):
        avg = 0.98 * avg + 0.02 * v
        running.append(avg / (1 - 0.98 ** (i + 1)))
    lagged, _why = suggest(lrs, running)
    assert lagged is None or lagged > 3e-3


@pytest.fixture
def demo(tmp_path):
    project = create_demo_project(tmp_path / "demo", n_images=24, size=48)
    yield project
    project.close()


def test_sweep_on_cached_features_changes_nothing_in_the_project(demo, db_state):
    before = db_state(demo.store.conn)
    spec = RunSpec(task="classify", backbone="efficientnet_lite0", weights="bundled",
                   input_size=64, train=TrainConfig(batch_size=8, device="cpu"))  # fmt: skip
    res = lr_find(demo, spec, start_lr=1e-6, end_lr=10.0, iterations=80)
    assert res.feature_cache and res.images == len(demo.images_in_split("train"))
    steps = np.diff(np.log(res.lrs))
    assert res.lrs[0] == pytest.approx(1e-6) and np.allclose(steps, steps[0])
    assert len(res.losses) == len(res.smoothed) == len(res.lrs) <= 80
    assert res.suggested is not None and 1e-6 < res.suggested < 10.0
    assert db_state(demo.store.conn) == before and RunStore(demo).list() == []
    with pytest.raises(LrFindError):
        lr_find(demo, spec, start_lr=1.0, end_lr=0.1)


def test_lr_find_command_prints_the_curve_and_draws_it(demo, tmp_path, capsys):
    plot = tmp_path / "lr.png"
    args = ["lr-find", str(demo.root), "--task", "classify", "--backbone", "resnet18",
            "--weights", "none", "--freeze", "0", "--input-size", "32", "--batch", "8",
            "--iterations", "20", "--device", "cpu", "--plot", str(plot)]  # fmt: skip
    code = main(args)
    out = capsys.readouterr().out
    assert "learning-rate sweep: " in out and "rate" in out and "smoothed" in out
    assert ("suggested learning rate" in out) == (code == 0)
    assert plot.is_file() and plot.read_bytes()[:4] == b"\x89PNG"
    assert RunStore(demo).list() == []
