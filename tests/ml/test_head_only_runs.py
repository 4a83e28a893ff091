"""A re-train on cached features builds no backbone and imports no torchvision (issue 12
§4); its model file holds the head and names the pretrained weights it sits on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tlstudio.core.demo import create_demo_project
from tlstudio.core.runs import RunStore
from tlstudio.ml import runner
from tlstudio.ml.features import FeatureCache, weights_id
from tlstudio.ml.runner import RunError, RunSpec
from tlstudio.ml.train_config import TrainConfig
from tlstudio.ml.weights import weights_status

ROOT = Path(__file__).resolve().parents[2]

RETRAIN = """
import json, sys
import tlstudio.ml.backbones as backbones

def refuse(*args, **kwargs):
    raise AssertionError("the backbone was built")

backbones.build_backbone = refuse
from tlstudio.cli import main
rc = main(["train", sys.argv[1], "--task", "classify", "--epochs", "2", "--input-size", "64",
           "--weights", sys.argv[2], "--threads", "1"])
print(json.dumps({"rc": rc, "torchvision": sorted(m for m in sys.modules
                                                  if m.split(".")[0] == "torchvision")}))
"""


def spec(weights: str = "bundled") -> RunSpec:
    return RunSpec("classify", "efficientnet_lite0", weights, TrainConfig(epochs=2, lr=3e-3),
                   input_size=64)  # fmt: skip


@pytest.fixture
def demo(tmp_path):
    with create_demo_project(tmp_path / "demo", n_images=12, size=64) as project:
        yield project


def test_retrain_on_cached_features_builds_no_backbone_and_imports_no_torchvision(demo):
    first = runner.train(demo, spec())  # fills the feature cache
    assert first.feature_cache
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    out = subprocess.run(
        [sys.executable, "-c", RETRAIN, str(demo.root), "bundled"],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"rc": 0, "torchvision": []}, out.stderr
    assert "fast path" in out.stderr
    runs = RunStore(demo).list()
    assert runs[-1].status == "finished" and runs[-1].id != first.run_id


def test_head_only_model_predicts_what_the_head_says_on_the_cached_features(demo):
    result = runner.train(demo, spec())
    saved = torch.load(demo.root / RunStore(demo).get(result.run_id).checkpoint,
                       weights_only=True)  # fmt: skip
    assert all(k.startswith("head.") for k in saved["model"])  # no backbone inside
    assert saved["backbone_weights"] == weights_id("efficientnet_lite0", "bundled")

    model, _ = runner.load_run_model(demo, result.run_id)  # backbone rebuilt from its weights
    cache = FeatureCache(demo.cache_dir)
    (group,) = cache.groups()
    ids = [i for i in demo.image_ids() if cache.has(group, demo.image(i).sha256)]  # train, val
    runner.predict(demo, result.run_id, ids, device="cpu")
    features = torch.from_numpy(np.stack([cache.get(group, demo.image(i).sha256) for i in ids]))
    with torch.no_grad():
        expected = model.probabilities(model.head.eval()(features)).numpy()
    store = RunStore(demo)
    classes = [str(c.id) for c in demo.classes()]
    got = np.array([[store.prediction(result.run_id, i).payload["probs"][c] for c in classes]
                    for i in ids])  # fmt: skip
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_a_head_over_weights_that_changed_is_refused_with_the_reason(demo, tmp_path):
    weights = tmp_path / "lite0.pth"
    weights.write_bytes(weights_status("efficientnet_lite0").bundled_path.read_bytes())
    result = runner.train(demo, spec(str(weights)))
    assert result.feature_cache
    with weights.open("ab") as f:  # another file now under the same name
        f.write(b"\0")
    with pytest.raises(RunError, match="not on this machine any more"):
        runner.load_run_model(demo, result.run_id)
