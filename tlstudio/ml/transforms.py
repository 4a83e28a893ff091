"""Training augmentation with ``torchvision.transforms.v2``: boxes, landmarks and masks
move with the image.

A *sample* is a dict of tensors in one pixel frame (the network input, H×W):
``"image"`` (``tv_tensors.Image``, uint8 3×H×W, before normalisation) and, per task,
``"boxes"`` (``tv_tensors.BoundingBoxes`` XYXY float) with ``"labels"`` (K int64),
``"keypoints"`` (``tv_tensors.KeyPoints`` P×2 float) with ``"visibility"`` (P int64,
0/1/2), ``"mask"`` (``tv_tensors.Mask`` H×W), ``"masks"`` (``tv_tensors.Mask`` K×H×W, one
object each) with ``"labels"``, ``"ignore"`` (``tv_tensors.Mask`` 1×H×W).

Pixel convention (as in :mod:`tlstudio.core.annotations`): continuous coordinates with
the origin at the top-left *corner* of the top-left pixel, so a W×H image spans
[0, W] × [0, H] and pixel (i, j) has its centre at (i + 0.5, j + 0.5). torchvision's
resize, crop and affine kernels follow this convention for boxes and key points, and so
does its box flip (x1' = W - x2); its *key point* flip uses x' = W - 1 - x (pixel
indices), so flips here are our own: x' = W - x for points, like boxes.

Every mirror (horizontal or vertical flip) swaps left/right landmark pairs
(``flip_perm``, from :meth:`LandmarkTemplate.flip_permutation`), because a mirror image
turns a left eye into a right one; both flips together (a 180° turn) swap twice, i.e.
not at all. Points that leave the image get visibility 0 and coordinates (0, 0); boxes
are clipped to the image and boxes thinner than 1 px are dropped with their labels.

Mix-up / CutMix (classification only) happen per batch, in
:class:`MixupCutmixCollate`: every target then carries ``"soft_label"`` (C floats).
"""

from __future__ import annotations

from typing import Any

import torch

# torchvision ships no stubs or py.typed marker
import torchvision.transforms.v2 as T  # type: ignore[import-untyped]
import torchvision.transforms.v2.functional as F  # type: ignore[import-untyped]
from torch import Tensor
from torchvision import tv_tensors  # type: ignore[import-untyped]

from tlstudio.ml.augment_config import AUGMENT_HELP as AUGMENT_HELP  # re-exported
from tlstudio.ml.augment_config import AugmentConfig as AugmentConfig  # re-exported
from tlstudio.ml.collate import collate

# --------------------------------------------------------------------------- flips


def _canvas_hw(sample: dict[str, Any]) -> tuple[int, int]:
    h, w = sample["image"].shape[-2:]
    return int(h), int(w)


def flip_sample(
    sample: dict[str, Any], horizontal: bool, flip_perm: list[int] | None
) -> dict[str, Any]:
    """Mirror a sample left-right (``horizontal``) or top-bottom; swap landmark pairs.

    Points: x' = W - x (or y' = H - y); boxes: x1' = W - x2, x2' = W - x1."""
    h, w = _canvas_hw(sample)
    flip = F.horizontal_flip if horizontal else F.vertical_flip
    out = dict(sample)
    for key in ("image", "mask", "masks", "ignore", "boxes"):
        if key in sample:
            out[key] = flip(sample[key])
    if "keypoints" in sample:
        kp = sample["keypoints"].as_subclass(Tensor).clone()
        if horizontal:
            kp[:, 0] = w - kp[:, 0]
        else:
            kp[:, 1] = h - kp[:, 1]
        vis = sample["visibility"]
        if flip_perm is not None:
            perm = torch.as_tensor(flip_perm, dtype=torch.long)
            kp, vis = kp[perm], vis[perm]
        out["keypoints"] = tv_tensors.wrap(kp, like=sample["keypoints"])
        out["visibility"] = vis
    return out


