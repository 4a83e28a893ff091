"""Training strategies ("presets"): named sets of freeze depth, learning rate, epochs,
per-stage learning-rate decay, progressive unfreezing and augmentation. The Train panel
offers them by label and ``tlstudio train --preset NAME`` by name. Importing this module
does not import torch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from tlstudio.ml.train_config import TrainConfig

CUSTOM = "custom"  # the GUI's name for "settings that match no preset"


@dataclass(frozen=True)
class Preset:
    """A training strategy. ``freeze``: ``"all"``, an int k >= 0 (stages frozen from the
    input), or a negative -k meaning "all but the top k stages". ``augment``: train with
    the default augmentation (True) or none."""

    name: str
    label: str
    tip: str
    freeze: int | str
    augment: bool
    lr: float
    epochs: int
    stage_lr_decay: float
    progressive_every: int = 0
    head_warmup_epochs: int = 0

    def depth(self, n_stages: int) -> int:
        """Frozen stages for a backbone with ``n_stages`` stages."""
        if self.freeze == "all":
            return n_stages
        k = int(self.freeze)
        return max(0, n_stages + k) if k < 0 else min(k, n_stages)

    def freeze_value(self, n_stages: int) -> int | str:
        """The :attr:`TrainConfig.freeze` value: ``"all"`` when every stage is frozen."""
        depth = self.depth(n_stages)
        return "all" if depth >= n_stages else depth

    def apply(self, train: TrainConfig, n_stages: int) -> TrainConfig:
        """``train`` with the fields this preset sets replaced (the others are kept)."""
        return dataclasses.replace(
            train,
            freeze=self.freeze_value(n_stages),
            lr=self.lr,
            epochs=self.epochs,
            stage_lr_decay=self.stage_lr_decay,
            progressive_every=self.progressive_every,
            head_warmup_epochs=self.head_warmup_epochs,
        )

    def matches(self, train: TrainConfig, augment_is_default: bool | None, n_stages: int) -> bool:
        """Whether ``train`` (and augmentation: None = off, True = the default settings,
        False = other settings) is exactly what this preset sets."""
        depth = n_stages if train.freeze == "all" else int(train.freeze)
        aug_ok = augment_is_default is True if self.augment else augment_is_default is None
        return (
            aug_ok
            and depth == self.depth(n_stages)
            and abs(train.lr - self.lr) < 1e-12
            and train.epochs == self.epochs
            and abs(train.stage_lr_decay - self.stage_lr_decay) < 1e-9
            and train.progressive_every == self.progressive_every
            and train.head_warmup_epochs == self.head_warmup_epochs
        )


PRESETS: tuple[Preset, ...] = (
    Preset("feature_extraction", "Feature extraction",
           "Freeze the whole backbone and train only the head: fastest, and best with very few images.",
           "all", False, 3e-3, 30, 1.0),
    Preset("fine_tune_top", "Fine-tune top stages",
           "Train the top two stages with smaller learning rates below the head: a good default with a few hundred images.",
           -2, True, 1e-3, 20, 0.5),
    Preset("full", "Full fine-tuning",
           "Train every stage at a small learning rate: for larger sets or images unlike ImageNet photos.",
           0, True, 3e-4, 20, 1.0),
    Preset("progressive", "Progressive unfreezing",
           "Train the head for 2 epochs, then unfreeze one more stage every 3 epochs from the top.",
           "all", True, 1e-3, 20, 0.5, progressive_every=3, head_warmup_epochs=2),
)  # fmt: skip
PRESET_NAMES: tuple[str, ...] = tuple(p.name for p in PRESETS)


def get_preset(name: str) -> Preset:
    """The preset called ``name``; ValueError naming the known ones if there is none."""
    for preset in PRESETS:
        if preset.name == name:
            return preset
    raise ValueError(f"unknown preset {name!r}; use one of {', '.join(PRESET_NAMES)}")


def matching_preset(train: TrainConfig, augment_is_default: bool | None, n_stages: int) -> str:
    """Name of the preset ``train`` matches (see :meth:`Preset.matches`), else ``"custom"``."""
    for preset in PRESETS:
        if preset.matches(train, augment_is_default, n_stages):
            return preset.name
    return CUSTOM
