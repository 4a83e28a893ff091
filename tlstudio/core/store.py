"""SQLite storage: connection settings, schema, versioning and migrations.

One file, ``project.sqlite``, per project folder. WAL journal and foreign keys
are on; every write happens inside :meth:`Store.transaction`, so a killed
process loses no committed edit and never leaves a half edit behind.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import ProjectError, SchemaTooNewError

SCHEMA_VERSION = 3

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
    """Version 3: objects (instances) and ignore regions beside the semantic label map.

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


# Migrations: MIGRATIONS[v] upgrades a database from version v to v + 1. A new
# database gets the version 1 schema and then every migration, so both paths agree.
MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {1: _v1_to_v2, 2: _v2_to_v3}

DB_NAME = "project.sqlite"


class Store:
    """A connection to one project's SQLite file.

    Writes must go through :meth:`transaction`; nested transactions join the
    outermost one (commit happens there) but are savepoints, so a nested block
    that fails is undone as a whole even when the caller catches the error.
    The connection may be used from one thread at a time.
    """

    def __init__(self, conn: sqlite3.Connection, path: Path):
        self.conn = conn
        self.path = path
        self._depth = 0
        self._lock = threading.RLock()
        # called after every rollback (full or to a savepoint): in-memory caches of rows
        # must be dropped, since rolled-back ids get reused
        self.rollback_listeners: list[Callable[[], None]] = []
        # called before every outermost transaction and before close: whoever holds
        # writes still being prepared elsewhere (the canvas encodes masks in a worker)
        # stores them first, so every other edit and the close see them
        self.write_barriers: list[Callable[[], None]] = []
        self._in_barrier = False
        self._closed = False

    # -- lifecycle ---------------------------------------------------------
    @classmethod
    def create(cls, path: Path) -> Store:
        if path.exists():
            raise ProjectError(f"{path}: a project database already exists here")
        conn = _connect(path)
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
    def open(cls, path: Path) -> Store:
        if not path.is_file():
            raise ProjectError(f"{path.parent}: not a tlstudio project (no {path.name})")
        # Read the version before any pragma: switching to WAL writes to the file, and a
        # file that is refused (not a project, or too new) must be left exactly as it was.
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
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
            _configure(conn)
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
        """Run the block in one transaction (joins an enclosing one as a savepoint)."""
        if self._depth == 0:
            self._run_write_barriers()
        with self._lock:
            savepoint = f"tls_{self._depth}"
            self.conn.execute("BEGIN IMMEDIATE" if self._depth == 0 else f"SAVEPOINT {savepoint}")
            self._depth += 1
            try:
                yield self.conn
            except BaseException:
                self._depth -= 1
                if not self.conn.in_transaction:
                    pass  # SQLite already rolled back (I/O error, disk full, ...)
                elif self._depth == 0:
                    self.conn.execute("ROLLBACK")
                else:
                    self.conn.execute(f"ROLLBACK TO {savepoint}")
                    self.conn.execute(f"RELEASE {savepoint}")
                for fn in self.rollback_listeners:
                    fn()
                raise
            self._depth -= 1
            self.conn.execute("COMMIT" if self._depth == 0 else f"RELEASE {savepoint}")

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


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        _configure(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def _configure(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA synchronous = NORMAL")


def inserted_id(cur: sqlite3.Cursor) -> int:
    """The id (rowid) SQLite gave the row that ``cur`` has just inserted."""
    row_id = cur.lastrowid
    assert row_id is not None, "the cursor inserted no row"
    return row_id
