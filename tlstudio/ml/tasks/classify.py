"""Image classification: pooled backbone features → linear or MLP head → class logits.

Single-label: softmax over C classes, cross-entropy loss (optionally label-smoothed and
class-weighted). Multi-label: one sigmoid per class, binary cross-entropy. Targets follow
:mod:`tlstudio.ml.tasks.base` ("label" int64 scalar, or "labels" C multi-hot floats); when
every target carries "soft_label" (mix-up/CutMix, C floats) those are used instead.
"""

from __future__ import annotations

from typing import Any, Literal, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tlstudio.ml.tasks.base import TaskModel
from tlstudio.ml.tasks.decoder import eval_mode

HeadKind = Literal["linear", "mlp", "knn"]


def make_classifier_head(
    in_features: int,
    num_classes: int,
    head: HeadKind = "linear",
    hidden: int = 256,
    dropout: float = 0.2,
    neighbours: int = 0,
    knn_k: int = 5,
) -> nn.Sequential:
    """``linear``: Dropout → Linear; ``mlp``: Linear → ReLU → Dropout → Linear; ``knn``:
    a vote of the ``knn_k`` nearest of ``neighbours`` stored training features
    (:class:`~tlstudio.ml.linear_heads.NeighbourVote`, fitted by a few-shot run).

    For linear and mlp the last module is the ``nn.Linear`` that produces the logits
    (class activation maps read its weight)."""
    if head == "knn":
        from tlstudio.ml.linear_heads import NeighbourVote

        return nn.Sequential(NeighbourVote(in_features, num_classes, neighbours, knn_k))
    if head == "linear":
        return nn.Sequential(nn.Dropout(dropout), nn.Linear(in_features, num_classes))
    if head == "mlp":
        if hidden < 1:
            raise ValueError(f"an MLP head needs hidden >= 1, got {hidden}")
        return nn.Sequential(
            nn.Linear(in_features, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )
    raise ValueError(f"unknown classifier head {head!r}; use 'linear', 'mlp' or 'knn'")


class ClassifierModel(TaskModel):
    """Backbone + classification head.

    ``class_weights`` (C floats): per-class weights of the cross-entropy (single-label)
    or ``pos_weight`` of the binary cross-entropy (multi-label). ``label_smoothing`` ε:
    single-label as in :func:`torch.nn.functional.cross_entropy`; multi-label targets
    become ``y·(1-ε) + ε/2``.
    """

    task = "classify"
    class_weights: Tensor | None  # a buffer (moves with the model, saved in state_dict)

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        head: HeadKind = "linear",
        hidden: int = 256,
        dropout: float = 0.2,
        multi_label: bool = False,
        label_smoothing: float = 0.0,
        class_weights: Tensor | None = None,
        neighbours: int = 0,
        knn_k: int = 5,
    ):
        super().__init__(backbone)
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if not multi_label and num_classes < 2:
            raise ValueError("single-label classification needs at least 2 classes")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.num_classes = int(num_classes)
        self.multi_label = bool(multi_label)
        self.label_smoothing = float(label_smoothing)
        #: divides the logits in :meth:`probabilities` (temperature scaling, fitted after
        #: training by :mod:`tlstudio.ml.calibration`); a plain attribute, not a weight
        self.temperature = 1.0
        self.main_metric = "f1_macro" if multi_label else "accuracy"
        self.higher_is_better = True
        # a Backbone's property or a stand-in's attribute; nn.Module types attributes as
        # Tensor | Module
        in_features = cast(int, backbone.out_channels)
        self.head = make_classifier_head(
            in_features, num_classes, head, hidden, dropout, neighbours, knn_k
        )
        if class_weights is not None:
            class_weights = torch.as_tensor(class_weights, dtype=torch.float32).flatten()
            if class_weights.numel() != num_classes:
                raise ValueError(
                    f"class_weights has {class_weights.numel()} entries for {num_classes} classes"
                )
        self.register_buffer("class_weights", class_weights)

    def forward(self, images: Tensor) -> Tensor:
        """Normalised images N×3×H×W → logits N×C."""
        return self.head(self.backbone(images))

    def forward_from_features(self, features: Tensor) -> Tensor:
        """Pooled backbone features N×``backbone.out_channels`` (e.g. cached) → logits N×C."""
        return self.head(features)

    def probabilities(self, logits: Tensor) -> Tensor:
        """Logits → softmax (single-label, rows sum to 1) or sigmoid (multi-label) probabilities,
        of the logits divided by :attr:`temperature`."""
        if self.temperature != 1.0:
            logits = logits / self.temperature
        return torch.sigmoid(logits) if self.multi_label else torch.softmax(logits, dim=-1)

    def loss_from_logits(self, logits: Tensor, targets: list[dict[str, Any]]) -> dict[str, Tensor]:
        """Loss of logits N×C against the batch's targets: {"loss"}."""
        dev = logits.device
        if targets and all("soft_label" in t for t in targets):
            y = torch.stack([torch.as_tensor(t["soft_label"], device=dev) for t in targets])
            y = y.float()
        elif self.multi_label:
            y = torch.stack([torch.as_tensor(t["labels"], device=dev) for t in targets]).float()
        else:
            y = torch.stack([torch.as_tensor(t["label"], device=dev) for t in targets]).long()
        w = self.class_weights
        if self.multi_label:
            if self.label_smoothing:
                y = y * (1.0 - self.label_smoothing) + 0.5 * self.label_smoothing
            loss = F.binary_cross_entropy_with_logits(logits, y, pos_weight=w)
        else:
            loss = F.cross_entropy(logits, y, weight=w, label_smoothing=self.label_smoothing)
        return {"loss": loss}

    def training_step(self, images: Tensor, targets: list[dict[str, Any]]) -> dict[str, Tensor]:
        """{"loss"} for a batch (cross-entropy, or binary cross-entropy for multi-label)."""
        return self.loss_from_logits(self(images), targets)

    @torch.no_grad()
    def predict_step(self, images: Tensor) -> list[dict[str, Any]]:
        """{"probs": C floats} per image (eval mode): softmax (sums to 1) or per-class sigmoid."""
        with eval_mode(self):
            probs = self.probabilities(self(images).float())
        return [{"probs": p} for p in probs]
