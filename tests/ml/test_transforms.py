"""Augmentation: boxes, landmarks and masks move with the image; flips swap pairs."""

from __future__ import annotations

import json

import pytest
import torch
from torchvision import tv_tensors

from tlstudio.ml.transforms import (
    AUGMENT_HELP,
    AugmentConfig,
    RandomFlipPairs,
    build_train_transform,
    mixup_cutmix_collate,
    sanitize_sample,
)

W, H = 64, 48  # not square, so x/y or W/H mix-ups show
ONLY_FLIP = {
    "hflip": 0.0,
    "rotate_deg": 0.0,
    "scale": (1.0, 1.0),
    "random_resized_crop": False,
    "color_jitter": 0.0,
}


def _sample(w: int = W, h: int = H) -> dict:
    image = torch.zeros(3, h, w, dtype=torch.uint8)
    image[0, :, 10] = 255  # a red column: pixel index 10, spanning x in [10, 11]
    mask = torch.zeros(h, w, dtype=torch.int64)
    mask[6:30, 4:20] = 1
    return {
        "image": tv_tensors.Image(image),
        "boxes": tv_tensors.BoundingBoxes(
            [[4.0, 6.0, 20.0, 30.0]], format="XYXY", canvas_size=(h, w)
        ),
        "labels": torch.tensor([3]),
        # left, right, top (flip_perm [1, 0, 2])
        "keypoints": tv_tensors.KeyPoints(
            [[10.5, 12.0], [40.0, 20.0], [30.0, 5.0]], canvas_size=(h, w)
        ),
        "visibility": torch.tensor([2, 1, 2]),
        "mask": tv_tensors.Mask(mask),
    }


def _plain(x: torch.Tensor) -> torch.Tensor:
    return x.as_subclass(torch.Tensor)


def test_horizontal_flip_mirrors_everything_and_swaps_left_right() -> None:
    cfg = AugmentConfig(**{**ONLY_FLIP, "hflip": 1.0})
    t = build_train_transform("landmarks", cfg, W, flip_perm=[1, 0, 2])
    s = _sample()
    out = t(s)
    # image: pixel column 10 -> W - 1 - 10; its centre 10.5 -> W - 10.5
    assert _plain(out["image"])[0, 0].nonzero().flatten().tolist() == [W - 1 - 10]
    # boxes: x1' = W - x2, x2' = W - x1
    torch.testing.assert_close(_plain(out["boxes"]), torch.tensor([[W - 20.0, 6.0, W - 4.0, 30.0]]))
    assert out["labels"].tolist() == [3]
    # points: x' = W - x (same continuous convention as boxes), then left/right swap
    expected = torch.tensor([[W - 40.0, 20.0], [W - 10.5, 12.0], [W - 30.0, 5.0]])
    torch.testing.assert_close(_plain(out["keypoints"]), expected)
    assert out["visibility"].tolist() == [1, 2, 2]
    torch.testing.assert_close(_plain(out["mask"]), _plain(s["mask"]).flip(-1))


def test_vertical_flip_mirrors_y_and_swaps_pairs() -> None:
    cfg = AugmentConfig(**{**ONLY_FLIP, "vflip": 1.0})
    out = build_train_transform("landmarks", cfg, W, flip_perm=[1, 0, 2])(_sample())
    torch.testing.assert_close(_plain(out["boxes"]), torch.tensor([[4.0, H - 30.0, 20.0, H - 6.0]]))
    expected = torch.tensor([[40.0, H - 20.0], [10.5, H - 12.0], [30.0, H - 5.0]])
    torch.testing.assert_close(_plain(out["keypoints"]), expected)


def test_flip_probability_is_respected() -> None:
    torch.manual_seed(0)
    never, always = RandomFlipPairs(0.0), RandomFlipPairs(1.0, flip_perm=[1, 0, 2])
    s = _sample()
    assert never(s) is s and not never.last_flipped
    flips = 0
    half = RandomFlipPairs(0.5)
    for _ in range(200):
        half(s)
        flips += half.last_flipped
    assert 60 < flips < 140
    assert always(s)["visibility"].tolist() == [1, 2, 2] and always.last_flipped


def _centroid(weights: torch.Tensor) -> torch.Tensor:
    """(x, y) centroid of a weight map, pixel (i, j) at its centre (i + 0.5, j + 0.5)."""
    w = weights.float()
    h_, w_ = w.shape
    ys = (torch.arange(h_) + 0.5)[:, None]
    xs = (torch.arange(w_) + 0.5)[None, :]
    return torch.stack([(w * xs).sum() / w.sum(), (w * ys).sum() / w.sum()])


