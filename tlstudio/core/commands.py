"""Undoable edits (Qt-free). Every command writes through to SQLite inside one
transaction, so there is no Save step; the GUI only shows the stack.

Consecutive commands with the same non-None ``merge_key`` merge into one undo
step: the GUI gives every mouse gesture (a drag, a brush stroke) its own key.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from dataclasses import replace
from typing import TypeVar

import numpy as np

from .annotations import Box, ImageAnnotations, Instance, LandmarkSet, Point
from .instances import PixelState
from .labelset import ClassInfo, LandmarkTemplate
from .project import Project

_T = TypeVar("_T")


def _known(value: _T | None) -> _T:
    """``value``, set by :meth:`Command.do` (an id the store gave, the state before the
    edit); undo and redo only run after do."""
    assert value is not None, "undo before do"
    return value


class Command:
    """One undoable edit. Subclasses implement :meth:`do` and :meth:`undo`."""

    text = "Edit"
    merge_key: Hashable | None = None

    def do(self, project: Project) -> None:
        raise NotImplementedError

    def undo(self, project: Project) -> None:
        raise NotImplementedError

    def merge(self, other: Command) -> bool:
        """Absorb ``other`` (already done, same merge_key) into this step."""
        return False


class UndoStack:
    """Linear history of commands with a clean index and change listeners."""

    def __init__(self, project: Project, limit: int = 1000):
        self.project = project
        self.limit = limit
        self._commands: list[Command] = []
        self._index = 0  # commands[:index] are done
        self._clean = 0
        self._listeners: list[Callable[[], None]] = []

    def add_listener(self, fn: Callable[[], None]) -> None:
        """Call ``fn()`` after every push, undo, redo or clear."""
        self._listeners.append(fn)

    def _changed(self) -> None:
        for fn in self._listeners:
            fn()

    def push(self, cmd: Command) -> None:
        """Do ``cmd`` (one transaction) and record it, merging with the top step if possible."""
        with self.project.transaction():
            cmd.do(self.project)
        del self._commands[self._index :]
        if self._clean > self._index:
            self._clean = -1  # the clean state can no longer be reached
        top = self._commands[-1] if self._commands else None
        if (
            top is not None
            and cmd.merge_key is not None
            and top.merge_key == cmd.merge_key
            and self._clean != self._index
            and top.merge(cmd)
        ):
            pass
        else:
            self._commands.append(cmd)
            self._index += 1
            if len(self._commands) > self.limit:
                self._commands.pop(0)
                self._index -= 1
                self._clean -= 1
        self._changed()

    def undo(self) -> None:
        if not self.can_undo:
            return
        cmd = self._commands[self._index - 1]
        with self.project.transaction():
            cmd.undo(self.project)
        self._index -= 1
        self._changed()

    def redo(self) -> None:
        if not self.can_redo:
            return
        cmd = self._commands[self._index]
        with self.project.transaction():
            cmd.do(self.project)
        self._index += 1
        self._changed()

    def clear(self) -> None:
        self._commands.clear()
        self._index = self._clean = 0
        self._changed()

    @property
    def can_undo(self) -> bool:
        return self._index > 0

    @property
    def can_redo(self) -> bool:
        return self._index < len(self._commands)

    @property
    def undo_text(self) -> str:
        return self._commands[self._index - 1].text if self.can_undo else ""

    @property
    def redo_text(self) -> str:
        return self._commands[self._index].text if self.can_redo else ""

    @property
    def index(self) -> int:
        return self._index

    @property
    def count(self) -> int:
        return len(self._commands)

    def set_clean(self) -> None:
        self._clean = self._index
        self._changed()

    @property
    def is_clean(self) -> bool:
        return self._clean == self._index


class CommandGroup(Command):
    """Several commands as one undo step (e.g. accept predictions on many images);
    undone in reverse order."""

    def __init__(self, commands: Iterable[Command], text: str):
        self.commands = list(commands)
        self.text = text

    def do(self, project: Project) -> None:
        for cmd in self.commands:
            cmd.do(project)

    def undo(self, project: Project) -> None:
        for cmd in reversed(self.commands):
            cmd.undo(project)


# -- annotation commands -------------------------------------------------------


class AddBox(Command):
    def __init__(self, image_id: int, box: Box):
        self.image_id, self.box = image_id, box
        self.text = "Add box"

    def do(self, project: Project) -> None:
        self.box = project.add_box(self.image_id, self.box)  # keeps the id on redo

    def undo(self, project: Project) -> None:
        project.remove_box(_known(self.box.id))


class EditBox(Command):
    """Move, resize or re-class a box. Same ``gesture`` merges into one step."""

    def __init__(self, box: Box, gesture: Hashable | None = None):
        self.new = box
        self.old: Box | None = None
        self.text = "Edit box"
        self.merge_key = None if gesture is None else ("box", box.id, gesture)

    def do(self, project: Project) -> None:
        if self.old is None:
            self.old = project.box(self.new.id)[1]
        project.update_box(self.new)

    def undo(self, project: Project) -> None:
        project.update_box(_known(self.old))

    def merge(self, other: Command) -> bool:
        if not isinstance(other, EditBox):  # the same merge_key means the same kind of edit
            return False
        self.new = other.new
        return True


class RemoveBox(Command):
    def __init__(self, box_id: int):
        self.box_id = box_id
        self.text = "Delete box"

    def do(self, project: Project) -> None:
        self.image_id, self.box = project.box(self.box_id)
        project.remove_box(self.box_id)

    def undo(self, project: Project) -> None:
        project.add_box(self.image_id, self.box)


class AddLandmarkSet(Command):
    def __init__(self, image_id: int, landmarks: LandmarkSet):
        self.image_id, self.landmarks = image_id, landmarks
        self.text = "Add landmarks"

    def do(self, project: Project) -> None:
        self.landmarks = project.add_landmark_set(self.image_id, self.landmarks)

    def undo(self, project: Project) -> None:
        project.remove_landmark_set(_known(self.landmarks.id))


class EditLandmarkSet(Command):
    """Replace a landmark set's points or class. Same ``gesture`` merges."""

    def __init__(
        self, landmarks: LandmarkSet, gesture: Hashable | None = None, text: str = "Edit landmarks"
    ):
        self.new = landmarks
        self.old: LandmarkSet | None = None
        self.text = text
        self.merge_key = None if gesture is None else ("landmarks", landmarks.id, gesture)

    def do(self, project: Project) -> None:
        if self.old is None:
            self.old = project.landmark_set(self.new.id)[1]
        project.update_landmark_set(self.new)

    def undo(self, project: Project) -> None:
        project.update_landmark_set(_known(self.old))

    def merge(self, other: Command) -> bool:
        if not isinstance(other, EditLandmarkSet):
            return False
        self.new = other.new
        return True


