"""One CPU thread budget per process: the policy (torch-free, Qt-free).

Every compute path reads its thread counts from one :class:`ThreadBudget`: torch's
intra-op and inter-op threads (applied by :mod:`tlstudio.ml.threads`, the only caller of
``torch.set_num_threads``), onnxruntime's session threads, the DataLoader worker
processes of training and feature extraction, and the image-reading threads of
prediction. The entry points set it once (:func:`configure`): the CLI from ``--threads N``
or the ``TLSTUDIO_THREADS`` environment variable, the window from its "CPU threads" setting.
Library use (tests, scripts) configures nothing, and then nothing touches torch's setting.

Defaults: the window leaves one core to the GUI thread (``cores - 1``, at least 1); the
command line uses every core this process may run on. With 4 or more threads a quarter
(at most 4) go to DataLoader workers and the rest to intra-op compute, so the two never
add up to more than the budget; torch's inter-op pool gets 1 thread (nothing in tlstudio
runs inter-op parallel work; torch's default is one idle thread per core).

:func:`prepare_environment` (called by the entry points before torch is imported) makes
OpenMP's idle threads sleep instead of spinning (``OMP_WAIT_POLICY=PASSIVE``) unless the
user set a policy: on a busy machine spinning threads wait for cores that other programs
hold (one EfficientNet-Lite0 forward on a loaded 2-core machine took 280 ms with 2
spinning threads, 50 ms passive; ``tests/bench/bench_threads.py`` prints the comparison).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from tlstudio.core.errors import ValidationError

ENV_VAR = "TLSTUDIO_THREADS"
"""Environment variable: the command line's thread budget (a number; 0 = default)."""

WAIT_POLICY_VAR = "OMP_WAIT_POLICY"


@dataclass(frozen=True)
class ThreadBudget:
    """CPU threads one process gives its compute.

    ``threads``: intra-op threads of torch and onnxruntime; ``interop``: torch's inter-op
    threads; ``loader_workers``: DataLoader worker processes (0: images are read in the
    compute thread); ``readers``: image-reading threads of prediction; ``total``: the
    budget they were cut from (``threads + loader_workers``); ``source``: where the
    number came from, in words."""

    threads: int
    interop: int
    loader_workers: int
    readers: int
    total: int
    source: str


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the system has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS, Windows
        return os.cpu_count() or 1


def default_threads(cores: int | None = None, *, gui: bool) -> int:
    """The budget when the user set none: every core for the command line; one core
    fewer in the window, so the GUI thread keeps one (on 2 cores: 1)."""
    cores = available_cores() if cores is None else max(1, int(cores))
    return max(1, cores - 1) if gui else cores


def plan(threads: int | None = None, *, gui: bool, cores: int | None = None) -> ThreadBudget:
    """The budget for ``threads`` CPU threads (None or 0: :func:`default_threads`),
    split between intra-op compute and DataLoader workers."""
    if threads is not None and threads < 0:
        raise ValidationError(f"threads must be 0 (automatic) or more, got {threads}")
    if threads:
        total, source = int(threads), "set by the user"
    else:
        total = default_threads(cores, gui=gui)
        n = available_cores() if cores is None else cores
        source = f"default: {n} cores" + (", one left for the window" if gui else "")
    workers = 0 if total < 4 else min(4, total // 4)
    return ThreadBudget(
        threads=total - workers,
        interop=1,
        loader_workers=workers,
        readers=1 if total < 4 else 2,
        total=total,
        source=source,
    )


_configured: ThreadBudget | None = None


def configure(threads: int | None = None, *, gui: bool) -> ThreadBudget:
    """Set the process's budget (see :func:`plan`) and return it. Only entry points call
    this: the CLI and the window."""
    global _configured
    _configured = plan(threads, gui=gui)
    return _configured


def configured() -> ThreadBudget | None:
    """The process's budget, or None when no entry point set one (library use)."""
    return _configured


def clear() -> None:
    """Forget the process's budget (back to library use: nothing is applied)."""
    global _configured
    _configured = None


def loader_workers() -> int:
    """DataLoader worker processes under the configured budget (0 without one)."""
    return 0 if _configured is None else _configured.loader_workers


def reader_threads() -> int:
    """Image-reading threads of prediction under the configured budget (1 without one)."""
    return 1 if _configured is None else _configured.readers


def threads_from_env(environ: dict[str, str] | None = None) -> int | None:
    """``TLSTUDIO_THREADS`` as a number (None when unset or empty); ValidationError naming
    the variable when it is not a whole number >= 0."""
    raw = (os.environ if environ is None else environ).get(ENV_VAR, "").strip()
    if not raw:
        return None
    if not raw.isdigit():
        raise ValidationError(f"{ENV_VAR}={raw!r}: give a whole number of threads (0 = automatic)")
    return int(raw)


def passive_waiting() -> bool:
    """True when idle compute threads should sleep rather than spin (the OpenMP wait
    policy is passive); onnxruntime's pool follows it."""
    return os.environ.get(WAIT_POLICY_VAR, "").strip().upper() == "PASSIVE"


def prepare_environment(budget: ThreadBudget | None = None) -> None:
    """Before torch (OpenMP) starts: idle OpenMP threads sleep rather than spin, unless
    the user chose a wait policy; with ``budget``, OpenMP's default thread count (every
    thread that runs torch work starts with it) is the budget's, unless the user set one."""
    os.environ.setdefault(WAIT_POLICY_VAR, "PASSIVE")
    if budget is not None:
        os.environ.setdefault("OMP_NUM_THREADS", str(budget.threads))
