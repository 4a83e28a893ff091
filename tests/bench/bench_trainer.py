"""Training throughput of tlstudio's Trainer vs a plain PyTorch loop (run on demand;
prints figures, asserts nothing).

    python tests/bench/bench_trainer.py [--model resnet18] [--size 128] [--images 128]
                                        [--batch 16] [--epochs 2] [--repeats 2] [--threads 2]

Both ways train the same classifier (the backbone with random weights, full fine-tuning,
a linear head over 10 classes) from the same initial weights, on the same in-memory
random images (already normalised, so no decoding or resizing is measured), with AdamW
at a constant learning rate, the same batch size, shuffling and number of steps, on the
CPU. The plain loop is ``DataLoader(TensorDataset) → model → cross_entropy → backward →
step``; the Trainer adds its per-batch work: targets as dicts, the cancel/pause check,
events, loss bookkeeping, freeze handling, per-epoch reseeding. Neither validates or
writes checkpoints. One untimed warm-up pass runs first; the two ways then alternate
``--repeats`` times and the best (highest) images/s of each is printed with the ratio.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tlstudio.ml.backbones import build_backbone  # noqa: E402
from tlstudio.ml.tasks.factory import build_task_model  # noqa: E402
from tlstudio.ml.trainer import TrainConfig, Trainer  # noqa: E402

CLASSES = 10


class DictTargets(Dataset):
    """The same tensors as (image, {"label"}) pairs: the trainer's batch contract."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return self.x[i], {"label": self.y[i]}


def plain_loop(model, x, y, batch: int, epochs: int, lr: float, seed: int) -> float:
    """Seconds for ``epochs`` epochs of a hand-written loop."""
    gen = torch.Generator().manual_seed(seed)
    loader = DataLoader(TensorDataset(x, y), batch_size=batch, shuffle=True, generator=gen)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    model.train()
    t0 = time.perf_counter()
    for _ in range(epochs):
        for xb, yb in loader:
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            opt.step()
    return time.perf_counter() - t0


def trainer_fit(model, x, y, batch: int, epochs: int, lr: float, seed: int) -> float:
    """Seconds of ``Trainer.fit`` for the same work (setup included)."""
    cfg = TrainConfig(
        epochs=epochs, batch_size=batch, lr=lr, weight_decay=1e-4, schedule="none",
        freeze=0, seed=seed, device="cpu", amp=False, channels_last=False,
    )  # fmt: skip
    trainer = Trainer(model, DictTargets(x, y), None, cfg)
    t0 = time.perf_counter()
    ended = trainer.fit()
    dt = time.perf_counter() - t0
    if ended.status != "finished" or trainer.global_step != epochs * (len(x) // batch):
        raise RuntimeError(f"trainer did not run every step: {ended}, {trainer.global_step}")
    return dt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnet18", help="backbone (default resnet18)")
    ap.add_argument("--size", type=int, default=128, help="input side in px (default 128)")
    ap.add_argument("--images", type=int, default=128)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    if args.images % args.batch:
        ap.error("--images must be a multiple of --batch (same number of full steps both ways)")
    torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    init = build_task_model("classify", build_backbone(args.model, "none"), num_classes=CLASSES)
    x = torch.randn(args.images, 3, args.size, args.size)
    y = torch.randint(0, CLASSES, (args.images,))
    steps = args.epochs * args.images // args.batch
    n = args.epochs * args.images
    print(
        f"{args.model}, weights none, full fine-tuning, input {args.size}px, batch {args.batch}, "
        f"{steps} steps ({n} images) per measurement, {torch.get_num_threads()} torch threads, CPU"
    )

    # warm-up: allocator and kernel selection, not measured
    plain_loop(
        copy.deepcopy(init), x[: 2 * args.batch], y[: 2 * args.batch], args.batch, 1, 1e-3, 0
    )

    ways = {"plain loop": plain_loop, "tlstudio Trainer": trainer_fit}
    rates: dict[str, list[float]] = {k: [] for k in ways}
    for r in range(args.repeats):
        for name, fn in ways.items():
            dt = fn(copy.deepcopy(init), x, y, args.batch, args.epochs, 1e-3, r)
            rates[name].append(n / dt)
            print(f"  repeat {r + 1} {name:<17} {dt:7.2f} s  {n / dt:7.1f} images/s", flush=True)
    best = {k: max(v) for k, v in rates.items()}
    print()
    print(f"{'way':<18}{'best images/s':>15}{'median':>10}")
    for name, v in rates.items():
        print(f"{name:<18}{best[name]:>15.1f}{statistics.median(v):>10.1f}")
    ratio = best["tlstudio Trainer"] / best["plain loop"]
    print(f"Trainer / plain loop throughput: {ratio:.3f} ({(1 - ratio) * 100:+.1f}% overhead)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
