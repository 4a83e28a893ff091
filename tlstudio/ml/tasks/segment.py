"""Semantic segmentation: a :class:`~tlstudio.ml.tasks.decoder.UNetDecoder` over the
backbone's stages predicts C + 1 logits per input pixel (channel 0 = background, channel
i + 1 = class i), at the network input's resolution.

Loss: pixel-wise cross-entropy + soft Dice, where the Dice term is averaged over the
foreground classes that occur in the batch's target masks (0 when none does). Target
pixels equal to :data:`IGNORE_INDEX` (the project's ignore regions) count in neither.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor

from tlstudio.ml.tasks.base import TaskModel
from tlstudio.ml.tasks.decoder import decoder_for, eval_mode

if TYPE_CHECKING:
    from tlstudio.ml.backbones import Backbone

IGNORE_INDEX = 255
"""Target value of pixels left out of the loss and the metrics (ignore regions)."""


def soft_dice_loss(probs: Tensor, target: Tensor, eps: float = 1.0) -> Tensor:
    """1 − mean soft Dice over the foreground classes present in ``target``.

    ``probs``: N×(C+1)×H×W softmax probabilities; ``target``: N×H×W int64 in 0..C, or
    :data:`IGNORE_INDEX` for pixels left out. Each class's Dice is computed over the whole
    batch, ``(2Σpt + eps) / (Σp + Σt + eps)``. Returns 0 (with a gradient path) when no
    foreground class is present."""
    k = probs.shape[1]
    valid = target != IGNORE_INDEX
    if not bool(valid.all()):
        probs = probs * valid[:, None].to(probs.dtype)
        target = torch.where(valid, target, torch.zeros_like(target))
    onehot = F.one_hot(target, k).permute(0, 3, 1, 2).to(probs.dtype)
    if not bool(valid.all()):
        onehot = onehot * valid[:, None].to(probs.dtype)
    dims = (0, 2, 3)
    inter = (probs * onehot).sum(dims)
    denom = probs.sum(dims) + onehot.sum(dims)
    dice = (2 * inter + eps) / (denom + eps)
    present = onehot.sum(dims) > 0
    present[0] = False
    if not bool(present.any()):
        return probs.sum() * 0.0
    return 1.0 - dice[present].mean()


class SegmenterModel(TaskModel):
    """Backbone + U-Net decoder → (C + 1)×H×W logits, H×W = the network input size.

    ``dice_weight`` scales the Dice term; ``predict_probs`` adds the softmax maps to the
    predictions (memory: (C + 1)·H·W floats per image).
    """

    task = "segment"
    main_metric = "miou"
    higher_is_better = True
    backbone: Backbone  # set by TaskModel.__init__

    def __init__(
        self,
        backbone: Backbone,
        num_classes: int,
        width: int = 64,
        dice_weight: float = 1.0,
        predict_probs: bool = True,
    ):
        super().__init__(backbone)
        if num_classes < 1:
            raise ValueError(f"segmentation needs at least one class, got {num_classes}")
        self.num_classes = int(num_classes)
        self.dice_weight = float(dice_weight)
        self.predict_probs = bool(predict_probs)
        self.decoder = decoder_for(backbone, num_classes + 1, out_stride=1, width=width)

    def forward(self, images: Tensor) -> Tensor:
        """Normalised images N×3×H×W → logits N×(C+1)×H×W (channel 0 = background)."""
        feats = self.backbone.forward_features(images)
        return self.decoder(feats, output_size=tuple(images.shape[-2:]))

    def loss_from_logits(self, logits: Tensor, targets: list[dict[str, Any]]) -> dict[str, Tensor]:
        """{"loss", "ce", "dice"} of logits N×(C+1)×H×W against the targets' "mask"."""
        mask = torch.stack([torch.as_tensor(t["mask"], device=logits.device) for t in targets])
        mask = mask.long()
        if mask.shape[-2:] != logits.shape[-2:]:
            raise ValueError(
                f"mask size {tuple(mask.shape[-2:])} != input size {tuple(logits.shape[-2:])}"
            )
        labelled = mask[mask != IGNORE_INDEX]
        if labelled.numel() and (int(labelled.min()) < 0 or int(labelled.max()) > self.num_classes):
            raise ValueError(f"mask values must be in 0..{self.num_classes} (or {IGNORE_INDEX})")
        if not labelled.numel():  # every pixel ignored: nothing to learn, a zero with a gradient
            zero = logits.sum() * 0.0
            return {"loss": zero, "ce": zero.detach(), "dice": zero.detach()}
        ce = F.cross_entropy(logits, mask, ignore_index=IGNORE_INDEX)
        dice = soft_dice_loss(torch.softmax(logits, dim=1), mask)
        return {"loss": ce + self.dice_weight * dice, "ce": ce.detach(), "dice": dice.detach()}

    def training_step(self, images: Tensor, targets: list[dict[str, Any]]) -> dict[str, Tensor]:
        """{"loss" = ce + dice_weight·dice, "ce", "dice"} for a batch."""
        return self.loss_from_logits(self(images), targets)

    @torch.no_grad()
    def predict_step(self, images: Tensor) -> list[dict[str, Any]]:
        """{"mask": H×W int64 (0 = background, i + 1 = class i), "probs": (C+1)×H×W}
        per image, in network-input pixels ("probs" only with ``predict_probs``)."""
        with eval_mode(self):
            probs = torch.softmax(self(images).float(), dim=1)
        out = []
        for p in probs:
            item: dict[str, Any] = {"mask": p.argmax(0)}
            if self.predict_probs:
                item["probs"] = p
            out.append(item)
        return out
