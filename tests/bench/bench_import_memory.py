"""Peak memory of importing a decompression bomb: a 30000×30000 PNG of one colour (about
2.6 MB on disk, 2.7 GB decoded as RGB, 0.9 GB as grey). Run on demand; prints figures,
asserts nothing. Linux only (reads /proc/self/status).

    python tests/bench/bench_import_memory.py [--side 30000] [--full-decode] [--baseline TREE]

The PNGs are written to a temporary folder row by row (never held in memory). Each
measurement runs in a fresh interpreter: the peak resident memory (VmHWM, reset just
before) over the resident memory before the call, and the wall time, for

- ``Project.add_images`` of this tree: the whole file is checked (PNG inflated in pieces)
  and no decoded image is held;
- the same with ``max_bytes`` = 1 GB, to show the refusal when memory is short;
- with ``--full-decode``: ``imageio.read_image``, the full decode that import used to make
  to check a file (several GB: only on a machine with the memory to spare);
- with ``--baseline TREE``: ``Project.add_images`` of another checkout of tlstudio (e.g.
  one before this change), for the figure before.
"""

from __future__ import annotations

import argparse
import os
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

CHILD = r"""
import re, sys, time
from pathlib import Path

def status(key):
    return int(re.search(key + r":\s+(\d+) kB", open("/proc/self/status").read()).group(1)) * 1024

mode, path, work = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
from tlstudio.core import imageio
from tlstudio.core.project import Project
project = Project.create(work / "proj")
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # VmHWM := VmRSS
before = status("VmRSS")
start = time.perf_counter()
if mode == "read_image":
    data = imageio.read_image(path)
    outcome = f"decoded {data.array.shape}"
else:
    kwargs = {"max_bytes": 10**9} if mode == "limit" else {}
    report = project.add_images([path], **kwargs)
    outcome = f"added {len(report.added)}" + "".join(f"; refused: {r}" for _, r in report.failed)
took = time.perf_counter() - start
print(f"{(status('VmHWM') - before) / 1e9:.2f}\t{took:.1f}\t{outcome}")
"""


def write_png(path: Path, side: int, channels: int) -> None:
    """A ``side``×``side`` 8-bit PNG of one colour (grey or RGB), written row by row."""
    color_type = {1: 0, 3: 2}[channels]

    def chunk(f, kind: bytes, data: bytes) -> None:
        f.write(struct.pack(">I", len(data)) + kind + data)
        f.write(struct.pack(">I", zlib.crc32(kind + data)))

    row = b"\x00" + bytes([200, 120, 40][:channels]) * side
    packer = zlib.compressobj(9)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        chunk(f, b"IHDR", struct.pack(">IIBBBBB", side, side, 8, color_type, 0, 0, 0))
        for _ in range(side):
            data = packer.compress(row)
            if data:
                chunk(f, b"IDAT", data)
        chunk(f, b"IDAT", packer.flush())
        chunk(f, b"IEND", b"")


def measure(mode: str, path: Path, tree: Path, work: Path) -> str:
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=str(tree))
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, mode, str(path), str(work)],
        capture_output=True, text=True, env=env, cwd=work,
    )  # fmt: skip
    if proc.returncode:
        return f"-\t-\tfailed (exit {proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}"
    return proc.stdout.strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--side", type=int, default=30_000, help="image side in pixels")
    parser.add_argument("--full-decode", action="store_true", help="also time a full decode")
    parser.add_argument("--baseline", type=Path, help="another tlstudio checkout to compare")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO))
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from benchkit import load_average, print_header

    print_header("peak memory importing a decompression bomb")
    from tlstudio.core.imageio import memory_budget

    budget = memory_budget()
    print(f"decoded-size limit here (a quarter of the available memory): "
          f"{budget / 1e9:.1f} GB" if budget else "available memory unknown")  # fmt: skip
    print(f"\n{'image':<26}{'what':<34}{'peak GB':>8}{'s':>7}  outcome")
    with tempfile.TemporaryDirectory(prefix="tlstudio-bomb-") as tmp:
        tmp = Path(tmp)
        for channels, name in ((3, "RGB"), (1, "grey")):
            path = tmp / f"bomb_{name}.png"
            write_png(path, args.side, channels)
            label = f"{args.side}² {name} ({path.stat().st_size / 1e6:.1f} MB)"
            runs = [
                ("add_images", "add_images", REPO),
                ("limit", "add_images, max_bytes 1 GB", REPO),
            ]
            if args.full_decode:
                runs.append(("read_image", "read_image (full decode)", REPO))
            if args.baseline:
                runs.append(("add_images", f"add_images of {args.baseline}", args.baseline))
            for mode, what, tree in runs:
                peak, took, outcome = measure(
                    mode, path, tree, tmp / f"w{len(os.listdir(tmp))}"
                ).split("\t")
                print(f"{label:<26}{what:<34}{peak:>8}{took:>7}  {outcome[:110]}", flush=True)
    print(f"load average at the end: {load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
