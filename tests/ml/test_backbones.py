"""Backbone registry: stage shapes, parameter counts, metadata and bundled Lite weights."""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tlstudio.ml.backbones import (
    BACKBONES,
    Backbone,
    build_backbone,
    build_imagenet_classifier,
    get_spec,
    list_backbones,
)
from tlstudio.ml.weights import WeightsError

EXPECTED_NAMES = {
    "resnet18",
    "resnet34",
    "resnet50",
    "mobilenet_v3_small",
    "mobilenet_v3_large",
    "efficientnet_b0",
    "efficientnet_b1",
    "convnext_tiny",
    "vgg16_bn",
    "densenet121",
    "regnet_y_400mf",
    "efficientnet_lite0",
    "efficientnet_lite1",
    "efficientnet_lite2",
}
LITE = ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a test tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.fixture(autouse=True)
def empty_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "torch" / "hub"))


def test_registry_lists_every_backbone() -> None:
    assert {s.name for s in list_backbones()} == EXPECTED_NAMES
    assert set(BACKBONES) == EXPECTED_NAMES
    with pytest.raises(KeyError, match="unknown backbone 'resnet9'"):
        get_spec("resnet9")


@pytest.mark.parametrize("name", sorted(EXPECTED_NAMES))
def test_stages_match_spec(name: str) -> None:
    spec = BACKBONES[name]
    backbone = build_backbone(name, weights="none")
    assert isinstance(backbone, Backbone)
    assert len(backbone.stages) == len(spec.stages)
    assert sum(p.numel() for p in backbone.parameters()) == spec.num_params
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        feats = backbone.forward_features(x)
        pooled = backbone(torch.randn(2, 3, 64, 64))
        # Each stage's output copied before the next stage runs: an in-place op in a later
        # stage would corrupt the skip tensors that forward_features returns.
        pristine = []
        for stage in backbone.stages:
            x = stage(x)
            pristine.append(x.clone())
    assert all(torch.equal(f, p) for f, p in zip(feats, pristine, strict=True))
    got = [(f.shape[1], 64 // f.shape[2], 64 // f.shape[3]) for f in feats]
    assert got == [(s.channels, s.stride, s.stride) for s in spec.stages]
    strides = [s.stride for s in spec.stages]
    assert strides == sorted(strides) and strides[-1] == 32
    assert backbone.out_channels == spec.stages[-1].channels == spec.out_channels
    assert pooled.shape == (2, spec.out_channels)
    assert torch.isfinite(pooled).all()


@pytest.mark.parametrize("name", sorted(EXPECTED_NAMES - set(LITE)))
def test_torchvision_metadata_matches_weight_enum(name: str) -> None:
    import torchvision.models

    spec = BACKBONES[name]
    w = torchvision.models.get_weight(spec.torchvision_weights)
    assert str(w) == spec.torchvision_weights
    assert w is torchvision.models.get_model_weights(name).DEFAULT
    assert spec.imagenet_top1 == w.meta["_metrics"]["ImageNet-1K"]["acc@1"]
    t = w.transforms()
    assert [spec.input_size] == t.crop_size
    assert list(spec.mean) == t.mean and list(spec.std) == t.std


def test_lite_metadata() -> None:
    for name, size in zip(LITE, (224, 240, 260), strict=True):
        spec = BACKBONES[name]
        assert spec.input_size == size
        assert spec.torchvision_weights is None
        # TF edge models: (x_255 - 127) / 128.
        assert spec.mean == pytest.approx((127 / 255,) * 3)
        assert spec.std == pytest.approx((128 / 255,) * 3)


def _preprocess(
    img: np.ndarray, size: int, mean: tuple[float, ...], std: tuple[float, ...]
) -> torch.Tensor:
    """HxWx3 uint8 -> (1, 3, size, size): shorter side to ``size``, centre crop, normalise."""
    x = torch.from_numpy(img).permute(2, 0, 1).float()[None] / 255.0
    h, w = x.shape[-2:]
    scale = size / min(h, w)
    x = F.interpolate(x, size=(round(h * scale), round(w * scale)), mode="bicubic", antialias=True)
    top, left = (x.shape[2] - size) // 2, (x.shape[3] - size) // 2
    x = x[..., top : top + size, left : left + size]
    return (x - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)


@pytest.mark.parametrize("name", LITE)
def test_bundled_lite_weights_classify_real_photos(name: str) -> None:
    skimage_data = pytest.importorskip("skimage.data")
    spec = BACKBONES[name]
    model = build_imagenet_classifier(name, weights="bundled")
    photos = {
        "coffee": (skimage_data.coffee(), {967, 968, 504}),  # espresso, cup, coffee mug
        "chelsea": (skimage_data.chelsea(), {281, 282, 285}),  # tabby, tiger cat, Egyptian cat
    }
    with torch.no_grad():
        for label, (img, classes) in photos.items():
            logits = model(_preprocess(img, spec.input_size, spec.mean, spec.std))
            top5 = set(logits.topk(5).indices[0].tolist())
            top1 = int(logits.argmax())
            assert top1 in classes, f"{name} on {label}: top-1 {top1}, top-5 {sorted(top5)}"


def test_bundled_lite_backbone_is_the_classifier_trunk() -> None:
    # The backbone's pooled features through the bundled fc give the classifier's logits,
    # so the stages cover the whole trunk (stem..head) with the same weights.
    classifier = build_imagenet_classifier("efficientnet_lite0", weights="bundled")
    backbone = build_backbone("efficientnet_lite0", weights="bundled")
    x = torch.randn(2, 3, 96, 80)
    with torch.no_grad():
        assert torch.allclose(classifier._fc(backbone(x)), classifier(x), atol=1e-4)


CLASSIFIER_HEADS = {
    "resnet18": lambda m: m.fc,
    "mobilenet_v3_small": lambda m: m.classifier,
    "efficientnet_b0": lambda m: m.classifier,
    "densenet121": lambda m: m.classifier,
    "regnet_y_400mf": lambda m: m.fc,
}


@pytest.mark.parametrize("name", sorted(CLASSIFIER_HEADS))
def test_backbone_from_file_matches_full_model(name: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    src = build_imagenet_classifier(name, weights="none")
    for m in src.modules():  # non-trivial BN statistics so a missing BN would show
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    path = tmp_path / f"{name}.pth"
    torch.save(src.state_dict(), path)
    classifier = build_imagenet_classifier(name, weights=path)
    backbone = build_backbone(name, weights=path)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = src(x)
        assert torch.allclose(classifier(x), expected, atol=1e-5)
        assert torch.allclose(CLASSIFIER_HEADS[name](classifier)(backbone(x)), expected, atol=1e-4)


def test_missing_sources_raise_weights_error() -> None:
    with pytest.raises(WeightsError, match="no bundled weights"):
        build_backbone("resnet18", weights="bundled")
    with pytest.raises(WeightsError, match="not in the hub cache"):
        build_backbone("resnet18", weights="cached")
    with pytest.raises(WeightsError, match="no pretrained weights"):
        build_backbone("resnet18", weights="auto")
    with pytest.raises(ValueError, match="unknown weights choice"):
        build_backbone("resnet18", weights="imagenet")  # type: ignore[arg-type]
    assert build_backbone("efficientnet_lite0", weights="auto").spec.name == "efficientnet_lite0"
