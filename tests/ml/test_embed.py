"""Latent spaces of trained runs: embeddings, projections, autoencoder anomalies."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tlstudio.core.demo import create_demo_project
from tlstudio.core.runs import RunStore
from tlstudio.ml import embed, runner
from tlstudio.ml.features import FeatureCache
from tlstudio.ml.runner import RunError, RunSpec
from tlstudio.ml.trainer import TrainConfig


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    project = create_demo_project(tmp_path_factory.mktemp("embed") / "demo", n_images=24, size=64)
    yield project
    project.close()


@pytest.fixture(scope="module")
def classify_run(demo) -> int:
    """Lite0 with its bundled ImageNet weights, frozen (fast path: seconds on a CPU)."""
    torch.set_num_threads(1)
    spec = RunSpec(
        task="classify",
        backbone="efficientnet_lite0",
        weights="bundled",
        train=TrainConfig(epochs=3, lr=3e-3, batch_size=8),
        input_size=96,
    )
    return runner.train(demo, spec).run_id


@pytest.fixture(scope="module")
def ae_run(demo) -> int:
    torch.set_num_threads(1)
    spec = RunSpec(
        task="autoencode",
        backbone="resnet18",
        weights="none",
        train=TrainConfig(epochs=1, batch_size=8, lr=1e-3),
        input_size=64,
        model_options={"encoder": "small", "latent_dim": 8},
    )
    return runner.train(demo, spec).run_id


def test_embedding_has_one_row_per_image_and_same_class_images_are_closer(demo, classify_run):
    emb = embed.embed_run(demo, classify_run)
    assert emb.image_ids == demo.image_ids()
    assert emb.features.shape == (24, 1280) and emb.features.dtype == np.float32
    assert emb.source == "backbone"
    labels = demo.primary_labels()
    y = np.array([labels[i] for i in emb.image_ids])
    X = emb.features
    dist = np.linalg.norm(X[:, None] - X[None], axis=2)
    same = (y[:, None] == y[None]) & ~np.eye(len(y), dtype=bool)
    different = y[:, None] != y[None]
    assert dist[same].mean() < dist[different].mean()


def test_second_embedding_reads_the_feature_cache(demo, classify_run, monkeypatch):
    first = embed.embed_run(demo, classify_run, demo.image_ids()[:10])
    cache = FeatureCache(demo.cache_dir)
    assert sum(cache.count(g) for g in cache.groups()) >= 10

    def no_forward(self, x):
        raise AssertionError("the model ran although every vector was cached")

    monkeypatch.setattr(embed._RunEncoder, "forward", no_forward)
    second = embed.embed_run(demo, classify_run, demo.image_ids()[:10])
    np.testing.assert_array_equal(first.features, second.features)


def test_pca_and_tsne_give_n_by_2_and_repeat_exactly():
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(c, 1.0, (20, 64)) for c in (0.0, 6.0)]).astype(np.float32)
    steps: list[tuple[int, int]] = []
    for method in ("pca", "tsne"):
        steps.clear()
        a = embed.project_points(X, method, seed=3, progress=lambda d, t: steps.append((d, t)))
        b = embed.project_points(X, method, seed=3)
        assert a.shape == (40, 2) and a.dtype == np.float32
        np.testing.assert_array_equal(a, b)
        assert steps[-1] == (3, 3)
        # the two clusters stay apart in 2-D
        gap = np.linalg.norm(a[:20].mean(0) - a[20:].mean(0))
        spread = max(a[:20].std(0).max(), a[20:].std(0).max())
        assert gap > 2 * spread, method


@pytest.mark.usefixtures("umap_jit_cached")
def test_umap_projects_a_small_set():
    rng = np.random.default_rng(1)
    X = np.concatenate([rng.normal(c, 1.0, (15, 16)) for c in (0.0, 8.0)])
    Y = embed.project_points(X, "umap", seed=0)
    assert Y.shape == (30, 2) and np.isfinite(Y).all()
    assert np.linalg.norm(Y[:15].mean(0) - Y[15:].mean(0)) > Y[:15].std(0).max()


@pytest.mark.parametrize(
    ("features", "method", "message"),
    [
        (np.zeros((2, 4)), "pca", "at least 3 images"),
        (np.zeros((5,)), "pca", "N×D"),
        (np.array([[0.0, 1.0], [np.nan, 1.0], [2.0, 3.0]]), "tsne", "1 of 3 feature vectors"),
        (np.zeros((5, 3)), "mds", "unknown projection 'mds'"),
    ],
)
def test_projection_errors_name_the_problem(features, method, message):
    with pytest.raises(embed.ProjectionError, match=message):
        embed.project_points(features, method)


def test_anomaly_ranking_predicts_missing_images_and_sorts_by_error(demo, ae_run):
    runs = RunStore(demo)
    assert runs.predicted_images(ae_run) == []
    ranking = embed.anomaly_ranking(demo, ae_run)
    assert sorted(i for i, _ in ranking) == demo.image_ids()
    errors = [e for _, e in ranking]
    assert errors == sorted(errors, reverse=True) and errors[0] > 0
    stored = runs.prediction(ae_run, ranking[0][0])
    assert stored.payload["error"] == pytest.approx(errors[0])
    # latents stored by those predictions are reused as the embedding
    emb = embed.embed_run(demo, ae_run)
    assert emb.source == "stored latent" and emb.features.shape == (24, 8)


def test_reconstructions_match_the_stored_error(demo, ae_run):
    image_id = demo.image_ids()[0]
    [(original, recon, error)] = embed.reconstructions(demo, ae_run, [image_id])
    assert original.shape == recon.shape == (64, 64, 3)
    assert original.dtype == recon.dtype == np.uint8
    runner.predict(demo, ae_run, [image_id], device="cpu")
    stored = RunStore(demo).prediction(ae_run, image_id)
    assert error > 0 and error == pytest.approx(stored.payload["error"], rel=1e-4)
    # the reconstruction is an image of the input, not noise: closer to it than a flat grey
    diff = np.abs(recon.astype(float) - original).mean()
    assert diff < np.abs(128.0 - original).mean()


def test_autoencoder_views_refuse_other_runs(demo, classify_run):
    with pytest.raises(RunError, match="classify run; reconstructions need an autoencoder"):
        embed.anomaly_ranking(demo, classify_run)


def test_point_facts_compare_predictions_with_labels(demo, classify_run):
    ids = demo.image_ids()
    runner.predict(demo, classify_run, ids[:6], device="cpu")
    facts = embed.point_facts(demo, classify_run, ids)
    labels = demo.primary_labels()
    assert list(facts.label) == [labels[i] for i in ids]
    assert set(facts.split) <= {"train", "val", "test"}
    runs = RunStore(demo)
    for k, image_id in enumerate(ids[:6]):
        predicted = runs.prediction(classify_run, image_id).payload["class_id"]
        assert facts.predicted[k] == predicted
        assert facts.outcome[k] == ("right" if predicted == labels[image_id] else "wrong")
    assert set(facts.outcome[6:]) == {""} and set(facts.predicted[6:]) == {-1}
