"""Grad-CAM family of an ensemble: the mean of its members' normalised maps, one target."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from tlstudio.core.demo import create_demo_project
from tlstudio.ml import experiments as X
from tlstudio.ml.backbones import build_backbone
from tlstudio.ml.data import read_rgb
from tlstudio.ml.ensemble import EnsembleModel, create_ensemble
from tlstudio.ml.explain import Explainer, ExplainError, load_explainer, make_explainer
from tlstudio.ml.explain_ensemble import EACH_DEEPEST, EnsembleExplainer
from tlstudio.ml.runner import RunSpec
from tlstudio.ml.tasks.factory import build_task_model
from tlstudio.ml.trainer import TrainConfig

pytestmark = pytest.mark.usefixtures("torch_one_thread")
SIZE = 64


def _classifier(backbone: str, seed: int):
    torch.manual_seed(seed)
    return build_task_model("classify", build_backbone(backbone, "none"), num_classes=3).eval()


def _spec(backbone: str) -> RunSpec:
    return RunSpec(task="classify", backbone=backbone, weights="none",
                   train=TrainConfig(device="cpu"), input_size=SIZE)  # fmt: skip


def _rgb(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (48, 56, 3), dtype=np.uint8)


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "eigencam"])
def test_ensemble_heatmap_is_the_mean_of_its_members_maps_for_the_ensembles_class(method):
    members = [_classifier("resnet18", s) for s in (0, 1, 2)]
    ensemble = EnsembleModel(members, member_ids=[4, 5, 6]).eval()
    spec = _spec("resnet18")
    explainer = make_explainer(ensemble, spec)
    assert isinstance(explainer, EnsembleExplainer)
    assert explainer.layers == Explainer(members[0], spec).layers  # one backbone: its stages
    rgb = _rgb()
    hm = explainer.heatmap(rgb, method)
    # the default target is the class of the mean probabilities, not a member's own
    x = explainer.explainers[0]._input(rgb)
    with torch.no_grad():
        mean_p = torch.stack([torch.softmax(m(x), 1) for m in members]).mean(0)[0]
    assert hm.target == int(mean_p.argmax())
    assert hm.probability == pytest.approx(float(mean_p[hm.target]), rel=1e-5)
    for layer in (None, "layer2"):
        hm = explainer.heatmap(rgb, method, target=1, layer=layer)
        own = [Explainer(m, spec).heatmap(rgb, method, target=1, layer=layer) for m in members]
        assert {o.layer for o in own} == {hm.layer}
        np.testing.assert_allclose(hm.values, np.mean([o.values for o in own], 0), atol=1e-6)
        assert hm.values.shape == rgb.shape[:2] and hm.values.max() <= 1.0
        # the members disagree, so the mean is not just one member's map
        assert not np.allclose(hm.values, own[0].values, atol=1e-3)
    with pytest.raises(ExplainError, match=r"pick one of its members, runs #4, #5, #6"):
        explainer.activations(rgb, None)
    with pytest.raises(ExplainError, match="pick one of its members"):
        explainer.first_layer_filters()


def test_members_with_different_backbones_are_each_explained_at_their_deepest_stage():
    members = [_classifier("resnet18", 0), _classifier("efficientnet_lite0", 0)]
    ensemble = EnsembleModel(members, member_ids=[1, 2]).eval()
    spec = _spec("resnet18")  # both normalise with ImageNet's mean and std
    explainer = make_explainer(ensemble, spec)
    assert explainer.layers == [EACH_DEEPEST]
    rgb = _rgb(1)
    hm = explainer.heatmap(rgb, "gradcam", target=2)
    own = [Explainer(m, spec).heatmap(rgb, "gradcam", target=2) for m in members]
    assert hm.layer == EACH_DEEPEST and own[0].layer != own[1].layer
    np.testing.assert_allclose(hm.values, (own[0].values + own[1].values) / 2, atol=1e-6)
    with pytest.raises(ExplainError, match="different backbones"):
        explainer.heatmap(rgb, "gradcam", layer="layer2")


def test_an_ensemble_run_loads_as_an_explainer(tmp_path):
    project = create_demo_project(tmp_path / "demo", n_images=12, size=SIZE)
    try:
        ids = [X.fit_sklearn_run(project, "efficientnet_lite0", "bundled", kind, SIZE,
                                 device="cpu")[0] for kind in ("logreg", "prototype")]  # fmt: skip
        run_id = create_ensemble(project, ids)
        explainer = load_explainer(project, run_id)
        rgb = read_rgb(project.image_path(project.image_ids()[0]))
        hm = explainer.heatmap(rgb, "gradcam", target=0)
        own = [load_explainer(project, i).heatmap(rgb, "gradcam", target=0) for i in ids]
        np.testing.assert_allclose(hm.values, (own[0].values + own[1].values) / 2, atol=1e-6)
        assert explainer.member_ids == ids and explainer.num_targets == len(project.classes())
    finally:
        project.close()


def test_segment_ensemble_explains_the_ensembles_class_over_the_ensembles_region():
    torch.manual_seed(0)
    members = [
        build_task_model("segment", build_backbone("resnet18", "none"), num_classes=2).eval()
        for _ in range(2)
    ]
    ensemble = EnsembleModel(members, member_ids=[1, 2]).eval()
    spec = RunSpec(task="segment", backbone="resnet18", weights="none",
                   train=TrainConfig(device="cpu"), input_size=SIZE)  # fmt: skip
    explainer = make_explainer(ensemble, spec)
    rgb = _rgb(2)
    hm = explainer.heatmap(rgb, "gradcam")
    x = explainer.explainers[0]._input(rgb)
    with torch.no_grad():
        pred = ensemble(x)[0].argmax(0)
    counts = torch.bincount(pred.flatten(), minlength=3)[1:]
    assert hm.target == int(counts.argmax())  # the ensemble's mask decides, not a member's
    region = cv2.resize((pred == hm.target + 1).numpy().astype(np.uint8), (56, 48),
                        interpolation=cv2.INTER_NEAREST) > 0  # fmt: skip
    own = [Explainer(m, spec).heatmap(rgb, "gradcam", hm.target, region=region) for m in members]
    np.testing.assert_allclose(hm.values, (own[0].values + own[1].values) / 2, atol=1e-6)
