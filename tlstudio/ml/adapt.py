"""Unsupervised domain adaptation: train on labelled *source* images so that the model also
works on another domain's (*target*) images, of which only the pixels are used.

Two families, chosen by :class:`AdaptConfig.method`:

- **While the backbone trains** (a freeze depth below "all"): every training batch of
  source images is paired with a batch of target images, both go through the backbone and
  a loss aligns their pooled features (N×C, the global average of the last stage):
  ``coral`` (Deep CORAL, Sun & Saenko 2016: distance of the feature covariances),
  ``mmd`` (multi-kernel MMD, Long et al. 2015: Gaussian kernels at five bandwidths) or
  ``dann`` (Ganin & Lempitsky 2015: a domain classifier on the features behind a gradient
  reversal layer whose factor follows λ(p) = 2 / (1 + exp(-10 p)) - 1 over the training
  progress p ∈ [0, 1]). The loss is ``task loss + weight × alignment loss``.
  Classification puts source and target through the backbone as one batch (shared
  BatchNorm statistics); detection, landmarks and segmentation run the task model on the
  source batch and the backbone alone on the target batch (:class:`DomainAdapted`).
- **On cached features** (classification with a frozen backbone, the fast path): the
  source features are moved to the target domain's statistics before the head trains,
  so the head reads target features as they come: ``standardize`` (per-feature mean and
  standard deviation, per source domain) or ``coral`` (CORAL, Sun et al. 2016: whiten
  each source domain's covariance and recolour it with the target's, means moved too).

Target images are never used with their labels: the runner leaves them out of the
labelled training and validation sets and hands them over as pixels only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .adapt_config import (  # noqa: F401 (re-exported: the torch-free half of this module)
    ADAPT_METHODS,
    CACHED_METHODS,
    DEFAULT_WEIGHTS,
    METHOD_NAMES,
    TRAINED_METHODS,
    AdaptConfig,
    AdaptError,
    check_adaptation,
    split_for_adaptation,
)
from .backbones import get_spec
from .callbacks import Callback
from .data import ProjectDataset
from .features import FeatureCache, extract_features
from .tasks.base import TaskModel
from .transforms import AugmentConfig, build_train_transform

if TYPE_CHECKING:
    from tlstudio.core.project import Project

    from .runner import RunSpec

# --------------------------------------------------------------------------- losses


def coral_loss(source: Tensor, target: Tensor) -> Tensor:
    """Deep CORAL: ‖C_s − C_t‖²_F / (4 d²) for feature matrices N×d and M×d (d = features;
    C = unbiased covariance). Zero when both covariances agree."""
    d = source.shape[1]

    def cov(x: Tensor) -> Tensor:
        x = x.float()
        xc = x - x.mean(dim=0, keepdim=True)
        return xc.T @ xc / max(x.shape[0] - 1, 1)

    return ((cov(source) - cov(target)) ** 2).sum() / (4.0 * d * d)


MMD_BANDWIDTHS = (0.25, 0.5, 1.0, 2.0, 4.0)
"""Multiples of the batch's mean squared distance used as Gaussian kernel bandwidths."""


def mmd_loss(source: Tensor, target: Tensor, multiples: Sequence[float] = MMD_BANDWIDTHS) -> Tensor:
    """Squared maximum mean discrepancy between N×d and M×d features with a sum of
    Gaussian kernels exp(−‖x − y‖² / σ²), σ² = each of ``multiples`` × the mean squared
    distance between all features of the two batches (biased estimate, ≥ 0)."""
    n = source.shape[0]
    x = torch.cat([source, target]).float()
    d2 = torch.cdist(x, x).pow(2)
    base = d2.detach().sum() / max(x.shape[0] * (x.shape[0] - 1), 1)
    base = base.clamp_min(1e-12)
    k = sum(torch.exp(-d2 / (base * m)) for m in multiples)
    assert isinstance(k, Tensor)
    return (k[:n, :n].mean() + k[n:, n:].mean() - 2 * k[:n, n:].mean()).clamp_min(0.0)


class _GradientReversal(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, factor: float) -> Tensor:
        ctx.factor = factor
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return -ctx.factor * grad, None


def reverse_gradient(x: Tensor, factor: float) -> Tensor:
    """Identity forward; the gradient flowing back is multiplied by −``factor``."""
    return _GradientReversal.apply(x, factor)


def dann_lambda(progress: float, gamma: float = 10.0) -> float:
    """Ganin & Lempitsky's schedule of the reversal factor: 2 / (1 + exp(−γ p)) − 1,
    from 0 at the start (p = 0) towards 1 at the end (p = 1)."""
    p = min(max(float(progress), 0.0), 1.0)
    return 2.0 / (1.0 + math.exp(-gamma * p)) - 1.0


