"""Adaptation beats source-only on a real shift: MNIST digits (source) → UCI optdigits
(target), two collections of handwritten digits from different writers, scanners and
preprocessing (tests/data/domains, built by tests/bench/bench_domain_adaptation.py).

The images go into a project with their domains like any user's; their EfficientNet-Lite0
features (bundled weights, 112 px) are committed beside them and put into the project's
feature cache, so training takes the fast path without running the backbone (seconds).
``test_committed_features_are_the_backbones`` keeps that honest: it recomputes some."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from tlstudio.core.project import Project
from tlstudio.ml import data as data_mod
from tlstudio.ml.adapt import AdaptConfig
from tlstudio.ml.backbones import build_backbone, get_spec
from tlstudio.ml.features import FeatureCache, extract_features, weights_id
from tlstudio.ml.runner import RunSpec, load_run_model, train
from tlstudio.ml.train_config import TrainConfig

DATA = Path(__file__).resolve().parents[1] / "data" / "domains" / "digits_pair.npz"
BACKBONE, SIZE = "efficientnet_lite0", 112
N_IMAGES = 200  # of each domain's 300, evenly spread over the digit-ordered rows


@pytest.fixture(scope="module")
def pair() -> dict[str, np.ndarray]:
    with np.load(DATA) as z:
        return {k: z[k] for k in z.files}


def _project(root: Path, pair, n: int | None = None) -> tuple[Project, dict[str, list[int]]]:
    """A project with the pair's images (``n`` of each, see :func:`_subset`), tagged with their digit and
    put in the domains "MNIST" and "optdigits"; also their ids per domain."""
    project = Project.create(root / "p")
    classes = [project.add_class(str(d)).id for d in range(10)]
    ids: dict[str, list[int]] = {}
    for domain, key in (("MNIST", "mnist"), ("optdigits", "digits")):
        paths = []
        for i, img in enumerate(_subset(pair[f"{key}_images"], n)):
            p = root / domain / f"{i:04d}.png"
            p.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(p), img)
            paths.append(p)
        ids[domain] = project.add_images(paths, domain=domain).added
        assert len(ids[domain]) == len(paths)
        with project.transaction():
            for image_id, y in zip(ids[domain], _subset(pair[f"{key}_labels"], n), strict=True):
                project.set_tags(image_id, [classes[int(y)]])
    return project, ids


def _subset(rows: np.ndarray, n: int | None) -> np.ndarray:
    """``n`` rows spread over the whole array (it is ordered by digit), or all."""
    if n is None or n >= len(rows):
        return rows
    return rows[np.linspace(0, len(rows) - 1, n).round().astype(int)]


def _dataset(project: Project, ids: list[int]) -> data_mod.ProjectDataset:
    b = get_spec(BACKBONE)
    return data_mod.ProjectDataset(project, "classify", ids, SIZE, b.mean, b.std)


def test_committed_features_are_the_backbones(tmp_path, pair) -> None:
    project, ids = _project(tmp_path, pair, n=4)
    backbone = build_backbone(BACKBONE, "bundled").eval()
    for domain, key in (("MNIST", "mnist"), ("optdigits", "digits")):
        computed, _ = extract_features(backbone, _dataset(project, ids[domain]), None, None)
        committed = _subset(pair[f"{key}_features"], 4).astype(np.float32)
        assert np.allclose(computed, committed, rtol=1e-2, atol=2e-3)
    assert str(pair["backbone"]) == BACKBONE and int(pair["input_size"]) == SIZE
    project.close()


def test_adaptation_beats_source_only_on_real_digits(tmp_path, pair) -> None:
    """Source-only ≈ 0.2 on optdigits; moving the MNIST features to the optdigits
    statistics (per-domain standardisation, CORAL) ≈ 0.4. The target's labels only
    score: half of its images are adapted to, the other half (test split) scored."""
    project, ids = _project(tmp_path, pair, n=N_IMAGES)
    source, target = ids["MNIST"], ids["optdigits"]
    scored = target[1::2]
    project.set_splits(dict.fromkeys(scored, "test"))
    cache = FeatureCache(project.cache_dir)
    group = cache.open_group(
        BACKBONE,
        weights_id(BACKBONE, "bundled"),
        _dataset(project, [source[0]]).preprocess_signature(),
    )
    features = {}
    for domain, key in (("MNIST", "mnist"), ("optdigits", "digits")):
        vectors = _subset(pair[f"{key}_features"], N_IMAGES)
        for image_id, vector in zip(ids[domain], vectors, strict=True):
            features[image_id] = vector.astype(np.float32)
            cache.put(group, project.image(image_id).sha256, features[image_id])
    # every 5th source image validates (the pair is ordered by digit)
    split = ([i for k, i in enumerate(source) if k % 5], source[::5])
    truth = np.array([int(project.class_info(project.tags(i)[0]).name) for i in scored])
    x = torch.from_numpy(np.stack([features[i] for i in scored]))

    def target_accuracy(adapt: AdaptConfig | None) -> float:
        spec = RunSpec(
            task="classify", backbone=BACKBONE, weights="bundled", input_size=SIZE, adapt=adapt,
            train=TrainConfig(epochs=12, batch_size=32, lr=1e-3, seed=0),
        )  # fmt: skip
        torch.manual_seed(0)  # the same initial head for every arm: only the features differ
        result = train(project, spec, image_ids=split)
        assert result.feature_cache
        model, _ = load_run_model(project, result.run_id)
        with torch.no_grad():
            predicted = model.forward_from_features(x).argmax(1).numpy()
        return float((predicted == truth).mean())

    source_only = target_accuracy(None)
    standardized = target_accuracy(AdaptConfig("standardize", "optdigits"))
    coral = target_accuracy(AdaptConfig("coral", "optdigits"))
    print(f"optdigits accuracy: source only {source_only:.3f}, "
          f"standardize {standardized:.3f}, CORAL {coral:.3f}")  # fmt: skip
    assert standardized >= source_only + 0.1
    assert coral >= source_only + 0.1
    project.close()
