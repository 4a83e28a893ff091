"""``tlstudio bundle`` → ``tlstudio run-job`` (what the job's ``run.sh`` starts; here in
this process, without torchrun) → ``tlstudio import-run``: the run comes back as if
trained here. The whole way through ``run.sh`` under torchrun with 2 processes is
tests/gui/test_train_elsewhere.py (which also opens the run in Inspect)."""

from __future__ import annotations

import pytest

from tlstudio.cli import main
from tlstudio.core.project import Project
from tlstudio.core.runs import RunStore
from tlstudio.ml import runner


@pytest.mark.slow
def test_bundle_run_job_and_import_back(tmp_path, capsys):
    demo, job = tmp_path / "clinic" / "demo", tmp_path / "clinic" / "job"
    assert main(["demo", str(demo)]) == 0
    args = ["bundle", str(demo), "--out", str(job), "--no-images", "--task", "classify",
            "--backbone", "resnet18", "--weights", "none", "--input-size", "32",
            "--epochs", "2", "--batch", "4", "--freeze", "3"]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    assert f"bash {job}/run.sh" in out and f"import-run {demo} {job}" in out

    assert main(["run-job", str(job), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert out.count("run 1 (finished, 2 epochs)") == 1, out
    assert (job / "result.json").is_file()

    assert main(["import-run", str(demo), str(job)]) == 0
    assert "Imported the job's run as run 1 (finished on cpu" in capsys.readouterr().out
    with Project.open(demo) as project:
        store = RunStore(project)
        (run,) = store.list()
        assert run.config["train"]["epochs"] == 2 and run.config["imported_from"]
        assert len(store.epochs(run.id)) == 2
        job_images = {r.id for s in ("train", "val") for r in project.images_in_split(s)}
        assert {i for i, _ in store.predicted_images(run.id)} == job_images
        model, spec = runner.load_run_model(project, run.id)  # what Inspect loads
        assert spec.train.freeze == 3
        result = runner.evaluate(project, run.id, "val", device="cpu")
        assert result["images"] == len(project.images_in_split("val"))
    assert main(["import-run", str(demo), str(job)]) == 2
    assert "imported before" in capsys.readouterr().err
