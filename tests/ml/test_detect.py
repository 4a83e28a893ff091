"""Detection: FCOS and Faster R-CNN over our Backbone, in network-input pixels.

The overfitting tests use a tiny stand-in backbone (the real :class:`Backbone` class,
BatchNorm momentum 0.1) so that 2 images are learned in a few seconds on CPU; the
registry backbone test checks loss decrease and output format only.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torchvision.ops import box_iou

from tlstudio.ml.backbones import Backbone, BackboneSpec, StageInfo, build_backbone
from tlstudio.ml.freezing import set_freeze_depth
from tlstudio.ml.tasks.detect import DetectorModel
from tlstudio.ml.tasks.factory import build_task_model

S = 64


def tiny_backbone(widths: tuple[int, ...] = (16, 24, 32, 48, 64)) -> Backbone:
    """Five stride-2 stages (strides 2..32) honouring the Backbone contract."""
    stages: list[nn.Module] = []
    infos = []
    c = 3
    for i, w in enumerate(widths):
        stages.append(
            nn.Sequential(
                nn.Conv2d(c, w, 3, 2, 1, bias=False),
                nn.BatchNorm2d(w),
                nn.ReLU(inplace=True),
                nn.Conv2d(w, w, 3, 1, 1, bias=False),
                nn.BatchNorm2d(w),
                nn.ReLU(inplace=True),
            )
        )
        infos.append(StageInfo(f"s{i}", w, 2 ** (i + 1)))
        c = w
    spec = BackboneSpec("tiny", "tiny", S, (0.5,) * 3, (0.25,) * 3, tuple(infos), 0, None, None)
    return Backbone(spec, stages)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _two_boxes():
    """Two normalised images, one object each: a grey square (class index 0, label 1)
    and a red rectangle (class index 1, label 2)."""
    images = torch.full((2, 3, S, S), -1.0)
    images[0, :, 12:40, 8:36] = 1.0
    images[1, 0, 20:52, 30:56] = 1.5
    images[1, 1:, 20:52, 30:56] = -0.5
    targets = [
        {
            "boxes": torch.tensor([[8.0, 12.0, 36.0, 40.0]]),
            "labels": torch.tensor([1]),
            "image_id": 1,
            "orig_size": (S, S),
        },
        {
            "boxes": torch.tensor([[30.0, 20.0, 56.0, 52.0]]),
            "labels": torch.tensor([2]),
            "image_id": 2,
            "orig_size": (S, S),
        },
    ]
    return images, targets


def _overfit(model, images, targets, steps, lr=1e-3):
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    losses = []
    for _ in range(steps):
        loss = model.training_step(images, targets)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses


def _check_format(preds, num_classes):
    for p in preds:
        k = p["boxes"].shape[0]
        assert (
            p["boxes"].shape == (k, 4) and p["scores"].shape == (k,) and p["labels"].shape == (k,)
        )
        assert p["labels"].dtype == torch.int64
        if k:
            assert int(p["labels"].min()) >= 0 and int(p["labels"].max()) < num_classes
            assert float(p["boxes"].min()) >= 0 and float(p["boxes"].max()) <= S
            assert (p["boxes"][:, 2:] >= p["boxes"][:, :2]).all()
            assert ((p["scores"] >= 0.05) & (p["scores"] <= 1)).all()
            assert (p["scores"][:-1] >= p["scores"][1:]).all()  # sorted


@pytest.mark.slow
@pytest.mark.parametrize(("arch", "steps"), [("fcos", 60), ("fasterrcnn", 50)])
def test_detector_overfits_two_boxes(arch, steps):
    images, targets = _two_boxes()
    model = DetectorModel(tiny_backbone(), 2, arch=arch, input_size=S, fpn_channels=64)
    assert (model.main_metric, model.higher_is_better) == ("map50", True)
    losses = _overfit(model, images, targets, steps)
    assert losses[-1] < 0.5 * losses[0]
    preds = model.predict_step(images)
    assert model.training  # mode restored
    _check_format(preds, 2)
    for p, t in zip(preds, targets, strict=True):
        assert float(box_iou(p["boxes"][:1], t["boxes"])[0, 0]) > 0.5
        assert int(p["labels"][0]) == int(t["labels"][0]) - 1  # 1..C -> 0..C-1


@pytest.mark.parametrize("arch", ["fcos", "fasterrcnn"])
def test_detector_sees_the_images_unchanged(arch):
    """No re-normalisation and no resizing: the backbone gets exactly our tensor."""
    model = DetectorModel(tiny_backbone(), 1, arch=arch, input_size=S).eval()
    seen = []
    model.backbone.stages[0].register_forward_pre_hook(lambda m, a: seen.append(a[0]))
    images = torch.rand(2, 3, S, S) * 4 - 2
    model.predict_step(images)
    assert torch.equal(seen[-1], images)
    # an input size that is not a multiple of 32 is padded bottom/right, never scaled
    odd = torch.rand(1, 3, 50, 50)
    model.predict_step(odd)
    assert seen[-1].shape[-2:] == (64, 64)
    assert torch.equal(seen[-1][..., :50, :50], odd)
    assert float(seen[-1][..., 50:, :].abs().sum()) == 0.0


def test_validation_loss_is_repeatable_and_keeps_modes():
    images, targets = _two_boxes()
    for arch in ("fcos", "fasterrcnn"):
        model = DetectorModel(tiny_backbone(), 2, arch=arch, input_size=S)
        stats = model.backbone.stages[0][1].running_mean.clone()
        model.eval()
        with torch.no_grad():
            a = model.validation_loss(images, targets)
            b = model.training_step(images, targets)  # eval mode -> validation loss
        assert set(a) >= {"loss"} and len(a) > 2
        torch.testing.assert_close(a["loss"], b["loss"])
        assert not model.training and not model.detector.training
        assert torch.equal(model.backbone.stages[0][1].running_mean, stats)  # BN untouched
        model.train()
        with torch.no_grad():
            model.validation_loss(images, targets)
        assert model.training and model.detector.training and model.backbone.training


def test_detector_over_registry_backbone_with_freezing():
    images, targets = _two_boxes()
    bb = build_backbone("mobilenet_v3_small", "none")
    model = build_task_model("detect", bb, num_classes=2, input_size=S)
    assert model.backbone is bb
    # the Backbone's parameters appear once in the state dict, under "backbone."
    keys = list(model.state_dict())
    assert sum(k.startswith("backbone.") for k in keys) == len(bb.state_dict())
    assert not any(k.startswith("detector.backbone.body") for k in keys)
    set_freeze_depth(model.backbone, 2)
    losses = _overfit(model, images, targets, 15)
    assert losses[-1] < 0.5 * losses[0]
    assert all(p.grad is None for p in model.backbone.stages[0].parameters())
    assert all(p.grad is not None for p in model.backbone.stages[-1].parameters())
    _check_format(model.predict_step(images), 2)


def test_empty_targets_are_allowed():
    images, targets = _two_boxes()
    targets[1] = dict(targets[1], boxes=torch.zeros(0, 4), labels=torch.zeros(0, dtype=torch.long))
    for arch in ("fcos", "fasterrcnn"):
        model = DetectorModel(tiny_backbone(), 2, arch=arch, input_size=S).train()
        out = model.training_step(images, targets)
        assert torch.isfinite(out["loss"])
        with pytest.raises(ValueError, match="1..2"):
            bad = [dict(targets[0], labels=torch.tensor([0]))]
            model.training_step(images[:1], bad)
