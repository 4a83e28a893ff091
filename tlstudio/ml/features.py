"""The fast path: pooled backbone features computed once, cached on disk, heads on top.

With the backbone fully frozen and no augmentation every image always yields the same
feature vector, so it is computed once and only the head trains (in seconds).

Cache layout: ``<cache_dir>/features/<group>/<sha256>.npy``, one float32 vector (C,) per
image. ``group`` is a hash of (backbone name, weights id, preprocessing signature); its
folder also holds ``key.json`` with that key in plain words. One small file per image,
named by the image's content hash, because: any subset of images (a split, a new import)
is looked up with no index to keep consistent; each file is written atomically
(temporary file + ``os.replace``), so a cancelled or killed extraction keeps everything
finished so far and never leaves a half-written vector; deleting or re-importing images
needs no compaction. A memmap would need an index, growing and rewriting on every
import, and a crash mid-write could corrupt the shared file. At a few hundred to a few
thousand images of 0.5–8 KB each, per-file overhead is negligible.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from tlstudio.core.errors import CANCELLED, TlsError
from tlstudio.ml.collate import collate

FEATURES_DIR = "features"
ProgressFn = Callable[[int, int], None]  # (done, total)


class ExtractionCancelled(TlsError):
    """Feature extraction stopped because the token asked; finished vectors stay cached."""

    kind = CANCELLED


def _cancelled(token: Any) -> bool:
    """True if ``token`` (None, a callable, or an object with ``is_cancelled``/``cancelled``) says stop."""
    if token is None:
        return False
    for name in ("is_cancelled", "cancelled"):
        if hasattr(token, name):
            v = getattr(token, name)
            return bool(v() if callable(v) else v)
    if callable(token):
        return bool(token())
    raise TypeError(f"cannot read a cancel flag from {token!r}")


# --------------------------------------------------------------------------- weights id

_FILE_HASHES: dict[tuple[str, int, int], str] = {}


def _file_sha256(path: Path) -> str:
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _FILE_HASHES:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        _FILE_HASHES[key] = h.hexdigest()
    return _FILE_HASHES[key]


def weights_id(name: str, weights: Any) -> str | None:
    """A stable id of a backbone's weights for cache keys, e.g. ``"bundled:efficientnet_lite0:3f1c…"``
    (source, name, first 16 hex digits of the file's SHA-256); None for ``"none"`` (random
    weights differ per build, so their features must not be cached)."""
    from tlstudio.ml import weights as W

    if isinstance(weights, (str, os.PathLike)) and str(weights) not in (
        "bundled",
        "cached",
        "none",
        "auto",
    ):
        weights = Path(weights)
    if isinstance(weights, Path):
        return f"file:{name}:{_file_sha256(weights)[:16]}"
    if weights == "none":
        return None
    status = W.weights_status(name)
    if weights == "auto":
        weights = "bundled" if status.bundled else "cached"
    path = status.bundled_path if weights == "bundled" else status.cached_path
    if path is None or not path.is_file():
        raise W.WeightsError(f"{name}: no {weights} weights on this machine")
    return f"{weights}:{name}:{_file_sha256(path)[:16]}"


# --------------------------------------------------------------------------- cache


class FeatureCache:
    """Pooled features per image on disk, grouped by (backbone, weights, preprocessing)."""

    def __init__(self, cache_dir: str | Path):
        self.root = Path(cache_dir) / FEATURES_DIR

    @staticmethod
    def group_key(backbone: str, weights_id: str, preprocess: Mapping[str, Any]) -> str:
        """Hash (20 hex digits) naming the group of vectors that share these settings."""
        key = {"backbone": backbone, "weights": weights_id, "preprocess": dict(preprocess)}
        text = json.dumps(key, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:20]

    def open_group(self, backbone: str, weights_id: str, preprocess: Mapping[str, Any]) -> str:
        """:meth:`group_key`, creating the group's folder and ``key.json`` if needed."""
        group = self.group_key(backbone, weights_id, preprocess)
        folder = self.root / group
        if not (folder / "key.json").is_file():
            folder.mkdir(parents=True, exist_ok=True)
            key = {"backbone": backbone, "weights": weights_id, "preprocess": dict(preprocess)}
            self._atomic_write(folder / "key.json", json.dumps(key, indent=1, default=str).encode())
        return group

    def path(self, group: str, sha256: str) -> Path:
        return self.root / group / f"{sha256}.npy"

    def has(self, group: str, sha256: str) -> bool:
        return self.path(group, sha256).is_file()

    def get(self, group: str, sha256: str) -> np.ndarray | None:
        """The cached float32 vector, or None (also for an unreadable file, which is removed)."""
        p = self.path(group, sha256)
        try:
            v = np.load(p, allow_pickle=False)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, EOFError):
            p.unlink(missing_ok=True)
            return None
        return v.astype(np.float32, copy=False)

    def put(self, group: str, sha256: str, vector: np.ndarray) -> None:
        """Store one vector atomically (temporary file in the same folder, then rename)."""
        folder = self.root / group
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".npy")
        try:
            with os.fdopen(fd, "wb") as f:
                np.save(f, np.ascontiguousarray(vector, dtype=np.float32), allow_pickle=False)
            os.replace(tmp, self.path(group, sha256))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @staticmethod
    def _atomic_write(path: Path, data: bytes) -> None:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def groups(self) -> list[str]:
        """Group hashes present on disk."""
        return (
            sorted(p.name for p in self.root.iterdir() if p.is_dir()) if self.root.is_dir() else []
        )

    def count(self, group: str) -> int:
        """Number of vectors stored in ``group``."""
        folder = self.root / group
        return sum(1 for _ in folder.glob("[!.]*.npy")) if folder.is_dir() else 0

    def size_bytes(self) -> int:
        """Disk space used by all groups."""
        return (
            sum(p.stat().st_size for p in self.root.rglob("*") if p.is_file())
            if self.root.is_dir()
            else 0
        )

    def clear(self, group: str | None = None) -> None:
        """Delete one group, or every cached feature."""
        shutil.rmtree(self.root / group if group else self.root, ignore_errors=True)