def test_mask_and_points_follow_the_image_under_rotation_and_zoom() -> None:
    size = 64
    yy, xx = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    centre = torch.tensor([44.0, 20.0])
    disc = (xx - centre[0]) ** 2 + (yy - centre[1]) ** 2 <= 6.0**2
    image = torch.zeros(3, size, size, dtype=torch.uint8)
    image[:, disc] = 255
    cfg = AugmentConfig(
        hflip=0.5,
        vflip=0.5,
        rotate_deg=90,
        scale=(0.8, 1.2),
        crop_scale=(0.9, 1.0),
        color_jitter=0.0,
    )
    t = build_train_transform("segment", cfg, size)
    moved = 0
    for seed in range(12):
        torch.manual_seed(seed)
        out = t(
            {
                "image": tv_tensors.Image(image),
                "mask": tv_tensors.Mask(disc.long()),
                "keypoints": tv_tensors.KeyPoints(centre[None], canvas_size=(size, size)),
                "visibility": torch.tensor([2]),
            }
        )
        c_img = _centroid(_plain(out["image"])[0])
        c_mask = _centroid(_plain(out["mask"]) == 1)
        assert torch.dist(c_img, c_mask) < 0.5, seed
        assert torch.dist(c_img, _plain(out["keypoints"])[0]) < 0.25, seed
        moved += bool(torch.dist(c_img, centre) > 3)
    assert moved >= 8  # the transform really moved things


def test_zoom_drops_boxes_and_hides_points_that_leave_the_image() -> None:
    size = 64
    cfg = AugmentConfig(**{**ONLY_FLIP, "scale": (2.0, 2.0)})  # x' = 2 (x - 32) + 32
    s = {
        "image": tv_tensors.Image(torch.zeros(3, size, size, dtype=torch.uint8)),
        "boxes": tv_tensors.BoundingBoxes(
            [[0.0, 0, 10, 10], [24, 24, 40, 40], [20, 30, 60, 34]],
            format="XYXY",
            canvas_size=(size, size),
        ),
        "labels": torch.tensor([1, 2, 3]),
        "keypoints": tv_tensors.KeyPoints([[2.0, 2.0], [30.0, 34.0]], canvas_size=(size, size)),
        "visibility": torch.tensor([2, 2]),
    }
    out = build_train_transform("detect", cfg, size)(s)
    torch.testing.assert_close(
        _plain(out["boxes"]), torch.tensor([[16.0, 16, 48, 48], [8, 28, 64, 36]])
    )
    assert out["labels"].tolist() == [2, 3]
    torch.testing.assert_close(_plain(out["keypoints"]), torch.tensor([[0.0, 0.0], [28.0, 36.0]]))
    assert out["visibility"].tolist() == [0, 2]


def test_sanitize_clips_boxes_and_drops_degenerate_ones() -> None:
    s = {
        "image": tv_tensors.Image(torch.zeros(3, H, W, dtype=torch.uint8)),
        "boxes": tv_tensors.BoundingBoxes(
            [[-5.0, -5, 10, 10], [W - 0.5, 0, W + 9, 10], [3, 3, 3.5, 9]],
            format="XYXY",
            canvas_size=(H, W),
        ),
        "labels": torch.tensor([1, 2, 3]),
        "keypoints": tv_tensors.KeyPoints([[W + 1.0, 3], [W, H], [-0.1, 4]], canvas_size=(H, W)),
        "visibility": torch.tensor([2, 1, 2]),
    }
    out = sanitize_sample(s)
    torch.testing.assert_close(_plain(out["boxes"]), torch.tensor([[0.0, 0, 10, 10]]))
    assert out["labels"].tolist() == [1]
    assert out["visibility"].tolist() == [0, 1, 0]  # the far corner (W, H) is still inside
    torch.testing.assert_close(_plain(out["keypoints"])[0], torch.zeros(2))


def test_colour_and_erasing_leave_geometry_alone() -> None:
    cfg = AugmentConfig(**{**ONLY_FLIP, "color_jitter": 0.5, "random_erasing": 1.0})
    torch.manual_seed(1)
    s = _sample()
    out = build_train_transform("detect", cfg, W)(s)
    assert out["image"].dtype == torch.uint8 and out["image"].shape == (3, H, W)
    assert not torch.equal(_plain(out["image"]), _plain(s["image"]))
    torch.testing.assert_close(_plain(out["boxes"]), _plain(s["boxes"]))


