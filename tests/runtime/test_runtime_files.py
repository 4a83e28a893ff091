"""The runtime's reading of model files: which format a file is (by content), where ONNX
tensors keep external data (wherever onnx.proto lets them hide), and a prediction through
``ExportedModel`` equal to the same arithmetic done by hand."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
from model_files import onnx_model, sidecar, write_sidecar
from onnx import TensorProto, helper, numpy_helper

from tlstudio.runtime import ExportedModel, SidecarError
from tlstudio.runtime.errors import ExportError
from tlstudio.runtime.images import read_rgb, resize_square
from tlstudio.runtime.loader import model_file_format
from tlstudio.runtime.onnx_file import ExternalTensor, scan_onnx


def _external(name: str, location: str) -> TensorProto:
    t = numpy_helper.from_array(np.zeros(2, np.float32), name)
    t.ClearField("raw_data")
    t.data_location = TensorProto.EXTERNAL
    entry = t.external_data.add()
    entry.key, entry.value = "location", location
    return t


def test_scan_finds_external_tensors_in_constants_subgraphs_sparse_and_functions(tmp_path):
    out = helper.make_tensor_value_info("Y", TensorProto.FLOAT, [2])
    then = helper.make_graph(
        [helper.make_node("Constant", [], ["Y"], value=_external("in_if", "../if.bin"))],
        "then", [], [out],
    )  # fmt: skip
    sparse = helper.make_sparse_tensor(
        _external("sparse_values", "/abs/values.bin"),
        numpy_helper.from_array(np.array([0], np.int64), "idx"),
        [2],
    )
    func = helper.make_function(
        "local", "F", [], ["Z"],
        [helper.make_node("Constant", [], ["Z"], value=_external("in_function", "f.bin"))],
        [helper.make_opsetid("", 17)],
    )  # fmt: skip
    graph = helper.make_graph(
        [
            helper.make_node("Constant", [], ["c"], value=_external("in_constant", "c.bin")),
            helper.make_node("If", ["cond"], ["Y"], then_branch=then, else_branch=then),
        ],
        "g",
        [helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
        [out],
        [_external("initializer", "w.bin")],
        sparse_initializer=[sparse],
    )
    model = helper.make_model(graph, functions=[func])
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString())
    scan = scan_onnx(path)
    assert scan.is_onnx
    assert sorted(scan.external, key=lambda t: t.name) == [
        ExternalTensor("in_constant", "c.bin"),
        ExternalTensor("in_function", "f.bin"),
        ExternalTensor("in_if", "../if.bin"),
        ExternalTensor("in_if", "../if.bin"),  # then and else branch
        ExternalTensor("initializer", "w.bin"),
        ExternalTensor("sparse_values", "/abs/values.bin"),
    ]


def test_format_comes_from_content(tmp_path):
    onnx_file = tmp_path / "a.bin"
    onnx_file.write_bytes(onnx_model("classify"))
    assert model_file_format(onnx_file) == "onnx"
    assert not scan_onnx(onnx_file).external

    checkpoint = tmp_path / "weights.pt"  # a torch.save zip: data, but not an exported model
    with zipfile.ZipFile(checkpoint, "w") as z:
        z.writestr("weights/data.pkl", b"\x80\x02}q\x00.")
        z.writestr("weights/version", b"3\n")
    with pytest.raises(ExportError, match="a zip archive but not a TorchScript model"):
        model_file_format(checkpoint)

    script = tmp_path / "script.zip"
    with zipfile.ZipFile(script, "w") as z:
        z.writestr("m/code/__torch__.py", b"")
        z.writestr("m/constants.pkl", b"")
    assert model_file_format(script) == "torchscript"

    for junk in (b"", b"\x00" * 64, b'{"format": "onnx"}', onnx_model("classify")[:-7]):
        path = tmp_path / "junk.onnx"
        path.write_bytes(junk)
        with pytest.raises(ExportError, match="neither an ONNX model nor a TorchScript archive"):
            model_file_format(path)


def test_predict_equals_the_arithmetic_done_by_hand(make_model, image_file):
    model_path = make_model("classify", info=sidecar("classify", size=24))
    model = ExportedModel.load(model_path, threads=1)
    assert (model.format, model.task, model.class_names) == ("onnx", "classify", [
        "circle", "square", "triangle"])  # fmt: skip
    (pred,) = model.predict_files([image_file])

    rgb = resize_square(read_rgb(image_file), 24).astype(np.float32) / np.float32(255)
    x = (rgb - np.float32([0.485, 0.456, 0.406])) / np.float32([0.229, 0.224, 0.225])
    w = numpy_helper.to_array(
        next(t for t in _graph(model_path).initializer if t.name == "W")
    )  # fmt: skip
    logits = x.mean(axis=(0, 1)) @ w
    probs = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    assert pred["probs"] == pytest.approx(
        dict(zip(model.class_names, probs, strict=True)), abs=1e-5
    )
    assert pred["class"] == model.class_names[int(probs.argmax())]
    assert pred["class_id"] == 10 + int(probs.argmax())


def _graph(path):
    import onnx

    return onnx.load(str(path)).graph


def test_fixed_input_size_must_match_the_sidecar(tmp_path):
    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, 32, 32])
    probs = helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 3])
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["image"], ["m"], axes=[2, 3], keepdims=0),
         helper.make_node("Softmax", ["m"], ["probs"], axis=1)],
        "g", [image], [probs],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "fixed.onnx"
    path.write_bytes(model.SerializeToString())
    write_sidecar(path, sidecar("classify", size=64))
    with pytest.raises(SidecarError, match=r"input_size'\): 64 px, but fixed.onnx takes 32×32"):
        ExportedModel.load(path)
