"""SIGKILL at random moments of edits, ``import --copy`` and training runs (run on demand;
prints counts, asserts nothing).

    python tests/bench/bench_kills.py [--edits 200] [--imports 200] [--trainings 40] [--seed 0]

Each trial starts a child process on a project, kills it (SIGKILL) at a random point while
it works, and reopens the project as the next session would (see tests/kill_scenarios.py).
Printed per kind and in total: trials, kills that hit the work mid-operation, committed
edits lost, orphan files (files in images/ or staging without a row, rows without their
file), name clashes on re-import, runs left ``running``, failed integrity checks. All but
the first two must be 0.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve()
sys.path[:0] = [str(HERE.parents[2]), str(HERE.parents[1]), str(HERE.parent)]  # repo, tests/

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from kill_scenarios import (  # noqa: E402
    Trial,
    edit_project,
    edit_trial,
    import_trial,
    train_trial,
)

from tlstudio.core.demo import create_demo_project  # noqa: E402
from tlstudio.core.project import Project  # noqa: E402
from tlstudio.core.staging import IMAGES  # noqa: E402

N_FILES = 24  # images per import trial


def _one_image(folder: Path, n: int) -> None:
    folder.mkdir(parents=True)
    cv2.imwrite(str(folder / "a.png"), np.full((24, 32, 3), 7, np.uint8))


def run(
    kind: str, n: int, trial: Callable[[random.Random], Trial], rng: random.Random
) -> list[Trial]:
    start = time.perf_counter()
    trials = []
    for i in range(n):
        trials.append(trial(rng))
        if (i + 1) % 10 == 0 or i + 1 == n:
            print(f"  {kind}: {i + 1}/{n} trials ({time.perf_counter() - start:.0f} s)", flush=True)
    return trials


COLUMNS = ("kind", "trials", "mid-op kills", "lost edits", "orphans", "clashes",
           "stuck runs", "bad integrity")  # fmt: skip
WIDTHS = (14, 7, 13, 11, 8, 8, 11, 14)


def row(cells: tuple[object, ...]) -> str:
    first, *rest = cells
    return f"{first!s:<{WIDTHS[0]}}" + "".join(
        f"{c!s:>{w}}" for c, w in zip(rest, WIDTHS[1:], strict=True)
    )


def counts(kind: str, trials: list[Trial]) -> tuple[object, ...]:
    return (
        kind, len(trials), sum(t.mid for t in trials), sum(t.lost for t in trials),
        sum(t.orphans for t in trials), sum(t.clashes for t in trials),
        sum(t.stuck for t in trials), sum(not t.integrity for t in trials),
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--edits", type=int, default=200, help="edit-session trials")
    parser.add_argument("--imports", type=int, default=200, help="import --copy trials")
    parser.add_argument("--trainings", type=int, default=40, help="training-run trials")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    from benchkit import load_average, print_header

    print_header("SIGKILL during edits, import --copy and training runs")
    rng = random.Random(args.seed)
    results: dict[str, list[Trial]] = {}
    with tempfile.TemporaryDirectory(prefix="tlstudio-kills-") as tmp:
        tmp = Path(tmp)
        edits = edit_project(tmp / "edits", _one_image)
        results["edits"] = run("edits", args.edits, lambda r: edit_trial(edits, r), rng)

        photos = tmp / "photos"
        photos.mkdir()
        noise = np.random.default_rng(args.seed)
        for i in range(N_FILES):
            cv2.imwrite(
                str(photos / f"p{i:03d}.png"), noise.integers(0, 256, (96, 128, 3), np.uint8)
            )
        imports = tmp / "imports"
        Project.create(imports).close()

        def one_import(r: random.Random) -> Trial:
            trial = import_trial(imports, photos, N_FILES, r)
            with Project.open(imports) as p:  # the next trial starts from an empty project
                p.remove_images(p.image_ids())
            for f in (imports / IMAGES).glob("*"):
                f.unlink()
            return trial

        results["import --copy"] = run("import --copy", args.imports, one_import, rng)

        runs = tmp / "runs"
        create_demo_project(runs, n_images=16, size=32).close()
        results["training"] = run(
            "training", args.trainings, lambda r: train_trial(runs, r, epochs=30), rng
        )

    print()
    print(row(COLUMNS))
    for kind, trials in results.items():
        print(row(counts(kind, trials)))
    print(row(counts("total", [t for trials in results.values() for t in trials])))
    late = sum(t.late for t in results["import --copy"])
    print(f"\nimport kills while the rows went in and the copies moved (the rest while files "
          f"were checked and copied): {late}")  # fmt: skip
    print(f"load average at the end: {load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
