"""``tlstudio predict --model FILE`` treats the model file and its sidecar as untrusted:
TorchScript (a program) runs only with --trust-torchscript, the loader follows the file's
content (not its name, not the sidecar), sidecar values are checked, and ONNX external data
must stay in the model's folder. Every refusal is one ``error:`` line naming the file.

Only ``tlstudio.cli`` is imported, so these tests also run against a checkout without the
runtime package (that is how they were seen to fail before it).
"""

from __future__ import annotations

import json
import os
import shutil

import pytest
import torch
from model_files import sidecar, write_sidecar

from tlstudio.cli import main

PRECIOUS = b"precious data that must survive"


class _Overwriter(torch.nn.Module):
    """A 'classifier' whose forward overwrites the first bytes of ``victim`` and creates
    ``created`` (both inside the test's tmp_path), then answers 50/50 like a real model."""

    def __init__(self, victim: str, created: str):
        super().__init__()
        self.victim = victim
        self.created = created

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        a = torch.from_file(self.victim, shared=True, size=4, dtype=torch.uint8).fill_(88)
        b = torch.from_file(self.created, shared=True, size=4, dtype=torch.uint8).fill_(88)
        out = torch.full((image.shape[0], 2), 0.5)
        return out + 0.0 * (a.sum() + b.sum()).float()  # used, so the JIT keeps the writes


def _one_error_line(err: str, *parts: str) -> None:
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for part in parts:
        assert part in lines[0], (part, lines[0])


def test_torchscript_runs_only_with_trust_torchscript_whatever_its_name_or_sidecar(
    tmp_path, image_file, capsys
):
    victim, created = tmp_path / "victim.bin", tmp_path / "created.bin"
    victim.write_bytes(PRECIOUS)
    models = tmp_path / "models"
    models.mkdir()
    evil = models / "model.pt"
    with pytest.warns(FutureWarning):  # torch.jit.script is deprecated, still works
        torch.jit.script(_Overwriter(str(victim), str(created))).save(str(evil))
    info = sidecar("classify", classes=["cat", "dog"], model_format="torchscript")
    write_sidecar(evil, info)
    disguised = models / "disguised.onnx"  # the name says ONNX, so does its sidecar
    shutil.copy(evil, disguised)
    write_sidecar(disguised, {**info, "model_format": "onnx"})

    assert main(["predict", "--model", str(evil), str(image_file)]) == 2
    _one_error_line(capsys.readouterr().err, str(evil), "TorchScript is a program", "--trust")
    assert victim.read_bytes() == PRECIOUS and not created.exists()

    assert main(["predict", "--model", str(disguised), str(image_file)]) == 2
    _one_error_line(capsys.readouterr().err, str(disguised), "named .onnx but the content is")
    assert victim.read_bytes() == PRECIOUS and not created.exists()

    # the payload is real: with the opt-in it runs, after a one-line warning
    assert main(["predict", "--model", str(evil), "--trust-torchscript", str(image_file)]) == 0
    out = capsys.readouterr()
    assert victim.read_bytes() == b"XXXX" + PRECIOUS[4:] and created.read_bytes() == b"XXXX"
    (warning,) = out.err.strip().splitlines()
    assert warning.startswith("warning: ") and "TorchScript" in warning
    assert json.loads(out.out)["probs"] == {"cat": 0.5, "dog": 0.5}

    assert main(["predict", str(tmp_path), "1", "--trust-torchscript"]) == 2
    assert "--model only" in capsys.readouterr().err


