"""Confidence a user can rely on: temperature scaling and the expected calibration error.

A classifier's probabilities are *calibrated* when, among the images it gives 80 %, it
is right about 80 % of the time. Networks trained with cross-entropy on few images are
usually over-confident. Temperature scaling (Guo et al., 2017) divides the logits by one
number T > 0, fitted after training on the validation split by minimising the negative
log-likelihood; it never changes which class wins (accuracy stays the same), only how
sure the model says it is.

The temperature is stored in the run's config (``"calibration"``) and set on the loaded
model (:attr:`ClassifierModel.temperature`), so prediction, evaluation and export
(the temperature is part of the exported graph) all use it.

Expected calibration error (ECE): the images are put in ``n_bins`` equal-width bins of
confidence over [0, 1]; ECE = Σ_b (n_b / N) · |accuracy_b − mean confidence_b|, 0 for
a perfectly calibrated model. Single-label: confidence = the top probability, accuracy =
whether the top class is the true one. Multi-label: every (image, class) probability is
one binary prediction; "accuracy" is then the fraction of positives in the bin.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

#: bins of the reliability diagram and the ECE (Guo et al. use 15)
N_BINS = 15
#: fewer validation images than this give a temperature that means little: none is fitted
MIN_IMAGES = 10
#: the temperature is searched in this range (a bound keeps a perfectly separated
#: validation set from driving it to 0)
T_RANGE = (0.05, 20.0)
_EPS = 1e-12


@dataclass(frozen=True)
class Reliability:
    """Calibration of a set of predictions: ``ece`` and ``nll`` (mean negative
    log-likelihood, nats), and per confidence bin (edges ``bin_edges``, N_BINS + 1
    values in [0, 1]) the mean ``confidence``, the ``accuracy`` and the ``counts``
    (None where a bin is empty). ``n`` predictions (images; (image, class) pairs for
    multi-label)."""

    ece: float
    nll: float
    n: int
    bin_edges: list[float]
    confidence: list[float | None]
    accuracy: list[float | None]
    counts: list[int]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Reliability:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__})


def _as_2d(probs: Any) -> np.ndarray:
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"probabilities must be N×C, got shape {p.shape}")
    return p


def reliability(
    probs: Any, labels: Any, *, multi_label: bool = False, n_bins: int = N_BINS
) -> Reliability:
    """:class:`Reliability` of probabilities ``probs`` (N×C) against ``labels``: N class
    indices (single-label) or N×C multi-hot (``multi_label``)."""
    p = _as_2d(probs)
    if multi_label:
        truth = np.asarray(labels, dtype=np.float64).reshape(p.shape) >= 0.5
        conf, correct = p.reshape(-1), truth.reshape(-1).astype(np.float64)
        q = np.clip(conf, _EPS, 1 - _EPS)
        nll = -np.mean(correct * np.log(q) + (1 - correct) * np.log(1 - q)) if q.size else math.nan
    else:
        y = np.asarray(labels, dtype=np.int64).reshape(-1)
        if len(y) != len(p):
            raise ValueError(f"{len(p)} probability rows but {len(y)} labels")
        conf = p.max(axis=1) if len(p) else np.zeros(0)
        correct = (p.argmax(axis=1) == y).astype(np.float64) if len(p) else np.zeros(0)
        rows = np.arange(len(y))
        nll = -np.mean(np.log(np.clip(p[rows, y], _EPS, 1.0))) if len(y) else math.nan
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.minimum((conf * n_bins).astype(np.int64), n_bins - 1)
    counts = np.bincount(which, minlength=n_bins)
    conf_sum = np.bincount(which, weights=conf, minlength=n_bins)
    hit_sum = np.bincount(which, weights=correct, minlength=n_bins)
    n = len(conf)
    ece = 0.0
    mean_conf: list[float | None] = []
    accuracy: list[float | None] = []
    for b in range(n_bins):
        if counts[b] == 0:
            mean_conf.append(None)
            accuracy.append(None)
            continue
        c, a = conf_sum[b] / counts[b], hit_sum[b] / counts[b]
        mean_conf.append(float(c))
        accuracy.append(float(a))
        ece += counts[b] / n * abs(a - c)
    return Reliability(
        ece=float(ece) if n else math.nan, nll=float(nll), n=int(n),
        bin_edges=[float(e) for e in edges], confidence=mean_conf, accuracy=accuracy,
        counts=[int(c) for c in counts],
    )  # fmt: skip


def expected_calibration_error(
    probs: Any, labels: Any, *, multi_label: bool = False, n_bins: int = N_BINS
) -> float:
    """ECE of ``probs`` against ``labels`` (see :func:`reliability`)."""
    return reliability(probs, labels, multi_label=multi_label, n_bins=n_bins).ece


# --------------------------------------------------------------------------- temperature


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def probabilities(logits: Any, temperature: float = 1.0, *, multi_label: bool = False):
    """Softmax (or sigmoid, ``multi_label``) of ``logits`` / ``temperature`` (numpy)."""
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    if multi_label:
        return 1.0 / (1.0 + np.exp(-z))
    return np.exp(_log_softmax(z))


def rescale(probs: Any, factor: float, *, multi_label: bool = False) -> np.ndarray:
    """Probabilities whose logits are ``factor`` times those behind ``probs``: the
    probabilities before a temperature T were applied are ``rescale(p, T)``, after it
    ``rescale(p, 1 / T)`` (softmax is unchanged by a constant added to the logits, so
    log p stands for the logits)."""
    p = np.clip(_as_2d(probs), _EPS, 1 - _EPS if multi_label else 1.0)
    logits = np.log(p) - np.log1p(-p) if multi_label else np.log(p)
    return probabilities(logits * factor, multi_label=multi_label)


def _nll(logits: np.ndarray, labels: np.ndarray, t: float, multi_label: bool) -> float:
    """Mean negative log-likelihood of ``logits`` / ``t``, each term capped at −log(1e-12),
    as :func:`reliability` reports it. Without the cap a few wildly wrong images (logit
    gaps of ~200, as a logistic head on standardised features gives) decide the fitted
    temperature alone: on Fashion-MNIST such a head got T = 4 and its test ECE rose from
    0.14 to 0.34; capped, T = 1.7 and the test ECE fell to 0.08."""
    z = logits / t
    if multi_label:
        # binary cross-entropy with logits, numerically stable
        terms = np.maximum(z, 0) - z * labels + np.log1p(np.exp(-np.abs(z)))
    else:
        terms = -_log_softmax(z)[np.arange(len(labels)), labels]
    return float(np.mean(np.minimum(terms, -math.log(_EPS))))


def fit_temperature(logits: Any, labels: Any, *, multi_label: bool = False) -> float:
    """The temperature T in :data:`T_RANGE` minimising the negative log-likelihood of
    ``logits`` / T against ``labels`` (N class indices, or N×C multi-hot): a bounded
    one-dimensional search over log T."""
    from scipy.optimize import minimize_scalar  # type: ignore[import-untyped]  # no stubs

    z = np.asarray(logits, dtype=np.float64)
    if z.ndim != 2 or len(z) == 0:
        raise ValueError(f"logits must be N×C with N > 0, got shape {z.shape}")
    y = np.asarray(labels)
    y = (y >= 0.5).astype(np.float64).reshape(z.shape) if multi_label else y.astype(np.int64)
    lo, hi = math.log(T_RANGE[0]), math.log(T_RANGE[1])
    res = minimize_scalar(
        lambda log_t: _nll(z, y, math.exp(log_t), multi_label),
        bounds=(lo, hi),
        method="bounded",
        options={"xatol": 1e-4},
    )
    best = float(math.exp(res.x))
    # the search is bounded; never return something worse than leaving the logits alone
    return best if _nll(z, y, best, multi_label) <= _nll(z, y, 1.0, multi_label) else 1.0


def calibration_record(
    logits: Any, labels: Any, *, multi_label: bool, split: str = "val"
) -> dict[str, Any]:
    """The run config's ``"calibration"`` entry for validation ``logits`` and ``labels``:
    ``{"temperature", "split", "images", "ece_before", "ece_after", "nll_before",
    "nll_after"}``; with fewer than :data:`MIN_IMAGES` images the temperature is 1 and
    ``"note"`` says why."""
    z = np.asarray(logits, dtype=np.float64)
    n = int(len(z))
    if n < MIN_IMAGES:
        return {
            "temperature": 1.0, "split": split, "images": n,
            "note": f"not fitted: {n} {split} images (at least {MIN_IMAGES} needed)",
        }  # fmt: skip
    t = fit_temperature(z, labels, multi_label=multi_label)
    before = reliability(probabilities(z, multi_label=multi_label), labels, multi_label=multi_label)
    after = reliability(
        probabilities(z, t, multi_label=multi_label), labels, multi_label=multi_label
    )
    return {
        "temperature": t, "split": split, "images": n,
        "ece_before": before.ece, "ece_after": after.ece,
        "nll_before": before.nll, "nll_after": after.nll,
    }  # fmt: skip


def stored_temperature(config: dict[str, Any]) -> float:
    """The temperature recorded in a run config (1 when none was fitted)."""
    cal = config.get("calibration") if isinstance(config, dict) else None
    t = cal.get("temperature") if isinstance(cal, dict) else None
    if isinstance(t, (int, float)) and not isinstance(t, bool) and math.isfinite(t) and t > 0:
        return float(t)
    return 1.0


def apply_stored(model: Any, config: dict[str, Any]) -> None:
    """Set a loaded classifier's temperature from its run config (other models: nothing)."""
    if hasattr(model, "temperature") and getattr(model, "task", "") == "classify":
        model.temperature = stored_temperature(config)


