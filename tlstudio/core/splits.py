"""Train / validation / test splits and k-fold assignment.

Stratified by each image's primary class (:meth:`Project.primary_labels`):
within every class the images are shuffled with ``seed`` and dealt out in
proportion, so small classes still reach every split when they can.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from .errors import ValidationError
from .project import SPLITS, Project


def random_split(
    project: Project,
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
    *,
    seed: int = 0,
    stratify: bool = True,
    only_unassigned: bool = False,
) -> dict[int, str]:
    """Compute a (train, val, test) assignment; apply it with ``project.set_splits``.

    ``only_unassigned`` keeps manual choices: images that already have a split
    are left out of the result."""
    if len(fractions) != 3 or any(f < 0 for f in fractions) or sum(fractions) <= 0:
        raise ValidationError(f"split fractions {fractions} must be three non-negative numbers")
    fr = np.asarray(fractions, float) / sum(fractions)
    groups = _groups(project, stratify, only_unassigned)
    rng = np.random.default_rng(seed)
    out: dict[int, str] = {}
    for key in sorted(groups, key=lambda k: (k is None, k)):
        ids = np.array(sorted(groups[key]))
        rng.shuffle(ids)
        counts = _apportion(len(ids), fr)
        start = 0
        for split, n in zip(SPLITS, counts, strict=True):
            for i in ids[start : start + n]:
                out[int(i)] = split
            start += n
    return out


def kfold(project: Project, k: int = 5, *, seed: int = 0, stratify: bool = True) -> dict[int, int]:
    """Assign every image a fold 0..k-1 (stratified round-robin after a seeded shuffle)."""
    if k < 2:
        raise ValidationError(f"k-fold needs k >= 2, got {k}")
    groups = _groups(project, stratify, only_unassigned=False)
    rng = np.random.default_rng(seed)
    out: dict[int, int] = {}
    offset = 0
    for key in sorted(groups, key=lambda k_: (k_ is None, k_)):
        ids = np.array(sorted(groups[key]))
        rng.shuffle(ids)
        for j, i in enumerate(ids):
            out[int(i)] = (offset + j) % k
        offset += len(ids)  # continue the round-robin so folds stay balanced overall
    return out


def _groups(project: Project, stratify: bool, only_unassigned: bool) -> dict[int | None, list[int]]:
    labels = project.primary_labels()
    if only_unassigned:
        assigned = {r.id for r in project.images() if r.split is not None}
        labels = {i: c for i, c in labels.items() if i not in assigned}
    groups: dict[int | None, list[int]] = defaultdict(list)
    for image_id, cls in labels.items():
        groups[cls if stratify else None].append(image_id)
    return groups


def _apportion(n: int, fractions: np.ndarray) -> list[int]:
    """Split n items by fractions with the largest-remainder method; non-zero
    fractions get at least one item while there are enough items."""
    raw = fractions * n
    counts = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - counts), kind="stable")[: n - counts.sum()]:
        counts[i] += 1
    for i in range(len(counts)):
        if fractions[i] > 0 and counts[i] == 0:
            donor = int(np.argmax(counts))
            if counts[donor] > 1:
                counts[donor] -= 1
                counts[i] += 1
    result: list[int] = counts.tolist()
    return result
