"""One run in 1 process vs 2 processes (torchrun, DistributedDataParallel) on the demo
project (run on demand; prints figures, asserts nothing).

    python tests/bench/bench_ddp.py [--images 48] [--size 128] [--device cpu] [--nproc 2]

Each configuration trains twice on a fresh copy of ``tlstudio demo`` (so no cached
feature helps the second): once as ``tlstudio train`` (1 process, batch B) and once as
``torchrun --standalone --nproc_per_node N -m tlstudio train`` (N processes, batch B/N
each: the same global batch). Printed per configuration: wall time of the whole command
(start-up, feature extraction, training, validation, saving) and the final epoch's
validation accuracy and loss, read from the project.

Configurations: ``features`` is what ``tlstudio demo --train`` does (EfficientNet-Lite0's
bundled weights frozen, the head trained on cached features, 30 epochs, batch 16);
``fine-tune`` trains the top stage of the same backbone on the images (4 of 5 stages
frozen, 5 epochs, batch 16). On a 2-core CPU no speed-up is expected (the processes share
the cores; gloo adds communication): the point is that both give the same kind of model.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
TIMEOUT_S = 3600  # per command: a hung job ends the bench instead of waiting forever

CONFIGS = {
    "features": ["--epochs", "30", "--lr", "3e-3"],
    "fine-tune": ["--epochs", "5", "--lr", "1e-3", "--freeze", "4"],
}


def _run(cmd: list[str], cwd: Path) -> float:
    from job_processes import run_job_processes

    env = dict(os.environ, PYTHONPATH=str(REPO))
    t0 = time.perf_counter()
    proc = run_job_processes(cmd, cwd=cwd, env=env, timeout=TIMEOUT_S)
    took = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{proc.stdout[-3000:]}")
    return took


def _last_epoch(root: Path) -> dict[str, float]:
    from tlstudio.core.project import Project
    from tlstudio.core.runs import RunStore

    with Project.open(root, read_only=True) as project:
        store = RunStore(project)
        (run,) = store.list()
        return store.epochs(run.id)[-1][1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=48)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--batch", type=int, default=16, help="global batch")
    args = ap.parse_args()
    from tlstudio.core.demo import create_demo_project

    py = sys.executable
    print(f"demo: {args.images} images of {args.size} px; device {args.device}; "
          f"global batch {args.batch}; {os.cpu_count()} CPU cores")  # fmt: skip
    print(f"{'configuration':<12} {'processes':>9} {'batch/proc':>10} {'wall s':>8} "
          f"{'val acc':>8} {'val loss':>9}")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        for name, extra in CONFIGS.items():
            for nproc in (1, args.nproc):
                root = Path(tmp) / f"{name}-{nproc}"
                create_demo_project(root, args.images, args.size).close()
                batch = args.batch // nproc
                train = ["train", str(root), "--task", "classify", "--backbone",
                         "efficientnet_lite0", "--weights", "bundled", "--batch", str(batch),
                         "--device", args.device, *extra]  # fmt: skip
                if nproc == 1:
                    cmd = [py, "-m", "tlstudio", *train]
                else:
                    cmd = [py, "-m", "torch.distributed.run", "--standalone",
                           f"--nproc_per_node={nproc}", "-m", "tlstudio", *train]  # fmt: skip
                took = _run(cmd, Path(tmp))
                m = _last_epoch(root)
                print(f"{name:<12} {nproc:>9} {batch:>10} {took:>8.1f} "
                      f"{m.get('accuracy', float('nan')):>8.3f} {m.get('val_loss', float('nan')):>9.4f}")  # fmt: skip


if __name__ == "__main__":
    main()