def before_and_after(
    probs: Any, labels: Any, temperature: float, *, multi_label: bool
) -> dict[str, Any]:
    """Reliability of a calibrated model's ``probs`` (after its ``temperature``) and of
    the same predictions without it: ``{"temperature", "before", "after"}`` (Reliability
    objects; "before" is None when the temperature is 1, i.e. nothing was fitted)."""
    after = reliability(probs, labels, multi_label=multi_label)
    if temperature == 1.0:
        return {"temperature": 1.0, "before": None, "after": after}
    raw = rescale(probs, temperature, multi_label=multi_label)
    return {
        "temperature": float(temperature),
        "before": reliability(raw, labels, multi_label=multi_label),
        "after": after,
    }


def calibrate_run(
    project: Any, run_id: int, split: str = "val", *, device: str = "auto", token: Any = None
) -> dict[str, Any]:
    """Fit run ``run_id``'s temperature (again) on ``split`` and store it in its config
    (replacing the one fitted after training); returns the stored entry. For runs
    recorded before calibration existed, or after more images were labelled."""
    from tlstudio.core.runs import RunStore

    from .devices import select_device
    from .runner import RunError, load_run_model
    from .selection import outputs_on
    from .tasks.classify import ClassifierModel

    model, spec = load_run_model(project, run_id)
    # the one model with a temperature (an ensemble's members carry their own)
    if spec.task != "classify" or not isinstance(model, ClassifierModel):
        raise RunError(f"run {run_id} is not a classifier; only classifiers are calibrated")
    model.temperature = 1.0
    dev = select_device(device)
    model.to(dev)
    ids = [r.id for r in project.images_in_split(split)]
    out = outputs_on(project, model, spec, ids, device=dev, token=token)
    if out.logits is None or not len(out.logits):
        raise RunError(f"the {split} split has no image with class tags to calibrate on")
    multi = bool(project.multi_label)
    labels = np.stack([t["labels" if multi else "label"].numpy() for t in out.targets])
    record = calibration_record(out.logits, labels, multi_label=multi, split=split)
    RunStore(project).update_config(run_id, calibration=record)
    return record
