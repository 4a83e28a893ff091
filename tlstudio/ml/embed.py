"""Latent spaces of trained runs: per-image feature vectors, 2-D projections of them,
and an autoencoder's reconstructions and anomaly ranking.

Features: for classify / detect / landmarks / segment runs, the run's own (fine-tuned)
backbone bottleneck, i.e. its last stage global-average-pooled (``Backbone.forward``);
for autoencoder runs the latent mean μ. Vectors are cached with
:class:`~tlstudio.ml.features.FeatureCache` under a key naming the run and the SHA-256 of
its model file, so a second call for the same run reads them from disk; training again
writes a new model file and so a new key.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from torch import nn

from tlstudio.core.errors import TlsError
from tlstudio.core.prediction_query import prediction_status
from tlstudio.core.project import Project
from tlstudio.core.runs import RunStore

from .backbones import get_spec
from .data import ProjectDataset, load_input_image
from .devices import select_device
from .features import FeatureCache, _file_sha256, extract_features
from .runner import RunError, RunSpec, load_run_model, predict
from .tasks.autoencode import AutoencoderModel
from .tasks.base import TaskModel

ProgressFn = Callable[[int, int], None]  # (done, total)
METHODS = ("pca", "tsne", "umap")


class ProjectionError(TlsError):
    """Features cannot be projected (too few points, bad values, unknown method)."""


@dataclass
class Embedding:
    """Feature vectors of a run's model: row i of ``features`` (N×D float32) belongs to
    ``image_ids[i]``. ``source``: "backbone" (pooled last stage), "latent" (autoencoder μ
    computed now) or "stored latent" (μ read from the run's stored predictions)."""

    image_ids: list[int]
    features: np.ndarray
    source: str


class _RunEncoder(nn.Module):
    """Normalised images N×3×H×W → the run's feature vectors N×D (see the module doc)."""

    def __init__(self, model: TaskModel, name: str):
        super().__init__()
        self.model = model
        self.spec = SimpleNamespace(name=name)  # read by extract_features for the cache key

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if isinstance(self.model, AutoencoderModel):  # the one "autoencode" model
            return self.model.encode(x)[0]
        return self.model.backbone(x)


def _run_spec(project: Project, run_id: int) -> RunSpec:
    return RunSpec.from_dict(RunStore(project).get(run_id).config)


def _stored_latents(project: Project, run_id: int, ids: Sequence[int]) -> np.ndarray | None:
    runs = RunStore(project)
    rows = []
    for image_id in ids:
        pred = runs.prediction(run_id, image_id)
        latent = None if pred is None else pred.payload.get("latent")
        if not latent:
            return None
        rows.append(latent)
    if len({len(r) for r in rows}) > 1:
        return None  # predictions of different models (should not happen) - recompute
    return np.asarray(rows, dtype=np.float32).reshape(len(rows), -1)


def embed_run(
    project: Project,
    run_id: int,
    image_ids: Sequence[int] | None = None,
    *,
    progress: ProgressFn | None = None,
    token: Any = None,
    device: str = "auto",
    batch_size: int = 16,
) -> Embedding:
    """Feature vectors of ``image_ids`` (default: every image, in id order) from run
    ``run_id``'s trained model. An autoencoder's stored latents are reused when every
    image has one. ``progress(done, total)`` counts images; ``token`` (a CancelToken) is
    checked before each batch and raises
    :class:`~tlstudio.ml.features.ExtractionCancelled`."""
    ids = [int(i) for i in (project.image_ids() if image_ids is None else image_ids)]
    spec = _run_spec(project, run_id)
    if not ids:
        return Embedding([], np.zeros((0, 0), np.float32), "backbone")
    if spec.task == "autoencode":
        stored = _stored_latents(project, run_id, ids)
        if stored is not None:
            if progress is not None:
                progress(len(ids), len(ids))
            return Embedding(ids, stored, "stored latent")
    model, spec = load_run_model(project, run_id)
    members = getattr(model, "member_ids", None)
    if members:  # an ensemble (tlstudio.ml.ensemble): each member has its own features
        raise RunError(
            f"run {run_id} is an ensemble: its members have different feature spaces; "
            "show one of them, runs " + ", ".join(f"#{i}" for i in members)
        )
    if spec.task != "autoencode" and getattr(model, "backbone", None) is None:
        raise RunError(f"run {run_id} ({spec.task}) has no backbone to take features from")
    rec = RunStore(project).get(run_id)
    if rec.checkpoint is None:  # load_run_model found one; the record changed since
        raise RunError(f"run {run_id} has no saved model (status {rec.status})")
    source = "latent" if spec.task == "autoencode" else "backbone"
    # The cache key names this run's model file by content: retraining changes the key.
    wid = f"run{run_id}:{_file_sha256(project.root / rec.checkpoint)[:16]}:{source}"
    encoder = _RunEncoder(model, f"{spec.backbone}/{spec.task}")
    bspec = get_spec(spec.backbone)
    # "autoencode" keeps every image (no label needed); the preprocessing is the same.
    dataset = ProjectDataset(
        project, "autoencode", ids, spec.resolved_input_size, bspec.mean, bspec.std
    )
    dev = select_device(device)
    encoder.to(dev)
    X, _ = extract_features(
        encoder,
        dataset,
        FeatureCache(project.cache_dir),
        wid,
        batch_size=batch_size,
        device=dev,
        progress=progress,
        token=token,
    )
    return Embedding(ids, X, source)


def _pca(X: np.ndarray, k: int, seed: int) -> np.ndarray:
    from sklearn.decomposition import PCA  # type: ignore[import-untyped]  # no stubs

    k = max(1, min(k, X.shape[0], X.shape[1]))
    return PCA(n_components=k, random_state=seed).fit_transform(X)


def project_points(
    features: np.ndarray,
    method: str = "pca",
    *,
    seed: int = 0,
    progress: ProgressFn | None = None,
    threads: int | None = None,
) -> np.ndarray:
    """N×D features → N×2 float32 coordinates (arbitrary units; only distances matter).

    Features are standardised per dimension first (constant dimensions stay 0).
    ``pca``: first two principal components. ``tsne`` (scikit-learn, Barnes-Hut,
    perplexity min(30, (N-1)/3), PCA init) and ``umap`` (umap-learn, 15 neighbours at
    most; its first call in a process JIT-compiles for ~25 s) run on the first 50
    principal components. Results depend only on ``features`` and ``seed``.
    ``progress(step, 3)`` after standardising, reducing and fitting. ``threads``: BLAS and
    OpenMP threads (default: one core fewer than this process may use, at least 1, so the
    GUI keeps a core; on a busy 2-core machine two OpenMP threads made t-SNE 8× slower,
    see tests/bench/bench_latent.py)."""
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]  # no stubs

    if threads is None:
        threads = (
            max(1, len(os.sched_getaffinity(0)) - 1)
            if hasattr(os, "sched_getaffinity")
            else max(1, (os.cpu_count() or 2) - 1)
        )
    with threadpool_limits(limits=max(1, int(threads))):
        return _project(features, method, seed, progress)


