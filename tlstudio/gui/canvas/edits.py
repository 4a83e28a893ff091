"""Edits of the shown image's labels from the canvas: each one undo step through
``app_state.push``; a refused edit is reported and the canvas redrawn from the store."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from tlstudio.core.annotations import InstanceLayer
from tlstudio.core.commands import Command, RemoveBox, RemoveLandmarkSet, SetTags
from tlstudio.core.errors import TlsError
from tlstudio.core.instances import drop_object, pruned, recolour_object

from .mask_writer import MaskEdit, MaskState, ObjectsState

if TYPE_CHECKING:
    from tlstudio.core.labelset import ClassInfo

    from .view import CanvasView


class LabelEdits:
    """Pushes the canvas's edits (tools, keys) for :attr:`view`'s image."""

    def __init__(self, view: CanvasView):
        self.view = view

    def push(self, command: Command) -> bool:
        """Do ``command`` through ``app_state.push`` (one undo step). A refused edit
        is reported through the canvas's ``message`` and the canvas redrawn from the store."""
        view = self.view
        try:
            view.app_state.push(command)
        except (TlsError, RuntimeError) as exc:
            view.message.emit(f"{command.text} refused: {exc}")
            view.annotations.refresh_items()
            view.annotations.refresh_mask()
            return False
        return True

    def push_mask(self, label: np.ndarray, text: str = "Paint mask") -> bool:
        """Make ``label`` (hand it over: never modified afterwards) the shown image's
        label map: one undo step at once, stored by the canvas's MaskWriter once encoded
        in its thread. Nothing is pushed if it equals the map shown. The overlay is
        expected to show ``label`` already (the tool drew it)."""
        view, layer = self.view, self.view.annotations
        iid = view.image_id
        if iid is None:
            return False
        if layer.mask_unchanged(label):
            layer.refresh_mask()
            return False
        return self._push_state(iid, layer.mask_state(), MaskState(label), text)

    def _push_state(self, iid: int, old: MaskState, new: MaskState, text: str) -> bool:
        """Show ``new`` and push it as one step through the MaskWriter; put ``old`` back
        on the canvas when the edit is refused."""
        layer, writer = self.view.annotations, self.view.mask_writer
        layer.set_mask_state(new)
        with writer.own_edit():
            if self.push(MaskEdit(writer, iid, old, new, text)):
                return True
        layer.set_mask_state(old)
        layer.refresh_mask()
        return False

    def push_objects(self, label: np.ndarray, layer: InstanceLayer, text: str) -> bool:
        """Make ``label`` the shown image's label map and ``layer`` its objects (hand both
        over: never modified afterwards; objects without pixels are dropped): one undo
        step at once, both maps encoded in the MaskWriter's thread and stored together.
        Nothing is pushed if neither changes."""
        view, layer_shown = self.view, self.view.annotations
        iid = view.image_id
        if iid is None:
            return False
        kept = pruned(layer)
        objects = ObjectsState(
            None if kept is None else kept.map, () if kept is None else kept.objects,
            layer_shown.objects_ignore(),
        )  # fmt: skip
        if layer_shown.mask_unchanged(label) and _same_objects(layer_shown.objects.effective, kept):
            layer_shown.refresh_mask()
            return False
        return self._push_state(
            iid, layer_shown.full_state(), MaskState(label, objects=objects), text
        )

    def delete_object(self, number: int) -> bool:
        """Delete object ``number`` of the shown image (its pixels become background)."""
        layer = self.view.annotations
        if not layer.objects.has_object(number):
            return False
        label = layer.editable_mask()
        objects = drop_object(label, layer.objects.editable(layer.size), number)
        return self.push_objects(label, objects, "Delete object")

    def delete_selection(self) -> bool:
        """Delete the selected box, landmark set or object (one undo step). True if one was."""
        sel = self.view.annotations.selection
        if sel is None:
            return False
        self.view.annotations.clear_selection()
        if sel.kind == "box":
            return self.push(RemoveBox(sel.id))
        if sel.kind == "object":
            return self.delete_object(sel.id)
        return self.push(RemoveLandmarkSet(sel.id))

    def class_key(self, n: int) -> None:
        """Key ``n`` (1–9): give the selected object the ``n``-th class, or tag the image
        with it when no object is selected."""
        number = self.view.annotations.selected_object()
        if number is None:
            self.tag_with_class(n)
            return
        cls = self._nth_class(n)
        if cls is not None:
            self.set_object_class(number, cls.id, cls.name)

    def set_object_class(self, number: int, class_id: int, name: str) -> bool:
        """Object ``number`` of the shown image takes class ``class_id`` (named ``name``);
        its pixels in the label map follow. One undo step; False if nothing changed."""
        layer = self.view.annotations
        obj = layer.objects.object(number)
        if obj is None or obj.class_id == class_id:
            return False
        label = layer.editable_mask()
        objects = recolour_object(label, layer.objects.editable(layer.size), number, class_id)
        return self.push_objects(label, objects, f"Object class {name}")

    def _nth_class(self, n: int) -> ClassInfo | None:
        """The ``n``-th class (1-based, in class order); None (with a note) if none."""
        project = self.view.app_state.project
        if project is None or self.view.image_id is None:
            return None
        classes = project.classes()
        if not 1 <= n <= len(classes):
            self.view.message.emit(f"There is no class {n} (the project has {len(classes)}).")
            return None
        return classes[n - 1]

    def tag_with_class(self, n: int) -> None:
        """Tag the image with the ``n``-th class (1-based, in class order); in a
        multi-label project toggle that class instead."""
        project, iid, cls = self.view.app_state.project, self.view.image_id, self._nth_class(n)
        if project is None or iid is None or cls is None:
            return
        current = project.tags(iid)
        if project.multi_label:
            if cls.id in current:
                new, text = tuple(c for c in current if c != cls.id), f"Untag {cls.name}"
            else:
                new, text = (*current, cls.id), f"Tag {cls.name}"
        else:
            if current == (cls.id,):
                return
            new, text = (cls.id,), f"Tag {cls.name}"
        self.push(SetTags(iid, new, text=text))


def _same_objects(a: InstanceLayer | None, b: InstanceLayer | None) -> bool:
    if a is None or b is None:
        return a is b
    return a.objects == b.objects and np.array_equal(a.map, b.map)
