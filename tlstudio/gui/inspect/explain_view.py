"""Explain: class-activation heatmaps of the inspected run on one image, the chosen
stage's feature maps and the first layer's filters.

The view follows ``AppState.run_id`` and ``AppState.image_id`` (◀ ▶ step through the
project's images and set it). Everything heavy runs as a
:class:`~tlstudio.gui.workers.jobs.BackgroundJob` in this view's one-thread pool: the
run's model is loaded there once and kept (:class:`_ExplainerCache`), each request reads
the image, computes the heatmap (:mod:`tlstudio.ml.explain`, whose hooks are removed
after every call), the top 32 feature maps and the colour tiles. A request made while
one is computing replaces any request still waiting, and a result that a newer request
has superseded is dropped. Nothing is computed while the view is hidden; it catches up
when shown. Double-click the image to open it in the Label canvas.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
from PySide6.QtCore import QPointF, Qt, Signal
from PySide6.QtGui import QImage, QPainter, QPixmap, QStandardItemModel
from PySide6.QtWidgets import (
    QComboBox,
    QGraphicsPixmapItem,
    QGraphicsScene,
    QGraphicsView,
    QHBoxLayout,
    QLabel,
    QScrollArea,
    QSizePolicy,
    QSlider,
    QTabWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from tlstudio.core.runs import RunStore
from tlstudio.gui.state import AppState
from tlstudio.gui.workers.jobs import BackgroundJob, job_pool

#: (combo text, method key of :data:`tlstudio.ml.explain.METHODS`) in combo order
METHOD_ITEMS = (
    ("Grad-CAM", "gradcam"),
    ("Grad-CAM++", "gradcam++"),
    ("EigenCAM (no gradient)", "eigencam"),
    ("Score-CAM (no gradient, slow)", "scorecam"),
)
TARGETED_TASKS = ("classify", "segment", "landmarks")
ACTIVATION_MAPS = 32  # feature maps shown, the top ones by mean activation
MAP_TILE = 72  # screen pixels per feature-map tile
FILTER_TILE = 36  # screen pixels per first-layer filter tile
GAP = 3  # pixels between tiles


@dataclass(frozen=True)
class _Request:
    seq: int
    root: Path
    run_id: int
    image_id: int
    path: Path
    method: str
    target: int | None
    layer: str | None


class _ExplainerCache:
    """The last run's Explainer, loaded in a worker thread with its own Project."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: tuple[Path, int] | None = None
        self._explainer: Any = None
        self._filters: tuple[np.ndarray, int] | None = None

    def get(self, root: Path, run_id: int) -> tuple[Any, tuple[np.ndarray, int]]:
        """(Explainer, (filter mosaic uint8, number of filters)) of the run, loaded once."""
        from tlstudio.core.project import Project
        from tlstudio.ml.explain import load_explainer

        with self._lock:
            if self._key != (root, run_id):
                self._key, self._explainer = None, None  # free the old model first
                project = Project.open(root)
                try:
                    self._explainer = load_explainer(project, run_id)
                finally:
                    project.close()
                if getattr(self._explainer, "member_ids", None):  # an ensemble: no filters
                    self._filters = (np.zeros((1, 1), np.uint8), 0)
                else:
                    filters = self._explainer.first_layer_filters()
                    self._filters = (_mosaic(filters, FILTER_TILE, 16), len(filters))
                self._key = (root, run_id)
            if self._filters is None:  # set together with _key above
                raise RuntimeError(f"run {run_id}'s filters were not loaded")
            return self._explainer, self._filters

    def clear(self) -> None:
        with self._lock:
            self._key, self._explainer, self._filters = None, None, None


