"""A tlstudio project: a folder with ``project.sqlite`` and a disposable ``cache/``.

Every public method that changes data runs in one SQLite transaction (or joins
the caller's :meth:`Project.transaction`), so there is no Save step.
Annotation coordinates are image pixels (see :mod:`tlstudio.core.annotations`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import stat
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import imageio
from .annotations import (
    OCCLUDED,
    SKIPPED,
    VISIBLE,
    Box,
    ImageAnnotations,
    LandmarkSet,
    decode_mask,
    encode_mask,
    mask_class_ids,
)
from .decoders import file_kind
from .errors import (
    ImageError,
    ProjectBusyError,
    ProjectError,
    ReadOnlyProjectError,
    ValidationError,
)
from .files import walk_files
from .instances import InstanceStore
from .labelset import MAX_CLASS_NAME, PALETTE, ClassInfo, LandmarkTemplate
from .staging import STAGING, Staging, sweep
from .store import DB_NAME, Store, inserted_id

log = logging.getLogger("tlstudio.core.project")

SPLITS = ("train", "val", "test")
ProgressFn = Callable[[int, int], None]  # (done, total)


@dataclass(frozen=True)
class ImageRecord:
    id: int
    path: str  # as stored: POSIX path relative to the project folder, or absolute
    sha256: str
    width: int
    height: int
    bit_depth: int
    channels: int
    format: str
    split: str | None = None
    fold: int | None = None
    domain: str | None = None  # the site, scanner, batch... the image comes from (None: none)

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class ImageSummary:
    """An image with its annotation counts, for browser pages."""

    image: ImageRecord
    n_tags: int
    n_boxes: int
    n_landmarks: int
    has_mask: bool

    @property
    def is_labelled(self) -> bool:
        return bool(self.n_tags or self.n_boxes or self.n_landmarks or self.has_mask)


@dataclass
class ImportReport:
    """Outcome of adding images: ids added, files skipped as duplicates, bad image files
    (``failed``), things that were not read at all (``skipped``: FIFOs and other
    non-regular files, folders that cannot be read, names that are not valid UTF-8),
    each with the reason."""

    added: list[int] = field(default_factory=list)
    duplicates: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    warnings: list[tuple[Path, str]] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    cancelled: bool = False


@dataclass(frozen=True)
class _Checked:
    """An image file checked before the insert transaction (staged: its copy)."""

    path: Path
    digest: str
    info: imageio.ImageInfo
    staged: Path | None = None


class ImageBatch:
    """Image files checked (and staged) by :meth:`Project.check_images`, not yet added."""

    def __init__(self, project: Project, report: ImportReport, domain: str | None = None):
        self.project = project
        self.report = report
        self.checked: list[_Checked] = []
        self.staging: Staging | None = None
        self.domain = domain  # given to every image the batch adds

    def insert(self) -> ImportReport:
        """Insert the rows in one transaction (joining the caller's) and return the report
        with ``added`` filled in. Content another program added meanwhile counts as a
        duplicate; staged copies get their final names here and move into ``images/``
        after the commit (or are deleted on a rollback)."""
        project, report, staging = self.project, self.report, self.staging
        if not self.checked:
            self.discard()
            return report
        conn = project.store.conn
        try:
            with project.transaction():
                if staging is not None:
                    project.store.after_commit(staging.publish)
                    project.store.after_rollback(staging.discard)
                known = {row[0] for row in conn.execute("SELECT sha256 FROM images")}
                taken = {row[0] for row in conn.execute("SELECT path FROM images")}
                for item in self.checked:
                    if item.digest in known:
                        report.duplicates.append(item.path)
                        continue
                    if item.staged is not None and staging is not None:
                        stored = staging.name(item.staged, _clean_name(item.path.name), taken)
                    else:
                        stored = project._stored_path(item.path)
                    info = item.info
                    cur = conn.execute(
                        "INSERT INTO images (path, sha256, width, height, bit_depth, channels,"
                        " format, added_at, domain) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (stored, item.digest, info.width, info.height, info.bit_depth,
                         info.channels, info.format, time.time(), self.domain),
                    )  # fmt: skip
                    known.add(item.digest)
                    taken.add(stored)
                    report.added.append(inserted_id(cur))
        except BaseException:
            report.added = []
            if staging is not None and not project.store.in_transaction:
                staging.discard()  # BEGIN failed: no rollback hook ran
            raise
        self.checked = []
        return report

    def discard(self) -> None:
        """Forget the checked files and delete their staged copies."""
        self.checked = []
        if self.staging is not None:
            self.staging.discard()
            self.staging = None


_IMAGE_COLS = "id, path, sha256, width, height, bit_depth, channels, format, split, fold, domain"
_N_IMAGE_COLS = _IMAGE_COLS.count(",") + 1


def _image(row: Sequence[Any]) -> ImageRecord:
    return ImageRecord(*row)


class Project:
    """An open project. Use :meth:`create` or :meth:`open`; close with :meth:`close`."""

    def __init__(self, root: Path, store: Store):
        self.root = root
        self.store = store
        self.cache_dir = _cache_dir(root)
        self._template_cache: dict[int, LandmarkTemplate] = {}
        store.rollback_listeners.append(self._template_cache.clear)
        #: objects (instances) and ignore regions beside the label maps (core/instances.py)
        self.instances = InstanceStore(self)

    # -- lifecycle ---------------------------------------------------------
    @classmethod
    def create(cls, root: str | Path, *, multi_label: bool = False) -> Project:
        root = Path(root).resolve()
        if (root / DB_NAME).exists():
            raise ProjectError(f"{root}: already a tlstudio project")
        if root.exists() and not root.is_dir():
            raise ProjectError(f"{root}: exists and is not a folder")
        root.mkdir(parents=True, exist_ok=True)
        store = Store.create(root / DB_NAME)
        project = cls(root, store)
        with project.transaction():
            store.set_meta("multi_label", "1" if multi_label else "0")
            store.set_meta("created", str(time.time()))
        return project

    @classmethod
    def open(cls, root: str | Path, *, read_only: bool | None = None) -> Project:
        """Open the project in folder ``root``. ``read_only``: None opens it read-only only
        when its database or folder cannot be written (see :attr:`read_only`), True always,
        False never. Opening for editing also finishes what a killed process left: staged
        image copies (see :mod:`~tlstudio.core.staging`) and runs still marked running.
        Raises ProjectError saying why a project cannot be opened."""
        root = Path(root).resolve()
        try:
            is_dir = root.is_dir()
        except OSError as exc:
            raise ProjectError(f"{root}: cannot be opened ({exc.strerror or exc})") from None
        if not is_dir:
            raise ProjectError(f"{root}: no such project folder")
        project = cls(root, Store.open(root / DB_NAME, read_only=read_only))
        if not project.read_only:
            from .runs import mark_interrupted_runs

            # housekeeping after a killed process; if it cannot be done now (another
            # program holds the write lock, a file is locked) it is done on a later open
            try:
                sweep(root, project._c)
            except OSError as exc:
                log.warning("%s: staged files not cleaned up (%s)", root, exc)
            try:
                mark_interrupted_runs(project, wait=False)
            except ProjectBusyError:
                pass
        return project

    @property
    def read_only(self) -> bool:
        """True when the project was opened read-only: every edit raises
        ReadOnlyProjectError (:attr:`read_only_reason` says why)."""
        return self.store.read_only

    @property
    def read_only_reason(self) -> str:
        """Why the project is read-only in plain words (``project.sqlite is read-only``);
        empty for a project opened for editing."""
        return self.store.read_only_reason

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Project:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group several edits into one all-or-nothing transaction."""
        with self.store.transaction():
            yield

    @property
    def _c(self) -> sqlite3.Connection:
        return self.store.conn

    # -- settings ----------------------------------------------------------
    @property
    def multi_label(self) -> bool:
        return self.store.get_meta("multi_label", "0") == "1"

    @multi_label.setter
    def multi_label(self, value: bool) -> None:
        if (
            not value
            and self._c.execute(
                "SELECT 1 FROM tags GROUP BY image_id HAVING COUNT(*) > 1 LIMIT 1"
            ).fetchone()
        ):
            raise ValidationError(
                "cannot switch to single-label: some images carry more than one class tag"
            )
        self.store.set_meta("multi_label", "1" if value else "0")

    # -- images ------------------------------------------------------------
    def add_images(
        self,
        paths: Iterable[str | Path],
        *,
        copy: bool = False,
        recursive: bool = True,
        progress: ProgressFn | None = None,
        should_cancel: Callable[[], bool] | None = None,
        max_bytes: int | None = None,
        domain: str | None = None,
    ) -> ImportReport:
        """Add image files and folders (folders are searched recursively by suffix).

        Bad files are listed in ``failed``, things that are not image files to read in
        ``skipped`` (see :class:`ImportReport`), duplicates (same content hash) in
        ``duplicates``; the rest is added. Each file is checked whole (nothing truncated,
        one decoded image at most in memory, ``max_bytes`` as for
        :func:`~tlstudio.core.imageio.verify_image`) and, with ``copy``, copied into the
        project's staging folder before the database is touched; then all rows go in in
        one short transaction (joining the caller's), so other programs can keep editing
        meanwhile and the import is all or nothing. Copies move into ``images/`` once that
        transaction commits; after a kill, opening the project finishes or undoes that.
        Cancelling (``should_cancel``) adds the files checked so far. ``domain`` (see
        :meth:`set_domains`) is given to every image added; images already in the project
        keep theirs."""
        batch = self.check_images(
            paths, copy=copy, recursive=recursive, progress=progress,
            should_cancel=should_cancel, max_bytes=max_bytes, domain=domain,
        )  # fmt: skip
        return batch.insert()

    def check_images(
        self,
        paths: Iterable[str | Path],
        *,
        copy: bool = False,
        recursive: bool = True,
        progress: ProgressFn | None = None,
        should_cancel: Callable[[], bool] | None = None,
        max_bytes: int | None = None,
        domain: str | None = None,
    ) -> ImageBatch:
        """The first half of :meth:`add_images`: find, check and (``copy``) stage the files,
        without writing to the database. ``insert()`` the batch to add them, or
        ``discard()`` it. A read-only project refuses at once (ReadOnlyProjectError)."""
        if self.read_only:
            raise ReadOnlyProjectError(self.store.read_only_message())
        domain = check_domain(domain)
        report = ImportReport()
        files = self._expand(paths, recursive, report)
        batch = ImageBatch(self, report, domain)
        try:
            for path, digest, info in self._check_images(
                files, copy, report, progress, should_cancel, max_bytes
            ):
                staged = None
                if copy and not path.is_relative_to(self.root):
                    batch.staging = batch.staging or Staging(self.root)
                    staged = batch.staging.stage(path)
                batch.checked.append(_Checked(path, digest, info, staged))
        except BaseException:
            batch.discard()
            raise
        return batch

    def _check_images(
        self,
        files: list[Path],
        copy: bool,
        report: ImportReport,
        progress: ProgressFn | None,
        should_cancel: Callable[[], bool] | None,
        max_bytes: int | None,
    ) -> Iterator[tuple[Path, str, imageio.ImageInfo]]:
        """(path, content hash, header facts) of each new, whole image among ``files``; the
        others go into ``report``. Reads the database, never writes it."""
        known = {row[0] for row in self._c.execute("SELECT sha256 FROM images")}
        known_paths = {row[0] for row in self._c.execute("SELECT path FROM images")}
        for done, path in enumerate(files, 1):
            if should_cancel is not None and should_cancel():
                report.cancelled = True
                break
            try:
                imageio.probe_image(path, max_bytes=max_bytes)  # refuses FIFOs, huge images
                digest = imageio.file_sha256(path)
                # the probe reads headers only: check the whole file, so a truncated or
                # corrupt image is reported now instead of failing in training
                info = None if digest in known else imageio.verify_image(path, max_bytes=max_bytes)
            except ImageError as exc:
                report.failed.append((path, exc.reason))
            except OSError as exc:
                report.failed.append((path, f"cannot read file ({exc.strerror or exc})"))
            else:
                copied = copy and not path.is_relative_to(self.root)  # gets a fresh name
                stored = None if copied else self._stored_path(path)
                if info is None:
                    report.duplicates.append(path)
                elif stored is not None and not _storable(stored):
                    report.skipped.append(
                        (path, "the file name is not valid UTF-8 text, which the project "
                               "cannot store; rename the file, or import it with --copy "
                               "(the copy gets a valid name)")
                    )  # fmt: skip
                elif stored is not None and stored in known_paths:
                    # the file was changed in place since it was added: its annotations
                    # belong to the old content, so do not silently swap it
                    report.failed.append(
                        (path, "already in the project with different content (the file changed"
                               " since it was added); remove that image first")
                    )  # fmt: skip
                else:
                    known.add(digest)
                    known_paths.add(stored)
                    if info.pages > 1:
                        msg = f"{info.pages} pages/frames; only the first is used"
                        report.warnings.append((path, msg))
                    yield path, digest, info
            if progress is not None:  # every file counts, also bad ones and duplicates
                progress(done, len(files))

    def _expand(
        self, paths: Iterable[str | Path], recursive: bool, report: ImportReport
    ) -> list[Path]:
        """The image files named and found in the folders named (sorted per folder).
        FIFOs and other non-regular files named go to ``report.skipped`` (inside folders
        they are passed over, as is everything that is not an image by its suffix), and
        so do folders that cannot be read."""
        out: list[Path] = []
        for p in paths:
            p = Path(p)
            try:
                mode = os.stat(p).st_mode
            except OSError:
                out.append(p.absolute())  # the check reports why it cannot be read
                continue
            if stat.S_ISDIR(mode):
                out += _image_files_under(p, recursive, report)
            elif stat.S_ISREG(mode):
                out.append(p.resolve())
            else:
                report.skipped.append((p, f"not a regular file ({file_kind(mode)}); skipped"))
        return out

    def _stored_path(self, path: Path) -> str:
        try:
            return Path(os.path.relpath(path, self.root)).as_posix()
        except ValueError:  # another drive on Windows
            return path.as_posix()

    def image_count(self) -> int:
        count: int = self._c.execute("SELECT COUNT(*) FROM images").fetchone()[0]
        return count

    def image(self, image_id: int) -> ImageRecord:
        row = self._c.execute(
            f"SELECT {_IMAGE_COLS} FROM images WHERE id = ?", (image_id,)
        ).fetchone()
        if row is None:
            raise ValidationError(f"no image with id {image_id}")
        return _image(row)

    def image_by_path(self, path: str | Path) -> ImageRecord | None:
        """The image stored at ``path`` (absolute, or relative to the project), if any."""
        p = Path(path)
        stored = self._stored_path(p if p.is_absolute() else self.root / p)
        row = self._c.execute(
            f"SELECT {_IMAGE_COLS} FROM images WHERE path = ?", (stored,)
        ).fetchone()
        return None if row is None else _image(row)

    def images(self, offset: int = 0, limit: int = -1) -> list[ImageRecord]:
        rows = self._c.execute(
            f"SELECT {_IMAGE_COLS} FROM images ORDER BY id LIMIT ? OFFSET ?", (limit, offset)
        )
        return [_image(r) for r in rows]

    def image_ids(self) -> list[int]:
        return [r[0] for r in self._c.execute("SELECT id FROM images ORDER BY id")]

    def image_page(self, offset: int = 0, limit: int = 100) -> list[ImageSummary]:
        """One page of images (by id) with per-kind annotation counts."""
        rows = self._c.execute(
            f"""SELECT {_IMAGE_COLS},
                (SELECT COUNT(*) FROM tags t WHERE t.image_id = i.id),
                (SELECT COUNT(*) FROM boxes b WHERE b.image_id = i.id),
                (SELECT COUNT(*) FROM landmark_sets l WHERE l.image_id = i.id),
                EXISTS (SELECT 1 FROM masks m WHERE m.image_id = i.id)
            FROM images i ORDER BY i.id LIMIT ? OFFSET ?""",
            (limit, offset),
        )
        n = _N_IMAGE_COLS
        return [ImageSummary(_image(r[:n]), r[n], r[n + 1], r[n + 2], bool(r[n + 3])) for r in rows]

    def image_path(self, image_id: int | ImageRecord) -> Path:
        """Absolute path of the image file."""
        rec = image_id if isinstance(image_id, ImageRecord) else self.image(image_id)
        p = Path(rec.path)
        return p if p.is_absolute() else (self.root / p)

    def read_image(self, image_id: int | ImageRecord) -> imageio.ImageData:
        return imageio.read_image(self.image_path(image_id))

    def missing_images(self) -> list[ImageRecord]:
        """Images whose file is no longer where the project expects it."""
        return [r for r in self.images() if not self.image_path(r).is_file()]

    def relink(self, image_id: int, new_path: str | Path, *, check_content: bool = True) -> None:
        """Point an image at a new file; by default the content hash must match."""
        new_path = Path(new_path).resolve()
        rec = self.image(image_id)
        if not new_path.is_file():
            raise ValidationError(f"{new_path}: no such file")
        if check_content and imageio.file_sha256(new_path) != rec.sha256:
            raise ValidationError(f"{new_path}: content differs from the missing image {rec.path}")
        with self.transaction():
            self._c.execute(
                "UPDATE images SET path = ? WHERE id = ?", (self._stored_path(new_path), image_id)
            )

    def relink_folder(self, folder: str | Path) -> int:
        """Search ``folder`` recursively for missing images (same content); return how many were relinked."""
        missing = {r.sha256: r for r in self.missing_images()}
        if not missing:
            return 0
        by_name: dict[str, list[ImageRecord]] = {}
        for r in missing.values():
            by_name.setdefault(r.name, []).append(r)
        found = 0
        with self.transaction():
            for f in Path(folder).rglob("*"):
                if f.is_file() and f.name in by_name:
                    digest = imageio.file_sha256(f)
                    rec = missing.pop(digest, None)
                    if rec is not None:
                        self.relink(rec.id, f, check_content=False)
                        found += 1
        return found

    def remove_images(self, image_ids: Iterable[int]) -> None:
        """Forget images (and their annotations); files on disk are left alone."""
        with self.transaction():
            self._c.executemany("DELETE FROM images WHERE id = ?", [(i,) for i in image_ids])

    # -- classes -----------------------------------------------------------
    def classes(self) -> list[ClassInfo]:
        rows = self._c.execute(
            "SELECT id, name, color, position FROM classes ORDER BY position, id"
        )
        return [ClassInfo(*r) for r in rows]

    def class_info(self, class_id: int) -> ClassInfo:
        row = self._c.execute(
            "SELECT id, name, color, position FROM classes WHERE id = ?", (class_id,)
        ).fetchone()
        if row is None:
            raise ValidationError(f"unknown class id {class_id}")
        return ClassInfo(*row)

    def class_by_name(self, name: str) -> ClassInfo | None:
        row = self._c.execute(
            "SELECT id, name, color, position FROM classes WHERE name = ?", (name,)
        ).fetchone()
        return None if row is None else ClassInfo(*row)

    def ensure_class(self, name: str) -> ClassInfo:
        """The class called ``name``, created if it does not exist."""
        return self.class_by_name(name) or self.add_class(name)

    def add_class(self, name: str, color: str | None = None, *, class_id: int | None = None,
                  position: int | None = None) -> ClassInfo:  # fmt: skip
        name = _check_name(name)
        if self.class_by_name(name) is not None:
            raise ValidationError(f"a class called {name!r} already exists")
        with self.transaction():
            n = self._c.execute(
                "SELECT COUNT(*), COALESCE(MAX(position), -1) FROM classes"
            ).fetchone()
            color = color or PALETTE[n[0] % len(PALETTE)]
            position = n[1] + 1 if position is None else position
            cur = self._c.execute(
                "INSERT INTO classes (id, name, color, position) VALUES (?, ?, ?, ?)",
                (class_id, name, _check_color(color), position),
            )
        return ClassInfo(inserted_id(cur), name, color, position)

    def rename_class(self, class_id: int, name: str) -> None:
        name = _check_name(name)
        other = self.class_by_name(name)
        if other is not None and other.id != class_id:
            raise ValidationError(f"a class called {name!r} already exists (merge instead)")
        self.class_info(class_id)
        with self.transaction():
            self._c.execute("UPDATE classes SET name = ? WHERE id = ?", (name, class_id))

    def set_class_color(self, class_id: int, color: str) -> None:
        self.class_info(class_id)
        with self.transaction():
            self._c.execute(
                "UPDATE classes SET color = ? WHERE id = ?", (_check_color(color), class_id)
            )

    def reorder_classes(self, class_ids: Sequence[int]) -> None:
        if sorted(class_ids) != sorted(c.id for c in self.classes()):
            raise ValidationError("reorder needs every class id exactly once")
        with self.transaction():
            self._c.executemany(
                "UPDATE classes SET position = ? WHERE id = ?",
                [(i, c) for i, c in enumerate(class_ids)],
            )

    def class_usage(self, class_id: int) -> dict[str, int]:
        """How many annotations use a class: tags, boxes, landmarks, masks (images)."""
        c = self._c
        return {
            "tags": c.execute(
                "SELECT COUNT(*) FROM tags WHERE class_id = ?", (class_id,)
            ).fetchone()[0],
            "boxes": c.execute(
                "SELECT COUNT(*) FROM boxes WHERE class_id = ?", (class_id,)
            ).fetchone()[0],
            "landmarks": c.execute(
                "SELECT COUNT(*) FROM landmark_sets WHERE class_id = ?", (class_id,)
            ).fetchone()[0],
            "masks": len(self._mask_images_with(class_id)),
        }

    def _mask_images_with(self, class_id: int) -> list[int]:
        rows = self._c.execute(
            "SELECT m.image_id FROM masks m, json_each(m.classes) j WHERE j.value = ?", (class_id,)
        )
        return [r[0] for r in rows]

    def merge_classes(self, source_id: int, target_id: int) -> None:
        """Move every annotation of ``source_id`` to ``target_id`` and delete the source class."""
        if source_id == target_id:
            raise ValidationError("cannot merge a class into itself")
        self.class_info(source_id), self.class_info(target_id)
        with self.transaction():
            c = self._c
            c.execute(
                "INSERT OR IGNORE INTO tags SELECT image_id, ? FROM tags WHERE class_id = ?",
                (target_id, source_id),
            )
            c.execute("DELETE FROM tags WHERE class_id = ?", (source_id,))
            c.execute("UPDATE boxes SET class_id = ? WHERE class_id = ?", (target_id, source_id))
            c.execute(
                "UPDATE landmark_sets SET class_id = ? WHERE class_id = ?", (target_id, source_id)
            )
            c.execute(
                "UPDATE instances SET class_id = ? WHERE class_id = ?", (target_id, source_id)
            )
            self._remap_masks(source_id, target_id)
            c.execute("DELETE FROM classes WHERE id = ?", (source_id,))

    def delete_class(self, class_id: int) -> None:
        """Delete a class and every tag, box, landmark set and mask pixel that uses it."""
        self.class_info(class_id)
        with self.transaction():
            c = self._c
            c.execute("DELETE FROM tags WHERE class_id = ?", (class_id,))
            c.execute("DELETE FROM boxes WHERE class_id = ?", (class_id,))
            c.execute("DELETE FROM landmark_sets WHERE class_id = ?", (class_id,))
            c.execute("DELETE FROM instances WHERE class_id = ?", (class_id,))
            self._remap_masks(class_id, 0)
            c.execute("DELETE FROM classes WHERE id = ?", (class_id,))

    def _remap_masks(self, old: int, new: int) -> None:
        for image_id in self._mask_images_with(old):
            m = self.mask(image_id)
            assert m is not None  # the image was listed for its mask
            m[m == old] = new
            self._write_mask(image_id, m)

    # -- templates ---------------------------------------------------------
    def add_template(self, template: LandmarkTemplate) -> LandmarkTemplate:
        if self.template_by_name(template.name) is not None:
            raise ValidationError(f"a landmark template called {template.name!r} already exists")
        d = template.to_json()
        with self.transaction():
            cur = self._c.execute(
                "INSERT INTO templates (id, name, points, skeleton, flip_pairs) VALUES (?, ?, ?, ?, ?)",
                (template.id, d["name"], json.dumps(d["points"]), json.dumps(d["skeleton"]),
                 json.dumps(d["flip_pairs"])),
            )  # fmt: skip
        return LandmarkTemplate.from_json(d, id=cur.lastrowid)

    def templates(self) -> list[LandmarkTemplate]:
        rows = self._c.execute(
            "SELECT id, name, points, skeleton, flip_pairs FROM templates ORDER BY id"
        )
        return [self._template_row(r) for r in rows]

    def template(self, template_id: int) -> LandmarkTemplate:
        if template_id not in self._template_cache:
            row = self._c.execute(
                "SELECT id, name, points, skeleton, flip_pairs FROM templates WHERE id = ?",
                (template_id,),
            ).fetchone()
            if row is None:
                raise ValidationError(f"unknown landmark template id {template_id}")
            self._template_cache[template_id] = self._template_row(row)
        return self._template_cache[template_id]

    def template_by_name(self, name: str) -> LandmarkTemplate | None:
        row = self._c.execute("SELECT id FROM templates WHERE name = ?", (name,)).fetchone()
        return None if row is None else self.template(row[0])

    def ensure_template(self, template: LandmarkTemplate) -> LandmarkTemplate:
        """The stored template with this name; added if absent; error if it differs."""
        existing = self.template_by_name(template.name)
        if existing is None:
            return self.add_template(template)
        if (existing.points, existing.skeleton, existing.flip_pairs) != (
            template.points, template.skeleton, template.flip_pairs
        ):  # fmt: skip
            raise ValidationError(
                f"a different landmark template called {template.name!r} already exists"
            )
        return existing

    def delete_template(self, template_id: int) -> None:
        n = self._c.execute(
            "SELECT COUNT(*) FROM landmark_sets WHERE template_id = ?", (template_id,)
        ).fetchone()[0]
        if n:
            raise ValidationError(f"template is used by {n} landmark sets; delete those first")
        with self.transaction():
            self._c.execute("DELETE FROM templates WHERE id = ?", (template_id,))
        self._template_cache.pop(template_id, None)

    @staticmethod
    def _template_row(r: Sequence[Any]) -> LandmarkTemplate:
        return LandmarkTemplate.from_json(
            {"name": r[1], "points": json.loads(r[2]), "skeleton": json.loads(r[3]),
             "flip_pairs": json.loads(r[4])}, id=r[0],
        )  # fmt: skip

    # -- annotations: tags --------------------------------------------------
    def tags(self, image_id: int) -> tuple[int, ...]:
        rows = self._c.execute(
            "SELECT t.class_id FROM tags t JOIN classes c ON c.id = t.class_id"
            " WHERE t.image_id = ? ORDER BY c.position, c.id",
            (image_id,),
        )
        return tuple(r[0] for r in rows)

    def set_tags(self, image_id: int, class_ids: Iterable[int]) -> None:
        """Replace the image's class tags (at most one unless the project is multi-label)."""
        class_ids = list(dict.fromkeys(int(c) for c in class_ids))
        rec = self.image(image_id)
        if len(class_ids) > 1 and not self.multi_label:
            raise ValidationError(
                f"image {rec.path}: single-label project, got {len(class_ids)} tags"
            )
        for cid in class_ids:
            self._check_class(cid, rec, "tag")
        with self.transaction():
            self._c.execute("DELETE FROM tags WHERE image_id = ?", (image_id,))
            self._c.executemany(
                "INSERT INTO tags VALUES (?, ?)", [(image_id, c) for c in class_ids]
            )

    # -- annotations: boxes -------------------------------------------------
    def boxes(self, image_id: int) -> tuple[Box, ...]:
        rows = self._c.execute(
            "SELECT class_id, x1, y1, x2, y2, id FROM boxes WHERE image_id = ? ORDER BY id",
            (image_id,),
        )
        return tuple(Box(*r) for r in rows)

    def add_box(self, image_id: int, box: Box) -> Box:
        """Store a box (keeps ``box.id`` if given, for undo); returns it with its id."""
        box = _plain_box(box)
        self._check_box(self.image(image_id), box)
        with self.transaction():
            cur = self._c.execute(
                "INSERT INTO boxes (id, image_id, class_id, x1, y1, x2, y2) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (box.id, image_id, box.class_id, box.x1, box.y1, box.x2, box.y2),
            )
        return Box(box.class_id, box.x1, box.y1, box.x2, box.y2, cur.lastrowid)

    def box(self, box_id: int | None) -> tuple[int, Box]:
        """(image id, box) for a box id; ValidationError if there is none (as for None,
        the id of a box not added yet)."""
        row = self._c.execute(
            "SELECT image_id, class_id, x1, y1, x2, y2, id FROM boxes WHERE id = ?", (box_id,)
        ).fetchone()
        if row is None:
            raise ValidationError(f"no box with id {box_id}")
        return row[0], Box(*row[1:])

    def update_box(self, box: Box) -> None:
        box = _plain_box(box)
        image_id, _ = self.box(box.id)
        self._check_box(self.image(image_id), box)
        with self.transaction():
            self._c.execute(
                "UPDATE boxes SET class_id = ?, x1 = ?, y1 = ?, x2 = ?, y2 = ? WHERE id = ?",
                (box.class_id, box.x1, box.y1, box.x2, box.y2, box.id),
            )

    def remove_box(self, box_id: int) -> None:
        with self.transaction():
            self._c.execute("DELETE FROM boxes WHERE id = ?", (box_id,))

    # -- annotations: landmarks ---------------------------------------------
    def landmark_sets(self, image_id: int) -> tuple[LandmarkSet, ...]:
        rows = self._c.execute(
            "SELECT template_id, points, class_id, id FROM landmark_sets WHERE image_id = ? ORDER BY id",
            (image_id,),
        )
        return tuple(
            LandmarkSet(r[0], LandmarkSet.points_from_json(r[1]), r[2], r[3]) for r in rows
        )

    def landmark_set(self, set_id: int | None) -> tuple[int, LandmarkSet]:
        """(image id, landmark set) for a set id; ValidationError if there is none (as for
        None, the id of a set not added yet)."""
        row = self._c.execute(
            "SELECT image_id, template_id, points, class_id, id FROM landmark_sets WHERE id = ?",
            (set_id,),
        ).fetchone()
        if row is None:
            raise ValidationError(f"no landmark set with id {set_id}")
        return row[0], LandmarkSet(row[1], LandmarkSet.points_from_json(row[2]), row[3], row[4])

    def add_landmark_set(self, image_id: int, lms: LandmarkSet) -> LandmarkSet:
        self._check_landmarks(self.image(image_id), lms)
        with self.transaction():
            cur = self._c.execute(
                "INSERT INTO landmark_sets (id, image_id, template_id, class_id, points)"
                " VALUES (?, ?, ?, ?, ?)",
                (lms.id, image_id, lms.template_id, lms.class_id, lms.points_json()),
            )
        return LandmarkSet(lms.template_id, lms.points, lms.class_id, cur.lastrowid)

    def update_landmark_set(self, lms: LandmarkSet) -> None:
        image_id, old = self.landmark_set(lms.id)
        if lms.template_id != old.template_id:
            raise ValidationError(f"landmark set {lms.id}: template cannot change")
        self._check_landmarks(self.image(image_id), lms)
        with self.transaction():
            self._c.execute(
                "UPDATE landmark_sets SET class_id = ?, points = ? WHERE id = ?",
                (lms.class_id, lms.points_json(), lms.id),
            )

    def remove_landmark_set(self, set_id: int) -> None:
        with self.transaction():
            self._c.execute("DELETE FROM landmark_sets WHERE id = ?", (set_id,))

    # -- annotations: masks ---------------------------------------------------
    def mask(self, image_id: int) -> np.ndarray | None:
        """The H×W uint16 label map (pixel = class id, 0 = background), or None."""
        row = self._c.execute("SELECT png FROM masks WHERE image_id = ?", (image_id,)).fetchone()
        return None if row is None else decode_mask(row[0])

    def set_mask(self, image_id: int, mask: np.ndarray | None) -> None:
        """Replace the image's label map; None (or an all-zero map) removes it."""
        rec = self.image(image_id)
        if mask is None or not mask.any():
            with self.transaction():
                self._c.execute("DELETE FROM masks WHERE image_id = ?", (image_id,))
            return
        if mask.shape != (rec.height, rec.width):
            raise ValidationError(
                f"image {rec.path}: mask is {mask.shape[1]}×{mask.shape[0]} px, "
                f"image is {rec.width}×{rec.height} px"
            )
        known = {c.id for c in self.classes()}
        present = mask_class_ids(mask)
        unknown = sorted(set(present) - known)
        if unknown:
            raise ValidationError(f"image {rec.path}: mask uses unknown class ids {unknown[:5]}")
        self._write_mask(image_id, mask, present)

    def _write_mask(
        self, image_id: int, mask: np.ndarray, present: list[int] | None = None
    ) -> None:
        if not mask.any():
            self.write_encoded_mask(image_id, None, [])
            return
        png, present = encode_mask(mask, present)
        self._store_mask_png(image_id, png, present)

    def write_encoded_mask(self, image_id: int, png: bytes | None, present: list[int]) -> None:
        """Store a label map already encoded by :func:`~.annotations.encode_mask`
        (``png`` None or ``present`` empty removes it). For callers that encode in
        another thread; the class ids in ``present`` must exist."""
        if png is None or not present:
            with self.transaction():
                self._c.execute("DELETE FROM masks WHERE image_id = ?", (image_id,))
            return
        unknown = sorted(set(present) - {c.id for c in self.classes()})
        if unknown:
            rec = self.image(image_id)
            raise ValidationError(f"image {rec.path}: mask uses unknown class ids {unknown[:5]}")
        self._store_mask_png(image_id, png, present)

    def _store_mask_png(self, image_id: int, png: bytes, present: list[int]) -> None:
        with self.transaction():
            self._c.execute(
                "INSERT OR REPLACE INTO masks VALUES (?, ?, ?)",
                (image_id, png, json.dumps(present)),
            )

    def encoded_mask(self, image_id: int) -> tuple[bytes, list[int]] | None:
        """The stored label map as written: its PNG bytes and the class ids in it (None:
        no mask). Tells cheaply whether the mask changed, without decoding it."""
        row = self._c.execute(
            "SELECT png, classes FROM masks WHERE image_id = ?", (image_id,)
        ).fetchone()
        return None if row is None else (bytes(row[0]), [int(c) for c in json.loads(row[1])])

    # -- display windows --------------------------------------------------------------
    def display_window(self, image_id: int) -> tuple[float, float] | None:
        """The display window (center, width) chosen for the image, in its array units
        (e.g. HU for DICOM CT); None: none chosen (show the image's default)."""
        row = self._c.execute(
            "SELECT center, width FROM display_windows WHERE image_id = ?", (image_id,)
        ).fetchone()
        return None if row is None else (float(row[0]), float(row[1]))

    def set_display_window(self, image_id: int, window: tuple[float, float] | None) -> None:
        """Remember the display window (center, width > 0) for the image; None forgets it.
        A display setting, not a label: it is not part of the undo history."""
        with self.transaction():
            if window is None:
                self._c.execute("DELETE FROM display_windows WHERE image_id = ?", (image_id,))
                return
            center, width = float(window[0]), float(window[1])
            if not (np.isfinite(center) and np.isfinite(width) and width > 0):
                raise ValidationError(f"display window needs a finite centre and a width > 0, "
                                      f"got ({center}, {width})")  # fmt: skip
            self._c.execute(
                "INSERT OR REPLACE INTO display_windows VALUES (?, ?, ?)",
                (image_id, center, width),
            )

    # -- annotations: all -----------------------------------------------------
    def annotations(self, image_id: int) -> ImageAnnotations:
        return ImageAnnotations(
            image_id, self.tags(image_id), self.boxes(image_id), self.landmark_sets(image_id),
            self.mask(image_id), self.instances.layer(image_id), self.instances.ignore(image_id),
        )  # fmt: skip

    def set_annotations(self, ann: ImageAnnotations) -> None:
        """Replace everything on ``ann.image_id`` with ``ann`` (ids in ``ann`` are kept)."""
        with self.transaction():
            self.clear_annotations(ann.image_id)
            self.set_tags(ann.image_id, ann.tags)
            for b in ann.boxes:
                self.add_box(ann.image_id, b)
            for lms in ann.landmarks:
                self.add_landmark_set(ann.image_id, lms)
            self.set_mask(ann.image_id, ann.mask)
            self.instances.write_raw(ann.image_id, ann.instances)
            self.instances.set_ignore(ann.image_id, ann.ignore)

    def clear_annotations(self, image_id: int) -> None:
        with self.transaction():
            self.instances.clear(image_id)  # first: objects name boxes
            for table in ("tags", "boxes", "landmark_sets", "masks"):
                self._c.execute(f"DELETE FROM {table} WHERE image_id = ?", (image_id,))

    def iter_annotations(self) -> Iterator[tuple[ImageRecord, ImageAnnotations]]:
        """Every image with its annotations, in id order."""
        for rec in self.images():
            yield rec, self.annotations(rec.id)

    # -- splits -----------------------------------------------------------------
    def set_splits(self, assignment: Mapping[int, str | None]) -> None:
        """Set the split ('train', 'val', 'test' or None) of several images."""
        for split in set(assignment.values()):
            if split is not None and split not in SPLITS:
                raise ValidationError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
        with self.transaction():
            self._c.executemany(
                "UPDATE images SET split = ? WHERE id = ?", [(s, i) for i, s in assignment.items()]
            )

    def set_folds(self, assignment: dict[int, int | None]) -> None:
        with self.transaction():
            self._c.executemany(
                "UPDATE images SET fold = ? WHERE id = ?", [(f, i) for i, f in assignment.items()]
            )

    def images_in_split(self, split: str | None) -> list[ImageRecord]:
        return self._images_where("split", split)

    def _images_where(self, column: str, value: str | None) -> list[ImageRecord]:
        """The images whose ``column`` holds ``value`` (None: NULL), by id."""
        cond, params = (f"{column} IS NULL", ()) if value is None else (f"{column} = ?", (value,))
        rows = self._c.execute(f"SELECT {_IMAGE_COLS} FROM images WHERE {cond} ORDER BY id", params)
        return [_image(r) for r in rows]

    # -- domains ------------------------------------------------------------------
    def set_domains(self, assignment: Mapping[int, str | None]) -> None:
        """Set the domain of several images: the site, scanner, microscope or batch an
        image comes from (free text, see :func:`check_domain`; None or blank = none)."""
        checked = {int(i): check_domain(d) for i, d in assignment.items()}
        with self.transaction():
            self._c.executemany(
                "UPDATE images SET domain = ? WHERE id = ?", [(d, i) for i, d in checked.items()]
            )

    def domains(self) -> dict[str, int]:
        """Images per domain name (images without a domain are not counted), by name."""
        rows = self._c.execute(
            "SELECT domain, COUNT(*) FROM images WHERE domain IS NOT NULL"
            " GROUP BY domain ORDER BY domain"
        )
        return {str(d): int(n) for d, n in rows}

    def images_in_domain(self, domain: str | None) -> list[ImageRecord]:
        """The images of ``domain`` (None: those without a domain), by id."""
        return self._images_where("domain", domain)

    def domain_by_image(self) -> dict[int, str | None]:
        """Every image's domain by image id (None: no domain)."""
        return {int(i): d for i, d in self._c.execute("SELECT id, domain FROM images")}

    def primary_labels(self) -> dict[int, int | None]:
        """A representative class per image (first tag, else most common box, landmark or
        mask class), used to stratify splits; None for unlabelled images."""
        out: dict[int, int | None] = dict.fromkeys(self.image_ids())
        for image_id, classes in self._c.execute("SELECT image_id, classes FROM masks"):
            ids = json.loads(classes)
            if ids:
                out[image_id] = ids[0]
        for sql in (
            "SELECT image_id, class_id FROM landmark_sets WHERE class_id IS NOT NULL"
            " GROUP BY image_id, class_id ORDER BY COUNT(*)",
            "SELECT image_id, class_id FROM boxes GROUP BY image_id, class_id ORDER BY COUNT(*)",
            "SELECT t.image_id, t.class_id FROM tags t JOIN classes c ON c.id = t.class_id"
            " ORDER BY c.position DESC",
        ):
            # later rows win: most frequent / first-positioned class overrides
            for image_id, class_id in self._c.execute(sql):
                out[image_id] = class_id
        return out

    # -- statistics -------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """Counts per kind, per class and per split, and missing files."""
        c = self._c
        per_class = {}
        for info in self.classes():
            per_class[info.name] = self.class_usage(info.id)
        splits = {
            str(s): n for s, n in c.execute("SELECT split, COUNT(*) FROM images GROUP BY split")
        }
        return {
            "images": self.image_count(),
            "kinds": {
                "tags": c.execute("SELECT COUNT(*) FROM tags").fetchone()[0],
                "boxes": c.execute("SELECT COUNT(*) FROM boxes").fetchone()[0],
                "landmarks": c.execute("SELECT COUNT(*) FROM landmark_sets").fetchone()[0],
                "masks": c.execute("SELECT COUNT(*) FROM masks").fetchone()[0],
                "objects": self.instances.count(),
            },
            "labelled_images": c.execute(
                "SELECT COUNT(*) FROM images i WHERE EXISTS (SELECT 1 FROM tags WHERE image_id = i.id)"
                " OR EXISTS (SELECT 1 FROM boxes WHERE image_id = i.id)"
                " OR EXISTS (SELECT 1 FROM landmark_sets WHERE image_id = i.id)"
                " OR EXISTS (SELECT 1 FROM masks WHERE image_id = i.id)"
            ).fetchone()[0],
            "classes": per_class,
            "splits": splits,
            "domains": self.domains(),
            "templates": [t.name for t in self.templates()],
            "missing": [r.path for r in self.missing_images()],
        }

    # -- validation -------------------------------------------------------------
    def _check_class(self, class_id: int | None, rec: ImageRecord, what: str) -> None:
        if class_id is None:
            return
        if self._c.execute("SELECT 1 FROM classes WHERE id = ?", (class_id,)).fetchone() is None:
            raise ValidationError(f"image {rec.path}: {what} uses unknown class id {class_id}")

    def _check_box(self, rec: ImageRecord, box: Box) -> None:
        self._check_class(box.class_id, rec, "box")
        vals = (box.x1, box.y1, box.x2, box.y2)
        if not all(np.isfinite(v) for v in vals):
            raise ValidationError(f"image {rec.path}: box {vals} has a non-finite coordinate")
        if not (box.x1 < box.x2 and box.y1 < box.y2):
            raise ValidationError(
                f"image {rec.path}: box {vals} is empty (needs x1 < x2 and y1 < y2)"
            )
        if box.x1 < 0 or box.y1 < 0 or box.x2 > rec.width or box.y2 > rec.height:
            raise ValidationError(
                f"image {rec.path}: box {vals} lies outside the image ({rec.width}×{rec.height} px)"
            )

    def _check_landmarks(self, rec: ImageRecord, lms: LandmarkSet) -> None:
        template = self.template(lms.template_id)
        self._check_class(lms.class_id, rec, "landmark set")
        if len(lms.points) != len(template.points):
            raise ValidationError(
                f"image {rec.path}: template {template.name!r} has {len(template.points)} points, "
                f"got {len(lms.points)}"
            )
        for name, p in zip(template.points, lms.points, strict=True):
            if p.visibility not in (SKIPPED, OCCLUDED, VISIBLE):
                raise ValidationError(
                    f"image {rec.path}: point {name!r} has visibility {p.visibility}"
                )
            if p.visibility != SKIPPED and not (
                np.isfinite(p.x)
                and np.isfinite(p.y)
                and 0 <= p.x <= rec.width
                and 0 <= p.y <= rec.height
            ):
                raise ValidationError(
                    f"image {rec.path}: point {name!r} at ({p.x}, {p.y}) lies outside the image "
                    f"({rec.width}×{rec.height} px)"
                )


def _plain_box(box: Box) -> Box:
    """The box with Python numbers: sqlite3 would store numpy scalars (e.g. float32
    coordinates from a model) as raw bytes, and int64 class ids would never match."""
    return Box(
        int(box.class_id), float(box.x1), float(box.y1), float(box.x2), float(box.y2),
        None if box.id is None else int(box.id),
    )  # fmt: skip


def _is_project_internal(folder: Path) -> bool:
    """True for a project's disposable ``cache/`` folder (thumbnails, features) and its
    ``.staging/`` folder, whose files must never be imported; other folders called
    ``cache`` are fine."""
    return folder.name in ("cache", STAGING) and (folder.parent / DB_NAME).is_file()


def _image_files_under(folder: Path, recursive: bool, report: ImportReport) -> list[Path]:
    """Image files (by suffix) in ``folder`` (and below), sorted by path; folders that
    cannot be read are listed in ``report.skipped``."""
    if any(_is_project_internal(d) for d in (folder.absolute(), *folder.absolute().parents)):
        return []

    def unreadable(where: Path, reason: str) -> None:
        report.skipped.append((where, f"folder cannot be read ({reason}); skipped"))

    files = walk_files(folder, unreadable, recursive=recursive, skip_folder=_is_project_internal)
    return sorted(f.resolve() for f in files if imageio.is_image_file(f))


def _storable(text: str) -> bool:
    """True if ``text`` can be stored as SQLite text (valid UTF-8: no lone surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _clean_name(name: str) -> str:
    """A file name that can be stored: bytes that are not valid UTF-8 become ``_``."""
    if _storable(name):
        return name
    return os.fsencode(name).decode("utf-8", "replace").replace("\ufffd", "_")


def _cache_dir(root: Path) -> Path:
    """``root/cache``, or where the project folder cannot be written (a read-only
    project), a folder per project under the temporary folder."""
    cache = root / "cache"
    try:
        cache.mkdir(exist_ok=True)
        if os.access(cache, os.W_OK):
            return cache
    except OSError:
        pass
    key = hashlib.sha1(os.fsencode(str(root))).hexdigest()[:16]
    fallback = (
        Path(tempfile.gettempdir())
        / f"tlstudio-cache-{os.getuid() if hasattr(os, 'getuid') else 0}"
        / key
    )
    fallback.mkdir(parents=True, exist_ok=True)
    return fallback


def _check_name(name: str) -> str:
    """The class name, stripped; ValidationError if it is empty, longer than
    :data:`~tlstudio.core.labelset.MAX_CLASS_NAME` characters or holds a NUL."""
    name = str(name).strip()
    if not name:
        raise ValidationError("class name must not be empty")
    return _check_text("class name", name, MAX_CLASS_NAME)


def _check_text(what: str, text: str, limit: int) -> str:
    """``text``; ValidationError naming ``what`` if it is longer than ``limit`` characters
    or holds a NUL or text that cannot be stored."""
    if len(text) > limit:
        raise ValidationError(
            f"{what} longer than {limit} characters ({len(text)}): {text[:40]!r}..."
        )
    if "\x00" in text or not _storable(text):
        raise ValidationError(f"{what} {text[:40]!r} holds invalid text")
    return text


MAX_DOMAIN_NAME = 100
"""Longest domain name, in characters."""


def check_domain(name: str | None) -> str | None:
    """The domain name stripped of surrounding spaces; None for None or a blank name.
    ValidationError for a name longer than :data:`MAX_DOMAIN_NAME` characters or one
    holding a NUL or text that cannot be stored."""
    if name is None:
        return None
    text = str(name).strip()
    return _check_text("domain name", text, MAX_DOMAIN_NAME) if text else None


def _check_color(color: str) -> str:
    c = str(color)
    if len(c) != 7 or c[0] != "#" or any(ch not in "0123456789abcdefABCDEF" for ch in c[1:]):
        raise ValidationError(f"colour {color!r} must look like #rrggbb")
    return c.lower()