def _project(
    features: np.ndarray, method: str, seed: int, progress: ProgressFn | None
) -> np.ndarray:
    method = method.lower().replace("-", "")
    if method not in METHODS:
        raise ProjectionError(f"unknown projection {method!r}; use one of {', '.join(METHODS)}")
    X = np.asarray(features, dtype=np.float64)
    if X.ndim != 2:
        raise ProjectionError(f"features must be an N×D array, got shape {X.shape}")
    n, d = X.shape
    if n < 3:
        raise ProjectionError(f"need at least 3 images to draw a latent space, got {n}")
    if d < 1:
        raise ProjectionError("features have no dimensions")
    if not np.isfinite(X).all():
        bad = int((~np.isfinite(X).all(axis=1)).sum())
        raise ProjectionError(f"{bad} of {n} feature vectors contain NaN or infinite values")
    std = X.std(axis=0)
    X = (X - X.mean(axis=0)) / np.where(std > 1e-12, std, 1.0)
    step = 0

    def tick() -> None:
        nonlocal step
        step += 1
        if progress is not None:
            progress(step, 3)

    tick()
    if method == "pca":
        Y = _pca(X, 2, seed)
        tick()
    else:
        Z = _pca(X, 50, seed) if d > 50 else X
        tick()
        if method == "tsne":
            from sklearn.manifold import TSNE  # type: ignore[import-untyped]  # no stubs

            Y = TSNE(
                n_components=2,
                perplexity=min(30.0, (n - 1) / 3.0),
                init="pca",
                learning_rate="auto",
                random_state=seed,
            ).fit_transform(Z)
        else:
            import umap  # type: ignore[import-untyped]  # no stubs

            Y = umap.UMAP(
                n_components=2,
                n_neighbors=max(2, min(15, n - 1)),
                random_state=seed,
                n_jobs=1,  # random_state forces one thread anyway; say so to avoid a warning
                init="spectral" if n > 10 else "random",
            ).fit_transform(Z)
    if Y.shape[1] < 2:  # one-dimensional features: put the points on a line
        Y = np.column_stack([Y, np.zeros(n)])
    tick()
    return np.ascontiguousarray(Y[:, :2], dtype=np.float32)