# --------------------------------------------------------------------------- extraction


@dataclass
class ExtractStats:
    """Counts of one :func:`extract_features` call."""

    total: int = 0  # images in the dataset
    cached: int = 0  # vectors read from the cache
    computed: int = 0  # images that went through the backbone
    forward_calls: int = 0  # backbone forward passes (batches)
    seconds: float = 0.0


def extract_features(
    backbone: nn.Module | Callable[[], nn.Module],
    dataset: Any,
    cache: FeatureCache | None,
    weights_id: str | None,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
    progress: ProgressFn | None = None,
    token: Any = None,
    num_workers: int = 0,
    name: str | None = None,
) -> tuple[np.ndarray, ExtractStats]:
    """Pooled features (N×C float32, dataset order) of an unaugmented dataset.

    Vectors already in ``cache`` are read; only missing images go through ``backbone``
    (``backbone(x)`` = pooled N×C, in eval mode, no grad) and are then stored.
    ``backbone`` may be a function that builds it, called only when a vector is missing
    (then ``name``, the backbone's registry name, keys the cache). With
    ``cache`` or ``weights_id`` None nothing is read or stored. ``progress(done, total)``
    is called after the cache lookup and after each batch; ``token`` is checked before
    each batch (raises :class:`ExtractionCancelled`).
    """
    if getattr(dataset, "transform", None) is not None:
        raise ValueError(
            "cannot cache features of an augmented dataset; build it without a transform"
        )
    t0 = time.perf_counter()
    n = len(dataset)
    stats = ExtractStats(total=n)
    group = ""
    module = backbone if isinstance(backbone, nn.Module) else None
    if module is not None:
        spec: Any = getattr(module, "spec", None)  # a Backbone's registry entry
        name = spec.name if hasattr(module, "spec") else type(module).__name__
    elif name is None:
        raise ValueError("a backbone built on demand needs its name (name=...)")
    store: FeatureCache | None = None  # the cache, when vectors are read and stored
    if cache is not None and weights_id is not None:
        store = cache
        group = cache.open_group(name, weights_id, dataset.preprocess_signature())
    rows: list[np.ndarray | None] = [None] * n
    keys = [dataset.content_key(i) for i in range(n)]
    if store is not None:
        for i, k in enumerate(keys):
            rows[i] = store.get(group, k)
    missing = [i for i in range(n) if rows[i] is None]
    stats.cached = n - len(missing)
    if progress is not None:
        progress(stats.cached, n)
    if missing:
        if module is None:
            module = backbone()  # type: ignore[operator]
        module.to(device)  # the images go there
        was_training = module.training
        module.eval()
        loader = DataLoader(
            Subset(dataset, missing),
            batch_size=batch_size,
            shuffle=False,
            num_workers=num_workers,
            collate_fn=collate,
        )
        pos = 0
        try:
            with torch.inference_mode():
                for images, _ in loader:
                    if _cancelled(token):
                        raise ExtractionCancelled("feature extraction cancelled")
                    feats = module(images.to(device)).float().cpu().numpy()
                    stats.forward_calls += 1
                    for row in feats:
                        i = missing[pos]
                        rows[i] = row
                        if store is not None:
                            store.put(group, keys[i], row)
                        pos += 1
                    stats.computed += len(feats)
                    if progress is not None:
                        progress(stats.cached + stats.computed, n)
        finally:
            module.train(was_training)
    dim = next((r.shape[0] for r in rows if r is not None), 0)
    filled = cast(list[np.ndarray], rows)  # every row was read from the cache or computed
    X = np.stack(filled).astype(np.float32) if n else np.zeros((0, dim), np.float32)
    stats.seconds = time.perf_counter() - t0
    return X, stats


