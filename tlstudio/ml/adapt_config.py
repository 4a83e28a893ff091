"""The torch-free half of :mod:`tlstudio.ml.adapt`: the adaptation methods, their
settings (:class:`AdaptConfig`, stored in a run's config) and which images take part,
so the command line and the window can offer them without importing torch."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tlstudio.core.errors import USER, TlsError

#: every method, in the order menus show them
ADAPT_METHODS = ("coral", "mmd", "dann", "standardize")
#: methods that align features while the backbone trains
TRAINED_METHODS = ("coral", "mmd", "dann")
#: methods that work on cached features of a frozen backbone (classification)
CACHED_METHODS = ("standardize", "coral")
#: readable names for menus and tables
METHOD_NAMES = {
    "coral": "CORAL",
    "mmd": "MMD (multi-kernel)",
    "dann": "DANN (adversarial)",
    "standardize": "Per-domain standardisation",
}
#: the default weight of the alignment loss, per method
DEFAULT_WEIGHTS = {"coral": 1.0, "mmd": 1.0, "dann": 1.0, "standardize": 1.0}


class AdaptError(TlsError):
    """Domain adaptation cannot run with these settings or images (the message says why)."""

    kind = USER


@dataclass(frozen=True)
class AdaptConfig:
    """What to adapt to and how. ``weight`` multiplies the alignment loss (not used by
    the cached-feature variants)."""

    method: str
    target_domain: str
    weight: float | None = None

    def __post_init__(self) -> None:
        if self.method not in ADAPT_METHODS:
            raise AdaptError(
                f"unknown adaptation {self.method!r}; use one of {', '.join(ADAPT_METHODS)}"
            )
        if not str(self.target_domain).strip():
            raise AdaptError("domain adaptation needs a target domain")
        if self.weight is not None and not (math.isfinite(self.weight) and self.weight >= 0):
            raise AdaptError(f"the adaptation weight must be 0 or more, got {self.weight}")

    @property
    def loss_weight(self) -> float:
        return DEFAULT_WEIGHTS[self.method] if self.weight is None else float(self.weight)

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "target_domain": self.target_domain, "weight": self.weight}

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> AdaptConfig | None:
        if not d:
            return None
        return cls(str(d["method"]), str(d["target_domain"]), d.get("weight"))


def check_adaptation(config: AdaptConfig, task: str, cached: bool, frozen: bool) -> None:
    """AdaptError saying in plain words why ``config`` does not fit a run of ``task``
    (``cached``: the run takes the cached-feature path; ``frozen``: the whole backbone
    stays fixed); nothing if it fits."""
    m = config.method
    if task == "autoencode":
        raise AdaptError("domain adaptation applies to classify, detect, landmarks and segment")
    if "," in task:
        raise AdaptError(
            "domain adaptation is not built for multi-task runs; adapt each task's run"
        )
    if cached and m not in CACHED_METHODS:
        raise AdaptError(
            f"{METHOD_NAMES[m]} aligns features while the backbone trains, but this run keeps "
            "the backbone frozen (feature extraction): unfreeze some stages (a freeze depth "
            "below all) or "
            "use coral or standardize, which work on the cached features"
        )
    if not cached and m == "standardize":
        raise AdaptError(
            "per-domain standardisation works on cached features: classification with the "
            "backbone frozen (freeze depth all) and no augmentation; otherwise use coral, mmd "
            "or dann"
        )
    if not cached and frozen:
        raise AdaptError(
            f"{METHOD_NAMES[m]} needs backbone stages that train: with the backbone frozen, "
            "turn augmentation off so coral works on cached features, or unfreeze some stages "
            "(a freeze depth below all)"
        )


# --------------------------------------------------------------------------- split


def split_for_adaptation(
    domain_of: dict[int, str | None],
    split_of: dict[int, str | None],
    target_domain: str,
    ids: tuple[Sequence[int], Sequence[int]],
    target_ids: Sequence[int] | None = None,
) -> tuple[tuple[list[int], list[int]], list[int]]:
    """((train ids, val ids) without the target domain's images, unlabelled target ids).

    The target domain's images are never trained or validated on with their labels.
    Its images for adaptation are ``target_ids`` when given, else those not in the val
    or test split (so a labelled test set of the target domain stays unseen). AdaptError
    when the target domain has no such image or no source image is left."""
    if target_domain not in set(domain_of.values()):
        known = sorted({d for d in domain_of.values() if d is not None})
        raise AdaptError(
            f"no image has the domain {target_domain!r}"
            + (f" (domains: {', '.join(known)})" if known else " (no image has a domain yet)")
        )
    train = [i for i in ids[0] if domain_of.get(i) != target_domain]
    val = [i for i in ids[1] if domain_of.get(i) != target_domain]
    if target_ids is None:
        target_ids = [
            i
            for i, d in sorted(domain_of.items())
            if d == target_domain and split_of.get(i) not in ("val", "test")
        ]
    target = [int(i) for i in target_ids]
    if not target:
        raise AdaptError(
            f"the domain {target_domain!r} has no images outside the val and test splits "
            "to adapt to; put some of its images in the train split or in no split"
        )
    if not train:
        raise AdaptError(
            f"every training image is in the target domain {target_domain!r}; "
            "adaptation needs labelled images of another domain"
        )
    return (train, val), target