def move_point(landmarks: LandmarkSet, index: int, point: Point) -> LandmarkSet:
    """A copy of ``landmarks`` with point ``index`` replaced."""
    pts = list(landmarks.points)
    pts[index] = point
    return replace(landmarks, points=tuple(pts))


class RemoveLandmarkSet(Command):
    def __init__(self, set_id: int):
        self.set_id = set_id
        self.text = "Delete landmarks"

    def do(self, project: Project) -> None:
        self.image_id, self.landmarks = project.landmark_set(self.set_id)
        project.remove_landmark_set(self.set_id)

    def undo(self, project: Project) -> None:
        project.add_landmark_set(self.image_id, self.landmarks)


class SetTags(Command):
    def __init__(self, image_id: int, class_ids: Iterable[int], text: str = "Set class"):
        self.image_id = image_id
        self.new = tuple(class_ids)
        self.old: tuple[int, ...] | None = None
        self.text = text

    def do(self, project: Project) -> None:
        if self.old is None:
            self.old = project.tags(self.image_id)
        project.set_tags(self.image_id, self.new)

    def undo(self, project: Project) -> None:
        project.set_tags(self.image_id, _known(self.old))


class SetMask(Command):
    """Replace an image's label map. Same ``gesture`` (one brush stroke) merges."""

    def __init__(self, image_id: int, mask: np.ndarray | None, gesture: Hashable | None = None,
                 text: str = "Paint mask"):  # fmt: skip
        self.image_id = image_id
        self.new = None if mask is None else mask.copy()
        self.old: np.ndarray | None = None
        self._have_old = False
        self.text = text
        self.merge_key = None if gesture is None else ("mask", image_id, gesture)

    def do(self, project: Project) -> None:
        if not self._have_old:
            self.old, self._have_old = project.mask(self.image_id), True
        project.set_mask(self.image_id, self.new)

    def undo(self, project: Project) -> None:
        project.set_mask(self.image_id, self.old)

    def merge(self, other: Command) -> bool:
        if not isinstance(other, SetMask):
            return False
        self.new = other.new
        return True


class SetAnnotations(Command):
    """Replace everything labelled on one image (e.g. accept a model's prediction)."""

    def __init__(self, annotations: ImageAnnotations, text: str = "Set labels"):
        self.new = annotations
        self.old: ImageAnnotations | None = None
        self.text = text

    def do(self, project: Project) -> None:
        if self.old is None:
            self.old = project.annotations(self.new.image_id)
        project.set_annotations(self.new)

    def undo(self, project: Project) -> None:
        project.set_annotations(_known(self.old))


