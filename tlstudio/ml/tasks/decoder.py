"""A U-Net-style decoder over a backbone's stages (segmentation and landmarks), and helpers.

Strides are relative to the network input (a stride-``s`` map has about ``H/s`` × ``W/s``
cells). The decoder starts at the deepest stage and walks towards the input: at each
shallower stage it resizes the running map to the skip's size (×2 for the usual stride
pattern; any ratio works, so backbones that skip a stride, like ConvNeXt without a
stride-2 stage, need nothing special), concatenates the skip after a 1×1 lateral
convolution and mixes them with two 3×3 conv-BN-ReLU blocks. Below the finest skip it
keeps upsampling ×2 (without skips) until ``out_stride`` is reached.

Resizing is bilinear with ``align_corners=False``: output cell ``j`` of a stride-``s`` map
covers input pixels ``[j·s, (j+1)·s)``, so its centre is at ``(j + 0.5)·s`` in the
input's continuous pixel frame (origin at the top-left corner of the top-left pixel).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

if TYPE_CHECKING:
    from tlstudio.ml.architectures import BackboneSpec


class StagedBackbone(Protocol):
    """What :func:`decoder_for` reads of a :class:`~tlstudio.ml.backbones.Backbone`."""

    @property
    def spec(self) -> BackboneSpec: ...


@contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """Put ``module`` in eval mode for the block, then restore its previous mode.

    Task models predict through this, so BatchNorm uses running statistics and dropout
    is off whatever mode the caller left the model in."""
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)


def conv_bn_relu(in_channels: int, out_channels: int, kernel: int = 3) -> nn.Sequential:
    """Conv (no bias, 'same' padding) → BatchNorm → ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class UNetDecoder(nn.Module):
    """Upsampling path with skips from backbone stages; output at input size / ``out_stride``.

    ``stage_channels``/``stage_strides`` list the backbone's stages from the input (as in
    ``BackboneSpec.stages``). Stages finer than ``out_stride`` are not used. ``width`` is
    the channel count of the decoder's maps at skip levels (halved, at least 16, in the
    skip-less levels below the finest skip, where maps are largest). The last layer is a
    1×1 convolution to ``out_channels`` with bias and no activation (logits/heatmaps).
    """

    def __init__(
        self,
        stage_channels: Sequence[int],
        stage_strides: Sequence[int],
        out_channels: int,
        out_stride: int = 1,
        width: int = 64,
    ):
        super().__init__()
        if len(stage_channels) != len(stage_strides) or not stage_channels:
            raise ValueError("stage_channels and stage_strides must be non-empty and equally long")
        if out_stride < 1 or out_stride & (out_stride - 1):
            raise ValueError(f"out_stride must be a power of two >= 1, got {out_stride}")
        if list(stage_strides) != sorted(stage_strides):
            raise ValueError(f"stage strides must not decrease, got {list(stage_strides)}")
        if out_channels < 1 or width < 1:
            raise ValueError("out_channels and width must be positive")
        used = [i for i, s in enumerate(stage_strides) if s >= out_stride]
        if not used:
            raise ValueError(f"no stage has stride >= out_stride={out_stride}")
        self.out_stride = int(out_stride)
        self.width = int(width)
        #: indices of the backbone stages the decoder reads, from the input
        self.stage_indices: list[int] = used
        deepest = used[-1]
        self.top = conv_bn_relu(stage_channels[deepest], width, 1)
        # One lateral + fuse block per skip, ordered from deep to shallow.
        skips = list(reversed(used[:-1]))
        self._skip_indices = skips
        self.laterals = nn.ModuleList(conv_bn_relu(stage_channels[i], width, 1) for i in skips)
        self.fuse = nn.ModuleList(
            nn.Sequential(conv_bn_relu(2 * width, width), conv_bn_relu(width, width)) for _ in skips
        )
        # Skip-less ×2 steps from the finest used stride down to out_stride.
        stride = stage_strides[used[0]]
        tail: list[nn.Module] = []
        channels = width
        while stride // 2 >= out_stride:
            nxt = max(16, width // 2)
            tail.append(nn.Sequential(conv_bn_relu(channels, nxt), conv_bn_relu(nxt, nxt)))
            channels = nxt
            stride //= 2
        self.tail = nn.ModuleList(tail)
        self.head = nn.Conv2d(channels, out_channels, 1)

    def forward(
        self, features: Sequence[Tensor], output_size: tuple[int, int] | None = None
    ) -> Tensor:
        """Stage features (one per backbone stage, from the input) → N×out_channels×h×w.

        Without ``output_size`` the map has the finest skip's size times 2^k (k = number
        of tail steps), i.e. input size / ``out_stride`` when the backbone's sizes divide
        evenly; with it, the map is resized (bilinear) to exactly ``output_size`` (h, w).
        """
        x = self.top(features[self.stage_indices[-1]])
        for i, lateral, fuse in zip(self._skip_indices, self.laterals, self.fuse, strict=True):
            skip = lateral(features[i])
            if x.shape[-2:] != skip.shape[-2:]:
                x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = fuse(torch.cat([x, skip], dim=1))
        for block in self.tail:
            x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
            x = block(x)
        x = self.head(x)  # 1×1 conv commutes with bilinear resizing; cheaper before it
        if output_size is not None and tuple(x.shape[-2:]) != tuple(output_size):
            x = F.interpolate(x, size=tuple(output_size), mode="bilinear", align_corners=False)
        return x


def decoder_for(
    backbone: StagedBackbone, out_channels: int, out_stride: int, width: int
) -> UNetDecoder:
    """A :class:`UNetDecoder` matching ``backbone.spec.stages``."""
    stages = backbone.spec.stages
    return UNetDecoder(
        [s.channels for s in stages], [s.stride for s in stages], out_channels, out_stride, width
    )
