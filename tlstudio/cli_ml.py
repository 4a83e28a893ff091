"""Headless training commands: ``train``, ``evaluate``, ``predict``, ``experiment``,
``export-model``, ``report`` (and ``demo --train``).

torch is imported inside the commands, so ``tlstudio --help`` stays instant.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .ml.presets import PRESET_NAMES
from .ml.tasks.registry import TASK_NAMES as TASKS

AUGMENT_CHOICES = ("none", "default", "strong")
TTA_HELP = (
    "test-time augmentation: also predict on the mirror image and 0.875x / 1.125x sizes and "
    "combine (landmarks swap left/right points); not for models that must tell left from right"
)


def add_commands(sub: Any) -> None:
    """Register the ml subcommands on the CLI's subparsers."""
    p = sub.add_parser(
        "train",
        help="train a model on the project's train split and validate on its val split",
        description="Train a task model over a pretrained backbone. Prints progress per epoch "
        "and ends with the validation metrics and the run id.",
    )
    p.add_argument("dir", metavar="DIR", help="project folder")
    add_run_options(p, task_default=None, task_required=False)
    p.add_argument(
        "--resume",
        metavar="RUN",
        type=int,
        help="go on with an interrupted, cancelled or failed run from its last checkpoint, "
        "with the settings it was started with (the other options are ignored); also with "
        "another number of torchrun processes",
    )
    p.add_argument(
        "--sync-bn",
        choices=("auto", "on", "off"),
        default="auto",
        help="under torchrun: BatchNorm statistics over every process (SyncBatchNorm, GPUs "
        "only) or per process; auto = on for detect and segment on GPUs",
    )
    p.set_defaults(run=cmd_train)

    p = sub.add_parser("evaluate", help="metrics of a trained run on a split")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("run_id", metavar="RUN", type=int)
    p.add_argument("--split", choices=("train", "val", "test"), default="val")
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true", help="print the full metrics as JSON")
    add_threads_option(p)
    p.add_argument(
        "--by-domain",
        action="store_true",
        help="also the metrics of each image domain (site, scanner, batch) in the split",
    )
    p.add_argument("--tta", action="store_true", help=TTA_HELP)
    p.set_defaults(run=cmd_evaluate)

    p = sub.add_parser(
        "predict",
        help="store a run's predictions in a project, or run an exported model over image files",
        usage="tlstudio predict DIR RUN [--images ID_OR_PATH ...] [--device DEVICE] "
        "[--threads N]\n"
        "       tlstudio predict --model FILE [--csv] [--batch N] [--masks DIR] "
        "[--trust-torchscript] [--threads N] PATH [PATH ...]",
        description="With a project: run a trained run's model over its images (default: all) "
        "and store the outputs as predictions (never as labels). With --model: run a model "
        "written by 'tlstudio export-model' (.onnx, or .pt with --trust-torchscript; its .json "
        "sidecar next to it) over "
        "image files and folders (searched recursively), no project needed, and print one "
        "JSON line per image (coordinates in image pixels, classes by name), or CSV with --csv.",
    )
    p.add_argument(
        "items",
        metavar="ARG",
        nargs="*",
        help="DIR RUN (project folder and run id); with --model: image files and folders",
    )
    p.add_argument(
        "--run",
        dest="run_id",
        metavar="N",
        type=int,
        default=None,
        help="run id (instead of the second ARG)",
    )
    p.add_argument(
        "--images", nargs="*", default=None, help="image ids or paths (default: all images)"
    )
    p.add_argument("--device", default="auto")
    p.add_argument("--tta", action="store_true", help=TTA_HELP)
    p.add_argument("--model", metavar="FILE", help="an exported model file (.onnx or .pt)")
    p.add_argument(
        "--trust-torchscript",
        action="store_true",
        help="with --model: run a TorchScript file (.pt). TorchScript is a program that runs "
        "with your rights; give this only for files you trust. ONNX needs no such trust",
    )
    p.add_argument("--csv", action="store_true", help="with --model: CSV instead of JSON lines")
    p.add_argument("--batch", type=int, default=16, help="with --model: images per batch")
    p.add_argument(
        "--masks",
        metavar="DIR",
        help="with --model, segmentation: also write each predicted mask as DIR/<name>.png "
        "(0 = background, k = k-th class of the sidecar); instances: the object map "
        "(0 = none, k = the object numbered k)",
    )
    add_threads_option(p)
    p.set_defaults(run=cmd_predict)

    p = sub.add_parser(
        "export-model",
        help="export a run's model as ONNX or TorchScript with a JSON sidecar",
        description="Write a run's trained model as a standalone file: input N×3×S×S float32 "
        "(RGB, resized to S×S, scaled to 0..1, normalised with the backbone's mean/std; "
        "see the sidecar FILE.json), outputs the task's raw outputs. The file is run on a "
        "few project images and compared with PyTorch before it is kept (--no-check skips).",
    )
    p.add_argument("dir", metavar="DIR", help="project folder")
    p.add_argument("--run", dest="run_id", metavar="N", type=int, required=True, help="run id")
    p.add_argument(
        "--format",
        choices=("onnx", "torchscript"),
        default=None,
        help="default: from --out's suffix (.onnx = onnx, .pt/.ts = torchscript), else onnx. "
        "ONNX is recommended: it is data and runs without PyTorch; a TorchScript file is a "
        "program, which 'tlstudio predict' runs only with --trust-torchscript",
    )
    p.add_argument("--out", required=True, metavar="FILE", help="model file to write")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default: recommended)")
    p.add_argument("--no-check", action="store_true", help="skip the comparison with PyTorch")
    add_threads_option(p)
    p.set_defaults(run=cmd_export_model)

    p = sub.add_parser(
        "report",
        help="write a self-contained HTML report of a run",
        description="One HTML file with embedded figures: run configuration, dataset counts, "
        "training curves, metrics on a split, sample predictions and (when available) "
        "Grad-CAM heatmaps.",
    )
    p.add_argument("dir", metavar="DIR", help="project folder")
    p.add_argument("--run", dest="run_id", metavar="N", type=int, required=True, help="run id")
    p.add_argument("--out", required=True, metavar="FILE", help="HTML file to write")
    p.add_argument("--split", choices=("train", "val", "test"), default="val")
    p.add_argument("--samples", type=int, default=8, help="sample images shown (default 8)")
    p.add_argument("--no-heatmaps", action="store_true", help="leave out the Grad-CAM section")
    add_threads_option(p)
    p.set_defaults(run=cmd_report)

    add_experiment_command(sub)