# --------------------------------------------------------------------------- torch head


def make_head(
    in_features: int, num_classes: int, hidden: int = 0, dropout: float = 0.0
) -> nn.Module:
    """Linear head (``hidden`` = 0) or MLP Linear → ReLU → Dropout → Linear; outputs logits."""
    if hidden <= 0:
        return nn.Linear(in_features, num_classes)
    return nn.Sequential(
        nn.Linear(in_features, hidden),
        nn.ReLU(inplace=True),
        nn.Dropout(dropout),
        nn.Linear(hidden, num_classes),
    )


def train_head_on_features(
    X: np.ndarray,
    y: np.ndarray,
    num_classes: int,
    epochs: int = 100,
    lr: float = 1e-2,
    *,
    head: nn.Module | None = None,
    hidden: int = 0,
    dropout: float = 0.0,
    weight_decay: float = 1e-4,
    batch_size: int | None = None,
    multi_label: bool = False,
    seed: int = 0,
    device: str | torch.device = "cpu",
    on_epoch: Callable[[int, float], None] | None = None,
    token: Any = None,
) -> tuple[nn.Module, list[float]]:
    """Train a head mapping features (N×C) to logits; return it (eval mode) and per-epoch losses.

    ``y``: N int class indices (cross-entropy), N×K floats summing to 1 (soft labels,
    soft cross-entropy) or, with ``multi_label``, N×K multi-hot (binary cross-entropy).
    ``head`` defaults to :func:`make_head`. AdamW; full batch when ``batch_size`` is None,
    else shuffled mini-batches. ``on_epoch(epoch, loss)`` runs after each epoch; ``token``
    is checked each epoch (stops early, returning what was trained so far).
    """
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    Xt = torch.as_tensor(np.asarray(X, np.float32), device=device)
    yt = torch.as_tensor(np.asarray(y), device=device)
    if multi_label or yt.is_floating_point():
        yt = yt.float()
        loss_fn: Callable = nn.BCEWithLogitsLoss() if multi_label else nn.CrossEntropyLoss()
    else:
        yt = yt.long()
        loss_fn = nn.CrossEntropyLoss()
    if head is None:
        head = make_head(Xt.shape[1], num_classes, hidden, dropout)
    head = head.to(device).train()
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    n = Xt.shape[0]
    bs = n if batch_size is None else max(1, int(batch_size))
    losses: list[float] = []
    for epoch in range(epochs):
        if _cancelled(token):
            break
        order = (
            torch.randperm(n, generator=gen).to(device)
            if bs < n
            else torch.arange(n, device=device)
        )
        total = 0.0
        for start in range(0, n, bs):
            idx = order[start : start + bs]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(head(Xt[idx]), yt[idx])
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        losses.append(total / max(n, 1))
        if on_epoch is not None:
            on_epoch(epoch, losses[-1])
    return head.eval(), losses


# --------------------------------------------------------------------------- sklearn heads

