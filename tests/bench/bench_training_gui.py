"""Does training in the worker thread keep the window smooth, and what does the open
window cost the training? (run on demand; prints figures, asserts nothing)

    QT_QPA_PLATFORM=offscreen python tests/bench/bench_training_gui.py
        [--images 48] [--size 96] [--input 64] [--epochs 2] [--batch 8] [--freeze 2]
        [--threads 1,2] [--pairs 2]

For each torch thread count it trains the same spec on a demo project twice:

- headless: ``runner.train`` on this thread with the thread budget of ``n`` threads
  (:func:`tlstudio.ml.threads.apply`);
- window: a shown :class:`TrainDock` (monitor tab visible, curves redrawing on their
  timer) starts the run through its :class:`TrainingController` with ``threads=n``, while
  a 16 ms QTimer on the GUI thread records how late each tick comes (actual interval minus
  16 ms).

An idle window is measured before and after the runs as the baseline; when the idle
window itself is late (p99 over 50 ms: the machine is busy with other work) the figures
are flagged as unreliable. Throughput is train images × epochs / the fit's own duration
(``FitEnded.duration_s``, validation and checkpoints included, the same in both ways),
with the process's CPU seconds beside the wall seconds of each run. The two ways run in
pairs (headless, window) ``--pairs`` times; printed: each run, the per-pair ratios
window/headless (min / median / max), and the lateness percentiles of all window runs of
a thread count pooled.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))
sys.path.insert(0, str(HERE))

from benchkit import cpu_seconds, load_average, print_header  # noqa: E402
from PySide6.QtCore import QEventLoop, Qt, QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

TICK_MS = 16
IDLE_P99_LIMIT_MS = 50.0  # an idle window later than this: the machine is too busy


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0, "median": 0.0, "p95": 0.0, "p99": 0.0, "max": 0.0}
    s = sorted(values)

    def q(p: float) -> float:
        return s[min(len(s) - 1, int(round(p * (len(s) - 1))))]

    return {"n": len(s), "median": statistics.median(s), "p95": q(0.95), "p99": q(0.99),
            "max": s[-1]}  # fmt: skip


class LatenessProbe:
    """A 16 ms precise QTimer on the GUI thread; ``lateness_ms`` = interval - 16 ms."""

    def __init__(self) -> None:
        self.timer = QTimer()
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(TICK_MS)
        self.timer.timeout.connect(self._tick)
        self.lateness_ms: list[float] = []
        self.at: list[float] = []  # perf_counter() of each measured tick
        self._last: float | None = None

    def start(self) -> None:
        self.lateness_ms.clear()
        self.at.clear()
        self._last = None
        self.timer.start()

    def stop(self) -> None:
        self.timer.stop()

    def _tick(self) -> None:
        now = time.perf_counter()
        if self._last is not None:
            self.lateness_ms.append(max(0.0, (now - self._last) * 1000 - TICK_MS))
            self.at.append(now)
        self._last = now


def spin(ms: int) -> None:
    loop = QEventLoop()
    QTimer.singleShot(ms, loop.quit)
    loop.exec()


def make_spec(args):
    from tlstudio.ml.runner import RunSpec
    from tlstudio.ml.trainer import TrainConfig

    return RunSpec(
        task="classify",
        backbone="resnet18",
        weights="none",
        input_size=args.input,
        train=TrainConfig(
            epochs=args.epochs, batch_size=args.batch, freeze=args.freeze, lr=1e-3, device="cpu"
        ),
    )


def headless(root: Path, args, threads: int) -> tuple[float, float]:
    """(images/s, process CPU seconds) of runner.train on this thread."""
    from tlstudio.core.project import Project
    from tlstudio.ml import runner
    from tlstudio.ml.threads import apply
    from tlstudio.runtime.threads import plan

    apply(plan(threads, gui=False))
    c0 = cpu_seconds()
    with Project.open(root) as project:
        result = runner.train(project, make_spec(args))
        n = len(project.images_in_split("train"))
    return n * result.ended.epochs_run / result.ended.duration_s, cpu_seconds() - c0


def windowed(
    dock, probe: LatenessProbe, args, threads: int
) -> tuple[float, float, dict[str, list[float]], dict]:
    """Images/s of a run started from the shown dock, the GUI-thread lateness during it
    by phase (setup: start to FitStarted, i.e. opening the project, building the model and
    data; training: FitStarted to FitEnded; wrap-up: saving the model, recording the run),
    and the monitor's redraw statistics."""
    from tlstudio.core.runs import RunStore

    dock.controller.threads = threads
    monitor = dock.monitor
    redraw_ms: list[float] = []
    real_redraw = monitor.redraw

    def timed_redraw() -> None:
        t0 = time.perf_counter()
        real_redraw()
        redraw_ms.append((time.perf_counter() - t0) * 1000)

    monitor.redraw = timed_redraw
    ended = []
    batches = [0]
    marks: dict[str, float] = {}
    dock.controller.fit_started.connect(lambda _e: marks.setdefault("fit", time.perf_counter()))
    dock.controller.fit_ended.connect(lambda _e: marks.setdefault("end", time.perf_counter()))
    dock.controller.fit_ended.connect(ended.append)
    dock.controller.batch_ended.connect(lambda _e: batches.__setitem__(0, batches[0] + 1))
    loop = QEventLoop()
    dock.controller.finished.connect(loop.quit)
    c0 = cpu_seconds()
    probe.start()
    assert dock.start(make_spec(args)), "the run did not start"
    loop.exec()
    probe.stop()
    cpu = cpu_seconds() - c0
    dock.controller.finished.disconnect(loop.quit)
    dock.controller.fit_ended.disconnect(ended.append)
    monitor.redraw = real_redraw
    fit = ended[-1]
    n = len(dock.app_state.project.images_in_split("train"))
    run = RunStore(dock.app_state.project).get(dock.controller.last_run_id)
    assert run.status == "finished", run
    stats = {
        "redraws": len(redraw_ms),
        "redraw_median_ms": statistics.median(redraw_ms) if redraw_ms else 0.0,
        "redraw_max_ms": max(redraw_ms, default=0.0),
        "batch_signals": batches[0],
        "used_threads": dock.controller.last_used_threads,
    }
    phases: dict[str, list[float]] = {"all": [], "setup": [], "training": [], "wrap-up": []}
    for t, late in zip(probe.at, probe.lateness_ms, strict=True):
        phase = "setup" if t < marks["fit"] else "training" if t < marks["end"] else "wrap-up"
        phases[phase].append(late)
        phases["all"].append(late)
    return n * fit.epochs_run / fit.duration_s, cpu, phases, stats