def add_run_options(
    p: argparse.ArgumentParser,
    *,
    task_default: str | None,
    task_required: bool = True,
    seed_help: str | None = None,
) -> None:
    """The options that describe a training run (model, then training), read by
    :func:`spec_from_args`; shared by ``train`` and ``experiment``. ``task_default`` None
    makes ``--task`` required, or optional (checked by the caller: ``train --resume``
    needs none) when ``task_required`` is False."""
    from .ml.adapt_config import ADAPT_METHODS  # no torch import either
    from .ml.tasks.joint import JOINT_TASKS
    from .ml.train_config import OPTIMIZERS, SCHEDULES  # plain tuples: no torch import

    task_help = (
        f"{', '.join(TASKS)}; or several heads on one backbone, trained together: tasks of "
        f"{', '.join(JOINT_TASKS)} joined by commas (e.g. classify,landmarks)"
    )
    if task_default is None and task_required:
        p.add_argument("--task", type=_task_arg, metavar="TASK", required=True, help=task_help)
    elif task_default is None:
        p.add_argument("--task", type=_task_arg, metavar="TASK",
                       help=f"what to train (required unless --resume): {task_help}")  # fmt: skip
    else:
        p.add_argument("--task", type=_task_arg, metavar="TASK", default=task_default,
                       help=f"default: {task_default}; {task_help}")  # fmt: skip
    p.add_argument(
        "--task-weights",
        metavar="W[,W]",
        default=None,
        help="multi-task runs: each task's loss weight in --task order (e.g. 1,0.5; default "
        "all 1), or 'uncertainty' to learn them (Kendall et al. 2018)",
    )
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
        "--preset",
        choices=PRESET_NAMES,
        default=None,
        help="a training strategy as in the Train panel: sets freeze, lr, epochs, per-stage "
        "lr decay, progressive unfreezing and augmentation; options given explicitly win",
    )
    # default None: "not given", so a --preset value shows through (see spec_from_args)
    p.add_argument(
        "--freeze",
        default=None,
        help="leading backbone stages kept fixed: 'all' = feature extraction (default), 0 = full fine-tuning",
    )
    p.add_argument("--epochs", type=int, default=None, help="default: 10")
    p.add_argument("--lr", type=float, default=None, help="default: 1e-3")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--optimizer", choices=OPTIMIZERS, default="adamw")
    p.add_argument("--schedule", choices=SCHEDULES, default="cosine")
    p.add_argument(
        "--augment",
        choices=AUGMENT_CHOICES,
        default=None,
        help="none (default), default or strong",
    )
    p.add_argument(
        "--input-size",
        type=int,
        default=None,
        help="network input size in px (default: the backbone's)",
    )
    p.add_argument("--patience", type=int, default=None, help="early stopping patience in epochs")
    p.add_argument("--seed", type=int, default=0, help=seed_help)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps")
    p.add_argument(
        "--no-feature-cache", action="store_true", help="never take the cached-feature fast path"
    )
    p.add_argument(
        "--adapt",
        choices=ADAPT_METHODS,
        default=None,
        help="adapt to the images of --target-domain, whose labels are never used: coral, "
        "mmd or dann align the backbone's features while it trains (--freeze below all); "
        "standardize and coral work on cached features of a frozen backbone",
    )
    p.add_argument(
        "--target-domain",
        metavar="NAME",
        default=None,
        help="the domain to adapt to (see 'tlstudio import --domain'); its images leave the "
        "labelled training and validation sets",
    )
    p.add_argument(
        "--adapt-weight",
        type=float,
        default=None,
        help="weight of the alignment loss (default 1)",
    )
    add_threads_option(p)


