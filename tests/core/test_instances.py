"""Objects (instances) and ignore regions: storage beside the semantic label map, its
consistency rules, undoable commands, and the schema 2 → 3 migration."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from tlstudio.core import commands as C
from tlstudio.core.annotations import Box, InstanceLayer, OutlinePart
from tlstudio.core.errors import ValidationError
from tlstudio.core.project import Project
from tlstudio.core.store import DB_NAME, SCHEMA_VERSION

W, H = 32, 24


def rect(x1: int, y1: int, x2: int, y2: int) -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[y1:y2, x1:x2] = True
    return m


@pytest.fixture
def proj(tmp_path: Path, make_images) -> Project:
    p = Project.create(tmp_path / "p")
    p.add_images(make_images(tmp_path / "src", 2, (W, H)))
    p.add_class("cell")
    p.add_class("nucleus")
    yield p
    p.close()


def cls(p: Project, name: str) -> int:
    info = p.class_by_name(name)
    assert info is not None
    return info.id


def test_two_touching_cells_stay_two_objects_and_the_label_map_follows(proj):
    iid = proj.image_ids()[0]
    cell = cls(proj, "cell")
    a = proj.instances.add(iid, cell, rect(2, 2, 10, 10))
    b = proj.instances.add(iid, cell, rect(10, 2, 18, 10))
    assert (a.number, b.number) == (1, 2) and a.id != b.id
    layer = proj.instances.layer(iid)
    assert layer is not None and [o.id for o in layer.objects] == [a.id, b.id]
    assert np.array_equal(layer.region(1), rect(2, 2, 10, 10))
    assert np.array_equal(layer.region(2), rect(10, 2, 18, 10))
    # the semantic map (what training reads) is derived: one class, both cells
    assert np.array_equal(proj.mask(iid) == cell, rect(2, 2, 18, 10))
    assert proj.stats()["kinds"]["objects"] == 2


def test_a_new_object_takes_its_pixels_from_the_others(proj):
    iid = proj.image_ids()[0]
    cell, nuc = cls(proj, "cell"), cls(proj, "nucleus")
    a = proj.instances.add(iid, cell, rect(0, 0, 20, 20))
    n = proj.instances.add(iid, nuc, rect(5, 5, 10, 10))
    assert np.array_equal(proj.instances.region(a.id), rect(0, 0, 20, 20) & ~rect(5, 5, 10, 10))
    assert np.array_equal(proj.instances.region(n.id), rect(5, 5, 10, 10))
    mask = proj.mask(iid)
    assert (mask[rect(5, 5, 10, 10)] == nuc).all()


def test_delete_set_class_and_regions(proj):
    iid = proj.image_ids()[0]
    cell, nuc = cls(proj, "cell"), cls(proj, "nucleus")
    a = proj.instances.add(iid, cell, rect(0, 0, 8, 8))
    b = proj.instances.add(iid, cell, rect(8, 0, 16, 8))
    proj.instances.set_class(b.id, nuc)
    assert (proj.mask(iid)[rect(8, 0, 16, 8)] == nuc).all()
    proj.instances.add_region(a.id, rect(0, 8, 8, 12))
    proj.instances.remove_region(a.id, rect(0, 0, 8, 2))
    assert np.array_equal(proj.instances.region(a.id), rect(0, 2, 8, 12))
    assert (proj.mask(iid)[rect(0, 0, 8, 2)] == 0).all()
    proj.instances.remove(b.id)
    assert [o.id for o in proj.instances.of_image(iid)] == [a.id]
    assert (proj.mask(iid)[rect(8, 0, 16, 8)] == 0).all()
    with pytest.raises(ValidationError, match="no object with id"):
        proj.instances.get(b.id)


def test_painting_the_label_map_over_an_object_takes_the_pixels_out_until_undone(proj):
    """The class brush writes the semantic map only: repainted pixels stop counting as
    the object's, and restoring the map (undo) gives them back."""
    iid = proj.image_ids()[0]
    cell, nuc = cls(proj, "cell"), cls(proj, "nucleus")
    a = proj.instances.add(iid, cell, rect(0, 0, 10, 10))
    stack = C.UndoStack(proj)
    painted = proj.mask(iid)
    painted[rect(0, 0, 10, 5)] = nuc
    stack.push(C.SetMask(iid, painted))
    assert np.array_equal(proj.instances.region(a.id), rect(0, 5, 10, 10))
    erased = proj.mask(iid)
    erased[:] = 0
    stack.push(C.SetMask(iid, erased))
    assert proj.instances.layer(iid) is None
    stack.undo()
    stack.undo()
    assert np.array_equal(proj.instances.region(a.id), rect(0, 0, 10, 10))


