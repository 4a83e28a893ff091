"""Multi-task runs: several heads on one shared backbone (tlstudio.ml.multitask)."""

from __future__ import annotations

import math

import pytest
import torch

from tlstudio.cli import main
from tlstudio.core.demo import create_demo_project
from tlstudio.core.errors import ValidationError
from tlstudio.core.runs import RunStore
from tlstudio.ml import runner
from tlstudio.ml.backbones import build_backbone, get_spec
from tlstudio.ml.multitask import MultiTaskDataset, MultiTaskModel
from tlstudio.ml.runner import RunSpec
from tlstudio.ml.tasks.factory import build_task_model
from tlstudio.ml.tasks.joint import check_tasks, parse_task_weights
from tlstudio.ml.trainer import TrainConfig

SIZE = 48


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    project = create_demo_project(tmp_path_factory.mktemp("mt") / "demo", n_images=12, size=64)
    yield project
    project.close()


def train_args(demo, task: str, *extra: str) -> list[str]:
    return ["train", str(demo.root), "--task", task, "--backbone", "resnet18", "--weights",
            "none", "--freeze", "0", "--input-size", str(SIZE), "--batch", "4", *extra]  # fmt: skip


def last_run_id(out: str) -> int:
    return int(out.strip().splitlines()[-1].split()[1])


def tiny_model(weights=None, num_points: int = 3) -> MultiTaskModel:
    torch.manual_seed(0)
    backbone = build_backbone("resnet18", "none")
    members = {
        "classify": build_task_model("classify", backbone, num_classes=2),
        "landmarks": build_task_model("landmarks", backbone, num_points=num_points),
    }
    return MultiTaskModel(backbone, members, weights)


def targets_for(n: int, present: list[tuple[str, ...]], num_points: int = 3) -> list[dict]:
    out = []
    for i in range(n):
        t: dict = {"image_id": i, "orig_size": (SIZE, SIZE), "present": present[i]}
        if "classify" in present[i]:
            t["label"] = torch.tensor(i % 2)
        if "landmarks" in present[i]:
            kp = torch.tensor([[10.0 + i, 12.0, 2.0]] * num_points)
            t["keypoints"] = kp
        out.append(t)
    return out


# --------------------------------------------------------------------------- names


def test_task_lists_are_checked_with_reasons():
    assert check_tasks("classify,landmarks") == ("classify", "landmarks")
    assert check_tasks("segment") == ("segment",)
    with pytest.raises(ValidationError, match="detect cannot be part of a multi-task run"):
        check_tasks("classify,detect")
    with pytest.raises(ValidationError, match="twice"):
        check_tasks("classify,classify")
    with pytest.raises(ValidationError, match="unknown task 'clasify'"):
        check_tasks("clasify,landmarks")
    assert parse_task_weights("1,0.5", 2) == [1.0, 0.5]
    assert parse_task_weights("uncertainty", 2) == "uncertainty"
    with pytest.raises(ValidationError, match="one per task"):
        parse_task_weights("1", 2)


def test_cli_refuses_detection_in_a_multitask_run(demo, capsys):
    assert main(train_args(demo, "classify,detect", "--epochs", "1")) == 2
    assert "detect cannot be part of a multi-task run" in capsys.readouterr().err


# --------------------------------------------------------------------------- loss


def test_fixed_task_weights_scale_each_task_loss():
    model = tiny_model([1.0, 0.5]).train()
    torch.manual_seed(1)
    x = torch.randn(4, 3, SIZE, SIZE)
    targets = targets_for(4, [("classify", "landmarks")] * 4)
    outputs = model.outputs(x)
    out = model.combined_loss(outputs, targets)
    cls = model.members["classify"].loss_from_logits(outputs["classify"], targets)["loss"]
    lm = model.members["landmarks"].loss_from_heatmaps(outputs["landmarks"], targets)["loss"]
    assert torch.allclose(out["loss"], cls + 0.5 * lm)
    assert torch.allclose(out["landmarks_loss"], lm)


