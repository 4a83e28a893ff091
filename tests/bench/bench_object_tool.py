"""Benchmark of the Objects tool's costs per stroke (run on demand; prints, asserts nothing).

    python tests/bench/bench_object_tool.py [--sizes 1000x750,2048x2048,4000x3000] [--objects 50]

Per image size, with ``--objects`` objects already on the image, one brush stroke that
creates an object is split the way the canvas splits it:

- GUI thread: copy the label and object maps, paint the stroke into both within its
  bounding box (``core.instances.new_object`` on views), drop objects left without
  pixels (``pruned``) and trace the objects' outlines the canvas draws
  (``gui.canvas.items.region_paths``);
- worker thread: encode both PNGs (``gui.canvas.mask_writer._encode``);

and, for comparison, the same edit as the store's undoable command on the calling
thread (``CreateInstance`` through an ``UndoStack``: read, decode, paint, encode, write),
which is what a GUI-thread edit would cost. Medians in milliseconds over ``--repeat``
strokes; the machine's load changes them, so compare within one run.
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

from tlstudio.core import commands as C  # noqa: E402
from tlstudio.core.instances import new_object, pruned  # noqa: E402
from tlstudio.core.project import Project  # noqa: E402
from tlstudio.gui.canvas.items import region_paths  # noqa: E402
from tlstudio.gui.canvas.mask_writer import MaskState, ObjectsState, _encode  # noqa: E402


def _ms(times: list[float]) -> str:
    return f"{1000 * statistics.median(times):7.1f}"


def run(size: tuple[int, int], n_objects: int, repeat: int, root: Path) -> None:
    w, h = size
    img = root / f"im{w}x{h}.png"
    cv2.imwrite(str(img), np.zeros((h, w, 3), np.uint8))
    rng = np.random.default_rng(0)
    with Project.create(root / f"p{w}x{h}") as p:
        (iid,) = p.add_images([img]).added
        cid = p.add_class("cell").id
        numbers = np.zeros((h, w), np.uint16)
        for k in range(1, n_objects + 1):
            y, x = int(rng.integers(0, h - 40)), int(rng.integers(0, w - 40))
            numbers[y : y + 40, x : x + 40] = k
        from tlstudio.core.annotations import Instance, InstanceLayer

        p.set_mask(iid, np.where(numbers > 0, cid, 0).astype(np.uint16))
        p.instances.write_raw(iid, InstanceLayer(numbers, tuple(Instance(k, cid) for k in
                                                                 range(1, n_objects + 1))))  # fmt: skip
        label = p.mask(iid)
        raw = p.instances.layer(iid)
        gui, worker, command = [], [], []
        stack = C.UndoStack(p)
        for _ in range(repeat):
            y, x = int(rng.integers(0, h - 60)), int(rng.integers(0, w - 300))
            region = np.zeros((h, w), bool)
            region[y : y + 30, x : x + 300] = True  # a 30 px wide stroke, 300 px long
            t0 = time.perf_counter()
            new_label = label.copy()
            numbers = raw.map.copy()
            part = InstanceLayer(numbers[y : y + 30, x : x + 300], raw.objects)
            part, _inst = new_object(
                new_label[y : y + 30, x : x + 300], part, cid, region[y : y + 30, x : x + 300]
            )
            kept = pruned(InstanceLayer(numbers, part.objects))
            region_paths(kept.map)
            gui.append(time.perf_counter() - t0)
            state = MaskState(new_label, objects=ObjectsState(kept.map, kept.objects))
            t0 = time.perf_counter()
            _encode(state)
            worker.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            stack.push(C.CreateInstance(iid, cid, region))
            command.append(time.perf_counter() - t0)
            stack.undo()
        print(f"{w}×{h}  GUI thread {_ms(gui)} ms   worker encode {_ms(worker)} ms   "
              f"as a store command on one thread {_ms(command)} ms")  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000x750,2048x2048,4000x3000")
    ap.add_argument("--objects", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for s in args.sizes.split(","):
            w, h = (int(v) for v in s.split("x"))
            run((w, h), args.objects, args.repeat, Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main())
