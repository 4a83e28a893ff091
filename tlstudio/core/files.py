"""Walking folders the way imports do: every readable folder once, unreadable ones
reported instead of silently passed over."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


def walk_files(
    folder: Path,
    unreadable: Callable[[Path, str], None],
    *,
    recursive: bool = True,
    skip_folder: Callable[[Path], bool] = lambda folder: False,
) -> list[Path]:
    """Regular files in ``folder`` (and below it with ``recursive``), sorted by path.

    ``unreadable(folder, reason)`` is called for each folder that cannot be listed
    (``reason``: the system's words, e.g. "Permission denied"). Folders for which
    ``skip_folder`` is true are not entered. Symbolic links to folders are followed; a
    folder reached twice (a link cycle) is walked once."""
    found: list[Path] = []
    seen: set[tuple[int, int]] = set()

    def on_error(exc: OSError) -> None:
        unreadable(Path(exc.filename) if exc.filename else folder, exc.strerror or str(exc))

    for dirpath, dirnames, filenames in os.walk(folder, onerror=on_error, followlinks=True):
        here = Path(dirpath)
        try:
            st = os.stat(here)
        except OSError:
            dirnames[:] = []
            continue
        if (st.st_dev, st.st_ino) in seen:
            dirnames[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        dirnames[:] = [d for d in dirnames if not skip_folder(here / d)] if recursive else []
        found += [here / name for name in filenames if _is_file(here / name)]
    return sorted(found)


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:
        return False
