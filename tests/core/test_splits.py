"""Train/val/test splits and k-fold assignment: proportions, stratification, seeds."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

import pytest

from tlstudio.core.annotations import Box
from tlstudio.core.errors import ValidationError
from tlstudio.core.project import SPLITS, Project
from tlstudio.core.splits import kfold, random_split

# class name -> number of images tagged with it (plus UNLABELLED images without labels)
SIZES = {"cat": 20, "dog": 11, "bird": 3, "fish": 4}
UNLABELLED = 5


@pytest.fixture
def split_project(tmp_path: Path, make_images):
    files = make_images(tmp_path / "src", sum(SIZES.values()) + UNLABELLED, (8, 8))
    proj = Project.create(tmp_path / "p")
    ids = proj.add_images(files).added
    it = iter(ids)
    members: dict[str | None, list[int]] = {}
    for name, n in SIZES.items():
        cid = proj.add_class(name).id
        members[name] = [next(it) for _ in range(n)]
        for k, iid in enumerate(members[name]):
            if name == "fish" and k % 2:
                proj.add_box(iid, Box(cid, 0, 0, 4, 4))  # labelled by a box, not a tag
            else:
                proj.set_tags(iid, [cid])
    members[None] = list(it)
    proj.members = members
    yield proj
    proj.close()


def _per_group(members: dict, assignment: dict[int, str]) -> dict:
    out = {}
    for name, ids in members.items():
        out[name] = Counter(assignment[i] for i in ids if i in assignment)
    return out


def test_primary_labels(split_project: Project) -> None:
    labels = split_project.primary_labels()
    by_name = {c.id: c.name for c in split_project.classes()}
    for name, ids in split_project.members.items():
        for i in ids:
            assert (by_name[labels[i]] if labels[i] is not None else None) == name


def test_random_split_fractions_and_stratification(split_project: Project) -> None:
    fr = (0.7, 0.15, 0.15)
    a = random_split(split_project, fr, seed=3)
    assert set(a) == set(split_project.image_ids())
    assert set(a.values()) == set(SPLITS)
    for name, counts in _per_group(split_project.members, a).items():
        n = len(split_project.members[name])
        assert sum(counts.values()) == n
        if n >= 3:  # every class with >= 3 images reaches every split
            assert all(counts[s] >= 1 for s in SPLITS), (name, counts)
        if n >= 10:  # large enough that minimum-one never bends the proportions
            for s, f in zip(SPLITS, fr, strict=True):
                assert abs(counts[s] - f * n) <= 1, (name, s, counts)
    total = Counter(a.values())
    n = len(a)
    for s, f in zip(SPLITS, fr, strict=True):
        assert abs(total[s] - f * n) <= len(split_project.members), total

    # other fractions, including an empty split
    b = random_split(split_project, (0.5, 0.5, 0.0), seed=3)
    assert "test" not in b.values()
    for name, counts in _per_group(split_project.members, b).items():
        n = len(split_project.members[name])
        assert abs(counts["train"] - n / 2) <= 1 and abs(counts["val"] - n / 2) <= 1


def test_random_split_unstratified(split_project: Project) -> None:
    a = random_split(split_project, (0.6, 0.2, 0.2), seed=1, stratify=False)
    n = len(a)
    total = Counter(a.values())
    for s, f in zip(SPLITS, (0.6, 0.2, 0.2), strict=True):
        assert abs(total[s] - f * n) <= 1, total


def test_random_split_seeds(split_project: Project) -> None:
    assert random_split(split_project, seed=7) == random_split(split_project, seed=7)
    assert random_split(split_project, seed=7) != random_split(split_project, seed=8)
    assert kfold(split_project, 4, seed=7) == kfold(split_project, 4, seed=7)
    assert kfold(split_project, 4, seed=7) != kfold(split_project, 4, seed=8)


def test_random_split_only_unassigned_keeps_manual_choices(split_project: Project) -> None:
    cats = split_project.members["cat"]
    manual = {cats[0]: "test", cats[1]: "test", cats[2]: "val"}
    split_project.set_splits(manual)
    a = random_split(split_project, seed=0, only_unassigned=True)
    assert set(a) == set(split_project.image_ids()) - set(manual)
    split_project.set_splits(a)
    for i, s in manual.items():
        assert split_project.image(i).split == s
    assert split_project.images_in_split(None) == []
    # without the flag, everything is reassigned
    assert set(random_split(split_project, seed=0)) == set(split_project.image_ids())


def test_random_split_rejects_bad_fractions(split_project: Project) -> None:
    for bad in [(0.5, 0.5), (1.0, -0.1, 0.1), (0.0, 0.0, 0.0)]:
        with pytest.raises(ValidationError, match="fractions"):
            random_split(split_project, bad)


@pytest.mark.parametrize("k", [2, 3, 5])
def test_kfold_assignment(split_project: Project, k: int) -> None:
    folds = kfold(split_project, k, seed=2)
    ids = split_project.image_ids()
    assert sorted(folds) == ids  # every image exactly once
    assert set(folds.values()) == set(range(k))
    sizes = Counter(folds.values())
    assert max(sizes.values()) - min(sizes.values()) <= 1, sizes
    per_class: dict = defaultdict(Counter)
    for name, members in split_project.members.items():
        for i in members:
            per_class[name][folds[i]] += 1
        counts = [per_class[name][f] for f in range(k)]
        assert max(counts) - min(counts) <= 1, (name, counts)  # stratified
    split_project.set_folds(folds)
    assert {r.id: r.fold for r in split_project.images()} == folds


def test_kfold_rejects_k_below_two(split_project: Project) -> None:
    with pytest.raises(ValidationError, match="k >= 2"):
        kfold(split_project, 1)
