"""Experiments built on :func:`tlstudio.ml.runner.train`: k-fold cross-validation,
pretrained vs from-scratch, learning curves, and instant scikit-learn heads on cached
features.

Every model trained here is recorded in the project as an ordinary run; its config
carries an ``"experiment"`` entry (e.g. ``{"kind": "cv", "k": 5, "fold": 2}``) saying
which experiment it belongs to. The user's stored train/val/test splits are never
changed: folds and subsets are handed to the runner as explicit image ids. With a
:class:`~tlstudio.ml.parallel_runs.RunPool` the runs of an experiment train in parallel
worker processes (one device each) and the result is the same as one after the other.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, TypeGuard

import numpy as np
import torch

from tlstudio.core.atomic import replacing
from tlstudio.core.errors import TlsError
from tlstudio.core.project import Project
from tlstudio.core.runs import RunStore
from tlstudio.core.splits import kfold

from . import data as data_mod
from . import runner
from .backbones import build_backbone, get_spec
from .callbacks import Callback, CancelToken
from .devices import select_device
from .features import HEAD_KINDS, FeatureCache, FittedHead, extract_features, fit_sklearn_head
from .features import weights_id as make_weights_id
from .metrics import cross_validation_summary, metrics_fn_for
from .parallel_runs import RunJob, RunPool
from .runner import RunError, RunSpec, TrainResult
from .train_config import TrainConfig

#: File in ``runs/<id>/`` holding a scikit-learn run's training features and labels.
SKLEARN_HEAD_FILE = "sklearn_head.npz"


def _cancelled(token: CancelToken | None) -> bool:
    return token is not None and token.is_cancelled


def _train_jobs(
    project: Project,
    jobs: list[RunJob],
    callbacks: Sequence[Callback],
    token: CancelToken | None,
    pool: RunPool | None,
    on_start: Callable[[int], None] | None = None,
) -> list[TrainResult | None]:
    """Each job's result in order; None where it did not run (cancelled). One after the
    other here (``on_start(i)`` before job i; a cancelled run ends the rest), or in
    ``pool``'s workers (``callbacks`` stay in this process and are not called)."""
    if pool is not None:
        return pool.run(project.root, jobs, token)
    out: list[TrainResult | None] = []
    for i, job in enumerate(jobs):
        if _cancelled(token):
            break
        if on_start is not None:
            on_start(i)
        tr = runner.train(
            project, job.spec, callbacks=callbacks, token=token,
            image_ids=job.image_ids, experiment=job.experiment, keep=job.keep,
        )  # fmt: skip
        out.append(tr)
        if tr.ended is not None and tr.ended.status == "cancelled":
            break
    return out + [None] * (len(jobs) - len(out))


def _ended(tr: TrainResult | None) -> TypeGuard[TrainResult]:
    """False for a run that did not start or was cancelled."""
    return tr is not None and not (tr.ended is not None and tr.ended.status == "cancelled")


# --------------------------------------------------------------------------- cross-validation


@dataclass
class CVResult:
    """Outcome of :func:`cross_validate`.

    ``per_fold[i]`` holds fold i's metrics on its held-out fold, of a model selected on
    nothing from that fold (see ``selection``); ``summary[name]`` = (mean, sample std)
    over the folds; ``fold_sizes[i]`` = (train images, held-out images); ``selection``:
    "inner" (each fold's epoch picked on an inner split of its training part, of
    ``inner_sizes[i]`` = (inner train, inner val) images) or "last" (the last epoch)."""

    k: int
    per_fold: list[dict[str, float]]
    summary: dict[str, tuple[float, float]]
    run_ids: list[int]
    fold_sizes: list[tuple[int, int]] = field(default_factory=list)
    cancelled: bool = False
    selection: str = "inner"
    inner_sizes: list[tuple[int, int]] = field(default_factory=list)


#: k-fold model selection: epoch picked on an inner split, or the last epoch
SELECTIONS = ("inner", "last")
#: share of each fold's training images held out to pick its epoch ("inner" selection)
INNER_FRACTION = 0.2


