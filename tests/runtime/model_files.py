"""Tiny model files built in the test (no training): ONNX graphs from ``onnx.helper`` with
the outputs of a tlstudio export, and sidecars written the way ``export-model`` writes them.

Only ``onnx`` and ``numpy`` are imported here (not tlstudio.runtime), so the CLI tests of
this folder also run against a checkout without the runtime package.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

OUTPUT_NAMES = {
    "classify": ["probs"],
    "segment": ["probs"],
    "detect": ["boxes", "scores", "labels"],
}
CLASS_NAMES = ["circle", "square", "triangle"]


def sidecar(task: str, *, size: int = 32, classes: list[str] | None = None, **top: Any) -> dict:
    """A valid sidecar for a ``task`` model (fields as export-model writes them); ``top``
    replaces top-level fields."""
    names = CLASS_NAMES if classes is None else classes
    info = {
        "format": "tlstudio-exported-model",
        "format_version": 1,
        "model_format": "onnx",
        "task": task,
        "multi_label": False,
        "classes": [
            {"index": i, "id": 10 + i, "name": n, "color": "#ff0000"} for i, n in enumerate(names)
        ],
        "template": None,
        "preprocessing": {
            "input_size": size,
            "mean": [0.485, 0.456, 0.406],
            "std": [0.229, 0.224, 0.225],
        },
        "outputs": [{"name": n} for n in OUTPUT_NAMES[task]],
    }
    info.update(top)
    return info


def write_sidecar(model: Path, info: dict) -> Path:
    path = model.with_name(model.name + ".json")
    path.write_text(json.dumps(info))
    return path


def _tensor(name: str, array: np.ndarray, external: str | None = None):
    from onnx import TensorProto, numpy_helper

    t = numpy_helper.from_array(array, name)
    if external is not None:  # data in a file next to (or, for the attack, away from) it
        t.ClearField("raw_data")
        t.data_location = TensorProto.EXTERNAL
        entry = t.external_data.add()
        entry.key, entry.value = "location", external
    return t


def onnx_model(task: str, n_classes: int = 3, *, weight_location: str | None = None) -> bytes:
    """A serialised ONNX model with a tlstudio export's input and outputs for ``task``:
    classify = global average pool → 3×C matrix → softmax; segment = 1×1 convolution to
    C + 1 channels → softmax; detect = one constant box of class 0. ``weight_location``
    stores the weight matrix as external data at that location."""
    from onnx import TensorProto, helper

    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, "S", "S"])
    rng = np.random.default_rng(0)
    if task == "classify":
        w = rng.normal(size=(3, n_classes)).astype(np.float32)
        nodes = [
            helper.make_node("GlobalAveragePool", ["image"], ["pooled"]),
            helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
            helper.make_node("MatMul", ["flat", "W"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
        ]
        outs = [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", n_classes])]
        inits = [_tensor("W", w, weight_location)]
    elif task == "segment":
        w = rng.normal(size=(n_classes + 1, 3, 1, 1)).astype(np.float32)
        nodes = [
            helper.make_node("Conv", ["image", "W"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
        ]
        shape = ["N", n_classes + 1, "S", "S"]
        outs = [helper.make_tensor_value_info("probs", TensorProto.FLOAT, shape)]
        inits = [_tensor("W", w, weight_location)]
    else:  # detect: a fixed answer, enough to exercise decoding and label checks
        consts = {
            "boxes": np.array([[4.0, 8.0, 20.0, 24.0]], np.float32),
            "scores": np.array([0.9], np.float32),
            "labels": np.array([n_classes - 1], np.int64),
        }
        nodes = [
            helper.make_node("Constant", [], [k], value=_tensor(k, v)) for k, v in consts.items()
        ]
        outs = [
            helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [1, 4]),
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1]),
            helper.make_tensor_value_info("labels", TensorProto.INT64, [1]),
        ]
        inits = []
    graph = helper.make_graph(nodes, "g", [image], outs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()
