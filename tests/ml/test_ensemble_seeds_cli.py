"""``tlstudio ensemble DIR --seeds N --task T …``: N runs of one recipe, one ensemble."""

from __future__ import annotations

import pytest

from tlstudio.cli import main
from tlstudio.core.demo import create_demo_project
from tlstudio.core.project import Project
from tlstudio.core.runs import RunStore
from tlstudio.ml.ensemble import members_of
from tlstudio.ml.evaluation import evaluate_run
from tlstudio.ml.runner import RunSpec

pytestmark = pytest.mark.usefixtures("torch_one_thread")
TRAIN = ["--task", "classify", "--backbone", "resnet18", "--weights", "none", "--freeze", "0",
         "--input-size", "32", "--epochs", "1", "--batch", "4", "--device", "cpu",
         "--threads", "1"]  # fmt: skip


def test_seeds_trains_one_run_per_seed_and_records_them_as_one_ensemble(tmp_path, capsys):
    root = tmp_path / "demo"
    create_demo_project(root, n_images=12, size=48).close()
    assert main(["ensemble", str(root), "--seeds", "2", "--seed", "5", *TRAIN]) == 0
    out = capsys.readouterr().out
    with Project.open(root) as project:
        runs = RunStore(project).list()
        ensemble = runs[-1] if members_of(runs[-1]) else runs[0]
        members = members_of(ensemble)
        assert len(runs) == 3 and len(members) == 2
        seeds = [RunSpec.from_dict(RunStore(project).get(m).config).train.seed for m in members]
        assert seeds == [5, 6]
        for m in members:
            spec = RunSpec.from_dict(RunStore(project).get(m).config)
            assert (spec.backbone, spec.resolved_input_size, spec.train.epochs) == (
                "resnet18", 32, 1)  # fmt: skip
        score = evaluate_run(project, ensemble.id, "val", device="cpu").summary["accuracy"]
    assert f"ensemble run {ensemble.id} of runs {members[0]}, {members[1]}" in out
    assert "on the val split" in out
    table = {line.split()[0] + " " + line.split()[1]: line.split() for line in out.splitlines()
             if line.startswith(("run ", "ensemble "))}  # fmt: skip
    assert f"run {members[0]}" in table and f"run {members[1]}" in table
    header = next(line.split() for line in out.splitlines() if line.startswith("model "))
    row = table[f"ensemble {ensemble.id}"]
    assert float(row[header.index("accuracy") + 1]) == pytest.approx(score, abs=1e-4)


def test_seeds_refuses_run_ids_a_single_seed_and_a_missing_task(tmp_path, capsys):
    root = tmp_path / "demo"
    create_demo_project(root, n_images=12, size=48).close()
    assert main(["ensemble", str(root), "--seeds", "1", *TRAIN]) == 2
    assert "at least two members" in capsys.readouterr().err
    assert main(["ensemble", str(root), "3", "--seeds", "2", *TRAIN]) == 2
    assert "give no RUN ids" in capsys.readouterr().err
    assert main(["ensemble", str(root), "--seeds", "2", "--epochs", "1"]) == 2
    assert "--seeds needs --task" in capsys.readouterr().err
    with Project.open(root) as project:
        assert RunStore(project).list() == []  # nothing trained, nothing recorded