class RandomFlipPairs(torch.nn.Module):
    """Mirror with probability ``p`` and swap left/right landmark pairs when it happens.

    ``last_flipped`` records whether the most recent call flipped (for tests and logs)."""

    def __init__(self, p: float, horizontal: bool = True, flip_perm: list[int] | None = None):
        super().__init__()
        self.p = float(p)
        self.horizontal = horizontal
        self.flip_perm = list(flip_perm) if flip_perm is not None else None
        self.last_flipped = False

    def forward(self, sample: dict[str, Any]) -> dict[str, Any]:
        self.last_flipped = self.p > 0 and bool(torch.rand(()) < self.p)
        if not self.last_flipped:
            return sample
        return flip_sample(sample, self.horizontal, self.flip_perm)


# --------------------------------------------------------------------------- the pipeline


class RandomResizedCropAligned(T.RandomResizedCrop):
    """torchvision's RandomResizedCrop, but masks are resized with nearest-*exact*.

    torchvision resizes masks with ``"nearest"`` (source index = floor(dst × scale)),
    which shifts them by up to half a pixel against the bilinear image; nearest-exact
    samples at pixel centres, like the image."""

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if isinstance(inpt, tv_tensors.Mask):
            cropped = F.crop(inpt, params["top"], params["left"], params["height"], params["width"])
            return F.resize(
                cropped, list(self.size), interpolation=T.InterpolationMode.NEAREST_EXACT
            )
        return super().transform(inpt, params)


def sanitize_sample(sample: dict[str, Any]) -> dict[str, Any]:
    """Clip boxes to the image, drop boxes under 1 px wide or high (with their labels),
    and give points outside [0, W] × [0, H] visibility 0 at (0, 0)."""
    h, w = _canvas_hw(sample)
    out = dict(sample)
    if "boxes" in sample:
        b = sample["boxes"].as_subclass(Tensor).float().clone()
        b[:, 0::2] = b[:, 0::2].clamp(0, w)
        b[:, 1::2] = b[:, 1::2].clamp(0, h)
        keep = ((b[:, 2] - b[:, 0]) >= 1) & ((b[:, 3] - b[:, 1]) >= 1)
        out["boxes"] = tv_tensors.BoundingBoxes(b[keep], format="XYXY", canvas_size=(h, w))
        out["labels"] = sample["labels"][keep]
    if "keypoints" in sample:
        kp = sample["keypoints"].as_subclass(Tensor).float().clone()
        vis = sample["visibility"].clone()
        inside = (kp[:, 0] >= 0) & (kp[:, 0] <= w) & (kp[:, 1] >= 0) & (kp[:, 1] <= h)
        inside &= torch.isfinite(kp).all(dim=1)
        vis[~inside] = 0
        kp[vis == 0] = 0.0
        out["keypoints"] = tv_tensors.KeyPoints(kp, canvas_size=(h, w))
        out["visibility"] = vis
    return out


class TrainTransform(torch.nn.Module):
    """Random crop → flips → rotation/zoom → colour jitter → erasing, then sanitising.

    Call with a sample (see the module docstring) already resized to ``input_size``;
    returns a sample of the same size and keys."""

    def __init__(
        self, task: str, cfg: AugmentConfig, input_size: int, flip_perm: list[int] | None = None
    ):
        super().__init__()
        self.task = task
        self.cfg = cfg
        self.input_size = int(input_size)
        geometric: list[torch.nn.Module] = []
        if cfg.random_resized_crop:
            geometric.append(
                RandomResizedCropAligned(self.input_size, scale=cfg.crop_scale, antialias=True)
            )
        if cfg.hflip > 0:
            geometric.append(RandomFlipPairs(cfg.hflip, True, flip_perm))
        if cfg.vflip > 0:
            geometric.append(RandomFlipPairs(cfg.vflip, False, flip_perm))
        if cfg.rotate_deg > 0 or cfg.scale != (1.0, 1.0):
            scale = None if cfg.scale == (1.0, 1.0) else cfg.scale
            # bilinear for the image; torchvision always samples masks with nearest
            geometric.append(
                T.RandomAffine(
                    degrees=cfg.rotate_deg, scale=scale, interpolation=T.InterpolationMode.BILINEAR
                )
            )
        self.geometric = torch.nn.ModuleList(geometric)
        j = cfg.color_jitter
        self.color = T.ColorJitter(brightness=j, contrast=j, saturation=j) if j > 0 else None
        self.erase = (
            T.RandomErasing(p=cfg.random_erasing, value=0) if cfg.random_erasing > 0 else None
        )

    def forward(self, sample: dict[str, Any]) -> dict[str, Any]:
        for t in self.geometric:
            sample = t(sample)
        if self.color is not None or self.erase is not None:
            sample = dict(sample)
            img = sample["image"]
            if self.color is not None:
                img = self.color(img)
            if self.erase is not None:
                img = self.erase(img)
            sample["image"] = img
        return sanitize_sample(sample)


