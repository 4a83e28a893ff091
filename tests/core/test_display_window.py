"""Per-image display windows in the store (schema 2), pre-encoded mask writes and the
write barrier that lets the GUI finish pending mask writes before any other edit."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from tlstudio.core.annotations import encode_mask
from tlstudio.core.errors import ValidationError
from tlstudio.core.project import Project
from tlstudio.core.store import DB_NAME, SCHEMA_VERSION


@pytest.fixture
def project(tmp_path: Path, make_images):
    proj = Project.create(tmp_path / "p")
    proj.add_images(make_images(tmp_path / "src", 2))
    yield proj
    proj.close()


def test_display_window_is_kept_per_image_and_forgotten(project: Project) -> None:
    a, b = project.image_ids()
    assert project.display_window(a) is None
    project.set_display_window(a, (-600, 1500))
    project.set_display_window(b, (40.5, 80))
    project.set_display_window(a, (40, 400))
    assert project.display_window(a) == (40.0, 400.0)
    assert project.display_window(b) == (40.5, 80.0)
    project.set_display_window(b, None)
    assert project.display_window(b) is None
    for bad in ((0, 0), (0, -5), (float("nan"), 10)):
        with pytest.raises(ValidationError, match="width > 0"):
            project.set_display_window(a, bad)
    project.remove_images([a])
    assert project.store.conn.execute("SELECT COUNT(*) FROM display_windows").fetchone()[0] == 0


def test_a_version_1_project_is_migrated_and_keeps_its_data(tmp_path: Path, make_images) -> None:
    root = tmp_path / "old"
    with Project.create(root) as proj:
        proj.add_images(make_images(tmp_path / "src", 1))
        proj.add_class("cat")
    with sqlite3.connect(root / DB_NAME) as conn:  # what tlstudio 1 wrote
        for table in ("display_windows", "instances", "instance_maps", "ignore_masks"):
            conn.execute(f"DROP TABLE {table}")
        conn.execute("ALTER TABLE runs DROP COLUMN owner")  # version 3's
        conn.execute("DROP INDEX images_domain")  # version 5's
        conn.execute("ALTER TABLE images DROP COLUMN domain")
        conn.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    with Project.open(root) as proj:
        assert proj.store.get_meta("schema_version") == str(SCHEMA_VERSION)
        columns = [r[1] for r in proj.store.conn.execute("PRAGMA table_info(runs)")]
        assert "owner" in columns
        iid = proj.image_ids()[0]
        proj.set_display_window(iid, (40, 80))
        assert [c.name for c in proj.classes()] == ["cat"]
    with Project.open(root) as proj:
        assert proj.display_window(iid) == (40.0, 80.0)


def test_pre_encoded_mask_write_checks_classes(project: Project) -> None:
    iid = project.image_ids()[0]
    cid = project.add_class("cat").id
    rec = project.image(iid)
    label = np.zeros((rec.height, rec.width), np.uint16)
    label[2:5, 3:6] = cid
    png, present = encode_mask(label)
    project.write_encoded_mask(iid, png, present)
    assert np.array_equal(project.mask(iid), label)
    assert project.encoded_mask(iid) == (png, [cid])
    with pytest.raises(ValidationError, match="unknown class ids"):
        project.write_encoded_mask(iid, png, [cid + 7])
    project.write_encoded_mask(iid, None, [])
    assert project.mask(iid) is None and project.encoded_mask(iid) is None


def test_write_barriers_run_before_other_writes_and_close(project: Project) -> None:
    calls: list[str] = []
    iid = project.image_ids()[0]

    def barrier() -> None:  # writes itself: must not call the barrier again
        calls.append("barrier")
        project.set_display_window(iid, (1, 2))

    project.store.write_barriers.append(barrier)
    project.add_class("dog")
    assert calls == ["barrier"] and project.display_window(iid) == (1.0, 2.0)
    with project.transaction():  # nested transactions: once, at the outermost
        project.add_class("cow")
        project.add_class("pig")
    assert calls == ["barrier"] * 2
    project.close()
    assert calls == ["barrier"] * 3
