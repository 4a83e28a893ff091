"""Job bundles (core): what a job folder holds, the labels version, importing a run back."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pytest

from tlstudio.core.demo import create_demo_project
from tlstudio.core.jobs import (
    JobError,
    LabelsChangedError,
    import_run,
    labels_version,
    read_job,
    write_bundle,
    write_result,
)
from tlstudio.core.project import Project
from tlstudio.core.runs import RunStore

SPEC = {"task": "classify", "backbone": "resnet18", "train": {"epochs": 1}}


@pytest.fixture
def demo(tmp_path: Path):
    project = create_demo_project(tmp_path / "demo", n_images=10, size=48)
    yield project
    project.close()


def _split(project: Project) -> tuple[list[int], list[int]]:
    ids = project.image_ids()
    return ids[:6], ids[6:8]  # two images (ids[8:]) take no part


def _train_in_job(job_dir: Path, *, status: str = "finished") -> int:
    """What run-job leaves: a run with epochs, a model file, a prediction, result.json."""
    with Project.open(job_dir / "project") as done:
        store = RunStore(done)
        rid = store.start("classify", "resnet18", {**SPEC, "distributed": [{"world_size": 4}]},
                          "cuda ×4 (nccl)")  # fmt: skip
        folder = store.run_dir(rid)
        (folder / "model.pt").write_bytes(b"model")
        (folder / "last.pt").write_bytes(b"last")
        for e in range(3):
            store.log_epoch(rid, e, {"train_loss": 1.0 - e / 10, "accuracy": 0.5 + e / 10})
        image = done.image_ids()[0]
        store.set_prediction(rid, image, {"class_id": 1}, np.ones((4, 4), np.uint16), 0.9)
        store.update(rid, status=status, metric_name="accuracy", best_metric=0.7,
                     checkpoint=f"runs/{rid}/model.pt", duration_s=12.5)  # fmt: skip
    job = read_job(job_dir)
    write_result(job, rid, status)
    return rid


def test_bundle_holds_the_run_images_labels_and_script(demo, tmp_path):
    train, val = _split(demo)
    job = write_bundle(demo, SPEC, tmp_path / "job", train, val)
    assert sorted(p.name for p in (tmp_path / "job").iterdir()) == ["job.json", "project", "run.sh"]
    assert os.access(tmp_path / "job" / "run.sh", os.X_OK)
    assert read_job(tmp_path / "job") == job
    assert job.train_ids == train and job.val_ids == val and job.spec == SPEC
    with Project.open(job.project_dir, read_only=True) as copy:
        assert copy.image_ids() == sorted(train + val)  # same ids, only the run's images
        assert labels_version(copy, train + val) == job.labels_version
        assert [c.name for c in copy.classes()] == [c.name for c in demo.classes()]
        for i in train + val:
            assert copy.image(i).path.startswith("images/")
            assert copy.image_path(i).read_bytes() == demo.image_path(i).read_bytes()
            assert copy.annotations(i) == demo.annotations(i)
            assert copy.image(i).split == demo.image(i).split
        assert RunStore(copy).list() == []
    script = (tmp_path / "job" / "run.sh").read_text()
    assert "torch.distributed.run" in script and "#SBATCH --nodes=1" in script
    assert "srun" in script and "run-job" in script


def test_bundle_without_images_refers_to_the_originals(demo, tmp_path):
    train, val = _split(demo)
    job = write_bundle(demo, SPEC, tmp_path / "shared" / "job", train, val, copy_images=False)
    assert not (job.project_dir / "images").exists()
    with Project.open(job.project_dir, read_only=True) as copy:
        for i in train + val:
            stored = copy.image(i).path
            assert not Path(stored).is_absolute() and stored.startswith("../")
            assert copy.image_path(i).resolve() == demo.image_path(i).resolve()


def test_bundle_refuses_a_used_folder_and_leaves_out_missing_files(demo, tmp_path):
    train, val = _split(demo)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("x")
    with pytest.raises(JobError, match="new or empty"):
        write_bundle(demo, SPEC, tmp_path / "busy", train, val)
    demo.image_path(train[0]).unlink()
    job = write_bundle(demo, SPEC, tmp_path / "job", train, val)
    assert train[0] not in job.train_ids and "1 image files are missing" in job.warnings[0]


def test_labels_version_follows_labels_splits_and_classes_not_colours(demo):
    ids = demo.image_ids()
    before = labels_version(demo, ids)
    demo.set_class_color(demo.classes()[0].id, "#123456")
    assert labels_version(demo, ids) == before  # colours do not matter to training

    tags = demo.tags(ids[0])
    other = next(c.id for c in demo.classes() if c.id not in tags)
    demo.set_tags(ids[0], [other])
    assert labels_version(demo, ids) != before
    demo.set_tags(ids[0], tags)
    assert labels_version(demo, ids) == before

    split = demo.image(ids[1]).split
    demo.set_splits({ids[1]: None})
    assert labels_version(demo, ids) != before
    demo.set_splits({ids[1]: split})

    box_id = next(b.id for i in ids for b in demo.boxes(i))
    image_id, box = demo.box(box_id)
    demo.update_box(dataclasses.replace(box, x2=box.x2 - 1))
    assert labels_version(demo, ids) != before
    demo.update_box(box)
    assert labels_version(demo, ids) == before

    demo.rename_class(other, "blob")
    assert labels_version(demo, ids) != before


def test_import_brings_back_config_epochs_files_and_predictions(demo, tmp_path):
    train, val = _split(demo)
    job = write_bundle(demo, SPEC, tmp_path / "job", train, val)
    with pytest.raises(JobError, match="has not trained yet"):
        import_run(demo, job.folder)
    job_run = _train_in_job(job.folder)
    run_id = import_run(demo, job.folder)
    store = RunStore(demo)
    rec = store.get(run_id)
    assert (rec.status, rec.device, rec.best_metric, rec.duration_s) == (
        "finished", "cuda ×4 (nccl)", 0.7, 12.5)  # fmt: skip
    assert rec.config["distributed"] == [{"world_size": 4}]
    assert rec.config["imported_from"]["job_id"] == job.job_id
    assert rec.config["imported_from"]["job_run"] == job_run
    assert rec.checkpoint == f"runs/{run_id}/model.pt"
    assert (demo.root / rec.checkpoint).read_bytes() == b"model"
    assert (demo.root / "runs" / str(run_id) / "last.pt").read_bytes() == b"last"
    assert [e for e, _ in store.epochs(run_id)] == [0, 1, 2]
    ((pred_image, score),) = store.predicted_images(run_id)
    pred = store.prediction(run_id, pred_image)
    assert score == 0.9 and pred.payload == {"class_id": 1} and pred.mask.sum() == 16
    assert not [p for p in (demo.root / "runs").iterdir() if p.name.startswith(".import")]
    with pytest.raises(JobError, match=f"imported before, as run {run_id}"):
        import_run(demo, job.folder)


def test_import_refuses_other_labels_unless_forced(demo, tmp_path):
    train, val = _split(demo)
    job = write_bundle(demo, SPEC, tmp_path / "job", train, val)
    _train_in_job(job.folder)
    now = demo.image(train[0]).split
    demo.set_splits({train[0]: "val" if now == "train" else "train"})
    with pytest.raises(LabelsChangedError, match="changed since the job was made.*--force"):
        import_run(demo, job.folder)
    assert RunStore(demo).list() == []
    run_id = import_run(demo, job.folder, force=True)
    assert RunStore(demo).get(run_id).config["imported_from"]["forced"] is True
    demo.remove_images([val[0]])
    other = write_bundle(demo, SPEC, tmp_path / "job2", train[1:], val[1:])
    _train_in_job(other.folder)
    demo.remove_images([train[1]])
    with pytest.raises(LabelsChangedError, match="no longer in"):
        import_run(demo, other.folder)


def test_import_refuses_a_run_that_did_not_finish(demo, tmp_path):
    train, val = _split(demo)
    job = write_bundle(demo, SPEC, tmp_path / "job", train, val)
    with Project.open(job.project_dir) as done:
        store = RunStore(done)
        rid = store.start("classify", "resnet18", SPEC, "cpu")
        store.update(rid, status="failed", error="out of memory")
    with pytest.raises(JobError, match="saved no model.*out of memory"):
        import_run(demo, job.folder)
    data = json.loads((job.folder / "job.json").read_text())
    data["format"] = 99
    (job.folder / "job.json").write_text(json.dumps(data))
    with pytest.raises(JobError, match="newer tlstudio"):
        read_job(job.folder)
    with pytest.raises(JobError, match="not a job folder"):
        read_job(tmp_path)
