"""Landmarks: one heatmap per template point from a U-Net decoder, decoded to sub-pixel
positions.

Frames. Key points are in the network input's continuous pixel frame (origin at the
top-left *corner* of the top-left pixel; pixel (i, j) has its centre at (i + 0.5, j + 0.5),
as in :mod:`tlstudio.ml.transforms`). Heatmaps have stride ``s`` = ``heatmap_stride``:
cell ``u`` (an integer index) covers input pixels ``[u·s, (u+1)·s)``, so

    heatmap index      u = x / s − 0.5
    input pixels       x = (u + 0.5) · s

and likewise for y. (For pixel-*index* coordinates, where pixel centres are integers,
the same mapping reads ``u = (x + 0.5)/s − 0.5``.)

Targets are Gaussians with peak 1 and standard deviation ``sigma`` heatmap cells centred
at each labelled point. The loss is the squared error summed over each heatmap,
averaged over labelled points (visibility > 0) and divided by πσ² (≈ the energy of one
target Gaussian), so an all-zero prediction scores about 1; points with visibility 0
contribute nothing, whatever their coordinates.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from tlstudio.ml.tasks.base import TaskModel
from tlstudio.ml.tasks.decoder import decoder_for, eval_mode

if TYPE_CHECKING:
    from tlstudio.ml.backbones import Backbone


def to_heatmap_frame(xy: Tensor, stride: int) -> Tensor:
    """Input-pixel coordinates (continuous frame) → heatmap cell-index coordinates."""
    return xy / stride - 0.5


def to_input_frame(uv: Tensor, stride: int) -> Tensor:
    """Heatmap cell-index coordinates → input-pixel coordinates (continuous frame)."""
    return (uv + 0.5) * stride


def render_heatmaps(keypoints: Tensor, size: tuple[int, int], stride: int, sigma: float) -> Tensor:
    """Target heatmaps P×h×w for ``keypoints`` P×3 (x, y, visibility) in input pixels.

    Peak 1 at the point (sub-cell accurate), standard deviation ``sigma`` cells; all zeros
    for points with visibility 0."""
    h, w = size
    kp = keypoints.float()
    visible = kp[:, 2] > 0
    # Unlabelled points may carry any coordinates (even NaN); park them at 0 first.
    uv = to_heatmap_frame(torch.where(visible[:, None], kp[:, :2], 0.0), stride)
    ys = torch.arange(h, device=kp.device, dtype=torch.float32)
    xs = torch.arange(w, device=kp.device, dtype=torch.float32)
    gx = torch.exp(-((xs[None, :] - uv[:, 0:1]) ** 2) / (2 * sigma**2))  # P×w
    gy = torch.exp(-((ys[None, :] - uv[:, 1:2]) ** 2) / (2 * sigma**2))  # P×h
    maps = gy[:, :, None] * gx[:, None, :]
    return maps * visible.float()[:, None, None]


def decode_heatmaps(heatmaps: Tensor, stride: int) -> Tensor:
    """Heatmaps N×P×h×w → N×P×3 (x, y, confidence), x/y in input pixels.

    Arg-max cell, then a per-axis parabola through the peak and its two neighbours
    (fitted to log values, exact for a Gaussian, when all three are positive; else to the
    raw values), offset clamped to ±0.5 cell. Confidence = peak value clamped to [0, 1]."""
    n, p, h, w = heatmaps.shape
    flat = heatmaps.reshape(n, p, h * w)
    peak, idx = flat.max(dim=-1)
    iy = torch.div(idx, w, rounding_mode="floor")
    ix = idx % w
    hm = heatmaps.reshape(n * p, h, w)
    k = torch.arange(n * p, device=heatmaps.device)
    iy_f, ix_f = iy.reshape(-1), ix.reshape(-1)

    def offset(c: Tensor, lo: Tensor, hi: Tensor) -> Tensor:
        pos = (c > 1e-6) & (lo > 1e-6) & (hi > 1e-6)
        c_, lo_, hi_ = (torch.where(pos, v.clamp_min(1e-6).log(), v) for v in (c, lo, hi))
        denom = 2 * c_ - lo_ - hi_
        off = torch.where(denom > 1e-12, 0.5 * (hi_ - lo_) / denom.clamp_min(1e-12), 0.0)
        return off.clamp(-0.5, 0.5)

    c = hm[k, iy_f, ix_f]
    has_l, has_r = ix_f > 0, ix_f < w - 1
    left = hm[k, iy_f, (ix_f - 1).clamp_min(0)]
    right = hm[k, iy_f, (ix_f + 1).clamp_max(w - 1)]
    dx = torch.where(has_l & has_r, offset(c, left, right), 0.0)
    has_u, has_d = iy_f > 0, iy_f < h - 1
    up = hm[k, (iy_f - 1).clamp_min(0), ix_f]
    down = hm[k, (iy_f + 1).clamp_max(h - 1), ix_f]
    dy = torch.where(has_u & has_d, offset(c, up, down), 0.0)
    u = ix_f.float() + dx
    v = iy_f.float() + dy
    xy = to_input_frame(torch.stack([u, v], dim=-1), stride).reshape(n, p, 2)
    return torch.cat([xy, peak.clamp(0.0, 1.0)[..., None]], dim=-1)


class LandmarkModel(TaskModel):
    """Backbone + U-Net decoder → P heatmaps at input size / ``heatmap_stride``.

    Heatmap size = ceil(H / stride) × ceil(W / stride) for an H×W input; ``sigma`` is in
    heatmap cells. ``main_metric`` "nme" (normalised mean error, lower is better)."""

    task = "landmarks"
    main_metric = "nme"
    higher_is_better = False
    backbone: Backbone  # set by TaskModel.__init__

    def __init__(
        self,
        backbone: Backbone,
        num_points: int,
        heatmap_stride: int = 4,
        sigma: float = 2.0,
        width: int = 64,
    ):
        super().__init__(backbone)
        if num_points < 1:
            raise ValueError(f"landmarks need at least one point, got {num_points}")
        if heatmap_stride not in (1, 2, 4, 8):
            raise ValueError(f"heatmap_stride must be 1, 2, 4 or 8, got {heatmap_stride}")
        if sigma <= 0:
            raise ValueError(f"sigma must be positive, got {sigma}")
        self.num_points = int(num_points)
        self.heatmap_stride = int(heatmap_stride)
        self.sigma = float(sigma)
        self.decoder = decoder_for(backbone, num_points, out_stride=heatmap_stride, width=width)

    def heatmap_size(self, input_hw: tuple[int, int]) -> tuple[int, int]:
        """(h, w) of the heatmaps for an input of ``input_hw`` pixels."""
        s = self.heatmap_stride
        return (math.ceil(input_hw[0] / s), math.ceil(input_hw[1] / s))

    def forward(self, images: Tensor) -> Tensor:
        """Normalised images N×3×H×W → heatmaps N×P×ceil(H/s)×ceil(W/s)."""
        feats = self.backbone.forward_features(images)
        h, w = images.shape[-2:]
        return self.decoder(feats, output_size=self.heatmap_size((h, w)))

    def target_heatmaps(self, targets: list[dict[str, Any]], size: tuple[int, int]) -> Tensor:
        """N×P×h×w Gaussian targets from the targets' "keypoints" (P×3, input pixels)."""
        maps = []
        for t in targets:
            kp = torch.as_tensor(t["keypoints"]).float()
            if kp.shape != (self.num_points, 3):
                raise ValueError(
                    f"keypoints must be {self.num_points}×3 (x, y, visibility), "
                    f"got {tuple(kp.shape)}"
                )
            maps.append(render_heatmaps(kp, size, self.heatmap_stride, self.sigma))
        return torch.stack(maps)

    def loss_from_heatmaps(
        self, heatmaps: Tensor, targets: list[dict[str, Any]]
    ) -> dict[str, Tensor]:
        """{"loss"}: visibility-masked heatmap squared error (see the module docstring)."""
        dev = heatmaps.device
        h, w = heatmaps.shape[-2:]
        target = self.target_heatmaps(targets, (h, w)).to(dev)
        vis = torch.stack([torch.as_tensor(t["keypoints"], device=dev)[:, 2] for t in targets])
        labelled = vis > 0  # N×P
        per_map = ((heatmaps - target) ** 2).sum(dim=(2, 3))  # N×P
        per_map = torch.where(labelled, per_map, 0.0)
        denom = labelled.sum().clamp_min(1) * (math.pi * self.sigma**2)
        return {"loss": per_map.sum() / denom}

    def training_step(self, images: Tensor, targets: list[dict[str, Any]]) -> dict[str, Tensor]:
        """{"loss"} for a batch; targets carry "keypoints" P×3 (x, y, visibility)."""
        return self.loss_from_heatmaps(self(images), targets)

    @torch.no_grad()
    def predict_step(self, images: Tensor) -> list[dict[str, Any]]:
        """{"keypoints": P×3 (x, y, confidence)} per image; x, y in input pixels
        (continuous frame), confidence = heatmap peak in [0, 1]."""
        with eval_mode(self):
            heat = self(images)
        kps = decode_heatmaps(heat.float(), self.heatmap_stride)
        return [{"keypoints": k} for k in kps]
