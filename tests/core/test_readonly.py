"""Projects that cannot be written or read (issue 11 §12, §13).

File permissions do not stop root, so these tests run the code under test in a forked
child that drops to 'nobody' first (the ``unprivileged`` fixture); as any other user the
child keeps that user, and the permissions bite the same way.
"""

from __future__ import annotations

import contextlib
import io
import os
import stat
from pathlib import Path

import pytest

from tlstudio import cli
from tlstudio.core.errors import ReadOnlyProjectError
from tlstudio.core.project import Project
from tlstudio.core.store import DB_NAME

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork (POSIX)")


def _cli(*argv: object) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def _project(folder: Path, make_images, give_away) -> Path:
    root = folder / "proj"
    with Project.create(root) as p:
        p.add_images(make_images(folder / "src", 2))
        p.add_class("cat")
    give_away(folder)
    return root


def _try_read_only_session(root: str) -> dict:
    with Project.open(root) as p:
        facts = {"read_only": p.read_only, "reason": p.read_only_reason,
                 "images": p.image_count(), "classes": [c.name for c in p.classes()]}  # fmt: skip
        try:
            p.add_class("dog")
        except ReadOnlyProjectError as exc:
            facts["refused"] = str(exc)
    facts["cli"] = _cli("info", root)
    return facts


def test_a_read_only_database_opens_read_only_and_refuses_edits(unprivileged, make_images) -> None:
    folder, run, give_away = unprivileged
    root = _project(folder, make_images, give_away)
    os.chmod(root / DB_NAME, 0o444)
    facts = run(_try_read_only_session, str(root))
    assert facts["read_only"] and "project.sqlite is read-only" in facts["reason"]
    assert facts["images"] == 2 and facts["classes"] == ["cat"]
    assert "read-only" in facts["refused"] and "edits are disabled" in facts["refused"]
    code, out, err = facts["cli"]
    assert code == 0 and "Traceback" not in err
    assert "Read-only (project.sqlite is read-only): edits are disabled" in out
    assert "Images: 2" in out


def test_a_read_only_project_folder_opens_read_only(unprivileged, make_images) -> None:
    folder, run, give_away = unprivileged
    root = _project(folder, make_images, give_away)
    for side in ("-wal", "-shm"):  # as after a clean close: nothing to create in the folder
        (root / (DB_NAME + side)).unlink(missing_ok=True)
    os.chmod(root, 0o555)
    try:
        facts = run(_try_read_only_session, str(root))
    finally:
        os.chmod(root, 0o755)
    assert facts["read_only"] and "folder is read-only" in facts["reason"]
    assert facts["images"] == 2 and "refused" in facts
    assert facts["cli"][0] == 0 and "Traceback" not in facts["cli"][2]


def _writable_session_after_read_only_one(root: str) -> dict:
    db = Path(root) / DB_NAME
    with Project.open(root) as p:  # read-only: the database is 0444
        assert p.read_only
        p.image_count()
    shm = db.with_name(DB_NAME + "-shm")
    left = stat.S_IMODE(shm.stat().st_mode) if shm.exists() else None
    os.chmod(db, 0o644)  # the owner makes it writable again
    with Project.open(root) as p:
        p.add_class("dog")
        names = [c.name for c in p.classes()]
    return {"shm_mode_left": left, "names": names}


def test_a_read_only_session_does_not_lock_out_later_writers(unprivileged, make_images) -> None:
    folder, run, give_away = unprivileged
    root = _project(folder, make_images, give_away)
    os.chmod(root / DB_NAME, 0o444)
    facts = run(_writable_session_after_read_only_one, str(root))
    assert facts["shm_mode_left"] == 0o444  # what SQLite leaves behind
    assert facts["names"] == ["cat", "dog"]


def test_an_unreadable_database_is_a_clear_error(unprivileged, make_images) -> None:
    folder, run, give_away = unprivileged
    root = _project(folder, make_images, give_away)
    os.chmod(root / DB_NAME, 0o000)
    code, out, err = run(_cli, "info", str(root))
    assert code == 2 and out == ""
    assert err.startswith("error: ") and "Traceback" not in err
    assert f"{root / DB_NAME}: cannot be opened: permission denied" in err


def test_an_unreadable_project_folder_is_a_clear_error(unprivileged, make_images) -> None:
    folder, run, give_away = unprivileged
    root = _project(folder, make_images, give_away)
    os.chmod(root, 0o000)
    try:
        code, out, err = run(_cli, "info", str(root))
    finally:
        os.chmod(root, 0o755)
    assert code == 2 and "Traceback" not in err
    assert "permission denied" in err


def _import_folder(root: str, src: str) -> tuple[int, str, str]:
    return _cli("import", root, src)


def test_an_unreadable_sub_folder_is_listed_and_the_rest_imported(
    unprivileged, make_images
) -> None:
    folder, run, give_away = unprivileged
    root = folder / "proj"
    Project.create(root).close()
    src = folder / "photos"
    make_images(src, 3)
    make_images(src / "good", 2, start=10)
    make_images(src / "lockeddir", 2, start=20)
    (src / "lockeddir" / DB_NAME).write_bytes(b"")  # as in the report: format detection
    unreadable = make_images(src, 1, prefix="secret", start=30)[0]
    give_away(folder)
    os.chmod(src / "lockeddir", 0o000)
    os.chmod(unreadable, 0o000)
    try:
        code, out, err = run(_import_folder, str(root), str(src))
    finally:
        os.chmod(src / "lockeddir", 0o755)
    assert code == 0, err
    assert "Traceback" not in err
    assert "Images: 5 added" in out
    assert f"skipped: {src / 'lockeddir'}: folder cannot be read (Permission denied)" in out
    assert f"bad file: {unreadable}: cannot open file (Permission denied)" in out
    with Project.open(root) as p:
        assert p.image_count() == 5
