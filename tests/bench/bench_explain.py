"""Cost of each heatmap method against a plain forward pass (run on demand; prints
figures, asserts nothing).

    python tests/bench/bench_explain.py [--images 8] [--repeats 3] [--threads 1]
                                        [--size 224] [--device cpu]

Images: demo scenes (synthetic shapes, 256×256 px RGB) generated in a temporary folder.
Models: 3-class classifiers (linear head, untrained: the cost does not depend on the
weights) over EfficientNet-Lite0 with its bundled ImageNet weights and over ResNet-18
with random weights, input ``--size`` px (224, both backbones' own size). For every
image and method, one call of :meth:`tlstudio.ml.explain.Explainer.heatmap` (target:
the predicted class, deepest stage; it includes resizing the image, the forward pass(es),
the backward pass, and resizing the map back to 256×256) is timed after one warm-up
call; "forward" is the same preprocessing plus ``model(x)`` under ``torch.no_grad``.
The methods take turns on every image, ``--repeats`` rounds over the images. Printed:
the median over images × repeats in milliseconds (wall and this process's CPU) and the
ratio to the forward per round (min / median / max over the rounds), with the load average.
Score-CAM uses the top 64 channels, 16 masked inputs per batch.
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
sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchkit import load_average, print_header  # noqa: E402

from tlstudio.core.demo import create_demo_project  # noqa: E402
from tlstudio.ml.backbones import build_backbone  # noqa: E402
from tlstudio.ml.data import read_rgb  # noqa: E402
from tlstudio.ml.explain import METHODS, Explainer  # noqa: E402
from tlstudio.ml.runner import RunSpec  # noqa: E402
from tlstudio.ml.tasks.factory import build_task_model  # noqa: E402

MODELS = (("efficientnet_lite0", "bundled"), ("resnet18", "none"))


def _medians_ms(fns: dict, images, repeats: int) -> dict[str, tuple[float, float, list[float]]]:
    """Per function: (median wall ms, median CPU ms per call over images × repeats, the
    ratio of its median to the forward's in each round). The functions take turns on
    every image, so load from other processes hits them alike."""
    for fn in fns.values():
        fn(images[0])  # warm-up (allocator, lazy init)
    times: dict[str, list[float]] = {k: [] for k in fns}
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    rounds: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        this_round: dict[str, list[float]] = {k: [] for k in fns}
        for rgb in images:
            for key, fn in fns.items():
                t0, c0 = time.perf_counter(), time.process_time()
                fn(rgb)
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                this_round[key].append(time.perf_counter() - t0)
                cpu[key].append(time.process_time() - c0)
        forward = statistics.median(this_round["forward"])
        for key, v in this_round.items():
            times[key] += v
            rounds[key].append(statistics.median(v) / forward)
    return {
        k: (1000 * statistics.median(v), 1000 * statistics.median(cpu[k]), rounds[k])
        for k, v in times.items()
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        project = create_demo_project(Path(tmp) / "demo", n_images=args.images, size=256)
        images = [read_rgb(project.image_path(i)) for i in project.image_ids()]
        project.close()
    print_header(f"{len(images)} images 256×256 × {args.repeats} repeats, input {args.size} px, "
                 f"{args.threads} thread(s), device {args.device}, torch {torch.__version__}")  # fmt: skip
    print(f"{'backbone':20s} {'method':10s} {'median ms':>10s} {'CPU ms':>8s} "
          f"{'× forward per round (min / median / max)':>42s}")  # fmt: skip
    for name, weights in MODELS:
        model = build_task_model("classify", build_backbone(name, weights), num_classes=3).eval()
        spec = RunSpec(task="classify", backbone=name, weights=weights, input_size=args.size)
        ex = Explainer(model, spec, device=args.device)

        def forward(rgb, ex=ex):
            with torch.no_grad():
                return ex.model(ex._input(rgb))

        fns = {"forward": forward}
        for method in METHODS:
            fns[method] = lambda rgb, m=method, ex=ex: ex.heatmap(rgb, m)
        ms = _medians_ms(fns, images, args.repeats)
        for key, (wall, cpu, ratios) in ms.items():
            spread = f"{min(ratios):.2f} / {statistics.median(ratios):.2f} / {max(ratios):.2f}"
            print(f"{name:20s} {key:10s} {wall:10.1f} {cpu:8.1f} {spread:>42s}")
    print(f"load average at the end: {load_average()}")


if __name__ == "__main__":
    main()
