"""Training elsewhere: ``bundle`` (a job folder for a GPU server or a SLURM cluster),
``run-job`` (what the job's ``run.sh`` starts there under torchrun) and ``import-run``
(the finished run back into the project). See :mod:`tlstudio.core.jobs`.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .cli_ml import add_run_options, spec_from_args, train_and_report


def add_commands(sub: Any) -> None:
    """Register ``bundle``, ``run-job`` and ``import-run`` on the CLI's subparsers."""
    p = sub.add_parser(
        "bundle",
        help="write a job folder that trains a run on a GPU server or a SLURM cluster",
        description="Write a self-contained job folder: the run's settings (job.json), a small "
        "project with the labels, splits and classes of the images the run uses (the images "
        "copied in, or with --no-images referenced by relative paths for shared storage), and "
        "run.sh, which trains with torchrun (one process per GPU) or, under sbatch, with srun "
        "and torchrun across nodes. Copy the folder to the server, run 'bash run.sh' (or "
        "'sbatch run.sh'), copy it back and bring the run in with 'tlstudio import-run'.",
    )
    p.add_argument("dir", metavar="DIR", help="project folder")
    p.add_argument("--out", required=True, metavar="JOB", help="job folder to write (new or empty)")
    p.add_argument(
        "--no-images",
        action="store_true",
        help="do not copy the images: the job refers to them by paths relative to the job "
        "folder (for storage the server shares with this computer)",
    )
    add_run_options(p, task_default=None)
    p.set_defaults(run=cmd_bundle)

    p = sub.add_parser(
        "run-job",
        help="train a job folder's run (what the job's run.sh starts, under torchrun)",
        description="Train the run a job folder describes on its project, with the job's "
        "train/val images; under torchrun one process per device. Then store the model's "
        "predictions for the job's images and write result.json for 'tlstudio import-run'.",
    )
    p.add_argument("job", metavar="JOB", help="job folder written by 'tlstudio bundle'")
    p.add_argument(
        "--device", default=None, help="override the job's device (auto, cpu, cuda, cuda:N)"
    )
    p.add_argument(
        "--no-predict", action="store_true", help="do not predict the job's images afterwards"
    )
    p.set_defaults(run=cmd_run_job)

    p = sub.add_parser(
        "import-run",
        help="bring the run a job trained elsewhere into the project",
        description="Copy the finished run of a job folder (after its run.sh ran) into the "
        "project as a new run: configuration, epochs, metrics, model files and predictions. "
        "Refused when the project's labels of the job's images changed since the job was "
        "written, unless --force.",
    )
    p.add_argument("dir", metavar="DIR", help="project folder the job was made from")
    p.add_argument("job", metavar="JOB", help="job folder, with the trained run")
    p.add_argument(
        "--force",
        action="store_true",
        help="import even though the labels changed since the job was written",
    )
    p.set_defaults(run=cmd_import_run)


def cmd_bundle(args: argparse.Namespace) -> int:
    from .core.jobs import write_bundle
    from .core.project import Project
    from .ml.data import train_val_ids

    spec = spec_from_args(args)
    spec.train.validate()
    with Project.open(args.dir) as project:
        train_ids, val_ids = train_val_ids(project, seed=spec.train.seed)
        job = write_bundle(
            project, spec.to_dict(), args.out, train_ids, val_ids, copy_images=not args.no_images
        )
    for message in job.warnings:
        print(f"warning: {message}", file=sys.stderr)
    how = "copied into it" if job.images_copied else "referred to by relative paths"
    print(
        f"Wrote job {job.job_id[:8]} to {job.folder}: {spec.task}, {spec.backbone}, "
        f"{len(job.train_ids)} train / {len(job.val_ids)} val images ({how})."
    )
    print(f"On the server:  bash {job.folder}/run.sh   (SLURM: sbatch {job.folder}/run.sh)")
    print(f"Back here:      tlstudio import-run {args.dir} {job.folder}")
    return 0


def cmd_run_job(args: argparse.Namespace) -> int:
    from .core.jobs import read_job, write_result
    from .core.project import Project
    from .ml.distributed import launched_by_torchrun, run_in_job
    from .ml.runner import RunSpec, predict

    job = read_job(args.job)
    spec = RunSpec.from_dict(job.spec)
    if args.device:
        spec.train.device = args.device
    ids = (job.train_ids, job.val_ids)

    def body(project: Project, ctx: Any) -> int:
        def finished(result: Any) -> None:
            status = result.ended.status if result.ended is not None else "failed"
            if not args.no_predict and result.failure is None and status != "cancelled":
                device = spec.train.device if ctx is None else ctx.device
                n = predict(project, result.run_id, job.image_ids, device=device)
                print(f"stored predictions for {n} images", file=sys.stderr)
            write_result(job, result.run_id, status)

        return train_and_report(project, spec, job=ctx, image_ids=ids, on_result=finished)

    if launched_by_torchrun():
        return run_in_job(job.project_dir, spec.train.device, body)
    with Project.open(job.project_dir) as project:
        return body(project, None)


def cmd_import_run(args: argparse.Namespace) -> int:
    from .core.jobs import import_run
    from .core.project import Project
    from .core.runs import RunStore

    with Project.open(args.dir) as project:
        run_id = import_run(project, args.job, force=args.force)
        rec = RunStore(project).get(run_id)
    value = "" if rec.best_metric is None else f", best {rec.metric_name} {rec.best_metric:.3f}"
    print(f"Imported the job's run as run {run_id} ({rec.status} on {rec.device}{value}).")
    return 0