def _task_arg(text: str) -> str:
    """``--task``: one task, or a checked multi-task list ("classify,landmarks")."""
    from .core.errors import ValidationError
    from .ml.tasks.joint import check_tasks

    try:
        return ",".join(check_tasks(text))
    except ValidationError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_threads_option(p: argparse.ArgumentParser) -> None:
    """``--threads N``: the command's CPU thread budget (read by ``tlstudio.cli.main``)."""
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        metavar="N",
        help="CPU threads for computing (torch, onnxruntime, data loading; default: the "
        "TLSTUDIO_THREADS environment variable, else every core; 0 = default)",
    )


def use_thread_budget() -> None:
    """Give torch the command's thread budget (set by ``tlstudio.cli.main``) in this thread."""
    from .ml.threads import apply

    apply()


def _augment(choice: str):
    from .ml.augment_config import AugmentConfig

    if choice == "none":
        return None
    if choice == "default":
        return AugmentConfig()
    return AugmentConfig(rotate_deg=20, color_jitter=0.4, random_erasing=0.25, vflip=0.0)


def spec_from_args(args: argparse.Namespace):
    """The RunSpec described by the train options shared by ``train`` and ``experiment``."""
    from .ml.runner import RunSpec
    from .ml.train_config import TrainConfig

    cfg = TrainConfig(
        batch_size=args.batch, optimizer=args.optimizer, schedule=args.schedule,
        early_stopping_patience=args.patience, seed=args.seed, device=args.device,
    )  # fmt: skip
    augment = "none"
    preset_name = getattr(args, "preset", None)
    if preset_name:  # the preset first; the options given explicitly below override it
        from .core.errors import ValidationError
        from .ml.backbones import get_spec
        from .ml.presets import get_preset

        try:
            n_stages = len(get_spec(args.backbone).stages)
        except KeyError as exc:
            raise ValidationError(str(exc.args[0])) from None
        preset = get_preset(preset_name)
        cfg = preset.apply(cfg, n_stages)
        augment = "default" if preset.augment else "none"
    if args.freeze is not None:
        cfg.freeze = args.freeze if args.freeze == "all" else int(args.freeze)
    if args.epochs is not None:
        cfg.epochs = args.epochs
    if args.lr is not None:
        cfg.lr = args.lr
    adapt = None
    if getattr(args, "adapt", None) is not None:
        from .core.errors import ValidationError
        from .ml.adapt_config import AdaptConfig

        if not args.target_domain:
            raise ValidationError("--adapt needs --target-domain NAME (the domain to adapt to)")
        adapt = AdaptConfig(args.adapt, args.target_domain, args.adapt_weight)
    options: dict[str, Any] = {}
    if getattr(args, "task_weights", None) is not None:
        from .core.errors import ValidationError
        from .ml.tasks.joint import parse_task_weights, split_tasks

        tasks = split_tasks(args.task or "")
        if len(tasks) < 2:
            raise ValidationError("--task-weights applies to multi-task runs (--task A,B)")
        options["task_weights"] = parse_task_weights(args.task_weights, len(tasks))
    return RunSpec(
        task=args.task, backbone=args.backbone, weights=args.weights, train=cfg,
        augment=_augment(args.augment if args.augment is not None else augment),
        input_size=args.input_size, use_feature_cache=not args.no_feature_cache, adapt=adapt,
        model_options=options,
    )  # fmt: skip