def selection_text(selection: str, inner_fraction: float = INNER_FRACTION) -> str:
    """How each fold's model was selected, in words (for tables)."""
    if selection == "last":
        return "each fold's last epoch, selected on nothing"
    return (
        f"each fold's epoch picked on an inner split ({inner_fraction:.0%} of its training "
        "images), never on its held-out fold"
    )


def inner_split(
    project: Project, ids: Sequence[int], fraction: float, seed: int
) -> tuple[list[int], list[int]]:
    """A seeded split of ``ids`` stratified by primary class: about ``fraction`` of each
    class (at least one image of every class with two or more) to the second list."""
    labels = project.primary_labels()
    groups: dict[Any, list[int]] = defaultdict(list)
    for i in sorted(ids):
        groups[labels.get(i)].append(i)
    rng = np.random.default_rng(seed)
    train, val = [], []
    for key in sorted(groups, key=lambda c: (c is None, c)):
        members = list(rng.permutation(groups[key]))
        take = 0 if len(members) < 2 else max(1, round(fraction * len(members)))
        val += [int(i) for i in members[:take]]
        train += [int(i) for i in members[take:]]
    return sorted(train), sorted(val)


def cross_validate(
    project: Project,
    spec: RunSpec,
    k: int = 5,
    seed: int = 0,
    callbacks: Sequence[Callback] = (),
    token: CancelToken | None = None,
    *,
    include_test: bool = False,
    on_fold: Callable[[int, int], None] | None = None,
    selection: str = "inner",
    inner_fraction: float = INNER_FRACTION,
    pool: RunPool | None = None,
) -> CVResult:
    """k-fold cross-validation of ``spec``.

    Folds come from :func:`tlstudio.core.splits.kfold` (stratified, seeded) and are
    stored on the images with ``project.set_folds``. Images in the test split stay
    held out (their fold is cleared) unless ``include_test``. Fold i's model learns from
    the other folds and is scored on fold i, which plays no part in choosing it:
    ``selection`` "inner" picks the epoch on an inner split (``inner_fraction`` of the
    other folds' images, :func:`inner_split`), "last" keeps the last epoch (early
    stopping off). The score is stored in the fold run's config (``"fold"``); the stored
    splits are not touched. ``on_fold(i, k)`` is called before each fold. A cancelled
    token stops after the current fold; the result then covers the folds that finished.
    ``pool``: the folds train in its worker processes (:mod:`tlstudio.ml.parallel_runs`)."""
    from .selection import score_ids

    if selection not in SELECTIONS:
        raise RunError(f"unknown selection {selection!r}; use one of {', '.join(SELECTIONS)}")
    assignment = kfold(project, k, seed=seed)
    held_out = set() if include_test else {r.id for r in project.images_in_split("test")}
    folds = {i: f for i, f in assignment.items() if i not in held_out}
    project.set_folds({i: folds.get(i) for i in project.image_ids()})
    members: dict[int, list[int]] = defaultdict(list)
    for image_id, f in sorted(folds.items()):
        members[f].append(image_id)
    empty = [f for f in range(k) if not members[f]]
    if empty:
        raise RunError(
            f"{k}-fold cross-validation: fold {empty[0] + 1} has no images "
            f"({len(folds)} images take part); choose a smaller k"
        )
    result = CVResult(k=k, per_fold=[], summary={}, run_ids=[], selection=selection)
    group = uuid.uuid4().hex[:12]  # names this experiment in every fold's run config
    runs = RunStore(project)
    jobs: list[RunJob] = []
    folds_ids: list[tuple[list[int], list[int]]] = []  # (train ids, val ids) of each fold
    for f in range(k):
        val_ids = members[f]
        train_ids = [i for g in range(k) if g != f for i in members[g]]
        fold_spec = copy.deepcopy(spec)
        experiment = {"kind": "cv", "k": k, "fold": f, "seed": seed, "group": group,
                      "selection": selection}  # fmt: skip
        label = f"fold {f + 1}/{k}"
        if selection == "inner":
            inner = inner_split(project, train_ids, inner_fraction, seed + f)
            result.inner_sizes.append((len(inner[0]), len(inner[1])))
            jobs.append(RunJob(fold_spec, inner, experiment, label))
        else:
            fold_spec.train.early_stopping_patience = None  # stopping would select on the fold
            jobs.append(RunJob(fold_spec, (train_ids, val_ids), experiment, label, keep="last"))
        folds_ids.append((train_ids, val_ids))
    start = None if on_fold is None else (lambda f: on_fold(f, k))
    results = _train_jobs(project, jobs, callbacks, token, pool, start)
    for (train_ids, val_ids), tr in zip(folds_ids, results, strict=True):
        if not _ended(tr):
            result.cancelled = True
            break
        assert tr is not None
        if selection == "inner":
            scores, n = score_ids(project, tr.run_id, val_ids, device=spec.train.device)
        else:  # the last epoch's recorded figures on the fold are its score
            scores = {k_: v for k_, v in tr.metrics.items() if k_ != "train_loss"}
            n = len(val_ids)
        runs.update_config(tr.run_id, fold={"metrics": scores, "images": n, "selection": selection})
        result.run_ids.append(tr.run_id)
        result.per_fold.append(dict(scores))
        result.fold_sizes.append((len(train_ids), len(val_ids)))
    result.summary = cross_validation_summary(result.per_fold)
    return result


