"""SQLite storage: connection settings, schema, versioning and migrations.

One file, ``project.sqlite``, per project folder. WAL journal and foreign keys
are on; every write happens inside :meth:`Store.transaction`, so a killed
process loses no committed edit and never leaves a half edit behind.

A database (or folder) that cannot be written is opened read-only: reads work and
every transaction raises :class:`~tlstudio.core.errors.ReadOnlyProjectError`. A write
that waits longer than the busy timeout for another program's write lock raises
:class:`~tlstudio.core.errors.ProjectBusyError`; nothing was changed then.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

from .errors import ProjectBusyError, ProjectError, ReadOnlyProjectError, SchemaTooNewError

log = logging.getLogger("tlstudio.core.store")


SCHEMA_VERSION = 5

_SCHEMA_V1 = """
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE images (
    id        INTEGER PRIMARY KEY,
    path      TEXT NOT NULL UNIQUE,      -- POSIX path relative to the project folder (or absolute)
    sha256    TEXT NOT NULL UNIQUE,
    width     INTEGER NOT NULL,
    height    INTEGER NOT NULL,
    bit_depth INTEGER NOT NULL,
    channels  INTEGER NOT NULL,
    format    TEXT NOT NULL,
    added_at  REAL NOT NULL,
    split     TEXT CHECK (split IN ('train', 'val', 'test')),
    fold      INTEGER
);
CREATE TABLE classes (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    name     TEXT NOT NULL UNIQUE,
    color    TEXT NOT NULL,
    position INTEGER NOT NULL
);
CREATE TABLE templates (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT NOT NULL UNIQUE,
    points     TEXT NOT NULL,            -- JSON list of point names, in order
    skeleton   TEXT NOT NULL,            -- JSON list of [i, j] index pairs
    flip_pairs TEXT NOT NULL             -- JSON list of [left, right] index pairs
);
CREATE TABLE tags (
    image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    class_id INTEGER NOT NULL REFERENCES classes(id),
    PRIMARY KEY (image_id, class_id)
) WITHOUT ROWID;
CREATE INDEX tags_class ON tags(class_id);
CREATE TABLE boxes (
    id       INTEGER PRIMARY KEY,
    image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    class_id INTEGER NOT NULL REFERENCES classes(id),
    x1 REAL NOT NULL, y1 REAL NOT NULL, x2 REAL NOT NULL, y2 REAL NOT NULL
);
CREATE INDEX boxes_image ON boxes(image_id);
CREATE INDEX boxes_class ON boxes(class_id);
CREATE TABLE landmark_sets (
    id          INTEGER PRIMARY KEY,
    image_id    INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    template_id INTEGER NOT NULL REFERENCES templates(id),
    class_id    INTEGER REFERENCES classes(id),
    points      TEXT NOT NULL            -- JSON [[x, y, v], ...] in template order
);
CREATE INDEX landmarks_image ON landmark_sets(image_id);
CREATE INDEX landmarks_class ON landmark_sets(class_id);
CREATE TABLE masks (
    image_id INTEGER PRIMARY KEY REFERENCES images(id) ON DELETE CASCADE,
    png      BLOB NOT NULL,              -- label map, pixel value = class id, 0 = background
    classes  TEXT NOT NULL               -- JSON list of class ids present (for counts and merges)
);
CREATE TABLE runs (
    id          INTEGER PRIMARY KEY,
    created_at  REAL NOT NULL,
    task        TEXT NOT NULL,
    backbone    TEXT NOT NULL,
    config      TEXT NOT NULL,           -- JSON of the full training configuration
    status      TEXT NOT NULL,           -- running | finished | cancelled | failed
    error       TEXT,
    metric_name TEXT,
    best_metric REAL,
    checkpoint  TEXT,                    -- path relative to the project folder
    device      TEXT,
    duration_s  REAL
);
CREATE TABLE run_epochs (
    run_id  INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    epoch   INTEGER NOT NULL,
    metrics TEXT NOT NULL,               -- JSON {name: number}
    PRIMARY KEY (run_id, epoch)
) WITHOUT ROWID;
CREATE TABLE predictions (
    run_id   INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    payload  TEXT NOT NULL,              -- JSON: probabilities, boxes, points (image pixels)
    mask     BLOB,                       -- predicted label map as PNG, if any
    score    REAL,                       -- confidence used for sorting/filtering
    PRIMARY KEY (run_id, image_id)
) WITHOUT ROWID;
"""


def _v1_to_v2(conn: sqlite3.Connection) -> None:
    """Version 2: the display window chosen per image (array units, e.g. HU)."""
    conn.execute(
        """CREATE TABLE display_windows (
            image_id INTEGER PRIMARY KEY REFERENCES images(id) ON DELETE CASCADE,
            center   REAL NOT NULL,
            width    REAL NOT NULL CHECK (width > 0)
        )"""
    )


def _v2_to_v3(conn: sqlite3.Connection) -> None:
    """Version 3: runs record their owning process (pid, host, start time as JSON), so a
    run whose process was killed can be told from one still training (status
    ``interrupted``)."""
    conn.execute("ALTER TABLE runs ADD COLUMN owner TEXT")


def _v3_to_v4(conn: sqlite3.Connection) -> None:
    """Version 4: objects (instances) and ignore regions beside the semantic label map.

    ``instance_maps`` holds per image an H×W map of object numbers (0 = no object);
    ``instances`` one row per object: its number in that map, its class, COCO's crowd
    flag, the box that is its bounding box (if any) and the outline it was imported
    from. ``ignore_masks`` holds per image the pixels excluded from losses and metrics.
    Existing label maps stay as they are: their pixels belong to no object."""
    conn.execute(
        """CREATE TABLE instance_maps (
            image_id INTEGER PRIMARY KEY REFERENCES images(id) ON DELETE CASCADE,
            png      BLOB NOT NULL           -- H×W object numbers (8 or 16 bit), 0 = no object
        )"""
    )
    conn.execute(
        """CREATE TABLE instances (
            id       INTEGER PRIMARY KEY,
            image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
            number   INTEGER NOT NULL CHECK (number BETWEEN 1 AND 65535),
            class_id INTEGER NOT NULL REFERENCES classes(id),
            iscrowd  INTEGER NOT NULL DEFAULT 0 CHECK (iscrowd IN (0, 1)),
            box_id   INTEGER REFERENCES boxes(id) ON DELETE SET NULL,
            outline  TEXT,                   -- JSON [[kind, [coords...]], ...] (image pixels) or NULL
            UNIQUE (image_id, number)
        )"""
    )
    conn.execute("CREATE INDEX instances_class ON instances(class_id)")
    conn.execute("CREATE INDEX instances_box ON instances(box_id)")
    conn.execute(
        """CREATE TABLE ignore_masks (
            image_id INTEGER PRIMARY KEY REFERENCES images(id) ON DELETE CASCADE,
            png      BLOB NOT NULL           -- H×W, non-zero = ignored
        )"""
    )


def _v4_to_v5(conn: sqlite3.Connection) -> None:
    """Version 5: each image may name the **domain** it comes from (a site, scanner,
    microscope or batch; free text, NULL = none), for per-domain metrics and domain
    adaptation. Existing images get none."""
    conn.execute("ALTER TABLE images ADD COLUMN domain TEXT")
    conn.execute("CREATE INDEX images_domain ON images(domain)")


# Migrations: MIGRATIONS[v] upgrades a database from version v to v + 1. A new
# database gets the version 1 schema and then every migration, so both paths agree.
MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {
    1: _v1_to_v2,
    2: _v2_to_v3,
    3: _v3_to_v4,
    4: _v4_to_v5,
}

DB_NAME = "project.sqlite"

BUSY_TIMEOUT_S = 15.0
"""How long a write waits for another program's write lock before it is refused (SQLite's
default is 5 s). Write transactions are kept short (imports check, hash and copy before
theirs), so a wait this long means the other program is stuck, not busy; the window then
keeps the refused edit for Retry."""

SYNCHRONOUS = "FULL"
"""SQLite ``synchronous`` in WAL mode. FULL syncs the WAL at every commit, so an edit is
on disk when the call that made it returns, through a power cut too; NORMAL would keep it
through a killed process only (the last commits before a checkpoint could be lost). The
cost, measured with tests/bench/bench_store.py: a few milliseconds per commit."""

_Hooks = tuple[list[Callable[[], None]], list[Callable[[], None]]]


class Store:
    """A connection to one project's SQLite file.

    Writes must go through :meth:`transaction`; nested transactions join the
    outermost one (commit happens there) but are savepoints, so a nested block
    that fails is undone as a whole even when the caller catches the error.
    The connection may be used from one thread at a time.

    ``read_only`` is set when the store was opened read-only; ``read_only_reason``
    then says why in plain words.
    """

    def __init__(self, conn: sqlite3.Connection, path: Path, *, read_only_reason: str = ""):
        self.conn = conn
        self.path = path
        self.read_only_reason = read_only_reason
        self._depth = 0
        self._lock = threading.RLock()
        self._hooks: list[_Hooks] = []  # (after commit, after rollback) per open level
        # called after every rollback (full or to a savepoint): in-memory caches of rows
        # must be dropped, since rolled-back ids get reused
        self.rollback_listeners: list[Callable[[], None]] = []
        # called before every outermost transaction and before close: whoever holds
        # writes still being prepared elsewhere (the canvas encodes masks in a worker)
        # stores them first, so every other edit and the close see them
        self.write_barriers: list[Callable[[], None]] = []
        self._in_barrier = False
        self._closed = False

    @property
    def read_only(self) -> bool:
        return bool(self.read_only_reason)

    # -- lifecycle ---------------------------------------------------------
    @classmethod
    def create(cls, path: Path, *, busy_timeout_s: float = BUSY_TIMEOUT_S) -> Store:
        if path.exists():
            raise ProjectError(f"{path}: a project database already exists here")
        try:
            conn = _connect(path, busy_timeout_s)
        except sqlite3.Error as exc:
            raise ProjectError(f"{path}: cannot create the project database ({exc})") from exc
        store = cls(conn, path)
        with store.transaction():
            for statement in _SCHEMA_V1.split(";"):
                if statement.strip():
                    conn.execute(statement)
            for version in range(1, SCHEMA_VERSION):
                MIGRATIONS[version](conn)
            conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        return store

    @classmethod
    def open(
        cls, path: Path, *, read_only: bool | None = None, busy_timeout_s: float = BUSY_TIMEOUT_S
    ) -> Store:
        """Open the database at ``path``. ``read_only``: None opens it read-only only when
        the file or its folder cannot be written, True always, False never (an unwritable
        project is then an error). Raises ProjectError naming the file and the reason."""
        _check_readable(path)
        reason = "opened read-only" if read_only else ""
        if not read_only:
            reason = _why_not_writable(path)
            if reason and read_only is False:
                raise ProjectError(f"{path}: cannot be opened for editing: {reason}")
        # Read the version before any pragma: switching to WAL writes to the file, and a
        # file that is refused (not a project, or too new) must be left exactly as it was.
        conn = _open_connection(path, bool(reason), busy_timeout_s)
        try:
            try:
                row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            except sqlite3.DatabaseError as exc:
                raise ProjectError(f"{path}: not a readable project database ({exc})") from exc
            if row is None:
                raise ProjectError(f"{path}: project database has no schema version")
            try:
                version = int(row[0])
            except ValueError:
                raise ProjectError(f"{path}: bad schema version {row[0]!r}") from None
            if version > SCHEMA_VERSION:
                raise SchemaTooNewError(
                    f"{path}: written by a newer tlstudio (schema {version}, this version reads "
                    f"up to {SCHEMA_VERSION}); update tlstudio to open it. The file was not changed."
                )
            if reason:
                if version < SCHEMA_VERSION:
                    raise ProjectError(
                        f"{path}: written by an older tlstudio and read-only ({reason}); open "
                        "it once with write access so it can be upgraded"
                    )
                conn.execute("PRAGMA foreign_keys = ON")
                conn.execute("PRAGMA query_only = ON")
                return cls(conn, path, read_only_reason=reason)
            try:
                _configure(conn)
            except sqlite3.Error as exc:
                raise ProjectError(f"{path}: cannot be opened for editing ({exc})") from exc
            store = cls(conn, path)
            store._migrate(version)
        except BaseException:
            conn.close()
            raise
        return store

    def close(self) -> None:
        """Close the connection (again: nothing), after the write barriers."""
        if self._closed:
            return
        self._run_write_barriers()
        self._closed = True
        self.conn.close()

    def _run_write_barriers(self) -> None:
        if self._in_barrier or not self.write_barriers:
            return  # a barrier's own writes do not call the barriers again
        self._in_barrier = True
        try:
            for fn in list(self.write_barriers):
                fn()
        finally:
            self._in_barrier = False

    def _migrate(self, version: int) -> None:
        while version < SCHEMA_VERSION:
            with self.transaction():
                MIGRATIONS[version](self.conn)
                version += 1
                self.set_meta("schema_version", str(version))

    # -- transactions ------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Run the block in one transaction (joins an enclosing one as a savepoint).

        Raises ReadOnlyProjectError on a read-only store and ProjectBusyError when the
        write lock could not be had within the busy timeout; SQLite errors of the block
        that mean the same are turned into those errors after the rollback."""
        if self._depth == 0:
            self._run_write_barriers()
        with self._lock:
            if self.read_only:
                raise ReadOnlyProjectError(self.read_only_message())
            depth = self._depth
            savepoint = f"tls_{depth}"
            try:
                self.conn.execute("BEGIN IMMEDIATE" if depth == 0 else f"SAVEPOINT {savepoint}")
            except sqlite3.Error as exc:
                self._raise_translated(exc)
            self._depth += 1
            self._hooks.append(([], []))
            try:
                yield self.conn
            except BaseException as exc:
                self._undo(depth, savepoint)
                if isinstance(exc, sqlite3.Error):
                    self._raise_translated(exc)
                raise
            try:
                self.conn.execute("COMMIT" if depth == 0 else f"RELEASE {savepoint}")
            except sqlite3.Error as exc:
                self._undo(depth, savepoint)
                self._raise_translated(exc)
            self._depth -= 1
            after_commit, after_rollback = self._hooks.pop()
            if depth == 0:
                _run_all(after_commit, "after commit")
            else:  # they belong to the enclosing transaction now
                self._hooks[-1][0].extend(after_commit)
                self._hooks[-1][1].extend(after_rollback)

    def _undo(self, depth: int, savepoint: str) -> None:
        """Roll back the open level ``depth`` and run its rollback hooks and listeners."""
        self._depth = depth
        if not self.conn.in_transaction:
            pass  # SQLite already rolled back (I/O error, disk full, ...)
        elif depth == 0:
            self.conn.execute("ROLLBACK")
        else:
            self.conn.execute(f"ROLLBACK TO {savepoint}")
            self.conn.execute(f"RELEASE {savepoint}")
        _, after_rollback = self._hooks.pop()
        _run_all(after_rollback, "after rollback")
        for fn in self.rollback_listeners:
            fn()

    def after_commit(self, fn: Callable[[], None]) -> None:
        """Call ``fn()`` once the outermost open transaction has committed (never if it
        rolls back). An exception in ``fn`` is logged, not raised: the data is stored."""
        self._open_hooks()[0].append(fn)

    def after_rollback(self, fn: Callable[[], None]) -> None:
        """Call ``fn()`` if the innermost open transaction (or one enclosing it) rolls back."""
        self._open_hooks()[1].append(fn)

    def _open_hooks(self) -> _Hooks:
        if not self._hooks:
            raise RuntimeError("after_commit/after_rollback need an open transaction")
        return self._hooks[-1]

    def _raise_translated(self, exc: sqlite3.Error) -> NoReturn:
        """Raise the TlsError that ``exc`` means for a user, or ``exc`` itself."""
        translated = self._translated(exc)
        if translated is exc:
            raise exc
        raise translated from exc

    def _translated(self, exc: sqlite3.Error) -> Exception:
        """The TlsError a user sees for SQLite error ``exc`` (``exc`` itself if none fits)."""
        code = getattr(exc, "sqlite_errorcode", None)
        primary = None if code is None else code & 0xFF
        text = str(exc)
        if primary in (5, 6) or "database is locked" in text:  # SQLITE_BUSY, SQLITE_LOCKED
            return ProjectBusyError(
                f"{self.path.parent}: the project is busy: another program is writing to it "
                f"(waited {self.conn_timeout_s:g} s); nothing was changed, try again"
            )
        if primary == 8 or "readonly database" in text:  # SQLITE_READONLY
            return ReadOnlyProjectError(
                f"{self.path}: cannot be written (read-only file, folder or disk); the edit "
                "was not saved"
            )
        if primary == 13:  # SQLITE_FULL
            return ProjectError(f"{self.path}: the disk is full; the edit was not saved")
        return exc

    @property
    def conn_timeout_s(self) -> float:
        return float(self.conn.execute("PRAGMA busy_timeout").fetchone()[0]) / 1000.0

    def read_only_message(self) -> str:
        """``<folder>: read-only (<reason>): edits are disabled``."""
        return f"{self.path.parent}: read-only ({self.read_only_reason}): edits are disabled"

    @property
    def in_transaction(self) -> bool:
        return self._depth > 0

    # -- meta --------------------------------------------------------------
    def get_meta(self, key: str, default: str | None = None) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else row[0]

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction() as c:
            c.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))


