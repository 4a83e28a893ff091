"""Object detection with torchvision's FCOS or Faster R-CNN over our backbone.

:class:`BackboneFPN` runs the :class:`~tlstudio.ml.backbones.Backbone` and builds a
feature pyramid (:class:`torchvision.ops.FeaturePyramidNetwork`) over its last stages:
FCOS uses the last 3 (strides 8, 16, 32) plus P6/P7 (``LastLevelP6P7``), Faster R-CNN the
last 4 (strides 4–32) plus a max-pooled level (``LastLevelMaxPool``).

Images reach the model already resized and normalised, so the detector's
``GeneralizedRCNNTransform`` is configured with mean 0, std 1, min_size = max_size =
input size *and* its normalise/resize steps are replaced by the identity (its stock
resize would still run an interpolation, and in training picks a random size from
``min_size``). It still pads the batch to a multiple of 32 so that every pyramid level's
stride is exact for the anchor generator. Boxes therefore stay in network-input pixels
(xyxy, continuous frame) all the way through.

Labels: our targets' "labels" are 1..C (0 = background). Faster R-CNN (softmax with a
background class) is built with C + 1 classes and gets them unchanged; FCOS (one sigmoid
per class, background = no class fires) is built with C classes and gets 0..C-1, so no
score is ever spent on a background channel. Predicted labels are returned as 0..C-1. Freezing acts on ``model.backbone`` (our Backbone), as for every task.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import Tensor, nn

# torchvision ships no stubs or py.typed marker
from torchvision.models.detection import FCOS, FasterRCNN  # type: ignore[import-untyped]
from torchvision.models.detection.anchor_utils import (  # type: ignore[import-untyped]
    AnchorGenerator,
)
from torchvision.models.detection.faster_rcnn import (  # type: ignore[import-untyped]
    FastRCNNPredictor,
    TwoMLPHead,
)
from torchvision.models.detection.transform import (  # type: ignore[import-untyped]
    GeneralizedRCNNTransform,
)
from torchvision.ops import FeaturePyramidNetwork, MultiScaleRoIAlign  # type: ignore[import-untyped]
from torchvision.ops.feature_pyramid_network import (  # type: ignore[import-untyped]
    LastLevelMaxPool,
    LastLevelP6P7,
)

from tlstudio.ml.tasks.base import TaskModel
from tlstudio.ml.tasks.decoder import eval_mode

if TYPE_CHECKING:
    from tlstudio.ml.backbones import Backbone

DetectorArch = Literal["fcos", "fasterrcnn"]


class BackboneFPN(nn.Module):
    """Our Backbone's last ``num_levels`` stages → FPN maps (OrderedDict, ``out_channels`` each).

    The Backbone is referenced, not registered as a submodule: the owning
    :class:`DetectorModel` registers it once as ``model.backbone``, so its parameters are
    not duplicated in ``state_dict``. Output names: "0", "1", ... from the finest level,
    then "p6", "p7" (FCOS) or "pool" (Faster R-CNN).
    """

    body: Backbone  # set with object.__setattr__: referenced, not registered

    def __init__(
        self,
        backbone: Backbone,
        num_levels: int,
        out_channels: int,
        extra_blocks: nn.Module | None,
    ):
        super().__init__()
        stages = backbone.spec.stages
        if not 1 <= num_levels <= len(stages):
            raise ValueError(f"{backbone.spec.name} has {len(stages)} stages, need {num_levels}")
        object.__setattr__(self, "body", backbone)
        self.stage_indices = list(range(len(stages) - num_levels, len(stages)))
        #: strides (input pixels) of the maps from the backbone stages, finest first
        self.strides = [stages[i].stride for i in self.stage_indices]
        self.fpn = FeaturePyramidNetwork(
            [stages[i].channels for i in self.stage_indices], out_channels, extra_blocks
        )
        self.out_channels = out_channels

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        feats = self.body.forward_features(x)
        picked = OrderedDict((str(k), feats[i]) for k, i in enumerate(self.stage_indices))
        return self.fpn(picked)


class _InputFrameTransform(GeneralizedRCNNTransform):
    """GeneralizedRCNNTransform without normalisation or resizing (batching/padding only)
    and without post-processing: boxes need no scaling back (nothing was resized), and
    Mask R-CNN's M×M mask grids stay grids (they are pasted in the image frame by
    :func:`tlstudio.runtime.objects.paste_objects`, at whatever size the image has)."""

    def postprocess(self, result: list[dict[str, Tensor]], image_shapes: Any,
                    original_image_sizes: Any) -> list[dict[str, Tensor]]:  # fmt: skip
        return result

    def normalize(self, image: Tensor) -> Tensor:
        return image

    def resize(
        self, image: Tensor, target: dict[str, Tensor] | None = None
    ) -> tuple[Tensor, dict[str, Tensor] | None]:
        return image, target


def _level_strides(base: list[int], extra: int) -> list[int]:
    return base + [base[-1] * 2 ** (k + 1) for k in range(extra)]


class DetectorModel(TaskModel):
    """Backbone + FPN + FCOS or Faster R-CNN heads; boxes in network-input pixels.

    ``input_size``: the (square) network input, in pixels (recorded in the detector's
    transform config only: nothing is resized, any size works). ``min_score``: detections
    scoring below it are dropped. ``fpn_channels``: width of the pyramid and heads
    (a multiple of 32, FCOS uses GroupNorm(32)). Anchors scale with the level stride s:
    FCOS one point of size s per cell; Faster R-CNN sizes 4·s with ratios 0.5, 1, 2.
    """

    task = "detect"
    main_metric = "map50"
    higher_is_better = True
    backbone: Backbone  # set by TaskModel.__init__

    def __init__(
        self,
        backbone: Backbone,
        num_classes: int,
        arch: DetectorArch = "fcos",
        input_size: int = 224,
        min_score: float = 0.05,
        fpn_channels: int = 128,
        detections_per_image: int = 100,
    ):
        super().__init__(backbone)
        if num_classes < 1:
            raise ValueError(f"detection needs at least one class, got {num_classes}")
        if arch not in ("fcos", "fasterrcnn"):
            raise ValueError(f"unknown detector {arch!r}; use 'fcos' or 'fasterrcnn'")
        if fpn_channels < 32 or fpn_channels % 32:
            raise ValueError(f"fpn_channels must be a positive multiple of 32, got {fpn_channels}")
        if not 0.0 <= min_score < 1.0:
            raise ValueError(f"min_score must be in [0, 1), got {min_score}")
        self.num_classes = int(num_classes)
        self.arch = arch
        self.input_size = int(input_size)
        self.min_score = float(min_score)
        common: dict[str, Any] = {
            "min_size": self.input_size,
            "max_size": self.input_size,
            "image_mean": [0.0, 0.0, 0.0],
            "image_std": [1.0, 1.0, 1.0],
        }
        if arch == "fcos":
            body = BackboneFPN(backbone, 3, fpn_channels, LastLevelP6P7(fpn_channels, fpn_channels))
            strides = _level_strides(body.strides, 2)
            anchors = AnchorGenerator(tuple((s,) for s in strides), ((1.0,),) * len(strides))
            self.detector: nn.Module = FCOS(
                body,
                num_classes,
                anchor_generator=anchors,
                score_thresh=min_score,
                detections_per_img=detections_per_image,
                **common,
            )
            # torchvision's FCOS regresses relu(conv) with zero bias: on a handful of
            # images a side whose output starts negative everywhere never gets a
            # gradient. Start every side at one stride from the point instead.
            nn.init.constant_(self.detector.head.regression_head.bbox_reg.bias, 1.0)
        else:
            body = BackboneFPN(backbone, 4, fpn_channels, LastLevelMaxPool())
            strides = _level_strides(body.strides, 1)
            anchors = AnchorGenerator(
                tuple((4 * s,) for s in strides), ((0.5, 1.0, 2.0),) * len(strides)
            )
            rep = 256
            self.detector = self._two_stage(
                body,
                rpn_anchor_generator=anchors,
                box_roi_pool=MultiScaleRoIAlign(
                    self.level_names(body), output_size=7, sampling_ratio=2
                ),
                box_head=TwoMLPHead(fpn_channels * 7 * 7, rep),
                box_predictor=FastRCNNPredictor(rep, num_classes + 1),
                box_score_thresh=min_score,
                # 128 sampled RoIs per image (torchvision: 512) is plenty for a few
                # objects per image and 4× cheaper (RoIAlign backward dominates on CPU).
                box_batch_size_per_image=128,
                box_detections_per_img=detections_per_image,
                **common,
            )
        #: torchvision label = ours - offset
        self._label_offset = 1 if arch == "fcos" else 0
        # Pad to the coarsest backbone stride so anchor strides (image // map size) are exact.
        self.detector.transform = _InputFrameTransform(size_divisible=max(body.strides), **common)

    @staticmethod
    def level_names(body: BackboneFPN) -> list[str]:
        """Names of the pyramid maps from the backbone's stages (RoI pooling reads them)."""
        return [str(k) for k in range(len(body.strides))]

    def _two_stage(self, body: BackboneFPN, **options: Any) -> nn.Module:
        """The two-stage detector over ``body`` with torchvision's keyword ``options``:
        Faster R-CNN here; the instance task adds Mask R-CNN's mask branch."""
        return FasterRCNN(body, None, **options)

    @property
    def head(self) -> nn.Module:
        """Everything but the backbone: FPN and detection heads (the torchvision model,
        which does not register our Backbone)."""
        return self.detector

    def _to_tv_targets(self, targets: list[dict[str, Any]], device: torch.device) -> list[dict]:
        out = []
        for t in targets:
            boxes = torch.as_tensor(t["boxes"], device=device).float().reshape(-1, 4)
            labels = torch.as_tensor(t["labels"], device=device).long().reshape(-1)
            if labels.numel() and (int(labels.min()) < 1 or int(labels.max()) > self.num_classes):
                raise ValueError(f"box labels must be in 1..{self.num_classes} (0 is background)")
            out.append({"boxes": boxes, "labels": labels - self._label_offset})
        return out

    def _losses(self, images: Tensor, targets: list[dict[str, Any]]) -> dict[str, Tensor]:
        losses = self.detector(list(images), self._to_tv_targets(targets, images.device))
        out = {"loss": sum(losses.values())}
        out.update({k: v.detach() for k, v in losses.items()})
        return out

    def training_step(self, images: Tensor, targets: list[dict[str, Any]]) -> dict[str, Tensor]:
        """{"loss" (sum), and each torchvision loss term (detached)} for a batch; targets
        carry "boxes" K×4 xyxy input pixels and "labels" K in 1..C. In eval mode this is
        :meth:`validation_loss`."""
        if not self.training:
            return self.validation_loss(images, targets)
        return self._losses(images, targets)

    def validation_loss(self, images: Tensor, targets: list[dict[str, Any]]) -> dict[str, Tensor]:
        """Loss terms on a validation batch. torchvision computes losses only in training
        mode, so the detector runs in training mode with the backbone, FPN and everything
        else that has BatchNorm/dropout state in eval mode; the random proposal sampling
        of Faster R-CNN is seeded, so the value is repeatable. The mode is restored."""
        was_training = self.training
        devices = [images.device] if images.device.type == "cuda" else []
        try:
            self.eval()
            self.detector.train()
            self.detector.get_submodule("backbone").eval()
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(0)
                return self._losses(images, targets)
        finally:
            self.train(was_training)

    def forward(self, images: Tensor) -> list[dict[str, Tensor]]:
        """Raw torchvision detections per image (eval mode only): "boxes" K×4 xyxy input
        pixels, "scores" K, "labels" K (torchvision's: 0..C-1 for FCOS, 1..C for Faster
        R-CNN; :meth:`predict_step` returns 0..C-1 for both)."""
        if self.training:
            raise RuntimeError("DetectorModel.forward needs eval mode; use training_step")
        return self.detector(list(images))

    @torch.no_grad()
    def predict_step(self, images: Tensor) -> list[dict[str, Any]]:
        """{"boxes": K×4 xyxy, "scores": K in [0, 1], "labels": K in 0..C-1} per image,
        boxes in network-input pixels, sorted by score, scores >= ``min_score``."""
        with eval_mode(self):
            dets = self.detector(list(images))
        return [self._decoded(d, d["scores"].argsort(descending=True)) for d in dets]

    def _decoded(self, det: dict[str, Tensor], order: Tensor) -> dict[str, Any]:
        """One image's torchvision output as :meth:`predict_step` returns it, in ``order``."""
        return {
            "boxes": det["boxes"][order].float(),
            "scores": det["scores"][order].float(),
            "labels": det["labels"][order] + self._label_offset - 1,
        }