def cmd_train(args: argparse.Namespace) -> int:
    from .core.errors import ValidationError
    from .core.project import Project

    if args.resume is None and args.task is None:
        raise ValidationError("give --task (or --resume RUN to go on with a run)")
    if args.target_domain and not args.adapt:
        raise ValidationError("--target-domain goes with --adapt coral|mmd|dann|standardize")
    spec = None if args.resume is not None else spec_from_args(args)
    if spec is not None and args.sync_bn != "auto":
        spec.train.sync_batchnorm = args.sync_bn == "on"
    from .ml.distributed import launched_by_torchrun, run_in_job

    use_thread_budget()
    if launched_by_torchrun():
        return run_in_job(
            args.dir,
            args.device,
            lambda project, ctx: train_and_report(project, spec, resume=args.resume, job=ctx),
        )
    with Project.open(args.dir) as project:
        return train_and_report(project, spec, resume=args.resume)


def train_and_report(
    project, spec, *, resume: int | None = None, job=None, image_ids=None, on_result=None
) -> int:
    """Train (or with ``resume``, go on with that run), print progress to stderr and the
    result to stdout; exit status. ``job``: this process's place in a torchrun job (only
    rank 0 prints); ``image_ids``: (train ids, val ids) instead of the stored splits;
    ``on_result(TrainResult)`` is called (on rank 0) before the result is printed."""
    from .ml.callbacks import ConsoleProgress
    from .ml.runner import resume_run, train

    main = job is None or job.is_main

    def progress(stage: str, done: int, total: int) -> None:
        if done == total and main:
            print(f"{stage}: {done}/{total} images", file=sys.stderr)

    callbacks = [ConsoleProgress(sys.stderr)] if main else []
    if resume is not None:
        if main:
            print(f"resuming run {resume} from its last checkpoint", file=sys.stderr)
        result = resume_run(
            project, resume, callbacks=callbacks, progress=progress, distributed=job
        )
    else:
        result = train(
            project, spec, callbacks=callbacks, progress=progress, distributed=job,
            image_ids=image_ids,
        )  # fmt: skip
    if not main:
        return 0 if result.failure is None else 2
    if on_result is not None:
        on_result(result)
    for message in result.warnings:
        print(f"warning: {message}", file=sys.stderr)
    if result.feature_cache:
        print("fast path: backbone frozen, head trained on cached features", file=sys.stderr)
    if spec is not None and spec.adapt is not None:
        from .ml.adapt import METHOD_NAMES

        print(
            f"adapted to domain {spec.adapt.target_domain!r} with "
            f"{METHOD_NAMES[spec.adapt.method]} (its labels were not used)",
            file=sys.stderr,
        )
    if result.failure is not None:
        print(f"error: {result.failure.message}", file=sys.stderr)
    from .ml.selection import describe

    ended = result.ended
    epochs_run = ended.epochs_run if ended is not None else None
    for line in describe(result.metrics, result.after, epochs_run=epochs_run):
        print(line)
    status = ended.status if ended is not None else "failed"
    print(f"run {result.run_id} ({status}, {epochs_run or 0} epochs)")
    return 0 if result.failure is None else 2


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .core.project import Project
    from .ml.runner import evaluate

    use_thread_budget()
    with Project.open(args.dir) as project:
        out = evaluate(project, args.run_id, args.split, device=args.device, tta=args.tta)
        if args.by_domain:
            from .ml.evaluation import evaluate_run

            out["by_domain"] = evaluate_run(
                project, args.run_id, args.split, device=args.device, tta=args.tta
            ).by_domain
    if args.json:
        print(json.dumps(out, indent=1, default=_jsonable))
        return 0
    tta = ", test-time augmentation" if args.tta else ""
    print(f"run {args.run_id} on {out['split']} ({out['images']} images{tta})")
    for name, value in out["summary"].items():
        print(f"  {name:<20} {value:.4f}")
    cal = out.get("calibration")
    if cal is not None:
        after = cal["after"]
        if cal["before"] is not None:
            print(
                f"  {'ece':<20} {after.ece:.4f} (temperature {cal['temperature']:.3g}; "
                f"{cal['before'].ece:.4f} without it)"
            )
        else:
            print(f"  {'ece':<20} {after.ece:.4f} (no temperature fitted)")
    detail = out.get("detail")
    if detail and "confusion_matrix" in detail:
        names = detail.get("class_names") or [
            str(i) for i in range(len(detail["confusion_matrix"]))
        ]
        print("confusion matrix (rows = true, columns = predicted):")
        print("  " + " ".join(f"{n[:8]:>8}" for n in ["", *names]))
        for n, row in zip(names, detail["confusion_matrix"], strict=True):
            print("  " + f"{n[:8]:>8} " + " ".join(f"{int(v):>8}" for v in row))
    if args.by_domain:
        _print_by_domain(out["by_domain"], out["split"])
    return 0


