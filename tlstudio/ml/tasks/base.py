"""The contract between datasets, task models, the trainer and metrics.

A batch is ``(images, targets)``: ``images`` is a float tensor N×3×H×W already
normalised for the backbone; ``targets`` is a list of N dicts. Coordinates in
targets and predictions are pixels of the *network input* (H×W); the dataset
records ``orig_size`` (height, width of the stored image) so predictions can be
scaled back to image pixels with :func:`to_image_frame`.

Target keys per task (all tensors on the batch's device):
- classify:   "label" (int64 scalar) or, multi-label, "labels" (float C multi-hot)
- detect:     "boxes" (K×4 float xyxy), "labels" (K int64, 1..C; 0 is background)
- landmarks:  "keypoints" (P×3 float: x, y, visibility 0/1/2) — one template
              instance per image
- segment:    "mask" (H×W int64, 0 = background, 1..C = class index)
- instances:  "boxes", "labels" as detect, "masks" (K×H×W uint8, one object each) and,
              where the image has an ignore region, "ignore" (H×W bool)
- autoencode: nothing (the input is the target)
Every target also carries "image_id" (int) and "orig_size" ((h, w) ints).

Class indices in the ml layer are 0..C-1 positions in the project's class
order (``Project.classes()``), not database ids; for detection and
segmentation 0 is background and class i is stored as i + 1.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from tlstudio.ml.tasks.registry import TASK_NAMES

TASKS = TASK_NAMES  # the registry's names (tlstudio.ml.tasks.registry)


class TaskModel(nn.Module):
    """A backbone plus a task head. Subclasses implement the three steps."""

    task: str = ""
    #: name of the validation metric used for model selection, and its direction
    main_metric: str = "val_loss"
    higher_is_better: bool = False

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone

    def training_step(
        self, images: torch.Tensor, targets: list[dict[str, Any]]
    ) -> dict[str, torch.Tensor]:
        """Losses for one batch; must contain "loss" (the sum that is back-propagated)."""
        raise NotImplementedError

    @torch.no_grad()
    def predict_step(self, images: torch.Tensor) -> list[dict[str, Any]]:
        """Decoded outputs per image, coordinates in network-input pixels.

        classify: {"probs": C floats}; detect: {"boxes": K×4, "scores": K, "labels": K (0..C-1)};
        landmarks: {"keypoints": P×3 (x, y, confidence)}; segment: {"mask": H×W int64, 0 = background};
        instances: detect's keys and "mask_probs" K×M×M (each object's grid over its box);
        autoencode: {"latent": D floats, "error": float (mean squared reconstruction error)}.
        """
        raise NotImplementedError

    def validation_loss(
        self, images: torch.Tensor, targets: list[dict[str, Any]]
    ) -> dict[str, torch.Tensor]:
        """Losses on a validation batch (model in eval mode). Default: training_step."""
        return self.training_step(images, targets)


def to_image_frame(
    pred: dict[str, Any], input_hw: tuple[int, int], orig_hw: tuple[int, int]
) -> dict[str, Any]:
    """Scale a prediction's coordinates from network-input pixels to image pixels; an
    instance prediction's "mask_probs" are pasted into "objects" (a list of
    :class:`~tlstudio.runtime.objects.ObjectMask`, one per box, at the image's size,
    "image_size" = ``orig_hw``)."""
    sy = orig_hw[0] / input_hw[0]
    sx = orig_hw[1] / input_hw[1]
    out = dict(pred)
    if "boxes" in pred:
        b = torch.as_tensor(pred["boxes"], dtype=torch.float32).clone()
        b[:, 0::2] *= sx
        b[:, 1::2] *= sy
        out["boxes"] = b
    if "keypoints" in pred:
        k = torch.as_tensor(pred["keypoints"], dtype=torch.float32).clone()
        k[:, 0] *= sx
        k[:, 1] *= sy
        out["keypoints"] = k
    if "mask_probs" in pred:  # instances: each object's pixels at the image's size
        from tlstudio.runtime.objects import grid_offset, paste_objects

        out["objects"] = paste_objects(
            np.asarray(pred["mask_probs"], np.float32), out["boxes"].numpy(), orig_hw,
            grid_offset(input_hw, orig_hw),
        )  # fmt: skip
        out["image_size"] = tuple(orig_hw)
    if "point_spread" in pred:  # an ensemble's per-point x, y spread
        sp = torch.as_tensor(pred["point_spread"], dtype=torch.float32).clone()
        sp[:, 0] *= sx
        sp[:, 1] *= sy
        out["point_spread"] = sp
    if "mask" in pred:
        m = torch.as_tensor(pred["mask"])[None, None].float()
        out["mask"] = torch.nn.functional.interpolate(m, size=tuple(orig_hw), mode="nearest-exact")[
            0, 0
        ].long()
    return out