def build_train_transform(
    task: str, cfg: AugmentConfig | None, input_size: int, flip_perm: list[int] | None = None
) -> TrainTransform | None:
    """The per-sample training transform for ``task``, or None when ``cfg`` changes nothing.

    Mix-up/CutMix are batch-level: see :func:`mixup_cutmix_collate`."""
    if cfg is None:
        return None
    if cfg.is_geometry_off and cfg.color_jitter == 0 and cfg.random_erasing == 0:
        return None
    return TrainTransform(task, cfg, input_size, flip_perm)


# --------------------------------------------------------------------------- mix-up / CutMix


class MixupCutmixCollate:
    """Collate classification samples, then mix the batch (mix-up or CutMix, chosen at
    random when both are on). Adds ``"soft_label"`` (C float32 summing to 1, or for
    multi-label a mixed multi-hot in [0, 1]) to every target; the original ``"label"`` /
    ``"labels"`` stay for metrics. Picklable, so DataLoader workers can use it."""

    def __init__(self, num_classes: int, cfg: AugmentConfig):
        if num_classes < 1:
            raise ValueError("mix-up/CutMix needs at least one class")
        self.num_classes = int(num_classes)
        self.mixup_alpha = cfg.mixup_alpha
        self.cutmix_alpha = cfg.cutmix_alpha
        mixers: list[torch.nn.Module] = []
        if cfg.mixup_alpha > 0:
            mixers.append(T.MixUp(alpha=cfg.mixup_alpha, num_classes=self.num_classes))
        if cfg.cutmix_alpha > 0:
            mixers.append(T.CutMix(alpha=cfg.cutmix_alpha, num_classes=self.num_classes))
        self._mix = (
            None if not mixers else mixers[0] if len(mixers) == 1 else T.RandomChoice(mixers)
        )

    def __call__(
        self, batch: list[tuple[Tensor, dict[str, Any]]]
    ) -> tuple[Tensor, list[dict[str, Any]]]:
        images, targets = collate(batch)
        if self._mix is None or not targets:
            return images, targets
        if "label" in targets[0]:
            labels = torch.stack([torch.as_tensor(t["label"]) for t in targets]).long()
            images, soft = self._mix(images, labels)
        else:
            multi = torch.stack([torch.as_tensor(t["labels"]) for t in targets]).float()
            images, soft = self._mix_multi(images, multi)
        targets = [dict(t, soft_label=soft[i].float()) for i, t in enumerate(targets)]
        return images, targets

    def _mix_multi(self, images: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        # torchvision's MixUp/CutMix want integer labels; multi-hot targets mix the same way.
        use_cutmix = self.cutmix_alpha > 0 and (self.mixup_alpha == 0 or bool(torch.rand(()) < 0.5))
        alpha = self.cutmix_alpha if use_cutmix else self.mixup_alpha
        lam = float(torch.distributions.Beta(alpha, alpha).sample())
        rolled = images.roll(1, 0)
        if use_cutmix:
            h, w = images.shape[-2:]
            rh, rw = int(h * (1 - lam) ** 0.5), int(w * (1 - lam) ** 0.5)
            cy, cx = int(torch.randint(h, ())), int(torch.randint(w, ()))
            y1, y2 = max(cy - rh // 2, 0), min(cy + rh // 2, h)
            x1, x2 = max(cx - rw // 2, 0), min(cx + rw // 2, w)
            images = images.clone()
            images[..., y1:y2, x1:x2] = rolled[..., y1:y2, x1:x2]
            lam = 1.0 - (y2 - y1) * (x2 - x1) / (h * w)
        else:
            images = images * lam + rolled * (1 - lam)
        return images, y * lam + y.roll(1, 0) * (1 - lam)


def mixup_cutmix_collate(num_classes: int, cfg: AugmentConfig) -> MixupCutmixCollate:
    """A DataLoader ``collate_fn`` for classification that applies mix-up/CutMix per batch."""
    return MixupCutmixCollate(num_classes, cfg)