def _print_by_domain(by_domain: dict[str, dict[str, float]], split: str) -> None:
    if not by_domain:
        print(f"per domain: no image of the {split} split has a domain")
        return
    keys = [k for k in next(iter(by_domain.values())) if k != "images"]
    print("per domain:")
    rows = [[name, str(int(row["images"])), *[_fmt(row.get(k)) for k in keys]]
            for name, row in by_domain.items()]  # fmt: skip
    _print_table(["domain", "images", *keys], rows)


def _jsonable(v: Any) -> Any:
    if hasattr(v, "tolist"):
        return v.tolist()
    if hasattr(v, "to_dict"):
        return v.to_dict()
    return str(v)


def cmd_predict(args: argparse.Namespace) -> int:
    from .core.errors import ValidationError

    if args.model is not None:
        if args.tta:
            raise ValidationError("--tta applies to a project's run, not to --model")
        if args.run_id is not None or args.images is not None:
            raise ValidationError(
                "--model runs an exported file; --run and --images need a project"
            )
        return predict_exported(args)
    if args.csv or args.masks or args.trust_torchscript:
        raise ValidationError("--csv, --masks and --trust-torchscript apply to --model only")
    items = list(args.items)
    if args.run_id is not None:
        items.append(str(args.run_id))
    if len(items) != 2 or not items[1].isdigit():
        raise ValidationError(
            "give a project folder and a run id (tlstudio predict DIR RUN), "
            "or an exported model (tlstudio predict --model FILE PATH ...)"
        )
    from .core.project import Project
    from .ml.runner import predict

    run_id = int(items[1])
    use_thread_budget()
    with Project.open(items[0]) as project:
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
        n = predict(project, run_id, ids, device=args.device, tta=args.tta)
    tta = " (test-time augmentation)" if args.tta else ""
    print(f"stored predictions of run {run_id} for {n} images{tta}")
    return 0


def _image_files(items: list[str]) -> list[Path]:
    """Image files named, and those in folders (recursively, sorted)."""
    from .core.errors import ValidationError
    from .core.imageio import is_image_file

    files: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.is_file() and is_image_file(f))
        elif p.is_file():
            files.append(p)
        else:
            raise ValidationError(f"{p}: no such file or folder")
    return files


def predict_exported(args: argparse.Namespace) -> int:
    """``tlstudio predict --model FILE PATH ...``: one JSON line (or CSV row) per image on
    stdout; unreadable images are reported on stderr (exit status 2 if any)."""
    import csv

    import cv2
    import numpy as np

    from .core.errors import TlsError, ValidationError
    from .runtime import ExportedModel
    from .runtime.images import read_rgb

    if not args.items:
        raise ValidationError("give image files or folders to predict")
    if args.batch < 1:
        raise ValidationError(f"--batch must be at least 1, got {args.batch}")
    files = _image_files(args.items)
    if not files:
        raise ValidationError("no image files found in " + ", ".join(args.items))
    trusted = _trusted_torchscript if args.trust_torchscript else None
    model = ExportedModel.load(args.model, torchscript=trusted)
    if args.masks and model.task not in ("segment", "instances"):
        raise ValidationError(
            f"--masks applies to segmentation and instance models, not {model.task}"
        )
    mask_dir = Path(args.masks) if args.masks else None
    if mask_dir is not None:
        mask_dir.mkdir(parents=True, exist_ok=True)
    writer = csv.writer(sys.stdout, lineterminator="\n") if args.csv else None
    if writer is not None:
        writer.writerow(_csv_header(model))
    failed = 0
    for start in range(0, len(files), args.batch):
        paths, images = [], []
        for path in files[start : start + args.batch]:
            try:
                images.append(read_rgb(path))
                paths.append(path)
            except TlsError as exc:
                failed += 1
                print(f"error: {exc}", file=sys.stderr)
        for path, pred in zip(paths, model.predict(images, batch_size=args.batch), strict=True):
            if model.task == "segment":
                mask = pred.pop("mask")
                counts = np.bincount(mask.ravel(), minlength=len(model.class_names) + 1)
                pred["pixels"] = {
                    n: int(c) for n, c in zip(model.class_names, counts[1:], strict=True)
                }
                if mask_dir is not None:
                    out = mask_dir / f"{path.stem}.png"
                    cv2.imwrite(str(out), mask.astype(np.uint8 if mask.max() < 256 else np.uint16))
            elif model.task == "instances":
                mask = pred.pop("mask")
                counts = np.bincount(mask.ravel(), minlength=len(pred["objects"]) + 1)
                for obj in pred["objects"]:
                    obj["pixels"] = int(counts[obj["number"]])
                if mask_dir is not None:  # object map: pixel = the object's number
                    out = mask_dir / f"{path.stem}.png"
                    cv2.imwrite(str(out), mask.astype(np.uint8 if mask.max() < 256 else np.uint16))
            if writer is not None:
                for row in _csv_rows(model, str(path), pred):
                    writer.writerow(row)
            else:
                print(json.dumps({"file": str(path), **pred}))
        sys.stdout.flush()
    if failed:
        print(f"{failed} of {len(files)} images could not be read", file=sys.stderr)
        return 2
    return 0


