"""End-to-end training, prediction and evaluation on a project.

This is what the CLI and the GUI's training worker call: it builds the
backbone, datasets, task model and trainer from a :class:`RunSpec`, records
the run in the project (config, per-epoch metrics, checkpoint, timings) and
stores predictions as predictions, never as labels.

A classifier head trained on cached features (:func:`uses_feature_cache`) never builds
the backbone unless a feature vector is missing, and never imports torchvision: its model
file holds the head and the id of the pretrained weights it was trained over
(``"backbone_weights"``, see :func:`tlstudio.ml.features.weights_id`); loading the run
rebuilds the backbone from those weights and checks that they are still the same file.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

import numpy as np
import torch
from torch import nn

from tlstudio.core.errors import TlsError
from tlstudio.core.project import Project
from tlstudio.core.runs import RunStore
from tlstudio.runtime.threads import loader_workers, reader_threads

from . import data as data_mod
from .adapt_config import AdaptConfig
from .architectures import BackboneSpec, get_spec
from .augment_config import AugmentConfig
from .callbacks import Callback, CancelToken
from .checkpoints import load_checkpoint, save_atomic
from .collate import collate
from .devices import seed_everything, select_device
from .events import EpochEnded, FitEnded, TrainingFailed
from .features import FeatureCache, extract_features, weights_id
from .metrics import metrics_fn_for
from .tasks.base import TaskModel
from .tasks.factory import build_task_model
from .train_config import TrainConfig
from .trainer import Trainer

if TYPE_CHECKING:  # pragma: no cover
    from .backbones import WeightsChoice
    from .distributed import DistContext

MODEL_FILE = "model.pt"


class RunError(TlsError):
    """A run cannot be started, loaded or used (the message says why)."""


@dataclass
class RunSpec:
    """Everything that defines a training run (stored as the run's config)."""

    task: str
    backbone: str = "efficientnet_lite0"
    weights: str = "auto"  # bundled | cached | none | auto | path of a weights file
    train: TrainConfig = field(default_factory=TrainConfig)
    augment: AugmentConfig | None = None  # None = no augmentation
    model_options: dict[str, Any] = field(default_factory=dict)
    input_size: int | None = None  # default: the backbone's own input size
    template_id: int | None = None  # landmarks: which template (default: most used)
    use_feature_cache: bool = True  # take the fast path when it applies
    adapt: AdaptConfig | None = None  # domain adaptation (tlstudio.ml.adapt)

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "backbone": self.backbone,
            "weights": self.weights,
            "train": self.train.to_dict(),
            "augment": None if self.augment is None else asdict(self.augment),
            "model_options": dict(self.model_options),
            "input_size": self.input_size,
            "template_id": self.template_id,
            "use_feature_cache": self.use_feature_cache,
            "adapt": None if self.adapt is None else self.adapt.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunSpec:
        aug = d.get("augment")
        return cls(
            task=d["task"],
            backbone=d.get("backbone", "efficientnet_lite0"),
            weights=d.get("weights", "auto"),
            train=TrainConfig.from_dict(d.get("train", {})),
            augment=None if aug is None else AugmentConfig(**aug),
            model_options=dict(d.get("model_options", {})),
            input_size=d.get("input_size"),
            template_id=d.get("template_id"),
            use_feature_cache=d.get("use_feature_cache", True),
            adapt=AdaptConfig.from_dict(d.get("adapt")),
        )

    @property
    def resolved_input_size(self) -> int:
        return self.input_size or get_spec(self.backbone).input_size


def uses_feature_cache(spec: RunSpec) -> bool:
    """True when only a classification head trains on a fully frozen backbone with no
    augmentation: features are then computed once and cached (the fast path)."""
    t = spec.train
    return (
        spec.use_feature_cache
        and spec.task == "classify"
        and t.freeze == "all"
        and t.progressive_every == 0
        and (spec.augment is None or spec.augment.is_off)
    )


_NAMED_WEIGHTS: tuple[Literal["bundled", "cached", "none", "auto"], ...] = (
    "bundled",
    "cached",
    "none",
    "auto",
)


def _weights_choice(weights: str) -> WeightsChoice:
    for named in _NAMED_WEIGHTS:
        if weights == named:
            return named
    path = Path(weights)
    if not path.is_file():
        raise RunError(
            f"{weights}: weights must be bundled, cached, none, auto or an existing file"
        )
    return path


def build_model(
    project: Project,
    spec: RunSpec,
    *,
    pretrained: bool = True,
    weights: WeightsChoice | None = None,
) -> TaskModel:
    """The task model of ``spec`` for ``project``'s classes/template.

    ``pretrained=False`` skips loading backbone weights (a checkpoint follows);
    ``weights`` replaces ``spec.weights`` as their source."""
    backbone = None
    if not (spec.task == "autoencode" and spec.model_options.get("encoder") == "small"):
        from .backbones import build_backbone  # torchvision, for most backbones

        source = _weights_choice(spec.weights) if weights is None else weights
        backbone = build_backbone(spec.backbone, source if pretrained else "none")
    return _task_model(project, spec, backbone)


def _present(backbone: nn.Module | None) -> nn.Module:
    if backbone is None:
        raise RunError("a multi-task run needs a backbone")
    return backbone


class _NoBackbone(nn.Module):
    """Stands in for the backbone under a head trained on cached features: it has the
    backbone's output size and nothing else (nothing to run, no weights, never saved)."""

    def __init__(self, spec: BackboneSpec):
        super().__init__()
        self.spec = spec
        self.out_channels = spec.stages[-1].channels

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("a head trained on cached features has no backbone to run")


def _task_model(project: Project, spec: RunSpec, backbone: nn.Module | None) -> TaskModel:
    if "," in spec.task:  # several heads on one backbone (tlstudio.ml.multitask)
        from .multitask import build_multitask_model

        return build_multitask_model(project, spec, _present(backbone))
    num_points = 0
    if spec.task == "landmarks":
        if spec.template_id is None:
            raise RunError("landmark runs need a template (spec.template_id)")
        num_points = len(project.template(spec.template_id).points)
    options = dict(spec.model_options)
    if spec.task in ("detect", "instances", "autoencode"):
        options.setdefault("input_size", spec.resolved_input_size)
    return build_task_model(
        spec.task,
        backbone,
        num_classes=len(project.classes()),
        num_points=num_points,
        multi_label=spec.task == "classify" and project.multi_label,
        **options,
    )


class _CachedHead(TaskModel):
    """Trains only a classifier's head on cached pooled features (no backbone)."""

    task = "classify"

    def __init__(self, classifier: TaskModel):
        nn.Module.__init__(self)
        self.head = classifier.head
        self._clf = [classifier]  # not registered: its backbone must not train or be saved here
        self.main_metric = classifier.main_metric
        self.higher_is_better = classifier.higher_is_better

    def training_step(self, images, targets):
        return self._clf[0].loss_from_logits(self.head(images), targets)

    @torch.no_grad()
    def predict_step(self, images):
        return [{"probs": p} for p in self._clf[0].probabilities(self.head(images))]


class _FeatureDataset(torch.utils.data.Dataset):
    def __init__(self, features: np.ndarray, dataset: data_mod.ProjectDataset):
        self.features = torch.from_numpy(features)
        key = "labels" if dataset.multi_label else "label"
        self.targets = [
            {key: torch.as_tensor(y), "image_id": i}
            for y, i in zip(dataset.class_labels(), dataset.image_ids, strict=True)
        ]

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, i):
        return self.features[i], self.targets[i]


