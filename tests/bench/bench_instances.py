"""Benchmark of object (instance) edits (run on demand; prints figures, asserts nothing).

    python tests/bench/bench_instances.py [--objects 200] [--sizes 1000x750,2048x2048,4000x3000]

For each image size: a project with one black image, then ``--objects`` square cells
(30×30 px) created one by one through the undo stack (``CreateInstance``: read both
maps, paint, encode both PNGs, write), one undo, and reading the layer back
(``InstanceStore.layer``); undo puts back stored bytes, no encoding. Compares, per edit, the object command with a class-brush
write of the same label map (``SetMask``), which encodes one PNG only. Medians in
milliseconds; the machine's load changes them, so compare within one run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchkit import load_average, print_header  # noqa: E402

from tlstudio.core import commands as C  # noqa: E402
from tlstudio.core.project import Project  # noqa: E402


def run(size: tuple[int, int], n: int, root: Path) -> None:
    w, h = size
    img = root / f"im{w}x{h}.png"
    cv2.imwrite(str(img), np.zeros((h, w, 3), np.uint8))
    with Project.create(root / f"p{w}x{h}") as p:
        (iid,) = p.add_images([img]).added
        cid = p.add_class("cell").id
        stack = C.UndoStack(p)
        rng = np.random.default_rng(0)
        create, brush = [], []
        for _ in range(n):
            y, x = int(rng.integers(0, h - 30)), int(rng.integers(0, w - 30))
            region = np.zeros((h, w), bool)
            region[y : y + 30, x : x + 30] = True
            t0 = time.perf_counter()
            stack.push(C.CreateInstance(iid, cid, region))
            create.append(time.perf_counter() - t0)
            label = p.mask(iid)
            assert label is not None
            label[y : y + 2, x : x + 2] = cid
            t0 = time.perf_counter()
            stack.push(C.SetMask(iid, label))
            brush.append(time.perf_counter() - t0)
        stack.undo()  # the last brush write; then time undoing the last object
        t0 = time.perf_counter()
        stack.undo()
        undo = time.perf_counter() - t0
        t0 = time.perf_counter()
        layer = p.instances.layer(iid)
        read = time.perf_counter() - t0
        objects = 0 if layer is None else len(layer.objects)

    def ms(values: list[float]) -> str:
        return f"{1000 * statistics.median(values):.0f}"

    print(f"{w}×{h}: create object {ms(create)} ms (brush write of the same map {ms(brush)} ms), "
          f"undo of an object {1000 * undo:.0f} ms, read layer {1000 * read:.0f} ms ({objects} objects)")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--objects", type=int, default=200)
    ap.add_argument("--sizes", default="1000x750,2048x2048,4000x3000")
    args = ap.parse_args()
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    print_header(f"object edits vs brush writes, {args.objects} objects per image size")
    with tempfile.TemporaryDirectory() as tmp:
        for w, h in sizes:
            run((w, h), args.objects, Path(tmp))
    print(f"load average at the end: {load_average()}")


if __name__ == "__main__":
    main()
