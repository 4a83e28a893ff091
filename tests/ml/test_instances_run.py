"""An instance run on the demo project end to end: trained, predictions stored per object,
evaluated with mask AP at image resolution, accepted as objects, exported to ONNX and
decoded by the torch-free runtime exactly as the stored predictions."""

from __future__ import annotations

import csv
import io
import json
import shutil

import cv2
import numpy as np
import pytest
import torch

from tlstudio.cli import main
from tlstudio.core import commands as C
from tlstudio.core.predictions import accept_command
from tlstudio.core.runs import RunStore
from tlstudio.ml import runner
from tlstudio.ml.evaluation import evaluate_run
from tlstudio.ml.export import export_model, pair_detections, torchscript_runner
from tlstudio.ml.runner import RunSpec
from tlstudio.ml.trainer import TrainConfig
from tlstudio.runtime import ExportedModel

pytestmark = pytest.mark.slow  # one training (about 10 s) and one ONNX export (about 10 s)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """(project, run id, exported ONNX path): ResNet-18 from random weights, 64 px, one
    epoch on 12 demo images, fully trainable (a random frozen backbone learns nothing)."""
    from tlstudio.core.demo import create_demo_project

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("instances")
    project = create_demo_project(root / "demo", n_images=12, size=64)
    try:
        spec = RunSpec(task="instances", backbone="resnet18", weights="none", input_size=64,
                       train=TrainConfig(epochs=1, batch_size=4, freeze=0))  # fmt: skip
        run_id = runner.train(project, spec).run_id
        runner.predict(project, run_id, device="cpu")
        exported = export_model(project, run_id, root / "objects.onnx")
    finally:
        torch.set_num_threads(threads)
    yield project, run_id, exported
    project.close()


def test_predictions_are_stored_per_object_with_an_object_map(run):
    project, run_id, _ = run
    store = RunStore(project)
    class_ids = {c.id for c in project.classes()}
    total = 0
    for image_id in project.image_ids():
        pred = store.prediction(run_id, image_id)
        objects = pred.payload["objects"]
        total += len(objects)
        assert [o["number"] for o in objects] == list(range(1, len(objects) + 1))
        assert all(o["class_id"] in class_ids for o in objects)
        scores = [o["score"] for o in objects]
        assert scores == sorted(scores, reverse=True) and pred.score == max(scores, default=0.0)
        if objects:
            rec = project.image(image_id)
            assert pred.mask.shape == (rec.height, rec.width)
            assert set(np.unique(pred.mask).tolist()) <= set(range(len(objects) + 1))
    assert total > 0  # the test below compares objects, so there must be some


def test_evaluation_reports_mask_ap_beside_box_ap(run):
    project, run_id, _ = run
    ev = evaluate_run(project, run_id, "val", device="cpu")
    assert ev.task == "instances"
    assert set(ev.summary) == {"segm_map", "segm_map50", "segm_map75", "map", "map50",
                               "map75", "images"}  # fmt: skip
    assert all(0.0 <= v <= 1.0 for k, v in ev.summary.items() if k != "images")
    assert ev.per_class_columns[:2] == ["name", "segm_ap"]
    n_objects = sum(len(project.instances.of_image(i)) for i in ev.image_ids)
    assert sum(row["num_gt"] for row in ev.per_class) == n_objects
    assert len(ev.records) == len(ev.image_ids) and "object" in ev.records[0].true


def test_accepting_predictions_writes_objects_in_one_undo_step(run):
    project, run_id, _ = run
    image_id = next(
        i for i in project.image_ids() if RunStore(project).prediction(run_id, i).payload["objects"]
    )
    before = project.annotations(image_id)
    cmd = accept_command(project, run_id, [image_id], score_threshold=0.0, mode="replace")
    stack = C.UndoStack(project)
    stack.push(cmd)
    pred = RunStore(project).prediction(run_id, image_id)
    objects = project.instances.of_image(image_id)
    assert len(objects) == len(np.setdiff1d(np.unique(pred.mask), [0]))
    for o in objects:  # each accepted object has exactly its predicted pixels
        assert np.array_equal(project.instances.region(o.id), pred.mask == o.number)
    stack.undo()
    assert project.annotations(image_id) == before


def test_onnx_matches_pytorch_and_decodes_to_the_stored_predictions(run):
    project, run_id, exported = run
    assert exported.checked_images >= 1 and exported.max_abs_diff < 1e-3
    assert set(exported.diffs) == {"boxes", "scores", "labels", "mask_probs"}
    model = ExportedModel.load(exported.path, threads=1, torchscript=torchscript_runner)
    assert model.task == "instances" and model.info["input"]["shape"][0] == 1
    ids = project.image_ids()
    preds = model.predict_files([project.image_path(i) for i in ids])
    store = RunStore(project)
    names = {c.id: c.name for c in project.classes()}
    compared = 0
    for image_id, got in zip(ids, preds, strict=True):
        want = store.prediction(run_id, image_id)
        a, b = got["objects"], want.payload["objects"]
        assert len(a) == len(b)
        if not b:
            continue
        order = pair_detections(
            np.array([o["xyxy"] for o in a]), np.array([o["class_id"] for o in a]),
            np.array([o["xyxy"] for o in b]), np.array([o["class_id"] for o in b]),
        )  # fmt: skip
        for got_o, want_o in zip([a[i] for i in order], b, strict=True):
            assert got_o["class"] == names[want_o["class_id"]]
            assert got_o["score"] == pytest.approx(want_o["score"], abs=1e-4)
            np.testing.assert_allclose(got_o["xyxy"], want_o["xyxy"], atol=1e-2)
        # the same objects own the same pixels (objects of equal score may swap an overlap)
        relabel = np.zeros(len(a) + 1, np.int64)
        relabel[[a[i]["number"] for i in order]] = [o["number"] for o in b]
        assert (relabel[got["mask"]] == want.mask).mean() > 0.99
        compared += 1
    assert compared


def test_cli_predicts_objects_with_an_exported_model(run, tmp_path, capsys):
    project, _run_id, exported = run
    folder = tmp_path / "in"
    folder.mkdir()
    ids = project.image_ids()[:2]
    for k, i in enumerate(ids):
        shutil.copy(project.image_path(i), folder / f"img{k}.png")
    maps = tmp_path / "maps"
    args = ["predict", "--model", str(exported.path), "--masks", str(maps), str(folder)]
    assert main(args) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert len(rows) == 2
    for k, row in enumerate(rows):
        numbers = cv2.imread(str(maps / f"img{k}.png"), cv2.IMREAD_UNCHANGED)
        counts = np.bincount(numbers.ravel(), minlength=len(row["objects"]) + 1)
        assert [o["pixels"] for o in row["objects"]] == counts[1:].tolist()
    assert main(["predict", "--model", str(exported.path), "--csv", str(folder)]) == 0
    table = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert table[0] == ["file", "number", "class", "score", "x1", "y1", "x2", "y2", "pixels"]
    n_objects = sum(max(len(r["objects"]), 1) for r in rows)
    assert len(table) == 1 + n_objects


def test_run_report_draws_labelled_and_predicted_objects(run, tmp_path):
    from tlstudio.ml.report import write_report

    project, run_id, _ = run
    html = write_report(project, run_id, tmp_path / "report.html", samples=2,
                        heatmaps=False).read_text()  # fmt: skip
    assert html.count("labelled object(s) | predicted:") == 2
    assert "Mask mAP" in html or "segm_map50" in html