# --------------------------------------------------------------------------- autoencoders


def _require_autoencoder(project: Project, run_id: int) -> RunSpec:
    spec = _run_spec(project, run_id)
    if spec.task != "autoencode":
        raise RunError(
            f"run {run_id} is a {spec.task} run; reconstructions need an autoencoder run"
        )
    return spec


def reconstructions(
    project: Project, run_id: int, image_ids: Sequence[int], *, device: str = "auto"
) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """(original, reconstruction, error) per image of an autoencoder run: both images are
    S×S×3 uint8 RGB at the run's input size S (the original as the network saw it,
    resized); ``error`` is the mean squared reconstruction error in normalised input
    units (the value stored as the prediction score)."""
    _require_autoencoder(project, run_id)
    model, spec = load_run_model(project, run_id)
    dev = select_device(device)
    model.to(dev)
    size = spec.resolved_input_size
    bspec = get_spec(spec.backbone)
    mean = torch.tensor(bspec.mean, dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(bspec.std, dtype=torch.float32).view(3, 1, 1)
    out = []
    for image_id in image_ids:
        rgb, _ = load_input_image(project.image_path(int(image_id)), size)
        x = (torch.from_numpy(rgb).permute(2, 0, 1).float() / 255.0 - mean) / std
        with torch.no_grad():
            pred = model.predict_step(x[None].to(dev))[0]
        recon = pred["reconstruction"].float().cpu() * std + mean
        recon_rgb = (recon.clamp(0, 1) * 255.0).round().byte().permute(1, 2, 0).numpy()
        out.append((rgb, np.ascontiguousarray(recon_rgb), float(pred["error"])))
    return out


def anomaly_ranking(
    project: Project,
    run_id: int,
    *,
    progress: ProgressFn | None = None,
    token: Any = None,
    device: str = "auto",
) -> list[tuple[int, float]]:
    """(image id, reconstruction error) of every image of an autoencoder run, highest
    error first (ties by id). Errors come from the run's stored predictions; images
    without one are predicted (and stored) first. ``progress(done, total)`` counts those
    predictions; a cancelled ``token`` leaves the unpredicted images out."""
    _require_autoencoder(project, run_id)
    runs = RunStore(project)
    have = {i: s for i, s in runs.predicted_images(run_id) if s is not None}
    missing = [i for i in project.image_ids() if i not in have]
    if missing:
        predict(project, run_id, missing, device=device, progress=progress, token=token)
        have = {i: s for i, s in runs.predicted_images(run_id) if s is not None}
    elif progress is not None:
        progress(0, 0)
    ids = set(project.image_ids())
    return sorted(((i, float(e)) for i, e in have.items() if i in ids), key=lambda t: (-t[1], t[0]))


# --------------------------------------------------------------------------- colouring facts


@dataclass
class PointFacts:
    """What a latent plot colours by, per image (arrays aligned with ``image_ids``).

    ``label``: class id of the image's label (first tag, else its most common box,
    landmark or mask class), -1 if unlabelled. ``split``: "train"/"val"/"test" or "".
    ``predicted``: class id the run predicts (classify: top class; detect: best box;
    segment: the class covering most pixels), -1 if none. ``outcome``: "right", "wrong"
    or "" (no prediction or no label to compare with), judged as the image browser does
    (:func:`tlstudio.core.prediction_query.prediction_status`); for autoencoders "high
    error" (top 10 % reconstruction error) or "normal". ``domain``: the image's domain
    (site, scanner, batch) or "" (none)."""

    image_ids: list[int]
    label: np.ndarray  # int64
    split: np.ndarray  # object (str)
    predicted: np.ndarray  # int64
    outcome: np.ndarray  # object (str)
    domain: np.ndarray | None = None  # object (str)


def _predicted_class(task: str, pred) -> int:
    """The class id a prediction stands for (colour by prediction), -1 if none: the
    class (classify), the best box's class (detect), the largest region's (segment)."""
    if pred is None:
        return -1
    p = pred.payload
    if task == "classify":
        return int(p["class_id"])
    if task == "detect" and p.get("boxes"):
        return int(max(p["boxes"], key=lambda b: b["score"])["class_id"])
    if task == "segment" and pred.mask is not None:
        values, counts = np.unique(pred.mask[pred.mask > 0], return_counts=True)
        if len(values):
            return int(values[np.argmax(counts)])
    return -1


def point_facts(project: Project, run_id: int | None, image_ids: Sequence[int]) -> PointFacts:
    """Labels, splits and (when ``run_id`` has stored predictions) predicted classes and
    right/wrong outcomes of ``image_ids``, for colouring a latent plot."""
    ids = [int(i) for i in image_ids]
    n = len(ids)
    primary = project.primary_labels()
    records = {r.id: r for r in project.images()}
    label = np.array([primary.get(i) if primary.get(i) is not None else -1 for i in ids], np.int64)
    split = np.array([records[i].split or "" if i in records else "" for i in ids], dtype=object)
    domain = np.array([records[i].domain or "" if i in records else "" for i in ids], object)
    predicted = np.full(n, -1, np.int64)
    outcome = np.full(n, "", dtype=object)
    if run_id is None:
        return PointFacts(ids, label, split, predicted, outcome, domain)
    runs = RunStore(project)
    task = _run_spec(project, run_id).task
    if task == "autoencode":  # no ground truth: flag the top 10 % reconstruction errors
        errors = {i: s for i, s in runs.predicted_images(run_id) if s is not None}
        if errors:
            cut = float(np.quantile(list(errors.values()), 0.9))
            for k, image_id in enumerate(ids):
                if image_id in errors:
                    e = errors[image_id]
                    outcome[k] = "high error" if e >= cut and e > 0 else "normal"
        return PointFacts(ids, label, split, predicted, outcome, domain)
    # right/wrong as the image browser judges it (one definition per task)
    status = prediction_status(project, run_id)
    for k, image_id in enumerate(ids):
        st = status.get(image_id)
        if st is not None and st.correct is not None:
            outcome[k] = "right" if st.correct else "wrong"
        if task in ("classify", "detect", "segment") and st is not None:
            predicted[k] = _predicted_class(task, runs.prediction(run_id, image_id))
    return PointFacts(ids, label, split, predicted, outcome, domain)
