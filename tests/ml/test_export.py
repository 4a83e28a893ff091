"""Exported models (ONNX, TorchScript): outputs equal PyTorch's on real project images,
decoded predictions equal the stored run predictions, the sidecar says what a user needs,
and the CLI runs an exported file over a folder without the project."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tlstudio.cli import main
from tlstudio.core.runs import RunStore
from tlstudio.ml import export as export_mod
from tlstudio.ml import runner
from tlstudio.ml.backbones import get_spec
from tlstudio.ml.data import load_input_image
from tlstudio.ml.export import ExportError, export_model, pair_detections, torchscript_runner
from tlstudio.ml.runner import RunSpec
from tlstudio.runtime import ExportedModel, sidecar_path
from tlstudio.runtime.images import read_rgb

TASKS = ("classify", "segment", "landmarks", "autoencode", "detect")
CASES = [
    (t, f) for t in TASKS for f in ("onnx", "torchscript") if (t, f) != ("detect", "torchscript")
]
SUFFIX = {"onnx": ".onnx", "torchscript": ".pt"}
TIMINGS: dict[str, float] = {}


# The exports (about 20 s: each ONNX export traces the model with dynamo) make this slow.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(trained_demo):
    """(project, task -> run id): the session's demo runs, with stored predictions."""
    return trained_demo.project, trained_demo.runs


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):
    """(task, format) -> (ExportResult) for every case, exported once."""
    torch.set_num_threads(1)
    project, runs = trained
    out = tmp_path_factory.mktemp("models")
    results = {}
    for task, fmt in CASES:
        t0 = time.perf_counter()
        results[task, fmt] = export_model(project, runs[task], out / f"{task}{SUFFIX[fmt]}", fmt)
        TIMINGS[f"{task}/{fmt}"] = time.perf_counter() - t0
    print("\nexport + check seconds:", {k: round(v, 2) for k, v in TIMINGS.items()})
    return results


def _batch(project, spec: RunSpec, ids) -> torch.Tensor:
    b = get_spec(spec.backbone)
    mean = torch.tensor(b.mean).view(3, 1, 1)
    std = torch.tensor(b.std).view(3, 1, 1)
    xs = []
    for i in ids:
        rgb, _ = load_input_image(project.image_path(i), spec.resolved_input_size)
        xs.append((torch.from_numpy(rgb).permute(2, 0, 1).float() / 255 - mean) / std)
    return torch.stack(xs)


@pytest.mark.parametrize(("task", "fmt"), CASES)
def test_exported_outputs_match_pytorch_on_project_images(trained, exported, task, fmt):
    project, runs = trained
    result = exported[task, fmt]
    assert result.path.is_file() and result.sidecar_path == sidecar_path(result.path)
    assert result.format == fmt and result.checked_images >= 1
    assert result.max_abs_diff is not None and result.max_abs_diff < 1e-3

    model, spec = runner.load_run_model(project, runs[task])
    ids = project.image_ids()[-5:]  # 5 images: not the traced batch size (2)
    x = _batch(project, spec, ids)
    loaded = ExportedModel.load(result.path, threads=1, torchscript=torchscript_runner)
    if task == "detect":  # one image at a time
        for k in range(len(ids)):
            got = loaded.run(x[k : k + 1].numpy())
            (want,) = model.predict_step(x[k : k + 1])
            want = {key: v.numpy() for key, v in want.items()}
            assert got["boxes"].shape == want["boxes"].shape
            # equal scores may sort either way: line the detections up first
            order = pair_detections(got["boxes"], got["labels"], want["boxes"], want["labels"])
            got = {key: v[order] for key, v in got.items()}
            np.testing.assert_allclose(got["boxes"], want["boxes"], atol=1e-3)
            np.testing.assert_allclose(got["scores"], want["scores"], atol=1e-4)
            np.testing.assert_array_equal(got["labels"], want["labels"])
        return
    got = loaded.run(x.numpy())
    want = model.predict_step(x)
    if task in ("classify", "segment"):
        probs = torch.stack([w["probs"] for w in want]).numpy()
        assert got["probs"].shape == probs.shape
        np.testing.assert_allclose(got["probs"], probs, atol=1e-4)
    elif task == "landmarks":
        with torch.no_grad():
            heat = model(x).numpy()
        np.testing.assert_allclose(got["heatmaps"], heat, atol=1e-4)
        kps = torch.stack([w["keypoints"] for w in want]).numpy()
        np.testing.assert_allclose(got["keypoints"], kps, atol=1e-3)  # pixels / confidence
    else:
        np.testing.assert_allclose(
            got["reconstruction"], torch.stack([w["reconstruction"] for w in want]), atol=1e-4
        )
        np.testing.assert_allclose(
            got["latent"], torch.stack([w["latent"] for w in want]), atol=1e-4
        )
        np.testing.assert_allclose(got["error"], [w["error"] for w in want], atol=1e-5)


