"""Instance segmentation: torchvision's Mask R-CNN over our backbone's feature pyramid.

Everything but the mask branch is the detection task's Faster R-CNN
(:class:`~tlstudio.ml.tasks.detect.DetectorModel`: the same :class:`BackboneFPN` over the
last 4 stages, anchors, RoI heads and input-frame transform); the mask branch pools 14×14
features per object (``MultiScaleRoIAlign``), runs four 3×3 convolutions of
``fpn_channels`` and predicts one 28×28 probability grid per class.

Targets (network-input pixels): "boxes" K×4 xyxy, "labels" K in 1..C and "masks" K×H×W
(uint8, one object each); optionally "ignore" H×W bool (pixels left out of the metrics).
Predictions: "boxes", "scores", "labels" (0..C-1) as detection returns them, and
"mask_probs" K×28×28: each object's probability grid over its box, to paste at any image
size with :func:`tlstudio.runtime.objects.paste_objects` (not pasted here: a grid is 3 KB,
a full-size mask per object is not).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

# torchvision ships no stubs or py.typed marker
from torchvision.models.detection import MaskRCNN  # type: ignore[import-untyped]
from torchvision.models.detection.mask_rcnn import (  # type: ignore[import-untyped]
    MaskRCNNHeads,
    MaskRCNNPredictor,
)
from torchvision.ops import MultiScaleRoIAlign  # type: ignore[import-untyped]

from tlstudio.ml.tasks.detect import BackboneFPN, DetectorModel

if TYPE_CHECKING:
    from tlstudio.ml.backbones import Backbone

MASK_POOL = 14  # RoI features per object side; the predicted grid is twice that


class InstanceModel(DetectorModel):
    """Backbone + FPN + Mask R-CNN; boxes in network-input pixels, masks as grids.

    Options as :class:`DetectorModel`'s Faster R-CNN (``input_size``, ``min_score``,
    ``fpn_channels``, ``detections_per_image``)."""

    task = "instances"
    main_metric = "segm_map50"
    higher_is_better = True

    def __init__(
        self,
        backbone: Backbone,
        num_classes: int,
        input_size: int = 224,
        min_score: float = 0.05,
        fpn_channels: int = 128,
        detections_per_image: int = 100,
    ):
        super().__init__(
            backbone, num_classes, arch="fasterrcnn", input_size=input_size,
            min_score=min_score, fpn_channels=fpn_channels,
            detections_per_image=detections_per_image,
        )  # fmt: skip

    def _two_stage(self, body: BackboneFPN, **options: Any) -> nn.Module:
        width = body.out_channels
        return MaskRCNN(
            body,
            None,
            mask_roi_pool=MultiScaleRoIAlign(
                self.level_names(body), output_size=MASK_POOL, sampling_ratio=2
            ),
            mask_head=MaskRCNNHeads(width, (width,) * 4, 1),
            mask_predictor=MaskRCNNPredictor(width, width, self.num_classes + 1),
            **options,
        )

    def _to_tv_targets(self, targets: list[dict[str, Any]], device: torch.device) -> list[dict]:
        out = super()._to_tv_targets(targets, device)
        for tv, t in zip(out, targets, strict=True):
            masks = torch.as_tensor(t["masks"], device=device).to(torch.uint8)
            if masks.ndim != 3 or len(masks) != len(tv["labels"]):
                raise ValueError(
                    f"instance targets need one H×W mask per box: {len(tv['labels'])} boxes, "
                    f"masks of shape {tuple(masks.shape)}"
                )
            tv["masks"] = masks
        return out

    def _decoded(self, det: dict[str, Tensor], order: Tensor) -> dict[str, Any]:
        out = super()._decoded(det, order)
        out["mask_probs"] = det["masks"][order, 0].float()
        return out