class _RunRecorder(Callback):
    """Writes per-epoch metrics into the project as they arrive (the run store's writer; a
    multi-process fit would give it to rank 0 only, like the checkpoint writer)."""

    def __init__(self, runs: RunStore, run_id: int):
        self.runs, self.run_id = runs, run_id
        self.failure: TrainingFailed | None = None

    def on_epoch_end(self, trainer, event: EpochEnded) -> None:
        m = {"train_loss": event.train_loss, "lr": event.lr, "duration_s": event.duration_s}
        if event.val_loss is not None:
            m["val_loss"] = event.val_loss
        m.update(event.metrics)
        self.runs.log_epoch(self.run_id, event.epoch, m)

    def on_exception(self, trainer, event: TrainingFailed) -> None:
        self.failure = event


@dataclass
class TrainResult:
    run_id: int
    ended: FitEnded | None
    metrics: dict[str, float]  # validation metrics of the saved model
    feature_cache: bool
    failure: TrainingFailed | None = None
    warnings: list[str] = field(default_factory=list)  # e.g. image files left out
    #: selection, calibration and test score (:func:`tlstudio.ml.selection.after_training`)
    after: Any = None


def missing_image_files(project: Project, image_ids: Sequence[int]) -> list[str]:
    """Stored paths of the images among ``image_ids`` whose file is not on disk."""
    out = []
    for image_id in image_ids:
        rec = project.image(image_id)
        if not project.image_path(rec).is_file():
            out.append(rec.path)
    return out