@pytest.mark.parametrize(("task", "fmt"), CASES)
def test_exported_predict_equals_stored_run_predictions(trained, exported, task, fmt):
    project, runs = trained
    loaded = ExportedModel.load(exported[task, fmt].path, threads=1, torchscript=torchscript_runner)
    ids = project.image_ids()
    preds = loaded.predict_files([project.image_path(i) for i in ids], batch_size=5)
    assert len(preds) == len(ids)
    store = RunStore(project)
    names = {c.id: c.name for c in project.classes()}
    for image_id, pred in zip(ids, preds, strict=True):
        stored = store.prediction(runs[task], image_id)
        want = stored.payload
        if task == "classify":
            assert pred["class_id"] == want["class_id"]
            assert pred["class"] == names[want["class_id"]]
            for cid, p in want["probs"].items():
                assert pred["probs"][names[int(cid)]] == pytest.approx(p, abs=1e-4)
            assert pred["score"] == pytest.approx(stored.score, abs=1e-4)
        elif task == "detect":
            assert len(pred["boxes"]) == len(want["boxes"])
            a_xy = np.array([b["xyxy"] for b in pred["boxes"]]).reshape(-1, 4)
            b_xy = np.array([b["xyxy"] for b in want["boxes"]]).reshape(-1, 4)
            a_lbl = np.array([b["class_id"] for b in pred["boxes"]])
            b_lbl = np.array([b["class_id"] for b in want["boxes"]])
            order = pair_detections(a_xy, a_lbl, b_xy, b_lbl)
            for a, b in zip([pred["boxes"][i] for i in order], want["boxes"], strict=True):
                assert a["class_id"] == b["class_id"] and a["class"] == names[b["class_id"]]
                assert a["score"] == pytest.approx(b["score"], abs=1e-4)
                np.testing.assert_allclose(a["xyxy"], b["xyxy"], atol=1e-2)  # image pixels
        elif task == "landmarks":
            np.testing.assert_allclose(pred["points"], want["points"], atol=1e-2)
            assert pred["names"] == list(loaded.info["template"]["points"])
        elif task == "segment":
            # the stored mask holds database ids, the exported one class positions 1..C
            lut = np.array([0] + [c["id"] for c in loaded.classes], dtype=np.uint16)
            mapped = lut[pred["mask"]]
            assert mapped.shape == stored.mask.shape
            assert (mapped == stored.mask).mean() > 0.999
            assert pred["classes"] == [names[c] for c in want["classes"]]
        else:
            np.testing.assert_allclose(pred["latent"], want["latent"], atol=1e-4)
            assert pred["error"] == pytest.approx(want["error"], abs=1e-5)