# --------------------------------------------------------------------------- pretrained vs scratch


def scratch_spec(spec: RunSpec) -> RunSpec:
    """``spec`` trained from random weights: weights "none" and the whole network
    trainable (freeze 0, no warm-up or progressive unfreezing), same epochs and lr."""
    out = copy.deepcopy(spec)
    out.weights = "none"
    out.train = dataclasses.replace(spec.train, freeze=0, head_warmup_epochs=0, progressive_every=0)
    return out


def compare_pretrained_vs_scratch(
    project: Project,
    spec: RunSpec,
    callbacks: Sequence[Callback] = (),
    token: CancelToken | None = None,
    pool: RunPool | None = None,
) -> dict[str, dict[str, Any]]:
    """Train ``spec`` as given and again from scratch (:func:`scratch_spec`) on the same
    splits. Returns ``{"pretrained": info, "scratch": info}``, info = ``{"run_id",
    "weights", "freeze", "epochs", "metrics"}`` (validation metrics of the best epoch)."""
    if spec.weights == "none":
        raise RunError(
            "the spec already trains from scratch (weights none); pick pretrained weights"
        )
    out: dict[str, dict[str, Any]] = {}
    jobs = [
        RunJob(s, None, {"kind": "scratch", "arm": name}, name)
        for name, s in (("pretrained", copy.deepcopy(spec)), ("scratch", scratch_spec(spec)))
    ]
    for job, tr in zip(jobs, _train_jobs(project, jobs, callbacks, token, pool), strict=True):
        if tr is None:
            break
        name, s = job.label, job.spec
        out[name] = {
            "run_id": tr.run_id,
            "weights": s.weights,
            "freeze": s.train.freeze,
            "epochs": 0 if tr.ended is None else tr.ended.epochs_run,
            "feature_cache": tr.feature_cache,
            "metrics": dict(tr.metrics),
        }
    return out


# --------------------------------------------------------------------------- learning curve


class CurvePoint(NamedTuple):
    fraction: float
    n_train: int  # training images actually used (labelled for the task)
    metrics: dict[str, float]  # validation metrics of the best epoch


def _usable_ids(project: Project, spec: RunSpec, ids: Sequence[int]) -> list[int]:
    """The images of ``ids`` that carry a label for the spec's task (dataset order)."""
    bspec = get_spec(spec.backbone)
    template_id = spec.template_id
    if spec.task == "landmarks" and template_id is None:
        template_id = data_mod.choose_template(project, ids)
    ds = data_mod.ProjectDataset(
        project, spec.task, ids, spec.resolved_input_size, bspec.mean, bspec.std,
        template_id=template_id,
        multi_label=spec.task == "classify" and project.multi_label,
    )  # fmt: skip
    return ds.image_ids


