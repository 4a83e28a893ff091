"""Training and prediction throughput at 1, 2 and the default number of CPU threads,
side by side (run on demand; prints figures, asserts nothing).

    python tests/bench/bench_threads.py [--images 48] [--input 128] [--epochs 1]
                                        [--rounds 2] [--counts 1,2,0] [--no-spin]

Every measurement is a fresh process (OpenMP reads its settings when it starts) that
applies the thread budget as ``tlstudio train/predict --threads N`` do (0 = the default:
every core), builds the same demo project (``--images`` 96 px PNGs), trains
EfficientNet-Lite0 (bundled weights, top two stages trained, ``--input`` px, batch 16,
no feature cache) and predicts every image with the run. Throughput: train images ×
epochs / the fit's own duration; predicted images / the seconds of ``runner.predict``.

The thread counts run interleaved (1, 2, default, 1, 2, default, …). One more column
("2 spinning") is 2 threads with OpenMP's default wait policy instead of the passive one
tlstudio sets: idle OpenMP threads then spin, which on a busy machine makes a second
thread slower than one (``--no-spin`` leaves it out).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from benchkit import load_average, print_header, run_child  # noqa: E402


def child(args: argparse.Namespace) -> None:
    """One measurement in this fresh process; prints one JSON line."""
    from tlstudio.runtime import threads

    threads.prepare_environment()  # as the tlstudio command does (keeps a user's choice)
    budget = threads.configure(args.threads or None, gui=False)
    from tlstudio.core.demo import create_demo_project
    from tlstudio.ml import runner
    from tlstudio.ml.threads import apply
    from tlstudio.ml.train_config import TrainConfig

    used = apply()
    with tempfile.TemporaryDirectory() as tmp:
        project = create_demo_project(Path(tmp) / "demo", n_images=args.images, size=96)
        spec = runner.RunSpec("classify", "efficientnet_lite0", "bundled", input_size=args.input,
                              train=TrainConfig(epochs=args.epochs, batch_size=16, freeze=3,
                                                device="cpu"))  # fmt: skip
        result = runner.train(project, spec)
        n_train = len(project.images_in_split("train"))
        t0 = time.perf_counter()
        n = runner.predict(project, result.run_id, batch_size=16, device="cpu")
        predict_s = time.perf_counter() - t0
        project.close()
    print(json.dumps({
        "threads": used, "loader_workers": budget.loader_workers,
        "train_ips": n_train * result.ended.epochs_run / result.ended.duration_s,
        "predict_ips": n / predict_s,
    }))  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=48)
    ap.add_argument("--input", type=int, default=128, help="network input size (px)")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--counts", default="1,2,0", help="thread counts (0: the default)")
    ap.add_argument("--no-spin", action="store_true", help="leave out '2 spinning'")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return 0

    print_header(
        f"train + predict throughput: {args.images} demo images, EfficientNet-Lite0 at "
        f"{args.input} px, top 2 stages trained, {args.epochs} epoch(s), CPU"
    )
    columns = [(f"{n} thread{'s' if n != 1 else ''}" if n else "default", n, "PASSIVE")
               for n in (int(c) for c in args.counts.split(","))]  # fmt: skip
    if not args.no_spin:
        columns.append(("2 spinning", 2, None))
    results: dict[str, list[dict]] = {name: [] for name, _, _ in columns}
    for r in range(args.rounds):
        for name, n, policy in columns:
            env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
            env["PYTHONPATH"] = f"{ROOT}{os.pathsep}{env.get('PYTHONPATH', '')}"
            if policy:
                env["OMP_WAIT_POLICY"] = policy
            cmd = [sys.executable, __file__, "--child", "--threads", str(n),
                   "--images", str(args.images), "--input", str(args.input),
                   "--epochs", str(args.epochs)]  # fmt: skip
            figures, out = run_child(cmd, env=env)
            if "failed" in figures:
                print(f"  round {r + 1} {name}: failed", flush=True)
                continue
            rec = {**json.loads(out.strip().splitlines()[-1]), **figures}
            rec["load1"] = os.getloadavg()[0]
            results[name].append(rec)
            print(
                f"  round {r + 1} {name:<11} torch threads {rec['threads']}, loader workers "
                f"{rec['loader_workers']}: train {rec['train_ips']:.1f} img/s, predict "
                f"{rec['predict_ips']:.1f} img/s, process {rec['wall_s']:.1f} s wall "
                f"{rec['cpu_s']:.1f} s CPU, load {rec['load1']:.2f}",
                flush=True,
            )

    def cell(name: str, key: str) -> str:
        v = [x[key] for x in results[name]]
        if not v:
            return "failed"
        return f"{statistics.median(v):.1f} ({min(v):.1f}-{max(v):.1f})"

    print("\nmedian (min-max) over the rounds")
    width = 22
    print(f"{'':<22}" + "".join(f"{name:>{width}}" for name, _, _ in columns))
    for label, key in (("train img/s", "train_ips"), ("predict img/s", "predict_ips"),
                       ("process CPU s", "cpu_s"), ("process wall s", "wall_s")):  # fmt: skip
        print(f"{label:<22}" + "".join(f"{cell(name, key):>{width}}" for name, _, _ in columns))
    base = columns[0][0]
    for key, label in (("train_ips", "train"), ("predict_ips", "predict")):
        for name, _, _ in columns[1:]:
            rs = [b[key] / a[key] for a, b in zip(results[base], results[name], strict=False)]
            if rs:
                print(f"{label} {name} / {base} per round: "
                      f"{min(rs):.2f} / {statistics.median(rs):.2f} / {max(rs):.2f}")  # fmt: skip
    print(f"load average at the end: {load_average()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