def test_images_without_a_tasks_labels_contribute_to_the_other_tasks_only():
    model = tiny_model().train()
    torch.manual_seed(2)
    x = torch.randn(4, 3, SIZE, SIZE)
    # images 1 and 3 have no landmarks; image 2 has no class tag
    present = [("classify", "landmarks"), ("classify",), ("landmarks",), ("classify",)]
    targets = targets_for(4, present)
    outputs = {k: v.detach().requires_grad_(True) for k, v in model.outputs(x).items()}
    out = model.combined_loss(outputs, targets)
    lm_rows = [0, 2]
    lm = model.members["landmarks"].loss_from_heatmaps(
        outputs["landmarks"][lm_rows], [targets[i] for i in lm_rows]
    )["loss"]
    cls_rows = [0, 1, 3]
    cls = model.members["classify"].loss_from_logits(
        outputs["classify"][cls_rows], [targets[i] for i in cls_rows]
    )["loss"]
    assert torch.allclose(out["landmarks_loss"], lm)
    assert torch.allclose(out["classify_loss"], cls)
    out["loss"].backward()
    heat_grad = outputs["landmarks"].grad.flatten(1).abs().sum(1)
    logit_grad = outputs["classify"].grad.abs().sum(1)
    assert heat_grad[1] == 0 and heat_grad[3] == 0  # no landmarks: no landmark gradient
    assert heat_grad[0] > 0 and heat_grad[2] > 0
    assert logit_grad[2] == 0 and logit_grad[1] > 0  # no tag: no classification gradient


def test_uncertainty_weighting_has_a_learnt_weight_per_task():
    model = tiny_model("uncertainty").train()
    x = torch.randn(2, 3, SIZE, SIZE)
    targets = targets_for(2, [("classify", "landmarks")] * 2)
    with torch.no_grad():
        model.log_vars.copy_(torch.tensor([0.5, -1.0]))
    outputs = model.outputs(x)
    out = model.combined_loss(outputs, targets)
    cls, lm = out["classify_loss"], out["landmarks_loss"]
    expected = math.exp(-0.5) * cls + 0.5 + math.exp(1.0) * lm - 1.0
    assert torch.allclose(out["loss"], expected)
    out["loss"].backward()
    assert model.log_vars.grad is not None and bool((model.log_vars.grad != 0).all())


# --------------------------------------------------------------------------- data


def test_dataset_keeps_images_with_some_labels_and_flags_the_present_tasks(tmp_path):
    project = create_demo_project(tmp_path / "p", n_images=12, size=64)
    try:
        ids = project.image_ids()
        stripped = ids[:3]
        for image_id in stripped:
            for s in project.landmark_sets(image_id):
                project.remove_landmark_set(s.id)
        template = project.landmark_sets(ids[5])[0].template_id
        bspec = get_spec("resnet18")
        ds = MultiTaskDataset(project, "classify,landmarks", ids, SIZE, bspec.mean, bspec.std,
                              template_id=template)  # fmt: skip
        assert ds.image_ids == ids  # every image is tagged, so none is left out
        assert ds.count("classify") == len(ids)
        assert ds.count("landmarks") == len(ids) - 3
        _, target = ds[0]
        assert target["present"] == ("classify",) and "keypoints" not in target
        _, target = ds[5]
        assert target["present"] == ("classify", "landmarks")
        assert target["keypoints"].shape[1] == 3 and "label" in target
    finally:
        project.close()


# --------------------------------------------------------------------------- runs


def test_cli_trains_one_joint_run_with_metrics_per_task_and_evaluates_and_predicts(demo, capsys):
    status = main(train_args(demo, "classify,landmarks", "--epochs", "2",
                             "--task-weights", "1,0.5"))  # fmt: skip
    out = capsys.readouterr().out
    assert status == 0, out
    assert "val classify/accuracy" in out and "val landmarks/nme" in out
    run_id = last_run_id(out)
    runs = RunStore(demo)
    rec = runs.get(run_id)
    assert rec.task == "classify,landmarks" and rec.status == "finished"
    assert rec.metric_name == "classify/accuracy"
    assert rec.config["model_options"] == {"task_weights": [1.0, 0.5]}
    epochs = runs.epochs(run_id)
    assert len(epochs) == 2
    for _, metrics in epochs:
        assert {"classify/accuracy", "landmarks/nme", "landmarks/pck@0.1"} <= set(metrics)
    assert (demo.root / rec.checkpoint).is_file()

    model, spec = runner.load_run_model(demo, run_id)
    assert isinstance(model, MultiTaskModel) and model.weights_now() == {
        "classify": 1.0, "landmarks": 0.5,
    }  # fmt: skip

    assert main(["evaluate", str(demo.root), str(run_id)]) == 0
    shown = capsys.readouterr().out
    assert "classify/accuracy" in shown and "landmarks/nme" in shown
    summary = runner.evaluate(demo, run_id, "val", device="cpu")["summary"]
    assert 0.0 <= summary["classify/accuracy"] <= 1.0 and summary["landmarks/nme"] >= 0.0

    image = demo.image_ids()[0]
    assert main(["predict", str(demo.root), str(run_id), "--images", str(image)]) == 0
    pred = runs.prediction(run_id, image)
    assert pred is not None
    assert pred.payload["tasks"] == ["classify", "landmarks"]
    assert pred.payload["class_id"] in {c.id for c in demo.classes()}
    points = pred.payload["points"]
    assert len(points) == len(demo.template(spec.template_id).points)
    rec_img = demo.image(image)
    # landmark points come back in image pixels (the images are 64 px, the input 48)
    assert all(0 <= x <= rec_img.width and 0 <= y <= rec_img.height for x, y, _ in points)