def _leave_out_missing(
    project: Project, ids: tuple[Sequence[int], Sequence[int]]
) -> tuple[tuple[list[int], list[int]], list[str]]:
    """The (train, val) ids without images whose file is gone, and a warning naming them."""
    missing = set(missing_image_files(project, [*ids[0], *ids[1]]))
    if not missing:
        return (list(ids[0]), list(ids[1])), []
    keep = [[i for i in part if project.image(i).path not in missing] for part in ids]
    shown = ", ".join(sorted(missing)[:10]) + (" ..." if len(missing) > 10 else "")
    n = len(missing)
    warning = (
        f"{n} image file{'s are' if n != 1 else ' is'} missing and left out of this run "
        f"(relink or remove {'them' if n != 1 else 'it'}): {shown}"
    )
    return (keep[0], keep[1]), [warning]


def train(
    project: Project,
    spec: RunSpec,
    *,
    callbacks: Sequence[Callback] = (),
    token: CancelToken | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    image_ids: tuple[Sequence[int], Sequence[int]] | None = None,
    experiment: dict[str, Any] | None = None,
    resume: tuple[int, Path] | None = None,
    target_ids: Sequence[int] | None = None,
    keep: str = "best",
    distributed: DistContext | None = None,
) -> TrainResult:
    """Train ``spec`` on the project's train split, validate on its val split, and
    record the run. ``progress(stage, done, total)`` reports feature extraction.

    ``image_ids`` = (train ids, val ids) replaces the stored splits for this run only
    (cross-validation, learning curves); ``experiment`` (plain JSON data, e.g.
    ``{"kind": "cv", "fold": 2, "k": 5}``) is recorded in the run's config under
    ``"experiment"``. Images whose file is missing are left out, with a warning in the
    result (and in the run's config under ``"warnings"``). ``resume`` = (run id,
    checkpoint) goes on with that run (see :func:`resume_run`). With ``spec.adapt`` the
    target domain's images leave the labelled sets and are adapted to as pixels only
    (``target_ids``, default: those outside the val and test splits; see
    :mod:`tlstudio.ml.adapt`). ``keep``: the model saved is the best validation epoch's
    ("best") or the last epoch's ("last", selected on nothing). A run that ends normally
    is then scored on the test split and, for classification, calibrated on the val split
    (:func:`tlstudio.ml.selection.after_training`).

    ``distributed``: this process is one of a torchrun job (see
    :mod:`tlstudio.ml.distributed`); every process calls this with the same arguments,
    rank 0 alone records the run and writes its files, and the result's ``metrics`` are
    filled on rank 0 only."""
    if image_ids is None:
        image_ids = data_mod.train_val_ids(project, seed=spec.train.seed)
    adapt_to: list[int] = []  # target-domain images, pixels only
    target_warnings: list[str] = []
    if spec.adapt is not None:
        from . import adapt as adapt_mod  # imports torchvision: only for adapting runs

        image_ids, adapt_to, target_warnings = adapt_mod.images_for_adaptation(
            project, spec, image_ids, target_ids, uses_feature_cache(spec)
        )
    image_ids, warnings = _leave_out_missing(project, image_ids)
    warnings += target_warnings
    if "landmarks" in spec.task.split(",") and spec.template_id is None:
        spec.template_id = data_mod.choose_template(project, [*image_ids[0], *image_ids[1]])
    size = spec.resolved_input_size
    bspec = get_spec(spec.backbone)
    augment = spec.augment if spec.augment is not None else AugmentConfig.none()
    train_ds, val_ds = data_mod.make_datasets(
        project, spec.task, size, bspec.mean, bspec.std, augment,
        template_id=spec.template_id, seed=spec.train.seed, image_ids=image_ids,
    )  # fmt: skip
    if len(train_ds) == 0:
        raise RunError(f"no training images with {spec.task} labels; label some or assign splits")
    fast = uses_feature_cache(spec)
    seed_everything(spec.train.seed)  # the new head's initial weights follow the run's seed
    wid = weights_id(spec.backbone, _weights_choice(spec.weights)) if fast else None
    head_only = wid is not None  # the backbone is built only if a feature is missing
    if head_only:
        model = _task_model(project, spec, _NoBackbone(bspec))
    else:
        model = build_model(project, spec)
    classes = len(project.classes())
    multi = "classify" in spec.task.split(",") and project.multi_label
    metrics_fn = metrics_fn_for(spec.task, classes, multi_label=multi)
    fit_config, dist_fit, sync_bn = spec.train, None, False
    if distributed is not None:
        from . import distributed as D

        sync_bn = D.use_sync_batchnorm(spec.train.sync_batchnorm, spec.task, distributed)
        if sync_bn:
            # converted below the root: the TaskModel itself comes back
            model = cast(TaskModel, D.convert_sync_batchnorm(model))
        fit_config = dataclasses.replace(spec.train, device=distributed.device)
        # torchvision's detectors may leave a head unused on some batches
        dist_fit = D.DistributedFit(
            distributed, find_unused_parameters=spec.task == "detect" or "," in spec.task
        )
    device = select_device(fit_config.device)
    is_main = distributed is None or distributed.is_main

    runs = RunStore(project)
    config = spec.to_dict()
    if experiment is not None:
        config["experiment"] = dict(experiment)
    if warnings:
        config["warnings"] = list(warnings)
    device_text = str(device) if distributed is None else distributed.describe_device()
    resume_from = None if resume is None else resume[1]
    if not is_main:
        run_id = -1
    elif resume is None:
        if distributed is not None:
            config["distributed"] = [
                {"from_epoch": 0, **distributed.layout(spec.train.batch_size, sync_bn)}
            ]
        run_id = runs.start(spec.task, spec.backbone, config, device_text)
    else:
        run_id = resume[0]
        runs.claim(run_id)
        _record_layout(runs, run_id, distributed, spec.train.batch_size, sync_bn, device_text)
    if distributed is not None:
        from .distributed import broadcast_object

        run_id = broadcast_object(distributed, run_id)
    run_dir = runs.run_dir(run_id) if is_main else None
    recorder = _RunRecorder(runs, run_id)
    fit_callbacks = [recorder, *callbacks] if is_main else list(callbacks)
    t0 = time.perf_counter()
    fit_train: _FeatureDataset | data_mod.ProjectDataset
    fit_val: _FeatureDataset | data_mod.ProjectDataset
    try:
        if fast:
            cache = FeatureCache(project.cache_dir)
            built: list[nn.Module] = []

            def backbone_now() -> nn.Module:
                if not built:
                    from .backbones import build_backbone

                    built.append(build_backbone(spec.backbone, _weights_choice(spec.weights)))
                return built[0]

            source = backbone_now if head_only else model.backbone
            feats = []
            for name, ds in (("train", train_ds), ("val", val_ds)):
                fn = (
                    None
                    if progress is None
                    else (lambda d, t, n=name: progress(f"features {n}", d, t))
                )
                if distributed is not None:
                    from .distributed import extract_features_sharded

                    X = extract_features_sharded(
                        distributed, backbone_now() if head_only else model.backbone, ds,
                        cache, wid, device=device, progress=fn, token=token,
                    )  # fmt: skip
                else:
                    X, _ = extract_features(
                        source, ds, cache, wid, device=device, progress=fn, token=token,
                        num_workers=loader_workers(), name=spec.backbone,
                    )  # fmt: skip
                if spec.adapt is not None:
                    X = adapt_mod.adapt_cached_features(
                        project, spec, source, X, ds, adapt_to, cache, wid, device
                    )
                feats.append(_FeatureDataset(X, ds))
            fit_model: TaskModel = _CachedHead(model)
            fit_train, fit_val = feats
        else:
            fit_model, fit_train, fit_val = model, train_ds, val_ds
            if spec.adapt is not None:
                fit_model = adapt_mod.adapted_model(project, spec, model, augment, adapt_to)
                fit_callbacks = [adapt_mod.AdaptationProgress(), *fit_callbacks]
        collate_fn = collate
        if spec.task == "classify" and not fast and (augment.mixup_alpha or augment.cutmix_alpha):
            from .transforms import mixup_cutmix_collate

            collate_fn = mixup_cutmix_collate(classes, augment)
        trainer = Trainer(
            fit_model, fit_train, fit_val if len(fit_val) else None, fit_config,
            collate_fn=collate_fn, metrics_fn=metrics_fn, callbacks=fit_callbacks,
            token=token, checkpoint_dir=run_dir, run_id=run_id, distributed=dist_fit,
        )  # fmt: skip
        ended = trainer.fit(resume_from=resume_from)
    except BaseException as exc:
        if is_main:
            status = "cancelled" if isinstance(exc, KeyboardInterrupt) else "failed"
            error = str(exc) or type(exc).__name__
            if distributed is not None:
                from .distributed import describe_failure

                error = describe_failure(exc, distributed)
            runs.update(run_id, status=status, error=error, duration_s=time.perf_counter() - t0)
        raise
    if not is_main or run_dir is None:  # rank 0 saves the model and records the outcome
        return TrainResult(run_id, ended, {}, fast, trainer.failure, warnings)
    if ended.checkpoint and keep == "best":
        fit_model.load_state_dict(load_checkpoint(Path(ended.checkpoint))["model"])
    model_path = run_dir / MODEL_FILE
    saved: dict[str, Any] = {"model": model.state_dict(), "spec": spec.to_dict()}
    if head_only:  # the head alone; the backbone is the pretrained one, named by its id
        saved["backbone_weights"] = wid
    save_atomic(saved, model_path)
    epochs = runs.epochs(run_id)
    kept, kept_value = ended.best_epoch, ended.best_metric
    if keep == "last" and epochs:
        kept = epochs[-1][0]
        kept_value = epochs[-1][1].get(ended.metric_name or "")
    metrics = {}
    if kept is not None:
        metrics = {k: v for k, v in dict(epochs).get(kept, {}).items()
                   if k not in ("lr", "duration_s")}  # fmt: skip
    after = None
    if ended.status in ("finished", "stopped_early") and recorder.failure is None:
        from .selection import after_training

        try:
            after = after_training(
                project, run_id, model, spec, image_ids, best_epoch=kept,
                metric_name=ended.metric_name, best_metric=kept_value, keep=keep,
                device=device, token=token,
            )  # fmt: skip
        except TlsError as exc:  # the model is saved; only the extra figures are missing
            warnings.append(f"the test score and calibration were not computed: {exc}")
    status = {"finished": "finished", "stopped_early": "finished", "cancelled": "cancelled"}.get(
        ended.status, "failed"
    )
    failure = recorder.failure
    runs.update(
        run_id,
        status=status,
        error=None if failure is None else failure.message,
        metric_name=ended.metric_name,
        best_metric=kept_value,
        checkpoint=os.path.relpath(model_path, project.root),
        duration_s=time.perf_counter() - t0,
    )
    return TrainResult(run_id, ended, metrics, fast, failure, warnings, after)