def test_each_object_command_is_one_undo_step_that_restores_exactly(proj):
    iid = proj.image_ids()[0]
    cell, nuc = cls(proj, "cell"), cls(proj, "nucleus")
    stack = C.UndoStack(proj)
    before = proj.annotations(iid)
    create = C.CreateInstance(iid, cell, rect(2, 2, 10, 10))
    stack.push(create)
    inst = create.instance
    assert inst is not None and inst.id is not None
    states = [proj.annotations(iid)]
    for cmd in (
        C.AddToInstance(inst.id, rect(10, 2, 12, 10)),
        C.RemoveFromInstance(inst.id, rect(2, 2, 4, 4)),
        C.SetInstanceClass(inst.id, nuc),
        C.SetIgnoreRegion(iid, rect(20, 0, 32, 24)),
        C.DeleteInstance(inst.id),
    ):
        stack.push(cmd)
        states.append(proj.annotations(iid))
    assert stack.count == 6
    assert proj.instances.layer(iid) is None and proj.instances.ignore(iid) is not None
    for want in reversed(states[:-1]):
        stack.undo()
        assert proj.annotations(iid) == want
    stack.undo()
    assert proj.annotations(iid) == before
    for want in states:  # redo keeps the object's id and number
        stack.redo()
        assert proj.annotations(iid) == want


def test_one_gesture_that_creates_and_grows_an_object_is_one_step(proj):
    iid = proj.image_ids()[0]
    cell = cls(proj, "cell")
    stack = C.UndoStack(proj)
    create = C.CreateInstance(iid, cell, rect(0, 0, 4, 4), gesture="stroke-1")
    stack.push(create)
    assert create.instance is not None and create.instance.id is not None
    stack.push(C.AddToInstance(create.instance.id, rect(4, 0, 8, 4), gesture="stroke-1"))
    stack.push(C.AddToInstance(create.instance.id, rect(8, 0, 12, 4), gesture="stroke-1"))
    assert stack.count == 1
    assert np.array_equal(proj.instances.region(create.instance.id), rect(0, 0, 12, 4))
    stack.undo()
    assert proj.instances.layer(iid) is None and proj.mask(iid) is None
    stack.redo()
    assert np.array_equal(proj.instances.region(create.instance.id), rect(0, 0, 12, 4))


def test_objects_survive_reopening(proj, tmp_path):
    iid = proj.image_ids()[0]
    cell = cls(proj, "cell")
    box = proj.add_box(iid, Box(cell, 2, 2, 10, 10))
    outline = (OutlinePart("polygon", (2, 2, 10, 2, 10, 10, 2, 10)),)
    proj.instances.add(iid, cell, rect(2, 2, 10, 10), iscrowd=True, box_id=box.id, outline=outline)
    proj.instances.set_ignore(iid, rect(0, 20, 32, 24))
    proj.close()
    with Project.open(tmp_path / "p") as again:
        (inst,) = again.instances.of_image(iid)
        assert (inst.iscrowd, inst.box_id, inst.outline) == (True, box.id, outline)
        assert np.array_equal(again.instances.ignore(iid), rect(0, 20, 32, 24))
        again.remove_box(box.id)  # the link goes, the object stays
        assert again.instances.of_image(iid)[0].box_id is None


