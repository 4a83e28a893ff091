"""A detector ensemble exports as one ONNX file; the torch-free runtime merges the members'
boxes as the PyTorch ensemble does."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tlstudio.core.demo import create_demo_project
from tlstudio.ml import runner
from tlstudio.ml.ensemble import create_ensemble
from tlstudio.ml.export import export_model, pair_detections
from tlstudio.ml.runner import RunSpec
from tlstudio.ml.trainer import TrainConfig
from tlstudio.runtime import ExportedModel, SidecarError
from tlstudio.runtime.decode import fuse_members
from tlstudio.runtime.images import read_rgb
from tlstudio.runtime.sidecar import parse_sidecar

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("torch_one_thread")]
SIZE = 64


@pytest.fixture(scope="module")
def detectors(tmp_path_factory):
    """(project, [two detector runs of different seeds])."""
    torch.set_num_threads(1)
    project = create_demo_project(tmp_path_factory.mktemp("detens") / "demo", n_images=12,
                                  size=SIZE)  # fmt: skip
    ids = []
    for seed in (0, 1):
        spec = RunSpec(task="detect", backbone="resnet18", weights="none", input_size=SIZE,
                       train=TrainConfig(epochs=1, batch_size=8, seed=seed, device="cpu"))  # fmt: skip
        ids.append(runner.train(project, spec).run_id)
    yield project, ids
    project.close()


@pytest.mark.parametrize("combine", ["wbf", "nms"])
def test_detector_ensemble_exports_as_one_onnx_file_fused_like_pytorch(
    detectors, tmp_path, combine
):
    project, members = detectors
    run_id = create_ensemble(project, members, combine=combine)
    result = export_model(project, run_id, tmp_path / "ens.onnx")  # checked per member
    assert result.checked_images >= 1 and result.max_abs_diff is not None
    side = json.loads(result.sidecar_path.read_text())
    assert side["ensemble"] == {"members": 2, "combine": combine, "iou": 0.55}
    assert [o["name"] for o in side["outputs"]][:4] == ["boxes_0", "scores_0", "labels_0",
                                                        "boxes_1"]  # fmt: skip

    model, spec = runner.load_run_model(project, run_id)
    loaded = ExportedModel.load(result.path, threads=1)
    found = 0
    for image_id in project.image_ids():
        rgb = read_rgb(project.image_path(image_id))
        x = loaded.preprocess([rgb])
        got = fuse_members(loaded.sidecar, loaded.run(x))
        (want,) = model.predict_step(torch.from_numpy(x))
        want = {k: v.numpy() for k, v in want.items()}
        assert got["boxes"].shape == want["boxes"].shape
        order = pair_detections(got["boxes"], got["labels"], want["boxes"], want["labels"])
        np.testing.assert_allclose(got["boxes"][order], want["boxes"], atol=1e-2)
        np.testing.assert_allclose(got["scores"][order], want["scores"], atol=1e-4)
        np.testing.assert_array_equal(got["labels"][order], want["labels"])
        np.testing.assert_allclose(got["agreement"][order], want["agreement"])
        found += len(want["boxes"])
        pred = loaded.predict([rgb])[0]
        assert len(pred["boxes"]) == len(want["boxes"])
        assert all(0 < b["agreement"] <= 1 for b in pred["boxes"])
    assert found > 0  # the comparison saw boxes, not only empty lists


def test_a_sidecar_with_a_bad_ensemble_block_is_refused(tmp_path):
    info = {"format": "tlstudio-exported-model", "format_version": 1, "task": "detect",
            "preprocessing": {"input_size": 64, "mean": [0, 0, 0], "std": [1, 1, 1]},
            "classes": [{"name": "a"}], "ensemble": {"members": 2, "combine": "vote",
                                                     "iou": 0.5}}  # fmt: skip
    with pytest.raises(SidecarError, match="ensemble.combine"):
        parse_sidecar(info, tmp_path / "m.onnx.json")
    info["ensemble"] = {"members": 2, "combine": "nms", "iou": 0.5}
    side = parse_sidecar(info, tmp_path / "m.onnx.json")
    assert side.output_names == ["boxes_0", "scores_0", "labels_0", "boxes_1", "scores_1",
                                 "labels_1"]  # fmt: skip
    info["outputs"] = [{"name": "boxes"}, {"name": "scores"}, {"name": "labels"}]
    with pytest.raises(SidecarError, match="ensemble of 2 detectors has the outputs"):
        parse_sidecar(info, tmp_path / "m.onnx.json")
