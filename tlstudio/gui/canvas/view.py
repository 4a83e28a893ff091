"""The labelling canvas: one image of the open project with its annotations.

Scene coordinates are image pixel coordinates: the image's pixmap item sits at
(0, 0) covering W×H scene units (unscaled; a reduced preview is stretched to the same
rectangle), so the scene point (x, y) is the image point (x, y) of
:mod:`tlstudio.core.annotations` (x right, y down; a W×H image spans
[0, W] × [0, H]; pixel (col, row) covers [col, col+1) × [row, row+1)). The
view's transform (zoom and pan) maps image pixels to viewport (screen) pixels;
:meth:`CanvasView.image_to_view` and :meth:`CanvasView.view_to_image` convert.

:class:`CanvasView` composes the parts and routes Qt events to them: the
:class:`~.viewport.Viewport` (zoom, pan, fit), the :class:`~.image_layer.ImageLayer`
(pixels) with its :class:`~.window_level.WindowLevel`, the
:class:`~.annotation_layer.AnnotationLayer` (labels, selection), the
:class:`~.prediction_items.PredictionLayer` and the active tool.

Every edit goes through ``app_state.push`` (one core command per gesture). The
canvas re-reads the shown image's annotations from the store after every push,
undo and redo (``AppState.data_changed``), keeping the zoom and pan.
"""

from __future__ import annotations

import sqlite3

import numpy as np
from PySide6.QtCore import QEvent, QPoint, QPointF, QRect, QRectF, Qt, Signal
from PySide6.QtGui import (
    QColor,
    QFocusEvent,
    QKeyEvent,
    QMouseEvent,
    QPainter,
    QPixmap,
    QWheelEvent,
)
from PySide6.QtWidgets import QFrame, QGraphicsScene, QGraphicsView, QWidget

from tlstudio.core.annotations import InstanceLayer
from tlstudio.core.commands import Command
from tlstudio.core.errors import TlsError
from tlstudio.core.imageio import ImageData
from tlstudio.core.labelset import LandmarkTemplate
from tlstudio.core.project import ImageRecord
from tlstudio.core.runs import Prediction
from tlstudio.gui.state import AppState

from .annotation_layer import AnnotationLayer, Selection, overlay_label
from .edits import LabelEdits
from .image_layer import ImageLayer
from .interaction import CanvasInput
from .items import BoxItem
from .mask_writer import MaskWriter
from .prediction_items import PredictionLayer
from .tools import TOOL_CLASSES, TOOL_SHORTCUTS, LandmarkTool, MaskTool, ObjectTool, Tool
from .viewport import Viewport
from .window_level import WindowLevel

__all__ = ["TOOL_SHORTCUTS", "CanvasView", "Selection"]


