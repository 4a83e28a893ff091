"""Headless training commands: ``train``, ``evaluate``, ``predict``, ``experiment`` (and
``demo --train``).

torch is imported inside the commands, so ``tlstudio --help`` stays instant.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

TASKS = ("classify", "detect", "landmarks", "segment", "autoencode")
AUGMENT_CHOICES = ("none", "default", "strong")


def add_commands(sub: Any) -> None:
    """Register the ml subcommands on the CLI's subparsers."""
    p = sub.add_parser(
        "train",
        help="train a model on the project's train split and validate on its val split",
        description="Train a task model over a pretrained backbone. Prints progress per epoch "
        "and ends with the validation metrics and the run id.",
    )
    p.add_argument("dir", metavar="DIR", help="project folder")
    p.add_argument("--task", choices=TASKS, required=True)
    p.add_argument(
        "--backbone",
        default="efficientnet_lite0",
        help="registry name (default: efficientnet_lite0)",
    )
    p.add_argument(
        "--weights",
        default="auto",
        help="bundled | cached | none | auto | FILE (default: auto = bundled, else cached)",
    )
    p.add_argument(
        "--freeze",
        default="all",
        help="leading backbone stages kept fixed: 'all' = feature extraction (default), 0 = full fine-tuning",
    )
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--optimizer", choices=("adamw", "sgd"), default="adamw")
    p.add_argument("--schedule", choices=("cosine", "onecycle", "step", "none"), default="cosine")
    p.add_argument(
        "--augment",
        choices=AUGMENT_CHOICES,
        default="none",
        help="none (default), default or strong",
    )
    p.add_argument(
        "--input-size",
        type=int,
        default=None,
        help="network input size in px (default: the backbone's)",
    )
    p.add_argument("--patience", type=int, default=None, help="early stopping patience in epochs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps")
    p.add_argument(
        "--no-feature-cache", action="store_true", help="never take the cached-feature fast path"
    )
    p.set_defaults(run=cmd_train)

    p = sub.add_parser("evaluate", help="metrics of a trained run on a split")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("run_id", metavar="RUN", type=int)
    p.add_argument("--split", choices=("train", "val", "test"), default="val")
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true", help="print the full metrics as JSON")
    p.set_defaults(run=cmd_evaluate)

    p = sub.add_parser(
        "predict",
        help="store a run's predictions for images (as predictions, not labels)",
    )
    p.add_argument("dir", metavar="DIR")
    p.add_argument("run_id", metavar="RUN", type=int)
    p.add_argument(
        "--images", nargs="*", default=None, help="image ids or paths (default: all images)"
    )
    p.add_argument("--device", default="auto")
    p.set_defaults(run=cmd_predict)

    add_experiment_command(sub)


def _augment(choice: str):
    from .ml.transforms import AugmentConfig

    if choice == "none":
        return None
    if choice == "default":
        return AugmentConfig()
    return AugmentConfig(rotate_deg=20, color_jitter=0.4, random_erasing=0.25, vflip=0.0)


def spec_from_args(args: argparse.Namespace):
    """The RunSpec described by the train options shared by ``train`` and ``experiment``."""
    from .ml.runner import RunSpec
    from .ml.trainer import TrainConfig

    freeze: int | str = args.freeze if args.freeze == "all" else int(args.freeze)
    cfg = TrainConfig(
        epochs=args.epochs, batch_size=args.batch, lr=args.lr, optimizer=args.optimizer,
        schedule=args.schedule, freeze=freeze, early_stopping_patience=args.patience,
        seed=args.seed, device=args.device,
    )  # fmt: skip
    return RunSpec(
        task=args.task, backbone=args.backbone, weights=args.weights, train=cfg,
        augment=_augment(args.augment), input_size=args.input_size,
        use_feature_cache=not args.no_feature_cache,
    )  # fmt: skip


def cmd_train(args: argparse.Namespace) -> int:
    from .core.project import Project

    spec = spec_from_args(args)
    with Project.open(args.dir) as project:
        return train_and_report(project, spec)


