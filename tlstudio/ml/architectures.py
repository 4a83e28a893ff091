"""The backbone table (static facts per architecture) and building the bare architecture.

Both :mod:`tlstudio.ml.backbones` (splitting a model into stages) and
:mod:`tlstudio.ml.weights` (checking and loading state dicts) build on this module; it
imports neither of them. Nothing here loads weights or touches the network.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from tlstudio.ml.efficientnet_lite import LITE_MEAN, LITE_STD, EfficientNetLite

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class StageInfo:
    """One stage's output: ``channels`` and ``stride`` (input pixels per output pixel)."""

    name: str
    channels: int
    stride: int


@dataclass(frozen=True)
class BackboneSpec:
    """Static facts about a backbone. ``mean``/``std`` apply to RGB inputs scaled to [0, 1]."""

    name: str
    family: str
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    stages: tuple[StageInfo, ...]
    num_params: int
    imagenet_top1: float | None
    torchvision_weights: str | None

    @property
    def out_channels(self) -> int:
        """Channels of the last stage (= length of the pooled feature vector)."""
        return self.stages[-1].channels


def _st(*items: tuple[str, int, int]) -> tuple[StageInfo, ...]:
    """Stages from (name, channels, stride) tuples."""
    return tuple(StageInfo(n, c, s) for n, c, s in items)


def _backbone_spec(
    name: str,
    family: str,
    input_size: int,
    stages: tuple[StageInfo, ...],
    num_params: int,
    top1: float | None,
    tv_weights: str | None,
    mean: tuple[float, float, float] = _IMAGENET_MEAN,
    std: tuple[float, float, float] = _IMAGENET_STD,
) -> BackboneSpec:
    """A :class:`BackboneSpec` row of the table; ``mean``/``std`` default to ImageNet's."""
    return BackboneSpec(name, family, input_size, mean, std, stages, num_params, top1, tv_weights)


_RESNET_BASIC = _st(
    ("stem", 64, 2), ("layer1", 64, 4), ("layer2", 128, 8), ("layer3", 256, 16), ("layer4", 512, 32)
)
_RESNET_BOTTLENECK = _st(
    ("stem", 64, 2),
    ("layer1", 256, 4),
    ("layer2", 512, 8),
    ("layer3", 1024, 16),
    ("layer4", 2048, 32),
)
_EFFNET = _st(
    ("stem", 16, 2), ("stage1", 24, 4), ("stage2", 40, 8), ("stage3", 112, 16), ("stage4", 1280, 32)
)