def nested_subsets(
    project: Project, ids: Sequence[int], fractions: Sequence[float], seed: int = 0
) -> list[list[int]]:
    """Seeded subsets of ``ids`` stratified by primary class, one per fraction: each class
    contributes round(fraction × its count) images (at least one), and a larger fraction's
    subset contains every smaller one's."""
    labels = project.primary_labels()
    groups: dict[Any, list[int]] = defaultdict(list)
    for i in sorted(ids):
        groups[labels.get(i)].append(i)
    rng = np.random.default_rng(seed)
    order: list[np.ndarray] = []
    for key in sorted(groups, key=lambda c: (c is None, c)):
        members = np.array(groups[key])
        rng.shuffle(members)
        order.append(members)
    subsets = []
    for fr in fractions:
        take = [m[: max(1, min(len(m), round(fr * len(m))))] for m in order]
        subsets.append(sorted(int(i) for part in take for i in part))
    return subsets


def learning_curve(
    project: Project,
    spec: RunSpec,
    fractions: Sequence[float] = (0.1, 0.25, 0.5, 1.0),
    seed: int = 0,
    callbacks: Sequence[Callback] = (),
    token: CancelToken | None = None,
    pool: RunPool | None = None,
) -> list[CurvePoint]:
    """Train ``spec`` on growing, nested, stratified subsets of the train split (see
    :func:`nested_subsets`) and validate each on the full val split. Returns one
    :class:`CurvePoint` per fraction, in the given order (fewer if cancelled)."""
    if not fractions or any(not (0.0 < f <= 1.0) for f in fractions):
        raise RunError(f"fractions must lie in (0, 1], got {list(fractions)}")
    train_ids, val_ids = data_mod.train_val_ids(project, seed=spec.train.seed)
    if not val_ids:
        raise RunError("the val split is empty; a learning curve validates on it")
    usable = _usable_ids(project, spec, train_ids)
    if not usable:
        raise RunError(f"no training images with {spec.task} labels; label some or assign splits")
    points: list[CurvePoint] = []
    jobs = [
        RunJob(
            copy.deepcopy(spec),
            (subset, list(val_ids)),
            {"kind": "curve", "fraction": float(fr), "n_train": len(subset), "seed": seed},
            f"fraction {fr:g}",
        )  # fmt: skip
        for fr, subset in zip(
            fractions, nested_subsets(project, usable, fractions, seed), strict=True
        )
    ]
    for job, tr in zip(jobs, _train_jobs(project, jobs, callbacks, token, pool), strict=True):
        if not _ended(tr):
            break
        exp = job.experiment
        assert exp is not None  # every curve job above carries its experiment entry
        points.append(CurvePoint(float(exp["fraction"]), int(exp["n_train"]), dict(tr.metrics)))
    return points


# --------------------------------------------------------------------------- sklearn heads


def _log_loss(probs: np.ndarray, y: np.ndarray) -> float:
    if len(y) == 0:
        return math.nan
    p = probs[np.arange(len(y)), y]
    return float(-np.mean(np.log(np.clip(p, 1e-12, 1.0))))


def _build_frozen_backbone(name: str, weights: str, seed: int):
    """The backbone with ``weights``; random weights ("none") are drawn from ``seed`` so
    that a later prediction rebuilds the very same network."""
    choice = runner._weights_choice(weights)
    if choice != "none":
        return build_backbone(name, choice)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_backbone(name, choice)


def _save_npz_atomic(path: Path, **arrays: np.ndarray) -> None:
    with replacing(path) as tmp, open(tmp, "wb") as f:
        # allow_pickle named (numpy's default) so that **arrays maps to the arrays only
        np.savez(f, allow_pickle=True, **arrays)