def _trusted_torchscript(path: Path, threads: int | None):
    """Load a TorchScript file the user said they trust (--trust-torchscript); torch is
    imported only here, so ONNX predictions never load it."""
    from .ml.export import torchscript_runner

    use_thread_budget()
    print(
        f"warning: running {path} as TorchScript, a program with your rights, because of "
        "--trust-torchscript",
        file=sys.stderr,
    )
    return torchscript_runner(path, threads)


def _csv_header(model) -> list[str]:
    names = model.class_names
    if model.task == "classify":
        return ["file", "class", "score", *[f"p_{n}" for n in names]]
    if model.task == "detect":
        return ["file", "class", "score", "x1", "y1", "x2", "y2"]
    if model.task == "instances":
        return ["file", "number", "class", "score", "x1", "y1", "x2", "y2", "pixels"]
    if model.task == "landmarks":
        pts = (model.info.get("template") or {}).get("points", [])
        return ["file", "score", *[f"{p}_{a}" for p in pts for a in ("x", "y", "confidence")]]
    if model.task == "segment":
        return ["file", "classes", *[f"pixels_{n}" for n in names]]
    return ["file", "error", *[f"latent_{i}" for i in range(_latent_dim(model))]]


def _latent_dim(model) -> int:
    opts = (model.info.get("run", {}).get("config") or {}).get("model_options") or {}
    return int(opts.get("latent_dim", 32))


def _csv_rows(model, file: str, pred: dict) -> list[list]:
    def f(v: float) -> str:
        return f"{v:.6g}"

    if model.task == "classify":
        return [
            [
                file,
                pred["class"],
                f(pred["score"]),
                *[f(pred["probs"][n]) for n in model.class_names],
            ]
        ]
    if model.task == "detect":
        if not pred["boxes"]:
            return [[file, "", "", "", "", "", ""]]
        return [
            [file, b["class"], f(b["score"]), *[f(v) for v in b["xyxy"]]] for b in pred["boxes"]
        ]
    if model.task == "instances":
        if not pred["objects"]:
            return [[file, "", "", "", "", "", "", "", ""]]
        return [
            [file, o["number"], o["class"], f(o["score"]), *[f(v) for v in o["xyxy"]], o["pixels"]]
            for o in pred["objects"]
        ]
    if model.task == "landmarks":
        return [[file, f(pred["score"]), *[f(v) for p in pred["points"] for v in p]]]
    if model.task == "segment":
        return [[file, ";".join(pred["classes"]), *[pred["pixels"][n] for n in model.class_names]]]
    return [[file, f(pred["error"]), *[f(v) for v in pred["latent"]]]]


def cmd_export_model(args: argparse.Namespace) -> int:
    from .core.project import Project
    from .ml.export import export_model

    out = Path(args.out)
    fmt = args.format
    if fmt is None:
        fmt = "torchscript" if out.suffix.lower() in (".pt", ".ts", ".pth") else "onnx"
    use_thread_budget()
    with Project.open(args.dir) as project:
        res = export_model(
            project, args.run_id, out, fmt, opset=args.opset, check=not args.no_check
        )
    size_mb = res.path.stat().st_size / 1e6
    print(
        f"Exported run {args.run_id} as {fmt} to {res.path} ({size_mb:.1f} MB, {res.export_s:.1f} s)"
    )
    print(f"Sidecar: {res.sidecar_path}")
    if res.max_abs_diff is not None:
        print(
            f"Check: max |exported - PyTorch| = {res.max_abs_diff:.2g} "
            f"on {res.checked_images} project images"
        )
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .core.project import Project
    from .ml.report import write_report

    use_thread_budget()
    with Project.open(args.dir) as project:
        res = write_report(
            project, args.run_id, args.out, split=args.split, samples=args.samples,
            heatmaps=not args.no_heatmaps,
        )  # fmt: skip
    print(f"Wrote the report of run {args.run_id} to {res}")
    return 0


