"""Copies of imported images wait in a staging folder until the rows that refer to them
are committed, so a killed import leaves neither orphan files in ``images/`` nor rows
without their file.

Layout: ``<project>/.staging/<id>.owner`` (the owning process, written first) and
``<project>/.staging/<id>/``. A file is copied in as ``.part-N``; inside the insert
transaction it is renamed to its final name (``<id>/<name>`` for ``images/<name>``), and
after the commit it is moved to ``images/``. :func:`sweep` (run when a project is opened
for editing) finishes what a dead owner left: a staged file whose row was committed is
moved in, everything else is deleted.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import sqlite3
from pathlib import Path

from .atomic import write_text_atomic
from .owner import ProcessOwner

STAGING = ".staging"
"""The staging folder's name inside the project folder."""
IMAGES = "images"
"""The folder (inside the project folder) that copied images end up in."""
_PART = ".part-"


class Staging:
    """One import's staging folder, owned by this process."""

    def __init__(self, root: Path):
        self.root = root
        base = root / STAGING
        base.mkdir(exist_ok=True)
        self.id = f"{os.getpid()}-{secrets.token_hex(4)}"
        self._owner_file = base / f"{self.id}.owner"
        write_text_atomic(self._owner_file, ProcessOwner.current().to_json())
        self.dir = base / self.id
        self.dir.mkdir()
        self._count = 0
        self._final: dict[Path, str] = {}  # staged file -> its name in images/

    def stage(self, src: Path) -> Path:
        """Copy ``src`` in (under a temporary name); return the staged file."""
        self._count += 1
        dest = self.dir / f"{_PART}{self._count}"
        shutil.copy2(src, dest)
        return dest

    def name(self, staged: Path, wanted: str, taken: set[str]) -> str:
        """Give ``staged`` its final name in ``images/``: ``wanted``, or ``stem_N.suffix`` if
        that name is in ``taken`` (names of rows), on disk or given to another file of this
        import. Returns the project-relative POSIX path (``images/<name>``). Call it inside
        the insert transaction, so the name cannot be taken by another import meanwhile."""
        images = self.root / IMAGES
        stem, suffix = Path(wanted).stem, Path(wanted).suffix
        name, n = wanted, 1
        given = set(self._final.values())
        while (
            name in given
            or f"{IMAGES}/{name}" in taken
            or (images / name).exists()
            or name.startswith(_PART)
        ):
            name = f"{stem}_{n}{suffix}"
            n += 1
        os.replace(staged, self.dir / name)
        self._final[self.dir / name] = name
        return f"{IMAGES}/{name}"

    def publish(self) -> None:
        """Move every named file into ``images/`` (after the commit) and remove the folder."""
        images = self.root / IMAGES
        images.mkdir(exist_ok=True)
        for staged, name in self._final.items():
            os.replace(staged, images / name)
        self._final.clear()
        self.discard()

    def discard(self) -> None:
        """Delete the folder and whatever is still in it (after a rollback, or when done)."""
        shutil.rmtree(self.dir, ignore_errors=True)
        with contextlib.suppress(OSError):
            self._owner_file.unlink()
        with contextlib.suppress(OSError):
            self.dir.parent.rmdir()  # only if empty: other imports may be staging


def sweep(root: Path, conn: sqlite3.Connection) -> int:
    """Finish the staging folders of processes that are gone: files whose ``images/<name>``
    row exists (the import committed) are moved in, all others deleted. Returns how many
    files were moved in."""
    base = root / STAGING
    if not base.is_dir():
        return 0
    moved = 0
    for entry in sorted(base.iterdir()):
        if not entry.is_dir():
            continue
        owner_file = base / f"{entry.name}.owner"
        try:
            owner = ProcessOwner.from_json(owner_file.read_text(encoding="utf-8"))
        except OSError:
            owner = None  # the owner file is written before the folder: its owner is gone
        if owner is not None and not owner.is_gone():
            continue
        moved += _recover(root, entry, conn)
        shutil.rmtree(entry, ignore_errors=True)
        with contextlib.suppress(OSError):
            owner_file.unlink()
    for owner_file in base.glob("*.owner"):  # killed between the owner file and the folder
        if not (base / owner_file.stem).exists():
            owner = ProcessOwner.from_json(_read(owner_file))
            if owner is None or owner.is_gone():
                with contextlib.suppress(OSError):
                    owner_file.unlink()
    with contextlib.suppress(OSError):
        base.rmdir()
    return moved


def _recover(root: Path, folder: Path, conn: sqlite3.Connection) -> int:
    images = root / IMAGES
    moved = 0
    for f in folder.iterdir():
        dest = images / f.name
        committed = (
            not f.name.startswith(_PART)
            and conn.execute(
                "SELECT 1 FROM images WHERE path = ?", (f"{IMAGES}/{f.name}",)
            ).fetchone()
            is not None
        )
        if committed and not dest.exists():
            images.mkdir(exist_ok=True)
            os.replace(f, dest)
            moved += 1
        else:
            with contextlib.suppress(OSError):
                f.unlink()
    return moved


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        return ""
