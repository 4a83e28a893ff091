"""Task models: losses fall when overfitting a few fixed samples, predictions have the
right shapes, ranges and coordinate frames, and the factory rejects bad settings.

Most overfitting tests use a tiny stand-in backbone (the real :class:`Backbone` class
over five conv stages, BatchNorm momentum 0.1) because it trains in a few seconds on
CPU and its running statistics settle quickly enough for eval-mode predictions; each
task also runs once over a registry backbone (mobilenet_v3_small, random weights).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from tlstudio.core.errors import TlsError
from tlstudio.ml.backbones import Backbone, BackboneSpec, StageInfo, build_backbone, list_backbones
from tlstudio.ml.freezing import set_freeze_depth
from tlstudio.ml.tasks.autoencode import AutoencoderModel
from tlstudio.ml.tasks.classify import ClassifierModel
from tlstudio.ml.tasks.decoder import UNetDecoder
from tlstudio.ml.tasks.factory import TaskConfigError, build_task_model
from tlstudio.ml.tasks.landmarks import (
    LandmarkModel,
    decode_heatmaps,
    render_heatmaps,
    to_heatmap_frame,
)
from tlstudio.ml.tasks.segment import SegmenterModel

S = 64  # network input size used throughout


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


def overfit(model: nn.Module, images, targets, steps: int, lr: float = 1e-3) -> list[float]:
    """Train on one fixed batch; return the loss of every step."""
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


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _noise_images(n: int) -> torch.Tensor:
    return torch.randn(n, 3, S, S)


# --------------------------------------------------------------------------- decoder


@pytest.mark.parametrize("out_stride", [1, 2, 4])
def test_decoder_shapes_for_every_registered_stage_layout(out_stride):
    for spec in list_backbones():
        chans = [s.channels for s in spec.stages]
        strides = [s.stride for s in spec.stages]
        dec = UNetDecoder(chans, strides, out_channels=5, out_stride=out_stride, width=16).eval()
        feats = [
            torch.randn(1, c, math.ceil(S / s), math.ceil(S / s))
            for c, s in zip(chans, strides, strict=True)
        ]
        out = dec(feats)
        assert out.shape == (1, 5, S // out_stride, S // out_stride), spec.name
        # an explicit size is honoured exactly, even an odd one
        assert dec(feats, output_size=(21, 17)).shape == (1, 5, 21, 17)


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_small", "convnext_tiny", "vgg16_bn"])
def test_decoder_over_real_backbones(name):
    bb = build_backbone(name, "none")
    stages = bb.spec.stages
    dec = UNetDecoder([s.channels for s in stages], [s.stride for s in stages], 3, 1, 16)
    with torch.no_grad():
        feats = bb.forward_features(torch.randn(1, 3, S, S))
        assert dec.eval()(feats).shape == (1, 3, S, S)
        dec4 = UNetDecoder([s.channels for s in stages], [s.stride for s in stages], 2, 4, 16)
        assert dec4.eval()(feats).shape == (1, 2, S // 4, S // 4)
        # an input size that no stride divides: the caller asks for the exact size
        feats = bb.forward_features(torch.randn(1, 3, 70, 70))
        assert dec(feats, output_size=(70, 70)).shape == (1, 3, 70, 70)


def test_decoder_rejects_bad_layouts():
    with pytest.raises(ValueError):
        UNetDecoder([8, 16], [2], 1)
    with pytest.raises(ValueError):
        UNetDecoder([8, 16], [4, 2], 1)
    with pytest.raises(ValueError):
        UNetDecoder([8], [4], 1, out_stride=3)
    with pytest.raises(ValueError):
        UNetDecoder([8], [4], 1, out_stride=8)


# --------------------------------------------------------------------------- classify


def _class_targets(labels):
    return [
        {"label": torch.tensor(v), "image_id": i, "orig_size": (S, S)} for i, v in enumerate(labels)
    ]


def test_classifier_overfits_and_probs_sum_to_one():
    images = _noise_images(4)
    targets = _class_targets([0, 1, 2, 1])
    model = ClassifierModel(tiny_backbone(), 3, head="mlp", hidden=32, dropout=0.0)
    assert (model.main_metric, model.higher_is_better) == ("accuracy", True)
    losses = overfit(model, images, targets, 40)
    assert losses[-1] < 0.5 * losses[0]
    preds = model.predict_step(images)
    probs = torch.stack([p["probs"] for p in preds])
    assert probs.shape == (4, 3)
    torch.testing.assert_close(probs.sum(1), torch.ones(4))
    assert probs.argmax(1).tolist() == [0, 1, 2, 1]
    assert model.training  # predict_step restores the mode


def test_classifier_multi_label_probs_in_unit_interval():
    images = _noise_images(4)
    y = torch.tensor([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 0]], dtype=torch.float32)
    targets = [{"labels": y[i]} for i in range(4)]
    model = ClassifierModel(tiny_backbone(), 3, multi_label=True, dropout=0.0)
    assert model.main_metric == "f1_macro"
    losses = overfit(model, images, targets, 40)
    assert losses[-1] < 0.5 * losses[0]
    probs = torch.stack([p["probs"] for p in model.predict_step(images)])
    assert ((probs >= 0) & (probs <= 1)).all()
    assert not torch.allclose(probs.sum(1), torch.ones(4))  # independent sigmoids
    assert ((probs > 0.5).float() == y).all()


def test_classifier_real_backbone_and_cached_feature_path():
    bb = build_backbone("mobilenet_v3_small", "none")
    model = build_task_model("classify", bb, num_classes=2, dropout=0.0)
    images = _noise_images(2)
    losses = overfit(model, images, _class_targets([0, 1]), 15)
    assert losses[-1] < 0.5 * losses[0]
    model.eval()
    with torch.no_grad():
        feats = model.backbone(images)
        torch.testing.assert_close(model.forward_from_features(feats), model(images))
    assert isinstance(model.head, nn.Module)
    assert isinstance(model.head[-1], nn.Linear)


def test_classifier_soft_labels_weights_and_smoothing():
    model = ClassifierModel(tiny_backbone(), 2, class_weights=torch.tensor([1.0, 3.0]))
    logits = torch.tensor([[2.0, -1.0], [0.5, 1.5]])
    hard = _class_targets([0, 1])
    soft = [dict(t, soft_label=torch.tensor([1.0, 0.0])) for t in hard]
    # soft labels replace hard ones: both images are now "class 0"
    w = torch.tensor([1.0, 3.0])
    expected = nn.functional.cross_entropy(logits, torch.tensor([0, 0]), weight=w)
    torch.testing.assert_close(model.loss_from_logits(logits, soft)["loss"], expected)
    expected = nn.functional.cross_entropy(logits, torch.tensor([0, 1]), weight=w)
    torch.testing.assert_close(model.loss_from_logits(logits, hard)["loss"], expected)
    smooth = ClassifierModel(tiny_backbone(), 2, label_smoothing=0.2)
    expected = nn.functional.cross_entropy(logits, torch.tensor([0, 1]), label_smoothing=0.2)
    torch.testing.assert_close(smooth.loss_from_logits(logits, hard)["loss"], expected)
    assert float(expected) > float(nn.functional.cross_entropy(logits, torch.tensor([0, 1])))
    with pytest.raises(ValueError):
        ClassifierModel(tiny_backbone(), 3, class_weights=torch.ones(2))


# --------------------------------------------------------------------------- segment


def _square_sample(n: int = 2):
    """Images with a bright square (different place per image) and matching masks."""
    images = torch.full((n, 3, S, S), -1.0)
    masks = torch.zeros(n, S, S, dtype=torch.long)
    for i in range(n):
        y0, x0 = 10 + 14 * i, 8 + 20 * i
        images[i, :, y0 : y0 + 24, x0 : x0 + 24] = 1.0
        masks[i, y0 : y0 + 24, x0 : x0 + 24] = 1
    return images, masks


def _iou(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a & b).sum()) / max(float((a | b).sum()), 1.0)


def test_segmenter_overfits_a_square():
    images, masks = _square_sample()
    targets = [{"mask": m} for m in masks]
    model = SegmenterModel(tiny_backbone(), 1, width=16)
    assert (model.main_metric, model.higher_is_better) == ("miou", True)
    losses = overfit(model, images, targets, 60, lr=3e-3)
    assert losses[-1] < 0.5 * losses[0]
    for pred, mask in zip(model.predict_step(images), masks, strict=True):
        assert pred["mask"].shape == (S, S) and pred["mask"].dtype == torch.int64
        assert pred["probs"].shape == (2, S, S)
        torch.testing.assert_close(pred["probs"].sum(0), torch.ones(S, S))
        assert _iou(pred["mask"] == 1, mask == 1) > 0.8


def test_segmenter_real_backbone_loss_falls_and_dice_counts():
    images, masks = _square_sample()
    targets = [{"mask": m} for m in masks]
    model = build_task_model(
        "segment", build_backbone("mobilenet_v3_small", "none"), num_classes=2, width=16
    )
    with torch.no_grad():
        out = model.training_step(images, targets)
    assert float(out["dice"]) > 0
    assert float(out["loss"]) == pytest.approx(float(out["ce"] + out["dice"]), rel=1e-5)
    losses = overfit(model, images, targets, 25, lr=3e-3)
    assert losses[-1] < 0.5 * losses[0]
    pred = model.predict_step(images)[0]
    assert pred["mask"].shape == (S, S) and int(pred["mask"].max()) <= 2
    # with no foreground in the targets the Dice term is 0
    empty = [{"mask": torch.zeros(S, S, dtype=torch.long)} for _ in range(2)]
    assert float(model.training_step(images, empty)["dice"]) == 0.0


def test_frozen_backbone_gets_no_gradient():
    model = SegmenterModel(tiny_backbone(), 1, width=16)
    set_freeze_depth(model.backbone, "all")
    images, masks = _square_sample()
    model.train().training_step(images, [{"mask": m} for m in masks])["loss"].backward()
    assert all(p.grad is None for p in model.backbone.parameters())
    assert all(p.grad is not None for p in model.decoder.parameters())


# --------------------------------------------------------------------------- landmarks


def test_heatmap_frame_render_and_decode_round_trip():
    # Continuous frame: a point at x = 10 lies in the middle of stride-4 cell 2 ([8, 12)).
    assert float(to_heatmap_frame(torch.tensor(10.0), 4)) == 2.0
    kp = torch.tensor([[10.0, 6.0, 2.0], [33.3, 17.9, 1.0], [5.0, 5.0, 0.0]])
    maps = render_heatmaps(kp, (16, 16), stride=4, sigma=2.0)
    assert maps.shape == (3, 16, 16)
    assert maps[0].argmax() == 1 * 16 + 2  # row 1 (y: 6/4-0.5 = 1), column 2
    assert float(maps[0].max()) == pytest.approx(1.0)
    assert float(maps[2].abs().sum()) == 0.0  # visibility 0: empty target
    decoded = decode_heatmaps(maps[None], stride=4)[0]
    torch.testing.assert_close(decoded[:2, :2], kp[:2, :2], atol=0.02, rtol=0)
    assert decoded[0, 2] == pytest.approx(1.0)
    # stride 1: pixel centres (i + 0.5) are cell centres
    m1 = render_heatmaps(torch.tensor([[7.5, 3.5, 2.0]]), (8, 8), stride=1, sigma=1.0)
    assert m1[0].argmax() == 3 * 8 + 7


def _dot_sample():
    """Two images with a bright 3×3 dot centred on a known pixel centre, 2 points each:
    the dot and a fixed corner (so the model must read the image for point 0)."""
    images = torch.full((2, 3, S, S), -1.0)
    centres = [(20, 14), (45, 38)]  # (col, row) of the dot's middle pixel
    targets = []
    for i, (c, r) in enumerate(centres):
        images[i, :, r - 1 : r + 2, c - 1 : c + 2] = 2.0
        kp = torch.tensor([[c + 0.5, r + 0.5, 2.0], [8.0, 56.0, 2.0]])
        targets.append({"keypoints": kp})
    return images, targets


def test_landmark_model_finds_a_dot_within_two_pixels():
    images, targets = _dot_sample()
    model = LandmarkModel(tiny_backbone(), 2, heatmap_stride=4, sigma=1.5, width=32)
    assert (model.main_metric, model.higher_is_better) == ("nme", False)
    losses = overfit(model, images, targets, 120, lr=3e-3)
    assert losses[-1] < 0.5 * losses[0]
    for pred, t in zip(model.predict_step(images), targets, strict=True):
        kp = pred["keypoints"]
        assert kp.shape == (2, 3)
        err = (kp[:, :2] - t["keypoints"][:, :2]).norm(dim=1)
        assert (err < 2.0).all(), (kp, t["keypoints"])
        assert ((kp[:, 2] >= 0) & (kp[:, 2] <= 1)).all()


def test_landmark_real_backbone_loss_falls():
    images, targets = _dot_sample()
    model = build_task_model(
        "landmarks", build_backbone("mobilenet_v3_small", "none"), num_points=2, width=16
    )
    losses = overfit(model, images, targets, 25, lr=3e-3)
    assert losses[-1] < 0.5 * losses[0]
    assert model.predict_step(images)[0]["keypoints"].shape == (2, 3)


def test_invisible_points_do_not_change_the_landmark_loss():
    model = LandmarkModel(tiny_backbone(), 3).eval()
    images = _noise_images(2)
    kp = torch.tensor([[10.0, 12.0, 2.0], [30.0, 40.0, 0.0], [50.0, 20.0, 1.0]])
    targets = [{"keypoints": kp.clone()} for _ in range(2)]
    with torch.no_grad():
        heat = model(images)
    base = model.loss_from_heatmaps(heat, targets)["loss"]
    moved = [{"keypoints": kp.clone()} for _ in range(2)]
    moved[0]["keypoints"][1, :2] = torch.tensor([3.0, 60.0])
    moved[1]["keypoints"][1, :2] = torch.tensor([float("nan"), 1e6])
    assert torch.equal(model.loss_from_heatmaps(heat, moved)["loss"], base)
    # ... while moving a visible point does change it
    moved[0]["keypoints"][0, :2] = torch.tensor([40.0, 40.0])
    assert not torch.equal(model.loss_from_heatmaps(heat, moved)["loss"], base)
    # an all-zero prediction scores about 1 (normalised by the Gaussian's energy)
    zero = model.loss_from_heatmaps(torch.zeros_like(heat), targets)["loss"]
    assert float(zero) == pytest.approx(1.0, abs=0.05)


# --------------------------------------------------------------------------- autoencode


def test_autoencoder_small_encoder_overfits():
    images = _square_sample()[0]
    model = AutoencoderModel("small", latent_dim=8, input_size=S)
    assert model.backbone is None and model.main_metric == "val_loss"
    losses = overfit(model, images, [{}, {}], 60, lr=3e-3)
    assert losses[-1] < 0.5 * losses[0]
    preds = model.predict_step(images)
    assert preds[0]["latent"].shape == (8,)
    assert preds[0]["reconstruction"].shape == (3, S, S)
    err = float(((preds[0]["reconstruction"] - images[0]) ** 2).mean())
    assert preds[0]["error"] == pytest.approx(err, rel=1e-4)


def test_vae_loss_includes_kl():
    images = _noise_images(2)
    model = AutoencoderModel("small", latent_dim=4, vae=True, input_size=S, beta=2.0).eval()
    with torch.no_grad():
        out = model.training_step(images, [{}, {}])
    assert float(out["kl"]) > 0
    expected = out["mse"] + 2.0 * out["kl"] / (3 * S * S)
    assert float(out["loss"]) == pytest.approx(float(expected), rel=1e-6)
    assert float(out["loss"]) > float(out["mse"])
    plain = AutoencoderModel("small", latent_dim=4, input_size=S).eval()
    with torch.no_grad():
        assert "kl" not in plain.training_step(images, [{}, {}])
        # eval-mode VAE is deterministic (uses the mean)
        torch.testing.assert_close(model(images), model(images))


def test_autoencoder_over_real_backbone():
    bb = build_backbone("mobilenet_v3_small", "none")
    model = build_task_model("autoencode", bb, latent_dim=8, vae=True, input_size=S)
    images = _square_sample()[0]
    losses = overfit(model, images, [{}, {}], 30, lr=3e-3)
    assert losses[-1] < 0.5 * losses[0]
    pred = model.predict_step(images)[1]
    assert pred["latent"].shape == (8,) and pred["reconstruction"].shape == (3, S, S)
    # another input size still reconstructs at that size
    assert model.predict_step(torch.randn(1, 3, 48, 48))[0]["reconstruction"].shape == (3, 48, 48)


# --------------------------------------------------------------------------- factory


def test_factory_builds_each_task():
    bb = tiny_backbone()
    assert isinstance(build_task_model("classify", bb, num_classes=2), ClassifierModel)
    assert build_task_model("classify", bb, num_classes=1, multi_label=True).multi_label
    assert isinstance(build_task_model("segment", bb, num_classes=1), SegmenterModel)
    assert isinstance(build_task_model("landmarks", bb, num_points=5), LandmarkModel)
    ae = build_task_model("autoencode", None, encoder="small")
    assert isinstance(ae, AutoencoderModel) and ae.input_size == 64


@pytest.mark.parametrize(
    ("task", "backbone", "kwargs", "fragment"),
    [
        ("regress", True, {}, "unknown task"),
        ("classify", True, {"num_classes": 1}, "at least 2"),
        ("classify", True, {"num_classes": 3, "sigma": 2.0}, "do not apply"),
        ("classify", True, {"num_classes": 3, "head": "transformer"}, "head"),
        ("segment", True, {"num_classes": 2, "multi_label": True}, "classification only"),
        ("segment", True, {"num_classes": 0}, "at least 1"),
        ("landmarks", True, {"num_points": 0}, "point"),
        ("landmarks", True, {"num_points": 3, "heatmap_stride": 3}, "heatmap_stride"),
        ("detect", False, {"num_classes": 2}, "needs a backbone"),
        ("detect", True, {"num_classes": 2, "arch": "yolo"}, "fcos"),
        ("autoencode", False, {}, "needs a backbone"),
        ("autoencode", True, {"encoder": "big"}, "encoder"),
    ],
)
def test_factory_errors(task, backbone, kwargs, fragment):
    with pytest.raises(TaskConfigError, match=fragment) as info:
        build_task_model(task, tiny_backbone() if backbone else None, **kwargs)
    assert isinstance(info.value, TlsError)
