"""``tlstudio bundle`` → the job's ``run.sh`` (torchrun, 2 CPU processes) →
``tlstudio import-run``: the run comes back as if trained here."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tlstudio.cli import main
from tlstudio.core.project import Project
from tlstudio.core.runs import RunStore
from tlstudio.ml import runner

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_bundle_run_on_two_processes_and_import_back(tmp_path, capsys):
    demo, job = tmp_path / "clinic" / "demo", tmp_path / "clinic" / "job"
    assert main(["demo", str(demo)]) == 0
    args = ["bundle", str(demo), "--out", str(job), "--no-images", "--task", "classify",
            "--backbone", "resnet18", "--weights", "none", "--input-size", "32",
            "--epochs", "2", "--batch", "4", "--freeze", "3"]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    assert f"bash {job}/run.sh" in out and f"import-run {demo} {job}" in out

    env = dict(os.environ, PYTHONPATH=str(REPO), NPROC="2", DEVICE="cpu",
               PYTHON=sys.executable, OMP_NUM_THREADS="1", TLSTUDIO_DIST_TIMEOUT_S="60")  # fmt: skip
    proc = subprocess.run(["bash", str(job / "run.sh")], cwd=tmp_path, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=240)  # fmt: skip
    assert proc.returncode == 0, proc.stdout
    assert proc.stdout.count("run 1 (finished, 2 epochs)") == 1, proc.stdout

    assert main(["import-run", str(demo), str(job)]) == 0
    assert "Imported the job's run as run 1 (finished on cpu ×2 (gloo)" in capsys.readouterr().out
    with Project.open(demo) as project:
        store = RunStore(project)
        (run,) = store.list()
        assert run.config["distributed"][0]["world_size"] == 2
        assert len(store.epochs(run.id)) == 2
        job_images = {r.id for s in ("train", "val") for r in project.images_in_split(s)}
        assert {i for i, _ in store.predicted_images(run.id)} == job_images
        model, spec = runner.load_run_model(project, run.id)  # what Inspect loads
        assert spec.train.freeze == 3
        result = runner.evaluate(project, run.id, "val", device="cpu")
        assert result["images"] == len(project.images_in_split("val"))
    assert main(["import-run", str(demo), str(job)]) == 2
    assert "imported before" in capsys.readouterr().err
