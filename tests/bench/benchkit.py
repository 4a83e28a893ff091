"""What every bench here shares: two ways run interleaved (A, B, A, B, …), wall and CPU
time of each run, per-pair ratios B/A as min / median / max, the load average, and child
processes timed from their start. Nothing is timed against a deadline: on a slow machine
a bench only takes longer.

    from benchkit import Way, compare, print_header
    runs = compare(3, Way("plain", fn_a), Way("app", fn_b), keys=("wall_s", "cpu_s"))

A way's function returns a dict of figures (its own, e.g. ``images_per_s``); ``compare``
adds ``wall_s``, ``cpu_s`` (this process and its waited-for children) and ``load1``.
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

Figures = dict[str, float]


@dataclass(frozen=True)
class Way:
    """One way of doing the work: its name and a function that does it once."""

    name: str
    run: Callable[[], Figures]


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, or "n/a" where the system has none."""
    if not hasattr(os, "getloadavg"):
        return "n/a"
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def print_header(what: str) -> None:
    """The machine's cores and load before a bench starts."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"{what}\ncores: {cores}   load average (1, 5, 15 min): {load_average()}", flush=True)


def cpu_seconds() -> float:
    """CPU seconds (user + system) of this process and of its children that ended."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def timed(fn: Callable[[], Figures | None]) -> Figures:
    """Run ``fn`` once: its figures plus wall_s, cpu_s and load1 (at the end)."""
    w0, c0 = time.perf_counter(), cpu_seconds()
    figures = dict(fn() or {})
    figures.setdefault("wall_s", time.perf_counter() - w0)
    figures.setdefault("cpu_s", cpu_seconds() - c0)
    figures["load1"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return figures


def fmt(figures: Figures, keys: Sequence[str] | None = None) -> str:
    keys = list(figures) if keys is None else [k for k in keys if k in figures]
    return "  ".join(f"{k} {figures[k]:.4g}" for k in keys)


def compare(
    pairs: int, a: Way, b: Way, *, keys: Sequence[str] = ("wall_s", "cpu_s"), warmup: bool = False
) -> dict[str, list[Figures]]:
    """Run A, B, A, B, … (``pairs`` pairs; a warm-up pair first that is not counted when
    ``warmup``), print each run and then the per-pair ratios B/A of ``keys``."""
    if warmup:
        a.run()
        b.run()
    runs: dict[str, list[Figures]] = {a.name: [], b.name: []}
    for k in range(pairs):
        for way in (a, b):
            figures = timed(way.run)
            runs[way.name].append(figures)
            print(f"  pair {k + 1}  {way.name:<28} {fmt(figures)}", flush=True)
    print_ratios(runs, keys)
    return runs


def ratio_stats(a_runs: list[Figures], b_runs: list[Figures], key: str) -> list[float]:
    """B/A of ``key`` for each pair where both have it."""
    return [b[key] / a[key] for a, b in zip(a_runs, b_runs, strict=True) if a.get(key) and key in b]


def print_ratios(runs: dict[str, list[Figures]], keys: Sequence[str]) -> dict[str, list[float]]:
    """Print per-pair ratios B/A (min / median / max) of ``keys``; return them."""
    (a_name, a_runs), (b_name, b_runs) = runs.items()
    print(f"  ratio {b_name} / {a_name} per pair (min / median / max):")
    out = {}
    for key in keys:
        rs = ratio_stats(a_runs, b_runs, key)
        if rs:
            out[key] = rs
            print(f"    {key:<18} {min(rs):7.3f} / {statistics.median(rs):7.3f} / {max(rs):7.3f}")
    return out


def median_of(runs: list[Figures], key: str) -> float:
    values = [r[key] for r in runs if key in r]
    return statistics.median(values) if values else float("nan")


def run_child(
    args: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    marker: str | None = None,
    timeout_s: float = 3600.0,
) -> tuple[Figures, str]:
    """Run a child process from its start: (figures, its stdout). Figures: wall_s until it
    exits (with ``marker``, also marker_s: until it printed a line starting with it) and
    cpu_s, its CPU seconds. A child that fails or runs past ``timeout_s`` gives ``failed``
    = 1 instead of raising."""
    kids0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    figures: Figures = {}
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        if marker is not None and line.startswith(marker) and "marker_s" not in figures:
            figures["marker_s"] = time.perf_counter() - t0
        if time.perf_counter() - t0 > timeout_s:
            proc.kill()
            break
    try:
        _, err = proc.communicate(timeout=max(1.0, timeout_s - (time.perf_counter() - t0)))
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    figures["wall_s"] = time.perf_counter() - t0
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    figures["cpu_s"] = kids.ru_utime + kids.ru_stime - kids0.ru_utime - kids0.ru_stime
    if proc.returncode != 0 or (marker is not None and "marker_s" not in figures):
        figures["failed"] = 1.0
        tail = (err or "").strip().splitlines()[-3:]
        print(f"    child failed ({proc.returncode}): {' / '.join(tail)}", file=sys.stderr)
    return figures, "".join(lines)
