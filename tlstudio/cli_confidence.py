"""Commands about how far a model can be trusted and how to train it: ``calibrate``
(temperature scaling), ``ensemble`` (several runs as one predictor) and ``lr-find``
(learning-rate sweep). torch is imported inside the commands."""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any

from .cli_ml import add_run_options, spec_from_args


def add_commands(sub: Any) -> None:
    """Register ``calibrate``, ``ensemble`` and ``lr-find`` on the CLI's subparsers."""
    p = sub.add_parser(
        "calibrate",
        help="fit a classifier run's temperature on a split (again)",
        description="Temperature scaling: divide the run's logits by one number fitted on the "
        "split's labelled images, so its probabilities match how often it is right (the "
        "predicted classes do not change). Training does this on the val split already; run "
        "it for older runs or after labelling more validation images. Prints the expected "
        "calibration error before and after.",
    )
    p.add_argument("dir", metavar="DIR", help="project folder")
    p.add_argument("run_id", metavar="RUN", type=int)
    p.add_argument("--split", choices=("val", "train"), default="val")
    p.add_argument("--device", default="auto")
    p.set_defaults(run=cmd_calibrate)

    p = sub.add_parser(
        "ensemble",
        help="combine several runs into one predictor (recorded as a run)",
        description="Record runs of one task as an ensemble run: predict, evaluate, report and "
        "export-model take it like any run. Classifiers and segmenters average their "
        "probabilities, landmark models their heatmaps, detectors merge their boxes (weighted "
        "box fusion, or non-maximum suppression). Prints each member's and the ensemble's "
        "metrics on --split. With --seeds N it first trains N runs of the training options "
        "(--task and the options of 'train'), seeds --seed, --seed+1, …, and combines them.",
    )
    p.add_argument("dir", metavar="DIR", help="project folder")
    p.add_argument("runs", metavar="RUN", type=int, nargs="*", help="member run ids")
    p.add_argument(
        "--cv", metavar="RUN", type=int, help="all folds of the k-fold experiment of run RUN"
    )
    p.add_argument(
        "--seeds", metavar="N", type=int, default=None,
        help="train N members (N >= 2) with the training options below, one per seed",
    )  # fmt: skip
    p.add_argument("--combine", choices=("mean", "wbf", "nms"), default=None,
                   help="detect: wbf (default) or nms; other tasks: mean")  # fmt: skip
    p.add_argument("--split", choices=("test", "val", "train"), default=None,
                   help="split the members and the ensemble are scored on (default: test, "
                   "with --seeds val)")  # fmt: skip
    add_run_options(
        p, task_default=None, task_required=False,
        seed_help="with --seeds: the first member's seed (default 0)",
    )  # fmt: skip
    p.set_defaults(run=cmd_ensemble)

    p = sub.add_parser(
        "lr-find",
        help="sweep the learning rate over a few hundred batches and suggest one",
        description="Train a throw-away copy of the model the options describe while the "
        "learning rate grows exponentially, and print the loss against the rate and a "
        "suggested rate (steepest fall of the smoothed loss). Nothing in the project changes.",
    )
    p.add_argument("dir", metavar="DIR", help="project folder")
    add_run_options(p, task_default=None)
    p.add_argument("--iterations", type=int, default=100, help="batches (default 100)")
    p.add_argument("--start", type=float, default=1e-7, help="first rate (default 1e-7)")
    p.add_argument("--end", type=float, default=10.0, help="last rate (default 10)")
    p.add_argument("--plot", metavar="FILE", help="also draw the curve into this PNG file")
    p.set_defaults(run=cmd_lr_find)


def cmd_calibrate(args: argparse.Namespace) -> int:
    from .core.project import Project
    from .ml.calibration import calibrate_run

    with Project.open(args.dir) as project:
        rec = calibrate_run(project, args.run_id, args.split, device=args.device)
    if "ece_before" not in rec:
        print(f"run {args.run_id}: {rec['note']}")
        return 2
    print(
        f"run {args.run_id}: temperature {rec['temperature']:.4g} fitted on {rec['images']} "
        f"{rec['split']} images"
    )
    print(f"  expected calibration error  {rec['ece_before']:.4f} -> {rec['ece_after']:.4f}")
    print(f"  negative log-likelihood     {rec['nll_before']:.4f} -> {rec['nll_after']:.4f}")
    return 0


def _score_line(summary: dict[str, float], keys: list[str]) -> list[str]:
    return [
        "-" if summary.get(k) is None or math.isnan(summary[k]) else f"{summary[k]:.4f}"
        for k in keys
    ]


