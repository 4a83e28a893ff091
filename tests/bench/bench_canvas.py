"""Benchmark of the labelling canvas on big images (run on demand; prints figures,
asserts nothing).

    QT_QPA_PLATFORM=offscreen python tests/bench/bench_canvas.py [--width 4000 --height 3000]
        [--moves 500] [--interval 4]

Builds a project with one RGB (8-bit) and one 16-bit grey image of the given
size in a temporary folder and shows them in a 1280×900 canvas. Prints:

- time to display each image: from ``AppState.set_image`` until the first paint
  of the viewport that shows the pixels, decoded on the GUI thread and in the
  background thread (the canvas's two ways), and again from the decoded-image cache;
  plus what that time is made of (decode, window + colour conversion);
- window/level re-render time on the 16-bit image (``set_window``);
- a long brush stroke (``--moves`` mouse moves, one every ``--interval`` ms, at
  the fit-to-window zoom where the whole image is on screen), painted twice: with
  dirty-rectangle overlay updates (the canvas's way) and with a full overlay
  re-render per move. For each: the event-loop lateness of a 16 ms precise
  QTimer during the stroke (median, p95, max), the mean time to handle one mouse
  move, and the time of the mouse release (one SetMask command, PNG-compressed
  into SQLite).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
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


def make_images(folder: Path, w: int, h: int) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    small = rng.integers(0, 255, (h // 50 + 2, w // 50 + 2, 3), dtype=np.uint8)
    rgb = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    rgb = cv2.add(rgb, rng.integers(0, 20, rgb.shape, dtype=np.uint8))
    rgb_path = folder / "big_rgb.png"
    cv2.imwrite(str(rgb_path), rgb)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    grey = 2000 + 30000 * np.exp(-((x - w / 2) ** 2 + (y - h / 2) ** 2) / (0.1 * w * h))
    grey = (grey + rng.normal(0, 300, grey.shape)).clip(0, 65535).astype(np.uint16)
    grey_path = folder / "big_grey16.png"
    cv2.imwrite(str(grey_path), grey)
    return rgb_path, grey_path


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


def wait_until(predicate, timeout_s: float = 30.0) -> None:
    """Run the event loop (sleeping between events, as exec() does) until ``predicate()``."""
    loop = QEventLoop()
    if not _tick.isActive():
        _tick.start(5)
    deadline = time.perf_counter() + timeout_s
    while not predicate():
        if time.perf_counter() > deadline:
            raise TimeoutError("the canvas did not get there in time")
        loop.processEvents(QEventLoop.ProcessEventsFlag.WaitForMoreEvents)


def time_display(view: TimedCanvas, state: AppState, image_id: int) -> tuple[float, float, float]:
    """ms from set_image until the end of the first viewport paint with the pixels
    shown, ms that paint took, and the longest stall of a 16 ms timer meanwhile."""
    state.set_image(None)
    wait_until(lambda: True)
    loaded: list[float] = []
    view.image_loaded.connect(lambda _id: loaded.append(time.perf_counter()))
    ticks: list[float] = []
    probe = QTimer()
    probe.setTimerType(Qt.TimerType.PreciseTimer)
    probe.timeout.connect(lambda: ticks.append(time.perf_counter()))
    probe.start(16)
    t0 = time.perf_counter()
    # set_image runs from the event loop, as a click in the browser would
    QTimer.singleShot(0, lambda: state.set_image(image_id))
    wait_until(lambda: loaded and view.paints and view.paints[-1] >= loaded[0])
    done = view.paints[-1]
    wait_until(lambda: ticks and ticks[-1] > done)
    probe.stop()
    view.image_loaded.disconnect()
    stamps = [t0, *ticks]
    stall = max((b - a) * 1000 - 16 for a, b in zip(stamps, stamps[1:], strict=False))
    return (done - t0) * 1000, view.paint_ms[-1], stall


def stroke(view: CanvasView, moves: int, interval_ms: int) -> dict[str, float]:
    """Drive one brush stroke from timers; measure a 16 ms timer's lateness meanwhile."""
    w, h = view.image_size()
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

    ticks: list[float] = []
    handler: list[float] = []
    release_ms = [0.0]
    state = {"i": 0, "done": False}

    probe = QTimer()
    probe.setTimerType(Qt.TimerType.PreciseTimer)
    probe.setInterval(16)
    probe.timeout.connect(lambda: ticks.append(time.perf_counter()))

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
            send(QEvent.Type.MouseButtonRelease, *path[-1], left, none)
            release_ms[0] = (time.perf_counter() - t) * 1000
            driver.stop()
            probe.stop()
            state["done"] = True
            return
        handler.append((time.perf_counter() - t) * 1000)
        state["i"] = i + 1

    driver.timeout.connect(step)
    t_start = time.perf_counter()
    probe.start()
    driver.start()
    wait_until(lambda: state["done"], 120)
    total = time.perf_counter() - t_start
    late = [(b - a) * 1000 - 16 for a, b in zip(ticks, ticks[1:], strict=False)]
    late.sort()
    return {
        "lateness_median": statistics.median(late),
        "lateness_p95": late[min(len(late) - 1, int(0.95 * len(late)))],
        "lateness_max": late[-1],
        "move_ms": statistics.mean(handler[1:]),
        "release_ms": release_ms[0],
        "stroke_s": total,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=4000)
    parser.add_argument("--height", type=int, default=3000)
    parser.add_argument("--moves", type=int, default=500)
    parser.add_argument("--interval", type=int, default=4, help="ms between mouse moves")
    args = parser.parse_args()

    app = QApplication.instance() or QApplication([])  # noqa: F841 (keeps it alive)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t = time.perf_counter()
        rgb_path, grey_path = make_images(tmp, args.width, args.height)
        project = Project.create(tmp / "proj")
        ids = project.add_images([rgb_path, grey_path]).added
        project.add_class("paint", "#e15759")
        print(f"setup (write + import 2 images): {time.perf_counter() - t:.1f} s")

        state = AppState()
        state.open_project(project)
        view = TimedCanvas(state)
        view.resize(1280, 900)
        view.show()
        wait_until(lambda: True)

        print(
            f"\n== display {args.width}×{args.height}: set_image -> end of the first paint "
            "with pixels, and the longest stall of a 16 ms timer meanwhile (ms)"
        )
        for name, path, iid in (
            ("RGB 8-bit", rgb_path, ids[0]),
            ("grey 16-bit", grey_path, ids[1]),
        ):
            t = time.perf_counter()
            data = read_image(path)
            decode = (time.perf_counter() - t) * 1000
            t = time.perf_counter()
            render_display(data.array, data.window)
            render = (time.perf_counter() - t) * 1000
            rows = []
            for label, sync in (("GUI thread", True), ("background", False)):
                view.sync_max_pixels = 10**12 if sync else 0
                view.image_layer.cache.clear()
                rows.append((label, *time_display(view, state, iid)))
            rows.append(("cached", *time_display(view, state, iid)))
            print(
                f"{name:12s} decode {decode:4.0f}, window+convert {render:3.0f}, "
                f"one full-view paint {rows[-1][2]:3.0f}"
            )
            for label, ms, _, stall in rows:
                print(f"    {label:11s} shown after {ms:6.0f}   GUI stalled up to {stall:6.0f}")

        wl = []
        for k in range(5):
            t = time.perf_counter()
            view.set_window(20000 + 500 * k, 15000)
            wl.append((time.perf_counter() - t) * 1000)
        print(
            f"window/level re-render of the 16-bit image (set_window): {statistics.median(wl):.1f} ms"
        )

        print(
            f"\n== brush stroke, {args.moves} moves every {args.interval} ms, brush 60 px, "
            f"zoom {view.navigator.fit_scale():.2f} (whole image on screen)"
        )
        state.set_image(ids[0])
        wait_until(lambda: view.image_ready)
        state.set_tool("mask")
        view.set_brush_size(60)
        results = {}
        for label, incremental in (("dirty rect", True), ("full re-render", False)):
            view.mask_item.incremental = incremental
            results[label] = stroke(view, args.moves, args.interval)
            state.undo_stack.undo()  # back to no mask for the next way
            wait_until(lambda: True)
        view.mask_item.incremental = True
        print(
            f"{'':16s} {'late med':>9s} {'p95':>7s} {'max':>7s}   "
            f"{'per move':>9s} {'release':>8s} {'stroke':>7s}"
        )
        for label, r in results.items():
            print(
                f"{label:16s} {r['lateness_median']:9.1f} {r['lateness_p95']:7.1f} "
                f"{r['lateness_max']:7.1f}   {r['move_ms']:9.2f} {r['release_ms']:8.0f} "
                f"{r['stroke_s']:6.1f}s"
            )
        print("(timer lateness and per-move times in ms; release = SetMask push incl. PNG)")
        view.close()
        state.close_project()


if __name__ == "__main__":
    main()