class DomainClassifier(nn.Module):
    """Features N×d → one logit per image (> 0: target domain): d → 256 → 256 → 1 with
    ReLU and dropout 0.5, as in Ganin & Lempitsky (smaller)."""

    def __init__(self, in_features: int, hidden: int = 256):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_features, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(0.5),
            nn.Linear(hidden, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(0.5),
            nn.Linear(hidden, 1),
        )

    def forward(self, features: Tensor) -> Tensor:
        return self.net(features.float()).squeeze(1)


def domain_loss(classifier: DomainClassifier, source: Tensor, target: Tensor) -> Tensor:
    """Binary cross-entropy of the domain classifier (source = 0, target = 1), each
    domain weighted equally whatever the batch sizes."""
    ls = classifier(source)
    lt = classifier(target)
    return 0.5 * (
        F.binary_cross_entropy_with_logits(ls, torch.zeros_like(ls))
        + F.binary_cross_entropy_with_logits(lt, torch.ones_like(lt))
    )


# --------------------------------------------------------------------------- model wrapper


class StagedFeatures(Protocol):
    """What :class:`DomainAdapted` reads of the module :func:`feature_backbone` finds (a
    :class:`~tlstudio.ml.backbones.Backbone`)."""

    stages: nn.ModuleList

    @property
    def out_channels(self) -> int: ...

    def forward_features(self, x: Tensor) -> list[Tensor]: ...


class _PooledClassifier(Protocol):
    """A classification model as :meth:`DomainAdapted.training_step` runs it: pooled
    backbone features → ``head`` logits → ``loss_from_logits``."""

    backbone: nn.Module
    head: nn.Module

    def loss_from_logits(
        self, logits: Tensor, targets: list[dict[str, Any]]
    ) -> dict[str, Tensor]: ...


def feature_backbone(model: TaskModel) -> StagedFeatures:
    """The module with ordered ``stages`` whose last stage's output, averaged over space,
    is the model's pooled features (detection keeps it as ``backbone.body``)."""
    backbone = getattr(model, "backbone", None)
    for candidate in (backbone, getattr(backbone, "body", None)):
        if isinstance(getattr(candidate, "stages", None), nn.ModuleList):
            assert candidate is not None
            return candidate
    raise AdaptError(f"the {model.task} model has no backbone features to align")


class DomainAdapted(TaskModel):
    """``model`` plus the alignment loss of ``method`` between its pooled backbone features
    on each training batch (source) and on a batch from ``target_batches`` (target images,
    normalised like the source). Predicting and validating are ``model``'s own; the state
    holds ``model``'s under ``inner.`` (and the domain classifier's for DANN).
    ``progress`` (0..1, set by :class:`AdaptationProgress`) drives DANN's λ."""

    def __init__(
        self,
        model: TaskModel,
        method: str,
        target_batches: Callable[[], Tensor],
        weight: float = 1.0,
    ):
        nn.Module.__init__(self)
        if method not in TRAINED_METHODS:
            raise AdaptError(f"{method!r} is not a method that trains with the backbone")
        self.inner = model
        self.task = model.task
        self.main_metric = model.main_metric
        self.higher_is_better = model.higher_is_better
        self.method = method
        self.weight = float(weight)
        self.progress = 0.0
        self._target_batches = target_batches
        self._body = [feature_backbone(model)]  # a list: registered once, under inner
        channels = int(self._body[0].out_channels)
        self.domain_classifier = DomainClassifier(channels) if method == "dann" else None
        #: the last batch's alignment loss (before the weight), for logs
        self.last_alignment = 0.0

    # The trainer freezes and groups its stages. Read-only: TaskModel's attribute is not
    # set on this wrapper (a setter would be dead code: nn.Module.__setattr__ stores a
    # module without calling it), so mypy's check for a writable override does not apply.
    @property
    def backbone(self) -> nn.Module:  # type: ignore[override]  # read-only, see above
        return self.inner.backbone

    def alignment(self, source: Tensor, target: Tensor) -> Tensor:
        """The method's loss between pooled source (N×d) and target (M×d) features."""
        if self.method == "coral":
            return coral_loss(source, target)
        if self.method == "mmd":
            return mmd_loss(source, target)
        assert self.domain_classifier is not None
        lam = dann_lambda(self.progress)
        return domain_loss(
            self.domain_classifier,
            reverse_gradient(source, lam),
            reverse_gradient(target, lam),
        )

    def training_step(self, images: Tensor, targets: list[dict[str, Any]]) -> dict[str, Tensor]:
        target = self._target_batches().to(images.device, non_blocking=True)
        inner = self.inner
        n = images.shape[0]
        if hasattr(inner, "loss_from_logits") and hasattr(inner, "head"):
            # classification: one pass, so BatchNorm normalises both domains together
            classifier = cast(_PooledClassifier, inner)  # what the two checks found
            feats = classifier.backbone(torch.cat([images, target.to(images.dtype)]))
            fs, ft = feats[:n], feats[n:]
            out = dict(classifier.loss_from_logits(classifier.head(fs), targets))
        else:
            captured: list[Tensor] = []
            body = self._body[0]
            hook = body.stages[-1].register_forward_hook(
                lambda _m, _i, o: captured.append(o.mean(dim=(2, 3)))
            )
            try:
                out = dict(inner.training_step(images, targets))
                body.forward_features(target.to(images.dtype))
            finally:
                hook.remove()
            if len(captured) < 2:
                raise AdaptError(f"the {inner.task} model did not run its backbone stages")
            fs, ft = captured[0], captured[-1]
        align = self.alignment(fs, ft)
        self.last_alignment = float(align.detach())
        out["task_loss"] = out["loss"]
        out["alignment_loss"] = align
        out["loss"] = out["loss"] + self.weight * align
        return out

    def validation_loss(self, images: Tensor, targets: list[dict[str, Any]]) -> dict[str, Tensor]:
        return self.inner.validation_loss(images, targets)

    @torch.no_grad()
    def predict_step(self, images: Tensor) -> list[dict[str, Any]]:
        return self.inner.predict_step(images)


