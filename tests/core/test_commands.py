"""Undoable commands: every command's do/undo/redo restores the exact database state,
plus merging, clean index, redo tail and the history limit of the undo stack."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from tlstudio.core import commands as C
from tlstudio.core.annotations import OCCLUDED, SKIPPED, Box, ImageAnnotations, LandmarkSet, Point
from tlstudio.core.errors import ValidationError
from tlstudio.core.labelset import LandmarkTemplate
from tlstudio.core.project import Project

W, H = 32, 24


def _face_points(dx: float = 0.0) -> tuple[Point, ...]:
    return (
        Point(10 + dx, 8),
        Point(20 + dx, 8),
        Point(15 + dx, 12, OCCLUDED),
        Point(11 + dx, 18),
        Point(0, 0, SKIPPED),
    )


class Ctx:
    """The fixture project annotated on three images, with handy ids."""

    def __init__(self, project: Project):
        self.p = project
        self.ids = project.image_ids()
        self.c = {x.name: x.id for x in project.classes()}
        self.face = project.template_by_name("Face 5")
        c, ids, face = self.c, self.ids, self.face
        project.set_tags(ids[0], [c["cat"]])
        self.cat_box = project.add_box(ids[0], Box(c["cat"], 1, 1, 10, 10))
        self.dog_box = project.add_box(ids[0], Box(c["dog"], 2, 2, 12, 12))
        self.lms = project.add_landmark_set(ids[0], LandmarkSet(face.id, _face_points(), c["cat"]))
        self.lms_free = project.add_landmark_set(ids[1], LandmarkSet(face.id, _face_points(2)))
        m0 = np.zeros((H, W), np.uint16)
        m0[:5, :5] = c["cat"]
        m0[10:, 10:] = c["dog"]
        project.set_mask(ids[0], m0)
        project.set_tags(ids[1], [c["dog"]])
        project.add_box(ids[1], Box(c["dog"], 0, 0, W, H))
        m1 = np.zeros((H, W), np.uint16)
        m1[3:6, 3:6] = c["dog"]
        project.set_mask(ids[1], m1)
        project.set_tags(ids[2], [c["cat"]])
        project.add_box(ids[2], Box(c["bird"], 5, 5, 6, 6))
        self.obj = project.instances.add(ids[5], c["dog"], _region(12, 2, 20, 8))
        self.obj2 = project.instances.add(ids[5], c["cat"], _region(20, 2, 26, 8), iscrowd=True)
        project.instances.set_ignore(ids[5], _region(0, 20, 8, 24))
        project.set_splits({ids[0]: "train", ids[1]: "val"})


def _region(x1: int, y1: int, x2: int, y2: int) -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[y1:y2, x1:x2] = True
    return m


def _stroke(ctx: Ctx, value: int) -> np.ndarray:
    m = ctx.p.mask(ctx.ids[2])
    m = np.zeros((H, W), np.uint16) if m is None else m
    m[value : value + 3, 0:4] = ctx.c["bird"]
    return m


# One factory per command class: the command to push on the annotated project.
CASES: dict[str, Callable[[Ctx], C.Command]] = {
    "AddBox": lambda x: C.AddBox(x.ids[3], Box(x.c["dog"], 3, 4, 20, 21)),
    "EditBox": lambda x: C.EditBox(Box(x.c["bird"], 0, 0, 5, 5, x.cat_box.id)),
    "RemoveBox": lambda x: C.RemoveBox(x.dog_box.id),
    "AddLandmarkSet": lambda x: C.AddLandmarkSet(
        x.ids[4], LandmarkSet(x.face.id, _face_points(1), x.c["bird"])
    ),
    "EditLandmarkSet": lambda x: C.EditLandmarkSet(
        replace(C.move_point(x.lms, 2, Point(3, 3)), class_id=x.c["dog"])
    ),
    "RemoveLandmarkSet": lambda x: C.RemoveLandmarkSet(x.lms.id),
    "SetTags": lambda x: C.SetTags(x.ids[0], [x.c["bird"]]),
    "SetMask": lambda x: C.SetMask(x.ids[0], np.where(x.p.mask(x.ids[0]) > 0, x.c["bird"], 0)),
    "SetAnnotations": lambda x: C.SetAnnotations(
        ImageAnnotations(
            x.ids[0],
            (x.c["dog"],),
            (Box(x.c["bird"], 0, 0, 3, 3), Box(x.c["cat"], 1, 2, 3, 4)),
            (LandmarkSet(x.face.id, _face_points(3)),),
            np.full((H, W), x.c["dog"], np.uint16),
        )
    ),
    "AddClass": lambda x: C.AddClass("fish", "#010203"),
    "RenameClass": lambda x: C.RenameClass(x.c["cat"], "kitten"),
    "SetClassColor": lambda x: C.SetClassColor(x.c["dog"], "#123456"),
    "MergeClasses": lambda x: C.MergeClasses(x.c["dog"], x.c["cat"]),
    "DeleteClass": lambda x: C.DeleteClass(x.c["dog"]),
    "ReorderClasses": lambda x: C.ReorderClasses([x.c["bird"], x.c["dog"], x.c["cat"]]),
    "AddTemplate": lambda x: C.AddTemplate(
        LandmarkTemplate("Pair", ("l", "r"), ((0, 1),), ((0, 1),))
    ),
    "SetSplits": lambda x: C.SetSplits({x.ids[0]: "test", x.ids[1]: None, x.ids[5]: "val"}),
    "SetDomains": lambda x: C.SetDomains({x.ids[0]: "site A", x.ids[1]: None, x.ids[5]: "B"}),
    "CreateInstance": lambda x: C.CreateInstance(x.ids[5], x.c["bird"], _region(14, 4, 24, 12)),
    "AddToInstance": lambda x: C.AddToInstance(x.obj.id, _region(18, 6, 30, 10)),
    "RemoveFromInstance": lambda x: C.RemoveFromInstance(x.obj.id, _region(12, 2, 14, 8)),
    "DeleteInstance": lambda x: C.DeleteInstance(x.obj2.id),
    "SetInstanceClass": lambda x: C.SetInstanceClass(x.obj.id, x.c["bird"]),
    "SetIgnoreRegion": lambda x: C.SetIgnoreRegion(x.ids[0], _region(0, 0, 4, 4)),
    "CommandGroup": lambda x: C.CommandGroup(
        [
            C.AddBox(x.ids[3], Box(x.c["dog"], 3, 4, 20, 21)),
            C.SetTags(x.ids[0], [x.c["bird"]]),
            C.RemoveBox(x.dog_box.id),
        ],
        "Accept predictions",
    ),
}

# Variants that reach other branches of the same classes.
EXTRA_CASES: dict[str, Callable[[Ctx], C.Command]] = {
    "SetMask-remove": lambda x: C.SetMask(x.ids[0], None),
    "SetMask-new": lambda x: C.SetMask(x.ids[2], _stroke(x, 0)),
    "SetTags-clear": lambda x: C.SetTags(x.ids[1], []),
    "SetAnnotations-clear": lambda x: C.SetAnnotations(ImageAnnotations(x.ids[0])),
    "DeleteClass-cat": lambda x: C.DeleteClass(x.c["cat"]),
    "MergeClasses-cat-into-bird": lambda x: C.MergeClasses(x.c["cat"], x.c["bird"]),
    "DeleteClass-unused": lambda x: C.DeleteClass(x.p.add_class("unused").id),
    "AddClass-default-colour": lambda x: C.AddClass("fish"),
    "CreateInstance-first-on-image": lambda x: C.CreateInstance(
        x.ids[4], x.c["dog"], _region(0, 0, 3, 3)
    ),
    "DeleteInstance-last-pixels": lambda x: C.CommandGroup(
        [C.DeleteInstance(x.obj.id), C.DeleteInstance(x.obj2.id)], "Delete objects"
    ),
    "SetIgnoreRegion-remove": lambda x: C.SetIgnoreRegion(x.ids[5], None),
    "SetMask-over-objects": lambda x: C.SetMask(x.ids[5], None),
    "SetAnnotations-keeps-objects": lambda x: C.SetAnnotations(
        replace(x.p.annotations(x.ids[5]), tags=(x.c["dog"],))
    ),
}


def test_every_command_class_is_covered() -> None:
    classes = {
        name
        for name, obj in vars(C).items()
        if inspect.isclass(obj)
        and issubclass(obj, C.Command)
        and obj is not C.Command
        and not name.startswith("_")
    }
    assert classes == set(CASES), f"commands without a do/undo/redo test: {classes ^ set(CASES)}"


@pytest.mark.parametrize("name", [*CASES, *EXTRA_CASES])
def test_do_undo_redo_restores_exact_state(project: Project, db_state, name: str) -> None:
    ctx = Ctx(project)
    cmd = {**CASES, **EXTRA_CASES}[name](ctx)
    conn = project.store.conn
    stack = C.UndoStack(project)
    before = db_state(conn)
    stack.push(cmd)
    after = db_state(conn)
    assert after != before, f"{name} changed nothing"
    assert stack.undo_text == cmd.text and stack.count == 1
    for _ in range(2):  # twice: a command must survive repeated undo/redo
        stack.undo()
        assert db_state(conn) == before
        assert stack.redo_text == cmd.text
        stack.redo()
        assert db_state(conn) == after
    assert not conn.in_transaction


def test_merge_and_delete_class_undo_restore_everything(project: Project, db_state) -> None:
    ctx = Ctx(project)
    c, ids = ctx.c, ctx.ids
    before_ann = {i: project.annotations(i) for i in ids}
    before = db_state(project.store.conn)
    stack = C.UndoStack(project)

    stack.push(C.MergeClasses(c["dog"], c["cat"]))
    assert project.class_by_name("dog") is None
    assert c["dog"] not in np.unique(project.mask(ids[0]))
    stack.push(C.DeleteClass(c["cat"]))
    assert project.mask(ids[0]) is None and project.mask(ids[1]) is None
    assert project.boxes(ids[0]) == ()
    assert project.landmark_sets(ids[0]) == ()

    stack.undo()
    stack.undo()
    assert db_state(project.store.conn) == before
    for i in ids:
        assert project.annotations(i) == before_ann[i]
    assert [b.id for b in project.boxes(ids[0])] == [ctx.cat_box.id, ctx.dog_box.id]
    assert project.boxes(ids[0]) == (ctx.cat_box, ctx.dog_box)
    assert project.landmark_sets(ids[0]) == (ctx.lms,)
    assert project.class_info(c["dog"]).position == 1
    assert [x.name for x in project.classes()] == ["cat", "dog", "bird"]


def test_merge_class_undo_in_multi_label_project(tmp_path: Path, make_images, db_state) -> None:
    make_images(tmp_path / "src", 2)
    with Project.create(tmp_path / "p", multi_label=True) as proj:
        a_img, b_img = proj.add_images([tmp_path / "src"]).added
        x, y = proj.add_class("x").id, proj.add_class("y").id
        proj.set_tags(a_img, [x, y])
        proj.set_tags(b_img, [y])
        before = db_state(proj.store.conn)
        stack = C.UndoStack(proj)
        stack.push(C.MergeClasses(y, x))
        assert proj.tags(a_img) == (x,) and proj.tags(b_img) == (x,)
        stack.undo()
        assert db_state(proj.store.conn) == before


# -- merging -------------------------------------------------------------------


def test_edit_box_same_gesture_is_one_step(project: Project) -> None:
    ctx = Ctx(project)
    b = ctx.cat_box
    stack = C.UndoStack(project)
    for dx in (1, 2, 3):
        stack.push(
            C.EditBox(Box(b.class_id, b.x1 + dx, b.y1, b.x2 + dx, b.y2, b.id), gesture="drag1")
        )
    assert stack.count == 1
    assert project.box(b.id)[1].x1 == b.x1 + 3
    stack.undo()
    assert project.box(b.id)[1] == b
    assert not stack.can_undo
    stack.redo()
    assert project.box(b.id)[1].x1 == b.x1 + 3


def test_edit_box_different_gestures_are_two_steps(project: Project) -> None:
    ctx = Ctx(project)
    b = ctx.cat_box
    stack = C.UndoStack(project)
    stack.push(C.EditBox(Box(b.class_id, 2, 1, 10, 10, b.id), gesture="drag1"))
    stack.push(C.EditBox(Box(b.class_id, 3, 1, 10, 10, b.id), gesture="drag2"))
    stack.push(C.EditBox(Box(b.class_id, 4, 1, 10, 10, b.id)))  # no gesture: never merges
    stack.push(C.EditBox(Box(b.class_id, 5, 1, 10, 10, b.id)))
    assert stack.count == 4
    for x1 in (4, 3, 2, 1):
        stack.undo()
        assert project.box(b.id)[1].x1 == x1
    # same gesture on two different boxes: two steps
    stack.push(C.EditBox(Box(b.class_id, 2, 1, 10, 10, b.id), gesture="g"))
    d = ctx.dog_box
    stack.push(C.EditBox(Box(d.class_id, 3, 2, 12, 12, d.id), gesture="g"))
    assert stack.count == 2


def test_set_mask_strokes_merge(project: Project, db_state) -> None:
    ctx = Ctx(project)
    iid = ctx.ids[2]
    before = db_state(project.store.conn)
    stack = C.UndoStack(project)
    for y in (0, 2, 4, 6):
        stack.push(C.SetMask(iid, _stroke(ctx, y), gesture=("stroke", 1)))
    assert stack.count == 1
    assert int((project.mask(iid) == ctx.c["bird"]).sum()) == 9 * 4
    stack.push(C.SetMask(iid, _stroke(ctx, 12), gesture=("stroke", 2)))
    assert stack.count == 2
    stack.undo()
    assert int((project.mask(iid) == ctx.c["bird"]).sum()) == 9 * 4
    stack.undo()
    assert project.mask(iid) is None
    assert db_state(project.store.conn) == before


def test_edit_landmarks_same_gesture_merges(project: Project) -> None:
    ctx = Ctx(project)
    stack = C.UndoStack(project)
    lms = ctx.lms
    for x in (11, 12, 13):
        lms = C.move_point(lms, 0, Point(x, 8))
        stack.push(C.EditLandmarkSet(lms, gesture="drag"))
    assert stack.count == 1
    assert project.landmark_set(ctx.lms.id)[1].points[0] == Point(13, 8)
    stack.undo()
    assert project.landmark_set(ctx.lms.id)[1] == ctx.lms


def test_no_merge_into_the_clean_state(project: Project) -> None:
    ctx = Ctx(project)
    b = ctx.cat_box
    stack = C.UndoStack(project)
    stack.push(C.EditBox(Box(b.class_id, 2, 1, 10, 10, b.id), gesture="g"))
    stack.set_clean()
    stack.push(C.EditBox(Box(b.class_id, 3, 1, 10, 10, b.id), gesture="g"))
    assert stack.count == 2
    assert not stack.is_clean
    stack.undo()
    assert stack.is_clean
    assert project.box(b.id)[1].x1 == 2


# -- stack bookkeeping -------------------------------------------------------------


def test_undo_redo_text(project: Project) -> None:
    ctx = Ctx(project)
    stack = C.UndoStack(project)
    assert stack.undo_text == "" and stack.redo_text == ""
    assert not stack.can_undo and not stack.can_redo
    stack.undo()  # harmless no-ops
    stack.redo()
    stack.push(C.AddBox(ctx.ids[3], Box(ctx.c["cat"], 0, 0, 2, 2)))
    stack.push(C.RenameClass(ctx.c["cat"], "kitten"))
    assert stack.undo_text == "Rename class to 'kitten'"
    stack.undo()
    assert stack.undo_text == "Add box"
    assert stack.redo_text == "Rename class to 'kitten'"
    stack.undo()
    assert stack.undo_text == ""
    assert stack.redo_text == "Add box"


def test_clean_index(project: Project) -> None:
    ctx = Ctx(project)
    events = []
    stack = C.UndoStack(project)
    stack.add_listener(lambda: events.append(stack.index))
    assert stack.is_clean
    add = [C.AddBox(ctx.ids[3], Box(ctx.c["cat"], 0, 0, k, k)) for k in (2, 3, 4, 5)]
    stack.push(add[0])
    assert not stack.is_clean
    stack.push(add[1])
    stack.set_clean()
    assert stack.is_clean
    stack.undo()
    assert not stack.is_clean
    stack.redo()
    assert stack.is_clean
    stack.push(add[2])
    assert not stack.is_clean
    stack.undo()
    assert stack.is_clean
    # branch off below the clean index: the clean state becomes unreachable
    stack.undo()
    stack.undo()
    stack.push(add[3])
    assert stack.count == 1 and not stack.can_redo
    assert not stack.is_clean
    stack.undo()
    assert not stack.is_clean
    stack.redo()
    assert not stack.is_clean
    assert events == [1, 2, 2, 1, 2, 3, 2, 1, 0, 1, 0, 1]
    stack.clear()
    assert stack.is_clean and stack.count == 0


def test_push_drops_redo_tail(project: Project) -> None:
    ctx = Ctx(project)
    stack = C.UndoStack(project)
    a = C.AddBox(ctx.ids[3], Box(ctx.c["cat"], 0, 0, 2, 2))
    b = C.AddBox(ctx.ids[3], Box(ctx.c["cat"], 0, 0, 3, 3))
    stack.push(a)
    stack.push(b)
    stack.undo()
    assert stack.can_redo
    stack.push(C.SetTags(ctx.ids[3], [ctx.c["dog"]]))
    assert stack.count == 2 and stack.index == 2
    assert not stack.can_redo and stack.redo_text == ""
    assert [x.xyxy for x in project.boxes(ctx.ids[3])] == [(0, 0, 2, 2)]
    stack.undo()
    stack.undo()
    assert project.boxes(ctx.ids[3]) == () and project.tags(ctx.ids[3]) == ()


def test_limit_respected(project: Project, db_state) -> None:
    ctx = Ctx(project)
    iid = ctx.ids[3]
    stack = C.UndoStack(project, limit=3)
    states = [db_state(project.store.conn)]
    for k in range(1, 6):
        stack.push(C.AddBox(iid, Box(ctx.c["cat"], 0, 0, k, k)))
        states.append(db_state(project.store.conn))
        assert stack.count == min(k, 3)
    n = 0
    while stack.can_undo:
        stack.undo()
        n += 1
    assert n == 3
    assert db_state(project.store.conn) == states[2]  # the two oldest edits stay done
    for _ in range(3):
        stack.redo()
    assert db_state(project.store.conn) == states[5]
    assert not stack.can_redo


def test_limit_makes_old_clean_state_unreachable(project: Project) -> None:
    ctx = Ctx(project)
    stack = C.UndoStack(project, limit=2)
    stack.set_clean()
    for k in range(1, 4):
        stack.push(C.AddBox(ctx.ids[3], Box(ctx.c["cat"], 0, 0, k, k)))
    while stack.can_undo:
        stack.undo()
        assert not stack.is_clean


def test_failed_command_changes_nothing(project: Project, db_state) -> None:
    ctx = Ctx(project)
    stack = C.UndoStack(project)
    stack.push(C.AddBox(ctx.ids[3], Box(ctx.c["cat"], 0, 0, 2, 2)))
    before = db_state(project.store.conn)
    with pytest.raises(ValidationError, match="outside the image"):
        stack.push(C.AddBox(ctx.ids[3], Box(ctx.c["cat"], 0, 0, 99, 2)))
    with pytest.raises(ValidationError, match="single-label"):
        stack.push(C.SetTags(ctx.ids[3], [ctx.c["cat"], ctx.c["dog"]]))
    with pytest.raises(ValidationError):
        # a half-valid replacement: nothing of it may stick
        stack.push(
            C.SetAnnotations(
                ImageAnnotations(ctx.ids[0], (ctx.c["dog"],), (Box(ctx.c["dog"], 0, 0, 99, 99),))
            )
        )
    assert db_state(project.store.conn) == before
    assert stack.count == 1 and stack.undo_text == "Add box"
    assert not project.store.conn.in_transaction


def test_command_group_is_one_undo_step(project):
    from tlstudio.core.annotations import Box

    a, b = project.image_ids()[:2]
    cid = project.classes()[0].id
    stack = C.UndoStack(project)
    group = C.CommandGroup(
        [C.AddBox(a, Box(cid, 1, 1, 5, 5)), C.SetTags(b, [cid])], "Accept 2 predictions"
    )
    stack.push(group)
    assert len(project.annotations(a).boxes) == 1 and project.annotations(b).tags == (cid,)
    assert stack.undo_text == "Accept 2 predictions"
    stack.undo()
    assert project.annotations(a).is_empty and project.annotations(b).is_empty
    stack.redo()
    assert len(project.annotations(a).boxes) == 1 and project.annotations(b).tags == (cid,)