HeadKind = Literal["logreg", "linear_svm", "knn", "prototype"]
HEAD_KINDS: tuple[str, ...] = ("logreg", "linear_svm", "knn", "prototype")


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _l2n(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


class _Prototype:
    """Nearest class mean in cosine space, after centring on the training mean (CL2N)."""

    def __init__(self, temperature: float = 0.1):
        self.temperature = temperature

    def fit(self, X: np.ndarray, y: np.ndarray) -> _Prototype:
        self.center_ = X.mean(axis=0, keepdims=True)
        Z = _l2n(X - self.center_)
        self.classes_ = np.unique(y)
        self.protos_ = _l2n(np.stack([Z[y == c].mean(axis=0) for c in self.classes_]))
        return self

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        return _l2n(X - self.center_) @ self.protos_.T  # cosine similarities

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return _softmax(self.decision_function(X) / self.temperature)


@dataclass
class FittedHead:
    """A fitted scikit-learn style head; probabilities cover all ``num_classes`` columns
    (classes absent from training get probability 0)."""

    kind: str
    model: Any
    num_classes: int
    classes: np.ndarray  # class indices seen in training, sorted
    calibrated: bool = False

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """N×num_classes float probabilities (rows sum to 1)."""
        X = np.asarray(X, np.float32)
        if len(self.classes) == 1:
            p = np.ones((len(X), 1))
        elif self.kind == "linear_svm" and not self.calibrated:
            d = self.model.decision_function(X)
            if d.ndim == 1:  # binary: sigmoid(d) == softmax([-d/2, d/2])
                d = np.stack([-d / 2, d / 2], axis=1)
            p = _softmax(d)
        else:
            p = self.model.predict_proba(X)
        out = np.zeros((len(X), self.num_classes), np.float64)
        out[:, self.classes] = p
        return out

    def predict(self, X: np.ndarray) -> np.ndarray:
        """N int64 class indices (argmax of :meth:`predict_proba`)."""
        return self.predict_proba(X).argmax(axis=1).astype(np.int64)


def fit_sklearn_head(
    kind: HeadKind,
    X: np.ndarray,
    y: np.ndarray,
    num_classes: int | None = None,
    *,
    seed: int = 0,
    calibrate: bool = True,
) -> FittedHead:
    """Fit a classical head on features X (N×C) and class indices y (N ints 0..K-1).

    logreg: standardised features, L2 logistic regression. linear_svm: standardised
    features, LinearSVC; probabilities by sigmoid calibration (3-fold
    CalibratedClassifierCV) when every class has ≥ 3 samples, else softmax of the
    decision function (always, with ``calibrate=False``). knn: k = min(5, N) cosine
    neighbours, distance-weighted votes.
    prototype: nearest class mean in cosine space, softmax of similarities / 0.1.
    """
    from sklearn.calibration import CalibratedClassifierCV  # type: ignore[import-untyped]  # no stubs
    from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]  # no stubs
    from sklearn.neighbors import KNeighborsClassifier  # type: ignore[import-untyped]  # no stubs
    from sklearn.pipeline import make_pipeline  # type: ignore[import-untyped]  # no stubs
    from sklearn.preprocessing import StandardScaler  # type: ignore[import-untyped]  # no stubs
    from sklearn.svm import LinearSVC  # type: ignore[import-untyped]  # no stubs

    X = np.asarray(X, np.float32)
    y = np.asarray(y).astype(np.int64)
    if X.ndim != 2 or len(X) != len(y) or len(y) == 0:
        raise ValueError(f"need X N×C and y N with N > 0, got {X.shape} and {y.shape}")
    classes = np.unique(y)
    num_classes = int(num_classes if num_classes is not None else classes.max() + 1)
    if classes.min() < 0 or classes.max() >= num_classes:
        raise ValueError(f"class indices must lie in 0..{num_classes - 1}")
    calibrated = False
    if len(classes) == 1:
        model: Any = None
    elif kind == "logreg":
        model = make_pipeline(
            StandardScaler(), LogisticRegression(max_iter=2000, random_state=seed)
        )
    elif kind == "linear_svm":
        svm = make_pipeline(StandardScaler(), LinearSVC(random_state=seed, max_iter=5000))
        if calibrate and np.bincount(y)[classes].min() >= 3:
            model, calibrated = CalibratedClassifierCV(svm, cv=3, method="sigmoid"), True
        else:
            model = svm
    elif kind == "knn":
        model = KNeighborsClassifier(
            n_neighbors=min(5, len(y)), metric="cosine", weights="distance"
        )
    elif kind == "prototype":
        model = _Prototype()
    else:
        raise ValueError(f"unknown head kind {kind!r}; use one of {', '.join(HEAD_KINDS)}")
    if model is not None:
        model.fit(X, y)
    return FittedHead(kind, model, num_classes, classes, calibrated)
