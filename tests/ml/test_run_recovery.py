"""Runs whose process was killed, runs over images whose file is gone, and the messages for
model files that are refused or do not fit (issue 11 §9, §10, §14)."""

from __future__ import annotations

import pickle
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from kill_scenarios import train_child_until_epoch, train_trial

from tlstudio.cli import main
from tlstudio.core.demo import create_demo_project
from tlstudio.core.owner import ProcessOwner
from tlstudio.core.project import Project
from tlstudio.core.runs import RunStore
from tlstudio.ml import runner
from tlstudio.ml.callbacks import EventRecorder
from tlstudio.ml.events import FitStarted
from tlstudio.ml.runner import RunError, RunSpec
from tlstudio.ml.trainer import TrainConfig

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture
def demo(tmp_path: Path) -> Path:
    create_demo_project(tmp_path / "demo", n_images=16, size=32).close()
    return tmp_path / "demo"


def _gone_owner() -> ProcessOwner:
    """The owner record of a process that has ended."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return ProcessOwner(proc.pid, ProcessOwner.current().host, "")


# -- §9 runs whose process is gone ---------------------------------------------------------------


def test_a_run_whose_process_is_gone_is_listed_as_interrupted(demo: Path) -> None:
    with Project.open(demo) as p:
        runs = RunStore(p)
        mine = runs.start("classify", "resnet18", {})
        dead = runs.start("classify", "resnet18", {})
        p.store.conn.execute(
            "UPDATE runs SET owner = ? WHERE id = ?", (_gone_owner().to_json(), dead)
        )
        statuses = {r.id: r.status for r in runs.list()}
        assert statuses == {mine: "running", dead: "interrupted"}  # this process still runs
        assert "killed or crashed" in runs.get(dead).error


def test_a_killed_training_run_is_interrupted_and_resumes(demo: Path, capsys) -> None:
    run_id = train_child_until_epoch(demo, epochs=4, kill_after_epoch=1)
    with Project.open(demo) as p:  # opening marks it
        rec = RunStore(p).get(run_id)
        assert rec.status == "interrupted"
        assert [e for e, _ in RunStore(p).epochs(run_id)] == [0, 1]
        with pytest.raises(RunError, match=rf"run {run_id} was interrupted .* --resume {run_id}"):
            runner.load_run_model(p, run_id)
    assert main(["evaluate", str(demo), str(run_id)]) == 2
    assert f"tlstudio train {demo} --resume {run_id}" in capsys.readouterr().err

    assert main(["train", str(demo), "--resume", str(run_id)]) == 0
    out, err = capsys.readouterr()
    assert f"resuming run {run_id}" in err and f"run {run_id} (finished, 4 epochs)" in out
    with Project.open(demo) as p:
        rec = RunStore(p).get(run_id)
        assert rec.status == "finished" and rec.checkpoint
        assert [e for e, _ in RunStore(p).epochs(run_id)] == [0, 1, 2, 3]
    assert main(["evaluate", str(demo), str(run_id)]) == 0


def test_kills_at_random_epochs_leave_no_run_running(demo: Path) -> None:
    rng = random.Random(3)
    trials = [train_trial(demo, rng, epochs=30) for _ in range(2)]
    assert [t.stuck for t in trials] == [0, 0]
    assert all(t.mid and t.integrity for t in trials)


def test_a_run_without_a_checkpoint_says_it_cannot_resume(demo: Path) -> None:
    with Project.open(demo) as p:
        runs = RunStore(p)
        run_id = runs.start("classify", "resnet18", RunSpec("classify").to_dict())
        p.store.conn.execute(
            "UPDATE runs SET owner = ? WHERE id = ?", (_gone_owner().to_json(), run_id)
        )
        runs.list()
        with pytest.raises(RunError, match="no checkpoint to resume from"):
            runner.resume_run(p, run_id)
        finished = runs.start("classify", "resnet18", {})
        runs.update(finished, status="finished")
        with pytest.raises(RunError, match="is finished; only interrupted, cancelled, failed"):
            runner.resume_run(p, finished)


# -- §10 image files deleted since they were added ---------------------------------------------


def test_a_missing_image_file_is_left_out_with_a_warning(demo: Path, capsys) -> None:
    with Project.open(demo) as p:
        spec = RunSpec(
            task="classify", backbone="resnet18", weights="none", input_size=32,
            train=TrainConfig(epochs=1, batch_size=8, device="cpu"),
        )  # fmt: skip
        rec = EventRecorder()
        first = runner.train(p, spec, callbacks=[rec])
        counts = [(e.train_images, e.val_images) for e in rec.events if isinstance(e, FitStarted)]
        assert first.warnings == []
        gone = p.images_in_split("train")[0] if p.images_in_split("train") else p.images()[0]
        p.image_path(gone).unlink()
        rec2 = EventRecorder()
        second = runner.train(p, spec, callbacks=[rec2])
        counts2 = [(e.train_images, e.val_images) for e in rec2.events if isinstance(e, FitStarted)]
        assert second.warnings == [
            f"1 image file is missing and left out of this run (relink or remove it): {gone.path}"
        ]
        assert sum(counts2[0]) == sum(counts[0]) - 1
        assert RunStore(p).get(second.run_id).config["warnings"] == second.warnings
    code = main(["train", str(demo), "--task", "classify", "--backbone", "resnet18",
                 "--weights", "none", "--input-size", "32", "--epochs", "1", "--device", "cpu"])  # fmt: skip
    assert code == 0
    assert "warning: 1 image file is missing and left out of this run" in capsys.readouterr().err


# -- §14 messages about model files -------------------------------------------------------------


class Exploit:
    def __reduce__(self):
        return (print, ("this would run code",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("protocol", [2, 4])
def test_a_malicious_pickle_is_called_what_it_is(tmp_path: Path, protocol: int) -> None:
    from tlstudio.ml.weights import WeightsError, load_state_dict_safely

    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"weight": Exploit()}, f, protocol=protocol)
    with pytest.raises(WeightsError) as err:
        load_state_dict_safely(path)
    assert str(err.value) == (
        f"{path}: refused: the file holds Python objects, which could run code; only plain "
        "tensors are loaded (found: builtins.print)"
    )
    truncated = tmp_path / "cut.pt"
    torch.save({"w": torch.zeros(100)}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:300])
    with pytest.raises(WeightsError, match=r"cut.pt: corrupt, truncated or not a PyTorch file"):
        load_state_dict_safely(truncated)


def test_a_malicious_run_model_file_is_refused_with_the_same_words(demo: Path) -> None:
    with Project.open(demo) as p:
        runs = RunStore(p)
        run_id = runs.start("classify", "resnet18", {})
        model = runs.run_dir(run_id) / "model.pt"
        with open(model, "wb") as f:
            pickle.dump({"model": Exploit(), "spec": {}}, f, protocol=2)
        runs.update(run_id, status="finished", checkpoint=f"runs/{run_id}/model.pt")
        with pytest.raises(RunError, match="refused: the file holds Python objects"):
            runner.load_run_model(p, run_id)


def test_train_with_weights_that_do_not_fit_names_the_file(demo: Path, tmp_path: Path, capsys):
    wrong = tmp_path / "wrong_shape.pt"
    torch.save({"features.0.weight": torch.zeros(3, 3)}, wrong)
    code = main(["train", str(demo), "--task", "classify", "--weights", str(wrong),
                 "--epochs", "1"])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert f"error: {wrong}: weights do not fit efficientnet_lite0" in err


def test_listing_runs_never_waits_for_another_writer(demo: Path) -> None:
    import sqlite3

    from tlstudio.core.store import DB_NAME

    with Project.open(demo) as p:
        runs = RunStore(p)
        dead = runs.start("classify", "resnet18", {})
        p.store.conn.execute(
            "UPDATE runs SET owner = ? WHERE id = ?", (_gone_owner().to_json(), dead)
        )
        other = sqlite3.connect(demo / DB_NAME)
        other.execute("BEGIN IMMEDIATE")  # another program is writing, and takes its time
        try:
            assert [r.status for r in runs.list()] == ["running"]  # not marked yet, no wait
        finally:
            other.rollback()
            other.close()
        assert [r.status for r in runs.list()] == ["interrupted"]
        assert p.store.conn.execute("PRAGMA busy_timeout").fetchone()[0] == 15_000
