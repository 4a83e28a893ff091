"""Benchmark of the labelling canvas on big images (run on demand; prints figures,
asserts nothing).

    QT_QPA_PLATFORM=offscreen python tests/bench/bench_canvas.py [--width 4000 --height 3000]
        [--moves 500] [--interval 4] [--pairs 3] [--brush 60]

Builds a project with an RGB PNG (with a stored multi-class mask), a 16-bit grey PNG
and an RGB JPEG of the given size in a temporary folder, shows them in a 1280×900
canvas and prints:

- display: ms from ``AppState.set_image`` to the end of the first viewport paint
  with pixels, decoded on the GUI thread, in the background, from the cache; for the
  JPEG also with and without the reduced-resolution preview (time to first pixels
  and to the full image);
- window/level re-render time of the 16-bit image;
- brush strokes (``--moves`` mouse moves, one every ``--interval`` ms, at the zoom
  where the whole image is on screen), in two comparisons:
  painting: dirty-rectangle overlay updates (the canvas's way) vs a full overlay
  re-render per move; commit: the stroke stored from the GUI thread (PNG encode and
  class count in the release handler, as before the MaskWriter) vs by the
  MaskWriter (encoded in a worker thread).

Every comparison runs its two ways interleaved (A, B, A, B, …; ``--pairs`` pairs)
and prints each run's wall and CPU time (process, and the GUI thread alone), the
16 ms timer's p99 lateness and longest stall (goals: p99 ≤ 50 ms, no stall > 250 ms)
and the load average, then the per-pair ratios B/A (min / median / max). Nothing is
timed against a deadline: on a slow machine it only takes longer.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PySide6.QtCore import QEvent, QEventLoop, Qt, QTimer
from PySide6.QtGui import QMouseEvent
from PySide6.QtWidgets import QApplication

from tlstudio.core.imageio import read_image
from tlstudio.core.project import Project
from tlstudio.gui.canvas import CanvasView
from tlstudio.gui.canvas.loader import render_display
from tlstudio.gui.state import AppState

P99_GOAL_MS, STALL_GOAL_MS = 50.0, 250.0
GIVE_UP_S = 3600.0  # a run still going after an hour is reported as unfinished


def make_images(folder: Path, w: int, h: int) -> tuple[Path, Path, Path, np.ndarray]:
    """An RGB PNG, a 16-bit grey PNG, an RGB JPEG, and a blobby 3-class label map."""
    rng = np.random.default_rng(0)
    small = rng.integers(0, 255, (h // 50 + 2, w // 50 + 2, 3), dtype=np.uint8)
    rgb = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    rgb = cv2.add(rgb, rng.integers(0, 20, rgb.shape, dtype=np.uint8))
    rgb_path, jpeg_path = folder / "big_rgb.png", folder / "big_photo.jpg"
    cv2.imwrite(str(rgb_path), rgb)
    cv2.imwrite(str(jpeg_path), cv2.GaussianBlur(rgb, (0, 0), 3), [cv2.IMWRITE_JPEG_QUALITY, 92])
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    grey = 2000 + 30000 * np.exp(-((x - w / 2) ** 2 + (y - h / 2) ** 2) / (0.1 * w * h))
    grey = (grey + rng.normal(0, 300, grey.shape)).clip(0, 65535).astype(np.uint16)
    grey_path = folder / "big_grey16.png"
    cv2.imwrite(str(grey_path), grey)
    noise = cv2.resize(rng.random((h // 40 + 2, w // 40 + 2)).astype(np.float32), (w, h))
    label = np.digitize(noise, [0.55, 0.7, 0.85]).astype(np.uint16)  # 0 background, 1..3
    return rgb_path, grey_path, jpeg_path, label


class TimedCanvas(CanvasView):
    """The canvas, noting when each viewport paint finished and how long it took."""

    def __init__(self, state: AppState):
        super().__init__(state)
        self.paints: list[float] = []
        self.paint_ms: list[float] = []

    def paintEvent(self, event) -> None:
        t = time.perf_counter()
        super().paintEvent(event)
        self.paints.append(time.perf_counter())
        self.paint_ms.append((self.paints[-1] - t) * 1000)


_tick = QTimer()  # wakes the waiting loop now and then; events wake it at once


def wait_until(predicate: Callable[[], object], timeout_s: float = GIVE_UP_S) -> bool:
    """Run the event loop (sleeping between events, as exec() does) until ``predicate()``;
    False (never an exception) when ``timeout_s`` passed first."""
    loop = QEventLoop()
    if not _tick.isActive():
        _tick.start(5)
    deadline = time.perf_counter() + timeout_s
    while not predicate():
        if time.perf_counter() > deadline:
            return False
        loop.processEvents(QEventLoop.ProcessEventsFlag.WaitForMoreEvents)
    return True


class Probe:
    """A 16 ms PreciseTimer whose ticks tell how late the event loop ran."""

    def __init__(self) -> None:
        self.ticks: list[float] = []
        self.timer = QTimer()
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(16)
        self.timer.timeout.connect(lambda: self.ticks.append(time.perf_counter()))

    def start(self) -> None:
        self.ticks = [time.perf_counter()]
        self.timer.start()

    def stop(self) -> None:
        self.timer.stop()
        self.ticks.append(time.perf_counter())  # a stall up to now counts too

    def between(self, t0: float, t1: float) -> tuple[float, float]:
        """(p99 lateness, longest stall) in ms of the ticks from t0 to t1: lateness is a
        tick interval minus 16 ms; a stall is the longest interval without a tick."""
        ts = [t for t in self.ticks if t0 <= t <= t1]
        ts = [t0, *ts, t1]
        gaps = sorted((b - a) * 1000 for a, b in zip(ts, ts[1:], strict=False))
        late = [max(g - 16, 0.0) for g in gaps]
        p99 = late[min(len(late) - 1, int(0.99 * len(late)))] if late else 0.0
        return p99, (gaps[-1] if gaps else 0.0)


@dataclass
class Run:
    """One measured run: its figures by name, and whether it finished."""

    figures: dict[str, float] = field(default_factory=dict)
    finished: bool = True


def clocks() -> tuple[float, float, float]:
    return time.perf_counter(), time.process_time(), time.thread_time()


def since(start: tuple[float, float, float]) -> dict[str, float]:
    wall, cpu, gui = clocks()
    return {"wall_s": wall - start[0], "cpu_s": cpu - start[1], "gui_cpu_s": gui - start[2]}


def load_average() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


# -- display ------------------------------------------------------------------------------------


def time_display(view: TimedCanvas, state: AppState, image_id: int) -> Run:
    """From set_image (run from the event loop, as a browser click would) to the end of
    the first paint with the full image; also to the first paint with any pixels."""
    state.set_image(None)
    wait_until(lambda: True)
    marks: dict[str, float] = {}
    layer = view.image_layer
    on_preview = lambda: marks.setdefault("preview", time.perf_counter())  # noqa: E731
    on_loaded = lambda _id: marks.setdefault("full", time.perf_counter())  # noqa: E731
    layer.preview_shown.connect(on_preview)
    view.image_loaded.connect(on_loaded)
    probe = Probe()
    probe.start()
    start = clocks()
    QTimer.singleShot(0, lambda: state.set_image(image_id))
    ok = wait_until(lambda: "full" in marks and view.paints and view.paints[-1] >= marks["full"])
    full = view.paints[-1] if ok else time.perf_counter()
    first = full
    if "preview" in marks:
        first = next((p for p in view.paints if p >= marks["preview"]), full)
    probe.stop()
    layer.preview_shown.disconnect(on_preview)
    view.image_loaded.disconnect(on_loaded)
    _, stall = probe.between(start[0], full)
    figures = since(start)
    figures.update(first_ms=(first - start[0]) * 1000, full_ms=(full - start[0]) * 1000)
    figures.update(stall_ms=stall, paint_ms=view.paint_ms[-1])
    return Run(figures, ok)


# -- strokes ------------------------------------------------------------------------------------


def stroke(view: CanvasView, moves: int, interval_ms: int) -> Run:
    """Drive one brush stroke from timers and wait until it is stored; measure the
    16 ms timer while brushing and while the stroke is committed (release to stored)."""
    w, h = view.navigator.image_size
    path = [
        (w * (0.05 + 0.9 * i / moves), h * (0.5 + 0.35 * np.sin(i / moves * 6 * np.pi)))
        for i in range(moves + 1)
    ]
    vp = view.viewport()
    left, none = Qt.MouseButton.LeftButton, Qt.MouseButton.NoButton

    def send(kind, x, y, button, buttons) -> None:
        local = view.image_to_view(x, y)
        ev = QMouseEvent(kind, local, local, button, buttons, Qt.KeyboardModifier.NoModifier)
        QApplication.sendEvent(vp, ev)

    handler: list[float] = []
    marks: dict[str, float] = {}
    state = {"i": 0}
    driver = QTimer()
    driver.setTimerType(Qt.TimerType.PreciseTimer)
    driver.setInterval(interval_ms)

    def step() -> None:
        i = state["i"]
        t = time.perf_counter()
        if i == 0:
            send(QEvent.Type.MouseButtonPress, *path[0], left, left)
        elif i <= moves:
            send(QEvent.Type.MouseMove, *path[i], none, left)
        else:
            driver.stop()
            marks["release"] = t
            send(QEvent.Type.MouseButtonRelease, *path[-1], left, none)
            marks["release_done"] = time.perf_counter()
            return
        handler.append((time.perf_counter() - t) * 1000)
        state["i"] = i + 1

    driver.timeout.connect(step)
    probe = Probe()
    probe.start()
    start = clocks()
    driver.start()
    ok = wait_until(lambda: "release_done" in marks and not view.mask_writer.busy)
    stored = time.perf_counter()
    wait_until(lambda: time.perf_counter() > stored + 0.1)  # ticks right after count too
    probe.stop()
    figures = since(start)
    release = marks.get("release", stored)
    brush_p99, brush_stall = probe.between(start[0], release)
    commit_p99, commit_stall = probe.between(release, stored + 0.1)
    figures.update(
        move_ms=statistics.mean(handler[1:]) if len(handler) > 1 else float("nan"),
        brush_p99_ms=brush_p99,
        brush_stall_ms=brush_stall,
        release_ms=(marks.get("release_done", stored) - release) * 1000,
        stored_ms=(stored - release) * 1000,
        commit_p99_ms=commit_p99,
        commit_stall_ms=commit_stall,
    )
    return Run(figures, ok)


# -- reporting ------------------------------------------------------------------------------------


def interleave(
    pairs: int, ways: tuple[tuple[str, Callable[[], Run]], tuple[str, Callable[[], Run]]]
) -> dict[str, list[Run]]:
    """Run the two ways A, B, A, B, … and collect their runs."""
    runs: dict[str, list[Run]] = {name: [] for name, _ in ways}
    for k in range(pairs):
        for name, fn in ways:
            run = fn()
            run.figures["load1"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
            runs[name].append(run)
            note = "" if run.finished else "  (did not finish: figures up to the give-up)"
            print(f"    pair {k + 1} {name:22s} {fmt(run.figures)}{note}", flush=True)
    return runs


def fmt(f: dict[str, float]) -> str:
    order = ("wall_s", "cpu_s", "gui_cpu_s", "first_ms", "full_ms", "stall_ms", "move_ms",
             "brush_p99_ms", "brush_stall_ms", "release_ms", "stored_ms", "commit_p99_ms",
             "commit_stall_ms", "load1")  # fmt: skip
    return "  ".join(f"{k} {f[k]:.3g}" for k in order if k in f)


def ratios(runs: dict[str, list[Run]], keys: tuple[str, ...]) -> None:
    """Per-pair ratios B/A of ``keys``: min / median / max."""
    (a_name, a_runs), (b_name, b_runs) = runs.items()
    print(f"  ratio {b_name} / {a_name} per pair (min / median / max):")
    for key in keys:
        rs = [
            b.figures[key] / a.figures[key]
            for a, b in zip(a_runs, b_runs, strict=True)
            if a.figures.get(key) and key in b.figures
        ]
        if rs:
            print(f"    {key:16s} {min(rs):7.2f} / {statistics.median(rs):7.2f} / {max(rs):7.2f}")


def goals(runs: dict[str, list[Run]], p99_key: str, stall_key: str) -> None:
    for name, rs in runs.items():
        p99 = max(r.figures[p99_key] for r in rs)
        stall = max(r.figures[stall_key] for r in rs)
        ok = "meets" if p99 <= P99_GOAL_MS and stall <= STALL_GOAL_MS else "misses"
        print(
            f"  {name:22s} worst p99 lateness {p99:6.0f} ms, longest stall {stall:6.0f} ms: "
            f"{ok} the goal (p99 ≤ {P99_GOAL_MS:.0f}, stall ≤ {STALL_GOAL_MS:.0f})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=4000)
    parser.add_argument("--height", type=int, default=3000)
    parser.add_argument("--moves", type=int, default=500)
    parser.add_argument("--interval", type=int, default=4, help="ms between mouse moves")
    parser.add_argument("--pairs", type=int, default=3, help="A/B pairs per comparison")
    parser.add_argument("--brush", type=int, default=60, help="brush diameter, image px")
    args = parser.parse_args()

    app = QApplication.instance() or QApplication([])  # noqa: F841 (keeps it alive)
    print(f"load average at start: {load_average()}   cores: {os.cpu_count()}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t = time.perf_counter()
        rgb_path, grey_path, jpeg_path, label = make_images(tmp, args.width, args.height)
        project = Project.create(tmp / "proj")
        ids = project.add_images([rgb_path, grey_path, jpeg_path]).added
        classes = [project.add_class(n).id for n in ("paint", "b", "c")]
        project.set_mask(ids[0], np.take(np.array([0, *classes], np.uint16), label))
        print(f"setup (write + import 3 images, store a mask): {time.perf_counter() - t:.1f} s")

        state = AppState()
        state.open_project(project)
        view = TimedCanvas(state)
        view.resize(1280, 900)
        view.show()
        wait_until(lambda: True)

        print(
            f"\n== display {args.width}×{args.height} (ms): set_image -> end of the first "
            "paint with the full image; longest 16 ms timer stall meanwhile"
        )
        for name, path, iid in (("RGB PNG", rgb_path, ids[0]), ("grey 16-bit PNG", grey_path,
                                ids[1]), ("RGB JPEG", jpeg_path, ids[2])):  # fmt: skip
            t = time.perf_counter()
            data = read_image(path)
            decode = (time.perf_counter() - t) * 1000
            t = time.perf_counter()
            render_display(data.array, data.window)
            render = (time.perf_counter() - t) * 1000
            print(f"  {name}: decode {decode:.0f}, window + colour conversion {render:.0f}")
            for label_, sync in (("GUI thread", True), ("background", False), ("cached", None)):
                if sync is not None:
                    view.sync_max_pixels = 10**12 if sync else 0
                    view.image_layer.cache.clear()
                r = time_display(view, state, iid)
                print(f"    {label_:11s} {fmt(r.figures)}")
        view.sync_max_pixels = 0

        def jpeg(preview: bool) -> Callable[[], Run]:
            def run() -> Run:
                view.image_layer.preview = preview
                view.image_layer.cache.clear()
                return time_display(view, state, ids[2])

            return run

        print("  RGB JPEG in the background, without and with the reduced preview (A, B, …):")
        runs = interleave(
            args.pairs, (("full decode only", jpeg(False)), ("preview first", jpeg(True)))
        )
        ratios(runs, ("first_ms", "full_ms", "cpu_s"))
        view.image_layer.preview = True

        state.set_image(ids[1])
        wait_until(lambda: view.image_ready)
        wl = []
        for k in range(5):
            t = time.perf_counter()
            view.set_window(20000 + 500 * k, 15000)
            wl.append((time.perf_counter() - t) * 1000)
        view.reset_window()
        print(
            f"\nwindow/level re-render of the 16-bit image (set_window): {statistics.median(wl):.1f} ms"
        )

        state.set_image(ids[0])
        wait_until(lambda: view.image_ready)
        state.set_tool("mask")
        view.set_brush_size(args.brush)
        print(
            f"\n== brush strokes on the RGB image with its mask: {args.moves} moves every "
            f"{args.interval} ms, brush {args.brush} px, zoom {view.zoom():.2f}"
        )

        def brush(incremental: bool, blocking: bool) -> Callable[[], Run]:
            def run() -> Run:
                view.mask_item.incremental = incremental
                view.mask_writer.blocking = blocking
                r = stroke(view, args.moves, args.interval)
                state.undo_stack.undo()  # back to the stored mask for the next run
                wait_until(lambda: not view.mask_writer.busy)
                return r

            return run

        print("  painting: dirty rectangles (the canvas) vs a full overlay re-render per move")
        runs = interleave(
            args.pairs,
            (("dirty rect", brush(True, False)), ("full re-render", brush(False, False))),
        )
        ratios(runs, ("move_ms", "wall_s", "cpu_s", "gui_cpu_s", "brush_p99_ms"))
        goals(runs, "brush_p99_ms", "brush_stall_ms")
        print("  commit: stored from the GUI thread (as before) vs by the MaskWriter's thread")
        runs = interleave(
            args.pairs,
            (
                ("GUI thread (before)", brush(True, True)),
                ("MaskWriter (after)", brush(True, False)),
            ),
        )
        ratios(runs, ("release_ms", "commit_stall_ms", "stored_ms", "cpu_s", "gui_cpu_s"))
        goals(runs, "commit_p99_ms", "commit_stall_ms")
        print(
            "(ms unless _s; cpu_s = process CPU, gui_cpu_s = GUI thread CPU; release_ms = the "
            "release handler, stored_ms = release until the mask is in the store)"
        )
        print(f"load average at the end: {load_average()}")
        view.close()
        state.close_project()


if __name__ == "__main__":
    main()