def _mosaic(tiles: np.ndarray, tile_px: int, cols: int) -> np.ndarray:
    """K×h×w (grey) or K×h×w×3 values in [0, 1] → one uint8 grid image, ``cols`` tiles a
    row, each tile enlarged to ``tile_px`` (nearest neighbour, so cells stay visible)."""
    import cv2

    k = len(tiles)
    cols = max(1, min(cols, k))
    rows = max(1, -(-k // cols))
    chans = 3 if tiles.ndim == 4 else 1
    out = np.full((rows * (tile_px + GAP) - GAP, cols * (tile_px + GAP) - GAP, chans), 40, np.uint8)
    for i, t in enumerate(tiles):
        img = cv2.resize((np.clip(t, 0, 1) * 255).astype(np.uint8), (tile_px, tile_px),
                         interpolation=cv2.INTER_NEAREST)  # fmt: skip
        r, c = divmod(i, cols)
        y, x = r * (tile_px + GAP), c * (tile_px + GAP)
        out[y : y + tile_px, x : x + tile_px] = img.reshape(tile_px, tile_px, chans)
    return out


def _compute(req: _Request, cache: _ExplainerCache) -> dict[str, Any]:
    """Worker thread: heatmap, coloured overlay, activation and filter mosaics."""
    from tlstudio.ml.data import read_rgb
    from tlstudio.ml.explain import colorize

    t0 = time.perf_counter()
    explainer, filters = cache.get(req.root, req.run_id)
    rgb = read_rgb(req.path)
    method = req.method if req.method in explainer.methods else explainer.methods[0]
    hm = explainer.heatmap(rgb, method, target=req.target, layer=req.layer)
    members = list(getattr(explainer, "member_ids", None) or [])
    acts = (
        np.zeros((0, 1, 1), np.float32)
        if members
        else explainer.activations(rgb, hm.layer, max_maps=ACTIVATION_MAPS)
    )
    return {
        "members": members,
        "request": req,
        "rgb": rgb,
        "heatmap": hm,
        "overlay": colorize(hm.values),
        "legend": colorize(np.tile(np.linspace(0.0, 1.0, 160, dtype=np.float32), (12, 1))),
        "activations": _mosaic(acts, MAP_TILE, 8),
        "n_maps": len(acts),
        "filters": filters[0],
        "n_filters": filters[1],
        "layers": explainer.layers,
        "task": explainer.task,
        "seconds": time.perf_counter() - t0,
    }


def _qimage(array: np.ndarray) -> QImage:
    a = np.ascontiguousarray(array)
    h, w = a.shape[:2]
    if a.ndim == 2 or a.shape[2] == 1:
        return QImage(a.data, w, h, w, QImage.Format.Format_Grayscale8).copy()
    return QImage(a.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()


class _ZoomView(QGraphicsView):
    """The image with the heatmap on top; wheel zooms about the cursor, drag pans."""

    double_clicked = Signal()

    def __init__(self) -> None:
        super().__init__()
        self.setScene(QGraphicsScene(self))
        self.image_item = QGraphicsPixmapItem()
        self.heat_item = QGraphicsPixmapItem()
        self.image_item.setTransformationMode(Qt.TransformationMode.SmoothTransformation)
        self.heat_item.setTransformationMode(Qt.TransformationMode.SmoothTransformation)
        self.scene().addItem(self.image_item)
        self.scene().addItem(self.heat_item)
        self.setDragMode(QGraphicsView.DragMode.ScrollHandDrag)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        self.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        self.setBackgroundBrush(Qt.GlobalColor.darkGray)

    def fit(self) -> None:
        rect = self.image_item.boundingRect()
        if not rect.isEmpty():
            self.setSceneRect(rect)
            self.fitInView(rect, Qt.AspectRatioMode.KeepAspectRatio)

    def wheelEvent(self, event) -> None:
        factor = 1.25 if event.angleDelta().y() > 0 else 0.8
        self.scale(factor, factor)

    def mouseDoubleClickEvent(self, event) -> None:
        self.double_clicked.emit()

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self.fit()


class ExplainView(QWidget):
    """Heatmap of the inspected run on the current image, plus activations and filters.

    ``explained`` is emitted each time a new result is on screen (tests wait on it)."""

    message = Signal(str)
    open_image = Signal(int)
    explained = Signal()

    def __init__(self, app_state: AppState, parent: QWidget | None = None):
        super().__init__(parent)
        self.app_state = app_state
        self._pool = job_pool(self, 1, "explain view")  # one model, one request at a time
        self._cache = _ExplainerCache()
        self._seq = 0
        self._busy = False
        self._pending: _Request | None = None
        self._dirty = True
        self._task: str | None = None
        self._layers_for: int | None = None  # run whose stage names fill the layer combo
        self._shown_image: int | None = None
        self.result: dict[str, Any] | None = None  # the result on screen

        self.prev_button = QToolButton()
        self.next_button = QToolButton()
        for b, text, tip in ((self.prev_button, "◀", "Previous image"),
                             (self.next_button, "▶", "Next image")):  # fmt: skip
            b.setText(text)
            b.setToolTip(tip)
        self.image_label = QLabel("")
        self.image_label.setObjectName("explainImage")
        # a long path must not widen the view: the label gets what is left (full path in
        # the tooltip)
        self.image_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.method_combo = QComboBox()
        for text, key in METHOD_ITEMS:
            self.method_combo.addItem(text, key)
        self.method_combo.setToolTip(
            "Grad-CAM(++) weighs the stage's maps by the target's gradient; EigenCAM shows the "
            "maps' main component (class-agnostic); Score-CAM masks the input with each map "
            "(about 65 forward passes)"
        )
        self.target_combo = QComboBox()
        self.target_combo.setToolTip("What the heatmap explains")
        self.target_combo.setMinimumContentsLength(12)
        self.layer_combo = QComboBox()
        self.layer_combo.setToolTip("Backbone stage whose feature maps are weighed (deepest last)")
        self.layer_combo.setMinimumContentsLength(8)
        self.opacity_slider = QSlider(Qt.Orientation.Horizontal)
        self.opacity_slider.setRange(0, 100)
        self.opacity_slider.setValue(50)
        self.opacity_slider.setFixedWidth(120)
        self.opacity_slider.setToolTip("Heatmap opacity")
        self.score_label = QLabel("")
        self.score_label.setObjectName("explainScore")
        self.status_label = QLabel("")
        self.status_label.setObjectName("explainStatus")
        self.status_label.setWordWrap(True)

        top = QHBoxLayout()  # the image on one row, the settings on the next: both fit
        top.addWidget(self.prev_button)  # a laptop's width
        top.addWidget(self.next_button)
        top.addWidget(self.image_label, 1)
        top.addWidget(QLabel("Opacity"))
        top.addWidget(self.opacity_slider)
        settings = QHBoxLayout()
        for text, w in (("Method", self.method_combo), ("Target", self.target_combo),
                        ("Layer", self.layer_combo)):  # fmt: skip
            settings.addWidget(QLabel(text))
            settings.addWidget(w)
        settings.addStretch(1)

        self.view = _ZoomView()
        self.activation_label = QLabel()
        self.filters_label = QLabel()
        self.activation_title = QLabel("")
        self.filters_title = QLabel("")
        self.activation_title.setWordWrap(True)  # an ensemble's note is a long sentence
        inner = QWidget()
        grid = QVBoxLayout(inner)
        for label in (self.activation_title, self.activation_label,
                      self.filters_title, self.filters_label):  # fmt: skip
            grid.addWidget(label)
        grid.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidget(inner)
        scroll.setWidgetResizable(True)
        self.tabs = QTabWidget()
        self.tabs.addTab(self.view, "Heatmap")
        self.tabs.addTab(scroll, "Activations")

        self.legend_label = QLabel()
        self.legend_label.setToolTip("Heatmap colours: 0 = no evidence, 1 = the map's maximum")
        scores = QHBoxLayout()
        scores.addWidget(self.score_label, 1)
        scores.addWidget(QLabel("0"))
        scores.addWidget(self.legend_label)
        scores.addWidget(QLabel("1"))

        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addLayout(settings)
        lay.addLayout(scores)
        lay.addWidget(self.tabs, 1)
        lay.addWidget(self.status_label)

        self.prev_button.clicked.connect(lambda: self._step(-1))
        self.next_button.clicked.connect(lambda: self._step(1))
        self.method_combo.currentIndexChanged.connect(lambda _i: self.request())
        self.target_combo.currentIndexChanged.connect(lambda _i: self.request())
        self.layer_combo.currentIndexChanged.connect(lambda _i: self.request())
        self.opacity_slider.valueChanged.connect(
            lambda v: self.view.heat_item.setOpacity(v / 100.0)
        )
        self.view.heat_item.setOpacity(0.5)
        self.view.double_clicked.connect(self._open_current)
        app_state.run_changed.connect(lambda _r: self._run_changed())
        app_state.image_changed.connect(lambda _i: self.request())
        app_state.project_closed.connect(self._project_closed)
        app_state.project_opened.connect(lambda _p: self._run_changed())
        self._run_changed()

    # -- inputs ------------------------------------------------------------------------
    def _image_ids(self) -> list[int]:
        project = self.app_state.project
        return project.image_ids() if project is not None else []

    def current_image(self) -> int | None:
        """The image explained: ``AppState.image_id``, else the project's first image."""
        if self.app_state.image_id is not None:
            return self.app_state.image_id
        ids = self._image_ids()
        return ids[0] if ids else None

    def _step(self, delta: int) -> None:
        ids = self._image_ids()
        if not ids:
            return
        current = self.current_image()
        i = ids.index(current) if current in ids else 0
        self.app_state.set_image(ids[(i + delta) % len(ids)])

    def _open_current(self) -> None:
        if self._shown_image is not None:
            self.open_image.emit(self._shown_image)

    def _run_changed(self) -> None:
        """Refill the target picker for the run's task; layers arrive with the model."""
        project, run_id = self.app_state.project, self.app_state.run_id
        self._layers_for = None
        self.layer_combo.blockSignals(True)
        self.layer_combo.clear()
        self.layer_combo.addItem("deepest", None)
        self.layer_combo.blockSignals(False)
        self.target_combo.blockSignals(True)
        self.target_combo.clear()
        self._task = None
        if project is not None and run_id is not None:
            run = RunStore(project).get(run_id)
            self._task = run.task
            if run.task == "landmarks":
                self.target_combo.addItem("all points", None)
                tid = run.config.get("template_id")
                if tid is not None:
                    for i, name in enumerate(project.template(tid).points):
                        self.target_combo.addItem(f"point: {name}", i)
            elif run.task in ("classify", "segment"):
                self.target_combo.addItem("predicted class", None)
                for i, c in enumerate(project.classes()):
                    self.target_combo.addItem(c.name, i)
            else:
                self.target_combo.addItem("class-agnostic", None)
        self.target_combo.setEnabled(self._task in TARGETED_TASKS)
        self.target_combo.blockSignals(False)
        model = cast(QStandardItemModel, self.method_combo.model())  # QComboBox's default model
        targeted = self._task in TARGETED_TASKS or self._task is None
        for row, (_text, key) in enumerate(METHOD_ITEMS):
            model.item(row).setEnabled(targeted or key == "eigencam")
        if not targeted:
            self.method_combo.blockSignals(True)
            self.method_combo.setCurrentIndex(self.method_combo.findData("eigencam"))
            self.method_combo.blockSignals(False)
        self.request()

    def _project_closed(self) -> None:
        self._pending = None
        self._cache.clear()
        self._clear("No project open.")

    def _clear(self, text: str) -> None:
        self.result = None
        self._shown_image = None
        self.view.image_item.setPixmap(QPixmap())
        self.view.heat_item.setPixmap(QPixmap())
        self.activation_label.clear()
        self.filters_label.clear()
        self.score_label.setText("")
        self.image_label.setText("")
        self.status_label.setText(text)

    # -- background work ---------------------------------------------------------------
    def request(self) -> None:
        """Ask for a heatmap of the current settings (computed when the view is visible)."""
        project, run_id = self.app_state.project, self.app_state.run_id
        image_id = self.current_image()
        if project is None or run_id is None or image_id is None:
            self._pending = None
            self._clear(
                "Choose a trained run to explain." if project is not None else "No project open."
            )
            return
        if not self.isVisible():
            self._dirty = True
            return
        self._dirty = False
        self._seq += 1
        req = _Request(
            self._seq, project.root, run_id, image_id, project.image_path(image_id),
            self.method_combo.currentData(), self.target_combo.currentData(),
            self.layer_combo.currentData(),
        )  # fmt: skip
        if image_id != self._shown_image and self._shown_image is not None:
            # another image's heatmap and score must not stay under this one's name
            self._clear(f"Computing the heatmap of image {image_id}…")
        self.score_label.setEnabled(False)  # greyed: the score of the previous settings
        ids = self._image_ids()
        pos = f" ({ids.index(image_id) + 1}/{len(ids)})" if image_id in ids else ""
        path = project.image(image_id).path
        self.image_label.setText(f"{path}{pos}")
        self.image_label.setToolTip(str(project.image_path(image_id)))
        if self._busy:
            self._pending = req  # replaces an older waiting request
        else:
            self._start(req)

    def _start(self, req: _Request) -> None:
        self._busy = True
        self.status_label.setText("Computing…")
        cache = self._cache
        job = BackgroundJob(
            lambda _token, _progress: _compute(req, cache), context=self, needs_ml=True
        )
        job.succeeded.connect(self._done)
        job.failed.connect(lambda _kind, msg, r=req: self._failed(r, msg))
        job.start(self._pool)

    def _next(self) -> bool:
        self._busy = False
        if self._pending is not None:
            req, self._pending = self._pending, None
            self._start(req)
            return True
        return False

    def _failed(self, req: _Request, message: str) -> None:
        if self._next():
            return
        text = f"Cannot explain run {req.run_id} on image {req.image_id}: {message}"
        self.status_label.setText(text)
        self.message.emit(text)

    def _done(self, result: dict[str, Any]) -> None:
        req: _Request = result["request"]
        if self._next() or req.seq != self._seq or req.run_id != self.app_state.run_id:
            return  # superseded
        self._show(result)

    # -- display -----------------------------------------------------------------------
    def _show(self, result: dict[str, Any]) -> None:
        req: _Request = result["request"]
        hm = result["heatmap"]
        if self._layers_for != req.run_id:
            self._layers_for = req.run_id
            self.layer_combo.blockSignals(True)
            self.layer_combo.clear()
            for name in result["layers"]:
                self.layer_combo.addItem(name, name)
            self.layer_combo.setCurrentIndex(self.layer_combo.findData(hm.layer))
            self.layer_combo.blockSignals(False)
        new_image = req.image_id != self._shown_image
        self.result = result
        self._shown_image = req.image_id
        self.view.image_item.setPixmap(QPixmap.fromImage(_qimage(result["rgb"])))
        self.view.heat_item.setPixmap(QPixmap.fromImage(_qimage(result["overlay"])))
        self.view.heat_item.setPos(QPointF(0, 0))
        if new_image:
            self.view.fit()
        if self.legend_label.pixmap().isNull():
            self.legend_label.setPixmap(QPixmap.fromImage(_qimage(result["legend"])))
        if result["members"]:
            self._show_member_note(req.run_id, result["members"])
        else:
            self._show_maps(result)
        self.score_label.setText(self._score_text(result))
        self.score_label.setEnabled(True)
        self.status_label.setText(f"Computed in {result['seconds']:.2f} s")
        self.explained.emit()

    def _show_member_note(self, run_id: int, members: list[int]) -> None:
        """An ensemble has no feature maps or filters of its own: say which runs have."""
        self.activation_label.clear()
        self.filters_label.clear()
        names = ", ".join(f"#{m}" for m in members)
        self.activation_title.setText(
            f"Run {run_id} is an ensemble of runs {names}: its heatmap is the mean of theirs, "
            "but feature maps and filters belong to one network. Pick one of its members in "
            "the run picker to see them."
        )
        self.filters_title.setText("")

    def _show_maps(self, result: dict[str, Any]) -> None:
        hm = result["heatmap"]
        self.activation_label.setPixmap(QPixmap.fromImage(_qimage(result["activations"])))
        self.filters_label.setPixmap(QPixmap.fromImage(_qimage(result["filters"])))
        self.activation_title.setText(
            f"{hm.layer}: the {result['n_maps']} feature maps with the highest mean activation "
            "(each scaled to its own range, white = high)"
        )
        self.filters_title.setText(
            f"First convolution: {result['n_filters']} RGB filters (grey = 0, bright/dark = ± weight)"
        )

    def _score_text(self, result: dict[str, Any]) -> str:
        hm = result["heatmap"]
        title = dict((k, t) for t, k in METHOD_ITEMS)[hm.method].split(" (")[0]
        where = f"{title} at {hm.layer}"
        if result["members"]:
            where += f" · mean of {len(result['members'])} members"
        task = result["task"]
        if task not in TARGETED_TASKS:
            return f"{where} · class-agnostic (main component of the stage's feature maps)"
        if task == "landmarks":
            if hm.target is None:
                return f"{where} · all points · sum of heatmap peaks {hm.score:.3f}"
            name = self.target_combo.itemText(self.target_combo.findData(hm.target))
            return f"{where} · {name} · heatmap peak {hm.score:.3f}"
        project = self.app_state.project
        classes = project.classes() if project is not None else []
        name = (
            classes[hm.target].name if hm.target is not None and hm.target < len(classes) else "?"
        )
        chosen = "predicted: " if self.target_combo.currentData() is None else ""
        if task == "classify":
            logit = "log mean p" if result["members"] else "logit"  # an ensemble averages p
            return f"{where} · {chosen}{name} · {logit} {hm.score:.3f} · p = {hm.probability:.3f}"
        return f"{where} · {chosen}{name} · mean logit over its predicted region {hm.score:.3f}"

    # -- lifecycle ---------------------------------------------------------------------
    def showEvent(self, event) -> None:
        super().showEvent(event)
        if self._dirty:
            self.request()

    def shutdown(self) -> None:
        """Drop waiting requests, wait for the running one, free the model."""
        self._pending = None
        self._pool.waitForDone()
        self._cache.clear()
