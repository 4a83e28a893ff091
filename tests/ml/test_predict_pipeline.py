"""runner.predict reads ahead, postprocesses per batch and stores in one transaction, and
stores exactly what the plain per-image loop stored (issue 12 §3)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tlstudio.core.errors import ImageError
from tlstudio.core.project import Project
from tlstudio.core.runs import RunStore
from tlstudio.ml import data as data_mod
from tlstudio.ml import runner
from tlstudio.ml.architectures import get_spec
from tlstudio.ml.callbacks import CancelToken
from tlstudio.ml.prediction import input_batch, normalise_table

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from bench_predict import per_image_predict  # noqa: E402  (the loop before issue 12 §3)


def per_image_loop(project, run_id: int, ids: list[int], batch_size: int) -> dict[int, tuple]:
    """What runner.predict stored before the pipeline (issue 12): (payload JSON, mask,
    score) per image id, stored by the per-image loop kept in bench_predict.py."""
    per_image_predict(project, run_id, ids, batch_size)
    store = RunStore(project)
    out = {}
    for image_id in ids:
        pred = store.prediction(run_id, image_id)
        out[image_id] = (json.dumps(pred.payload), pred.mask, pred.score)
    return out


@pytest.fixture
def copy_of_trained(trained_demo, tmp_path):
    root = tmp_path / "demo"
    shutil.copytree(trained_demo.project.root, root)
    with Project.open(root) as project:
        yield project, trained_demo.runs


@pytest.mark.parametrize("task", ["classify", "detect", "landmarks", "segment", "autoencode"])
def test_stored_predictions_are_those_of_the_per_image_loop(copy_of_trained, task):
    project, runs = copy_of_trained
    ids = project.image_ids()
    expected = per_image_loop(project, runs[task], ids, batch_size=5)
    store = RunStore(project)
    with project.transaction():
        project._c.execute("DELETE FROM predictions WHERE run_id = ?", (runs[task],))
    assert runner.predict(project, runs[task], ids, batch_size=5, device="cpu") == len(ids)
    for image_id in ids:
        got = store.prediction(runs[task], image_id)
        payload, mask, score = expected[image_id]
        assert json.dumps(got.payload) == payload  # the same numbers, bit for bit
        assert got.score == score
        if mask is None:
            assert got.mask is None
        else:
            assert np.array_equal(got.mask, mask)


def test_network_input_is_the_training_pipelines_bit_for_bit(copy_of_trained):
    project, _ = copy_of_trained
    spec = get_spec("resnet18")
    ids = project.image_ids()
    ds = data_mod.ProjectDataset(project, "autoencode", ids, 64, spec.mean, spec.std)
    table = normalise_table(spec.mean, spec.std)
    images = [ds.load_uint8(i) for i in range(len(ds))]
    expected = torch.stack([ds[i][0] for i in range(len(ds))]).numpy()
    assert np.array_equal(input_batch(images, table), expected)


def test_rows_are_stored_in_one_transaction(copy_of_trained, monkeypatch):
    project, runs = copy_of_trained
    calls = []
    real = RunStore.set_predictions

    def counting(self, run_id, rows):
        calls.append(len(rows))
        return real(self, run_id, rows)

    monkeypatch.setattr(RunStore, "set_predictions", counting)
    assert runner.predict(project, runs["classify"], batch_size=2, device="cpu") == 12
    assert calls == [12]  # six batches, one commit


def test_cancel_keeps_what_was_predicted(copy_of_trained):
    project, runs = copy_of_trained
    with project.transaction():
        project._c.execute("DELETE FROM predictions WHERE run_id = ?", (runs["classify"],))
    token = CancelToken()

    def progress(done: int, total: int) -> None:
        if done >= 4:
            token.cancel()

    n = runner.predict(
        project, runs["classify"], batch_size=2, device="cpu", progress=progress, token=token
    )
    assert n == 4
    assert len(RunStore(project).predicted_images(runs["classify"])) == 4


def test_an_unreadable_image_stops_after_storing_the_batches_before_it(copy_of_trained):
    project, runs = copy_of_trained
    ids = project.image_ids()
    with project.transaction():
        project._c.execute("DELETE FROM predictions WHERE run_id = ?", (runs["classify"],))
    bad = project.image_path(ids[5])
    bad.write_bytes(b"not an image")
    with pytest.raises(ImageError) as info:
        runner.predict(project, runs["classify"], ids, batch_size=2, device="cpu")
    assert bad.name in str(info.value)
    stored = [i for i, _ in RunStore(project).predicted_images(runs["classify"])]
    assert sorted(stored) == ids[:4]  # batches 1 and 2; the third holds the bad file