def fmt_lateness(p: dict) -> str:
    return (
        f"median {p['median']:5.1f}  p95 {p['p95']:5.1f}  p99 {p['p99']:6.1f}  "
        f"max {p['max']:6.1f} ms  ({p['n']} ticks)"
    )


def idle_baseline(probe: LatenessProbe, label: str) -> dict:
    probe.start()
    spin(2000)
    probe.stop()
    p = percentiles(probe.lateness_ms)
    healthy = p["p99"] <= IDLE_P99_LIMIT_MS
    print(f"idle window ({label}) lateness: {fmt_lateness(p)}"
          + ("" if healthy else f"  <- over {IDLE_P99_LIMIT_MS:.0f} ms while idle: the machine "
             "is busy with other work; the lateness figures below are not reliable"))  # fmt: skip
    return p


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=48)
    ap.add_argument("--size", type=int, default=96, help="demo image size (px)")
    ap.add_argument("--input", type=int, default=64, help="network input size (px)")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--freeze", type=int, default=2)
    ap.add_argument("--threads", default="1,2", help="thread counts to compare")
    ap.add_argument("--pairs", type=int, default=2, help="(headless, window) pairs per count")
    args = ap.parse_args()
    thread_counts = [int(t) for t in args.threads.split(",")]

    from tlstudio.runtime import threads

    threads.prepare_environment()  # as the window does, before torch starts
    import torch

    from tlstudio.core.demo import create_demo_project
    from tlstudio.core.project import Project
    from tlstudio.gui.state import AppState
    from tlstudio.gui.training.train_dock import TrainDock
    from tlstudio.gui.workers.jobs import wait_for_jobs

    _app = QApplication.instance() or QApplication(sys.argv)  # kept alive until the end
    tmp = Path(tempfile.mkdtemp(prefix="tlstudio_bench_gui_"))
    root = tmp / "demo"
    create_demo_project(root, n_images=args.images, size=args.size).close()
    print_header(
        f"{threads.available_cores()} cores, torch default {torch.get_num_threads()} threads, "
        f"window default {threads.default_threads(gui=True)}; {args.images} images "
        f"{args.size}px -> resnet18 @ {args.input}px, freeze {args.freeze}, batch {args.batch}, "
        f"{args.epochs} epochs, CPU"
    )

    state = AppState()
    state.open_project(Project.open(root))
    dock = TrainDock(state)
    dock.resize(1400, 700)
    dock.show()
    spin(300)
    dock.config.wait_ready()  # the configuration panel imports the ML modules
    probe = LatenessProbe()
    idle_before = idle_baseline(probe, "before the runs")
    headless(root, args, 1)  # warm-up (imports, allocator), not counted

    results = {}
    for n in thread_counts:
        pairs: list[tuple[float, float, float, float]] = []
        late: dict[str, list[float]] = {}
        stats: dict = {}
        for k in range(args.pairs):
            h_ips, h_cpu = headless(root, args, n)
            w_ips, w_cpu, phases, stats = windowed(dock, probe, args, n)
            pairs.append((h_ips, h_cpu, w_ips, w_cpu))
            print(f"  threads {n} pair {k + 1}: headless {h_ips:6.1f} img/s ({h_cpu:.1f} s CPU), "
                  f"window {w_ips:6.1f} img/s ({w_cpu:.1f} s CPU), load {load_average()}",
                  flush=True)  # fmt: skip
            for key, v in phases.items():
                late.setdefault(key, []).extend(v)
        results[n] = (pairs, {key: percentiles(v) for key, v in late.items()}, stats)
    idle_after = idle_baseline(probe, "after the runs")

    print()
    for n, (pairs, p, stats) in results.items():
        ratios = [w / h for h, _, w, _ in pairs]
        print(f"torch threads = {n} (worker used {stats['used_threads']})")
        print(f"  headless      median {statistics.median(h for h, _, _, _ in pairs):7.1f} img/s")
        print(f"  window open   median {statistics.median(w for _, _, w, _ in pairs):7.1f} img/s")
        print(f"  ratio window/headless per pair: {min(ratios):.2f} / "
              f"{statistics.median(ratios):.2f} / {max(ratios):.2f} (min / median / max)")  # fmt: skip
        for phase, pct in p.items():
            print(f"  GUI lateness  {phase:9s}{fmt_lateness(pct)}")
        print(
            f"  monitor       {stats['redraws']} redraws, median {stats['redraw_median_ms']:.1f} ms,"
            f" max {stats['redraw_max_ms']:.1f} ms; {stats['batch_signals']} batch_ended signals"
        )
    worst_idle = max(idle_before["p99"], idle_after["p99"])
    verdict = "healthy" if worst_idle <= IDLE_P99_LIMIT_MS else "NOT healthy: lateness unreliable"
    print(f"idle baseline p99 {worst_idle:.1f} ms: {verdict}; load average {load_average()}")
    dock.shutdown()
    wait_for_jobs()
    state.close_project()
    dock.close()


if __name__ == "__main__":
    main()
