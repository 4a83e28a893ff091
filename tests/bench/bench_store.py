"""Benchmark of the project store at scale (run on demand; prints figures, asserts nothing).

    python tests/bench/bench_store.py [--images 10000] [--annotations 100000] [--repeats 15]

Builds a project of small generated PNGs (32×32 px) in a temporary folder,
then adds a mix of tags, boxes and landmark sets, and prints:

- image import time per 1,000 images (first, median, last batch);
- time to open the project (``Project.open`` + first ``image_page``) with no
  annotations and again with all of them: opening should not grow with them;
- time to list one page of 100 images with annotation counts (``image_page``)
  at the start, middle and end, next to a keyset query (``WHERE id > last``)
  for the same page, which does not walk the skipped rows;
- the cost of one committed edit (an AddBox through the undo stack, one
  transaction) with SQLite's ``synchronous`` at NORMAL (the store's setting: WAL
  synced at checkpoints) and at FULL (WAL synced at every commit), side by side
  (``--edits N``; ``--edits-only`` skips everything else).

Cheap measurements are repeated and reported as medians (milliseconds). The
file cache is warm: these are not cold-disk figures.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchkit import load_average, print_header  # noqa: E402

from tlstudio.core.annotations import Box, LandmarkSet, Point  # noqa: E402
from tlstudio.core.commands import AddBox, UndoStack  # noqa: E402
from tlstudio.core.labelset import builtin_templates  # noqa: E402
from tlstudio.core.project import ImageRecord, ImageSummary, Project  # noqa: E402

PAGE = 100
COLS = ", ".join(f"i.{name}" for name in ImageRecord.__dataclass_fields__)
BATCH = 1000


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``fn()`` over ``repeats`` calls, in milliseconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def write_images(folder: Path, n: int, seed: int = 0) -> list[Path]:
    """``n`` distinct 32×32 RGB PNGs in sub-folders of 1,000; returns the sub-folders."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    folders = []
    for i in range(n):
        if i % BATCH == 0:
            folders.append(folder / f"batch_{i // BATCH:03d}")
            folders[-1].mkdir(parents=True)
        img = np.roll(base, i % 1024, axis=(i // 1024) % 2)
        img[0, :4] = (i & 255, (i >> 8) & 255, (i >> 16) & 255)  # unique content per image
        cv2.imwrite(str(folders[-1] / f"img_{i:06d}.png"), img)
    return folders


def add_annotations(project: Project, n: int, seed: int = 0) -> dict[str, int]:
    """Add ``n`` annotations through the public API: one tag on up to 10% of ``n`` images,
    then two thirds boxes and one third Face 5 landmark sets on random images."""
    rng = np.random.default_rng(seed)
    ids = project.image_ids()
    classes = [project.ensure_class(f"class_{k}").id for k in range(5)]
    face = next(t for t in builtin_templates() if t.name == "Face 5")
    tid = project.ensure_template(face).id
    n_tags = min(len(ids), n // 10)
    n_boxes = (n - n_tags) * 2 // 3
    n_sets = n - n_tags - n_boxes
    targets = rng.choice(ids, n_boxes + n_sets)
    with project.transaction():
        for image_id in ids[:n_tags]:
            project.set_tags(image_id, [classes[image_id % 5]])
        for k, image_id in enumerate(targets):
            x, y = rng.uniform(0, 20, 2)
            cls = classes[k % 5]
            if k < n_boxes:
                project.add_box(int(image_id), Box(cls, x, y, x + 8, y + 8))
            else:
                pts = tuple(
                    Point(x + dx, y + dy) for dx, dy in ((2, 2), (8, 2), (5, 5), (3, 9), (7, 9))
                )
                project.add_landmark_set(int(image_id), LandmarkSet(tid, pts, cls))
    return {"tags": n_tags, "boxes": n_boxes, "landmark sets": n_sets}


def keyset_page(project: Project, after_id: int, limit: int = PAGE) -> list[ImageSummary]:
    """What ``image_page`` returns, selected by ``id > after_id`` instead of OFFSET."""
    rows = project.store.conn.execute(
        f"""SELECT {COLS},
            (SELECT COUNT(*) FROM tags t WHERE t.image_id = i.id),
            (SELECT COUNT(*) FROM boxes b WHERE b.image_id = i.id),
            (SELECT COUNT(*) FROM landmark_sets l WHERE l.image_id = i.id),
            EXISTS (SELECT 1 FROM masks m WHERE m.image_id = i.id)
        FROM images i WHERE i.id > ? ORDER BY i.id LIMIT ?""",
        (after_id, limit),
    )
    return [ImageSummary(ImageRecord(*r[:10]), r[10], r[11], r[12], bool(r[13])) for r in rows]


def open_and_first_page(root: Path) -> None:
    project = Project.open(root)
    project.image_page(0, PAGE)
    project.close()


def measure_reads(root: Path, repeats: int, label: str) -> None:
    open_ms = median_ms(lambda: open_and_first_page(root), repeats)
    print(f"  open project + first page of {PAGE}     : {open_ms:8.2f} ms   ({label})")
    with Project.open(root) as project:
        ids = project.image_ids()
        n = len(ids)
        for where, offset in (
            ("start", 0),
            ("middle", max(0, n // 2 - PAGE // 2)),
            ("end", max(0, n - PAGE)),
        ):
            page = project.image_page(offset, PAGE)
            after = ids[offset - 1] if offset else 0
            keyset = keyset_page(project, after)
            assert page == keyset
            n_ann = sum(s.n_tags + s.n_boxes + s.n_landmarks for s in page)
            t_off = median_ms(lambda o=offset: project.image_page(o, PAGE), repeats)
            t_key = median_ms(lambda a=after: keyset_page(project, a), repeats)
            print(
                f"  image_page at {where:<6} (offset {offset:>6}): {t_off:8.2f} ms   "
                f"keyset: {t_key:6.2f} ms   ({n_ann} annotations on the page)"
            )


def edit_commit_times(root: Path, synchronous: str, n: int) -> list[float]:
    """Seconds of each of ``n`` edits (AddBox through the undo stack: one transaction,
    committed when ``push`` returns) with ``PRAGMA synchronous`` set to ``synchronous``."""
    times = []
    with Project.open(root) as project:
        project.store.conn.execute(f"PRAGMA synchronous = {synchronous}")
        stack = UndoStack(project, limit=10)
        image_id, class_id = project.image_ids()[0], project.classes()[0].id
        for k in range(n):
            start = time.perf_counter()
            stack.push(AddBox(image_id, Box(class_id, 0, 0, 1 + k % 30, 1 + k % 30)))
            times.append(time.perf_counter() - start)
    return times


def measure_edit_commits(tmp: Path, n: int) -> None:
    """Print the cost of a committed edit under synchronous NORMAL and FULL (interleaved
    rounds, so a busy disk or CPU affects both alike)."""
    root = tmp / "edits"
    write_images(tmp / "edit_src", 1, seed=5)
    with Project.create(root) as project:
        project.add_images([tmp / "edit_src"])
        project.add_class("box")
    results: dict[str, list[float]] = {"NORMAL": [], "FULL": []}
    cpu: dict[str, float] = {"NORMAL": 0.0, "FULL": 0.0}
    per_round: dict[str, list[float]] = {"NORMAL": [], "FULL": []}
    rounds = 5
    for _ in range(rounds):
        for mode in results:
            c0 = time.process_time()
            times = edit_commit_times(root, mode, max(1, n // rounds))
            cpu[mode] += time.process_time() - c0
            results[mode] += times
            per_round[mode].append(statistics.median(times))
    print(f"\none committed edit (AddBox through the undo stack), {n} per setting:")
    for mode, times in results.items():
        ms = sorted(1000 * t for t in times)
        print(
            f"  synchronous = {mode:<6}: median {statistics.median(ms):6.2f} ms, "
            f"95th percentile {ms[int(0.95 * (len(ms) - 1))]:6.2f} ms, "
            f"{len(ms) / (sum(ms) / 1000):7.0f} edits/s, CPU {1000 * cpu[mode] / len(ms):.2f} ms "
            "per edit"
        )
    ratios = [b / a for a, b in zip(per_round["NORMAL"], per_round["FULL"], strict=True)]
    print(f"  FULL / NORMAL median per round: {min(ratios):.1f} / {statistics.median(ratios):.1f}"
          f" / {max(ratios):.1f} (min / median / max); load average {load_average()}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--annotations", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=15, help="repeats of cheap measurements")
    parser.add_argument("--edits", type=int, default=1000, help="edits per synchronous setting")
    parser.add_argument("--edits-only", action="store_true", help="only the edit-commit figures")
    args = parser.parse_args(argv)
    print_header(f"project store: {args.images} images, {args.annotations} annotations")

    with tempfile.TemporaryDirectory(prefix="tlstudio-bench-") as tmp:
        tmp = Path(tmp)
        measure_edit_commits(tmp, args.edits)
        if args.edits_only:
            return 0
        start = time.perf_counter()
        folders = write_images(tmp / "src", args.images)
        print(f"generated {args.images} PNGs (32×32) in {time.perf_counter() - start:.1f} s")

        root = tmp / "proj"
        project = Project.create(root)
        batch_s = []
        for folder in folders:
            start = time.perf_counter()
            report = project.add_images([folder])
            batch_s.append(time.perf_counter() - start)
            assert not report.failed and not report.duplicates, report
        assert project.image_count() == args.images
        per_k = [1e6 * s / n for s, n in zip(batch_s, _batch_sizes(args.images), strict=True)]
        print(f"\nimport (add_images, one call per folder of {BATCH}):")
        print(
            f"  per 1,000 images: first {per_k[0]:.0f} ms, median {statistics.median(per_k):.0f} ms, "
            f"last {per_k[-1]:.0f} ms; total {sum(batch_s):.1f} s for {args.images}"
        )
        project.close()

        print(f"\n{args.images} images, 0 annotations (medians of {args.repeats}):")
        measure_reads(root, args.repeats, "0 annotations")

        with Project.open(root) as project:
            start = time.perf_counter()
            mix = add_annotations(project, args.annotations)
            took = time.perf_counter() - start
        mix_text = ", ".join(f"{n} {k}" for k, n in mix.items())
        print(
            f"\nadded {args.annotations} annotations ({mix_text}) through the Project API in one "
            f"transaction: {took:.1f} s ({1e6 * took / max(1, args.annotations):.0f} µs each)"
        )
        size_mb = sum(p.stat().st_size for p in root.glob("project.sqlite*")) / 1e6
        print(f"project.sqlite (+ WAL): {size_mb:.1f} MB")

        print(
            f"\n{args.images} images, {args.annotations} annotations (medians of {args.repeats}):"
        )
        measure_reads(root, args.repeats, f"{args.annotations} annotations")

        with Project.open(root) as project:
            stats_ms = median_ms(project.stats, max(3, args.repeats // 5))
        print(f"  Project.stats() (what `tlstudio info` prints): {stats_ms:8.1f} ms")
    return 0


def _batch_sizes(n: int) -> list[int]:
    return [min(BATCH, n - i) for i in range(0, n, BATCH)]


if __name__ == "__main__":
    sys.exit(main())