def cmd_ensemble(args: argparse.Namespace) -> int:
    from .core.errors import ValidationError
    from .core.project import Project
    from .ml.ensemble import create_ensemble
    from .ml.evaluation import cv_group, evaluate_run

    split = args.split or ("val" if args.seeds is not None else "test")
    with Project.open(args.dir) as project:
        members = list(args.runs)
        if args.seeds is not None:
            members = _train_seeds(project, args)
            if not members:
                return 2
        if args.cv is not None:
            members += cv_group(project, args.cv)
            if not members:
                raise ValidationError(f"run {args.cv} is not a fold of a k-fold experiment")
        run_id = create_ensemble(project, members, combine=args.combine)
        print(f"ensemble run {run_id} of runs {', '.join(str(m) for m in dict.fromkeys(members))}")
        try:
            rows = [(f"run {m}", evaluate_run(project, m, split, device=args.device))
                    for m in dict.fromkeys(members)]  # fmt: skip
            rows.append((f"ensemble {run_id}", evaluate_run(project, run_id, split,
                                                            device=args.device)))  # fmt: skip
        except Exception as exc:  # scoring is extra: the ensemble is recorded
            print(f"not scored on the {split} split: {exc}", file=sys.stderr)
            return 0
    keys = [k for k in rows[-1][1].summary if k != "images"]
    print(f"on the {split} split ({int(rows[-1][1].summary.get('images', 0))} images):")
    header = ["model", *keys]
    table = [[name, *_score_line(ev.summary, keys)] for name, ev in rows]
    widths = [max(len(r[i]) for r in [header, *table]) for i in range(len(header))]
    for r in [header, *table]:
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                        for i, (c, w) in enumerate(zip(r, widths, strict=True))))  # fmt: skip
    return 0


def _train_seeds(project: Any, args: argparse.Namespace) -> list[int]:
    """Train ``args.seeds`` runs of the training options, seeds ``args.seed`` + 0..N-1;
    their run ids, or [] when one failed (its error printed)."""
    import copy

    from .cli_ml import train_and_report, use_thread_budget
    from .core.errors import ValidationError

    if args.runs or args.cv is not None:
        raise ValidationError("--seeds trains the members itself: give no RUN ids and no --cv")
    if args.seeds < 2:
        raise ValidationError(f"--seeds {args.seeds}: an ensemble needs at least two members")
    if args.task is None:
        raise ValidationError("--seeds needs --task (what the members learn)")
    spec = spec_from_args(args)
    use_thread_budget()
    ids: list[int] = []
    for i in range(args.seeds):
        member = copy.deepcopy(spec)
        member.train.seed = args.seed + i
        print(f"member {i + 1}/{args.seeds}: seed {member.train.seed}", file=sys.stderr)
        status = train_and_report(project, member, on_result=lambda r: ids.append(r.run_id))
        if status != 0:
            print(f"error: member {i + 1} (seed {member.train.seed}) failed; no ensemble "
                  "recorded", file=sys.stderr)  # fmt: skip
            return []
    return ids


def cmd_lr_find(args: argparse.Namespace) -> int:
    from .core.project import Project
    from .ml.lr_find import lr_find

    spec = spec_from_args(args)
    with Project.open(args.dir) as project:
        res = lr_find(
            project, spec, start_lr=args.start, end_lr=args.end, iterations=args.iterations,
            progress=lambda d, t: print(f"batch {d}/{t}", file=sys.stderr) if d % 20 == 0
            else None,
        )  # fmt: skip
    for note in res.notes:
        print(note, file=sys.stderr)
    print(f"learning-rate sweep: {len(res.lrs)} batches over {res.images} training images "
          f"({res.stopped})")  # fmt: skip
    print(f"{'rate':>10}  {'loss':>8}  {'smoothed':>8}")
    step = max(1, len(res.lrs) // 20)
    for i in range(0, len(res.lrs), step):
        print(f"{res.lrs[i]:>10.2e}  {res.losses[i]:>8.4f}  {res.smoothed[i]:>8.4f}")
    if res.suggested is not None:
        print(f"suggested learning rate: {res.suggested:.2e} ({res.reason})")
    else:
        print(f"no suggestion: {res.reason}")
    if args.plot:
        _plot(res, args.plot)
        print(f"plot written to {args.plot}")
    return 0 if res.suggested is not None else 2


def _plot(res: Any, path: str) -> None:
    """Loss against rate (log axis) with the suggestion marked, as a PNG (Agg canvas)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(res.lrs, res.losses, color="#bbbbbb", linewidth=1, label="batch loss")
    ax.plot(res.lrs, res.smoothed, color="#1f77b4", linewidth=2, label="smoothed")
    if res.suggested is not None:
        ax.axvline(res.suggested, color="#d62728", linestyle="--",
                   label=f"suggested {res.suggested:.1e}")  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("loss")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
