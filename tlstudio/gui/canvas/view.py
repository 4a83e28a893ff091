"""The labelling canvas: one image of the open project with its annotations.

Scene coordinates are image pixel coordinates: the image's pixmap item sits at
(0, 0) unscaled, so the scene point (x, y) is the image point (x, y) of
:mod:`tlstudio.core.annotations` (x right, y down; a W×H image spans
[0, W] × [0, H]; pixel (col, row) covers [col, col+1) × [row, row+1)). The
view's transform (zoom and pan) maps image pixels to viewport (screen) pixels;
:meth:`CanvasView.image_to_view` and :meth:`CanvasView.view_to_image` convert.

Every edit goes through ``app_state.push`` (one core command per gesture). The
canvas re-reads the shown image's annotations from the store after every push,
undo and redo (``AppState.data_changed``), keeping the zoom and pan.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PySide6.QtCore import QEvent, QPoint, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import (
    QColor,
    QKeyEvent,
    QMouseEvent,
    QPainter,
    QPixmap,
    QTransform,
    QWheelEvent,
)
from PySide6.QtWidgets import (
    QFrame,
    QGraphicsPixmapItem,
    QGraphicsScene,
    QGraphicsView,
    QLabel,
    QWidget,
)

from tlstudio.core.commands import Command, RemoveBox, RemoveLandmarkSet, SetMask, SetTags
from tlstudio.core.errors import TlsError
from tlstudio.core.imageio import ImageData, read_image
from tlstudio.core.labelset import LandmarkTemplate
from tlstudio.core.project import ImageRecord
from tlstudio.core.runs import Prediction
from tlstudio.gui.state import AppState

from .items import (
    NO_CLASS_COLOR,
    Z_IMAGE,
    BoxItem,
    LandmarkSetItem,
    MaskOverlayItem,
)
from .loader import BackgroundRenderer, PixelCache, buffer_to_pixmap, render_display
from .prediction_items import PredictionLayer
from .tools import MASK_MODES, TOOL_CLASSES, TOOL_SHORTCUTS, Tool
from .tools.mask import MAX_BRUSH, MIN_BRUSH

__all__ = ["TOOL_SHORTCUTS", "CanvasView", "Selection"]

_K = Qt.Key
_TOOL_KEYS = {_K.Key_V: "select", _K.Key_B: "box", _K.Key_L: "landmarks"}
_MASK_KEYS = {_K.Key_M: "brush", _K.Key_E: "eraser", _K.Key_P: "polygon"}
_DIGITS = {getattr(_K, f"Key_{n}"): n for n in range(1, 10)}
_PLAIN_KEYS = (
    set(_TOOL_KEYS)
    | set(_MASK_KEYS)
    | set(_DIGITS)
    | {
        _K.Key_N, _K.Key_O, _K.Key_F, _K.Key_R, _K.Key_BracketLeft, _K.Key_BracketRight,
        _K.Key_Plus, _K.Key_Minus, _K.Key_Equal, _K.Key_Space, _K.Key_Return, _K.Key_Enter,
    }
)  # fmt: skip
_UNSET = object()


@dataclass(frozen=True)
class Selection:
    """What is selected on the canvas: a box or a landmark set (and one of its points)."""

    kind: str  # "box" or "landmarks"
    id: int  # box id or landmark set id in the store
    point: int | None = None  # index of the selected point of a landmark set


class CanvasView(QGraphicsView):
    """Shows ``app_state.image_id``'s image with its boxes, landmark sets and mask,
    and edits them with the tool named by ``app_state.tool``.

    Positions in the API are image pixels unless they say viewport (screen)
    pixels. Images up to :attr:`sync_max_pixels` are decoded on the GUI thread;
    larger ones (and their window/level re-renders during a drag) in a worker
    thread, with "Loading …" shown meanwhile. Decoded images are kept in an LRU
    cache of :attr:`cache_bytes`.
    """

    window_changed = Signal(float, float)  # display window (center, width), array units
    zoom_changed = Signal(float)  # screen px per image px
    image_loaded = Signal(object)  # image id, once its pixels are on screen
    message = Signal(str)  # a short note for the status bar (refused edit, missing class)
    selection_changed = Signal(object)  # Selection or None
    cursor_moved = Signal(float, float)  # image px under the mouse
    brush_size_changed = Signal(int)  # mask brush diameter, image px
    mask_mode_changed = Signal(str)  # "brush", "eraser" or "polygon"

    ZOOM_STEP = 1.25  # per wheel notch and per +/- key
    MAX_ZOOM = 64.0
    FIT_MARGIN_PX = 8
    WINDOW_DRAG_PX = 4  # a right drag shorter than this is a right click

    def __init__(self, app_state: AppState, parent: QWidget | None = None):
        super().__init__(parent)
        self.app_state = app_state
        self.sync_max_pixels = 4_000_000
        self.cache_bytes = 512 * 2**20

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

        self._pixmap_item = QGraphicsPixmapItem()
        self._pixmap_item.setZValue(Z_IMAGE)
        self._pixmap_item.setShapeMode(QGraphicsPixmapItem.ShapeMode.BoundingRectShape)
        self._pixmap_item.setAcceptedMouseButtons(Qt.MouseButton.NoButton)
        scene.addItem(self._pixmap_item)
        self.mask_item = MaskOverlayItem()
        scene.addItem(self.mask_item)

        self._tags_label = self._overlay_label()
        self._status_label = self._overlay_label()
        # a model's prediction over the image (see set_prediction); never edited by tools
        self.prediction_layer = PredictionLayer(scene, self)
        self._labels_visible = True
        self._mask_wanted = True  # set_mask_visible's choice; shown only with the labels

        # image and display
        self._image_id: int | None = None
        self._record: ImageRecord | None = None
        self._data: ImageData | None = None
        self._window: tuple[float, float] | None = None
        self._data_range: tuple[float, float] | None = None
        self._display_buffer: np.ndarray | None = None  # the pixmap shares this memory
        self._cache = PixelCache(self.cache_bytes)
        self._renderer = BackgroundRenderer(self)
        self._renderer.done.connect(self._on_rendered)
        self._renderer.failed.connect(self._on_render_failed)
        self._load_token: int | None = None
        self._render_token: int | None = None
        # annotations
        self._box_items: dict[int, BoxItem] = {}
        self._landmark_items: dict[int, LandmarkSetItem] = {}
        self._class_colors: dict[int, QColor] = {}
        self._class_names: dict[int, str] = {}
        self._mask: np.ndarray | None = None
        self._mask_png: object = _UNSET
        self._expected_mask: np.ndarray | None = None
        self._selection: Selection | None = None
        self._boxes_visible = True
        self._landmarks_visible = True
        # interaction
        self._fitted = True
        self._space_down = False
        self._mouse_mode: str | None = None  # "pan", "tool", "right" or "window"
        self._mouse_button = Qt.MouseButton.NoButton  # the button that started it
        self._pan_last = QPointF()
        self._right_start = QPointF()
        self._right_window: tuple[float, float] | None = None

        self.tools: dict[str, Tool] = {name: cls(self) for name, cls in TOOL_CLASSES.items()}
        self._tool = self.tools.get(app_state.tool, self.tools["select"])

        app_state.image_changed.connect(self.load_image)
        app_state.data_changed.connect(self._on_data_changed)
        app_state.tool_changed.connect(self._on_tool_changed)
        app_state.template_changed.connect(self._on_template_changed)
        app_state.project_opened.connect(self._on_project_opened)
        app_state.project_closed.connect(self._on_project_closed)

        self._tool.activate()
        if app_state.project is not None and app_state.image_id is not None:
            self.load_image(app_state.image_id)

    # ------------------------------------------------------------------ properties
    @property
    def image_id(self) -> int | None:
        """The image shown (its record is known; its pixels may still be loading)."""
        return self._image_id if self._record is not None else None

    @property
    def image_ready(self) -> bool:
        """True once the shown image's pixels are on screen."""
        return self._data is not None

    @property
    def image_data(self) -> ImageData | None:
        """The shown image at full depth (never modified by the canvas)."""
        return self._data

    @property
    def tool(self) -> Tool:
        return self._tool

    @property
    def selection(self) -> Selection | None:
        return self._selection

    def image_size(self) -> tuple[int, int]:
        """(width, height) of the shown image in pixels; (0, 0) when none."""
        if self._record is None:
            return (0, 0)
        return (self._record.width, self._record.height)

    def display_pixmap(self) -> QPixmap:
        """The pixmap on screen (the image through the current window)."""
        return self._pixmap_item.pixmap()

    # ------------------------------------------------------------------ coordinates
    def image_to_view(self, x: float, y: float) -> QPointF:
        """Viewport (screen) position of the image point (x, y), sub-pixel precise."""
        return self.viewportTransform().map(QPointF(x, y))

    def view_to_image(self, pos: QPointF | QPoint) -> QPointF:
        """Image point (pixels, unclamped) under the viewport position ``pos``."""
        inverse, _ = self.viewportTransform().inverted()
        return inverse.map(QPointF(pos))

    def screen_to_image(self, px: float) -> float:
        """A length of ``px`` screen pixels in image pixels at the current zoom."""
        return px / max(self.zoom(), 1e-9)

    def clamp(self, pos: QPointF) -> QPointF:
        """``pos`` (image px) moved into the image rectangle [0, W] × [0, H]."""
        w, h = self.image_size()
        return QPointF(min(max(pos.x(), 0.0), float(w)), min(max(pos.y(), 0.0), float(h)))

    def pixel_value(self, x: float, y: float) -> object:
        """Full-depth value of the pixel containing (x, y): a number, a tuple per
        channel, or None outside the image or before it is loaded."""
        if self._data is None:
            return None
        a = self._data.array
        col, row = int(np.floor(x)), int(np.floor(y))
        if not (0 <= row < a.shape[0] and 0 <= col < a.shape[1]):
            return None
        v = a[row, col]
        return tuple(v.tolist()) if np.ndim(v) else v.item()

    # ------------------------------------------------------------------ zoom and pan
    def zoom(self) -> float:
        """Screen pixels per image pixel."""
        return self.transform().m11()

    def fit_scale(self) -> float:
        """The zoom at which the whole image fits the viewport (with a small margin)."""
        w, h = self.image_size()
        if not w or not h:
            return 1.0
        vp = self.viewport()
        m = 2 * self.FIT_MARGIN_PX
        return max(1e-4, min((vp.width() - m) / w, (vp.height() - m) / h))

    def fit_to_window(self) -> None:
        """Zoom so the whole image fits and centre it (kept fitted on resize until zoomed)."""
        if self._record is None:
            return
        s = self.fit_scale()
        self.setTransform(QTransform.fromScale(s, s))
        self._update_scene_rect()
        self.centerOn(self._record.width / 2, self._record.height / 2)
        self._fitted = True
        self._after_zoom()

    def zoom_1to1(self) -> None:
        """One image pixel per screen pixel, about the viewport centre."""
        self.set_zoom(1.0)

    def zoom_by(self, factor: float, anchor: QPointF | None = None) -> None:
        self.set_zoom(self.zoom() * factor, anchor)

    def set_zoom(self, zoom: float, anchor: QPointF | None = None) -> None:
        """Set the zoom (screen px per image px), keeping the image point under
        ``anchor`` (viewport px; default the viewport centre) where it is."""
        if self._record is None:
            return
        lo = min(self.fit_scale(), 1.0) / 4
        hi = max(self.MAX_ZOOM, self.fit_scale() * 4)
        zoom = min(max(zoom, lo), hi)
        if anchor is None:
            anchor = QPointF(self.viewport().rect().center())
        fixed = self.view_to_image(anchor)
        self.setTransform(QTransform.fromScale(zoom, zoom))
        self._update_scene_rect()
        drift = self.image_to_view(fixed.x(), fixed.y()) - anchor
        self._scroll_by(drift.x(), drift.y())
        self._fitted = False
        self._after_zoom()

    def pan_by(self, dx: float, dy: float) -> None:
        """Move the image by (dx, dy) screen pixels."""
        self._scroll_by(-dx, -dy)
        self._fitted = False

    def _scroll_by(self, dx: float, dy: float) -> None:
        h, v = self.horizontalScrollBar(), self.verticalScrollBar()
        h.setValue(h.value() + round(dx))
        v.setValue(v.value() + round(dy))

    def _update_scene_rect(self) -> None:
        # one viewport of margin around the image: it can be panned until an edge
        # reaches the opposite side of the window, never lost
        if self._record is None:
            self.setSceneRect(QRectF(0, 0, 1, 1))
            return
        s = max(self.zoom(), 1e-9)
        mx, my = self.viewport().width() / s, self.viewport().height() / s
        w, h = self._record.width, self._record.height
        self.setSceneRect(QRectF(-mx, -my, w + 2 * mx, h + 2 * my))

    def _after_zoom(self) -> None:
        mode = (
            Qt.TransformationMode.SmoothTransformation
            if self.zoom() < 1
            else Qt.TransformationMode.FastTransformation  # crisp pixels when enlarged
        )
        if self._pixmap_item.transformationMode() != mode:
            self._pixmap_item.setTransformationMode(mode)
        self.zoom_changed.emit(self.zoom())

    # ------------------------------------------------------------------ window / level
    def display_window(self) -> tuple[float, float] | None:
        """The display window (center, width) in array units, None before pixels arrive.

        (Not ``window()``: that is QWidget's top-level window.)"""
        return self._window

    def data_range(self) -> tuple[float, float] | None:
        """(min, max) of the image's values (colour samples, NaN ignored), array units."""
        if self._data is None:
            return None
        if self._data_range is None:
            a = self._data.array
            if a.ndim == 3 and a.shape[2] in (2, 4):
                a = a[..., :-1]
            if a.dtype.kind == "f":
                self._data_range = (float(np.nanmin(a)), float(np.nanmax(a)))
            else:
                self._data_range = (float(a.min()), float(a.max()))
        return self._data_range

    def default_window(self) -> tuple[float, float] | None:
        """The image's own window (DICOM header, else a robust percentile range)."""
        return None if self._data is None else self._data.window

    def can_window(self) -> bool:
        """True when right-dragging adjusts window/level (images that are not 8-bit)."""
        return self._data is not None and self._data.array.dtype != np.uint8

    def set_window(self, center: float, width: float) -> None:
        """Re-render the display from the full-depth array through the window
        (center, width) in array units. The stored image and labels never change."""
        if self._data is None:
            return
        self._render_token = None  # a pending background render is outdated
        self._window = (float(center), float(width))
        buffer, alpha = render_display(self._data.array, self._window)
        self._set_display(buffer, alpha)
        self.window_changed.emit(*self._window)

    def reset_window(self) -> None:
        """Back to the image's default window."""
        if self._data is None:
            return
        cached = self._cache.get(self._cache_key())
        if cached is not None and cached[1] == self._data.window:
            self._render_token = None
            self._window = cached[1]
            self._set_display(cached[2], cached[3])
            self.window_changed.emit(*self._window)
        else:
            self.set_window(*self._data.window)

    def _request_window(self, center: float, width: float) -> None:
        # interactive changes: big images render in the background, latest request wins
        if self._data is None:
            return
        h, w = self._data.array.shape[:2]
        if h * w <= self.sync_max_pixels:
            self.set_window(center, width)
            return
        self._window = (float(center), float(width))
        if self._render_token is None:
            self._render_token = self._renderer.render(self._data, self._window)
        self.window_changed.emit(*self._window)

    def _set_display(self, buffer: np.ndarray | None, alpha: bool = False) -> None:
        pixmap = QPixmap() if buffer is None else buffer_to_pixmap(buffer, alpha)
        self._pixmap_item.setPixmap(pixmap)
        self._display_buffer = buffer  # after setPixmap: the old pixmap is gone

    # ------------------------------------------------------------------ loading
    def load_image(self, image_id: int | None) -> None:
        """Show image ``image_id`` of the open project (None: nothing), fitted to the window."""
        self._tool.image_changed()
        self._load_token = self._render_token = None
        self._image_id = image_id
        self._record = None
        self._data = None
        self._window = None
        self._data_range = None
        self._set_display(None)
        self._set_status("")
        self._clear_annotation_items()
        self.mask_item.set_size(0, 0)
        self._mask, self._mask_png = None, _UNSET
        if self.prediction_layer.image_id != image_id:  # another image's prediction
            self.prediction_layer.clear()
        project = self.app_state.project
        if image_id is None or project is None:
            self._update_scene_rect()
            self.viewport().update()
            return
        try:
            rec = project.image(image_id)
        except TlsError as exc:
            self._set_status(str(exc))
            return
        self._record = rec
        self.mask_item.set_size(rec.width, rec.height)
        self.fit_to_window()
        self._reload_annotations()
        cached = self._cache.get(self._cache_key())
        if cached is not None:
            self._show_pixels(*cached)
            return
        path = project.image_path(rec)
        if rec.width * rec.height > self.sync_max_pixels:
            self._set_status("Loading …")
            self._load_token = self._renderer.load(path)
            return
        try:
            data = read_image(path)
            buffer, alpha = render_display(data.array, data.window)
        except (TlsError, OSError, ValueError) as exc:
            self._on_load_failed(str(exc))
            return
        self._pixels_arrived(data, data.window, buffer, alpha)

    def wait_for_image(self, msecs: int = 10_000) -> bool:
        """Block until background decoding is done and its result shown (tests, scripts)."""
        from PySide6.QtCore import QCoreApplication, QDeadlineTimer

        deadline = QDeadlineTimer(msecs)
        while self._load_token is not None or self._render_token is not None:
            self._renderer.wait(max(1, int(deadline.remainingTime())))
            QCoreApplication.sendPostedEvents(self._renderer)
            QCoreApplication.sendPostedEvents()
            if deadline.hasExpired():
                return False
        return True

    def _cache_key(self) -> tuple[int, str] | None:
        return None if self._record is None else (self._record.id, self._record.sha256)

    def _pixels_arrived(
        self, data: ImageData, window: tuple[float, float], buffer: np.ndarray, alpha: bool
    ) -> None:
        self._cache.max_bytes = self.cache_bytes
        self._cache.put(
            self._cache_key(), (data, window, buffer, alpha), data.array.nbytes + buffer.nbytes
        )
        self._show_pixels(data, window, buffer, alpha)

    def _show_pixels(
        self, data: ImageData, window: tuple[float, float], buffer: np.ndarray, alpha: bool
    ) -> None:
        self._data, self._window = data, window
        self._set_display(buffer, alpha)
        self._set_status("")
        for note in data.warnings:
            self.message.emit(note)
        self.window_changed.emit(*window)
        self.image_loaded.emit(self._image_id)

    def _on_rendered(
        self, token: int, data: ImageData, window: tuple[float, float], buffer, alpha: bool
    ) -> None:
        if token == self._load_token:
            self._load_token = None
            self._pixels_arrived(data, window, buffer, alpha)
        elif token == self._render_token and data is self._data:
            self._render_token = None
            self._set_display(buffer, alpha)
            if self._window != window:  # the drag went on meanwhile: render the latest
                self._render_token = self._renderer.render(self._data, self._window)

    def _on_render_failed(self, token: int, text: str) -> None:
        if token == self._load_token:
            self._load_token = None
            self._on_load_failed(text)
        elif token == self._render_token:
            self._render_token = None
            self.message.emit(f"Cannot render the image: {text}")

    def _on_load_failed(self, text: str) -> None:
        # labels stay visible and editable over a grey placeholder of the right size
        self._set_status(f"Cannot show this image\n{text}")
        self.message.emit(f"Cannot show this image: {text}")
        self.viewport().update()

    # ------------------------------------------------------------------ annotations
    def _on_data_changed(self) -> None:
        self._reload_annotations()

    def _reload_annotations(self) -> None:
        project, iid = self.app_state.project, self.image_id
        if project is None or iid is None:
            self._clear_annotation_items()
            return
        classes = project.classes()
        self._class_colors = {c.id: QColor(c.color) for c in classes}
        self._class_names = {c.id: c.name for c in classes}
        self.prediction_layer.set_classes(self._class_colors, self._class_names)
        scene = self.scene()

        seen: set[int] = set()
        for box in project.boxes(iid):
            item = self._box_items.get(box.id)
            if item is None:
                item = self._box_items[box.id] = BoxItem()
                scene.addItem(item)
            item.set_box(
                box, self.class_color(box.class_id), self._class_names.get(box.class_id, "?")
            )
            item.setVisible(self._boxes_visible and self._labels_visible)
            seen.add(box.id)
        for box_id in [b for b in self._box_items if b not in seen]:
            scene.removeItem(self._box_items.pop(box_id))

        seen.clear()
        for lms in project.landmark_sets(iid):
            try:
                template = project.template(lms.template_id)
            except TlsError:
                continue
            item = self._landmark_items.get(lms.id)
            if item is None:
                item = self._landmark_items[lms.id] = LandmarkSetItem()
                scene.addItem(item)
            item.set_landmarks(lms.points, template, self.class_color(lms.class_id), lms)
            item.setVisible(self._landmarks_visible and self._labels_visible)
            seen.add(lms.id)
        for set_id in [s for s in self._landmark_items if s not in seen]:
            scene.removeItem(self._landmark_items.pop(set_id))

        self._sync_mask(project, iid)
        self._update_tags_label(project.tags(iid))
        sel = self._selection
        if sel is not None and (
            (sel.kind == "box" and sel.id not in self._box_items)
            or (sel.kind == "landmarks" and sel.id not in self._landmark_items)
        ):
            self._set_selection(None)
        else:
            self._apply_selection()
        self._tool.annotations_reloaded()

    def _sync_mask(self, project, image_id: int) -> None:
        colors_changed = self.mask_item.set_colors(self._class_colors)
        png = _stored_mask_png(project, image_id)
        expected, self._expected_mask = self._expected_mask, None
        if expected is not None and png is not _UNSET:
            # our own push: the store holds exactly this map, the overlay shows it already
            self._mask = expected if png is not None else None
            self._mask_png = png
            if colors_changed:
                self.mask_item.set_label_map(self._mask)
            return
        if png is not _UNSET and png == self._mask_png and not colors_changed:
            return  # unchanged: skip decoding and re-rendering a big map
        self._mask = project.mask(image_id)
        self._mask_png = png
        self.mask_item.set_label_map(self._mask)

    def _clear_annotation_items(self) -> None:
        scene = self.scene()
        for item in self._box_items.values():
            scene.removeItem(item)
        for item in self._landmark_items.values():
            scene.removeItem(item)
        self._box_items.clear()
        self._landmark_items.clear()
        self._update_tags_label(())
        self._set_selection(None)

    def refresh_items(self) -> None:
        """Redraw boxes and landmark sets as last read from the store (drops drag feedback)."""
        for item in self._box_items.values():
            if item.box is not None:
                b = item.box
                item.set_preview_rect(QRectF(QPointF(b.x1, b.y1), QPointF(b.x2, b.y2)))
        for item in self._landmark_items.values():
            if item.landmarks is not None:
                item.set_points(item.landmarks.points)

    def refresh_mask(self) -> None:
        """Redraw the whole mask overlay from the stored label map (drops stroke feedback)."""
        self.mask_item.set_label_map(self._mask)

    def label_map(self) -> np.ndarray | None:
        """The shown image's label map as last read from the store (do not modify).

        (Not ``mask()``: that is QWidget's.)"""
        return self._mask

    def editable_mask(self) -> np.ndarray:
        """A copy of the label map to paint into (zeros when the image has none)."""
        if self._mask is not None:
            return self._mask.copy()
        w, h = self.image_size()
        return np.zeros((h, w), np.uint16)

    def class_color(self, class_id: int | None) -> QColor:
        """The class's colour (a fixed yellow for None or an unknown class)."""
        if class_id is None:
            return QColor(NO_CLASS_COLOR)
        if not self._class_colors and self.app_state.project is not None:
            self._class_colors = {c.id: QColor(c.color) for c in self.app_state.project.classes()}
        return QColor(self._class_colors.get(class_id, NO_CLASS_COLOR))

    def box_item(self, box_id: int) -> BoxItem | None:
        return self._box_items.get(box_id)

    def landmark_item(self, set_id: int) -> LandmarkSetItem | None:
        return self._landmark_items.get(set_id)

    def box_at(self, pos: QPointF, tolerance_px: float = 3.0) -> int | None:
        """Id of the smallest shown box containing ``pos`` (image px; edges get
        ``tolerance_px`` screen px of slack), or None."""
        if not (self._boxes_visible and self._labels_visible):
            return None
        tol = self.screen_to_image(tolerance_px)
        best, best_area = None, float("inf")
        for box_id, item in self._box_items.items():
            b = item.box
            if b is None:
                continue
            if b.x1 - tol <= pos.x() <= b.x2 + tol and b.y1 - tol <= pos.y() <= b.y2 + tol:
                area = (b.x2 - b.x1) * (b.y2 - b.y1)
                if area < best_area:
                    best, best_area = box_id, area
        return best

    def landmark_point_at(self, pos: QPointF, tolerance: float) -> tuple[int, int] | None:
        """(set id, point index) of the drawn landmark point nearest ``pos`` within
        ``tolerance`` image px, or None."""
        if not (self._landmarks_visible and self._labels_visible):
            return None
        best, best_d = None, float("inf")
        for set_id, item in self._landmark_items.items():
            i = item.point_at(pos, tolerance)
            if i is not None:
                p = item.points[i]
                d = (p.x - pos.x()) ** 2 + (p.y - pos.y()) ** 2
                if d < best_d:
                    best, best_d = (set_id, i), d
        return best

    # ------------------------------------------------------------------ selection
    def select_box(self, box_id: int) -> None:
        self._set_selection(Selection("box", box_id))

    def select_landmarks(self, set_id: int, point: int | None = None) -> None:
        self._set_selection(Selection("landmarks", set_id, point))

    def clear_selection(self) -> None:
        self._set_selection(None)

    def delete_selection(self) -> bool:
        """Delete the selected box or landmark set (one undo step). True if one was."""
        sel = self._selection
        if sel is None:
            return False
        self._set_selection(None)
        if sel.kind == "box":
            return self.push(RemoveBox(sel.id))
        return self.push(RemoveLandmarkSet(sel.id))

    def _set_selection(self, selection: Selection | None) -> None:
        if selection == self._selection:
            return
        self._selection = selection
        self._apply_selection()
        self.selection_changed.emit(selection)

    def _apply_selection(self) -> None:
        sel = self._selection
        for box_id, item in self._box_items.items():
            on = sel is not None and sel.kind == "box" and sel.id == box_id
            if on != item.selected:
                item.set_selected(on)
        for set_id, item in self._landmark_items.items():
            on = sel is not None and sel.kind == "landmarks" and sel.id == set_id
            item.set_selected(on, sel.point if on else None)

    # ------------------------------------------------------------------ edits
    def push(self, command: Command) -> bool:
        """Do ``command`` through ``app_state.push`` (one undo step). A refused edit
        is reported through :attr:`message` and the canvas redrawn from the store."""
        try:
            self.app_state.push(command)
        except (TlsError, RuntimeError) as exc:
            self._expected_mask = None
            self.message.emit(f"{command.text} refused: {exc}")
            self.refresh_items()
            self.refresh_mask()
            return False
        return True

    def push_mask(self, label: np.ndarray, gesture: object, text: str = "Paint mask") -> bool:
        """Store ``label`` as the shown image's label map with one SetMask command
        (gesture key ``gesture``); nothing is pushed if it equals the stored map.
        The overlay is expected to show ``label`` already (the tool drew it)."""
        iid = self.image_id
        if iid is None:
            return False
        if (self._mask is None and not label.any()) or (
            self._mask is not None and np.array_equal(label, self._mask)
        ):
            self.refresh_mask()
            return False
        command = SetMask(iid, label, gesture=gesture, text=text)
        self._expected_mask = command.new
        try:
            return self.push(command)
        finally:
            self._expected_mask = None

    def tag_with_class(self, n: int) -> None:
        """Tag the image with the ``n``-th class (1-based, in class order); in a
        multi-label project toggle that class instead."""
        project, iid = self.app_state.project, self.image_id
        if project is None or iid is None:
            return
        classes = project.classes()
        if not 1 <= n <= len(classes):
            self.message.emit(f"There is no class {n} (the project has {len(classes)}).")
            return
        cls = classes[n - 1]
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

    # ------------------------------------------------------------------ layers and mask tool
    def set_mask_opacity(self, opacity: float) -> None:
        """Mask overlay opacity, 0 (invisible) to 1 (opaque)."""
        self.mask_item.setOpacity(min(max(float(opacity), 0.0), 1.0))

    def mask_opacity(self) -> float:
        return self.mask_item.opacity()

    def set_mask_visible(self, visible: bool) -> None:
        self._mask_wanted = bool(visible)
        self.mask_item.setVisible(self._mask_wanted and self._labels_visible)

    def mask_visible(self) -> bool:
        return self._mask_wanted

    def set_boxes_visible(self, visible: bool) -> None:
        self._boxes_visible = bool(visible)
        for item in self._box_items.values():
            item.setVisible(self._boxes_visible and self._labels_visible)

    def set_landmarks_visible(self, visible: bool) -> None:
        self._landmarks_visible = bool(visible)
        for item in self._landmark_items.values():
            item.setVisible(self._landmarks_visible and self._labels_visible)

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
        if not self._class_colors:
            self._class_colors = {c.id: QColor(c.color) for c in project.classes()}
            self._class_names = {c.id: c.name for c in project.classes()}
        self.prediction_layer.set_classes(self._class_colors, self._class_names)
        self.prediction_layer.set_prediction(prediction, task, template, (rec.width, rec.height))
        self._place_overlays()

    def prediction(self) -> Prediction | None:
        """The prediction drawn (or kept for its image), None when none."""
        return self.prediction_layer.prediction

    def set_predictions_visible(self, visible: bool) -> None:
        """Show or hide the whole prediction overlay."""
        self.prediction_layer.set_visible(visible)
        self._place_overlays()

    def predictions_visible(self) -> bool:
        return self.prediction_layer.visible

    def set_score_threshold(self, threshold: float) -> None:
        """Hide predicted boxes and landmark points scoring below ``threshold`` (0–1)."""
        self.prediction_layer.set_threshold(threshold)

    def score_threshold(self) -> float:
        return self.prediction_layer.threshold

    def set_labels_visible(self, visible: bool) -> None:
        """Show or hide every label of the image (tag overlay, boxes, landmarks, mask),
        keeping each kind's own visibility setting for when they come back. Hidden
        labels cannot be selected."""
        self._labels_visible = bool(visible)
        if not self._labels_visible:
            self._set_selection(None)
        self.set_boxes_visible(self._boxes_visible)
        self.set_landmarks_visible(self._landmarks_visible)
        self.set_mask_visible(self._mask_wanted)
        project, iid = self.app_state.project, self.image_id
        self._update_tags_label(project.tags(iid) if project and iid is not None else ())

    def labels_visible(self) -> bool:
        return self._labels_visible

    def brush_size(self) -> int:
        """Mask brush diameter in image pixels."""
        return self.tools["mask"].brush_size

    def set_brush_size(self, size: int) -> None:
        tool = self.tools["mask"]
        old = tool.brush_size
        tool.set_brush_size(size)
        if tool.brush_size != old:
            self.brush_size_changed.emit(tool.brush_size)

    def mask_mode(self) -> str:
        return self.tools["mask"].mode

    def set_mask_mode(self, mode: str) -> None:
        """ "brush", "eraser" or "polygon" (the mask tool's mode; does not switch tools)."""
        if mode not in MASK_MODES:
            raise ValueError(f"unknown mask mode {mode!r}")
        tool = self.tools["mask"]
        if mode != tool.mode:
            tool.set_mode(mode)
            self.mask_mode_changed.emit(mode)

    # ------------------------------------------------------------------ app state
    def _on_tool_changed(self, name: str) -> None:
        tool = self.tools.get(name)
        if tool is None or tool is self._tool:
            return
        self._tool.deactivate()
        self._tool = tool
        tool.activate()

    def _on_template_changed(self, template_id: object) -> None:
        self.tools["landmarks"].template_changed()

    def _on_project_opened(self, project: object) -> None:
        self._cache.clear()
        self.load_image(self.app_state.image_id)

    def _on_project_closed(self) -> None:
        self._cache.clear()
        self.load_image(None)

    # ------------------------------------------------------------------ overlay widgets
    def _overlay_label(self) -> QLabel:
        label = QLabel(self)
        label.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        label.setStyleSheet(
            "QLabel { background: rgba(20, 20, 20, 170); color: white;"
            " border-radius: 4px; padding: 3px 6px; }"
        )
        label.hide()
        return label

    def _update_tags_label(self, tags: tuple[int, ...]) -> None:
        if not tags or not self._labels_visible:
            self._tags_label.hide()
            return
        parts = [
            f'<span style="color:{self.class_color(c).name()}">&#9632;</span>&nbsp;'
            f"{_html(self._class_names.get(c, '?'))}"
            for c in tags
        ]
        self._tags_label.setText("&nbsp;&nbsp;".join(parts))
        self._tags_label.adjustSize()
        self._tags_label.show()
        self._place_overlays()

    def _set_status(self, text: str) -> None:
        self._status_label.setText(text)
        self._status_label.setVisible(bool(text))
        if text:
            self._status_label.adjustSize()
            self._place_overlays()

    def _place_overlays(self) -> None:
        vp = self.viewport().geometry()
        self._tags_label.move(vp.left() + 8, vp.top() + 8)
        probs = self.prediction_layer.probabilities
        probs.move(vp.right() - probs.width() - 8, vp.top() + 8)
        s = self._status_label
        s.move(vp.center().x() - s.width() // 2, vp.center().y() - s.height() // 2)

    # ------------------------------------------------------------------ Qt events
    def drawBackground(self, painter: QPainter, rect: QRectF) -> None:
        super().drawBackground(painter, rect)
        if self._record is not None and self._data is None:
            painter.fillRect(
                QRectF(0, 0, self._record.width, self._record.height), QColor(70, 70, 74)
            )

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        if self._fitted:
            self.fit_to_window()
        else:
            self._update_scene_rect()
        self._place_overlays()

    def viewportEvent(self, event: QEvent) -> bool:
        if event.type() == QEvent.Type.Leave:
            self._tool.leave()
        return super().viewportEvent(event)

    def event(self, event: QEvent) -> bool:
        # keys the canvas handles win over window shortcuts while it has focus
        if event.type() == QEvent.Type.ShortcutOverride and self._wants_key(event):
            event.accept()
            return True
        return super().event(event)

    def _wants_key(self, event: QKeyEvent) -> bool:
        mods = event.modifiers() & ~Qt.KeyboardModifier.KeypadModifier
        if mods not in (Qt.KeyboardModifier.NoModifier, Qt.KeyboardModifier.ShiftModifier):
            return False
        key = event.key()
        if key in (_K.Key_Delete, _K.Key_Backspace):
            return self._selection is not None or self._tool.busy()
        if key == _K.Key_Escape:
            return self._selection is not None or self._tool.busy()
        return key in _PLAIN_KEYS and self._record is not None

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if self._tool.key_press(event):
            return
        key = event.key()
        mods = event.modifiers() & ~Qt.KeyboardModifier.KeypadModifier
        ctrl = bool(mods & Qt.KeyboardModifier.ControlModifier)
        plain = mods in (Qt.KeyboardModifier.NoModifier, Qt.KeyboardModifier.ShiftModifier)
        if ctrl and key == _K.Key_0:
            self.fit_to_window()
        elif ctrl and key == _K.Key_1:
            self.zoom_1to1()
        elif not plain:
            super().keyPressEvent(event)
        elif key == _K.Key_Space:
            if not event.isAutoRepeat():
                self._space_down = True
                if self._mouse_mode is None:
                    self.viewport().setCursor(Qt.CursorShape.OpenHandCursor)
        elif key in _TOOL_KEYS:
            self.app_state.set_tool(_TOOL_KEYS[key])
        elif key in _MASK_KEYS:
            self.set_mask_mode(_MASK_KEYS[key])
            self.app_state.set_tool("mask")
        elif key in _DIGITS:
            self.tag_with_class(_DIGITS[key])
        elif key == _K.Key_F:
            self.fit_to_window()
        elif key in (_K.Key_Plus, _K.Key_Equal):
            self.zoom_by(self.ZOOM_STEP)
        elif key == _K.Key_Minus:
            self.zoom_by(1 / self.ZOOM_STEP)
        elif key == _K.Key_R:
            self.reset_window()
        elif key == _K.Key_BracketLeft:
            n = self.brush_size()
            self.set_brush_size(max(MIN_BRUSH, min(n - 1, round(n / 1.25))))
        elif key == _K.Key_BracketRight:
            n = self.brush_size()
            self.set_brush_size(min(MAX_BRUSH, max(n + 1, round(n * 1.25))))
        elif key in (_K.Key_Delete, _K.Key_Backspace):
            if not self.delete_selection():
                super().keyPressEvent(event)
        elif key == _K.Key_Escape:
            self.clear_selection()
        else:
            super().keyPressEvent(event)

    def keyReleaseEvent(self, event: QKeyEvent) -> None:
        if event.key() == _K.Key_Space and not event.isAutoRepeat():
            self._space_down = False
            if self._mouse_mode is None:
                self.viewport().setCursor(self._tool.cursor)
            return
        super().keyReleaseEvent(event)

    def focusOutEvent(self, event) -> None:
        self._space_down = False
        super().focusOutEvent(event)

    def _scene_pos(self, event: QMouseEvent | QWheelEvent) -> QPointF:
        return self.view_to_image(event.position())

    def mousePressEvent(self, event: QMouseEvent) -> None:
        self.setFocus(Qt.FocusReason.MouseFocusReason)
        button = event.button()
        if self._mouse_mode is not None:
            if button != self._mouse_button and event.buttons() & self._mouse_button:
                return  # a second button during a gesture: ignore it
            self._end_stale_gesture(event)  # its release never came (e.g. a lost grab)
        self._mouse_button = button
        if button == Qt.MouseButton.MiddleButton or (
            button == Qt.MouseButton.LeftButton and self._space_down
        ):
            self._mouse_mode = "pan"
            self._pan_last = event.position()
            self.viewport().setCursor(Qt.CursorShape.ClosedHandCursor)
        elif button == Qt.MouseButton.RightButton:
            self._mouse_mode = "right"
            self._right_start = event.position()
            self._right_window = self._window
        elif button == Qt.MouseButton.LeftButton and self._record is not None:
            self._mouse_mode = "tool"
            self._tool.press(self._scene_pos(event), event)
        else:
            super().mousePressEvent(event)

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:
        if (
            event.button() == Qt.MouseButton.LeftButton
            and not self._space_down
            and self._record is not None
            and self._mouse_mode is None
        ):
            self.setFocus(Qt.FocusReason.MouseFocusReason)
            self._mouse_mode, self._mouse_button = "tool", event.button()
            self._tool.double_click(self._scene_pos(event), event)
        else:
            self.mousePressEvent(event)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        pos = self._scene_pos(event)
        if self._record is not None:
            self.cursor_moved.emit(pos.x(), pos.y())
        mode = self._mouse_mode
        if mode == "pan":
            d = event.position() - self._pan_last
            self._pan_last = event.position()
            self.pan_by(d.x(), d.y())
        elif mode in ("right", "window"):
            d = event.position() - self._right_start
            if mode == "right" and self.can_window() and d.manhattanLength() >= self.WINDOW_DRAG_PX:
                self._mouse_mode = mode = "window"
            if mode == "window":
                self._drag_window(d)
        elif self._record is not None:
            self._tool.move(pos, event)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        mode, button = self._mouse_mode, event.button()
        pos = self._scene_pos(event)
        if mode == "pan" and button in (Qt.MouseButton.MiddleButton, Qt.MouseButton.LeftButton):
            self._mouse_mode = None
            self.viewport().setCursor(
                Qt.CursorShape.OpenHandCursor if self._space_down else self._tool.cursor
            )
        elif mode in ("right", "window") and button == Qt.MouseButton.RightButton:
            self._mouse_mode = None
            if mode == "right" and self._record is not None:
                self._tool.right_click(pos)
        elif mode == "tool" and button == Qt.MouseButton.LeftButton:
            self._mouse_mode = None
            self._tool.release(pos, event)
        else:
            super().mouseReleaseEvent(event)

    def _end_stale_gesture(self, event: QMouseEvent) -> None:
        mode, self._mouse_mode = self._mouse_mode, None
        if mode == "tool":
            self._tool.release(self._scene_pos(event), event)
        self.viewport().setCursor(self._tool.cursor)

    def _drag_window(self, delta: QPointF) -> None:
        if self._data is None or self._right_window is None:
            return
        c0, w0 = self._right_window
        default_width = max(abs(self._data.window[1]), 1e-6)
        step = default_width / 256  # 256 px of drag = one default width
        floor = 1.0 if self._data.array.dtype.kind in "ui" else default_width / 1000
        width = max(w0 + delta.x() * step, floor)
        center = c0 + delta.y() * step
        self._request_window(center, width)

    def wheelEvent(self, event: QWheelEvent) -> None:
        if self._record is None:
            return
        delta = event.angleDelta().y() or event.angleDelta().x()
        if not delta:
            delta = event.pixelDelta().y()
        if delta:
            self.zoom_by(self.ZOOM_STEP ** (delta / 120), event.position())
        event.accept()


def _stored_mask_png(project, image_id: int) -> object:
    """The stored mask's PNG bytes (None: no mask) to tell cheaply whether it changed
    since the canvas last decoded it; _UNSET if the store cannot be asked."""
    try:
        row = project.store.conn.execute(
            "SELECT png FROM masks WHERE image_id = ?", (image_id,)
        ).fetchone()
    except Exception:  # a store without that table or connection: always decode
        return _UNSET
    return None if row is None else bytes(row[0])


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
