"""Backbone registry: torchvision ImageNet models and EfficientNet-Lite, split into stages.

A :class:`Backbone` holds only the feature extractor, as an ordered list of stages (from
the input). ``forward_features`` returns one tensor per stage so decoders can take skips;
``forward`` returns the global-average-pooled last stage. Strides are relative to the
input (a stage with stride 8 outputs ``ceil(H/8)`` x ``ceil(W/8)`` for most families).

Nothing here touches the network: weights come from the bundled packages, torch's hub
cache or a file (see :mod:`tlstudio.ml.weights`), or are random (``"none"``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn

from tlstudio.ml.efficientnet_lite import LITE_MEAN, LITE_STD, EfficientNetLite

WeightsChoice = Literal["bundled", "cached", "none", "auto"] | Path
"""Where weights come from: ``"bundled"`` (EfficientNet-Lite packages), ``"cached"`` (torch
hub cache), ``"none"`` (random init), ``"auto"`` (bundled, else cached, else error) or a
state-dict file."""

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
    return tuple(StageInfo(n, c, s) for n, c, s in items)


def _spec(
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
        _spec(
            "resnet18",
            "resnet",
            224,
            _RESNET_BASIC,
            11_176_512,
            69.758,
            "ResNet18_Weights.IMAGENET1K_V1",
        ),
        _spec(
            "resnet34",
            "resnet",
            224,
            _RESNET_BASIC,
            21_284_672,
            73.314,
            "ResNet34_Weights.IMAGENET1K_V1",
        ),
        _spec(
            "resnet50",
            "resnet",
            224,
            _RESNET_BOTTLENECK,
            23_508_032,
            80.858,
            "ResNet50_Weights.IMAGENET1K_V2",
        ),
        _spec(
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
        _spec(
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
        _spec(
            "efficientnet_b0",
            "efficientnet",
            224,
            _EFFNET,
            4_007_548,
            77.692,
            "EfficientNet_B0_Weights.IMAGENET1K_V1",
        ),
        _spec(
            "efficientnet_b1",
            "efficientnet",
            240,
            _EFFNET,
            6_513_184,
            79.838,
            "EfficientNet_B1_Weights.IMAGENET1K_V2",
        ),
        _spec(
            "convnext_tiny",
            "convnext",
            224,
            _st(("stage1", 96, 4), ("stage2", 192, 8), ("stage3", 384, 16), ("stage4", 768, 32)),
            27_818_592,
            82.52,
            "ConvNeXt_Tiny_Weights.IMAGENET1K_V1",
        ),
        _spec(
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
        _spec(
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
        _spec(
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
        _spec(
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
        _spec(
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
        _spec(
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


# --------------------------------------------------------------------------- stages


class Backbone(nn.Module):
    """A feature extractor as ordered stages.

    ``frozen_depth`` leading stages (set by :func:`tlstudio.ml.freezing.set_freeze_depth`)
    stay in eval mode whenever the module is put in train mode, so their BatchNorm running
    statistics and dropout/stochastic depth do not change while frozen.
    """

    def __init__(self, spec: BackboneSpec, stages: list[nn.Module]) -> None:
        super().__init__()
        if len(stages) != len(spec.stages):
            raise ValueError(
                f"{spec.name}: {len(stages)} stage modules for {len(spec.stages)} stages"
            )
        self.spec = spec
        self.stages = nn.ModuleList(stages)
        self.frozen_depth = 0

    @property
    def out_channels(self) -> int:
        """Channels of the last stage (= length of the pooled feature vector)."""
        return self.spec.stages[-1].channels

    @property
    def stage_names(self) -> list[str]:
        """Stage names in order, e.g. ``["stem", "layer1", ...]``."""
        return [s.name for s in self.spec.stages]

    def train(self, mode: bool = True) -> Backbone:
        """Set train/eval mode; frozen leading stages always stay in eval mode."""
        super().train(mode)
        if mode:
            for stage in self.stages[: self.frozen_depth]:
                stage.eval()
        return self

    def forward_features(self, x: Tensor) -> list[Tensor]:
        """Normalised images (N, 3, H, W) -> one feature map per stage, from the input."""
        feats: list[Tensor] = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats

    def forward(self, x: Tensor) -> Tensor:
        """Normalised images (N, 3, H, W) -> pooled features (N, out_channels)."""
        for stage in self.stages:
            x = stage(x)
        return x.mean(dim=(2, 3))


def _seq(model: nn.Module, *names: str, extra: dict[str, nn.Module] | None = None) -> nn.Sequential:
    items: OrderedDict[str, nn.Module] = OrderedDict((n, getattr(model, n)) for n in names)
    items.update(extra or {})
    return nn.Sequential(items)


def _idx(features: nn.Sequential, *groups: range) -> list[nn.Module]:
    return [nn.Sequential(OrderedDict((str(i), features[i]) for i in g)) for g in groups]


def _split_resnet(m: nn.Module) -> list[nn.Module]:
    # Stem without the max-pool so decoders get a stride-2 skip; the pool starts layer1.
    return [
        _seq(m, "conv1", "bn1", "relu"),
        _seq(m, "maxpool", "layer1"),
        _seq(m, "layer2"),
        _seq(m, "layer3"),
        _seq(m, "layer4"),
    ]


def _split_mobilenet_v3(m: nn.Module) -> list[nn.Module]:
    n = len(m.features)
    if n == 13:  # small
        return _idx(m.features, range(0, 1), range(1, 2), range(2, 4), range(4, 9), range(9, 13))
    return _idx(m.features, range(0, 2), range(2, 4), range(4, 7), range(7, 13), range(13, n))


def _split_efficientnet(m: nn.Module) -> list[nn.Module]:
    return _idx(m.features, range(0, 2), range(2, 3), range(3, 4), range(4, 6), range(6, 9))


def _split_convnext(m: nn.Module) -> list[nn.Module]:
    return _idx(m.features, range(0, 2), range(2, 4), range(4, 6), range(6, 8))


def _split_vgg(m: nn.Module) -> list[nn.Module]:
    # Each block is its convolutions plus the max-pool that ends it.
    pools = [i for i, layer in enumerate(m.features) if isinstance(layer, nn.MaxPool2d)]
    starts = [0] + [p + 1 for p in pools[:-1]]
    return _idx(m.features, *(range(a, p + 1) for a, p in zip(starts, pools, strict=True)))


def _split_densenet(m: nn.Module) -> list[nn.Module]:
    f = m.features
    return [
        _seq(f, "conv0", "norm0", "relu0"),
        _seq(f, "pool0", "denseblock1"),
        _seq(f, "transition1", "denseblock2"),
        _seq(f, "transition2", "denseblock3"),
        # torchvision applies ReLU after norm5 in forward(), not as a module.
        _seq(f, "transition3", "denseblock4", "norm5", extra={"relu5": nn.ReLU(inplace=True)}),
    ]


def _split_regnet(m: nn.Module) -> list[nn.Module]:
    t = m.trunk_output
    return [_seq(m, "stem")] + [_seq(t, n) for n in ("block1", "block2", "block3", "block4")]


def _split_lite(m: nn.Module) -> list[nn.Module]:
    assert isinstance(m, EfficientNetLite)
    blocks = list(m._blocks)
    # The four stride-2 blocks start the stride 4, 8, 16 and 32 stages.
    s1, s2, s3, s4 = [i for i, b in enumerate(blocks) if b._depthwise_conv.stride[0] == 2]

    def part(lo: int, hi: int) -> OrderedDict[str, nn.Module]:
        return OrderedDict((f"block{i}", blocks[i]) for i in range(lo, hi))

    stem: OrderedDict[str, nn.Module] = OrderedDict(
        conv_stem=m._conv_stem, bn0=m._bn0, act=nn.ReLU6(inplace=True)
    )
    stem.update(part(0, s1))
    last = part(s4, len(blocks))
    last.update(conv_head=m._conv_head, bn1=m._bn1, act=nn.ReLU6(inplace=True))
    return [
        nn.Sequential(stem),
        nn.Sequential(part(s1, s2)),
        nn.Sequential(part(s2, s3)),
        nn.Sequential(part(s3, s4)),
        nn.Sequential(last),
    ]


_SPLITTERS: dict[str, Callable[[nn.Module], list[nn.Module]]] = {
    "resnet": _split_resnet,
    "mobilenet_v3": _split_mobilenet_v3,
    "efficientnet": _split_efficientnet,
    "convnext": _split_convnext,
    "vgg": _split_vgg,
    "densenet": _split_densenet,
    "regnet": _split_regnet,
    "efficientnet_lite": _split_lite,
}

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
        import torchvision.models

        return torchvision.models.get_model(name, weights=None)


class _VggFeatures(nn.Module):
    def __init__(self, features: nn.Sequential) -> None:
        super().__init__()
        self.features = features


def _random_vgg_features(name: str) -> nn.Module:
    # Building the whole VGG initialises ~120M classifier weights that are thrown away
    # (seconds on CPU); build just `features` with torchvision's own init instead.
    from torchvision.models.vgg import cfgs, make_layers

    cfg = {"vgg11": "A", "vgg13": "B", "vgg16": "D", "vgg19": "E"}[name.removesuffix("_bn")]
    features = make_layers(cfgs[cfg], batch_norm=name.endswith("_bn"))
    for m in features.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.constant_(m.bias, 0)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)
    return _VggFeatures(features)


def _tensors(module: nn.Module) -> Iterator[Tensor]:
    yield from module.parameters()
    yield from module.buffers()


def _model_with_weights(name: str, weights: WeightsChoice) -> nn.Module:
    from tlstudio.ml import weights as W

    state = W.resolve_state_dict(name, weights)
    if state is None:
        return build_architecture(name)
    W.check_state_dict(name, state, path=weights if isinstance(weights, Path) else None)
    model = build_architecture(name, "meta")
    on_meta = any(t.is_meta for t in _tensors(model))
    state = W.fill_num_batches_tracked(model, state)
    # assign=True adopts the loaded tensors, so a meta-built model never runs its init.
    model.load_state_dict(state, strict=True, assign=on_meta)
    if any(t.is_meta for t in _tensors(model)):
        raise RuntimeError(f"{name}: some tensors were not loaded from the state dict")
    return model.float()


def build_backbone(name: str, weights: WeightsChoice = "bundled") -> Backbone:
    """Build the feature extractor ``name`` with weights from ``weights``.

    Raises :class:`tlstudio.ml.weights.WeightsError` if the requested weights are not
    available (e.g. ``"bundled"`` for a torchvision model, or ``"cached"`` before a
    download/import) or do not fit the architecture. Never touches the network.
    """
    spec = get_spec(name)
    if weights == "none" and spec.family == "vgg":
        model = _random_vgg_features(name)
    else:
        model = _model_with_weights(name, weights)
    backbone = Backbone(spec, _SPLITTERS[spec.family](model))
    return backbone.eval()


def build_imagenet_classifier(name: str, weights: WeightsChoice = "bundled") -> nn.Module:
    """The full 1000-class ImageNet model for ``name`` (eval mode); input normalised per spec.

    Used to sanity-check pretrained weights on real photos and for ImageNet-label demos.
    """
    return _model_with_weights(name, weights).eval()
