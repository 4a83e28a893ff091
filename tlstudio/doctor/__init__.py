"""``tlstudio doctor``: check what the window and training need, and say how to fix what
is missing.

Each check is a :class:`Check` (ok, warn or FAIL, what was found, the fix). Sections:
the Qt window system (:mod:`.qt`: platform plugin, its system libraries, display,
OpenGL), PyTorch and the compute device, bundled weights (:mod:`.ml`), storage and
DICOM codecs (:mod:`.system`). Modules here import stdlib only at load time, so the
doctor runs even when PySide6 or torch is broken; each check imports what it tests.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

OK, WARN, FAIL = "ok", "warn", "FAIL"


@dataclass(frozen=True)
class Check:
    """One finding: ``status`` is OK, WARN (works, with a limit) or FAIL (a feature of
    tlstudio cannot work); ``fix`` says what to do (empty when nothing needs doing)."""

    section: str
    name: str
    status: str
    detail: str
    fix: str = ""


def self_command(*args: str) -> list[str]:
    """The command line that runs ``tlstudio *args`` with this interpreter (or, in the
    frozen build, this executable)."""
    if getattr(sys, "frozen", False):
        return [sys.executable, *args]
    return [sys.executable, "-m", "tlstudio", *args]


def format_checks(checks: Iterable[Check]) -> str:
    """The checks as text: a heading per section, one line per check, its fix below."""
    lines: list[str] = []
    section = None
    for check in checks:
        if check.section != section:
            section = check.section
            lines.append(("\n" if lines else "") + section)
        lines.append(f"  {check.status:<5} {check.name}: {check.detail}")
        if check.fix and check.status != OK:
            lines.extend(f"        fix: {line}" if i == 0 else f"             {line}"
                         for i, line in enumerate(check.fix.splitlines()))  # fmt: skip
    return "\n".join(lines)


def all_checks(project_dir: Path | None = None, plugin: Path | None = None) -> list[Check]:
    """Every check, in the order they print (starts Qt and imports torch: a few seconds)."""
    from . import ml, qt, system

    checks = qt.qt_checks(plugin=plugin, probe=True)
    checks += ml.torch_checks()
    checks += ml.weights_checks()
    checks += system.storage_checks(project_dir)
    checks += system.dicom_checks()
    return checks


def run_doctor(
    project_dir: Path | None = None, plugin: Path | None = None, out: TextIO | None = None
) -> int:
    """Print every check on ``out`` (stdout); 0 when nothing FAILs, else 1."""
    out = out or sys.stdout
    checks = all_checks(project_dir, plugin)
    failed = [c for c in checks if c.status == FAIL]
    warned = [c for c in checks if c.status == WARN]
    print(format_checks(checks), file=out)
    verdict = f"{len(failed)} problem(s) to fix" if failed else "everything tlstudio needs is here"
    print(f"\n{verdict}; {len(warned)} warning(s).", file=out)
    return 1 if failed else 0


def add_command(sub: argparse._SubParsersAction) -> None:
    """The ``doctor`` subcommand (and the hidden ``--probe-qt`` that the doctor runs in a
    child process to start Qt without risking its own process)."""
    p = sub.add_parser(
        "doctor",
        help="check Qt, PyTorch, the GPU, weights, storage and codecs; print fixes",
        description="Check what the window and training need and say how to fix what is "
        "missing. Exit status 0 when nothing fails, 1 otherwise.",
    )
    p.add_argument(
        "dir", metavar="DIR", nargs="?", type=Path,
        help="also check this project folder's cache and free disk space",
    )  # fmt: skip
    p.add_argument(
        "--platform-plugin", metavar="FILE", type=Path,
        help="check this Qt platform plugin file instead of the one Qt would load",
    )  # fmt: skip
    p.add_argument("--probe-qt", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(run=_cmd_doctor)


def _cmd_doctor(args: argparse.Namespace) -> int:
    if args.probe_qt:
        from .qt import probe_main

        return probe_main()
    return run_doctor(args.dir, args.platform_plugin)