def _record_layout(
    runs: RunStore,
    run_id: int,
    distributed: DistContext | None,
    batch_size: int,
    sync_bn: bool,
    device_text: str,
) -> None:
    """A resumed run that was or now is multi-process notes from which epoch on which
    processes train it (config ``"distributed"``: one entry per start) and its device."""
    rec = runs.get(run_id)
    history = list(rec.config.get("distributed") or [])
    if distributed is None and not history:
        return
    if distributed is None:
        layout = {"world_size": 1, "batch_per_process": batch_size, "global_batch": batch_size}
    else:
        layout = distributed.layout(batch_size, sync_bn)
    history.append({"from_epoch": len(runs.epochs(run_id)), **layout})
    runs.update(run_id, config={**rec.config, "distributed": history}, device=device_text)


RESUMABLE = ("interrupted", "cancelled", "failed")
"""Statuses of runs that :func:`resume_run` goes on with."""


def resume_run(
    project: Project,
    run_id: int,
    *,
    callbacks: Sequence[Callback] = (),
    token: CancelToken | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    distributed: DistContext | None = None,
) -> TrainResult:
    """Go on training run ``run_id`` from its last checkpoint (``last.pt``: the end of its
    last finished epoch) with the configuration it was started with, on the project's
    current splits, with any number of processes (``distributed``; the schedule goes on
    from the same epoch). Raises RunError when the run is not one to resume or has no
    checkpoint."""
    if distributed is not None:
        from .distributed import broadcast_object

        # rank 0 checks and claims the run; the others must not see it "running" already
        found: tuple[dict[str, Any], str] | str | None = None
        if distributed.is_main:
            try:
                config, checkpoint = _resumable(project, run_id)
                found = (config, str(checkpoint))
            except TlsError as exc:
                found = str(exc)
        found = broadcast_object(distributed, found)
        if isinstance(found, str):
            raise RunError(found)
        return _resume(project, run_id, found[0], Path(found[1]), callbacks, token, progress,
                       distributed)  # fmt: skip
    config, checkpoint = _resumable(project, run_id)
    return _resume(project, run_id, config, checkpoint, callbacks, token, progress, None)


