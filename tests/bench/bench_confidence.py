"""Confidence figures on real data (run on demand; prints figures, asserts nothing):
temperature scaling, ensembles, test-time augmentation and instant few-shot heads.

    python tests/bench/bench_confidence.py [--per-class 50] [--val-per-class 30]
        [--test-per-class 100] [--input-size 112] [--epochs 30] [--draws 3] [--threads 2]

Data: Fashion-MNIST from Debian's ``dataset-fashion-mnist`` (the project is built as in
``bench_transfer.py``: seeded draws of train / val images from the official training
file and test images from the official test file, 28 px grey PNGs upsampled to
``--input-size``). Every model is EfficientNet-Lite0 with its bundled ImageNet weights,
frozen (features computed once and cached). Every figure below is on the test split,
which no model trains on, picks an epoch on or fits a temperature on.

1. Calibration: expected calibration error (15 bins) and negative log-likelihood on
   test before and after the temperature fitted on val, for the linear head trained by
   ``runner.train`` (``--epochs`` epochs, AdamW 3e-3) and the prototype and logistic
   few-shot heads (``fit_sklearn_run``).
2. Ensembles: (a) the 5 fold models of a 5-fold cross-validation of that linear head
   (epoch picked on an inner split) and (b) 5 seeds of an MLP head (256 hidden,
   dropout 0.2) on the full train split, each combined as one ensemble run; test
   accuracy of every member, the best member and the ensemble.
3. Test-time augmentation (mirror image + 0.875 × / 1.125 × sizes) on the linear head.
4. Instant few-shot: prototype and logistic heads fitted on 1, 5 and 10 training images
   per class (``--draws`` seeded draws each), test accuracy mean ± std and fit time.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_transfer import BACKBONE, DATA, FILES, build_project  # noqa: E402

from tlstudio.core.project import Project  # noqa: E402
from tlstudio.core.runs import RunStore  # noqa: E402
from tlstudio.ml import experiments as X  # noqa: E402
from tlstudio.ml import runner  # noqa: E402
from tlstudio.ml.ensemble import create_ensemble  # noqa: E402
from tlstudio.ml.evaluation import evaluate_run  # noqa: E402
from tlstudio.ml.runner import RunSpec  # noqa: E402
from tlstudio.ml.selection import describe  # noqa: E402
from tlstudio.ml.trainer import TrainConfig  # noqa: E402


def _test(project: Project, run_id: int, tta: bool = False):
    return evaluate_run(project, run_id, "test", device="cpu", tta=tta)


def calibration_rows(project: Project, runs: dict[str, int]) -> None:
    print("\n1. Calibration on the test split (temperature fitted on val)")
    print(f"{'model':<34}{'T':>7}{'ECE before':>12}{'ECE after':>11}{'NLL before':>12}"
          f"{'NLL after':>11}{'accuracy':>10}")  # fmt: skip
    for name, run_id in runs.items():
        ev = _test(project, run_id)
        cal = ev.calibration
        before = cal["before"] or cal["after"]
        print(f"{name:<34}{cal['temperature']:>7.2f}{before.ece:>12.4f}{cal['after'].ece:>11.4f}"
              f"{before.nll:>12.4f}{cal['after'].nll:>11.4f}{ev.summary['accuracy']:>10.3f}")  # fmt: skip


def ensemble_rows(project: Project, title: str, members: list[int]) -> None:
    t0 = time.perf_counter()
    run_id = create_ensemble(project, members)
    rows = [(f"run {m}", _test(project, m)) for m in members]
    ens = _test(project, run_id)
    accs = [ev.summary["accuracy"] for _n, ev in rows]
    best = int(np.argmax(accs))
    print(f"\n2. {title}: ensemble run {run_id} of runs {members}")
    print(f"{'model':<22}{'accuracy':>10}{'ECE':>8}{'NLL':>8}")
    for name, ev in rows:
        rel = ev.calibration["after"]
        print(f"{name:<22}{ev.summary['accuracy']:>10.3f}{rel.ece:>8.4f}{rel.nll:>8.4f}")
    rel = ens.calibration["after"]
    print(f"{'ensemble':<22}{ens.summary['accuracy']:>10.3f}{rel.ece:>8.4f}{rel.nll:>8.4f}")
    print(f"ensemble {ens.summary['accuracy']:.3f} vs best member (run {members[best]}) "
          f"{accs[best]:.3f}, member mean {np.mean(accs):.3f} "
          f"({time.perf_counter() - t0:.0f} s to score)")  # fmt: skip


def fewshot_rows(project: Project, args: argparse.Namespace) -> None:
    print(f"\n4. Instant few-shot, test accuracy over {args.draws} draws "
          "(mean ± std; fit = features from the cache + head + val/test scoring)")  # fmt: skip
    pool = [r.id for r in project.images_in_split("train")]
    labels = project.primary_labels()
    by_class: dict[int, list[int]] = {}
    for i in pool:
        by_class.setdefault(labels[i], []).append(i)
    stored = {r.id: r.split for r in project.images()}
    print(f"{'per class':>10}{'head':>12}{'accuracy':>18}{'fit s':>8}")
    try:
        for k in (1, 5, 10):
            for kind in ("prototype", "logreg"):
                accs, walls = [], []
                for draw in range(args.draws):
                    rng = np.random.default_rng(1000 * k + draw)
                    train = {int(i) for ids in by_class.values()
                             for i in rng.permutation(ids)[:k]}  # fmt: skip
                    project.set_splits({i: ("train" if i in train else None) for i in pool})
                    t0 = time.perf_counter()
                    run_id, _m = X.fit_sklearn_run(project, BACKBONE, "bundled", kind,
                                                   args.input_size, seed=draw, device="cpu")  # fmt: skip
                    walls.append(time.perf_counter() - t0)
                    accs.append(RunStore(project).get(run_id).config["test"]["metrics"]["accuracy"])
                print(f"{k:>10}{kind:>12}{np.mean(accs):>11.3f} ± {np.std(accs):.3f}"
                      f"{np.mean(walls):>8.1f}")  # fmt: skip
    finally:
        project.set_splits(stored)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-class", type=int, default=50, help="training images per class")
    ap.add_argument("--val-per-class", type=int, default=30)
    ap.add_argument("--test-per-class", type=int, default=100)
    ap.add_argument("--input-size", type=int, default=112)
    ap.add_argument("--epochs", type=int, default=30, help="epochs of the trained heads")
    ap.add_argument("--draws", type=int, default=3, help="few-shot draws per size")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip", default="", help="comma-separated: calibration,ensemble,tta,fewshot")
    args = ap.parse_args()
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    missing = [f for pair in FILES.values() for f in pair if not (DATA / f).is_file()]
    if missing:
        print(f"Fashion-MNIST is not installed ({DATA / missing[0]} is missing).")
        print("Install it with:  sudo apt-get install dataset-fashion-mnist")
        return 0
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        project, _dups = build_project(Path(tmp), args)
        counts = {s: len(project.images_in_split(s)) for s in ("train", "val", "test")}
        print(f"Fashion-MNIST: {counts['train']} train, {counts['val']} val, {counts['test']} "
              f"test images at {args.input_size} px; {BACKBONE}, bundled weights, frozen; "
              f"{torch.get_num_threads()} torch threads, CPU; built in "
              f"{time.perf_counter() - t0:.0f} s")  # fmt: skip
        cfg = TrainConfig(epochs=args.epochs, batch_size=32, lr=3e-3, seed=args.seed, device="cpu")
        linear = RunSpec("classify", BACKBONE, "bundled", cfg, input_size=args.input_size)
        t0 = time.perf_counter()
        res = runner.train(project, linear)
        print(f"linear head: run {res.run_id} in {time.perf_counter() - t0:.0f} s "
              f"(features of train + val extracted once)")  # fmt: skip
        for line in describe(res.metrics, res.after, epochs_run=res.ended.epochs_run):
            print("  " + line)
        if "calibration" not in skip:
            proto, _ = X.fit_sklearn_run(project, BACKBONE, "bundled", "prototype",
                                         args.input_size, device="cpu")  # fmt: skip
            logreg, _ = X.fit_sklearn_run(project, BACKBONE, "bundled", "logreg",
                                          args.input_size, device="cpu")  # fmt: skip
            calibration_rows(project, {f"linear head (trained, {args.epochs} epochs)": res.run_id,
                                       "prototype head (few-shot)": proto,
                                       "logistic head (few-shot)": logreg})  # fmt: skip
        if "ensemble" not in skip:
            cv = X.cross_validate(project, linear, k=5, seed=args.seed, selection="inner")
            print("\n5-fold cross-validation (test held out), held-out-fold accuracy: "
                  + ", ".join(f"{m['accuracy']:.3f}" for m in cv.per_fold))  # fmt: skip
            ensemble_rows(project, "5 fold models (80 % of train+val each)", cv.run_ids)
            seeds = []
            for seed in range(5):
                s = RunSpec("classify", BACKBONE, "bundled",
                            TrainConfig(epochs=args.epochs, batch_size=32, lr=3e-3, seed=seed,
                                        device="cpu"),
                            model_options={"head": "mlp", "hidden": 256, "dropout": 0.2},
                            input_size=args.input_size)  # fmt: skip
                seeds.append(runner.train(project, s).run_id)
            ensemble_rows(project, "5 seeds of an MLP head", seeds)
        if "tta" not in skip:
            plain, tta = _test(project, res.run_id), _test(project, res.run_id, tta=True)
            print("\n3. Test-time augmentation, linear head on test: accuracy "
                  f"{plain.summary['accuracy']:.3f} -> {tta.summary['accuracy']:.3f}, ECE "
                  f"{plain.calibration['after'].ece:.4f} -> {tta.calibration['after'].ece:.4f}")  # fmt: skip
        if "fewshot" not in skip:
            fewshot_rows(project, args)
        project.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