def test_uncertainty_weighted_run_learns_its_task_weights(demo, capsys):
    status = main(train_args(demo, "classify,landmarks", "--epochs", "2",
                             "--task-weights", "uncertainty"))  # fmt: skip
    out = capsys.readouterr().out
    assert status == 0, out
    model, _ = runner.load_run_model(demo, last_run_id(out))
    weights = model.weights_now()
    assert set(weights) == {"classify", "landmarks"}
    assert all(w != 1.0 for w in weights.values())  # moved from exp(-0) = 1 while training


def test_segment_and_classify_train_together(demo):
    spec = RunSpec(task="segment,classify", backbone="resnet18", weights="none",
                   train=TrainConfig(epochs=1, batch_size=4, freeze=0), input_size=SIZE)  # fmt: skip
    result = runner.train(demo, spec)
    assert result.ended is not None and result.ended.status == "finished"
    assert result.ended.metric_name == "segment/miou"
    assert {"segment/miou", "classify/accuracy"} <= set(result.metrics)


def test_experiment_multitask_compares_single_and_joint_runs(demo, capsys):
    status = main(["experiment", str(demo.root), "--kind", "multitask", "--task",
                   "classify,landmarks", "--backbone", "resnet18", "--weights", "none",
                   "--freeze", "0", "--epochs", "1", "--input-size", str(SIZE),
                   "--batch", "4"])  # fmt: skip
    out = capsys.readouterr().out
    assert status == 0, out
    lines = out.splitlines()
    rows = {line.split()[0]: line.split() for line in lines if line.split()[:1] in
            (["classify"], ["landmarks"])}  # fmt: skip
    assert set(rows) == {"classify", "landmarks"}
    assert rows["classify"][1] == "accuracy" and rows["landmarks"][1] == "nme"
    runs = RunStore(demo)
    arms = {}
    for run in runs.list():
        exp = run.config.get("experiment") or {}
        if exp.get("kind") == "multitask":
            arms[(exp["arm"], exp["task"])] = run
    assert set(arms) == {("single", "classify"), ("single", "landmarks"),
                         ("joint", "classify,landmarks")}  # fmt: skip
    joint = arms[("joint", "classify,landmarks")]
    single = arms[("single", "classify")]
    assert joint.config["train"] == single.config["train"]  # the same settings
    # the table's values are the runs' recorded metrics
    single_value = float(rows["classify"][-4])
    assert single_value == pytest.approx(runs.get(single.id).best_metric, abs=1e-3)


# --------------------------------------------------------------------------- export


def test_export_writes_one_onnx_with_each_tasks_outputs_checked_against_pytorch(demo, tmp_path):
    import onnxruntime as ort

    from tlstudio.ml.export import export_model
    from tlstudio.runtime import ExportedModel

    spec = RunSpec(task="classify,landmarks", backbone="resnet18", weights="none",
                   train=TrainConfig(epochs=1, batch_size=4, freeze=0), input_size=32)  # fmt: skip
    run_id = runner.train(demo, spec).run_id
    path = tmp_path / "joint.onnx"
    result = export_model(demo, run_id, path)
    names = ["classify_probs", "landmarks_heatmaps", "landmarks_keypoints"]
    assert sorted(result.diffs) == sorted(names) and result.checked_images >= 2
    assert all(d < 1e-3 for d in result.diffs.values())
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == names

    # the file alone, without the project: each task's prediction side by side
    image = demo.image_ids()[0]
    exported = ExportedModel.load(path)
    (pred,) = exported.predict_files([demo.image_path(image)])
    model, _ = runner.load_run_model(demo, run_id)
    assert pred["tasks"] == ["classify", "landmarks"]
    assert pred["class"] in {c.name for c in demo.classes()}
    assert len(pred["points"]) == model.members["landmarks"].num_points
