"""Few-shot heads are first-class runs: a linear head is the classifier's linear layer
(same probabilities as scikit-learn), kNN keeps its neighbours in the model file, and
evaluate, predict, export-model, Grad-CAM and the runtime take the run like any other."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tlstudio.cli import main
from tlstudio.core.demo import create_demo_project
from tlstudio.core.runs import RunStore
from tlstudio.ml import experiments as X
from tlstudio.ml import runner
from tlstudio.ml.features import fit_sklearn_head
from tlstudio.ml.linear_heads import NeighbourVote, linear_weights


def _features(n=60, d=12, k=3, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, (k, d))
    y = np.arange(n) % k
    return (centres[y] + rng.normal(0, 1.5, (n, d))).astype(np.float32), y


@pytest.mark.parametrize("kind", ["logreg", "linear_svm"])
@pytest.mark.parametrize("k", [2, 4])
def test_linear_layer_gives_scikit_learns_probabilities(kind, k):
    X_, y = _features(k=k)
    W, b = linear_weights(kind, X_[:40], y[:40], k)
    head = fit_sklearn_head(kind, X_[:40], y[:40], k, calibrate=False)
    logits = torch.from_numpy(X_[40:]) @ torch.from_numpy(W).T + torch.from_numpy(b)
    ours = torch.softmax(logits.double(), dim=1).numpy()
    assert np.allclose(ours, head.predict_proba(X_[40:]), atol=1e-4)


def test_prototype_layer_ranks_classes_as_the_prototypes_do():
    X_, y = _features(k=4)
    W, b = linear_weights("prototype", X_[:40], y[:40], 4)
    head = fit_sklearn_head("prototype", X_[:40], y[:40], 4)
    logits = X_[40:] @ W.T + b
    assert (logits.argmax(1) == head.predict(X_[40:])).all()
    # a class no training image has never wins
    W, b = linear_weights("prototype", X_[:40][y[:40] != 3], y[:40][y[:40] != 3], 4)
    assert ((X_ @ W.T + b).argmax(1) != 3).all()


def test_neighbour_head_votes_as_scikit_learns_knn():
    X_, y = _features(k=3, seed=1)
    head = fit_sklearn_head("knn", X_[:40], y[:40], 3)
    vote = NeighbourVote(X_.shape[1], 3, 40, k=5).fit(X_[:40], y[:40])
    ours = torch.softmax(vote(torch.from_numpy(X_[40:])).double(), dim=1).numpy()
    assert np.allclose(ours, head.predict_proba(X_[40:]), atol=1e-4)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    project = create_demo_project(tmp_path_factory.mktemp("fs") / "demo", n_images=24, size=48)
    yield project
    project.close()


@pytest.mark.parametrize("kind", ["logreg", "knn"])
def test_fewshot_run_evaluates_predicts_and_explains_like_any_run(demo, kind):
    run_id, metrics = X.fit_sklearn_run(demo, "efficientnet_lite0", "bundled", kind, 64,
                                        device="cpu")  # fmt: skip
    rec = RunStore(demo).get(run_id)
    assert rec.checkpoint == f"runs/{run_id}/model.pt" and rec.status == "finished"
    out = runner.evaluate(demo, run_id, "val", device="cpu")
    assert out["summary"]["accuracy"] == pytest.approx(metrics["accuracy"])
    # stored predictions of the cached-feature path equal the full model's
    ids = demo.image_ids()[:5]
    X.predict_sklearn_run(demo, run_id, ids, device="cpu")
    fast = [RunStore(demo).prediction(run_id, i).payload for i in ids]
    runner.predict(demo, run_id, ids, device="cpu")
    full = [RunStore(demo).prediction(run_id, i).payload for i in ids]
    for a, b in zip(fast, full, strict=True):
        assert a["class_id"] == b["class_id"]
        assert np.allclose(list(a["probs"].values()), list(b["probs"].values()), atol=1e-4)
    from tlstudio.ml.data import read_rgb
    from tlstudio.ml.explain import load_explainer

    rgb = read_rgb(demo.image_path(ids[0]))
    heat = load_explainer(demo, run_id).heatmap(rgb, "gradcam")
    assert heat.values.shape == rgb.shape[:2] and heat.values.max() > 0


@pytest.mark.slow
def test_export_model_and_evaluate_take_an_experiment_sklearn_run(demo, tmp_path, capsys):
    """Before: "run N has no saved model (status finished)"."""
    args = ["experiment", str(demo.root), "--kind", "sklearn", "--head", "prototype",
            "--input-size", "64", "--weights", "bundled", "--device", "cpu"]  # fmt: skip
    assert main(args) == 0
    run_id = RunStore(demo).list()[-1].id
    assert "saved as an ordinary run" in capsys.readouterr().out
    assert main(["evaluate", str(demo.root), str(run_id)]) == 0
    assert "accuracy" in capsys.readouterr().out
    out = tmp_path / "fewshot.onnx"
    assert main(["export-model", str(demo.root), "--run", str(run_id), "--out", str(out)]) == 0
    assert out.is_file()
    capsys.readouterr()
    image = demo.image_path(demo.image_ids()[0])
    assert main(["predict", "--model", str(out), str(image)]) == 0
    line = json.loads(capsys.readouterr().out.splitlines()[0])
    assert line["class"] in [c.name for c in demo.classes()]


def test_run_recorded_before_heads_were_models_gets_its_model(demo):
    run_id, metrics = X.fit_sklearn_run(demo, "efficientnet_lite0", "bundled", "linear_svm", 64,
                                        device="cpu")  # fmt: skip
    runs = RunStore(demo)
    (demo.root / runs.get(run_id).checkpoint).unlink()
    runs.update(run_id, checkpoint=None)  # as fit_sklearn_run left it until now
    model, spec = runner.load_run_model(demo, run_id)
    assert runs.get(run_id).checkpoint is not None and spec.model_options["head"] == "linear"
    out = runner.evaluate(demo, run_id, "val", device="cpu")
    assert out["summary"]["accuracy"] == pytest.approx(metrics["accuracy"])