def _resumable(project: Project, run_id: int) -> tuple[dict[str, Any], Path]:
    """The config and last checkpoint of a run to resume, or RunError saying why not."""
    runs = RunStore(project)
    rec = runs.get(run_id)
    if rec.status not in RESUMABLE:
        raise RunError(
            f"run {run_id} is {rec.status}; only {', '.join(RESUMABLE)} runs can be resumed"
        )
    checkpoint = runs.last_checkpoint(run_id)
    if checkpoint is None:
        raise RunError(
            f"run {run_id} has no checkpoint to resume from (it ended before its first "
            "epoch did); start a new run"
        )
    return dict(rec.config), checkpoint


def _resume(
    project: Project,
    run_id: int,
    config: dict[str, Any],
    checkpoint: Path,
    callbacks: Sequence[Callback],
    token: CancelToken | None,
    progress: Callable[[str, int, int], None] | None,
    distributed: DistContext | None,
) -> TrainResult:
    experiment = config.pop("experiment", None)
    config.pop("warnings", None)
    spec = RunSpec.from_dict(config)
    return train(
        project, spec, callbacks=callbacks, token=token, progress=progress,
        experiment=experiment, resume=(run_id, checkpoint), distributed=distributed,
    )  # fmt: skip


def load_run_model(project: Project, run_id: int) -> tuple[TaskModel, RunSpec]:
    """The trained model of a run (eval mode, CPU) and its spec: for an ensemble run, the
    members combined (:mod:`tlstudio.ml.ensemble`); a classifier carries the temperature
    fitted on its val split (:mod:`tlstudio.ml.calibration`)."""
    rec = RunStore(project).get(run_id)
    if "ensemble" in rec.config:
        from .ensemble import load_ensemble

        return load_ensemble(project, rec)
    if not rec.checkpoint and (rec.config.get("experiment") or {}).get("kind") == "sklearn":
        from .linear_heads import save_head_model  # a few-shot run from before heads were models

        rec = save_head_model(project, run_id)
    if not rec.checkpoint:
        if rec.status == "interrupted":
            raise RunError(
                f"run {run_id} was interrupted ({rec.error}) and has no saved model; "
                f"finish it with: tlstudio train {project.root} --resume {run_id}"
            )
        if rec.status == "running":
            raise RunError(f"run {run_id} is still training; its model is saved when it ends")
        raise RunError(f"run {run_id} has no saved model (status {rec.status})")
    path = project.root / rec.checkpoint
    if not path.is_file():
        raise RunError(f"run {run_id}: model file {path} is missing")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        from .pickle_scan import load_failure

        raise RunError(f"{path}: not a readable model file: {load_failure(path, exc)}") from exc
    if not isinstance(ckpt, dict) or "model" not in ckpt or "spec" not in ckpt:
        raise RunError(f"{path}: not a tlstudio model file (no model/spec)")
    spec = RunSpec.from_dict(ckpt["spec"])
    pretrained = ckpt.get("backbone_weights")
    if pretrained is None:
        model = build_model(project, spec, pretrained=False)
    else:
        model = _model_over_pretrained(project, spec, str(pretrained), run_id)
    try:
        missing, unexpected = model.load_state_dict(ckpt["model"], strict=pretrained is None)
    except RuntimeError as exc:
        raise RunError(
            f"run {run_id}: saved model does not fit the project's current classes/template ({exc})"
        ) from exc
    if unexpected or any(not k.startswith("backbone.") for k in missing):
        raise RunError(
            f"run {run_id}: saved head does not fit the project's current classes "
            f"(missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]})"
        )
    from .calibration import apply_stored

    apply_stored(model, rec.config)
    return model.eval(), spec


