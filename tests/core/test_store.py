"""The SQLite store: lifecycle, connection settings, versioning, migrations, transactions."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tlstudio.core import store as store_mod
from tlstudio.core.errors import ProjectError, SchemaTooNewError
from tlstudio.core.project import Project
from tlstudio.core.store import DB_NAME, SCHEMA_VERSION, Store


def _dump(db: Path) -> list[str]:
    conn = sqlite3.connect(db)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


def _set_version(db: Path, version: int) -> None:
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(version),))
    conn.close()


def test_create_open_close(tmp_path: Path) -> None:
    root = tmp_path / "p"
    proj = Project.create(root)
    assert (root / DB_NAME).is_file()
    assert (root / "cache").is_dir()
    proj.add_class("cat")
    proj.close()
    with pytest.raises(sqlite3.ProgrammingError):
        proj.store.conn.execute("SELECT 1")

    with Project.open(root) as again:
        assert [c.name for c in again.classes()] == ["cat"]
        assert again.root == root.resolve()


def test_create_refuses_existing_project_and_files(tmp_path: Path) -> None:
    Project.create(tmp_path / "p").close()
    with pytest.raises(ProjectError, match="already a tlstudio project"):
        Project.create(tmp_path / "p")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ProjectError, match="not a folder"):
        Project.create(tmp_path / "file")


def test_wal_foreign_keys_and_schema_version(tmp_path: Path) -> None:
    with Project.create(tmp_path / "p") as proj:
        c = proj.store.conn
        assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert c.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert proj.store.get_meta("schema_version") == str(SCHEMA_VERSION)
        # foreign keys are enforced, not just declared
        with pytest.raises(sqlite3.IntegrityError):
            with proj.transaction():
                c.execute("INSERT INTO tags VALUES (12345, 678)")
    # and survive a reopen (the pragmas are per connection)
    with Project.open(tmp_path / "p") as proj:
        c = proj.store.conn
        assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert c.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert int(proj.store.get_meta("schema_version")) == SCHEMA_VERSION


def test_schema_too_new_is_refused_and_file_untouched(tmp_path: Path) -> None:
    root = tmp_path / "p"
    with Project.create(root) as proj:
        proj.add_class("cat")
    db = root / DB_NAME
    _set_version(db, SCHEMA_VERSION + 1)
    before = _dump(db)
    before_bytes = db.read_bytes()

    with pytest.raises(SchemaTooNewError) as info:
        Project.open(root)
    msg = str(info.value)
    assert str(db) in msg
    assert f"schema {SCHEMA_VERSION + 1}" in msg
    assert "newer tlstudio" in msg
    assert isinstance(info.value, ProjectError)

    assert _dump(db) == before
    assert db.read_bytes() == before_bytes


def test_open_non_project_folder(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    with pytest.raises(ProjectError) as info:
        Project.open(folder)
    assert str(folder) in str(info.value)
    assert "not a tlstudio project" in str(info.value)
    assert not (folder / "cache").exists()
    assert not (folder / DB_NAME).exists()

    with pytest.raises(ProjectError, match="no such project folder"):
        Project.open(tmp_path / "absent")


def test_open_garbage_database(tmp_path: Path) -> None:
    folder = tmp_path / "p"
    folder.mkdir()
    db = folder / DB_NAME
    garbage = b"this is not a database at all\n" * 200
    db.write_bytes(garbage)
    with pytest.raises(ProjectError) as info:
        Project.open(folder)
    assert str(db) in str(info.value)
    assert db.read_bytes() == garbage


def test_open_foreign_sqlite_database(tmp_path: Path) -> None:
    """A valid SQLite file of another program is refused and left exactly as it was."""
    folder = tmp_path / "p"
    folder.mkdir()
    db = folder / DB_NAME
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("CREATE TABLE songs (title TEXT)")
        conn.execute("INSERT INTO songs VALUES ('x')")
    conn.close()
    before = db.read_bytes()
    with pytest.raises(ProjectError) as info:
        Project.open(folder)
    assert str(db) in str(info.value)
    assert db.read_bytes() == before
    assert sqlite3.connect(db).execute("PRAGMA journal_mode").fetchone()[0] == "delete"


def test_open_project_without_schema_version(tmp_path: Path) -> None:
    root = tmp_path / "p"
    Project.create(root).close()
    conn = sqlite3.connect(root / DB_NAME)
    with conn:
        conn.execute("DELETE FROM meta WHERE key = 'schema_version'")
    conn.close()
    with pytest.raises(ProjectError, match="no schema version") as info:
        Project.open(root)
    assert str(root / DB_NAME) in str(info.value)


def test_migration_hook_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "p"
    with Project.create(root) as proj:
        proj.add_class("cat")

    calls = []

    def add_note_column(conn: sqlite3.Connection) -> None:
        calls.append(conn.in_transaction)
        conn.execute("ALTER TABLE classes ADD COLUMN note TEXT NOT NULL DEFAULT 'migrated'")

    monkeypatch.setattr(store_mod, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    monkeypatch.setitem(store_mod.MIGRATIONS, SCHEMA_VERSION, add_note_column)

    with Project.open(root) as proj:
        assert calls == [True]  # ran once, inside a transaction
        assert proj.store.get_meta("schema_version") == str(SCHEMA_VERSION + 1)
        cols = [r[1] for r in proj.store.conn.execute("PRAGMA table_info(classes)")]
        assert "note" in cols
        assert proj.store.conn.execute("SELECT name, note FROM classes").fetchall() == [
            ("cat", "migrated")
        ]
        assert [c.name for c in proj.classes()] == ["cat"]

    # already migrated: the hook does not run again
    with Project.open(root):
        assert calls == [True]


def test_failed_migration_changes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "p"
    with Project.create(root) as proj:
        proj.add_class("cat")
    before = _dump(root / DB_NAME)

    def broken(conn: sqlite3.Connection) -> None:
        conn.execute("ALTER TABLE classes ADD COLUMN note TEXT")
        raise RuntimeError("migration bug")

    monkeypatch.setattr(store_mod, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    monkeypatch.setitem(store_mod.MIGRATIONS, SCHEMA_VERSION, broken)
    with pytest.raises(RuntimeError, match="migration bug"):
        Project.open(root)
    assert _dump(root / DB_NAME) == before


def test_nested_transactions_roll_back_entirely(tmp_path: Path) -> None:
    with Project.create(tmp_path / "p") as proj:
        proj.add_class("keep")
        store = proj.store
        with pytest.raises(ValueError, match="boom"):
            with store.transaction():
                proj.add_class("outer")
                with store.transaction():
                    proj.add_class("inner")
                    assert store.in_transaction
                    raise ValueError("boom")
        assert not store.in_transaction
        assert not store.conn.in_transaction
        assert [c.name for c in proj.classes()] == ["keep"]

        # and the connection is usable afterwards, committing normally
        with store.transaction():
            proj.add_class("a")
            with store.transaction():
                proj.add_class("b")
        assert [c.name for c in proj.classes()] == ["keep", "a", "b"]


def test_failed_nested_block_is_undone_even_when_caught(tmp_path: Path) -> None:
    """A nested edit that fails half-way leaves nothing behind, also when the caller
    catches the error and commits the rest of its transaction."""
    with Project.create(tmp_path / "p") as proj:
        with proj.transaction():
            proj.add_class("a")
            try:
                with proj.transaction():
                    proj.add_class("half")
                    raise ValueError("second half failed")
            except ValueError:
                pass
            proj.add_class("b")
        assert [c.name for c in proj.classes()] == ["a", "b"]
        assert not proj.store.in_transaction


def test_rollback_drops_cached_templates(tmp_path: Path) -> None:
    """Ids of rolled-back rows are reused: no cache may keep the rolled-back row."""
    from tlstudio.core.labelset import LandmarkTemplate

    with Project.create(tmp_path / "p") as proj:
        with pytest.raises(RuntimeError):
            with proj.transaction():
                a = proj.add_template(LandmarkTemplate("A", ("a", "b")))
                assert proj.template(a.id).name == "A"
                raise RuntimeError("import failed")
        assert proj.templates() == []
        b = proj.add_template(LandmarkTemplate("B", ("x", "y", "z")))
        assert b.id == a.id  # the id is reused ...
        assert proj.template(b.id).points == ("x", "y", "z")  # ... so the cache must not be
        assert proj.template_by_name("B") == b


def test_open_project_with_bad_schema_version(tmp_path: Path) -> None:
    root = tmp_path / "p"
    Project.create(root).close()
    conn = sqlite3.connect(root / DB_NAME)
    with conn:
        conn.execute("UPDATE meta SET value = 'one' WHERE key = 'schema_version'")
    conn.close()
    with pytest.raises(ProjectError, match="bad schema version 'one'"):
        Project.open(root)


def test_nested_transaction_commits_only_at_the_outermost(tmp_path: Path) -> None:
    root = tmp_path / "p"
    with Project.create(root) as proj:
        with proj.transaction():
            proj.add_class("a")
            # another connection cannot see it before the outer block ends
            other = sqlite3.connect(root / DB_NAME)
            assert other.execute("SELECT COUNT(*) FROM classes").fetchone()[0] == 0
        assert other.execute("SELECT COUNT(*) FROM classes").fetchone()[0] == 1
        other.close()


def test_meta_roundtrip(tmp_path: Path) -> None:
    with Project.create(tmp_path / "p") as proj:
        assert proj.store.get_meta("nope") is None
        assert proj.store.get_meta("nope", "d") == "d"
        proj.store.set_meta("k", "v1")
        proj.store.set_meta("k", "v2")
        assert proj.store.get_meta("k") == "v2"


def test_store_create_refuses_existing_file(tmp_path: Path) -> None:
    db = tmp_path / DB_NAME
    Store.create(db).close()
    with pytest.raises(ProjectError, match="already exists") as info:
        Store.create(db)
    assert str(db) in str(info.value)
