"""Augmentation options (:class:`AugmentConfig`): plain settings, no torch.

The transforms they describe are built by :mod:`tlstudio.ml.transforms`, which imports
torchvision; a run's specification (:class:`tlstudio.ml.runner.RunSpec`) reads and
writes these without it, so training a head on cached features never loads torchvision.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from tlstudio.ml.setting import setting, settings_of


@dataclass
class AugmentConfig:
    """Augmentation options. Probabilities are in [0, 1]; angles in degrees."""

    hflip: float = setting(
        0.5,
        label="Flip left-right",
        range=(0, 1),
        step=0.1,
        help="Probability of mirroring the image left-right (landmark left/right pairs swap).",
    )
    vflip: float = setting(
        0.0,
        label="Flip top-bottom",
        range=(0, 1),
        step=0.1,
        help="Probability of mirroring the image top-bottom; use only when upside-down images make sense.",
    )
    rotate_deg: float = setting(
        10.0,
        label="Rotate ±",
        range=(0, 180),
        step=5,
        decimals=0,
        suffix="°",
        help="Largest random rotation, in degrees, either way (0 = no rotation).",
    )
    scale: tuple[float, float] = setting(
        (0.9, 1.1),
        label="Zoom",
        range=(0.1, 4),
        step=0.05,
        help="Range of random zoom factors (min, max); (1, 1) = no zoom.",
    )
    random_resized_crop: bool = setting(
        True,
        label="Crop area",
        help="Crop a random part of the image and stretch it back to the input size.",
    )
    crop_scale: tuple[float, float] = setting(
        (0.7, 1.0),
        label="Crop area",
        range=(0.05, 1),
        step=0.05,
        needs="random_resized_crop",
        help="Range of the crop's area as a fraction of the image (min, max), for the random crop.",
    )
    color_jitter: float = setting(
        0.2,
        label="Colour jitter",
        range=(0, 1),
        step=0.05,
        help="Strength of random brightness, contrast and saturation changes (0 = none, 0.2 = ±20 %).",
    )
    random_erasing: float = setting(
        0.0,
        label="Erasing",
        range=(0, 1),
        step=0.1,
        help="Probability of blanking a random rectangle, so the model cannot rely on one spot.",
    )
    mixup_alpha: float = setting(
        0.0,
        label="Mix-up α",
        range=(0, 2),
        step=0.1,
        tasks=("classify",),
        help="Classification only: blend pairs of images and their labels (Beta(α, α) weights; 0 = off).",
    )
    cutmix_alpha: float = setting(
        0.0, label="CutMix α", range=(0, 2), step=0.1, tasks=("classify",),
        help="Classification only: paste a patch of another image and mix labels by area (0 = off).",
    )  # fmt: skip

    def __post_init__(self) -> None:
        for name in ("hflip", "vflip", "random_erasing"):
            v = float(getattr(self, name))
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"augmentation {name}={v}: a probability must lie in [0, 1]")
            setattr(self, name, v)
        for name in ("rotate_deg", "color_jitter", "mixup_alpha", "cutmix_alpha"):
            v = float(getattr(self, name))
            if v < 0:
                raise ValueError(f"augmentation {name}={v}: must not be negative")
            setattr(self, name, v)
        for name in ("scale", "crop_scale"):
            lo, hi = (float(x) for x in getattr(self, name))
            if not 0 < lo <= hi:
                raise ValueError(f"augmentation {name}=({lo}, {hi}): needs 0 < min <= max")
            setattr(self, name, (lo, hi))
        if self.crop_scale[1] > 1.0:
            raise ValueError(f"augmentation crop_scale={self.crop_scale}: max area fraction is 1")
        self.random_resized_crop = bool(self.random_resized_crop)

    @classmethod
    def none(cls) -> AugmentConfig:
        """A config that changes nothing."""
        return cls(
            hflip=0.0,
            vflip=0.0,
            rotate_deg=0.0,
            scale=(1.0, 1.0),
            random_resized_crop=False,
            color_jitter=0.0,
        )

    @property
    def is_off(self) -> bool:
        """True when no option would change a sample or a batch."""
        return (
            self.is_geometry_off
            and self.color_jitter == 0
            and self.random_erasing == 0
            and (not self.is_mix_on)
        )

    @property
    def is_geometry_off(self) -> bool:
        """True when no option moves pixels (no flip, rotation, zoom or crop)."""
        return (
            self.hflip == 0
            and self.vflip == 0
            and self.rotate_deg == 0
            and self.scale == (1.0, 1.0)
            and not self.random_resized_crop
        )

    @property
    def is_mix_on(self) -> bool:
        """True when mix-up or CutMix is enabled (classification batches only)."""
        return self.mixup_alpha > 0 or self.cutmix_alpha > 0

    def changes(self, task: str) -> bool:
        """True when some option would alter ``task``'s training data (mix-up/CutMix
        count for classification only); False means the feature fast path may be used."""
        per_sample = not self.is_geometry_off or self.color_jitter > 0 or self.random_erasing > 0
        return per_sample or (task == "classify" and self.is_mix_on)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples become lists)."""
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AugmentConfig:
        """Inverse of :meth:`to_dict`; missing keys take defaults, unknown keys are ignored."""
        names = {f.name for f in fields(cls)}
        kwargs: dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in names
        }
        return cls(**kwargs)


#: Help text per option (from the fields' :class:`~tlstudio.ml.setting.SettingInfo`).
AUGMENT_HELP: dict[str, str] = {f.name: info.help for f, info in settings_of(AugmentConfig)}