# -- object (instance) commands ------------------------------------------------
#
# Regions are boolean H×W arrays in image pixels. Each command snapshots the image's
# pixel layers as stored before its first ``do`` (InstanceStore.state: encoded bytes and
# rows, no decoding) and undo puts them back exactly; redo replays the edit with the same
# object id and number. Commands of one ``gesture`` (e.g. the segments of one brush
# stroke that create an object and then grow it) merge into one undo step.


class _PixelEdit(Command):
    """An edit of one image's objects or ignore region (see the section comment)."""

    image_id: int | None = None

    def __init__(self, gesture: Hashable | None, text: str):
        self.text = text
        self.merge_key = None if gesture is None else ("pixels", gesture)
        self._before: PixelState | None = None
        self._merged: list[_PixelEdit] = []

    def _image(self, project: Project) -> int:
        """The image this edit changes (looked up before the first do)."""
        raise NotImplementedError

    def _apply(self, project: Project) -> None:
        raise NotImplementedError

    def do(self, project: Project) -> None:
        if self._before is None:
            self.image_id = self._image(project)
            self._before = project.instances.state(self.image_id)
        self._apply(project)
        for cmd in self._merged:
            cmd._apply(project)

    def undo(self, project: Project) -> None:
        project.instances.restore(_known(self.image_id), _known(self._before))

    def merge(self, other: Command) -> bool:
        if not isinstance(other, _PixelEdit) or other.image_id != self.image_id:
            return False
        self._merged.append(other)
        return True


class CreateInstance(_PixelEdit):
    """Create an object of ``class_id`` over ``region`` (its pixels leave other objects).
    After do, :attr:`instance` is the stored object (its id stays the same on redo)."""

    def __init__(self, image_id: int, class_id: int, region: np.ndarray, *,
                 iscrowd: bool = False, gesture: Hashable | None = None,
                 text: str = "Create object"):  # fmt: skip
        super().__init__(gesture, text)
        self._image_id, self.class_id, self.iscrowd = image_id, class_id, iscrowd
        self.region = np.asarray(region, bool).copy()
        self.instance: Instance | None = None

    def _image(self, project: Project) -> int:
        return self._image_id

    def _apply(self, project: Project) -> None:
        known = self.instance
        self.instance = project.instances.add(
            self._image_id, self.class_id, self.region, iscrowd=self.iscrowd,
            instance_id=None if known is None else known.id,
            number=None if known is None else known.number,
        )  # fmt: skip


class _OneInstance(_PixelEdit):
    def __init__(self, instance_id: int, gesture: Hashable | None, text: str):
        super().__init__(gesture, text)
        self.instance_id = instance_id

    def _image(self, project: Project) -> int:
        return project.instances.get(self.instance_id)[0]


class AddToInstance(_OneInstance):
    """Add ``region`` to an object (taken from other objects, painted the object's class)."""

    def __init__(self, instance_id: int, region: np.ndarray, gesture: Hashable | None = None,
                 text: str = "Add to object"):  # fmt: skip
        super().__init__(instance_id, gesture, text)
        self.region = np.asarray(region, bool).copy()

    def _apply(self, project: Project) -> None:
        project.instances.add_region(self.instance_id, self.region)


class RemoveFromInstance(_OneInstance):
    """Take ``region`` out of an object (those pixels become background)."""

    def __init__(self, instance_id: int, region: np.ndarray, gesture: Hashable | None = None,
                 text: str = "Erase from object"):  # fmt: skip
        super().__init__(instance_id, gesture, text)
        self.region = np.asarray(region, bool).copy()

    def _apply(self, project: Project) -> None:
        project.instances.remove_region(self.instance_id, self.region)


class DeleteInstance(_OneInstance):
    """Delete an object; its pixels become background."""

    def __init__(self, instance_id: int, text: str = "Delete object"):
        super().__init__(instance_id, None, text)

    def _apply(self, project: Project) -> None:
        project.instances.remove(self.instance_id)


class SetInstanceClass(_OneInstance):
    """Give an object another class (its pixels in the label map follow)."""

    def __init__(self, instance_id: int, class_id: int, text: str = "Set object class"):
        super().__init__(instance_id, None, text)
        self.class_id = class_id

    def _apply(self, project: Project) -> None:
        project.instances.set_class(self.instance_id, self.class_id)