def train_and_report(project, spec) -> int:
    """Train, print progress to stderr and the result to stdout; exit status."""
    from .ml.callbacks import ConsoleProgress
    from .ml.runner import train

    def progress(stage: str, done: int, total: int) -> None:
        if done == total:
            print(f"{stage}: {done}/{total} images", file=sys.stderr)

    result = train(project, spec, callbacks=[ConsoleProgress(sys.stderr)], progress=progress)
    if result.feature_cache:
        print("fast path: backbone frozen, head trained on cached features", file=sys.stderr)
    if result.failure is not None:
        print(f"error: {result.failure.message}", file=sys.stderr)
    shown = {k: v for k, v in result.metrics.items() if k not in ("train_loss",)}
    for name, value in shown.items():
        print(f"val {name.removeprefix('val_').replace('_', ' ')} {value:.3f}")
    ended = result.ended
    print(f"run {result.run_id} ({ended.status if ended else 'failed'}, {ended.epochs_run} epochs)")
    return 0 if result.failure is None else 2


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .core.project import Project
    from .ml.runner import evaluate

    with Project.open(args.dir) as project:
        out = evaluate(project, args.run_id, args.split, device=args.device)
    if args.json:
        print(json.dumps(out, indent=1, default=_jsonable))
        return 0
    print(f"run {args.run_id} on {out['split']} ({out['images']} images)")
    for name, value in out["summary"].items():
        print(f"  {name:<20} {value:.4f}")
    detail = out.get("detail")
    if detail and "confusion_matrix" in detail:
        names = detail.get("class_names") or [
            str(i) for i in range(len(detail["confusion_matrix"]))
        ]
        print("confusion matrix (rows = true, columns = predicted):")
        print("  " + " ".join(f"{n[:8]:>8}" for n in ["", *names]))
        for n, row in zip(names, detail["confusion_matrix"], strict=True):
            print("  " + f"{n[:8]:>8} " + " ".join(f"{int(v):>8}" for v in row))
    return 0


def _jsonable(v: Any) -> Any:
    if hasattr(v, "tolist"):
        return v.tolist()
    return str(v)


def cmd_predict(args: argparse.Namespace) -> int:
    from .core.errors import ValidationError
    from .core.project import Project
    from .ml.runner import predict

    with Project.open(args.dir) as project:
        ids = None
        if args.images:
            ids = []
            for item in args.images:
                if item.isdigit():
                    ids.append(project.image(int(item)).id)
                else:
                    rec = project.image_by_path(item)
                    if rec is None:
                        raise ValidationError(f"{item}: not an image of this project")
                    ids.append(rec.id)
        n = predict(project, args.run_id, ids, device=args.device)
    print(f"stored predictions of run {args.run_id} for {n} images")
    return 0


def train_demo(project) -> int:
    """``tlstudio demo DIR --train``: a quick classifier on the demo shapes."""
    from .ml.runner import RunSpec
    from .ml.trainer import TrainConfig

    spec = RunSpec(task="classify", backbone="efficientnet_lite0", weights="auto",
                   train=TrainConfig(epochs=30, lr=3e-3, batch_size=16))  # fmt: skip
    print("Training a classifier (EfficientNet-Lite0 features, bundled ImageNet weights)…")
    return train_and_report(project, spec)


# --------------------------------------------------------------------------- experiment

EXPERIMENT_KINDS = ("cv", "scratch", "curve", "sklearn")
_HIDDEN_METRICS = ("lr", "duration_s")


def add_experiment_command(sub: Any) -> None:
    """``tlstudio experiment DIR --kind cv|scratch|curve|sklearn [train options]``."""
    p = sub.add_parser(
        "experiment",
        help="cross-validation, pretrained vs scratch, learning curve or a scikit-learn head",
        description="Run an experiment made of ordinary training runs (each is recorded in the "
        "project) and print a table of validation metrics. cv: k-fold cross-validation over "
        "the images outside the test split (folds are stored, splits untouched). scratch: the "
        "same spec with the given weights and from random weights (fully trained). curve: "
        "growing stratified subsets of the train split, validated on the whole val split. "
        "sklearn: a scikit-learn head on cached frozen features (classification).",
    )
    p.add_argument("dir", metavar="DIR", help="project folder")
    p.add_argument("--kind", choices=EXPERIMENT_KINDS, required=True)
    p.add_argument("--k", type=int, default=5, help="cv: number of folds (default 5)")
    p.add_argument("--include-test", action="store_true", help="cv: let test images take part too")
    p.add_argument(
        "--fractions",
        default="0.1,0.25,0.5,1",
        help="curve: comma-separated fractions of the train split (default 0.1,0.25,0.5,1)",
    )
    p.add_argument(
        "--head",
        choices=("logreg", "linear_svm", "knn", "prototype"),
        default="logreg",
        help="sklearn: the head (default logreg)",
    )
    p.add_argument("--task", choices=TASKS, default="classify", help="default: classify")
    p.add_argument(
        "--backbone",
        default="efficientnet_lite0",
        help="registry name (default: efficientnet_lite0)",
    )
    p.add_argument(
        "--weights", default="auto", help="bundled | cached | none | auto | FILE (default: auto)"
    )
    p.add_argument(
        "--freeze", default="all", help="leading backbone stages kept fixed (default: all)"
    )
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--optimizer", choices=("adamw", "sgd"), default="adamw")
    p.add_argument("--schedule", choices=("cosine", "onecycle", "step", "none"), default="cosine")
    p.add_argument("--augment", choices=AUGMENT_CHOICES, default="none")
    p.add_argument("--input-size", type=int, default=None, help="network input size in px")
    p.add_argument("--patience", type=int, default=None, help="early stopping patience in epochs")
    p.add_argument("--seed", type=int, default=0, help="training seed, also of folds and subsets")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps")
    p.add_argument("--no-feature-cache", action="store_true")
    p.set_defaults(run=cmd_experiment)


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return "nan" if v != v else f"{v:.3f}"
    return str(v)