def test_sidecar_describes_classes_preprocessing_outputs_and_run(trained, exported):
    project, runs = trained
    info = json.loads(exported["classify", "onnx"].sidecar_path.read_text())
    assert info["task"] == "classify" and info["model_format"] == "onnx"
    assert [(c["name"], c["color"], c["id"]) for c in info["classes"]] == [
        (c.name, c.color, c.id) for c in project.classes()
    ]
    pre = info["preprocessing"]
    spec = get_spec("resnet18")
    assert pre["input_size"] == 64 and pre["channel_order"] == "RGB"
    assert pre["mean"] == list(spec.mean) and pre["std"] == list(spec.std)
    assert "0..1" in pre["value_scale"]
    assert [o["name"] for o in info["outputs"]] == ["probs"]
    assert info["input"]["shape"] == ["N", 3, 64, 64]
    record = RunStore(project).get(runs["classify"])
    assert info["run"]["id"] == record.id and info["run"]["backbone"] == "resnet18"
    assert info["run"]["metric_name"] == "accuracy"
    assert info["run"]["best_metric"] == pytest.approx(record.best_metric)
    assert "accuracy" in info["run"]["summary"]
    assert info["check"]["max_abs_diff"] == exported["classify", "onnx"].max_abs_diff
    assert info["tlstudio_version"]

    lm = json.loads(exported["landmarks", "torchscript"].sidecar_path.read_text())
    lm_record = RunStore(project).get(runs["landmarks"])
    template = project.template(RunSpec.from_dict(lm_record.config).template_id)
    assert lm["template"]["name"] == "Shape 5" == template.name
    assert lm["template"]["points"] == list(template.points)
    assert lm["template"]["skeleton"] == [list(e) for e in template.skeleton]
    assert [o["name"] for o in lm["outputs"]] == ["heatmaps", "keypoints"]


def test_failed_check_keeps_the_existing_file_and_leaves_no_temporaries(
    trained, tmp_path, monkeypatch
):
    project, runs = trained
    target = tmp_path / "model.pt"
    target.write_bytes(b"previous model")
    monkeypatch.setattr(export_mod, "CHECK_TOLERANCE", -1.0)  # any difference is too much
    with pytest.raises(ExportError, match="differs from PyTorch"):
        export_model(project, runs["classify"], target, "torchscript")
    assert target.read_bytes() == b"previous model"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]


def test_bad_requests_name_the_problem(trained, tmp_path):
    project, runs = trained
    with pytest.raises(ExportError, match="unknown export format 'tflite'"):
        export_model(project, runs["classify"], tmp_path / "m.tflite", "tflite")
    with pytest.raises(ExportError, match="no such folder"):
        export_model(project, runs["classify"], tmp_path / "missing" / "m.onnx")
    lone = tmp_path / "lone.onnx"
    lone.write_bytes(b"x")
    with pytest.raises(ExportError, match="sidecar is missing"):
        ExportedModel.load(lone)