def _run_all(fns: list[Callable[[], None]], when: str) -> None:
    for fn in fns:
        try:
            fn()
        except Exception:  # the transaction's outcome stands; the hook's work is retried
            log.exception("hook run %s failed", when)


def _check_readable(path: Path) -> None:
    """ProjectError naming the problem unless ``path`` is a database file we may read."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ProjectError(f"{path.parent}: not a tlstudio project (no {path.name})") from None
    except PermissionError:
        raise ProjectError(
            f"{path}: cannot be opened: permission denied (the project folder cannot be read)"
        ) from None
    except OSError as exc:
        raise ProjectError(f"{path}: cannot be opened ({exc.strerror or exc})") from None
    if not stat.S_ISREG(st.st_mode):
        raise ProjectError(f"{path}: not a project database (not a regular file)")
    if not os.access(path, os.R_OK):
        raise ProjectError(
            f"{path}: cannot be opened: permission denied (file mode "
            f"{stat.filemode(st.st_mode)}); ask its owner for read access"
        )


def _why_not_writable(path: Path) -> str:
    """Why the project at ``path`` cannot be edited, in plain words; empty if it can.

    A session on a read-only database leaves ``-shm``/``-wal`` files with the database's
    read-only mode; where we own them they get the database's mode again, so they never
    lock later writers out."""
    if not os.access(path, os.W_OK):
        return f"{path.name} is read-only"
    if not os.access(path.parent, os.W_OK | os.X_OK):
        return "the project folder is read-only"
    for suffix in ("-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        try:
            if not side.exists() or os.access(side, os.W_OK):
                continue
            os.chmod(side, stat.S_IMODE(os.stat(path).st_mode))
        except OSError:
            return f"{side.name} is read-only"
        if not os.access(side, os.W_OK):
            return f"{side.name} is read-only"
    return ""


def _open_connection(path: Path, read_only: bool, busy_timeout_s: float) -> sqlite3.Connection:
    """A connection in autocommit mode; read-only ones use ``mode=ro`` (and
    ``immutable=1`` where a WAL database in a read-only folder allows nothing else)."""
    if not read_only:
        try:
            return sqlite3.connect(
                path, isolation_level=None, check_same_thread=False, timeout=busy_timeout_s
            )
        except sqlite3.Error as exc:
            raise ProjectError(f"{path}: cannot be opened ({exc})") from exc
    uri = path.resolve().as_uri()
    error: sqlite3.Error | None = None
    for query in ("?mode=ro", "?mode=ro&immutable=1"):
        try:
            conn = sqlite3.connect(
                uri + query, uri=True, isolation_level=None, check_same_thread=False,
                timeout=busy_timeout_s,
            )  # fmt: skip
        except sqlite3.Error as exc:
            error = exc
            continue
        try:
            conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        except sqlite3.OperationalError as exc:  # e.g. no -shm and no way to make one
            conn.close()
            error = exc
            continue
        return conn
    raise ProjectError(f"{path}: cannot be opened read-only ({error})")


def _connect(path: Path, busy_timeout_s: float = BUSY_TIMEOUT_S) -> sqlite3.Connection:
    conn = sqlite3.connect(
        path, isolation_level=None, check_same_thread=False, timeout=busy_timeout_s
    )
    try:
        _configure(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def _configure(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute(f"PRAGMA synchronous = {SYNCHRONOUS}")


def inserted_id(cur: sqlite3.Cursor) -> int:
    """The id (rowid) SQLite gave the row that ``cur`` has just inserted."""
    row_id = cur.lastrowid
    assert row_id is not None, "the cursor inserted no row"
    return row_id
