"""Compiled bytecode for tlstudio's own modules when Python will not write it.

With ``PYTHONDONTWRITEBYTECODE`` set (or ``python -B``) Python compiles every module it
imports from source at every start and keeps nothing. pip compiles the packages it
installs, but an editable install (``pip install -e``) leaves the source tree alone, so
every start of the window paid for compiling tlstudio (a quarter of the time to a window
with rows; ``tests/bench/bench_window.py``). Python still *reads* bytecode that exists,
so compiling once is enough: the README's install line runs ``python -m compileall``, and
:func:`compile_in_background` does it after a start that found bytecode missing or older
than its source, in a separate low-priority process, for the next start.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1]


def stale_sources(package_dir: Path = PACKAGE_DIR) -> list[Path]:
    """The package's ``.py`` files whose bytecode is missing or older than the source."""
    stale = []
    for folder, dirs, files in os.walk(package_dir):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for name in files:
            if not name.endswith(".py"):
                continue
            source = Path(folder) / name
            try:
                compiled = Path(importlib.util.cache_from_source(str(source)))
                if compiled.stat().st_mtime < source.stat().st_mtime:
                    stale.append(source)
            except (OSError, NotImplementedError, ValueError):
                stale.append(source)
    return stale


def compile_in_background(package_dir: Path = PACKAGE_DIR) -> subprocess.Popen[bytes] | None:
    """When Python writes no bytecode and some of the package's is missing or stale, start
    ``python -m compileall`` on the package in a separate, low-priority process that
    outlives this one; return it (None when there is nothing to do, the folder is not
    writable, or this is a frozen build that carries its bytecode)."""
    if not sys.dont_write_bytecode or getattr(sys, "frozen", False):
        return None
    if not os.access(package_dir, os.W_OK) or not stale_sources(package_dir):
        return None
    command = [sys.executable, "-m", "compileall", "-q", str(package_dir)]
    try:
        return subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # not stopped by a Ctrl+C meant for the window
            preexec_fn=_lower_priority if hasattr(os, "nice") else None,
        )
    except OSError:  # no interpreter to start: the next start compiles in memory again
        return None


def _lower_priority() -> None:
    os.nice(10)
