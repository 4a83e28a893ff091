"""The fast path: the feature cache, extraction counts, heads on features."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from tlstudio.core.project import Project
from tlstudio.ml.backbones import build_backbone
from tlstudio.ml.data import ProjectDataset
from tlstudio.ml.features import (
    HEAD_KINDS,
    ExtractionCancelled,
    FeatureCache,
    extract_features,
    fit_sklearn_head,
    train_head_on_features,
    weights_id,
)
from tlstudio.ml.transforms import AugmentConfig, build_train_transform

N = 5
LITE_ID = "bundled:efficientnet_lite0:test"


@pytest.fixture(scope="module")
def lite():
    return build_backbone("efficientnet_lite0", "bundled")


@pytest.fixture
def project(tmp_path: Path):
    rng = np.random.default_rng(0)
    files = []
    for i in range(N):
        p = tmp_path / "src" / f"im{i}.png"
        p.parent.mkdir(exist_ok=True)
        cv2.imwrite(str(p), rng.integers(0, 256, (40, 48, 3), dtype=np.uint8))
        files.append(p)
    with Project.create(tmp_path / "proj") as proj:
        proj.add_images(files)
        yield proj


def _dataset(proj: Project, backbone, size: int = 64, transform=None) -> ProjectDataset:
    s = backbone.spec
    return ProjectDataset(proj, "autoencode", proj.image_ids(), size, s.mean, s.std, transform)


def _count_forwards(backbone) -> list[int]:
    calls = [0]
    inner = backbone.forward

    def counting(x):
        calls[0] += x.shape[0]
        return inner(x)

    backbone.forward = counting
    return calls


def test_second_extraction_reads_everything_from_the_cache(project: Project, lite) -> None:
    cache = FeatureCache(project.cache_dir)
    ds = _dataset(project, lite)
    calls = _count_forwards(lite)
    try:
        X1, st1 = extract_features(lite, ds, cache, LITE_ID, batch_size=2)
        assert X1.shape == (N, 1280) and X1.dtype == np.float32
        assert (st1.computed, st1.cached, st1.forward_calls, calls[0]) == (N, 0, 3, N)
        X2, st2 = extract_features(lite, ds, cache, LITE_ID, batch_size=2)
        assert (st2.computed, st2.cached, st2.forward_calls, calls[0]) == (0, N, 0, N)
        np.testing.assert_array_equal(X1, X2)
        # the vectors are the backbone's pooled output for the dataset's images
        with torch.no_grad():
            direct = lite.eval()(torch.stack([ds[i][0] for i in range(2)])).numpy()
        np.testing.assert_allclose(X1[:2], direct, rtol=1e-4, atol=1e-5)
        groups = cache.groups()
        assert len(groups) == 1 and cache.count(groups[0]) == N
        assert not list(cache.root.rglob(".tmp-*"))  # atomic writes leave no temporaries
    finally:
        del lite.forward


def test_changing_preprocessing_weights_or_backbone_recomputes(project: Project, lite) -> None:
    cache = FeatureCache(project.cache_dir)
    extract_features(lite, _dataset(project, lite), cache, LITE_ID)
    _, st = extract_features(lite, _dataset(project, lite, size=48), cache, LITE_ID)
    assert st.computed == N  # input size is part of the key
    other_norm = ProjectDataset(
        project, "autoencode", project.image_ids(), 64, (0.5,) * 3, (0.25,) * 3
    )
    _, st = extract_features(lite, other_norm, cache, LITE_ID)
    assert st.computed == N  # mean/std are part of the key
    _, st = extract_features(lite, _dataset(project, lite), cache, "file:efficientnet_lite0:other")
    assert st.computed == N  # weights are part of the key
    small = build_backbone("mobilenet_v3_small", "none")
    X, st = extract_features(small, _dataset(project, small), cache, "test:random-but-fixed")
    assert st.computed == N and X.shape == (N, 576)  # backbone is part of the key
    _, st = extract_features(lite, _dataset(project, lite), cache, LITE_ID)
    assert st.computed == 0 and len(cache.groups()) == 5
    cache.clear()
    assert cache.groups() == []


def test_new_images_only_are_computed_and_corrupt_vectors_redone(project: Project, lite) -> None:
    cache = FeatureCache(project.cache_dir)
    ids = project.image_ids()
    s = lite.spec
    first = ProjectDataset(project, "autoencode", ids[:3], 64, s.mean, s.std)
    extract_features(lite, first, cache, LITE_ID)
    ds = _dataset(project, lite)
    group = cache.groups()[0]
    cache.path(group, ds.content_key(0)).write_bytes(b"truncated")
    X, st = extract_features(lite, ds, cache, LITE_ID)
    assert (st.cached, st.computed) == (2, 3) and np.isfinite(X).all()


def test_cancel_keeps_finished_vectors(project: Project, lite) -> None:
    cache = FeatureCache(project.cache_dir)
    ds = _dataset(project, lite)
    seen: list[tuple[int, int]] = []
    with pytest.raises(ExtractionCancelled):
        extract_features(
            lite,
            ds,
            cache,
            LITE_ID,
            batch_size=2,
            progress=lambda d, t: seen.append((d, t)),
            token=lambda: len(seen) >= 2,
        )
    assert seen == [(0, N), (2, N)]
    _, st = extract_features(lite, ds, cache, LITE_ID, batch_size=2)
    assert (st.cached, st.computed) == (2, N - 2)
    callbacks = pytest.importorskip("tlstudio.ml.callbacks")
    token = callbacks.CancelToken()  # the trainer's token works too
    token.cancel()
    other = _dataset(project, lite, size=32)
    with pytest.raises(ExtractionCancelled):
        extract_features(lite, other, cache, LITE_ID, token=token)


def test_augmented_dataset_and_random_weights_are_not_cached(project: Project, lite) -> None:
    cache = FeatureCache(project.cache_dir)
    t = build_train_transform("autoencode", AugmentConfig(), 64)
    with pytest.raises(ValueError, match="augmented"):
        extract_features(lite, _dataset(project, lite, transform=t), cache, LITE_ID)
    assert weights_id("mobilenet_v3_small", "none") is None
    wid = weights_id("efficientnet_lite0", "bundled")
    assert wid is not None and wid.startswith("bundled:efficientnet_lite0:")
    assert weights_id("efficientnet_lite0", "auto") == wid
    _, st = extract_features(lite, _dataset(project, lite), cache, None)
    assert st.computed == N and cache.groups() == []


def _separable(
    n_per: int = 20, k: int = 3, dim: int = 16, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1, (k, dim)) * 5
    X = np.concatenate([c + rng.normal(0, 0.5, (n_per, dim)) for c in centres]).astype(np.float32)
    X = np.abs(X) + 0.1  # pooled ReLU-like features are positive
    y = np.repeat(np.arange(k), n_per)
    return X, y


@pytest.mark.parametrize("kind", HEAD_KINDS)
def test_sklearn_heads_fit_separable_data(kind: str) -> None:
    X, y = _separable()
    head = fit_sklearn_head(kind, X, y, num_classes=4)  # class 3 never seen
    p = head.predict_proba(X)
    assert p.shape == (len(X), 4)
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-6)
    assert (p[:, 3] == 0).all()
    assert (head.predict(X) == y).mean() == 1.0
    assert (p.argmax(1) == y).all()


def test_linear_svm_with_few_samples_uses_softmax_of_decisions() -> None:
    X, y = _separable(n_per=2, k=2)
    head = fit_sklearn_head("linear_svm", X, y)
    assert not head.calibrated and (head.predict(X) == y).all()
    assert fit_sklearn_head("linear_svm", *_separable(n_per=5)).calibrated
    with pytest.raises(ValueError, match="unknown head kind"):
        fit_sklearn_head("forest", X, y)  # type: ignore[arg-type]


@pytest.mark.parametrize("hidden", [0, 32])
def test_head_on_features_loss_decreases(hidden: int) -> None:
    X, y = _separable()
    seen: list[float] = []
    head, losses = train_head_on_features(
        X, y, 3, epochs=60, lr=1e-2, hidden=hidden, on_epoch=lambda e, loss: seen.append(loss)
    )
    assert len(losses) == 60 and seen == losses
    assert losses[-1] < 0.5 * losses[0]
    with torch.no_grad():
        pred = head(torch.from_numpy(X)).argmax(1).numpy()
    assert (pred == y).all()


def test_head_on_features_minibatch_soft_and_multi_label() -> None:
    X, y = _separable()
    _, losses = train_head_on_features(X, y, 3, epochs=20, batch_size=16)
    assert losses[-1] < losses[0]
    soft = np.eye(3, dtype=np.float32)[y] * 0.9 + 0.1 / 3
    _, losses = train_head_on_features(X, soft, 3, epochs=20)
    assert losses[-1] < losses[0]
    _, losses = train_head_on_features(
        X, np.eye(3, dtype=np.float32)[y], 3, epochs=20, multi_label=True
    )
    assert losses[-1] < losses[0]
    _, losses = train_head_on_features(X, y, 3, epochs=20, token=lambda: True)
    assert losses == []
