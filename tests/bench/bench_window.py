"""Benchmark of the main window on a large project (run on demand; prints figures).

    QT_QPA_PLATFORM=offscreen python tests/bench/bench_window.py [--images 5000]
        [--pairs 3] [--before /work/main] [--skip-scroll]

Builds a project of small generated PNGs (96×72 px) in a temporary folder, then:

1. start-up from process start: ``tlstudio PROJECT`` in a fresh process (the command
   line's own code path: ``tlstudio.cli.main``), timed by this process from spawning it
   until it prints that the browser painted its first rows with the event loop idle;
   the child also prints when its imports ended, when the QApplication existed and when
   the window was built (seconds since its script started, after the interpreter's own
   start). Compared interleaved (A, B, A, B, …), each on its own copy of the package:
   - bytecode: this tree without compiled bytecode (``PYTHONDONTWRITEBYTECODE``: every
     start compiles every module) against the same tree compiled with
     ``python -m compileall``;
   - with ``--before DIR``: the package of another checkout (e.g. main before these
     changes) against this one, both without bytecode, as such an environment runs them;
2. with thumbnails made in the background (the window's way) and made synchronously on
   the GUI thread (for comparison), each from an empty thumbnail cache, in this process:
   - time to interactive: from constructing the window to the first page of the
     browser painted with the event loop idle;
   - lateness of a 16 ms QTimer (its interval minus 16 ms: median, p95, max) while the
     browser scrolls through every row, half a viewport per tick, with thumbnails
     loading; how long the scroll took and how many thumbnails exist at the end.

The GUI runs on the offscreen platform (painting into memory), so absolute figures are
lower than on a real display; the comparisons are the point. CPU seconds are printed
beside wall seconds, with the load average, and per-pair ratios B/A as min / median / max.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from benchkit import Way, compare, load_average, print_header, run_child  # noqa: E402
from PySide6.QtCore import QEvent, QEventLoop, QObject, QSettings, Qt, QTimer  # noqa: E402

from tlstudio.core.project import Project  # noqa: E402
from tlstudio.gui.app import create_application  # noqa: E402

TICK_MS = 16


def make_project(root: Path, n: int) -> float:
    src = root / "images"
    src.mkdir(parents=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:72, 0:96]
    for i in range(n):
        base = ((xx * (i % 7 + 1) + yy * (i % 5 + 1)) % 256).astype(np.uint8)
        img = np.dstack([base, np.roll(base, i % 50, axis=1), 255 - base])
        img = (img + rng.integers(0, 16, img.shape)).astype(np.uint8)
        img[0, 0] = (i % 256, (i // 256) % 256, 7)
        cv2.imwrite(str(src / f"img_{i:05d}.png"), img)
    t = time.perf_counter()
    with Project.create(root / "project") as p:
        report = p.add_images([src])
        assert len(report.added) == n, report.failed[:3]
    return time.perf_counter() - t


class FirstPaint(QObject):
    """Records when the viewport has painted a non-empty model for the first time."""

    def __init__(self, view, loop: QEventLoop):
        super().__init__()
        self.view, self.loop = view, loop
        self.painted_at: float | None = None
        self.idle_at: float | None = None

    def eventFilter(self, obj, event) -> bool:
        if (
            event.type() == QEvent.Type.Paint
            and self.painted_at is None
            and self.view.model().rowCount() > 0
        ):
            self.painted_at = time.perf_counter()  # the paint runs right after this
            QTimer.singleShot(0, self._idle)
        return False

    def _idle(self) -> None:
        self.idle_at = time.perf_counter()
        self.loop.quit()


def run_mode(root: Path, synchronous: bool, settings_path: Path) -> dict:
    from tlstudio.gui.main_window import MainWindow

    shutil.rmtree(root / "project" / "cache" / "thumbs", ignore_errors=True)
    settings = QSettings(str(settings_path), QSettings.Format.IniFormat)
    settings.clear()
    loop = QEventLoop()

    t0 = time.perf_counter()
    window = MainWindow(settings=settings)
    window.resize(1280, 800)
    window.browser.synchronous_thumbnails = synchronous
    view = window.browser.view
    probe = FirstPaint(view, loop)
    view.viewport().installEventFilter(probe)
    window.show()
    window.open_project(root / "project")
    QTimer.singleShot(60_000, loop.quit)  # safety net
    loop.exec()
    interactive = (probe.idle_at or time.perf_counter()) - t0
    view.viewport().removeEventFilter(probe)
    n_rows = window.browser.model.rowCount()

    bar = view.verticalScrollBar()
    step = max(1, view.viewport().height() // 2)
    late: list[float] = []
    timer = QTimer()
    timer.setTimerType(Qt.TimerType.PreciseTimer)
    timer.setInterval(TICK_MS)
    last = [time.perf_counter()]
    scroll_start = time.perf_counter()

    def tick() -> None:
        now = time.perf_counter()
        late.append(max(0.0, (now - last[0]) * 1000 - TICK_MS))
        last[0] = now
        if bar.value() >= bar.maximum():
            timer.stop()
            loop.quit()
            return
        bar.setValue(bar.value() + step)

    timer.timeout.connect(tick)
    timer.start()
    loop.exec()
    scroll_s = time.perf_counter() - scroll_start
    loader = window.browser.model.loader
    pending = loader.pending() if loader else 0
    window.close()
    thumbs = sum(1 for _ in (root / "project" / "cache" / "thumbs").rglob("*.png"))
    late_sorted = sorted(late)
    return {
        "mode": "synchronous" if synchronous else "background",
        "rows": n_rows,
        "interactive_ms": interactive * 1000,
        "ticks": len(late),
        "median": statistics.median(late_sorted),
        "p95": late_sorted[int(0.95 * (len(late_sorted) - 1))],
        "max": late_sorted[-1],
        "scroll_s": scroll_s,
        "thumbs": thumbs,
        "pending": pending,
    }


STARTUP_MARK = "ROWS "  # printed by window_startup_child.py


def package_copy(source_root: Path, dest: Path, compiled: bool) -> Path:
    """``source_root/tlstudio`` copied into ``dest`` (no bytecode; compiled if asked)."""
    shutil.copytree(source_root / "tlstudio", dest / "tlstudio",
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    if compiled:
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(dest / "tlstudio")],
                       check=True)  # fmt: skip
    return dest


def startup_way(name: str, package_root: Path, project: Path, config: Path) -> Way:
    env = {**os.environ, "PYTHONPATH": str(package_root), "XDG_CONFIG_HOME": str(config),
           "PYTHONDONTWRITEBYTECODE": "1", "QT_QPA_PLATFORM": "offscreen"}  # fmt: skip

    def run() -> dict:
        figures, out = run_child(
            [sys.executable, str(HERE / "window_startup_child.py"), str(project)],
            env=env, marker=STARTUP_MARK, timeout_s=600,
        )  # fmt: skip
        for line in out.splitlines():
            if line.startswith(STARTUP_MARK):
                figures.update(json.loads(line[len(STARTUP_MARK) :]))
        figures["to_rows_s"] = figures.pop("marker_s", float("nan"))
        return figures

    return Way(name, run)


def startup(args: argparse.Namespace, root: Path) -> None:
    keys = ("to_rows_s", "cpu_s", "imports_s", "window_built_s", "rows_s")
    print("\n== start-up from process start to a painted browser with rows "
          "(to_rows_s: seen by this process; *_s after imports_s: the child's own marks)")  # fmt: skip
    base = root / "packages"
    plain = package_copy(ROOT, base / "plain", compiled=False)
    compiled = package_copy(ROOT, base / "compiled", compiled=True)
    config = root / "config"
    project = root / "project"
    print("bytecode: none (every start compiles) vs compiled once (python -m compileall):")
    compare(args.pairs, startup_way("no bytecode", plain, project, config),
            startup_way("compiled", compiled, project, config), keys=keys, warmup=True)  # fmt: skip
    if args.before:
        before = package_copy(Path(args.before), base / "before", compiled=False)
        print(f"before ({args.before}) vs after (this tree), both without bytecode:")
        compare(args.pairs, startup_way("before", before, project, config),
                startup_way("after", plain, project, config), keys=keys)  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=5000)
    ap.add_argument("--pairs", type=int, default=3, help="start-up pairs per comparison")
    ap.add_argument("--before", metavar="DIR", help="another checkout to compare start-up with")
    ap.add_argument("--skip-scroll", action="store_true", help="start-up figures only")
    args = ap.parse_args()
    print_header(f"main window, {args.images} images")
    with tempfile.TemporaryDirectory(prefix="tlstudio_bench_window_") as tmp:
        root = Path(tmp)
        print(f"building a project of {args.images} images (96×72 px PNG)…", flush=True)
        add_s = make_project(root, args.images)
        print(f"  add_images: {add_s:.1f} s")
        startup(args, root)
        if args.skip_scroll:
            return
        create_application()
        results = [run_mode(root, sync, root / "settings.ini") for sync in (False, True)]
    print()
    print(f"{'thumbnails':<12} {'to interactive':>15} {'16 ms timer lateness (ms)':>30} "
          f"{'scroll':>8} {'thumbs made':>12}")  # fmt: skip
    print(f"{'':<12} {'(ms)':>15} {'median':>10} {'p95':>9} {'max':>9} {'(s)':>8}")
    for r in results:
        print(
            f"{r['mode']:<12} {r['interactive_ms']:>15.0f} {r['median']:>10.1f} {r['p95']:>9.1f} "
            f"{r['max']:>9.1f} {r['scroll_s']:>8.1f} {r['thumbs']:>12}"
        )
    print(f"\n{results[0]['rows']} rows; {results[0]['ticks']} / {results[1]['ticks']} ticks scrolled;"
          " background thumbnails of rows scrolled past quickly are skipped (made when seen again)")  # fmt: skip
    print(f"load average at the end: {load_average()}")


if __name__ == "__main__":
    main()