def fit_sklearn_run(
    project: Project,
    backbone: str,
    weights: str,
    kind: str,
    input_size: int | None = None,
    *,
    seed: int = 0,
    device: str = "auto",
    progress: Callable[[str, int, int], None] | None = None,
    token: CancelToken | None = None,
) -> tuple[int, dict[str, float]]:
    """A few-shot classifier in seconds: frozen ``backbone`` features (cached under
    ``project.cache_dir``) and a head (``kind``: logreg, linear_svm, knn, prototype; see
    :func:`~tlstudio.ml.features.fit_sklearn_head`) fitted on the train split, scored on
    the val split. Single-label classification only.

    The run is an ordinary run: config = a classify :class:`RunSpec` (its model options
    name the head) with ``"experiment": {"kind": "sklearn", "head": kind, ...}``, one
    epoch row of metrics, and ``model.pt``: the backbone with the head as a linear layer,
    or for knn with its neighbours (:mod:`tlstudio.ml.linear_heads`), so evaluate,
    predict, export and the Inspect views work on it. Like any run it then gets a
    temperature fitted on val and a test score (:func:`selection.after_training`).
    ``runs/<id>/sklearn_head.npz`` keeps the training features and labels. Returns
    (run id, metrics): the classify metrics of :func:`~tlstudio.ml.metrics.metrics_fn_for`
    on val, plus ``train_loss``/``val_loss`` (log loss) and ``train_accuracy``, all from
    the saved model before its temperature."""
    import os

    from .checkpoints import save_atomic
    from .linear_heads import head_model, model_options
    from .selection import after_training

    if kind not in HEAD_KINDS:
        raise RunError(f"unknown head {kind!r}; use one of {', '.join(HEAD_KINDS)}")
    if project.multi_label:
        raise RunError("few-shot heads handle single-label classification only")
    spec = RunSpec(
        task="classify", backbone=backbone, weights=weights,
        train=TrainConfig(epochs=1, freeze="all", seed=seed, device=device),
        input_size=input_size,
    )  # fmt: skip
    bspec = get_spec(backbone)
    size = spec.resolved_input_size
    ids = data_mod.train_val_ids(project, seed=seed)
    train_ds, val_ds = data_mod.make_datasets(
        project, "classify", size, bspec.mean, bspec.std, None, multi_label=False, seed=seed,
        image_ids=ids,
    )  # fmt: skip
    if len(train_ds) == 0:
        raise RunError("no training images with class tags; label some or assign splits")
    model = _build_frozen_backbone(backbone, weights, seed)
    wid = make_weights_id(backbone, runner._weights_choice(weights))
    dev = select_device(device)
    model.to(dev)
    classes = project.classes()
    spec.model_options = model_options(kind, len(train_ds))
    config = spec.to_dict()
    config["experiment"] = {"kind": "sklearn", "head": kind, "file": SKLEARN_HEAD_FILE}
    runs = RunStore(project)
    run_id = runs.start("classify", backbone, config, str(dev))
    t0 = time.perf_counter()
    try:
        cache = FeatureCache(project.cache_dir)
        feats = []
        for name, ds in (("train", train_ds), ("val", val_ds)):
            fn = (
                None if progress is None else (lambda d, t, n=name: progress(f"features {n}", d, t))
            )
            X, _ = extract_features(model, ds, cache, wid, device=dev, progress=fn, token=token)
            feats.append(X)
        (X_train, X_val), y_train, y_val = feats, train_ds.class_labels(), val_ds.class_labels()
        clf = head_model(model, kind, X_train, y_train, len(classes), seed=seed).to(dev)

        def probs_of(X: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                logits = clf.head(torch.from_numpy(X).to(dev)).float()
            return clf.probabilities(logits).cpu().numpy().astype(np.float64)

        p_train = probs_of(X_train)
        metrics: dict[str, float] = {"train_loss": _log_loss(p_train, y_train)}
        if len(val_ds):
            p_val = probs_of(X_val)
            metrics["val_loss"] = _log_loss(p_val, y_val)
            fn_metrics = metrics_fn_for("classify", len(classes))
            metrics.update(
                fn_metrics([{"probs": p} for p in p_val], [{"label": int(y)} for y in y_val])
            )
        metrics["train_accuracy"] = float(np.mean(p_train.argmax(1) == y_train))
        run_dir = runs.run_dir(run_id)
        _save_npz_atomic(
            run_dir / SKLEARN_HEAD_FILE,
            kind=np.array(kind), seed=np.array(seed), num_classes=np.array(len(classes)),
            class_ids=np.array([c.id for c in classes], np.int64),
            X_train=X_train, y_train=y_train,
            image_ids=np.array(train_ds.image_ids, np.int64),
        )  # fmt: skip
        model_path = run_dir / runner.MODEL_FILE
        save_atomic({"model": clf.state_dict(), "spec": spec.to_dict()}, model_path)
    except BaseException as exc:
        status = "cancelled" if isinstance(exc, KeyboardInterrupt) else "failed"
        runs.update(run_id, status=status, error=str(exc), duration_s=time.perf_counter() - t0)
        raise
    duration = time.perf_counter() - t0
    runs.log_epoch(run_id, 0, {**metrics, "duration_s": duration})
    main = metrics.get("accuracy")
    best = main if main is not None and math.isfinite(main) else None
    try:
        after_training(
            project, run_id, clf, spec, ids, best_epoch=0,
            metric_name="accuracy" if best is not None else None, best_metric=best,
            device=dev, token=token,
        )  # fmt: skip
    except TlsError:  # cancelled, or a test image unreadable: only those figures are missing
        pass
    runs.update(
        run_id,
        status="finished",
        metric_name="accuracy" if main is not None else None,
        best_metric=best,
        checkpoint=os.path.relpath(model_path, project.root),
        duration_s=duration,
    )
    return run_id, metrics


def load_head_file(project: Project, rec: Any) -> tuple[str, int, np.ndarray, np.ndarray]:
    """(head kind, seed, training features, labels) from a few-shot run's
    ``sklearn_head.npz``; RunError when it is missing or the classes changed since."""
    exp = rec.config.get("experiment") or {}
    if exp.get("kind") != "sklearn":
        raise RunError(f"run {rec.id} is not a scikit-learn head run")
    path = project.root / "runs" / str(rec.id) / exp.get("file", SKLEARN_HEAD_FILE)
    if not path.is_file():
        raise RunError(f"run {rec.id}: head file {path} is missing")
    with np.load(path, allow_pickle=False) as z:
        kind, seed = str(z["kind"]), int(z["seed"])
        class_ids = z["class_ids"].tolist()
        X, y = z["X_train"], z["y_train"]
    if class_ids != [c.id for c in project.classes()]:
        raise RunError(f"run {rec.id}: the project's classes changed since the head was fitted")
    return kind, seed, X, y


def load_sklearn_head(project: Project, run_id: int) -> tuple[FittedHead, RunSpec]:
    """The scikit-learn head of a :func:`fit_sklearn_run` run, refitted (deterministically)
    from its stored features and labels, and the spec of its backbone/weights/input size."""
    rec = RunStore(project).get(run_id)
    kind, seed, X, y = load_head_file(project, rec)
    head = fit_sklearn_head(kind, X, y, len(project.classes()), seed=seed)  # type: ignore[arg-type]
    return head, RunSpec.from_dict(rec.config)


def predict_sklearn_run(
    project: Project,
    run_id: int,
    image_ids: Sequence[int] | None = None,
    *,
    device: str = "auto",
    token: CancelToken | None = None,
) -> int:
    """Store a few-shot run's predictions (as predictions, like :func:`runner.predict`)
    for ``image_ids`` (default: all images) from cached features; returns the count."""
    from .linear_heads import predict_cached

    return predict_cached(project, run_id, image_ids, device=device, token=token)