# num_params: parameters of the feature extractor only (classifier dropped), checked by
# tests/ml/test_backbones.py against a built model. imagenet_top1 and input_size come from
# torchvision's weight meta (DEFAULT weights), for Lite from the TensorFlow README (FP32).
BACKBONES: dict[str, BackboneSpec] = {
    s.name: s
    for s in (
        _backbone_spec(
            "resnet18",
            "resnet",
            224,
            _RESNET_BASIC,
            11_176_512,
            69.758,
            "ResNet18_Weights.IMAGENET1K_V1",
        ),
        _backbone_spec(
            "resnet34",
            "resnet",
            224,
            _RESNET_BASIC,
            21_284_672,
            73.314,
            "ResNet34_Weights.IMAGENET1K_V1",
        ),
        _backbone_spec(
            "resnet50",
            "resnet",
            224,
            _RESNET_BOTTLENECK,
            23_508_032,
            80.858,
            "ResNet50_Weights.IMAGENET1K_V2",
        ),
        _backbone_spec(
            "mobilenet_v3_small",
            "mobilenet_v3",
            224,
            _st(
                ("stem", 16, 2),
                ("stage1", 16, 4),
                ("stage2", 24, 8),
                ("stage3", 48, 16),
                ("stage4", 576, 32),
            ),
            927_008,
            67.668,
            "MobileNet_V3_Small_Weights.IMAGENET1K_V1",
        ),
        _backbone_spec(
            "mobilenet_v3_large",
            "mobilenet_v3",
            224,
            _st(
                ("stem", 16, 2),
                ("stage1", 24, 4),
                ("stage2", 40, 8),
                ("stage3", 112, 16),
                ("stage4", 960, 32),
            ),
            2_971_952,
            75.274,
            "MobileNet_V3_Large_Weights.IMAGENET1K_V2",
        ),
        _backbone_spec(
            "efficientnet_b0",
            "efficientnet",
            224,
            _EFFNET,
            4_007_548,
            77.692,
            "EfficientNet_B0_Weights.IMAGENET1K_V1",
        ),
        _backbone_spec(
            "efficientnet_b1",
            "efficientnet",
            240,
            _EFFNET,
            6_513_184,
            79.838,
            "EfficientNet_B1_Weights.IMAGENET1K_V2",
        ),
        _backbone_spec(
            "convnext_tiny",
            "convnext",
            224,
            _st(("stage1", 96, 4), ("stage2", 192, 8), ("stage3", 384, 16), ("stage4", 768, 32)),
            27_818_592,
            82.52,
            "ConvNeXt_Tiny_Weights.IMAGENET1K_V1",
        ),
        _backbone_spec(
            "vgg16_bn",
            "vgg",
            224,
            _st(
                ("block1", 64, 2),
                ("block2", 128, 4),
                ("block3", 256, 8),
                ("block4", 512, 16),
                ("block5", 512, 32),
            ),
            14_723_136,
            73.36,
            "VGG16_BN_Weights.IMAGENET1K_V1",
        ),
        _backbone_spec(
            "densenet121",
            "densenet",
            224,
            _st(
                ("stem", 64, 2),
                ("dense1", 256, 4),
                ("dense2", 512, 8),
                ("dense3", 1024, 16),
                ("dense4", 1024, 32),
            ),
            6_953_856,
            74.434,
            "DenseNet121_Weights.IMAGENET1K_V1",
        ),
        _backbone_spec(
            "regnet_y_400mf",
            "regnet",
            224,
            _st(
                ("stem", 32, 2),
                ("block1", 48, 4),
                ("block2", 104, 8),
                ("block3", 208, 16),
                ("block4", 440, 32),
            ),
            3_903_144,
            75.804,
            "RegNet_Y_400MF_Weights.IMAGENET1K_V2",
        ),
        _backbone_spec(
            "efficientnet_lite0",
            "efficientnet_lite",
            224,
            _EFFNET,
            3_371_008,
            75.1,
            None,
            LITE_MEAN,
            LITE_STD,
        ),
        _backbone_spec(
            "efficientnet_lite1",
            "efficientnet_lite",
            240,
            _EFFNET,
            4_135_680,
            76.7,
            None,
            LITE_MEAN,
            LITE_STD,
        ),
        _backbone_spec(
            "efficientnet_lite2",
            "efficientnet_lite",
            260,
            _st(
                ("stem", 16, 2),
                ("stage1", 24, 4),
                ("stage2", 48, 8),
                ("stage3", 120, 16),
                ("stage4", 1280, 32),
            ),
            4_811_072,
            77.6,
            None,
            LITE_MEAN,
            LITE_STD,
        ),
    )
}


def list_backbones() -> list[BackboneSpec]:
    """All registered backbones, in registry order."""
    return list(BACKBONES.values())


def get_spec(name: str) -> BackboneSpec:
    """The spec for ``name``; ``KeyError`` naming the known backbones if unknown."""
    try:
        return BACKBONES[name]
    except KeyError:
        raise KeyError(f"unknown backbone {name!r}; known: {', '.join(BACKBONES)}") from None


# RegNet computes its block widths with torch ops at construction, which fail on "meta".
_NO_META_FAMILIES = {"regnet"}


def build_architecture(name: str, device: str | torch.device = "cpu") -> nn.Module:
    """The full ImageNet classifier (1000 classes) for ``name``, randomly initialised.

    ``device="meta"`` builds shapes only (fast, no memory), for checking state dicts or
    for loading with ``assign=True``; families that cannot build on meta use CPU.
    """
    spec = get_spec(name)
    if spec.family in _NO_META_FAMILIES:
        device = "cpu"
    with torch.device(device):
        if spec.family == "efficientnet_lite":
            return EfficientNetLite(name)
        import torchvision.models  # type: ignore[import-untyped]  # ships no stubs or py.typed

        return torchvision.models.get_model(name, weights=None)
