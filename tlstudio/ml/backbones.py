"""Backbone registry: torchvision ImageNet models and EfficientNet-Lite, split into stages.

A :class:`Backbone` holds only the feature extractor, as an ordered list of stages (from
the input). ``forward_features`` returns one tensor per stage so decoders can take skips;
``forward`` returns the global-average-pooled last stage. Strides are relative to the
input (a stage with stride 8 outputs ``ceil(H/8)`` x ``ceil(W/8)`` for most families).

The table of backbones (:class:`BackboneSpec`, :func:`get_spec`, :func:`list_backbones`)
and :func:`build_architecture` live in :mod:`tlstudio.ml.architectures` and are
re-exported here. Nothing here touches the network: weights come from the bundled
packages, torch's hub cache or a file (see :mod:`tlstudio.ml.weights`), or are random
(``"none"``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal, cast

from torch import Tensor, nn

from tlstudio.ml import weights as W
from tlstudio.ml.architectures import (
    BACKBONES,
    BackboneSpec,
    StageInfo,
    build_architecture,
    get_spec,
    list_backbones,
)
from tlstudio.ml.efficientnet_lite import EfficientNetLite, MBConvBlock

__all__ = [
    "BACKBONES",
    "Backbone",
    "BackboneSpec",
    "StageInfo",
    "WeightsChoice",
    "build_architecture",
    "build_backbone",
    "build_imagenet_classifier",
    "get_spec",
    "list_backbones",
]

WeightsChoice = Literal["bundled", "cached", "none", "auto"] | Path
"""Where weights come from: ``"bundled"`` (EfficientNet-Lite packages), ``"cached"`` (torch
hub cache), ``"none"`` (random init), ``"auto"`` (bundled, else cached, else error) or a
state-dict file."""

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


def _sequential(m: nn.Module, name: str) -> nn.Sequential:
    """``m``'s child ``name``: an ``nn.Sequential`` in torchvision's models (``features``,
    ``trunk_output``)."""
    child = m.get_submodule(name)
    if not isinstance(child, nn.Sequential):
        raise TypeError(f"{type(m).__name__}.{name} is a {type(child).__name__}, not a Sequential")
    return child


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
    features = _sequential(m, "features")
    n = len(features)
    if n == 13:  # small
        return _idx(features, range(0, 1), range(1, 2), range(2, 4), range(4, 9), range(9, 13))
    return _idx(features, range(0, 2), range(2, 4), range(4, 7), range(7, 13), range(13, n))


def _split_efficientnet(m: nn.Module) -> list[nn.Module]:
    features = _sequential(m, "features")
    return _idx(features, range(0, 2), range(2, 3), range(3, 4), range(4, 6), range(6, 9))


def _split_convnext(m: nn.Module) -> list[nn.Module]:
    return _idx(_sequential(m, "features"), range(0, 2), range(2, 4), range(4, 6), range(6, 8))


def _split_vgg(m: nn.Module) -> list[nn.Module]:
    # Each block is its convolutions plus the max-pool that ends it.
    features = _sequential(m, "features")
    pools = [i for i, layer in enumerate(features) if isinstance(layer, nn.MaxPool2d)]
    starts = [0] + [p + 1 for p in pools[:-1]]
    return _idx(features, *(range(a, p + 1) for a, p in zip(starts, pools, strict=True)))


def _split_densenet(m: nn.Module) -> list[nn.Module]:
    f = _sequential(m, "features")
    return [
        _seq(f, "conv0", "norm0", "relu0"),
        _seq(f, "pool0", "denseblock1"),
        _seq(f, "transition1", "denseblock2"),
        _seq(f, "transition2", "denseblock3"),
        # torchvision applies ReLU after norm5 in forward(), not as a module.
        _seq(f, "transition3", "denseblock4", "norm5", extra={"relu5": nn.ReLU(inplace=True)}),
    ]


def _split_regnet(m: nn.Module) -> list[nn.Module]:
    t = _sequential(m, "trunk_output")
    return [_seq(m, "stem"), *(_seq(t, n) for n in ("block1", "block2", "block3", "block4"))]


def _split_lite(m: nn.Module) -> list[nn.Module]:
    assert isinstance(m, EfficientNetLite)
    blocks = cast(list[MBConvBlock], list(m._blocks))  # EfficientNetLite holds only these
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


class _VggFeatures(nn.Module):
    def __init__(self, features: nn.Sequential) -> None:
        super().__init__()
        self.features = features


def _random_vgg_features(name: str) -> nn.Module:
    # Building the whole VGG initialises ~120M classifier weights that are thrown away
    # (seconds on CPU); build just `features` with torchvision's own init instead.
    # torchvision ships no stubs or py.typed marker
    from torchvision.models.vgg import cfgs, make_layers  # type: ignore[import-untyped]

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