def test_deleting_and_merging_classes_carries_objects(proj):
    iid = proj.image_ids()[0]
    cell, nuc = cls(proj, "cell"), cls(proj, "nucleus")
    a = proj.instances.add(iid, cell, rect(0, 0, 5, 5))
    proj.instances.add(iid, nuc, rect(10, 0, 15, 5))
    stack = C.UndoStack(proj)
    before = proj.annotations(iid)
    stack.push(C.MergeClasses(nuc, cell))
    assert [o.class_id for o in proj.instances.of_image(iid)] == [cell, cell]
    stack.undo()
    assert proj.annotations(iid) == before
    stack.push(C.DeleteClass(cell))
    assert [o.class_id for o in proj.instances.of_image(iid)] == [nuc]
    stack.undo()
    assert proj.annotations(iid) == before
    assert proj.instances.get(a.id)[1].class_id == cell


def test_set_annotations_round_trips_objects_and_ignore(proj):
    a, b = proj.image_ids()
    cell = cls(proj, "cell")
    proj.instances.add(a, cell, rect(0, 0, 5, 5))
    proj.instances.add(a, cell, rect(5, 0, 9, 5))
    proj.instances.set_ignore(a, rect(0, 10, 5, 12))
    ann = proj.annotations(a)
    assert ann.instances is not None and len(ann.instances.objects) == 2
    proj.clear_annotations(a)
    assert proj.annotations(a).is_empty
    proj.set_annotations(ann)
    assert proj.annotations(a) == ann


def test_bad_layers_are_refused(proj):
    iid = proj.image_ids()[0]
    cell = cls(proj, "cell")
    with pytest.raises(ValidationError, match="region is 3×3 px"):
        proj.instances.add(iid, cell, np.ones((3, 3), bool))
    with pytest.raises(ValidationError, match="covers no pixel"):
        proj.instances.add(iid, cell, np.zeros((H, W), bool))
    with pytest.raises(ValidationError, match="unknown class id"):
        proj.instances.add(iid, 999, rect(0, 0, 2, 2))
    other = proj.add_box(proj.image_ids()[1], Box(cell, 0, 0, 5, 5))
    with pytest.raises(ValidationError, match="not a box of this image"):
        proj.instances.add(iid, cell, rect(0, 0, 2, 2), box_id=other.id)
    assert proj.instances.layer(iid) is None and proj.mask(iid) is None


def test_a_version_3_project_is_migrated_and_keeps_its_masks(tmp_path, make_images):
    root = tmp_path / "old"
    with Project.create(root) as p:
        p.add_images(make_images(tmp_path / "src", 1, (W, H)))
        cid = p.add_class("cell").id
        iid = p.image_ids()[0]
        mask = np.zeros((H, W), np.uint16)
        mask[rect(1, 1, 6, 6)] = cid
        p.set_mask(iid, mask)
        p.set_display_window(iid, (10.0, 20.0))
    with sqlite3.connect(root / DB_NAME) as conn:  # what tlstudio with schema 3 wrote
        for table in ("instances", "instance_maps", "ignore_masks"):
            conn.execute(f"DROP TABLE {table}")
        conn.execute("DROP INDEX images_domain")  # schema 5's
        conn.execute("ALTER TABLE images DROP COLUMN domain")
        conn.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'")
    with Project.open(root) as p:
        assert p.store.get_meta("schema_version") == str(SCHEMA_VERSION)
        assert np.array_equal(p.mask(iid), mask)
        assert p.display_window(iid) == (10.0, 20.0)
        assert p.instances.layer(iid) is None  # old masks have no objects
        p.instances.add(iid, cid, rect(10, 10, 14, 14))
        assert len(p.instances.of_image(iid)) == 1
        assert (p.mask(iid) == cid).sum() == 25 + 16


def test_layer_semantic_and_equality():
    m = np.zeros((4, 4), np.uint16)
    m[0, :2] = 3
    m[2, 2] = 7
    from tlstudio.core.annotations import Instance

    layer = InstanceLayer(m, (Instance(3, 11), Instance(7, 12)))
    sem = layer.semantic()
    assert sem[0, 0] == 11 and sem[2, 2] == 12 and sem.sum() == 11 * 2 + 12
    assert layer == InstanceLayer(m.copy(), (Instance(3, 11), Instance(7, 12)))
    assert layer != InstanceLayer(m, (Instance(3, 11),))
