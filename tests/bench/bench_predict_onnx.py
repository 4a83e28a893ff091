"""``tlstudio predict --model m.onnx`` vs a plain onnxruntime script doing the same work
(run on demand; prints figures, asserts nothing).

    python tests/bench/bench_predict_onnx.py [--pairs 10] [--images 32]
        [--backbone efficientnet_lite0] [--weights auto] [--input-size N] [--repo DIR]

First it builds its own model: a demo project (synthetic shapes, 128×128 px PNGs) in a
temporary folder, one classification epoch over ``--backbone`` (default EfficientNet-Lite0
with its bundled weights, frozen; ``--input-size`` default: the backbone's own), exported
to ONNX with its sidecar.

Then, each in a fresh process, alternately (A, B, A, B, …; one unmeasured pair first to
warm the file cache):

- A: ``python -m tlstudio predict --model m.onnx IMAGES`` with the tlstudio of ``--repo``
  (default: this checkout), one JSON line per image;
- B: a plain script: numpy + OpenCV + onnxruntime, the same image files read with
  ``cv2.imread``, the same resize (area when shrinking, else bilinear) and normalisation
  from the sidecar, the same batches of 16, one JSON line per image.

Per pair it takes A/B of the wall time and of the CPU time (user + system of the child,
from ``wait4``) and prints min / median / max of both ratios, the median wall and CPU
seconds and the median peak RSS of each command, and the load average before and after
(the figures are only comparable on an otherwise quiet machine). Both commands' outputs
are compared once (same predicted class per file) before timing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

PLAIN_SCRIPT = r"""
import json, sys
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

model, folder = Path(sys.argv[1]), Path(sys.argv[2])
info = json.loads(Path(str(model) + ".json").read_text())
pre = info["preprocessing"]
size = pre["input_size"]
mean = np.asarray(pre["mean"], np.float32).reshape(3, 1, 1)
std = np.asarray(pre["std"], np.float32).reshape(3, 1, 1)
names = [c["name"] for c in info["classes"]]
session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
for start in range(0, len(files), 16):
    chunk, batch = files[start : start + 16], []
    for f in chunk:
        a = cv2.imread(str(f), cv2.IMREAD_COLOR)
        a = cv2.cvtColor(a, cv2.COLOR_BGR2RGB)
        h, w = a.shape[:2]
        interp = cv2.INTER_AREA if size <= h and size <= w else cv2.INTER_LINEAR
        a = cv2.resize(a, (size, size), interpolation=interp)
        batch.append(a.transpose(2, 0, 1))
    x = (np.stack(batch).astype(np.float32) / np.float32(255.0) - mean) / std
    (probs,) = session.run(None, {session.get_inputs()[0].name: x})
    for f, p in zip(chunk, probs):
        best = int(p.argmax())
        print(json.dumps({"file": str(f), "class": names[best], "score": float(p[best]),
                          "probs": dict(zip(names, p.astype(float).tolist()))}))
