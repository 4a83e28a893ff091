"""Other programs writing while an import runs (issue 11 §11): imports check, hash and copy
their files before their one short write transaction; an edit refused for a lock held
too long is a ProjectBusyError that changes nothing; the busy timeout suits people."""

from __future__ import annotations

import shutil
import sqlite3
import threading
from pathlib import Path

import pytest

from tlstudio.core.annotations import Box
from tlstudio.core.errors import FormatError, ProjectBusyError
from tlstudio.core.formats import import_labels
from tlstudio.core.project import Project
from tlstudio.core.staging import IMAGES, STAGING
from tlstudio.core.store import DB_NAME


def _class_folders(root: Path, make_images, n: int = 6) -> Path:
    make_images(root / "cat", n // 2, (40, 30))
    make_images(root / "dog", n - n // 2, (40, 30), start=100)
    return root


@pytest.mark.parametrize("kind", ["folders --copy", "images --copy"])
def test_other_writers_go_on_while_an_import_checks_its_files(
    tmp_path: Path, make_images, monkeypatch, kind: str
) -> None:
    src = _class_folders(tmp_path / "src", make_images)
    root = tmp_path / "p"
    with Project.create(root) as p:
        p.add_images(make_images(tmp_path / "one", 1, start=500))
        p.add_class("bird")

    # the import stops in the middle of copying its files until the other writer is done
    copying, other_done = threading.Event(), threading.Event()
    real = shutil.copy2

    def slow_copy(source, dest, **kwargs):
        if Path(source).is_relative_to(src) and not copying.is_set():
            copying.set()
            other_done.wait(20)
        return real(source, dest, **kwargs)

    monkeypatch.setattr(shutil, "copy2", slow_copy)
    outcome: dict = {}

    def run_import() -> None:
        with Project.open(root) as p:
            if kind == "folders --copy":
                outcome["report"] = import_labels(p, src, "folders", copy_images=True)
            else:
                outcome["report"] = p.add_images([src], copy=True)

    worker = threading.Thread(target=run_import)
    worker.start()
    try:
        assert copying.wait(20)
        with Project.open(root) as other:
            other.store.conn.execute("PRAGMA busy_timeout = 500")
            iid = other.image_ids()[0]
            other.add_box(iid, Box(other.classes()[0].id, 1, 1, 5, 5))  # not refused
    finally:
        other_done.set()
        worker.join(60)
    with Project.open(root) as p:
        assert p.image_count() == 7 and len(p.boxes(iid)) == 1
        assert sorted(f.name for f in (root / IMAGES).iterdir()) == sorted(
            f.name for f in src.rglob("*.png")
        )


def test_an_import_that_fails_late_adds_no_row_and_no_file(tmp_path: Path, make_images) -> None:
    src = _class_folders(tmp_path / "src", make_images)
    make_images(src / ("n" * 201), 1, start=300)  # a class name over the limit, checked last
    root = tmp_path / "p"
    with Project.create(root) as p:
        with pytest.raises(FormatError, match="class name longer than 200 characters"):
            import_labels(p, src, "folders", copy_images=True)
        assert p.image_count() == 0 and p.classes() == []
    assert not (root / IMAGES).exists() or not any((root / IMAGES).iterdir())
    assert not (root / STAGING).exists()


def test_the_busy_timeout_is_long_enough_for_people(tmp_path: Path) -> None:
    with Project.create(tmp_path / "p") as p:
        assert p.store.conn.execute("PRAGMA busy_timeout").fetchone()[0] == 15_000
    with Project.open(tmp_path / "p") as p:
        assert p.store.conn.execute("PRAGMA busy_timeout").fetchone()[0] == 15_000


def test_an_edit_refused_as_busy_changes_nothing_and_can_be_retried(
    project: Project, db_state
) -> None:
    project.store.conn.execute("PRAGMA busy_timeout = 50")
    before = db_state(project.store.conn)
    other = sqlite3.connect(project.root / DB_NAME)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(ProjectBusyError, match="the project is busy: another program is"):
            project.add_class("fish")
        with pytest.raises(ProjectBusyError):  # a write inside a started transaction too
            project.set_tags(project.image_ids()[0], [project.classes()[0].id])
    finally:
        other.rollback()
        other.close()
    assert db_state(project.store.conn) == before
    assert project.add_class("fish").name == "fish"


def test_commits_are_synced_to_disk(tmp_path: Path) -> None:
    """synchronous = FULL: an edit survives a power cut once its call returned (the cost is
    measured by tests/bench/bench_store.py)."""
    with Project.create(tmp_path / "p") as p:
        assert p.store.conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    with Project.open(tmp_path / "p") as p:
        assert p.store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert p.store.conn.execute("PRAGMA synchronous").fetchone()[0] == 2