def _model_over_pretrained(project: Project, spec: RunSpec, wid: str, run_id: int) -> TaskModel:
    """The model of a head trained on cached features: the backbone from the pretrained
    weights named by ``wid`` (checked to be the same file), the head still untrained."""
    from .weights import WeightsError

    source = wid.split(":", 1)[0]
    weights = _weights_choice(source if source in ("bundled", "cached") else spec.weights)
    try:
        found: str | None = weights_id(spec.backbone, weights)
    except WeightsError as exc:
        found, reason = None, str(exc)
    else:
        reason = f"the weights there now are {found}"
    if found != wid:
        raise RunError(
            f"run {run_id} trained its head over {spec.backbone}'s {source} weights ({wid}); "
            f"they are not on this machine any more ({reason}). Import those weights again "
            "or train the run again"
        )
    return build_model(project, spec, weights=weights)


def predict(
    project: Project,
    run_id: int,
    image_ids: Sequence[int] | None = None,
    *,
    batch_size: int = 16,
    device: str = "auto",
    progress: Callable[[int, int], None] | None = None,
    token: CancelToken | None = None,
    tta: bool = False,
) -> int:
    """Run a trained model over images (default: all) and store its predictions
    (coordinates in image pixels). Returns the number of images predicted and stored.

    Images are read ahead in another thread while the model runs, and the predictions are
    stored together when the run ends (also when it is cancelled or an image cannot be
    read): see :mod:`tlstudio.ml.prediction`."""
    from .prediction import BatchReader, PredictionWriter, batch_rows

    model, spec = load_run_model(project, run_id)
    if tta:
        from .tta import with_tta

        model = with_tta(project, model, spec)
    dev = select_device(device)
    model.to(dev)
    size = spec.resolved_input_size
    bspec = get_spec(spec.backbone)
    ids = list(image_ids) if image_ids is not None else project.image_ids()
    paths = [project.image_path(i) for i in ids]
    classes = project.classes()
    writer = PredictionWriter(project, run_id)
    done = 0
    reader = BatchReader(paths, size, bspec.mean, bspec.std, batch_size, threads=reader_threads())
    try:
        for batch in reader:
            if token is not None and token.is_cancelled:
                break
            chunk = ids[batch.start : batch.start + len(batch.orig_sizes)]
            with torch.no_grad():
                preds = model.predict_step(torch.from_numpy(batch.inputs).to(dev))
            for row in batch_rows(spec.task, preds, chunk, batch.orig_sizes, size, classes,
                                  _payload):  # fmt: skip
                writer.add(row)
            done += len(chunk)
            if progress is not None:
                progress(done, len(ids))
    finally:
        reader.close()
        writer.flush()
    return done


