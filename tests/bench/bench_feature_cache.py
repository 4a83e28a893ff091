"""Head-only training on cached features vs through the frozen backbone, whole commands
from process start (run on demand; prints figures, asserts nothing).

    python tests/bench/bench_feature_cache.py [--images 96] [--epochs 3] [--pairs 2]
                                              [--threads 0] [--before /work/main]

A demo project (synthetic shapes, 128×128 px PNGs, 70/15/15 split) in a temporary
folder; EfficientNet-Lite0 with its bundled ImageNet weights, fully frozen, at its own
input size (224 px), no augmentation, linear head, batch 16, on the CPU. Each way is the
command a user runs, ``tlstudio train DIR --task classify --epochs E``, in a fresh
process timed from its start to its exit (imports, building the model, reading the
data, training, saving: the fixed cost of a run is in it):

- cached: the fast path: the head trains on pooled features from the project's feature
  cache (filled once by a first, untimed-in-the-pairs run whose time is printed);
- backbone: ``--no-feature-cache``: every epoch reads and resizes the images and runs
  them through the frozen backbone before the head.

The two ways run interleaved (backbone, cached, backbone, cached, …) for the same number
of epochs; printed per run: wall and CPU seconds of the process and the median seconds
per epoch the run recorded; then per-pair ratios cached/backbone (min / median / max).
With ``--before DIR`` the cached re-train also runs with the package of another checkout
(e.g. main before issue 12), interleaved with this one's.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from benchkit import Way, compare, load_average, print_header, run_child  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=96, help="demo images (default 96)")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--pairs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="--threads of the runs (0: default)")
    ap.add_argument("--before", metavar="DIR", help="another checkout for the cached re-train")
    args = ap.parse_args()

    from tlstudio.core.demo import create_demo_project
    from tlstudio.core.project import Project
    from tlstudio.core.runs import RunStore

    print_header(
        f"EfficientNet-Lite0, bundled weights, frozen, input 224 px, batch 16, "
        f"{args.epochs} epochs, {args.images} demo images of 128 px, whole `tlstudio train` "
        "commands from process start, CPU"
    )

    def env_for(source: Path) -> dict[str, str]:
        return {
            **os.environ,
            "PYTHONPATH": f"{source}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        }

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "demo"
        create_demo_project(root, n_images=args.images, size=128).close()
        base = [sys.executable, "-m", "tlstudio", "train", str(root), "--task", "classify",
                "--weights", "bundled", "--epochs", str(args.epochs), "--batch", "16",
                "--device", "cpu", "--threads", str(args.threads)]  # fmt: skip

        def run(extra: list[str], source: Path = ROOT) -> dict:
            figures, out = run_child([*base, *extra], env=env_for(source))
            found = re.search(r"^run (\d+) ", out, re.MULTILINE)
            if found:
                with Project.open(root) as project:
                    epochs = RunStore(project).epochs(int(found.group(1)))
                figures["s_per_epoch"] = statistics.median(m["duration_s"] for _, m in epochs)
            return figures

        first = run([])
        print(
            f"first cached run (fills the cache: extraction of every train and val image "
            f"included): {first['wall_s']:.1f} s wall, {first['cpu_s']:.1f} s CPU"
        )
        compare(args.pairs, Way("through frozen backbone", lambda: run(["--no-feature-cache"])),
                Way("cached features (head only)", lambda: run([])),
                keys=("wall_s", "cpu_s", "s_per_epoch"))  # fmt: skip
        if args.before:
            before = Path(args.before)
            base.remove("--threads")  # an option the older checkout may not have
            base.remove(str(args.threads))
            print(f"cached re-train, whole command: before ({before}) vs after (this tree)")
            compare(args.pairs, Way("before", lambda: run([], before)),
                    Way("after", lambda: run([])), keys=("wall_s", "cpu_s", "s_per_epoch"))  # fmt: skip
    print(f"load average at the end: {load_average()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