def test_augment_config_defaults_none_and_round_trip() -> None:
    cfg = AugmentConfig()
    assert (cfg.hflip, cfg.vflip, cfg.rotate_deg, cfg.scale) == (0.5, 0.0, 10.0, (0.9, 1.1))
    assert cfg.random_resized_crop and cfg.crop_scale == (0.7, 1.0) and cfg.color_jitter == 0.2
    assert (cfg.random_erasing, cfg.mixup_alpha, cfg.cutmix_alpha) == (0.0, 0.0, 0.0)
    assert not cfg.is_off and AugmentConfig.none().is_off
    assert not AugmentConfig(**{**AugmentConfig.none().to_dict(), "mixup_alpha": 0.2}).is_off
    mix = AugmentConfig(**{**AugmentConfig.none().to_dict(), "cutmix_alpha": 1.0})
    assert mix.changes("classify") and not mix.changes("detect")
    assert not AugmentConfig.none().changes("classify") and AugmentConfig().changes("segment")
    assert build_train_transform("classify", AugmentConfig.none(), 32) is None
    assert build_train_transform("classify", None, 32) is None
    d = json.loads(json.dumps(AugmentConfig(rotate_deg=5, scale=(0.5, 2.0)).to_dict()))
    assert AugmentConfig.from_dict(d) == AugmentConfig(rotate_deg=5, scale=(0.5, 2.0))
    assert AugmentConfig.from_dict({"hflip": 0.1, "future_option": 1}) == AugmentConfig(hflip=0.1)
    assert set(AUGMENT_HELP) == set(cfg.to_dict())
    assert all(text.endswith(".") for text in AUGMENT_HELP.values())
    with pytest.raises(ValueError, match="hflip"):
        AugmentConfig(hflip=1.5)
    with pytest.raises(ValueError, match="crop_scale"):
        AugmentConfig(crop_scale=(0.9, 0.5))


def _batch(n: int, c: int) -> list:
    return [
        (
            torch.full((3, 8, 8), float(i)),
            {"label": torch.tensor(i % c), "image_id": i, "orig_size": (8, 8)},
        )
        for i in range(n)
    ]


@pytest.mark.parametrize(
    "mix", [{"mixup_alpha": 1.0}, {"cutmix_alpha": 1.0}, {"mixup_alpha": 0.4, "cutmix_alpha": 0.4}]
)
def test_mixup_cutmix_collate_gives_soft_labels(mix: dict) -> None:
    torch.manual_seed(0)
    collate_fn = mixup_cutmix_collate(3, AugmentConfig(**mix))
    images, targets = collate_fn(_batch(4, 3))
    assert images.shape == (4, 3, 8, 8)
    soft = torch.stack([t["soft_label"] for t in targets])
    assert soft.shape == (4, 3) and soft.dtype == torch.float32
    torch.testing.assert_close(soft.sum(1), torch.ones(4))
    # each image i was mixed with image i - 1 (torchvision rolls the batch by one)
    for i, t in enumerate(targets):
        assert t["label"].item() == i % 3  # originals kept for metrics
        lam = t["soft_label"][i % 3].item()
        assert images[i].min() >= min(i, (i - 1) % 4) - 1e-5
        assert images[i].max() <= max(i, (i - 1) % 4) + 1e-5
        assert 0.0 <= lam <= 1.0


def test_mixup_collate_multi_label_and_off() -> None:
    torch.manual_seed(0)
    batch = [
        (torch.rand(3, 8, 8), {"labels": torch.eye(3)[i % 3], "image_id": i, "orig_size": (8, 8)})
        for i in range(4)
    ]
    _, targets = mixup_cutmix_collate(3, AugmentConfig(mixup_alpha=0.5, cutmix_alpha=0.5))(batch)
    soft = torch.stack([t["soft_label"] for t in targets])
    assert soft.shape == (4, 3) and (soft >= 0).all() and (soft <= 1).all()
    torch.testing.assert_close(soft.sum(1), torch.ones(4))  # one-hot rows mix to sum 1
    images, plain = mixup_cutmix_collate(3, AugmentConfig())(batch)
    assert "soft_label" not in plain[0] and torch.equal(images[0], batch[0][0])