def _cpu(v: Any) -> Any:
    return v.detach().cpu() if isinstance(v, torch.Tensor) else v


def _payload(
    task: str, pred: dict[str, Any], classes
) -> tuple[dict, np.ndarray | None, float | None]:
    """JSON-ready prediction (class ids are database ids), mask as label map, and a score."""
    # "spread", "point_spread", "agreement": how much an ensemble's members differ
    if "," in task:  # a multi-task run: its tasks' payloads side by side
        from .multitask import multitask_payload

        return multitask_payload(task, pred, classes, _payload)
    if task == "classify":
        probs = pred["probs"].tolist()
        best = int(np.argmax(probs))
        out = {"probs": {str(c.id): p for c, p in zip(classes, probs, strict=True)},
               "class_id": classes[best].id}  # fmt: skip
        if "spread" in pred:
            out["spread"] = {str(c.id): float(v) for c, v in zip(classes, pred["spread"].tolist(),
                                                                  strict=True)}  # fmt: skip
        return out, None, float(max(probs))
    if task == "detect":
        boxes = [
            {"class_id": classes[int(lbl)].id, "score": float(s), "xyxy": [float(v) for v in b]}
            for b, s, lbl in zip(
                pred["boxes"].tolist(),
                pred["scores"].tolist(),
                pred["labels"].tolist(),
                strict=True,
            )
        ]
        if "agreement" in pred:
            for box, a in zip(boxes, pred["agreement"].tolist(), strict=True):
                box["agreement"] = float(a)
        return {"boxes": boxes}, None, (max((b["score"] for b in boxes), default=0.0))
    if task == "landmarks":
        pts = [[float(x), float(y), float(c)] for x, y, c in pred["keypoints"].tolist()]
        out = {"points": pts}
        if "point_spread" in pred:
            out["spread"] = [[float(x), float(y)] for x, y in pred["point_spread"].tolist()]
        return out, None, float(np.mean([p[2] for p in pts])) if pts else None
    if task == "segment":
        lut = np.array([0] + [c.id for c in classes], dtype=np.uint16)
        mask = lut[np.asarray(pred["mask"], dtype=np.int64)]
        out = {"classes": sorted(int(v) for v in np.unique(mask) if v)}
        if "spread" in pred:  # an ensemble's mean spread between its members
            out["spread"] = float(pred["spread"])
        return out, mask, None
    if task == "instances":
        return _instances_payload(pred, classes)
    if task == "autoencode":
        return (
            {"latent": [float(v) for v in pred["latent"].tolist()], "error": float(pred["error"])},
            None,
            float(pred["error"]),
        )
    raise RunError(f"unknown task {task!r}")


