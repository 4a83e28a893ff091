"""Test-time augmentation: predict on a few transformed copies of each image (a
horizontal flip, slightly smaller and larger sizes), map every output back to the
original frame and combine them, as an ensemble combines models.

Views (:class:`TTAConfig`): the image itself, its mirror image, and the image resized to
each of ``scales`` × the input size (rounded to a multiple of 16 px, so heatmap cells
line up; a scale that rounds to the input size itself adds no view). Mapping back, per task:

- classify: probabilities need no mapping; they are averaged;
- segment: per-pixel probabilities are mirrored back and resized to the input size
  (bilinear), then averaged; the mask is their arg-max;
- landmarks: heatmaps are mirrored back with the template's left/right points swapped
  (the left eye's heatmap of the mirror image is the right eye's), resized to the
  input's heatmap size, averaged, then decoded;
- detect: boxes are mirrored back (x → S − x) and scaled back, and the union is merged
  by weighted box fusion (:func:`tlstudio.ml.ensemble.fuse_boxes`).

A mirror image is a different image for a model that must tell left from right (which
side of a chest an organ is on, a left hand from a right one): leave ``flip`` off there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .ensemble import EnsembleModel, fuse_boxes, heatmap_stride_of, probabilistic
from .tasks.base import TaskModel
from .tasks.decoder import eval_mode
from .tasks.landmarks import decode_heatmaps

#: view sizes are rounded to multiples of this (px): heatmap strides (up to 8) divide it
SIZE_STEP = 16


@dataclass(frozen=True)
class TTAConfig:
    """``flip``: add the mirror image; ``scales``: relative sizes of extra views."""

    flip: bool = True
    scales: tuple[float, ...] = (0.875, 1.125)


class TTAModel(TaskModel):
    """``model`` predicting on every view of :class:`TTAConfig` and combining them.
    ``flip_perm``: landmarks' left/right swap (the template's flip permutation)."""

    def __init__(
        self,
        model: TaskModel,
        config: TTAConfig = TTAConfig(),
        flip_perm: list[int] | None = None,
    ):
        nn.Module.__init__(self)
        self.inner = model
        # TaskModel (tasks/base.py) types backbone as a Module; a TTA of an ensemble has none
        self.backbone = getattr(model, "backbone", None)  # type: ignore[assignment]
        self.task = model.task
        self.config = config
        self.flip_perm = list(flip_perm) if flip_perm is not None else None
        self.main_metric = model.main_metric
        self.higher_is_better = model.higher_is_better
        if self.task == "landmarks":
            self.heatmap_stride = heatmap_stride_of(model)
        if self.task == "autoencode":
            raise ValueError("test-time augmentation does not apply to autoencoders")

    def views(self, size: int) -> list[tuple[bool, int]]:
        """(mirrored, side in px) of every view of a size × size input; the first is the
        input itself."""
        out = [(False, size)]
        if self.config.flip:
            out.append((True, size))
        for s in self.config.scales:
            side = max(SIZE_STEP, math.floor(size * s / SIZE_STEP + 0.5) * SIZE_STEP)
            if side != size and (False, side) not in out:
                out.append((False, side))
        return out

    def _dense(self, x: Tensor) -> Tensor:
        m = self.inner
        z = m(x).float()
        if self.task == "classify":
            return probabilistic(m).probabilities(z)
        if self.task == "segment":
            return torch.softmax(z, dim=1) if not isinstance(m, EnsembleModel) else z.exp()
        return z  # landmarks: heatmaps

    @torch.no_grad()
    def predict_step(self, images: Tensor) -> list[dict[str, Any]]:
        """The task's ``predict_step`` outputs, combined over the views (network-input
        pixels of ``images``)."""
        h, w = images.shape[-2:]
        outs: list[Any] = []
        with eval_mode(self):
            for flipped, side in self.views(int(h)):
                x = torch.flip(images, dims=[3]) if flipped else images
                if side != h:
                    x = F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False)
                if self.task == "detect":
                    dets = self.inner.predict_step(x)
                    outs.append([self._box_back(d, flipped, side, (h, w)) for d in dets])
                    continue
                y = self._dense(x)
                if flipped and self.task != "classify":
                    y = torch.flip(y, dims=[3])
                    if self.task == "landmarks" and self.flip_perm is not None:
                        y = y[:, self.flip_perm]
                if self.task != "classify" and y.shape[-2:] != self._out_size(h, w):
                    y = F.interpolate(y, size=self._out_size(h, w), mode="bilinear",
                                      align_corners=False)  # fmt: skip
                outs.append(y)
        if self.task == "detect":
            return [fuse_boxes([o[i] for o in outs]) for i in range(len(images))]
        mean = torch.stack(outs).mean(dim=0)
        if self.task == "classify":
            return [{"probs": p} for p in mean]
        if self.task == "segment":
            return [{"mask": p.argmax(0), "probs": p} for p in mean]
        return [{"keypoints": k} for k in decode_heatmaps(mean, self.heatmap_stride)]

    def _out_size(self, h: int, w: int) -> tuple[int, int]:
        if self.task == "landmarks":
            s = self.heatmap_stride
            return (-(-h // s), -(-w // s))
        return (h, w)

    @staticmethod
    def _box_back(
        det: dict[str, Any], flipped: bool, side: int, hw: tuple[int, int]
    ) -> dict[str, Any]:
        b = torch.as_tensor(det["boxes"]).float().clone().reshape(-1, 4)
        if flipped:
            b = torch.stack([side - b[:, 2], b[:, 1], side - b[:, 0], b[:, 3]], dim=1)
        b[:, 0::2] *= hw[1] / side
        b[:, 1::2] *= hw[0] / side
        return {"boxes": b, "scores": det["scores"], "labels": det["labels"]}

    def training_step(self, images: Tensor, targets: list[dict[str, Any]]) -> dict[str, Tensor]:
        raise RuntimeError("test-time augmentation is for prediction only")


def with_tta(project: Any, model: TaskModel, spec: Any, config: TTAConfig = TTAConfig()):
    """``model`` (a run's, as :func:`~tlstudio.ml.runner.load_run_model` returns it) wrapped
    in a :class:`TTAModel`, with the landmark template's left/right swap."""
    perm = None
    if spec.task == "landmarks" and spec.template_id is not None:
        perm = project.template(spec.template_id).flip_permutation()
    return TTAModel(model, config, perm).eval()