def train_demo(project) -> int:
    """``tlstudio demo DIR --train``: a quick classifier on the demo shapes."""
    from .ml.runner import RunSpec
    from .ml.train_config import TrainConfig

    spec = RunSpec(task="classify", backbone="efficientnet_lite0", weights="auto",
                   train=TrainConfig(epochs=30, lr=3e-3, batch_size=16))  # fmt: skip
    print("Training a classifier (EfficientNet-Lite0 features, bundled ImageNet weights)…")
    use_thread_budget()
    return train_and_report(project, spec)


# --------------------------------------------------------------------------- experiment

EXPERIMENT_KINDS = ("cv", "scratch", "curve", "sklearn", "domain", "multitask")
_HIDDEN_METRICS = ("lr", "duration_s")


def add_experiment_command(sub: Any) -> None:
    """``tlstudio experiment DIR --kind cv|scratch|curve|sklearn|domain [train options]``."""
    p = sub.add_parser(
        "experiment",
        help="cross-validation, pretrained vs scratch, learning curve, a scikit-learn head or "
        "domain adaptation",
        description="Run an experiment made of ordinary training runs (each is recorded in the "
        "project) and print a table of validation metrics. cv: k-fold cross-validation over "
        "the images outside the test split (folds are stored, splits untouched). scratch: the "
        "same spec with the given weights and from random weights (fully trained). curve: "
        "growing stratified subsets of the train split, validated on the whole val split. "
        "sklearn: a scikit-learn head on cached frozen features (classification). "
        "domain: source-only training against each adaptation method (--adapt for one), "
        "measured on the labelled images of --target-domain over --k folds (those labels are "
        "never used for training). multitask: each task of --task A,B trained alone and the "
        "joint run, same settings; each task's main metric single vs joint.",
    )
    p.add_argument("dir", metavar="DIR", help="project folder")
    p.add_argument("--kind", choices=EXPERIMENT_KINDS, required=True)
    p.add_argument("--k", type=int, default=5, help="cv: number of folds (default 5)")
    p.add_argument("--include-test", action="store_true", help="cv: let test images take part too")
    p.add_argument(
        "--selection",
        choices=("inner", "last"),
        default="inner",
        help="cv: pick each fold's epoch on an inner split of its training images (default), "
        "or keep the last epoch; never on the fold it is scored on",
    )
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
    p.add_argument(
        "--devices",
        metavar="LIST",
        help="train the experiment's runs in parallel, one worker process per device "
        "(e.g. cuda:0,cuda:1; a device may repeat); not for sklearn",
    )
    p.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="train the runs in N parallel CPU worker processes (the cores shared among them)",
    )
    add_run_options(
        p, task_default="classify", seed_help="training seed, also of folds and subsets"
    )
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


def _run_pool(args: argparse.Namespace):
    """The worker pool of ``--devices``/``--workers`` (None: one run after the other)."""
    from .ml.parallel_runs import RunPool, parse_devices

    devices = parse_devices(args.devices, args.workers)
    if devices is None:
        return None
    if args.kind == "sklearn":
        from .core.errors import ValidationError

        raise ValidationError("the sklearn experiment is one run: --devices/--workers do not apply")
    print(f"{len(devices)} workers: {', '.join(devices)}", file=sys.stderr)

    def done(job, result) -> None:
        status = result.ended.status if result.ended is not None else "failed"
        device = job.spec.train.device
        print(f"{job.label}: run {result.run_id} {status} ({device})", file=sys.stderr)

    return RunPool(devices, on_done=done)