class AdaptationProgress(Callback):
    """Tells a :class:`DomainAdapted` model how far training is (global step over all
    steps of the fit), for DANN's λ schedule."""

    def on_batch_start(self, trainer: Any, epoch: int, step: int) -> None:
        model = trainer.model
        if isinstance(model, DomainAdapted):
            total = max(1, trainer.config.epochs * max(1, trainer.steps_per_epoch))
            model.progress = trainer.global_step / total


class TargetBatches:
    """Endless batches of target images (N×3×S×S, normalised), reshuffled every pass
    with a seeded generator; ``dataset`` items are ``(image, target)``."""

    def __init__(self, dataset: Any, batch_size: int, seed: int = 0):
        from torch.utils.data import DataLoader

        from .collate import collate

        if len(dataset) == 0:
            raise AdaptError("no target images to adapt to")
        self._gen = torch.Generator().manual_seed(int(seed) + 17)
        self._loader = DataLoader(
            dataset, batch_size=max(1, int(batch_size)), shuffle=True, collate_fn=collate,
            generator=self._gen,
        )  # fmt: skip
        self._it: Iterator[Any] | None = None

    def __call__(self) -> Tensor:
        if self._it is None:
            self._it = iter(self._loader)
        try:
            images, _ = next(self._it)
        except StopIteration:
            self._it = iter(self._loader)
            images, _ = next(self._it)
        return images


# --------------------------------------------------------------------------- cached features


def _matrix_power(cov: np.ndarray, power: float) -> np.ndarray:
    w, v = np.linalg.eigh(cov)
    return (v * np.clip(w, 1e-12, None) ** power) @ v.T


def _covariance(x: np.ndarray, ridge: float) -> np.ndarray:
    xc = x - x.mean(axis=0)
    return xc.T @ xc / max(len(x) - 1, 1) + ridge * np.eye(x.shape[1])


CORAL_RIDGE = 1.0
"""Added to the diagonal of both covariances before CORAL's whitening and recolouring
(Sun et al. add the identity): it keeps a covariance from fewer images than features
invertible."""