class CanvasView(QGraphicsView):
    """Shows ``app_state.image_id``'s image with its boxes, landmark sets and mask,
    and edits them with the tool named by ``app_state.tool``.

    Positions in the API are image pixels unless they say viewport (screen)
    pixels. Images up to :attr:`sync_max_pixels` are decoded on the GUI thread;
    larger ones (and their window/level re-renders during a drag) in a worker
    thread, with "Loading …" or, for a JPEG, a reduced decode shown meanwhile.
    Decoded images are kept in the image layer's LRU cache. Masks are stored by
    :attr:`mask_writer`, which encodes them off the GUI thread.
    """

    window_changed = Signal(float, float)  # display window (center, width), array units
    zoom_changed = Signal(float)  # screen px per image px
    image_loaded = Signal(object)  # image id, once its pixels are on screen
    message = Signal(str)  # a short note for the status bar (refused edit, missing class)
    selection_changed = Signal(object)  # Selection or None
    cursor_moved = Signal(float, float)  # image px under the mouse
    cursor_left = Signal()  # the mouse left the canvas, or the image under it changed
    mask_mode_changed = Signal(str)  # "brush", "eraser" or "polygon" (keys M/E/P, menus)

    def __init__(self, app_state: AppState, parent: QWidget | None = None):
        super().__init__(parent)
        self.app_state = app_state
        scene = QGraphicsScene(self)
        scene.setItemIndexMethod(QGraphicsScene.ItemIndexMethod.NoIndex)
        self.setScene(scene)
        self.setBackgroundBrush(QColor(38, 38, 40))
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.NoAnchor)
        self.setResizeAnchor(QGraphicsView.ViewportAnchor.NoAnchor)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setViewportUpdateMode(QGraphicsView.ViewportUpdateMode.MinimalViewportUpdate)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setMouseTracking(True)
        self.viewport().setMouseTracking(True)

        self.image_layer = ImageLayer(scene, self)
        self.image_layer.loaded.connect(self._pixels_shown)
        self.image_layer.failed.connect(self._on_load_failed)
        self.image_layer.render_failed.connect(
            lambda text: self.message.emit(f"Cannot render the image: {text}")
        )
        self.image_layer.preview_shown.connect(lambda: self._set_status(""))
        self.window_level = WindowLevel(self.image_layer, self)
        self.window_level.window_changed.connect(self.window_changed)
        self.window_level.window_chosen.connect(self._keep_window)
        self.navigator = Viewport(self, self.image_layer.item)
        self.navigator.zoom_changed.connect(self.zoom_changed)
        self.annotations = AnnotationLayer(scene, self)
        self.mask_writer = MaskWriter(self)
        self.mask_writer.written.connect(lambda _iid: app_state.data_changed.emit())
        self.mask_writer.failed.connect(self._mask_write_failed)
        self.mask_writer.attach(app_state.project)
        self.annotations.selection_changed.connect(self.selection_changed)
        self.mask_item = self.annotations.mask_item
        self._status_label = overlay_label(self)
        # a model's prediction over the image (see set_prediction); never edited by tools
        self.prediction_layer = PredictionLayer(scene, self)

        self._image_id: int | None = None
        self._record: ImageRecord | None = None
        self.input = CanvasInput(self)
        self.edits = LabelEdits(self)

        self.tools: dict[str, Tool] = {name: cls(self) for name, cls in TOOL_CLASSES.items()}
        self._tool = self.tools.get(app_state.tool, self.tools["select"])

        app_state.image_changed.connect(self.load_image)
        app_state.data_changed.connect(self._reload_annotations)
        app_state.tool_changed.connect(self._on_tool_changed)
        app_state.template_changed.connect(lambda _t: self._landmark_tool().template_changed())
        app_state.project_opened.connect(self._on_project_opened)
        app_state.project_closed.connect(self._on_project_closed)

        self._tool.activate()
        if app_state.project is not None and app_state.image_id is not None:
            self.load_image(app_state.image_id)

    # ------------------------------------------------------------------ the image
    @property
    def image_id(self) -> int | None:
        """The image shown (its record is known; its pixels may still be loading)."""
        return self._image_id if self._record is not None else None

    @property
    def image_ready(self) -> bool:
        """True once the shown image's pixels are on screen."""
        return self.image_layer.data is not None

    @property
    def image_data(self) -> ImageData | None:
        """The shown image at full depth (never modified by the canvas)."""
        return self.image_layer.data

    @property
    def sync_max_pixels(self) -> int:
        """Images with more pixels are decoded in a worker thread."""
        return self.image_layer.sync_max_pixels

    @sync_max_pixels.setter
    def sync_max_pixels(self, value: int) -> None:
        self.image_layer.sync_max_pixels = value

    @property
    def tool(self) -> Tool:
        return self._tool

    def image_size(self) -> tuple[int, int]:
        """(width, height) of the shown image in pixels; (0, 0) when none."""
        return self.navigator.image_size

    def display_pixmap(self) -> QPixmap:
        """The pixmap on screen (the image through the current window)."""
        return self.image_layer.pixmap()

    def pixel_value(self, x: float, y: float) -> object:
        """Full-depth value of the pixel containing (x, y): a number, a tuple per
        channel, or None outside the image or before it is loaded."""
        return self.image_layer.pixel_value(x, y)

    def load_image(self, image_id: int | None) -> None:
        """Show image ``image_id`` of the open project (None: nothing), fitted to the window."""
        self._tool.image_changed()
        self.cursor_left.emit()  # whatever the mouse pointed at is gone
        self._image_id, self._record = image_id, None
        self.image_layer.clear()
        self.window_level.clear()
        self._set_status("")
        if self.prediction_layer.image_id != image_id:  # another image's prediction
            self.prediction_layer.clear()
        project = self.app_state.project
        rec = None
        if image_id is not None and project is not None:
            try:
                rec = project.image(image_id)
            except TlsError as exc:
                self._set_status(str(exc))
        size = (rec.width, rec.height) if rec is not None else (0, 0)
        self.annotations.set_image(size)
        self.navigator.image_size = size
        if rec is None or project is None:  # no record without a project
            self.navigator.update_scene_rect()
            self.viewport().update()
            return
        self._record = rec
        self.fit_to_window()
        self._reload_annotations()
        if rec.width * rec.height > self.image_layer.sync_max_pixels:
            self._set_status("Loading …")
        # the window chosen for this image last time (any session), else its default
        self.image_layer.load(rec, project.image_path(rec), project.display_window(rec.id))

    def wait_for_image(self, msecs: int = 10_000) -> bool:
        """Block until background decoding is done and its result shown (tests, scripts)."""
        return self.image_layer.wait(msecs)

    def _pixels_shown(self, data: ImageData, window: tuple[float, float]) -> None:
        self._set_status("")
        for note in data.warnings:
            self.message.emit(note)
        self.window_level.shown(window)
        self.image_loaded.emit(self._image_id)

    def _on_load_failed(self, text: str) -> None:
        # labels stay visible and editable over a grey placeholder of the right size
        self._set_status(f"Cannot show this image\n{text}")
        self.message.emit(f"Cannot show this image: {text}")
        self.viewport().update()

    # ------------------------------------------------------------------ viewport
    def image_to_view(self, x: float, y: float) -> QPointF:
        """Viewport (screen) position of the image point (x, y), sub-pixel precise."""
        return self.navigator.image_to_view(x, y)

    def view_to_image(self, pos: QPointF | QPoint) -> QPointF:
        """Image point (pixels, unclamped) under the viewport position ``pos``."""
        return self.navigator.view_to_image(pos)

    def zoom(self) -> float:
        """Screen pixels per image pixel."""
        return self.navigator.zoom()

    def fit_to_window(self) -> None:
        """Zoom so the whole image fits and centre it (kept fitted on resize until zoomed)."""
        self.navigator.fit_to_window()

    def zoom_1to1(self) -> None:
        """One image pixel per screen pixel, about the viewport centre."""
        self.navigator.set_zoom(1.0)

    # ------------------------------------------------------------------ window / level
    def display_window(self) -> tuple[float, float] | None:
        """The display window (center, width) in array units, None before pixels arrive.

        (Not ``window()``: that is QWidget's top-level window.)"""
        return self.window_level.window()

    def set_window(self, center: float, width: float) -> None:
        """Re-render the display from the full-depth array through the window
        (center, width) in array units. The stored image and labels never change."""
        self.window_level.set_window(center, width)

    def reset_window(self) -> None:
        """Back to the image's default window."""
        self.window_level.reset_window()

    def _keep_window(self, window: tuple[float, float] | None) -> None:
        project, iid = self.app_state.project, self.image_id
        if project is None or iid is None:
            return
        try:
            project.set_display_window(iid, window)
        except (TlsError, sqlite3.Error) as exc:  # the display still shows it
            self.message.emit(f"Cannot keep the window for this image: {exc}")

    # ------------------------------------------------------------------ annotations
    def _reload_annotations(self) -> None:
        project, iid = self.app_state.project, self.image_id
        if project is None or iid is None:
            self.annotations.clear()
            return
        self.annotations.reload(project, iid, self.mask_writer.pending(iid))
        self.prediction_layer.set_classes(
            self.annotations.class_colors, self.annotations.class_names
        )
        self._place_overlays()
        self._tool.annotations_reloaded()

    @property
    def selection(self) -> Selection | None:
        return self.annotations.selection

    def label_map(self) -> np.ndarray | None:
        """The shown image's label map as last read from the store (do not modify).

        (Not ``mask()``: that is QWidget's.)"""
        return self.annotations.label_map()

    def box_item(self, box_id: int) -> BoxItem | None:
        return self.annotations.box_item(box_id)

    # ------------------------------------------------------------------ edits
    def push(self, command: Command) -> bool:
        """Do ``command`` as one undo step (see :meth:`LabelEdits.push`)."""
        return self.edits.push(command)

    def push_mask(self, label: np.ndarray, text: str = "Paint mask") -> bool:
        """Make ``label`` the shown image's label map (see :meth:`LabelEdits.push_mask`)."""
        return self.edits.push_mask(label, text)

    def push_objects(self, label: np.ndarray, layer: InstanceLayer, text: str) -> bool:
        """Make ``label`` and ``layer`` the shown image's label map and objects (see
        :meth:`LabelEdits.push_objects`)."""
        return self.edits.push_objects(label, layer, text)

    # ------------------------------------------------------------------ layers and mask tool
    def set_mask_opacity(self, opacity: float) -> None:
        """Mask overlay opacity, 0 (invisible) to 1 (opaque)."""
        opacity = min(max(float(opacity), 0.0), 1.0)
        self.mask_item.setOpacity(opacity)
        self.annotations.objects.set_opacity(opacity)

    def set_color_by_object(self, on: bool) -> None:
        """Fill and outline each object in a colour of its own (True) or in its class's."""
        self.annotations.set_color_by_object(on)

    def set_labels_visible(self, visible: bool) -> None:
        """Show or hide every label of the image (tag overlay, boxes, landmarks, mask),
        keeping each kind's own visibility setting for when they come back. Hidden
        labels cannot be selected."""
        project, iid = self.app_state.project, self.image_id
        tags = project.tags(iid) if project and iid is not None else ()
        self.annotations.set_labels_visible(visible, tags)
        self._place_overlays()

    def _mask_tool(self) -> MaskTool:
        tool = self.tools["mask"]
        assert isinstance(tool, MaskTool)  # TOOL_CLASSES maps each name to its class
        return tool

    def _object_tool(self) -> ObjectTool:
        tool = self.tools["objects"]
        assert isinstance(tool, ObjectTool)
        return tool

    def _landmark_tool(self) -> LandmarkTool:
        tool = self.tools["landmarks"]
        assert isinstance(tool, LandmarkTool)
        return tool

    def brush_size(self) -> int:
        """Brush diameter in image pixels (the mask and objects tools share it)."""
        return self._mask_tool().brush_size

    def set_brush_size(self, size: int) -> None:
        """Brush diameter in image pixels (clamped to the mask tool's range)."""
        self._mask_tool().set_brush_size(size)
        self._object_tool().set_brush_size(self._mask_tool().brush_size)

    def mask_mode(self) -> str:
        return self._mask_tool().mode

    def set_mask_mode(self, mode: str) -> None:
        """ "brush", "eraser" or "polygon" (the mask tool's mode; does not switch tools)."""
        changed = mode != self.mask_mode()
        self._mask_tool().set_mode(mode)
        if changed:
            self.mask_mode_changed.emit(mode)

    # ------------------------------------------------------------------ predictions
    def set_prediction(
        self, prediction: Prediction | None, task: str | None = None,
        template: LandmarkTemplate | None = None,
    ) -> None:  # fmt: skip
        """Draw ``prediction`` (payload in image pixels) of a ``task`` run over its image
        (landmark runs pass their ``template``); None removes it. A prediction of another
        image than the one shown is kept until that image is shown, and dropped when a
        different image loads. The overlay takes no mouse input: tools edit labels."""
        project = self.app_state.project
        if prediction is None or project is None:
            self.prediction_layer.clear()
            return
        try:
            rec = project.image(prediction.image_id)
        except TlsError:
            self.prediction_layer.clear()
            return
        if not self.annotations.class_colors:
            self.annotations.load_classes(project)
        layer = self.prediction_layer
        layer.set_classes(self.annotations.class_colors, self.annotations.class_names)
        layer.set_prediction(prediction, task, template, (rec.width, rec.height))
        self._place_overlays()

    def prediction(self) -> Prediction | None:
        """The prediction drawn (or kept for its image), None when none."""
        return self.prediction_layer.prediction

    def set_predictions_visible(self, visible: bool) -> None:
        """Show or hide the whole prediction overlay."""
        self.prediction_layer.set_visible(visible)
        self._place_overlays()

    def set_score_threshold(self, threshold: float) -> None:
        """Hide predicted boxes and landmark points scoring below ``threshold`` (0–1)."""
        self.prediction_layer.set_threshold(threshold)

    # ------------------------------------------------------------------ app state
    def _on_tool_changed(self, name: str) -> None:
        tool = self.tools.get(name)
        if tool is None or tool is self._tool:
            return
        self._tool.deactivate()
        self._tool = tool
        tool.activate()

    def _on_project_opened(self, project: object) -> None:
        self.image_layer.cache.clear()
        self.mask_writer.attach(self.app_state.project)
        self.load_image(self.app_state.image_id)

    def _on_project_closed(self) -> None:
        # closing the store waited for pending mask writes (the writer is its barrier)
        self.mask_writer.attach(None)
        self.image_layer.cache.clear()
        self.load_image(None)

    def _mask_write_failed(self, text: str) -> None:
        self.message.emit(text)
        self._reload_annotations()  # show what the store holds

    # ------------------------------------------------------------------ overlay widgets
    def _set_status(self, text: str) -> None:
        self._status_label.setText(text)
        self._status_label.setVisible(bool(text))
        if text:
            self._status_label.adjustSize()
            self._place_overlays()

    def _place_overlays(self) -> None:
        vp = self.viewport().geometry()
        self.annotations.tags_label.move(vp.left() + 8, vp.top() + 8)
        probs = self.prediction_layer.probabilities
        probs.move(vp.right() - probs.width() - 8, vp.top() + 8)
        s = self._status_label
        s.move(vp.center().x() - s.width() // 2, vp.center().y() - s.height() // 2)

    # ------------------------------------------------------------------ Qt events
    def drawBackground(self, painter: QPainter, rect: QRectF | QRect) -> None:
        super().drawBackground(painter, rect)
        if self._record is not None and self.image_layer.data is None:
            painter.fillRect(
                QRectF(0, 0, self._record.width, self._record.height), QColor(70, 70, 74)
            )

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self.navigator.resized()
        self._place_overlays()

    def viewportEvent(self, event: QEvent) -> bool:
        if event.type() == QEvent.Type.Leave:
            self._tool.leave()
            self.cursor_left.emit()
        return super().viewportEvent(event)

    def event(self, event: QEvent) -> bool:
        # keys the canvas handles win over window shortcuts while it has focus
        if (
            event.type() == QEvent.Type.ShortcutOverride
            and isinstance(event, QKeyEvent)  # PySide6 hands a ShortcutOverride as one
            and self.input.wants_key(event)
        ):
            event.accept()
            return True
        return super().event(event)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if not self.input.key_press(event):
            super().keyPressEvent(event)

    def keyReleaseEvent(self, event: QKeyEvent) -> None:
        if not self.input.key_release(event):
            super().keyReleaseEvent(event)

    def focusInEvent(self, event: QFocusEvent) -> None:
        self.input.focus_gained(event.reason())
        super().focusInEvent(event)

    def focusOutEvent(self, event: QFocusEvent) -> None:
        self.input.focus_lost()
        super().focusOutEvent(event)

    def mousePressEvent(self, event: QMouseEvent) -> None:
        self.setFocus(Qt.FocusReason.MouseFocusReason)
        if not self.input.press(event):
            super().mousePressEvent(event)

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:
        self.setFocus(Qt.FocusReason.MouseFocusReason)
        if not self.input.double_click(event):
            super().mouseDoubleClickEvent(event)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        self.input.move(event)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        if not self.input.release(event):
            super().mouseReleaseEvent(event)

    def wheelEvent(self, event: QWheelEvent) -> None:
        self.input.wheel(event)