def _print_table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join(
        h.ljust(w) if i == 0 else h.rjust(w)
        for i, (h, w) in enumerate(zip(header, widths, strict=True))
    )
    print(line)
    print("-" * len(line))
    for r in rows:
        print(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(r, widths, strict=True))
            )
        )


def _metric_names(dicts: list[dict[str, float]]) -> list[str]:
    names: list[str] = []
    for d in dicts:
        names.extend(k for k in d if k not in names and k not in _HIDDEN_METRICS)
    return names


def cmd_experiment(args: argparse.Namespace) -> int:
    from .core.project import Project
    from .ml import experiments as X
    from .ml.callbacks import ConsoleProgress

    spec = spec_from_args(args)
    cbs = [ConsoleProgress(sys.stderr)]
    with Project.open(args.dir) as project:
        if args.kind == "cv":
            res = X.cross_validate(
                project, spec, k=args.k, seed=args.seed, callbacks=cbs,
                include_test=args.include_test,
                on_fold=lambda f, k: print(f"fold {f + 1}/{k}", file=sys.stderr),
            )  # fmt: skip
            print(
                f"{res.k}-fold cross-validation ({args.task}, {args.backbone}, weights {args.weights})"
            )
            header = ["metric", *[f"fold {i + 1}" for i in range(len(res.per_fold))], "mean ± std"]
            rows = [
                ["images (train/val)", *[f"{a}/{b}" for a, b in res.fold_sizes], ""],
                ["run", *[str(r) for r in res.run_ids], ""],
            ]
            for name in _metric_names(res.per_fold):
                mean, std = res.summary.get(name, (float("nan"), float("nan")))
                rows.append(
                    [
                        name,
                        *[_fmt(f.get(name)) for f in res.per_fold],
                        f"{_fmt(mean)} ± {_fmt(std)}",
                    ]
                )
            _print_table(header, rows)
            return 1 if res.cancelled else 0
        if args.kind == "scratch":
            out = X.compare_pretrained_vs_scratch(project, spec, callbacks=cbs)
            arms = list(out)
            print(
                f"pretrained vs scratch ({args.task}, {args.backbone}, {args.epochs} epochs each)"
            )
            rows = [
                ["weights", *[str(out[a]["weights"]) for a in arms]],
                ["freeze", *[str(out[a]["freeze"]) for a in arms]],
                ["run", *[str(out[a]["run_id"]) for a in arms]],
            ]
            for name in _metric_names([out[a]["metrics"] for a in arms]):
                rows.append([name, *[_fmt(out[a]["metrics"].get(name)) for a in arms]])
            _print_table(["metric", *arms], rows)
            return 0
        if args.kind == "curve":
            fractions = [float(f) for f in args.fractions.split(",") if f.strip()]
            points = X.learning_curve(project, spec, fractions, seed=args.seed, callbacks=cbs)
            print(f"learning curve ({args.task}, {args.backbone}, weights {args.weights})")
            header = ["metric", *[f"{p.fraction:g}" for p in points]]
            rows = [["train images", *[str(p.n_train) for p in points]]]
            for name in _metric_names([p.metrics for p in points]):
                rows.append([name, *[_fmt(p.metrics.get(name)) for p in points]])
            _print_table(header, rows)
            return 0

        def progress(stage: str, done: int, total: int) -> None:
            if done == total:
                print(f"{stage}: {done}/{total} images", file=sys.stderr)

        run_id, metrics = X.fit_sklearn_run(
            project, args.backbone, args.weights, args.head, args.input_size,
            seed=args.seed, device=args.device, progress=progress,
        )  # fmt: skip
        print(
            f"{args.head} head on {args.backbone} features (weights {args.weights}), run {run_id}"
        )
        _print_table(["metric", "value"], [[k, _fmt(v)] for k, v in metrics.items()])
        return 0