def align_features(
    features: np.ndarray,
    domains: Sequence[str | None],
    target_features: np.ndarray,
    method: str,
) -> np.ndarray:
    """``features`` (N×d, float32) with each domain's rows moved to the statistics of
    ``target_features`` (M×d, the target domain's unlabelled images): ``standardize``
    matches each feature's mean and standard deviation, ``coral`` the whole covariance
    (and the mean). Rows are grouped by ``domains`` (one entry per row; None is a domain
    of its own); a group of one image keeps its values but gets the target's mean."""
    if method not in CACHED_METHODS:
        raise AdaptError(f"{method!r} does not work on cached features")
    x = np.asarray(features, dtype=np.float64)
    t = np.asarray(target_features, dtype=np.float64)
    if len(t) < 2:
        raise AdaptError("adapting cached features needs at least 2 target images")
    out = x.copy()
    mu_t, sd_t = t.mean(axis=0), t.std(axis=0) + 1e-6
    recolour = _matrix_power(_covariance(t, CORAL_RIDGE), 0.5) if method == "coral" else None
    keys = np.array(["\0none" if d is None else str(d) for d in domains], dtype=object)
    for key in dict.fromkeys(keys.tolist()):
        rows = np.flatnonzero(keys == key)
        s = x[rows]
        if len(rows) < 2:
            out[rows] = s - s.mean(axis=0) + mu_t
        elif recolour is not None:
            whiten = _matrix_power(_covariance(s, CORAL_RIDGE), -0.5)
            out[rows] = (s - s.mean(axis=0)) @ whiten @ recolour + mu_t
        else:
            out[rows] = (s - s.mean(axis=0)) / (s.std(axis=0) + 1e-6) * sd_t + mu_t
    return out.astype(np.float32)


# --------------------------------------------------------------------------- for the runner


def images_for_adaptation(
    project: Project,
    spec: RunSpec,
    ids: tuple[Sequence[int], Sequence[int]],
    target_ids: Sequence[int] | None,
    cached: bool,
) -> tuple[tuple[list[int], list[int]], list[int], list[str]]:
    """((train ids, val ids) without the target domain, target ids to adapt to, warnings)
    for a run of ``spec`` (``cached``: it takes the cached-feature path). Target images
    whose file is missing are left out with a warning naming them; AdaptError when the
    settings do not fit the run (:func:`check_adaptation`), when no target image is left
    or no source image (:func:`split_for_adaptation`)."""
    assert spec.adapt is not None
    check_adaptation(spec.adapt, spec.task, cached, spec.train.freeze == "all")
    split_of = {r.id: r.split for r in project.images()}
    domain = spec.adapt.target_domain
    ids, target = split_for_adaptation(project.domain_by_image(), split_of, domain, ids, target_ids)
    missing = [i for i in target if not project.image_path(i).is_file()]
    if not missing:
        return ids, target, []
    if len(missing) == len(target):
        raise AdaptError(
            f"every image of the domain {domain!r} to adapt to is missing on disk "
            "(relink or remove them)"
        )
    shown = ", ".join(sorted(project.image(i).path for i in missing)[:10])
    n = len(missing)
    warning = (
        f"{n} image file{'s' if n != 1 else ''} of the target domain {domain!r} "
        f"{'are' if n != 1 else 'is'} missing and not adapted to: {shown}"
        + (" ..." if n > 10 else "")
    )
    return ids, [i for i in target if i not in set(missing)], [warning]


def target_dataset(
    project: Project, spec: RunSpec, ids: Sequence[int], augment: AugmentConfig | None
) -> ProjectDataset:
    """The target images as a label-free dataset (pixels only), augmented like the
    training images when ``augment`` is given."""
    bspec = get_spec(spec.backbone)
    size = spec.resolved_input_size
    transform = None if augment is None else build_train_transform("autoencode", augment, size)
    return ProjectDataset(
        project, "autoencode", ids, size, bspec.mean, bspec.std, transform=transform
    )


def adapt_cached_features(
    project: Project, spec: RunSpec, backbone: nn.Module | Callable[[], nn.Module],
    features: np.ndarray, ds: ProjectDataset, target_ids: Sequence[int],
    cache: FeatureCache, wid: str | None, device: torch.device,
) -> np.ndarray:  # fmt: skip
    """``features`` of ``ds`` moved to the target domain's statistics (cached path).
    ``backbone`` as :func:`~tlstudio.ml.features.extract_features` takes it (a module, or
    a function that builds it only if a target image is not cached yet)."""
    assert spec.adapt is not None
    target, _ = extract_features(
        backbone, target_dataset(project, spec, target_ids, None), cache, wid,
        device=device, name=spec.backbone,
    )  # fmt: skip
    domain_of = project.domain_by_image()
    domains = [domain_of.get(i) for i in ds.image_ids]
    return align_features(features, domains, target, spec.adapt.method)


def adapted_model(
    project: Project, spec: RunSpec, model: TaskModel, augment: AugmentConfig,
    target_ids: Sequence[int],
) -> TaskModel:  # fmt: skip
    """``model`` wrapped with the alignment loss of ``spec.adapt`` (trained path)."""
    assert spec.adapt is not None
    target = target_dataset(project, spec, target_ids, None if augment.is_off else augment)
    batches = TargetBatches(target, spec.train.batch_size, spec.train.seed)
    return DomainAdapted(model, spec.adapt.method, batches, spec.adapt.loss_weight)