"""


def build_model(
    work: Path, n_images: int, backbone: str, weights: str, input_size: int | None
) -> Path:
    """Demo project → one-epoch classification run → ``work/model.onnx`` (+ sidecar)."""
    import torch

    from tlstudio.core.demo import create_demo_project
    from tlstudio.ml import runner
    from tlstudio.ml.export import export_model
    from tlstudio.ml.runner import RunSpec
    from tlstudio.ml.trainer import TrainConfig

    torch.set_num_threads(2)
    project = create_demo_project(work / "demo", n_images=n_images)
    try:
        spec = RunSpec(
            task="classify", backbone=backbone, weights=weights,
            train=TrainConfig(epochs=1, batch_size=16), input_size=input_size,
        )  # fmt: skip
        run_id = runner.train(project, spec).run_id
        return export_model(project, run_id, work / "model.onnx").path
    finally:
        project.close()


def run_once(cmd: list[str], env: dict[str, str]) -> dict[str, float]:
    """Wall s, CPU s (user + system) and peak RSS MiB of one child process."""
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=err, env=env, cwd=env["BENCH_CWD"]
        )
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err.read().decode()}")
    return {
        "wall": wall,
        "cpu": usage.ru_utime + usage.ru_stime,
        "rss": usage.ru_maxrss / 1024,  # Linux: KiB
    }


def classes_of(cmd: list[str], env: dict[str, str]) -> dict[str, str]:
    out = subprocess.run(
        cmd, capture_output=True, text=True, env=env, cwd=env["BENCH_CWD"], check=True
    )
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    return {Path(r["file"]).name: r["class"] for r in rows}


def spread(values: list[float]) -> str:
    return f"min {min(values):.2f}  median {statistics.median(values):.2f}  max {max(values):.2f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=10, help="measured A/B pairs (default 10)")
    ap.add_argument("--images", type=int, default=32, help="images predicted (default 32)")
    ap.add_argument("--backbone", default="efficientnet_lite0")
    ap.add_argument("--weights", default="auto", help="auto (bundled) | none (random) | ...")
    ap.add_argument("--input-size", type=int, default=None, help="default: the backbone's")
    ap.add_argument("--repo", type=Path, default=REPO, help="tlstudio checkout measured as A")
    ap.add_argument("--build-into", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.build_into is not None:  # child: torch stays out of the measuring process
        build_model(args.build_into, args.images, args.backbone, args.weights, args.input_size)
        return 0

    with tempfile.TemporaryDirectory(prefix="bench_predict_") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        # built in a child: a forked child's peak RSS counts the parent's pages until exec
        build = [sys.executable, __file__, "--build-into", tmp, "--images", str(args.images),
                 "--backbone", args.backbone, "--weights", args.weights]  # fmt: skip
        if args.input_size:
            build += ["--input-size", str(args.input_size)]
        subprocess.run(build, check=True)
        model = work / "model.onnx"
        images = work / "demo" / "images"
        size_mb = model.stat().st_size / 1e6
        print(f"model: {args.backbone}, {size_mb:.1f} MB ONNX, built in "
              f"{time.perf_counter() - t0:.1f} s; {args.images} images")  # fmt: skip
        (work / "plain.py").write_text(PLAIN_SCRIPT)
        # a neutral working folder: ``python -m`` puts it first on sys.path
        env = {**os.environ, "PYTHONPATH": str(args.repo.resolve()), "BENCH_CWD": tmp}
        cmd_a = [sys.executable, "-m", "tlstudio", "predict", "--model", str(model), str(images)]
        cmd_b = [sys.executable, str(work / "plain.py"), str(model), str(images)]
        agree = classes_of(cmd_a, env) == classes_of(cmd_b, env)
        print(f"A = tlstudio predict --model (repo {args.repo}); B = plain onnxruntime script; "
              f"same classes: {agree}")  # fmt: skip
        load_before = os.getloadavg()
        for cmd in (cmd_a, cmd_b):  # warm-up pair, not counted
            run_once(cmd, env)
        pairs = [(run_once(cmd_a, env), run_once(cmd_b, env)) for _ in range(args.pairs)]
        load_after = os.getloadavg()

    wall_ratio = [a["wall"] / b["wall"] for a, b in pairs]
    cpu_ratio = [a["cpu"] / b["cpu"] for a, b in pairs]
    for name, k in (("A", 0), ("B", 1)):
        med = {m: statistics.median(p[k][m] for p in pairs) for m in ("wall", "cpu", "rss")}
        print(f"{name}: wall {med['wall']:.2f} s  CPU {med['cpu']:.2f} s  "
              f"peak RSS {med['rss']:.0f} MiB (medians of {len(pairs)})")  # fmt: skip
    print(f"A/B wall: {spread(wall_ratio)}")
    print(f"A/B CPU:  {spread(cpu_ratio)}")
    print("load average (1, 5, 15 min): before "
          + ", ".join(f"{v:.2f}" for v in load_before) + "; after "
          + ", ".join(f"{v:.2f}" for v in load_after))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
