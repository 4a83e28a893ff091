"""One run of every GPU path of tlstudio on one GPU, with a table at the end (run on demand
on a machine with a GPU; under 8 minutes on one current GPU).

    python tests/bench/gpu_check.py [--device cuda] [--threads N]
    python tests/bench/gpu_check.py --device cpu --tiny      # the same checks, small, CPU

Checks, each timed, with the peak GPU memory it took:

- device picker: ``select_device("auto")`` names the GPU;
- tasks: each of the five tasks trains 2 epochs on a demo project (EfficientNet-Lite0,
  bundled weights, every stage trained) with AMP and channels_last, then predicts every
  image; the row says which AMP dtype, memory format and pinned memory the Trainer used;
- throughput: ResNet-50 at 224 px, batch 128, random in-memory images, AdamW: the
  Trainer against a plain PyTorch loop (the same DataLoader with pinned memory, autocast,
  GradScaler for float16, channels_last) in float32, bfloat16 and float16, images/s over
  the steps after 3 warm-up steps (for reference, an A100 trains ResNet-50 with AMP at
  about 2,500 img/s). The Trainer takes bfloat16 where the GPU has it; float16 is forced
  by telling it the GPU has none;
- out of memory: an absurd batch (ResNet-50, 2,048 images of 224 px at once) must end
  in a finished epoch after the Trainer halved the batch; on the CPU the out-of-memory
  error is raised by the model itself above 4 images (the Trainer's halving is the same);
- Grad-CAM on the device, of the trained classifier; export of the GPU-trained run to
  ONNX (export itself always runs on the CPU) checked against PyTorch.

``--tiny`` shrinks everything (12 images of 48 px, ResNet-18 from scratch at 32 px,
throughput at batch 4, out-of-memory above 4 images) so the whole check runs on a CPU in under a
minute; ``tests/ml/test_gpu_check.py`` runs it that way. Exit status 1 if any check failed.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

TASKS = ("classify", "detect", "landmarks", "segment", "autoencode")


@dataclass
class Row:
    check: str
    status: str = "ok"
    detail: str = ""
    seconds: float = 0.0
    peak_mb: float | None = None


@dataclass
class Context:
    device: str
    tiny: bool
    tmp: Path
    rows: list[Row] = field(default_factory=list)
    project: Any = None
    runs: dict[str, int] = field(default_factory=dict)


@contextlib.contextmanager
def checking(ctx: Context, name: str) -> Iterator[Row]:
    """A row for check ``name``: its time, peak GPU memory and status; an exception
    fails the row (its first line is shown) and the script goes on with the next check."""
    import torch

    row = Row(name)
    cuda = ctx.device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    try:
        yield row
    except Exception as exc:
        row.status = "FAIL"
        row.detail = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ''}"
        traceback.print_exc(file=sys.stderr)
    finally:
        if cuda:
            torch.cuda.synchronize()
            row.peak_mb = torch.cuda.max_memory_allocated() / 2**20
        row.seconds = time.perf_counter() - t0
        ctx.rows.append(row)
        print(f"  {row.check:<34} {row.status:<5} {row.seconds:7.1f} s  {row.detail}", flush=True)


# -------------------------------------------------------------------------- checks


def check_device(ctx: Context) -> None:
    from tlstudio.ml.devices import select_device

    with checking(ctx, "device picker") as row:
        auto = select_device("auto")
        chosen = select_device(ctx.device)
        row.detail = f"auto -> {auto}, --device {ctx.device} -> {chosen}"
        if ctx.device.startswith("cuda") and auto.type != "cuda":
            raise RuntimeError(f"auto picked {auto}, not the GPU")


def check_tasks(ctx: Context) -> None:
    from tlstudio.core.demo import create_demo_project
    from tlstudio.ml import runner
    from tlstudio.ml.callbacks import Callback
    from tlstudio.ml.train_config import TrainConfig

    class Paths(Callback):
        def on_fit_start(self, trainer: Any, event: Any) -> None:
            dtype = trainer._amp_dtype
            self.seen = (
                f"amp {str(dtype).removeprefix('torch.') if dtype else 'off'}, "
                f"{'channels_last' if trainer._channels_last else 'contiguous'}, "
                f"pinned {trainer._train_loader.pin_memory}"
            )

    n, size = (12, 48) if ctx.tiny else (48, 128)
    ctx.project = create_demo_project(ctx.tmp / "demo", n_images=n, size=size)
    backbone, weights, input_size = (
        ("resnet18", "none", 32) if ctx.tiny else ("efficientnet_lite0", "bundled", 160)
    )
    for task in TASKS:
        with checking(ctx, f"train 2 epochs + predict: {task}") as row:
            cfg = TrainConfig(epochs=2, batch_size=4 if ctx.tiny else 16, freeze=0, lr=1e-3,
                              device=ctx.device, amp=True, channels_last=True)  # fmt: skip
            spec = runner.RunSpec(task, backbone, weights, cfg, input_size=input_size)
            probe = Paths()
            result = runner.train(ctx.project, spec, callbacks=[probe])
            if result.failure is not None or result.ended is None:
                raise RuntimeError(result.failure.message if result.failure else "no fit")
            ctx.runs[task] = result.run_id
            predicted = runner.predict(ctx.project, result.run_id, device=ctx.device)
            ended = result.ended
            best = "-" if ended.best_metric is None else f"{ended.best_metric:.3f}"
            row.detail = (
                f"{probe.seen}; {ended.status}, {ended.metric_name} {best}, {predicted} predicted"
            )


def _throughput_data(ctx: Context) -> tuple[Any, Any, int, int, int, str]:
    import torch

    if ctx.tiny:
        name, size, batch = "resnet18", 32, 4
    else:
        name, size, batch = "resnet50", 224, 128
    warm, measured = (2, 3) if ctx.tiny else (3, 20)
    g = torch.Generator().manual_seed(0)
    n = batch * (warm + measured)
    x = torch.randn(n, 3, size, size, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    return x, y, batch, warm, measured, name


def _classifier(name: str) -> Any:
    import torch

    from tlstudio.ml.backbones import build_backbone
    from tlstudio.ml.tasks.factory import build_task_model

    torch.manual_seed(0)
    return build_task_model("classify", build_backbone(name, "none"), num_classes=10)


def plain_loop(model: Any, x: Any, y: Any, batch: int, warm: int, device: str,
               dtype: Any) -> float:  # fmt: skip
    """Images/s of a hand-written loop over the steps after ``warm``."""
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader, TensorDataset

    cuda = device.startswith("cuda")
    model = model.to(device)
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    loader = DataLoader(TensorDataset(x, y), batch_size=batch, shuffle=True, pin_memory=cuda)
    marks = []
    for step, (xb, yb) in enumerate(loader):
        xb, yb = xb.to(device, non_blocking=cuda), yb.to(device, non_blocking=cuda)
        if cuda:
            xb = xb.contiguous(memory_format=torch.channels_last)
        opt.zero_grad(set_to_none=True)
        ctx = torch.autocast("cuda", dtype=dtype) if dtype is not None else contextlib.nullcontext()
        with ctx:
            loss = F.cross_entropy(model(xb), yb)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            opt.step()
        if step + 1 >= warm:
            if cuda:
                torch.cuda.synchronize()
            marks.append(time.perf_counter())
    return batch * (len(marks) - 1) / (marks[-1] - marks[0])


def trainer_loop(model: Any, x: Any, y: Any, batch: int, warm: int, device: str,
                 dtype: Any) -> float:  # fmt: skip
    """Images/s of the Trainer over the steps after ``warm`` (the same work)."""
    from unittest import mock

    import torch
    from torch.utils.data import Dataset

    from tlstudio.ml.callbacks import Callback
    from tlstudio.ml.train_config import TrainConfig
    from tlstudio.ml.trainer import Trainer

    class Pairs(Dataset):
        def __len__(self) -> int:
            return len(x)

        def __getitem__(self, i: int) -> Any:
            return x[i], {"label": y[i]}

    marks: list[float] = []

    class Clock(Callback):
        def on_batch_end(self, trainer: Any, event: Any) -> None:
            if event.step + 1 >= warm:
                if device.startswith("cuda"):
                    torch.cuda.synchronize()
                marks.append(time.perf_counter())

    cfg = TrainConfig(epochs=1, batch_size=batch, lr=1e-3, schedule="none", freeze=0,
                      device=device, amp=dtype is not None, channels_last=True,
                      num_workers=0)  # fmt: skip
    trainer = Trainer(model, Pairs(), None, cfg, callbacks=[Clock()])
    fp16 = dtype is not None and dtype != torch.bfloat16
    no_bf16 = mock.patch("torch.cuda.is_bf16_supported", return_value=False)
    with no_bf16 if fp16 else contextlib.nullcontext():
        ended = trainer.fit()
    if ended.status != "finished":
        raise RuntimeError(f"the fit ended {ended.status}")
    if dtype is not None and trainer._amp_dtype != dtype:
        raise RuntimeError(f"the Trainer used {trainer._amp_dtype}, not {dtype}")
    return batch * (len(marks) - 1) / (marks[-1] - marks[0])


def check_throughput(ctx: Context) -> None:
    import torch

    x, y, batch, warm, measured, name = _throughput_data(ctx)
    cuda = ctx.device.startswith("cuda")
    dtypes = [("float32", None)]
    if cuda:
        dtypes += [("bfloat16", torch.bfloat16), ("float16", torch.float16)]
    for label, dtype in dtypes:
        if label == "bfloat16" and not torch.cuda.is_bf16_supported(including_emulation=False):
            ctx.rows.append(Row(f"throughput {label}", "skip", "this GPU has no bfloat16"))
            continue
        with checking(ctx, f"throughput {name} {label}") as row:
            plain = plain_loop(_classifier(name), x, y, batch, warm, ctx.device, dtype)
            ours = trainer_loop(_classifier(name), x, y, batch, warm, ctx.device, dtype)
            row.detail = (
                f"batch {batch}, {measured} steps: plain loop {plain:.0f} img/s, Trainer "
                f"{ours:.0f} img/s ({ours / plain:.2f}x)"
            )
    if not cuda:
        for label in ("bfloat16", "float16"):
            ctx.rows.append(Row(f"throughput {label}", "skip", "AMP runs on CUDA only"))


def check_oom(ctx: Context) -> None:
    import torch
    from torch.utils.data import Dataset

    from tlstudio.ml.callbacks import Callback
    from tlstudio.ml.train_config import TrainConfig
    from tlstudio.ml.trainer import Trainer

    cuda = ctx.device.startswith("cuda")
    name, size, n = ("resnet18", 32, 16) if not cuda else ("resnet50", 224, 2048)

    class Blank(Dataset):
        """``n`` constant images made on demand (no memory held between batches)."""

        def __len__(self) -> int:
            return n

        def __getitem__(self, i: int) -> Any:
            return torch.full((3, size, size), float(i % 7) / 7), {"label": torch.tensor(i % 10)}

    class Halvings(Callback):
        def __init__(self) -> None:
            self.sizes: list[int] = []

        def on_batch_size_reduced(self, trainer: Any, event: Any) -> None:
            self.sizes.append(event.new)

    model = _classifier(name)
    if not cuda:  # a CPU has no out-of-memory to provoke: the model raises CUDA's error
        real_step = model.training_step

        def step(images: Any, targets: Any) -> Any:
            if images.shape[0] > 4:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated on the CPU)")
            return real_step(images, targets)

        model.training_step = step
    with checking(ctx, "out of memory: absurd batch") as row:
        probe = Halvings()
        cfg = TrainConfig(epochs=1, batch_size=n, lr=1e-3, freeze=0, device=ctx.device,
                          amp=True, channels_last=True, num_workers=0)  # fmt: skip
        ended = Trainer(model, Blank(), None, cfg, callbacks=[probe]).fit()
        if ended.status != "finished" or not probe.sizes:
            raise RuntimeError(f"fit {ended.status} after halvings {probe.sizes}")
        row.detail = f"batch {n} -> {' -> '.join(map(str, probe.sizes))}, epoch finished" + (
            "" if cuda else " (simulated out-of-memory error)"
        )
    if cuda:
        torch.cuda.empty_cache()


def check_explain_export(ctx: Context) -> None:
    from tlstudio.ml.explain import load_explainer
    from tlstudio.ml.export import export_model
    from tlstudio.runtime.images import read_rgb

    run_id = ctx.runs.get("classify")
    with checking(ctx, "Grad-CAM on the device") as row:
        if run_id is None:
            raise RuntimeError("no trained classifier (its row failed)")
        explainer = load_explainer(ctx.project, run_id, device=ctx.device)
        rgb = read_rgb(ctx.project.image_path(ctx.project.image_ids()[0]))
        heat = explainer.heatmap(rgb, "gradcam")
        row.detail = (
            f"on {explainer.device}, heatmap {heat.values.shape[1]}×{heat.values.shape[0]} px"
        )
    with checking(ctx, "export to ONNX (checked)") as row:
        if run_id is None:
            raise RuntimeError("no trained classifier (its row failed)")
        res = export_model(ctx.project, run_id, ctx.tmp / "model.onnx", "onnx")
        row.detail = f"max |ONNX - PyTorch| {res.max_abs_diff:.2g} on {res.checked_images} images"


CHECKS: tuple[Callable[[Context], None], ...] = (
    check_device, check_tasks, check_throughput, check_oom, check_explain_export,
)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (default cuda)")
    ap.add_argument("--tiny", action="store_true", help="small sizes: a CPU runs it in a minute")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0: every core)")
    args = ap.parse_args(argv)

    from tlstudio.runtime import threads

    threads.prepare_environment()
    threads.configure(args.threads or None, gui=False)
    import torch

    from tlstudio.ml.threads import apply

    apply()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA GPU here: run with --device cpu --tiny", file=sys.stderr)
        return 2
    gpu = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "-"
    print(f"tlstudio GPU check on {args.device} ({gpu}), torch {torch.__version__}, "
          f"{'tiny' if args.tiny else 'full'} sizes", flush=True)  # fmt: skip
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tlstudio_gpu_check_") as tmp:
        ctx = Context(args.device, args.tiny, Path(tmp))
        for check in CHECKS:
            check(ctx)
        if ctx.project is not None:
            ctx.project.close()
    width = max(len(r.check) for r in ctx.rows)
    print(f"\n{'check':<{width}}  status  seconds  peak GPU MB  detail")
    for r in ctx.rows:
        peak = f"{r.peak_mb:11.0f}" if r.peak_mb is not None else f"{'-':>11}"
        print(f"{r.check:<{width}}  {r.status:<6}  {r.seconds:7.1f}  {peak}  {r.detail}")
    failed = [r for r in ctx.rows if r.status == "FAIL"]
    print(f"\n{len(ctx.rows) - len(failed)} of {len(ctx.rows)} checks passed or skipped, "
          f"{len(failed)} failed, {time.perf_counter() - t0:.0f} s in all")  # fmt: skip
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
