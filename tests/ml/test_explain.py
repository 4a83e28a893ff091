"""Heatmaps point at what decides the class; hooks and model state never leak.

The proof: on the demo project exactly one shape decides an image's class (its tag is the
class of the largest shape), and its mask says where that shape is. A classifier trained
on it (EfficientNet-Lite0 with bundled ImageNet weights, frozen, head trained on cached
features: about 1 s) must give Grad-CAM and Grad-CAM++ maps that are brighter on the
shape's pixels than on the background.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from tlstudio.core.demo import create_demo_project
from tlstudio.ml import runner
from tlstudio.ml.backbones import build_backbone
from tlstudio.ml.data import read_rgb
from tlstudio.ml.explain import (
    METHODS,
    Explainer,
    ExplainError,
    Heatmap,
    load_explainer,
)
from tlstudio.ml.runner import RunSpec
from tlstudio.ml.tasks.factory import build_task_model
from tlstudio.ml.trainer import TrainConfig

SIZE = 160  # demo images and network input, pixels


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(project, explainer, [(rgb, bool mask of the deciding shape, class index)])."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    project = create_demo_project(
        tmp_path_factory.mktemp("explain") / "demo", n_images=24, size=SIZE, seed=0
    )
    spec = RunSpec(
        task="classify",
        backbone="efficientnet_lite0",
        weights="bundled",
        train=TrainConfig(epochs=15, lr=3e-3, batch_size=8, freeze="all", seed=0, device="cpu"),
        input_size=SIZE,
    )
    result = runner.train(project, spec)
    assert result.metrics["accuracy"] == 1.0  # the model did learn the shapes
    explainer = load_explainer(project, result.run_id)
    index = {c.id: i for i, c in enumerate(project.classes())}
    samples = []
    for image_id in project.image_ids():
        ann = project.annotations(image_id)
        (tag,) = ann.tags
        samples.append((read_rgb(project.image_path(image_id)), ann.mask == tag, index[tag]))
    yield project, explainer, samples
    project.close()


def _inside_outside(hm: Heatmap, mask: np.ndarray) -> tuple[float, float]:
    return float(hm.values[mask].mean()), float(hm.values[~mask].mean())


@pytest.mark.parametrize("method", ["gradcam", "gradcam++"])
def test_gradient_heatmaps_are_brighter_on_the_shape_that_decides_the_class(trained, method):
    _, explainer, samples = trained
    wins, ratios = 0, []
    for rgb, mask, cls in samples:
        hm = explainer.heatmap(rgb, method, target=cls)
        assert hm.values.shape == rgb.shape[:2] and hm.values.dtype == np.float32
        inside, outside = _inside_outside(hm, mask)
        wins += inside > outside
        ratios.append(inside / max(outside, 1e-6))
    # measured on this seed: 24/24 images, median ratio 3.1 (Grad-CAM) / 2.2 (Grad-CAM++)
    assert wins >= 0.8 * len(samples)
    assert np.median(ratios) > 1.5


def test_default_target_is_the_predicted_class_and_score_is_its_logit(trained):
    _, explainer, samples = trained
    rgb, _, cls = samples[0]
    hm = explainer.heatmap(rgb)  # Grad-CAM, predicted class, deepest stage
    assert (hm.method, hm.layer, hm.target) == ("gradcam", "stage4", cls)
    with torch.no_grad():
        logits = explainer.model(explainer._input(rgb))[0]
    assert hm.score == pytest.approx(float(logits[cls]), rel=1e-5)
    assert hm.probability == pytest.approx(float(torch.softmax(logits, 0)[cls]), rel=1e-5)
    other = explainer.heatmap(rgb, target=(cls + 1) % 3)
    assert other.target == (cls + 1) % 3
    assert np.abs(other.values - hm.values).mean() > 0.05  # another class, another map


def test_eigencam_and_scorecam_run_normalised_in_image_pixels(trained):
    _, explainer, samples = trained
    rgb, mask, cls = samples[0]
    eigen = explainer.heatmap(rgb, "eigencam")
    assert eigen.values.shape == (SIZE, SIZE)
    assert eigen.values.min() >= 0.0 and eigen.values.max() == pytest.approx(1.0)
    score = explainer.heatmap(rgb, "scorecam", target=cls)  # 64 masked inputs, about 1 s
    assert score.values.min() >= 0.0 and score.values.max() == pytest.approx(1.0)
    assert score.layer == "stage4" and score.target == cls
    inside, outside = _inside_outside(score, mask)
    assert inside > outside


def test_heatmap_of_a_non_square_image_is_in_its_own_pixels(trained):
    _, explainer, samples = trained
    rgb = np.ascontiguousarray(samples[0][0][:100, :])  # 100 rows × 160 columns
    hm = explainer.heatmap(rgb, "gradcam", layer="stage2")
    assert hm.values.shape == (100, SIZE)


def _hooks(model: nn.Module) -> int:
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
        + len(getattr(m, "_backward_pre_hooks", {}))
        for m in model.modules()
    )  # fmt: skip


def test_hooks_removed_and_model_state_restored_even_when_it_raises(trained, monkeypatch):
    _, explainer, samples = trained
    model = explainer.model
    rgb = samples[0][0]
    model.train()
    model.backbone.stages[0].eval()  # a mixed state must come back exactly
    model.head[-1].weight.requires_grad_(False)
    modes = [m.training for m in model.modules()]
    flags = [p.requires_grad for p in model.parameters()]
    try:
        for method in METHODS:
            if method == "scorecam":
                continue  # covered above; slow
            explainer.heatmap(rgb, method)
            assert _hooks(model) == 0
            assert [m.training for m in model.modules()] == modes
            assert [p.requires_grad for p in model.parameters()] == flags
            assert all(p.grad is None for p in model.parameters())
        with pytest.raises(ExplainError, match="out of range"):
            explainer.heatmap(rgb, target=7)
        assert _hooks(model) == 0

        def broken(x):
            raise RuntimeError("head exploded")

        monkeypatch.setattr(model.head, "forward", broken)
        with pytest.raises(RuntimeError, match="head exploded"):
            explainer.heatmap(rgb, "gradcam")
        assert _hooks(model) == 0
        assert [m.training for m in model.modules()] == modes
        assert [p.requires_grad for p in model.parameters()] == flags
    finally:
        model.head[-1].weight.requires_grad_(True)
        model.eval()


def test_activations_and_first_layer_filters(trained):
    _, explainer, samples = trained
    rgb = samples[0][0]
    assert explainer.layers == ["stem", "stage1", "stage2", "stage3", "stage4"]
    maps = explainer.activations(rgb, "stage3", max_maps=32)
    assert maps.shape == (32, SIZE // 16, SIZE // 16) and maps.dtype == np.float32
    assert maps.min() >= 0.0 and maps.max() <= 1.0
    assert np.allclose(maps.reshape(32, -1).max(axis=1), 1.0)  # each map scaled on its own
    assert explainer.activations(rgb, "stem", max_maps=64).shape[0] == 16  # only 16 channels
    filters = explainer.first_layer_filters()
    assert filters.shape == (32, 3, 3, 3)  # Lite0's stem: 32 RGB filters of 3×3
    assert filters.min() >= 0.0 and filters.max() <= 1.0
    # the largest |weight| of each filter maps to 0 or 1
    extreme = np.abs(filters - 0.5).reshape(32, -1).max(axis=1)
    assert np.allclose(extreme, 0.5)


def test_unknown_method_or_layer_is_named(trained):
    _, explainer, samples = trained
    rgb = samples[0][0]
    with pytest.raises(ExplainError, match="unknown method 'cam'"):
        explainer.heatmap(rgb, "cam")
    with pytest.raises(ExplainError, match="unknown layer 'layer4'.*stage4"):
        explainer.heatmap(rgb, layer="layer4")
    with pytest.raises(ExplainError, match="H×W×3 uint8"):
        explainer.heatmap(rgb[..., 0])


# ----------------------------------------------------------------- other tasks (untrained)


def _explainer(task: str, **kw) -> Explainer:
    torch.manual_seed(0)
    model = build_task_model(task, build_backbone("resnet18", "none"), **kw).eval()
    return Explainer(model, RunSpec(task=task, backbone="resnet18", weights="none", input_size=64))


def _image(h: int = 80, w: int = 96) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_segmentation_explains_a_class_over_a_region():
    explainer = _explainer("segment", num_classes=3, width=16)
    rgb = _image()
    hm = explainer.heatmap(rgb, "gradcam", layer="layer3")
    assert hm.values.shape == (80, 96) and hm.target in (0, 1, 2)
    region = np.zeros((80, 96), bool)
    region[10:40, 20:60] = True
    with torch.no_grad():
        logits = explainer.model(explainer._input(rgb))[0]
    small = np.zeros((64, 64), bool)
    small[8:32, 13:40] = True  # the region in the 64×64 input frame (nearest resize)
    expected = float(logits[2][torch.from_numpy(small)].mean())
    hm2 = explainer.heatmap(rgb, "gradcam++", target=1, region=region)
    assert hm2.target == 1 and hm2.score == pytest.approx(expected, rel=1e-4)
    with pytest.raises(ExplainError, match=r"region is \(10, 10\)"):
        explainer.heatmap(rgb, target=1, region=np.ones((10, 10), bool))


def test_landmarks_explain_one_points_peak():
    explainer = _explainer("landmarks", num_points=5, width=16)
    rgb = _image()
    hm = explainer.heatmap(rgb, "gradcam", target=2, layer="layer2")
    with torch.no_grad():
        heat = explainer.model(explainer._input(rgb))[0]
    assert hm.target == 2 and hm.score == pytest.approx(float(heat[2].max()), rel=1e-5)
    everything = explainer.heatmap(rgb, "eigencam")
    assert everything.target is None
    assert everything.score == pytest.approx(float(heat.flatten(1).amax(1).sum()), rel=1e-5)


def test_detection_gets_class_agnostic_eigencam_only():
    explainer = _explainer("detect", num_classes=3, input_size=64)
    assert explainer.methods == ("eigencam",)
    rgb = _image()
    hm = explainer.heatmap(rgb, "eigencam", layer="layer3")
    assert hm.values.shape == (80, 96) and hm.target is None and hm.score is None
    assert hm.values.max() == pytest.approx(1.0)
    with pytest.raises(ExplainError, match="supports EigenCAM only"):
        explainer.heatmap(rgb, "gradcam")
    assert _hooks(explainer.model) == 0


# ----------------------------------------------------------------- reference implementation


@pytest.mark.parametrize("layer", ["layer3", "layer4"])
@pytest.mark.parametrize("method", ["gradcam", "gradcam++"])
def test_gradient_cams_equal_pytorch_grad_cam(method, layer, monkeypatch):
    """Dev-only (needs the ``grad-cam`` package): the map at the stage's resolution, before
    resizing and ReLU, equals pytorch-grad-cam's for the same model, stage, image and class.
    The head is scaled up so gradients dwarf the 1e-6 that the package adds to Grad-CAM++'s
    denominator (this module replaces only a zero denominator)."""
    grad_cam = pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    explainer = _explainer("classify", num_classes=3)
    model = explainer.model
    with torch.no_grad():
        for p in model.head.parameters():
            p.mul_(1e4)
    ours: list[np.ndarray] = []

    def keep_raw_map(cam: torch.Tensor, hw: tuple[int, int]) -> np.ndarray:
        ours.append(cam.detach().cpu().numpy())
        return np.zeros(hw, np.float32)

    monkeypatch.setattr(explainer, "_to_image", keep_raw_map)
    rgb = _image(64, 64)
    explainer.heatmap(rgb, method, target=1, layer=layer)
    stage = model.backbone.stages[explainer.layers.index(layer)]
    x = explainer._input(rgb)
    cam_class = grad_cam.GradCAM if method == "gradcam" else grad_cam.GradCAMPlusPlus
    with cam_class(model=model, target_layers=[stage]) as cam:
        targets = [ClassifierOutputTarget(1)]
        cam(input_tensor=x, targets=targets)
        act = cam.activations_and_grads.activations[0].numpy()
        grad = cam.activations_and_grads.gradients[0].numpy()
        theirs = cam.get_cam_image(x, stage, targets, act, grad)[0]
    (raw,) = ours
    assert raw.shape == theirs.shape == act.shape[2:]
    assert np.abs(theirs).max() > 0
    np.testing.assert_allclose(raw, theirs, rtol=1e-4, atol=1e-5 * np.abs(theirs).max())