def _instances_payload(pred: dict[str, Any], classes) -> tuple[dict, np.ndarray | None, float]:
    """Objects with at least one pixel as {"objects": [{"number", "class_id", "score",
    "xyxy"}]} (best score first) and the image's object map (pixel = number; where two
    objects overlap the better-scoring one has it)."""
    from tlstudio.runtime.objects import instance_map

    kept, entries = [], []
    for obj, box, score, label in zip(
        pred["objects"], pred["boxes"].tolist(), pred["scores"].tolist(),
        pred["labels"].tolist(), strict=True,
    ):  # fmt: skip
        if not obj.area:
            continue
        kept.append(obj)
        entries.append({"number": len(kept), "class_id": classes[int(label)].id,
                        "score": float(score), "xyxy": [float(v) for v in box]})  # fmt: skip
    mask = instance_map(kept, pred["image_size"]) if kept else None
    return {"objects": entries}, mask, max((e["score"] for e in entries), default=0.0)


def evaluate(
    project: Project, run_id: int, split: str = "val", *, device: str = "auto", tta: bool = False
) -> dict[str, Any]:
    """Full metrics of a run's model on a split (e.g. confusion matrix for classification;
    "calibration": ECE and reliability before/after the run's temperature). ``tta``: with
    test-time augmentation."""
    from . import metrics as M

    model, spec = load_run_model(project, run_id)
    if tta:
        from .tta import with_tta

        model = with_tta(project, model, spec)
    bspec = get_spec(spec.backbone)
    ids = [r.id for r in project.images_in_split(split)]
    if not ids:
        raise RunError(f"the {split!r} split is empty; assign splits first")
    ds = data_mod.project_dataset(
        project, spec.task, ids, spec.resolved_input_size, bspec.mean, bspec.std,
        template_id=spec.template_id,
        multi_label="classify" in spec.task.split(",") and project.multi_label,
    )  # fmt: skip
    dev = select_device(device)
    model.to(dev)
    preds, targets = [], []
    loader = torch.utils.data.DataLoader(ds, batch_size=16, collate_fn=collate)
    with torch.no_grad():
        for images, tg in loader:
            preds += [
                {k: _cpu(v) for k, v in p.items()} for p in model.predict_step(images.to(dev))
            ]
            targets += tg
    classes = len(project.classes())
    summary = metrics_fn_for(spec.task, classes, multi_label=ds.multi_label)(preds, targets)
    out: dict[str, Any] = {"split": split, "images": len(ds), "summary": summary}
    if spec.task == "classify" and not ds.multi_label:
        probs = np.stack([np.asarray(p["probs"]) for p in preds])
        labels = np.array([int(t["label"]) for t in targets])
        out["detail"] = M.classification_metrics(probs, labels, [c.name for c in project.classes()])
    if spec.task == "classify" and preds:
        from .calibration import before_and_after, stored_temperature

        multi = ds.multi_label
        probs = np.stack([np.asarray(p["probs"]) for p in preds])
        truth = np.stack([np.asarray(t["labels" if multi else "label"]) for t in targets])
        t = stored_temperature(RunStore(project).get(run_id).config)
        out["calibration"] = before_and_after(probs, truth, t, multi_label=multi)
    return out