def test_sidecar_does_not_choose_the_loader_and_names_must_match_content(
    make_model, image_file, capsys
):
    onnx_file = make_model(
        "classify", "model.onnx", info=sidecar("classify", model_format="torchscript")
    )
    assert main(["predict", "--model", str(onnx_file), str(image_file)]) == 2
    _one_error_line(
        capsys.readouterr().err,
        f"{onnx_file}.json (field 'model_format')",
        "says 'torchscript' but model.onnx is an ONNX model",
    )
    renamed = make_model("classify", "model.pt")
    assert main(["predict", "--model", str(renamed), str(image_file)]) == 2
    _one_error_line(capsys.readouterr().err, str(renamed), "named .pt but the content is an ONNX")


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("preprocessing.input_size", 40000, "40000 is outside 16..2048"),
        ("preprocessing.input_size", "abc", 'must be a whole number, not "abc"'),
        ("preprocessing.input_size", True, "must be a whole number, not true"),
        ("preprocessing.mean", [0.5, 0.5], "must be 3 numbers"),
        ("preprocessing.std", [0.2, 0.0, 0.2], "must be greater than 0"),
        ("format_version", "1", 'must be a whole number, not "1"'),
        ("task", "classify2", "unknown task 'classify2'"),
        ("classes", [], "is empty"),
        ("classes", "cats", 'must be a list of objects, not "cats"'),
        ("classes[1].name", 7, "must be a non-empty name, not 7"),
    ],
)
def test_bad_sidecar_values_are_one_error_naming_file_and_field(
    make_model, image_file, capsys, field, value, reason
):
    info = sidecar("classify")
    if field.startswith("preprocessing."):
        info["preprocessing"][field.split(".")[1]] = value
    elif field == "classes[1].name":
        info["classes"][1]["name"] = value
    else:
        info[field] = value
    model = make_model("classify", info=info)
    assert main(["predict", "--model", str(model), str(image_file)]) == 2
    _one_error_line(capsys.readouterr().err, f"{model}.json (field '{field}')", reason)


@pytest.mark.parametrize("task", ["classify", "segment"])
def test_class_count_must_match_the_model_outputs(make_model, image_file, capsys, task):
    model = make_model(task, n_classes=3, info=sidecar(task, classes=["a", "b"]))
    assert main(["predict", "--model", str(model), str(image_file)]) == 2
    _one_error_line(capsys.readouterr().err, f"{model}.json (field 'classes')", "returns 'probs'")


def test_detected_class_index_beyond_the_sidecar_classes_is_an_error(
    make_model, image_file, capsys
):
    model = make_model("detect", n_classes=3, info=sidecar("detect", classes=["a", "b"]))
    assert main(["predict", "--model", str(model), str(image_file)]) == 2
    _one_error_line(capsys.readouterr().err, f"{model}.json (field 'classes')", "class index 2")
    ok = make_model("detect", "ok.onnx", n_classes=2, info=sidecar("detect", classes=["a", "b"]))
    assert main(["predict", "--model", str(ok), str(image_file)]) == 0
    (box,) = json.loads(capsys.readouterr().out)["boxes"]
    assert box["class"] == "b" and box["xyxy"] == [5.0, 7.5, 25.0, 22.5]  # 40×30 px image


@pytest.mark.parametrize("where", ["parent", "absolute", "link"])
def test_onnx_external_data_outside_the_model_folder_is_refused(
    make_model, image_file, tmp_path, capsys, where
):
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"\0" * 36)
    (tmp_path / "models").mkdir()
    location = {"parent": "../secret.bin", "absolute": str(secret), "link": "link.bin"}[where]
    if where == "link":
        os.symlink(secret, tmp_path / "models" / "link.bin")
    model = make_model("classify", weight_location=location)
    assert main(["predict", "--model", str(model), str(image_file)]) == 2
    _one_error_line(
        capsys.readouterr().err, str(model), f"tensor 'W' reads its data from {location!r}",
        "outside the model's folder",
    )  # fmt: skip


def test_onnx_external_data_inside_the_model_folder_loads(make_model, image_file, capsys):
    model = make_model("classify", weight_location="weights/W.bin")
    (model.parent / "weights").mkdir()
    (model.parent / "weights" / "W.bin").write_bytes(b"\0" * 36)  # 3×3 float32 zeros
    assert main(["predict", "--model", str(model), str(image_file)]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["probs"] == pytest.approx({"circle": 1 / 3, "square": 1 / 3, "triangle": 1 / 3})
