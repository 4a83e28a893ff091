"""The labels of the shown image on the canvas: boxes, landmark sets, the mask
overlay, the objects and ignore region (:class:`~.object_layer.ObjectLayer`), the
class-tag overlay and the selection.

Mirrors :class:`~tlstudio.gui.canvas.prediction_items.PredictionLayer`: it owns the
scene items and draws what :meth:`AnnotationLayer.reload` read from the store;
edits go through the canvas (one command per gesture), never through the layer.
Positions are image pixels (= scene coordinates).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PySide6.QtCore import QObject, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QGraphicsScene, QLabel, QWidget

from tlstudio.core.errors import TlsError
from tlstudio.core.project import Project

from .items import NO_CLASS_COLOR, BoxItem, LandmarkSetItem, MaskOverlayItem
from .mask_writer import MaskState
from .object_layer import ObjectLayer


@dataclass(frozen=True)
class Selection:
    """What is selected on the canvas: a box, a landmark set (and one of its points) or
    an object (by its number in the image: it keeps it through undo and redo, and has
    it before the store gives it an id)."""

    kind: str  # "box", "landmarks" or "object"
    id: int  # box id or landmark set id in the store; an object's number
    point: int | None = None  # index of the selected point of a landmark set


def overlay_label(parent: QWidget) -> QLabel:
    """A small dark note over the viewport that lets the mouse through."""
    label = QLabel(parent)
    label.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
    label.setStyleSheet(
        "QLabel { background: rgba(20, 20, 20, 170); color: white;"
        " border-radius: 4px; padding: 3px 6px; }"
    )
    label.hide()
    return label


class AnnotationLayer(QObject):
    """Boxes, landmark sets, mask and tags of one image, with the selection."""

    selection_changed = Signal(object)  # Selection or None

    def __init__(self, scene: QGraphicsScene, viewport_host: QWidget):
        super().__init__(viewport_host)
        self.scene = scene
        self.mask_item = MaskOverlayItem()
        scene.addItem(self.mask_item)
        self.objects = ObjectLayer(scene)
        self.tags_label = overlay_label(viewport_host)
        self.size = (0, 0)  # (width, height) of the image, px
        self.class_colors: dict[int, QColor] = {}
        self.class_names: dict[int, str] = {}
        self._boxes: dict[int, BoxItem] = {}
        self._landmarks: dict[int, LandmarkSetItem] = {}
        # the label map shown: as stored, or as asked of the MaskWriter and not stored yet
        self._mask = MaskState(None, None, [])
        self.selection: Selection | None = None
        self.labels_visible = True
        self.boxes_visible = True
        self.landmarks_visible = True
        self.mask_wanted = True  # set_mask_visible's choice; shown only with the labels

    # -- contents --------------------------------------------------------------------
    def set_image(self, size: tuple[int, int]) -> None:
        """A new image of ``size`` (width, height) px (0, 0: none): nothing drawn yet."""
        self.clear()
        self.size = size
        self.mask_item.set_size(*size)
        self._mask = MaskState(None, None, [])
        self.objects.set_image(size)

    def load_classes(self, project: Project) -> None:
        classes = project.classes()
        self.class_colors = {c.id: QColor(c.color) for c in classes}
        self.class_names = {c.id: c.name for c in classes}

    def reload(self, project: Project, image_id: int, pending: MaskState | None = None) -> None:
        """Draw the image's labels as stored, keeping items (and the selection) that remain;
        ``pending``: the label map on its way to the store, shown instead of the stored one."""
        self.load_classes(project)
        seen: set[int] = set()
        for box in project.boxes(image_id):
            assert box.id is not None  # stored boxes have ids
            box_item = self._boxes.get(box.id)
            if box_item is None:
                box_item = self._boxes[box.id] = BoxItem()
                self.scene.addItem(box_item)
            name = self.class_names.get(box.class_id, "?")
            box_item.set_box(box, self.class_color(box.class_id), name)
            box_item.setVisible(self.boxes_visible and self.labels_visible)
            seen.add(box.id)
        for box_id in [b for b in self._boxes if b not in seen]:
            self.scene.removeItem(self._boxes.pop(box_id))

        seen.clear()
        for lms in project.landmark_sets(image_id):
            assert lms.id is not None
            try:
                template = project.template(lms.template_id)
            except TlsError:
                continue
            set_item = self._landmarks.get(lms.id)
            if set_item is None:
                set_item = self._landmarks[lms.id] = LandmarkSetItem()
                self.scene.addItem(set_item)
            set_item.set_landmarks(lms.points, template, self.class_color(lms.class_id), lms)
            set_item.setVisible(self.landmarks_visible and self.labels_visible)
            seen.add(lms.id)
        for set_id in [s for s in self._landmarks if s not in seen]:
            self.scene.removeItem(self._landmarks.pop(set_id))

        label_changed = self._sync_mask(project, image_id, pending)
        pending_objects = None if pending is None else pending.objects
        objects_changed = self.objects.sync(
            project, image_id, self._mask.label, pending_objects, self.class_colors
        )
        if (label_changed or objects_changed) and self.objects.color_by_object:
            self._show_label()
        self.show_tags(project.tags(image_id))
        sel = self.selection
        if sel is not None and (
            (sel.kind == "box" and sel.id not in self._boxes)
            or (sel.kind == "landmarks" and sel.id not in self._landmarks)
            or (sel.kind == "object" and not self.objects.has_object(sel.id))
        ):
            self.set_selection(None)
        else:
            self._apply_selection()

    def _sync_mask(self, project: Project, image_id: int, pending: MaskState | None) -> bool:
        """Show ``pending`` or the stored label map; True when the map shown changed."""
        colors_changed = self.mask_item.set_colors(self.class_colors)
        shown = self._mask
        if pending is None:
            stored = project.encoded_mask(image_id)
            if stored is None and shown.encoded and shown.png is None:
                pending = shown  # no mask, none shown
            elif stored is not None and shown.png == stored[0]:
                pending = shown  # the bytes shown (our own write, or unchanged)
            else:  # changed in the store: decode once
                label = None if stored is None else project.mask(image_id)
                pending = MaskState(label, *stored) if stored else MaskState(None, None, [])
        if pending is not shown or colors_changed:
            changed = pending.label is not shown.label
            self._mask = pending
            self._show_label()
            return changed
        return False

    def _show_label(self, label: np.ndarray | None = None) -> None:
        """Draw ``label`` (default: the label map shown) in class colours; with "colour by
        object" the objects' pixels are left to the objects' own colours."""
        label = self._mask.label if label is None else label
        eff = self.objects.effective
        if label is not None and eff is not None and self.objects.color_by_object:
            label = np.where(eff.map > 0, 0, label)
        self.mask_item.set_label_map(label)

    def clear(self) -> None:
        for item in (*self._boxes.values(), *self._landmarks.values()):
            self.scene.removeItem(item)
        self._boxes.clear()
        self._landmarks.clear()
        self.show_tags(())
        self.set_selection(None)

    def refresh_items(self) -> None:
        """Redraw boxes and landmark sets as last read from the store (drops drag feedback)."""
        for box_item in self._boxes.values():
            if box_item.box is not None:
                b = box_item.box
                box_item.set_preview_rect(QRectF(QPointF(b.x1, b.y1), QPointF(b.x2, b.y2)))
        for set_item in self._landmarks.values():
            if set_item.landmarks is not None:
                set_item.set_points(set_item.landmarks.points)

    def refresh_mask(self) -> None:
        """Redraw the whole mask overlay from the stored label map (drops stroke feedback)."""
        self._show_label()

    # -- the mask ----------------------------------------------------------------------
    def label_map(self) -> np.ndarray | None:
        """The label map shown, as stored or about to be (do not modify); None: none."""
        return self._mask.label

    def mask_state(self) -> MaskState:
        """The shown label map with its encoding when known (for undo)."""
        return self._mask

    def set_mask_state(self, state: MaskState) -> None:
        """``state`` is shown now (the tool drew it already; the store follows); with
        objects, they are drawn now too."""
        self._mask = state
        if state.objects is not None:  # made by LabelEdits.push_objects with this label map
            self.objects.show_consistent(state.objects, state.label)
            changed = True
        else:
            changed = self.objects.refresh(state.label)
        if changed and self.objects.color_by_object:
            self._show_label()

    def full_state(self) -> MaskState:
        """The label map and the objects shown, for an object edit's undo (encoded
        where the shown states are)."""
        m, o = self._mask, self.objects.state
        return MaskState(m.label, m.png, m.present, o)

    def objects_ignore(self) -> bytes | None:
        """The ignore region's PNG as stored (object edits keep it)."""
        return self.objects.state.ignore

    def editable_mask(self) -> np.ndarray:
        """A copy of the label map to paint into (zeros when the image has none)."""
        if self._mask.label is not None:
            return self._mask.label.copy()
        w, h = self.size
        return np.zeros((h, w), np.uint16)

    def mask_unchanged(self, label: np.ndarray) -> bool:
        """True when storing ``label`` would change nothing."""
        if self._mask.label is None:
            return not label.any()
        return np.array_equal(label, self._mask.label)

    # -- lookups -------------------------------------------------------------------------
    def class_color(self, class_id: int | None) -> QColor:
        """The class's colour (a fixed yellow for None or an unknown class)."""
        if class_id is None:
            return QColor(NO_CLASS_COLOR)
        return QColor(self.class_colors.get(class_id, NO_CLASS_COLOR))

    def box_item(self, box_id: int) -> BoxItem | None:
        return self._boxes.get(box_id)

    def landmark_item(self, set_id: int) -> LandmarkSetItem | None:
        return self._landmarks.get(set_id)

    def box_at(self, pos: QPointF, tolerance: float) -> int | None:
        """Id of the smallest shown box containing ``pos`` (edges get ``tolerance``
        image px of slack), or None."""
        if not (self.boxes_visible and self.labels_visible):
            return None
        best, best_area = None, float("inf")
        for box_id, item in self._boxes.items():
            b = item.box
            if b is None:
                continue
            tol = tolerance
            if b.x1 - tol <= pos.x() <= b.x2 + tol and b.y1 - tol <= pos.y() <= b.y2 + tol:
                area = (b.x2 - b.x1) * (b.y2 - b.y1)
                if area < best_area:
                    best, best_area = box_id, area
        return best

    def landmark_point_at(self, pos: QPointF, tolerance: float) -> tuple[int, int] | None:
        """(set id, point index) of the drawn landmark point nearest ``pos`` within
        ``tolerance`` image px, or None."""
        if not (self.landmarks_visible and self.labels_visible):
            return None
        best, best_d = None, float("inf")
        for set_id, item in self._landmarks.items():
            i = item.point_at(pos, tolerance)
            if i is not None:
                p = item.points[i]
                d = (p.x - pos.x()) ** 2 + (p.y - pos.y()) ** 2
                if d < best_d:
                    best, best_d = (set_id, i), d
        return best

    def box_ids(self) -> list[int]:
        """Ids of the boxes drawn."""
        return list(self._boxes)

    # -- selection -----------------------------------------------------------------------
    def select_box(self, box_id: int) -> None:
        self.set_selection(Selection("box", box_id))

    def select_landmarks(self, set_id: int, point: int | None = None) -> None:
        self.set_selection(Selection("landmarks", set_id, point))

    def select_object(self, number: int) -> None:
        self.set_selection(Selection("object", number))

    def selected_object(self) -> int | None:
        """The number of the selected object, or None."""
        sel = self.selection
        return sel.id if sel is not None and sel.kind == "object" else None

    def clear_selection(self) -> None:
        self.set_selection(None)

    def set_selection(self, selection: Selection | None) -> None:
        if selection == self.selection:
            return
        self.selection = selection
        self._apply_selection()
        self.selection_changed.emit(selection)

    def _apply_selection(self) -> None:
        sel = self.selection
        for box_id, box_item in self._boxes.items():
            on = sel is not None and sel.kind == "box" and sel.id == box_id
            if on != box_item.selected:
                box_item.set_selected(on)
        for set_id, set_item in self._landmarks.items():
            on = sel is not None and sel.kind == "landmarks" and sel.id == set_id
            set_item.set_selected(on, sel.point if on and sel is not None else None)
        self.objects.set_selected(sel.id if sel is not None and sel.kind == "object" else None)

    # -- visibility ------------------------------------------------------------------------
    def set_labels_visible(self, visible: bool, tags: tuple[int, ...]) -> None:
        """Show or hide every label (tags, boxes, landmarks, mask), keeping each kind's
        own setting for when they come back. Hidden labels cannot be selected."""
        self.labels_visible = bool(visible)
        if not self.labels_visible:
            self.set_selection(None)
        self.set_boxes_visible(self.boxes_visible)
        self.set_landmarks_visible(self.landmarks_visible)
        self.set_mask_visible(self.mask_wanted)
        self.show_tags(tags)

    def set_boxes_visible(self, visible: bool) -> None:
        self.boxes_visible = bool(visible)
        for item in self._boxes.values():
            item.setVisible(self.boxes_visible and self.labels_visible)

    def set_landmarks_visible(self, visible: bool) -> None:
        self.landmarks_visible = bool(visible)
        for item in self._landmarks.values():
            item.setVisible(self.landmarks_visible and self.labels_visible)

    def set_mask_visible(self, visible: bool) -> None:
        self.mask_wanted = bool(visible)
        self.mask_item.setVisible(self.mask_wanted and self.labels_visible)
        self.objects.set_visible(self.mask_wanted and self.labels_visible)
        sel = self.selection
        if not (self.mask_wanted and self.labels_visible) and sel is not None:
            if sel.kind == "object":
                self.set_selection(None)

    def set_color_by_object(self, on: bool) -> None:
        """Colour each object in a colour of its own (True) or in its class colour."""
        self.objects.set_color_by_object(on)
        self._show_label()

    def show_tags(self, tags: tuple[int, ...]) -> None:
        """The image's class tags as coloured squares and names (top left of the view)."""
        if not tags or not self.labels_visible:
            self.tags_label.hide()
            return
        parts = [
            f'<span style="color:{self.class_color(c).name()}">&#9632;</span>&nbsp;'
            f"{_html(self.class_names.get(c, '?'))}"
            for c in tags
        ]
        self.tags_label.setText("&nbsp;&nbsp;".join(parts))
        self.tags_label.adjustSize()
        self.tags_label.show()


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
