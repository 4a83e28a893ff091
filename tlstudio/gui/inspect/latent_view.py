"""Latent space of a trained run: every image as one point of a 2-D projection (PCA,
t-SNE or UMAP) of the run model's features, coloured by label, prediction, split or
right/wrong; hover shows a thumbnail, a click opens the image, a lasso selects points
and tags them all as one undoable step.

Feature extraction, projection and the colouring facts (labels, predictions) run as
:class:`~tlstudio.gui.workers.jobs.BackgroundJob` s in a two-thread pool of this view
(:mod:`.latent_jobs`); the plot's items are in :mod:`.latent_scatter`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pyqtgraph as pg  # type: ignore[import-untyped]  # no stubs or py.typed
from PySide6.QtCore import QEvent, QObject, QPoint, QPointF, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QKeySequence, QMouseEvent, QPixmap, QShortcut
from PySide6.QtWidgets import (
    QComboBox,
    QFrame,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from tlstudio.core.commands import CommandGroup, SetTags
from tlstudio.gui.inspect.latent_jobs import LatentResult, compute_latent, read_facts
from tlstudio.gui.inspect.latent_scatter import AtlasScatter, LassoViewBox, points_in_polygon
from tlstudio.gui.state import AppState
from tlstudio.gui.workers.jobs import BackgroundJob, job_pool
from tlstudio.gui.workers.thumbnails import ProjectThumbnails

if TYPE_CHECKING:
    from tlstudio.ml.embed import PointFacts

METHODS = (("PCA", "pca"), ("t-SNE", "tsne"), ("UMAP", "umap"))
COLOUR_MODES = (
    ("Label", "label"),
    ("Prediction", "prediction"),
    ("Split", "split"),
    ("Error", "error"),
    ("Domain", "domain"),
)
# colours of the domains, in name order (Tableau 10 without the split colours' blue)
DOMAIN_COLOURS = ("#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#9c755f",
                  "#4e79a7", "#f28e2b", "#59a14f", "#bab0ac")  # fmt: skip
GREY = "#b4b9c0"
SPLIT_COLOURS = {"train": "#4e79a7", "val": "#f28e2b", "test": "#59a14f", "": GREY}
OUTCOME_COLOURS = {
    "right": "#59a14f",
    "wrong": "#e15759",
    "high error": "#e15759",
    "normal": "#4e79a7",
    "": GREY,
}
HOVER_RADIUS_PX = 7.0  # how far (screen pixels) from a point the cursor still hits it


# ----------------------------------------------------------------------------- the view


class LatentView(QWidget):
    """2-D map of a run's latent space (Inspect mode, tab "Latent space")."""

    message = Signal(str)  # status-bar text
    open_image = Signal(int)  # show this image in the Label canvas
    computed = Signal()  # a projection is on screen
    _umap_used = False  # UMAP ran once in this process (its JIT compilation is done)
    selection_changed = Signal(int)  # number of selected points

    def __init__(self, app_state: AppState, parent: QWidget | None = None):
        super().__init__(parent)
        self.app_state = app_state
        # two threads: a long projection must not hold up label updates
        self._pool = job_pool(self, 2, "latent view")
        self._job: BackgroundJob | None = None
        self._facts_job: BackgroundJob | None = None
        self._result: LatentResult | None = None
        self._selected = np.zeros(0, dtype=bool)
        self._cats = np.zeros(0, dtype=np.int64)
        self._palette: list[tuple[str, str]] = []  # (name, "#rrggbb") per category
        self._hover_index: int | None = None
        self._hover_key: str | None = None
        self._thumbs = ProjectThumbnails(app_state, icon_size=112, parent=self)
        self._thumbs.thumbnail_ready.connect(self._thumbnail_ready)

        self.method_combo = QComboBox()
        for text, key in METHODS:
            self.method_combo.addItem(text, key)
        self.method_combo.setItemData(
            2,
            "UMAP (umap-learn); its first use in a session compiles for 20–60 s",
            Qt.ItemDataRole.ToolTipRole,
        )
        self.colour_combo = QComboBox()
        for text, key in COLOUR_MODES:
            self.colour_combo.addItem(text, key)
        self.colour_combo.setToolTip(
            "Label: the image's class. Prediction: the run's stored prediction. Split: "
            "train/val/test. Error: predictions that are right or wrong (autoencoders: "
            "the 10 % highest reconstruction errors). Domain: the site, scanner or batch "
            "each image comes from, so a shift between domains shows as separate clouds."
        )
        self.compute_button = QPushButton("Compute")
        self.compute_button.setToolTip(
            "Compute features of every image with the run's model and project them to 2-D"
        )
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(180)
        self.progress.setTextVisible(True)
        self.progress.hide()
        self.lasso_button = QPushButton("Lasso")
        self.lasso_button.setCheckable(True)
        self.lasso_button.setToolTip(
            "Drag to draw a lasso around points (or drag with Shift at any time); "
            "Ctrl adds to the selection; Esc clears it"
        )
        self.selected_label = QLabel("0 selected")
        self.label_button = QPushButton("Label selection as")
        self.label_button.setToolTip("Tag every selected image with this class (one undo step)")
        self.class_combo = QComboBox()
        self.class_combo.setMinimumContentsLength(10)

        top = QHBoxLayout()  # computing on the first row, selecting on the second: each
        top.addWidget(QLabel("Method:"))  # fits a laptop's width
        top.addWidget(self.method_combo)
        top.addWidget(QLabel("Colour by:"))
        top.addWidget(self.colour_combo)
        top.addWidget(self.compute_button)
        top.addWidget(self.cancel_button)
        top.addWidget(self.progress)
        top.addStretch(1)
        select_row = QHBoxLayout()
        select_row.addWidget(self.lasso_button)
        select_row.addWidget(self.selected_label)
        select_row.addWidget(self.label_button)
        select_row.addWidget(self.class_combo)
        select_row.addStretch(1)

        self.viewbox = LassoViewBox(self._clicked, self._lassoed, self.lasso_button.isChecked)
        self.plot = pg.PlotWidget(viewBox=self.viewbox, background="w")
        self.plot.setObjectName("latentPlot")
        self.plot.hideAxis("left")
        self.plot.hideAxis("bottom")
        self.plot.setMenuEnabled(False)
        self.plot.hideButtons()
        self.scatter = AtlasScatter(
            pxMode=True, useCache=True, size=8, pen=pg.mkPen(0, 0, 0, 70), antialias=True
        )
        self.plot.addItem(self.scatter)
        self.plot.viewport().installEventFilter(self)
        self.title_label = QLabel("")
        self.title_label.setObjectName("latentTitle")
        self.title_label.setWordWrap(True)  # long titles wrap instead of widening the view
        self.hint_label = QLabel("")
        self.hint_label.setWordWrap(True)
        self.hint_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.hint_label.setStyleSheet("color: #5b6470; font-size: 13px;")
        self.legend_label = QLabel("")
        self.legend_label.setObjectName("latentLegend")
        self.legend_label.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.legend_label.setMinimumWidth(150)
        self.legend_label.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Preferred)

        middle = QHBoxLayout()
        plot_column = QVBoxLayout()
        plot_column.addWidget(self.title_label)
        plot_column.addWidget(self.hint_label)
        plot_column.addWidget(self.plot, 1)
        middle.addLayout(plot_column, 1)
        middle.addWidget(self.legend_label)
        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addLayout(select_row)
        lay.addLayout(middle, 1)

        # hover popup: thumbnail and caption near the cursor, above the plot
        self.popup = QFrame(self)
        self.popup.setObjectName("latentHover")
        self.popup.setFrameShape(QFrame.Shape.StyledPanel)
        self.popup.setStyleSheet(
            "#latentHover { background: #ffffff; border: 1px solid #9aa1aa; border-radius: 4px; }"
        )
        self.popup_image = QLabel()
        self.popup_image.setFixedSize(112, 112)
        self.popup_image.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.popup_text = QLabel()
        pl = QVBoxLayout(self.popup)
        pl.setContentsMargins(4, 4, 4, 4)
        pl.addWidget(self.popup_image, 0, Qt.AlignmentFlag.AlignHCenter)
        pl.addWidget(self.popup_text)
        self.popup.hide()
        self.popup.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)

        self._facts_timer = QTimer(self)
        self._facts_timer.setSingleShot(True)
        self._facts_timer.setInterval(150)
        self._facts_timer.timeout.connect(self._refresh_facts)

        self.lasso_button.toggled.connect(
            lambda on: self.plot.viewport().setCursor(
                Qt.CursorShape.CrossCursor if on else Qt.CursorShape.ArrowCursor
            )
        )
        self.compute_button.clicked.connect(self.compute)
        self.cancel_button.clicked.connect(self.cancel)
        self.colour_combo.currentIndexChanged.connect(lambda _i: self._recolour())
        self.label_button.clicked.connect(self.label_selection)
        self.plot.scene().sigMouseMoved.connect(self._mouse_moved)
        esc = QShortcut(QKeySequence(Qt.Key.Key_Escape), self)
        esc.activated.connect(self.clear_selection)
        esc.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)  # not the whole window
        app_state.run_changed.connect(self._run_changed)
        app_state.project_opened.connect(lambda _p: self._project_changed())
        app_state.project_closed.connect(self._project_changed)
        app_state.data_changed.connect(self._facts_timer.start)
        app_state.data_changed.connect(self._refresh_classes)
        app_state.predictions_changed.connect(self._facts_timer.start)
        self._project_changed()

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        if (
            event.type() == QEvent.Type.MouseButtonPress
            and isinstance(event, QMouseEvent)
            and obj is self.plot.viewport()
        ):
            self.viewbox.press_modifiers = event.modifiers()
        return super().eventFilter(obj, event)

    # -- public ---------------------------------------------------------------------------
    @property
    def image_ids(self) -> list[int]:
        """Ids of the plotted images, in point order."""
        return [] if self._result is None else [int(i) for i in self._result.image_ids]

    @property
    def coordinates(self) -> np.ndarray:
        """N×2 data coordinates of the plotted points (ViewBox 'view' frame)."""
        return np.zeros((0, 2), np.float32) if self._result is None else self._result.xy

    @property
    def selected_ids(self) -> list[int]:
        """Ids of the lasso-selected images."""
        if self._result is None:
            return []
        return [int(i) for i in self._result.image_ids[self._selected]]

    def is_busy(self) -> bool:
        return self._job is not None

    def compute(self) -> None:
        """Start embedding + projection of the current run with the chosen method."""
        project, run_id = self.app_state.project, self.app_state.run_id
        if project is None or run_id is None or self._job is not None:
            return
        method = self.method_combo.currentData()
        embedding = None
        last = self._result
        if (
            last is not None
            and last.run_id == run_id
            and last.features.image_ids == project.image_ids()
        ):
            embedding = last.features  # same run and images: only project again
        root = project.root
        job = BackgroundJob(
            lambda token, progress: compute_latent(
                root, run_id, method, embedding, token, progress
            ),
            context=self,
            needs_ml=True,
        )
        job.progressed.connect(self._progressed)
        job.succeeded.connect(self._computed)
        job.failed.connect(self._compute_failed)
        job.cancelled.connect(self._compute_cancelled)
        self._job = job.start(self._pool)
        self.compute_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress.setRange(0, 0)
        self.progress.setFormat("Starting…")
        self.progress.show()
        self.message.emit(f"Computing the {self.method_combo.currentText()} latent space…")

    def cancel(self) -> None:
        if self._job is not None:
            self._job.cancel()
            self.progress.setFormat("Cancelling…")
            self.message.emit("Cancelling (a running projection finishes its fit first)…")

    def clear_selection(self) -> None:
        if self._selected.any():
            self._set_selection(np.zeros_like(self._selected))

    def label_selection(self) -> None:
        """Tag every selected image with the class in the combo: one undo step; a
        multi-label project adds the class, a single-label one replaces the tags."""
        project = self.app_state.project
        class_id = self.class_combo.currentData()
        ids = self.selected_ids
        if project is None or class_id is None or not ids:
            self.message.emit("Select points with the lasso first")
            return
        name = project.class_info(class_id).name
        commands = []
        for image_id in ids:
            old = project.tags(image_id)
            new = tuple(sorted({*old, class_id})) if project.multi_label else (class_id,)
            if set(new) != set(old):
                commands.append(SetTags(image_id, new, f"Tag as {name}"))
        if not commands:
            self.message.emit(f"All {len(ids)} selected images are already tagged {name}")
            return
        n = len(commands)
        self.app_state.push(
            CommandGroup(commands, f"Tag {n} image{'s' if n != 1 else ''} as {name}")
        )
        self.message.emit(f"Tagged {n} image{'s' if n != 1 else ''} as {name}")

    def shutdown(self) -> None:
        """Cancel background work and wait for it (a running t-SNE/UMAP fit finishes)."""
        for job in (self._job, self._facts_job):
            if job is not None:
                job.cancel()
        self._thumbs.shutdown()
        self._pool.waitForDone()

    # -- jobs -----------------------------------------------------------------------------
    def _progressed(self, done: int, total: int, stage: str) -> None:
        if stage == "projection" or total <= 0:
            self.progress.setRange(0, 0)
            method = self.method_combo.currentText()
            first = method == "UMAP" and not LatentView._umap_used
            self.progress.setFormat(
                "UMAP… (first use compiles, 20–60 s)" if first else f"{method}…"
            )
        else:
            self.progress.setRange(0, total)
            self.progress.setValue(done)
            self.progress.setFormat("Features %v/%m")

    def _finish_job(self) -> None:
        self._job = None
        self.compute_button.setEnabled(self.app_state.run_id is not None)
        self.cancel_button.setEnabled(False)
        self.progress.hide()

    def _computed(self, result: LatentResult) -> None:
        self._finish_job()
        if result.run_id != self.app_state.run_id:
            return  # the user picked another run meanwhile
        self._result = result
        if result.method == "umap":
            LatentView._umap_used = True
        self._selected = np.zeros(len(result.image_ids), dtype=bool)
        n = len(result.image_ids)
        self.scatter.clear()  # so the size change re-renders no old points
        self.scatter.setSize(10 if n < 500 else 7 if n < 5000 else 5)
        self._hint("")
        method = dict((k, t) for t, k in METHODS)[result.method]
        what = {
            "backbone": "pooled backbone features",
            "latent": "autoencoder latents",
            "stored latent": "autoencoder latents",
        }.get(result.source, result.source)
        self.title_label.setText(
            f"{method} of {n} images · {what} of run #{result.run_id} "
            f"({result.features.features.shape[1]} dimensions)"
        )
        self._recolour(autorange=True)
        self._update_selection_label()
        self.message.emit(f"{method} latent space of {n} images ready")
        self.computed.emit()

    def _compute_cancelled(self) -> None:
        self._finish_job()
        self.message.emit("Latent space cancelled")

    def _compute_failed(self, _kind: str, message: str) -> None:
        self._finish_job()
        self._hint(f"Could not compute the latent space: {message}")
        self.message.emit(f"Latent space failed: {message}")

    def _refresh_facts(self) -> None:
        project = self.app_state.project
        if project is None or self._result is None:
            return
        if self._facts_job is not None:
            self._facts_timer.start()  # one at a time; try again shortly
            return
        root, run_id, ids = project.root, self._result.run_id, self.image_ids
        job = BackgroundJob(
            lambda _token, _progress: read_facts(root, run_id, ids), context=self, needs_ml=True
        )
        job.succeeded.connect(self._facts_ready)
        job.finished.connect(lambda: setattr(self, "_facts_job", None))
        self._facts_job = job.start(self._pool)

    def _facts_ready(self, facts) -> None:
        self._facts_job = None
        if self._result is not None and facts.image_ids == self.image_ids:
            self._result.facts = facts
            self._recolour()

    # -- state ----------------------------------------------------------------------------
    def _project_changed(self) -> None:
        self._refresh_classes()
        self._run_changed(self.app_state.run_id)

    def _refresh_classes(self) -> None:
        project = self.app_state.project
        current = self.class_combo.currentData()
        self.class_combo.blockSignals(True)
        self.class_combo.clear()
        for c in project.classes() if project is not None else []:
            self.class_combo.addItem(c.name, c.id)
        index = self.class_combo.findData(current)
        self.class_combo.setCurrentIndex(max(index, 0))
        self.class_combo.blockSignals(False)
        self._update_selection_label()

    def _run_changed(self, run_id: object) -> None:
        if self._job is not None:
            self._job.cancel()
        self._result = None
        self._selected = np.zeros(0, dtype=bool)
        self.scatter.clear()
        self.legend_label.setText("")
        self.title_label.setText("")
        self.popup.hide()
        self._update_selection_label()
        has_run = self.app_state.project is not None and run_id is not None
        self.compute_button.setEnabled(has_run and self._job is None)
        if has_run:
            self._hint(
                "Press Compute to map every image by what the model sees: nearby points "
                "look alike to the model."
            )
        else:
            self._hint("No run chosen: train a model, then pick it in the run list above.")

    def _hint(self, text: str) -> None:
        self.hint_label.setText(text)
        self.hint_label.setVisible(bool(text))

    # -- colours --------------------------------------------------------------------------
    def _categories(self, facts: PointFacts) -> tuple[np.ndarray, list[tuple[str, str]]]:
        """Category index per point and (name, colour) per category."""
        mode = self.colour_combo.currentData()
        if mode in ("label", "prediction"):
            values = facts.label if mode == "label" else facts.predicted
            classes = self.app_state.project.classes() if self.app_state.project else []
            palette = [(c.name, c.color) for c in classes]
            none = "unlabelled" if mode == "label" else "no prediction"
            palette.append((none, GREY))
            class_index = {c.id: i for i, c in enumerate(classes)}
            cats = [class_index.get(int(v), len(classes)) for v in values]
            return np.array(cats, dtype=np.int64), palette
        if mode == "domain":  # the shift made visible: one colour per domain
            values = facts.domain if facts.domain is not None else np.full(len(facts.split), "")
            domains = sorted({str(v) for v in values if v})
            palette = [(d, DOMAIN_COLOURS[i % len(DOMAIN_COLOURS)]) for i, d in enumerate(domains)]
            palette.append(("no domain", GREY))
            domain_index = {d: i for i, d in enumerate(domains)}
            cats = [domain_index.get(str(v), len(domains)) for v in values]
            return np.array(cats, np.int64), palette
        if mode == "split":
            names = ["train", "val", "test", ""]
            palette = [(n or "no split", SPLIT_COLOURS[n]) for n in names]
            split_index = {n: i for i, n in enumerate(names)}
            cats = [split_index.get(s, 3) for s in facts.split]
            return np.array(cats, dtype=np.int64), palette
        names = ["right", "wrong", "high error", "normal", ""]
        palette = [(n or "no prediction / no label", OUTCOME_COLOURS[n]) for n in names]
        outcome_index = {n: i for i, n in enumerate(names)}
        cats = [outcome_index.get(s, 4) for s in facts.outcome]
        return np.array(cats, dtype=np.int64), palette

    def _recolour(self, autorange: bool = False) -> None:
        if self._result is None:
            return
        self._cats, self._palette = self._categories(self._result.facts)
        counts = np.bincount(self._cats, minlength=len(self._palette))
        rows = [
            f'<tr><td style="color:{colour}; font-size:15px;">●</td>'
            f"<td>{name}</td><td align='right'>&nbsp;{counts[i]}</td></tr>"
            for i, (name, colour) in enumerate(self._palette)
            if counts[i]
        ]
        mode = self.colour_combo.currentText()
        self.legend_label.setText(f"<b>{mode}</b><table>{''.join(rows)}</table>")
        xy = self._result.xy
        self.scatter.set_points(xy[:, 0], xy[:, 1], *self._styles())
        if autorange:
            self.viewbox.autoRange(padding=0.05)

    def _styles(self) -> tuple[np.ndarray, list]:
        """(style index per point, brush per style): the category colours, and when
        points are selected, faded copies for the unselected ones (index + K)."""
        full = [pg.mkBrush(c) for _, c in self._palette]
        if not self._selected.any():
            return self._cats, full
        faded = []
        for _, c in self._palette:
            q = QColor(c)
            q.setAlpha(50)
            faded.append(pg.mkBrush(q))
        return np.where(self._selected, self._cats, self._cats + len(full)), full + faded

    # -- pointer --------------------------------------------------------------------------
    def _nearest(self, scene_pos: QPointF) -> int | None:
        """Index of the point nearest ``scene_pos`` within HOVER_RADIUS_PX, or None."""
        if self._result is None or len(self._result.xy) == 0:
            return None
        view = self.viewbox.mapSceneToView(scene_pos)
        px, py = self.viewbox.viewPixelSize()  # data units per screen pixel
        if px <= 0 or py <= 0:
            return None
        xy = self._result.xy
        d2 = ((xy[:, 0] - view.x()) / px) ** 2 + ((xy[:, 1] - view.y()) / py) ** 2
        i = int(np.argmin(d2))
        return i if d2[i] <= HOVER_RADIUS_PX**2 else None

    def _clicked(self, scene_pos: QPointF, modifiers) -> None:
        i = self._nearest(scene_pos)
        if i is not None and self._result is not None:  # a point implies a result
            image_id = int(self._result.image_ids[i])
            self.message.emit(f"Opening image {image_id}")
            self.open_image.emit(image_id)

    def _lassoed(self, polygon: np.ndarray, modifiers) -> None:
        if self._result is None or len(polygon) < 3:
            return
        inside = points_in_polygon(self._result.xy.astype(np.float64), polygon)
        if modifiers & Qt.KeyboardModifier.ControlModifier:
            inside |= self._selected
        self._set_selection(inside)

    def _set_selection(self, mask: np.ndarray) -> None:
        self._selected = mask
        self.scatter.set_categories(*self._styles())
        self._update_selection_label()
        self.selection_changed.emit(int(mask.sum()))

    def _update_selection_label(self) -> None:
        n = int(self._selected.sum())
        self.selected_label.setText(f"{n} selected")
        self.label_button.setEnabled(n > 0 and self.class_combo.count() > 0)

    def _mouse_moved(self, scene_pos: QPointF) -> None:
        i = self._nearest(scene_pos)
        if i is None:
            self._hover_index = None
            self._hover_key = None
            self.popup.hide()
            return
        if i != self._hover_index:
            self._hover_index = i
            self._fill_popup(i)
        pos = self.plot.mapFromScene(scene_pos)
        at = self.plot.viewport().mapTo(self, QPoint(pos.x(), pos.y()))
        self.popup.adjustSize()
        x = at.x() + 16
        y = at.y() + 16
        if x + self.popup.width() > self.width():
            x = at.x() - 16 - self.popup.width()
        if y + self.popup.height() > self.height():
            y = at.y() - 16 - self.popup.height()
        self.popup.move(max(0, x), max(0, y))
        self.popup.show()
        self.popup.raise_()

    def _fill_popup(self, i: int) -> None:
        project = self.app_state.project
        if project is None or self._result is None:
            return
        image_id = int(self._result.image_ids[i])
        rec = project.image(image_id)
        cat = self._palette[self._cats[i]][0] if len(self._cats) > i else ""
        self.popup_text.setText(f"{rec.name}\n{self.colour_combo.currentText()}: {cat}")
        self._hover_key = rec.sha256
        icon = self._thumbs.icon(rec.sha256, project.image_path(rec))
        if icon is None:
            self.popup_image.setPixmap(QPixmap())
            self.popup_image.setText("loading…")
        else:
            self.popup_image.setPixmap(icon.pixmap(112, 112))

    def _thumbnail_ready(self, key: str) -> None:
        if key == self._hover_key and self._hover_index is not None:
            self._fill_popup(self._hover_index)