def cmd_experiment(args: argparse.Namespace) -> int:
    from .core.project import Project
    from .core.runs import RunStore
    from .ml import experiments as X
    from .ml.callbacks import ConsoleProgress

    if args.kind == "domain" and not args.target_domain:
        from .core.errors import ValidationError

        raise ValidationError("--kind domain needs --target-domain NAME (the domain to adapt to)")
    spec = spec_from_args(args)
    use_thread_budget()
    cbs = [ConsoleProgress(sys.stderr)]
    pool = _run_pool(args)
    with Project.open(args.dir) as project:
        if args.kind == "cv":
            res = X.cross_validate(
                project, spec, k=args.k, seed=args.seed, callbacks=cbs,
                include_test=args.include_test, selection=args.selection, pool=pool,
                on_fold=lambda f, k: print(f"fold {f + 1}/{k}", file=sys.stderr),
            )  # fmt: skip
            print(
                f"{res.k}-fold cross-validation ({args.task}, {args.backbone}, weights {args.weights})"
            )
            print(
                f"scores on each held-out fold; model selection: {X.selection_text(res.selection)}"
            )
            header = ["metric", *[f"fold {i + 1}" for i in range(len(res.per_fold))], "mean ± std"]
            rows = [
                ["images (train/held out)", *[f"{a}/{b}" for a, b in res.fold_sizes], ""],
            ]
            if res.inner_sizes:
                rows.append(
                    ["inner split (train/pick)", *[f"{a}/{b}" for a, b in res.inner_sizes], ""]
                )
            rows.append(["run", *[str(r) for r in res.run_ids], ""])
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
            out = X.compare_pretrained_vs_scratch(project, spec, callbacks=cbs, pool=pool)
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
        if args.kind == "domain":
            return _domain_experiment(project, spec, args, cbs)
        if args.kind == "multitask":
            return _multitask_experiment(project, spec, args, cbs, pool)
        if args.kind == "curve":
            fractions = [float(f) for f in args.fractions.split(",") if f.strip()]
            points = X.learning_curve(
                project, spec, fractions, seed=args.seed, callbacks=cbs, pool=pool
            )
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
        rec = RunStore(project).get(run_id)
        test = rec.config.get("test")
        if test:
            rows = [[k, _fmt(v)] for k, v in test["metrics"].items()]
            print(f"test ({test['label']}; {test['images']} images)")
            _print_table(["metric", "value"], rows)
        print(
            f"saved as an ordinary run: tlstudio evaluate / predict / export-model --run {run_id}"
        )
        return 0


def _multitask_experiment(project, spec, args: argparse.Namespace, cbs: list, pool) -> int:
    """``experiment --kind multitask``: one row per task, its main validation metric
    trained alone and in the joint run."""
    from .ml.multitask_experiment import compare_single_vs_joint

    res = compare_single_vs_joint(project, spec, callbacks=cbs, pool=pool)
    print(
        f"single-task vs multi-task ({args.task}, {args.backbone}, weights {args.weights}, "
        f"{spec.train.epochs} epochs each); validation metric of the epoch each run kept"
    )
    rows = []
    for t in res.tasks:
        better = "joint" if t.joint_better else "single" if t.single != t.joint else "-"
        direction = "higher" if t.higher_is_better else "lower"
        rows.append([t.task, f"{t.metric} ({direction} is better)", _fmt(t.single),
                     _fmt(t.joint), better, f"{_fmt(t.single_run)}/{_fmt(t.joint_run)}"])  # fmt: skip
    _print_table(["task", "metric", "single", "joint", "better", "runs"], rows)
    return 1 if res.cancelled else 0


def _domain_experiment(project, spec, args: argparse.Namespace, cbs: list) -> int:
    """``experiment --kind domain``: one row per arm (source only, each method), the main
    metric on the target domain per fold, its mean ± std, and the source validation."""
    from .ml.adapt import METHOD_NAMES
    from .ml.domain_experiment import SOURCE_ONLY, domain_experiment

    res = domain_experiment(
        project, spec, args.target_domain, methods=[args.adapt] if args.adapt else None,
        k=args.k, seed=args.seed, include_test=args.include_test, callbacks=cbs,
        on_run=lambda f, arm: print(f"fold {f + 1}/{args.k}: {arm}", file=sys.stderr),
    )  # fmt: skip
    m = res.metric or "accuracy"
    print(
        f"domain adaptation to {res.target_domain!r} ({args.task}, {args.backbone}, "
        f"{res.k} folds): {m} on the target domain's labelled images"
    )
    if res.sizes:
        a, b, c, d = (sum(s[i] for s in res.sizes) // len(res.sizes) for i in range(4))
        print(
            f"per fold (mean): {a} source images trained, {b} validated; {c} target images "
            f"adapted to (labels unused), {d} evaluated"
        )
    folds = len(res.sizes)
    header = ["arm", *[f"fold {i + 1}" for i in range(folds)], "mean ± std", f"source val {m}"]
    rows = []
    for arm in res.arms:
        target = res.target.get(arm, [])[:folds]
        if not target:
            continue
        mean, std = res.summary.get(arm, {}).get(m, (float("nan"), float("nan")))
        src = [v for f in res.source[arm][:folds] if (v := f.get(m)) is not None]
        name = arm if arm == SOURCE_ONLY else METHOD_NAMES.get(arm, arm)
        rows.append([
            name, *[_fmt(f.get(m)) for f in target], f"{_fmt(mean)} ± {_fmt(std)}",
            _fmt(sum(src) / len(src)) if src else "-",
        ])  # fmt: skip
    _print_table(header, rows)
    runs = ", ".join(f"{arm}: {' '.join(map(str, ids))}" for arm, ids in res.run_ids.items() if ids)
    print(f"runs: {runs}")
    return 1 if res.cancelled else 0