class SetIgnoreRegion(_PixelEdit):
    """Replace an image's ignore region (pixels left out of losses and metrics; None or
    an empty region removes it)."""

    def __init__(self, image_id: int, region: np.ndarray | None,
                 gesture: Hashable | None = None, text: str = "Set ignore region"):  # fmt: skip
        super().__init__(gesture, text)
        self._image_id = image_id
        self.region = None if region is None else np.asarray(region, bool).copy()

    def _image(self, project: Project) -> int:
        return self._image_id

    def _apply(self, project: Project) -> None:
        project.instances.set_ignore(self._image_id, self.region)


# -- label-set commands ----------------------------------------------------------


class AddClass(Command):
    def __init__(self, name: str, color: str | None = None):
        self.name, self.color = name, color
        self.info: ClassInfo | None = None
        self.text = f"Add class {name!r}"

    def do(self, project: Project) -> None:
        if self.info is None:
            self.info = project.add_class(self.name, self.color)
        else:
            project.add_class(self.info.name, self.info.color, class_id=self.info.id,
                              position=self.info.position)  # fmt: skip

    def undo(self, project: Project) -> None:
        project.delete_class(_known(self.info).id)


class RenameClass(Command):
    def __init__(self, class_id: int, name: str):
        self.class_id, self.new = class_id, name
        self.text = f"Rename class to {name!r}"

    def do(self, project: Project) -> None:
        self.old = project.class_info(self.class_id).name
        project.rename_class(self.class_id, self.new)

    def undo(self, project: Project) -> None:
        project.rename_class(self.class_id, self.old)


class SetClassColor(Command):
    def __init__(self, class_id: int, color: str):
        self.class_id, self.new = class_id, color
        self.text = "Change class colour"

    def do(self, project: Project) -> None:
        self.old = project.class_info(self.class_id).color
        project.set_class_color(self.class_id, self.new)

    def undo(self, project: Project) -> None:
        project.set_class_color(self.class_id, self.old)


class _ClassRemoval(Command):
    """Shared undo for merge/delete: restore the class and every touched image exactly."""

    class_id: int

    def _snapshot(self, project: Project) -> None:
        self.info = project.class_info(self.class_id)
        c = project.store.conn
        ids: set[int] = set()
        for table in ("tags", "boxes", "landmark_sets"):
            ids.update(
                r[0]
                for r in c.execute(
                    f"SELECT image_id FROM {table} WHERE class_id = ?", (self.class_id,)
                )
            )
        ids.update(project._mask_images_with(self.class_id))
        ids.update(project.instances.image_ids_with_class(self.class_id))
        self.before = [project.annotations(i) for i in sorted(ids)]

    def undo(self, project: Project) -> None:
        project.add_class(
            self.info.name, self.info.color, class_id=self.info.id, position=self.info.position
        )
        for ann in self.before:
            project.set_annotations(ann)


class MergeClasses(_ClassRemoval):
    def __init__(self, source_id: int, target_id: int):
        self.class_id, self.target_id = source_id, target_id
        self.text = "Merge classes"

    def do(self, project: Project) -> None:
        self._snapshot(project)
        project.merge_classes(self.class_id, self.target_id)


class DeleteClass(_ClassRemoval):
    def __init__(self, class_id: int):
        self.class_id = class_id
        self.text = "Delete class"

    def do(self, project: Project) -> None:
        self._snapshot(project)
        project.delete_class(self.class_id)


class ReorderClasses(Command):
    def __init__(self, class_ids: list[int]):
        self.new = list(class_ids)
        self.text = "Reorder classes"

    def do(self, project: Project) -> None:
        self.old = [c.id for c in project.classes()]
        project.reorder_classes(self.new)

    def undo(self, project: Project) -> None:
        project.reorder_classes(self.old)


class AddTemplate(Command):
    def __init__(self, template: LandmarkTemplate):
        self.template = template
        self.text = f"Add template {template.name!r}"

    def do(self, project: Project) -> None:
        self.template = project.add_template(self.template)

    def undo(self, project: Project) -> None:
        project.delete_template(_known(self.template.id))


class SetSplits(Command):
    def __init__(self, assignment: dict[int, str | None], text: str = "Set split"):
        self.new = dict(assignment)
        self.text = text

    def do(self, project: Project) -> None:
        self.old = {i: project.image(i).split for i in self.new}
        project.set_splits(self.new)

    def undo(self, project: Project) -> None:
        project.set_splits(self.old)


class SetDomains(Command):
    """Set the domain (site, scanner, batch…) of several images; None clears it."""

    def __init__(self, assignment: dict[int, str | None], text: str = "Set domain"):
        self.new = dict(assignment)
        self.text = text

    def do(self, project: Project) -> None:
        self.old = {i: project.image(i).domain for i in self.new}
        project.set_domains(self.new)

    def undo(self, project: Project) -> None:
        project.set_domains(self.old)
