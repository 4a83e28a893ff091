"""``tlstudio experiment --kind domain``: source-only training against each domain
adaptation method (:mod:`tlstudio.ml.adapt`), measured on the target domain's labelled
images, with k-fold variance.

Fold f of k: the source domains' labelled images train (folds ≠ f) and validate
(fold f; the best epoch is chosen on them, never on target labels); the target domain's
labelled images of fold f are the evaluation set, and every other target image (other
folds and unlabelled ones) is adapted to as pixels only. So no image is evaluated that
any arm saw, labelled or not. Every arm of a fold gets the same images; each model is an
ordinary run recorded with ``{"kind": "domain", "arm", "fold", "k", "group",
"target_domain"}``. Images in the test split stay out unless ``include_test``.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from tlstudio.core.project import Project
from tlstudio.core.splits import kfold

from . import data as data_mod
from . import runner
from .adapt import CACHED_METHODS, TRAINED_METHODS, AdaptConfig, AdaptError
from .backbones import get_spec
from .callbacks import Callback, CancelToken
from .collate import collate
from .metrics import cross_validation_summary, metrics_fn_for
from .runner import RunSpec

SOURCE_ONLY = "source only"


@dataclass
class DomainExperiment:
    """Outcome of :func:`domain_experiment`. ``target[arm][f]``: metrics of the arm's fold-f
    model on fold f's labelled target images; ``source[arm][f]``: its validation metrics
    on the source images of fold f; ``summary[arm][name]`` = (mean, sample std) over the
    folds of the target metrics; ``sizes[f]`` = (source train, source val, target images
    adapted to, target images evaluated)."""

    target_domain: str
    k: int
    arms: list[str]
    metric: str
    target: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    source: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    summary: dict[str, dict[str, tuple[float, float]]] = field(default_factory=dict)
    run_ids: dict[str, list[int]] = field(default_factory=dict)
    sizes: list[tuple[int, int, int, int]] = field(default_factory=list)
    cancelled: bool = False


def default_methods(spec: RunSpec) -> tuple[str, ...]:
    """The methods that fit ``spec``: the cached-feature ones on the fast path, else the
    ones that align features while the backbone trains."""
    return CACHED_METHODS if runner.uses_feature_cache(spec) else TRAINED_METHODS


def domain_experiment(
    project: Project,
    spec: RunSpec,
    target_domain: str,
    *,
    methods: Sequence[str] | None = None,
    k: int = 3,
    seed: int = 0,
    include_test: bool = False,
    callbacks: Sequence[Callback] = (),
    token: CancelToken | None = None,
    on_run: Callable[[int, str], None] | None = None,
) -> DomainExperiment:
    """Train ``spec`` source-only and with each of ``methods`` (default
    :func:`default_methods`) on every fold and measure each on the target domain. AdaptError
    when the target domain has too few labelled images for ``k`` folds or no source image
    is labelled. ``on_run(fold, arm)`` is called before each run; a cancelled token stops
    after the current run (the result then covers the folds that finished)."""
    methods = list(methods) if methods else list(default_methods(spec))
    domain_of = project.domain_by_image()
    held_out = set() if include_test else {r.id for r in project.images_in_split("test")}
    ids = [i for i in project.image_ids() if i not in held_out]
    target_all = [i for i in ids if domain_of.get(i) == target_domain]
    if not target_all:
        raise AdaptError(f"no image has the domain {target_domain!r}")
    labelled = set(_labelled(project, spec, ids))
    target_labelled = [i for i in target_all if i in labelled]
    source = [i for i in ids if domain_of.get(i) != target_domain and i in labelled]
    if len(target_labelled) < k:
        raise AdaptError(
            f"the domain {target_domain!r} has {len(target_labelled)} labelled images; "
            f"measuring on it over {k} folds needs at least {k}"
        )
    if len(source) < k:
        raise AdaptError(f"{len(source)} labelled images outside {target_domain!r}; need {k}")
    folds = kfold(project, k, seed=seed)
    arms = [SOURCE_ONLY, *methods]
    result = DomainExperiment(target_domain, k, arms, "")
    for arm in arms:
        result.target[arm], result.source[arm], result.run_ids[arm] = [], [], []
    group = uuid.uuid4().hex[:12]
    for f in range(k):
        train = [i for i in source if folds[i] != f]
        val = [i for i in source if folds[i] == f]
        evaluated = [i for i in target_labelled if folds[i] == f]
        adapt_to = [i for i in target_all if i not in set(evaluated)]
        finished = {}
        for arm in arms:
            if token is not None and token.is_cancelled:
                result.cancelled = True
                return _summarise(result)
            if on_run is not None:
                on_run(f, arm)
            s = copy.deepcopy(spec)
            s.adapt = None if arm == SOURCE_ONLY else AdaptConfig(arm, target_domain, None)
            tr = runner.train(
                project, s, callbacks=callbacks, token=token, image_ids=(train, val),
                target_ids=None if arm == SOURCE_ONLY else adapt_to,
                experiment={"kind": "domain", "arm": arm, "fold": f, "k": k, "seed": seed,
                            "group": group, "target_domain": target_domain},
            )  # fmt: skip
            if tr.ended is not None and tr.ended.status == "cancelled":
                result.cancelled = True
                return _summarise(result)
            result.metric = result.metric or (tr.ended.metric_name if tr.ended else "") or ""
            finished[arm] = (
                tr.run_id,
                dict(tr.metrics),
                evaluate_ids(project, tr.run_id, evaluated),
            )
        for arm, (run_id, src, tgt) in finished.items():
            result.run_ids[arm].append(run_id)
            result.source[arm].append(src)
            result.target[arm].append(tgt)
        result.sizes.append((len(train), len(val), len(adapt_to), len(evaluated)))
    return _summarise(result)


def _summarise(result: DomainExperiment) -> DomainExperiment:
    result.summary = {arm: cross_validation_summary(f) for arm, f in result.target.items() if f}
    return result


def _labelled(project: Project, spec: RunSpec, ids: Sequence[int]) -> list[int]:
    """The images of ``ids`` that carry a label for the spec's task."""
    return _dataset(project, spec, ids).image_ids


def _dataset(project: Project, spec: RunSpec, ids: Sequence[int]) -> data_mod.ProjectDataset:
    bspec = get_spec(spec.backbone)
    template_id = spec.template_id
    if spec.task == "landmarks" and template_id is None:
        template_id = data_mod.choose_template(project, ids)
    return data_mod.ProjectDataset(
        project, spec.task, ids, spec.resolved_input_size, bspec.mean, bspec.std,
        template_id=template_id, multi_label=spec.task == "classify" and project.multi_label,
    )  # fmt: skip


def evaluate_ids(
    project: Project, run_id: int, image_ids: Sequence[int], batch_size: int = 32
) -> dict[str, float]:
    """The run's metrics on ``image_ids`` (those labelled for its task), as validation
    computes them during training (network-input pixels), on the CPU."""
    model, spec = runner.load_run_model(project, run_id)
    ds = _dataset(project, spec, image_ids)
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, collate_fn=collate)
    preds: list[dict] = []
    targets: list[dict] = []
    with torch.no_grad():
        for images, tg in loader:
            preds += model.predict_step(images)
            targets += tg
    fn = metrics_fn_for(spec.task, len(project.classes()), multi_label=ds.multi_label)
    return {k: float(v) for k, v in fn(preds, targets).items()}