def test_cli_predict_with_model_prints_one_line_per_image_of_a_folder(
    trained, exported, tmp_path, capsys
):
    project, _ = trained
    folder = tmp_path / "incoming"
    (folder / "sub").mkdir(parents=True)
    ids = project.image_ids()[:3]
    for k, i in enumerate(ids):
        dest = folder / ("sub" if k == 2 else "") / f"img{k}.png"
        shutil.copy(project.image_path(i), dest)
    (folder / "notes.txt").write_text("not an image")
    model_path = exported["classify", "onnx"].path

    assert main(["predict", "--model", str(model_path), str(folder)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3
    rows = [json.loads(line) for line in lines]
    assert [Path(r["file"]).name for r in rows] == ["img0.png", "img1.png", "img2.png"]
    expected = ExportedModel.load(model_path).predict(
        [read_rgb(p) for p in sorted(folder.rglob("*.png"))]
    )
    names = [c.name for c in project.classes()]
    for row, want in zip(rows, expected, strict=True):
        assert row["class"] == want["class"] and row["class"] in names
        assert row["probs"] == pytest.approx(want["probs"], abs=1e-6)

    assert main(["predict", "--model", str(model_path), "--csv", str(folder)]) == 0
    table = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert table[0] == ["file", "class", "score", *[f"p_{n}" for n in names]]
    assert [r[1] for r in table[1:]] == [r["class"] for r in rows]


def test_cli_export_model_writes_file_and_sidecar_and_reports_the_check(trained, tmp_path, capsys):
    project, runs = trained
    out = tmp_path / "seg.pt"
    code = main(
        ["export-model", str(project.root), "--run", str(runs["segment"]), "--out", str(out)]
    )
    text = capsys.readouterr().out
    assert code == 0, text
    assert out.is_file() and sidecar_path(out).is_file()
    assert out.stat().st_mode & 0o044 == 0o044  # readable by others: it is meant to be shared
    assert json.loads(sidecar_path(out).read_text())["model_format"] == "torchscript"
    assert "max |exported - PyTorch|" in text and str(sidecar_path(out)) in text

    code = main(["export-model", str(project.root), "--run", "999", "--out", str(out)])
    assert code == 2
    assert "no run with id 999" in capsys.readouterr().err


def test_detection_check_excuses_only_borderline_scores():
    from tlstudio.ml.export import _align_detections

    boxes = np.array([[0, 0, 10, 10], [20, 20, 30, 30], [5, 5, 9, 9]], np.float32)
    scores = np.array([0.9, 0.5, 0.05 + 1e-6], np.float32)
    labels = np.array([0, 1, 1])
    want = [boxes[:2], scores[:2], labels[:2]]
    # the exported side keeps a box scoring at the 0.05 cut-off: a rounding difference
    got, paired = _align_detections([boxes[::-1], scores[::-1], labels[::-1]], want, 0.05, 100, 0)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(paired[1], want[1])
    # a confident box that PyTorch does not return is an unreliable export
    with pytest.raises(
        ExportError, match=r"returns 3 boxes where PyTorch returns 2 on check image 1"
    ):
        _align_detections([boxes, np.array([0.9, 0.5, 0.7]), labels], want, 0.05, 100, 0)


def test_onnx_prediction_in_a_fresh_interpreter_loads_no_torch(trained, exported, tmp_path):
    """The exported-model path (reading, preprocessing, onnxruntime, decoding: boxes,
    keypoints, masks) runs without torch or torchvision, for every task (the CLI's parser
    reads a few torch-free tables of ``tlstudio.ml``: tasks, presets, option names)."""
    project, _ = trained
    image = project.image_path(project.image_ids()[0])
    masks = tmp_path / "masks"
    code = (
        "import json, sys\n"
        "from tlstudio.cli import main\n"
        "codes = [main(['predict', '--model', m, *extra, sys.argv[1]])\n"
        "         for m, extra in json.loads(sys.argv[2])]\n"
        "heavy = sorted(k for k in sys.modules if k.split('.')[0] in ('torch', 'torchvision'))\n"
        "print(json.dumps({'codes': codes, 'heavy': heavy[:10]}), file=sys.stderr)\n"
    )
    runs = [
        [str(exported[task, "onnx"].path), ["--masks", str(masks)] if task == "segment" else []]
        for task in TASKS
    ]
    out = subprocess.run(
        [sys.executable, "-c", code, str(image), json.dumps(runs)],
        capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    report = json.loads(out.stderr.strip().splitlines()[-1])
    assert report == {"codes": [0] * len(TASKS), "heavy": []}
    keys = {
        "classify": {"file", "class", "class_id", "score", "probs"},
        "segment": {"file", "classes", "score", "pixels"},
        "landmarks": {"file", "points", "names", "score"},
        "autoencode": {"file", "latent", "error", "score"},
        "detect": {"file", "boxes", "score"},
    }
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert [set(r) for r in rows] == [keys[t] for t in TASKS]
    assert (masks / f"{image.stem}.png").is_file()


def test_cli_runs_an_exported_torchscript_file_only_when_trusted(trained, exported, capsys):
    project, _ = trained
    image = str(project.image_path(project.image_ids()[0]))
    pt, onnx_file = exported["classify", "torchscript"].path, exported["classify", "onnx"].path
    assert main(["predict", "--model", str(pt), image]) == 2
    assert "TorchScript is a program" in capsys.readouterr().err
    assert main(["predict", "--model", str(pt), "--trust-torchscript", image]) == 0
    from_pt = json.loads(capsys.readouterr().out)
    assert main(["predict", "--model", str(onnx_file), image]) == 0
    from_onnx = json.loads(capsys.readouterr().out)
    assert from_pt["class"] == from_onnx["class"]
    assert from_pt["probs"] == pytest.approx(from_onnx["probs"], abs=1e-4)
