"""The project predict path against the model's own forward pass (run on demand; prints
figures, asserts nothing).

    python tests/bench/bench_predict.py [--images 64] [--image-size 256] [--batch 32]
                                        [--rounds 3] [--threads N]

A demo project (synthetic shapes, ``--image-size`` px PNGs) in a temporary folder and a
classifier run on EfficientNet-Lite0 (bundled weights, 224 px input, head trained on
cached features). Each round runs, one after the other on the same images:

- forward: ``model.predict_step`` on ready input tensors of ``--batch`` images (no reading,
  no storing): the model's own cost;
- A, per image (before issue 12 §3): every image read and normalised on its own, then
  the batch's forward pass, then per image a postprocessing and one commit per batch;
- B, ``runner.predict``: images read ahead in a reader thread, postprocessing per batch,
  one transaction.

Both A and B load the run's model first (the same code); ms/image is wall time over
the images. Printed per round and then per-round ratios (min / median / max): B/A,
A/forward, B/forward, with CPU seconds beside wall seconds and the load average.
The thread budget is the command line's (``--threads``, default every core), with
OpenMP's passive waiting as ``tlstudio`` sets it.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchkit import Way, cpu_seconds, fmt, print_header, print_ratios  # noqa: E402

from tlstudio.runtime import threads  # noqa: E402


def per_image_predict(project, run_id: int, ids: list[int], batch_size: int) -> int:
    """``runner.predict`` as it was before issue 12 §3 (kept here as the comparison): each
    image read and normalised on its own in torch, postprocessed on its own, one commit
    per batch. tests/ml/test_predict_pipeline.py checks that runner.predict stores the same."""
    import torch

    from tlstudio.core.runs import RunStore
    from tlstudio.ml import data as data_mod
    from tlstudio.ml import runner
    from tlstudio.ml.architectures import get_spec
    from tlstudio.ml.tasks.base import to_image_frame

    model, spec = runner.load_run_model(project, run_id)
    size = spec.resolved_input_size
    bspec = get_spec(spec.backbone)
    mean = torch.tensor(bspec.mean).view(3, 1, 1)
    std = torch.tensor(bspec.std).view(3, 1, 1)
    classes = project.classes()
    runs = RunStore(project)
    for start in range(0, len(ids), batch_size):
        chunk = ids[start : start + batch_size]
        tensors, origs = [], []
        for image_id in chunk:
            rgb, orig = data_mod.load_input_image(project.image_path(image_id), size)
            x = torch.from_numpy(rgb).permute(2, 0, 1).float() / 255.0
            tensors.append((x - mean) / std)
            origs.append(orig)
        with torch.no_grad():
            preds = model.predict_step(torch.stack(tensors))
        with project.transaction():
            for image_id, pred, orig in zip(chunk, preds, origs, strict=True):
                pred = to_image_frame(
                    {k: runner._cpu(v) for k, v in pred.items()}, (size, size), orig
                )
                payload, mask, score = runner._payload(spec.task, pred, classes)
                runs.set_prediction(run_id, image_id, payload, mask, score)
    return len(ids)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--image-size", type=int, default=256, help="demo image side (px)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="thread budget (0: default)")
    args = ap.parse_args()
    threads.prepare_environment()  # before torch starts OpenMP, as the tlstudio command does
    import torch

    from tlstudio.core.demo import create_demo_project
    from tlstudio.core.runs import RunStore
    from tlstudio.ml import data as data_mod
    from tlstudio.ml import runner
    from tlstudio.ml.architectures import get_spec
    from tlstudio.ml.threads import apply
    from tlstudio.ml.train_config import TrainConfig

    budget = threads.configure(args.threads or None, gui=False)
    apply()
    print_header(
        f"predict: {args.images} demo images of {args.image_size} px, EfficientNet-Lite0 at "
        f"224 px, batch {args.batch}, CPU, {budget.threads} torch threads "
        f"({budget.source}), {budget.readers} reader thread(s)"
    )
    with tempfile.TemporaryDirectory() as tmp:
        project = create_demo_project(Path(tmp) / "demo", n_images=args.images,
                                      size=args.image_size)  # fmt: skip
        spec = runner.RunSpec("classify", "efficientnet_lite0", "bundled",
                              TrainConfig(epochs=1, batch_size=16, device="cpu"))  # fmt: skip
        run_id = runner.train(project, spec).run_id
        ids = project.image_ids()
        store = RunStore(project)
        model, _ = runner.load_run_model(project, run_id)
        t0 = time.perf_counter()
        runner.load_run_model(project, run_id)
        print(f"loading the run's model (both ways do it once): {time.perf_counter() - t0:.2f} s")
        bspec = get_spec("efficientnet_lite0")
        ds = data_mod.ProjectDataset(project, "autoencode", ids, 224, bspec.mean, bspec.std)
        batches = [
            torch.stack([ds[i][0] for i in range(s, min(s + args.batch, len(ds)))])
            for s in range(0, len(ds), args.batch)
        ]

        def forward() -> dict:
            with torch.no_grad():
                for x in batches:
                    model.predict_step(x)
            return {}

        def old() -> dict:
            per_image_predict(project, run_id, ids, args.batch)
            return {}

        def new() -> dict:
            runner.predict(project, run_id, ids, batch_size=args.batch, device="cpu")
            return {}

        def stored() -> str:
            return json.dumps([store.prediction(run_id, i).payload for i in ids])

        old()
        expected = stored()
        new()  # warm-up of both; the stored predictions must be the same
        same = stored() == expected
        ways = (Way("forward", forward), Way("A per image", old), Way("B runner.predict", new))
        runs: dict[str, list[dict]] = {w.name: [] for w in ways}
        for r in range(args.rounds):
            for way in ways:
                w0, c0 = time.perf_counter(), cpu_seconds()
                way.run()
                wall, cpu = time.perf_counter() - w0, cpu_seconds() - c0
                fig = {"wall_s": wall, "cpu_s": cpu, "ms_per_image": wall / len(ids) * 1000}
                runs[way.name].append(fig)
                print(f"  round {r + 1}  {way.name:<18} {fmt(fig)}", flush=True)
        keys = ("ms_per_image", "cpu_s")
        for a, b in (("A per image", "B runner.predict"), ("forward", "A per image"),
                     ("forward", "B runner.predict")):  # fmt: skip
            print_ratios({a: runs[a], b: runs[b]}, keys)
        print(f"stored predictions identical (A and B): {same}")
        project.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
