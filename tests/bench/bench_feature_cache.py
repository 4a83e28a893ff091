"""Head-only training on cached features vs through the frozen backbone (run on demand;
prints figures, asserts nothing).

    python tests/bench/bench_feature_cache.py [--images 96] [--fast-epochs 10]
                                              [--slow-epochs 2] [--threads 2]

A demo project (synthetic shapes, 128×128 px PNGs, 70/15/15 split) in a temporary
folder; EfficientNet-Lite0 with its bundled ImageNet weights, fully frozen, at its own
input size (224 px), no augmentation, linear head, batch 16, on the CPU. Both ways go
through :func:`tlstudio.ml.runner.train`:

- cached: the fast path (``use_feature_cache=True``): the head trains on pooled
  features read from the project's feature cache;
- backbone: ``use_feature_cache=False``: every epoch reads and resizes the images and
  runs them through the frozen backbone (no gradients reach it) before the head.

Seconds per epoch are the runner's recorded ``duration_s`` of each epoch (training and
validation), median over the epochs. The one-off extraction (train + val images through
the backbone, vectors written to the cache) is timed separately, before the cached run,
which then finds every vector in the cache.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tlstudio.core.demo import create_demo_project  # noqa: E402
from tlstudio.core.runs import RunStore  # noqa: E402
from tlstudio.ml import data as data_mod  # noqa: E402
from tlstudio.ml import runner  # noqa: E402
from tlstudio.ml.backbones import build_backbone, get_spec  # noqa: E402
from tlstudio.ml.features import FeatureCache, extract_features, weights_id  # noqa: E402
from tlstudio.ml.runner import RunSpec  # noqa: E402
from tlstudio.ml.trainer import TrainConfig  # noqa: E402

BACKBONE = "efficientnet_lite0"


def epoch_seconds(project, run_id: int) -> list[float]:
    return [m["duration_s"] for _, m in RunStore(project).epochs(run_id)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=96, help="demo images (default 96)")
    ap.add_argument("--fast-epochs", type=int, default=10)
    ap.add_argument("--slow-epochs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        project = create_demo_project(Path(tmp) / "demo", n_images=args.images, size=128)
        bspec = get_spec(BACKBONE)
        size = bspec.input_size
        train_ds, val_ds = data_mod.make_datasets(
            project, "classify", size, bspec.mean, bspec.std, None
        )
        print(
            f"{BACKBONE}, bundled weights, frozen, input {size}px, batch 16, "
            f"{len(train_ds)} train + {len(val_ds)} val demo images, "
            f"{torch.get_num_threads()} torch threads, CPU"
        )

        backbone = build_backbone(BACKBONE, "bundled")
        cache = FeatureCache(project.cache_dir)
        cache.clear()
        wid = weights_id(BACKBONE, "bundled")
        t0 = time.perf_counter()
        for ds in (train_ds, val_ds):
            _, stats = extract_features(backbone, ds, cache, wid)
            assert stats.cached == 0
        extraction = time.perf_counter() - t0

        def spec(epochs: int, cached: bool) -> RunSpec:
            cfg = TrainConfig(epochs=epochs, batch_size=16, lr=3e-3, device="cpu")
            return RunSpec("classify", BACKBONE, "bundled", cfg, use_feature_cache=cached)

        t0 = time.perf_counter()
        fast = runner.train(project, spec(args.fast_epochs, True))
        fast_wall = time.perf_counter() - t0
        assert fast.feature_cache
        t0 = time.perf_counter()
        slow = runner.train(project, spec(args.slow_epochs, False))
        slow_wall = time.perf_counter() - t0
        assert not slow.feature_cache

        fast_s = statistics.median(epoch_seconds(project, fast.run_id))
        slow_s = statistics.median(epoch_seconds(project, slow.run_id))
        print()
        print(
            f"one-off feature extraction ({len(train_ds) + len(val_ds)} images): {extraction:.2f} s"
        )
        print(f"{'way':<34}{'s/epoch':>10}{'epochs':>8}{'run wall s':>12}{'val acc':>9}")
        rows = (
            ("cached features (head only)", fast_s, args.fast_epochs, fast_wall, fast),
            ("through frozen backbone", slow_s, args.slow_epochs, slow_wall, slow),
        )
        for name, s, e, wall, res in rows:
            acc = res.metrics.get("accuracy", float("nan"))
            print(f"{name:<34}{s:>10.4f}{e:>8}{wall:>12.2f}{acc:>9.3f}")
        print(f"speed-up per epoch: {slow_s / fast_s:.0f}x")
        print(
            f"extraction pays for itself after {extraction / max(slow_s - fast_s, 1e-9):.1f} epochs"
        )
        project.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
