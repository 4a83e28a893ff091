"""Metrics of the inspected run on a split: summary figures, confusion matrix with the
images behind each cell, a sortable per-class table, precision-recall curves and the
k-fold mean ± std of a cross-validation experiment.

"Evaluate" runs :func:`tlstudio.ml.evaluation.evaluate_run` in a private one-thread
pool (the worker opens its own :class:`~tlstudio.core.project.Project`); results are
kept in memory per (run, split) until the labels change.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QObject,
    Qt,
    QThreadPool,
    Signal,
)
from PySide6.QtGui import QColor, QFont, QGuiApplication, QStandardItem, QStandardItemModel
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFileDialog,
    QFrame,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QSplitter,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from tlstudio.gui.state import AppState
from tlstudio.ml.callbacks import CancelToken

if TYPE_CHECKING:  # pragma: no cover
    from tlstudio.ml.evaluation import Evaluation, ImageRecord

#: summary keys shown as big figures, per task (the rest go into the notes line)
CARD_KEYS = {
    "classify": ("accuracy", "balanced_accuracy", "f1_macro", "roc_auc", "images"),
    "classify_multi": ("f1_macro", "f1_micro", "subset_accuracy", "roc_auc", "images"),
    "detect": ("map50", "map", "map75", "mean_iou", "images"),
    "landmarks": ("nme", "pck@0.05", "pck@0.1", "mean_error_px", "images"),
    "segment": ("miou", "mdice", "pixel_accuracy", "images"),
    "autoencode": ("recon_error_mean", "recon_error_median", "recon_error_p95", "images"),
}

#: per-class column headers
COLUMN_TITLES = {
    "name": "Class",
    "precision": "Precision",
    "recall": "Recall",
    "f1": "F1",
    "ap": "AP",
    "roc_auc": "ROC-AUC",
    "support": "Images",
    "predicted": "Predicted",
    "ap50": "AP@.5",
    "ap75": "AP@.75",
    "recall50": "Recall@.5",
    "num_gt": "True boxes",
    "num_pred": "Predicted boxes",
    "mean_error_px": "Mean error (px)",
    "nme": "NME",
    "count": "Visible",
    "iou": "IoU",
    "dice": "Dice",
    "gt_pixels": "True pixels",
    "pred_pixels": "Predicted pixels",
    "images": "Images",
    "mean_error": "Mean error",
    "median_error": "Median error",
    "max_error": "Largest error",
}

#: colours of the confusion matrix: correct (diagonal) and confused (off-diagonal)
DIAGONAL_RGB = (33, 102, 172)
OFF_DIAGONAL_RGB = (214, 96, 77)

SORT_ROLE = Qt.ItemDataRole.UserRole + 1
IMAGE_ID_ROLE = Qt.ItemDataRole.UserRole + 2


def format_value(key: str, value: Any) -> str:
    """A metric for display: counts as integers, pixel errors with one decimal,
    reconstruction errors with 4 significant digits, other ratios with 3 decimals,
    "—" for undefined."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, str):
        return value
    if key in ("images", "support", "predicted", "num_gt", "num_pred", "count",
               "gt_pixels", "pred_pixels"):  # fmt: skip
        return f"{int(value)}"
    if key.endswith("_px"):
        return f"{value:.1f}"
    if "error" in key:
        return f"{value:.4g}"
    return f"{value:.3f}"


def _blend(rgb: tuple[int, int, int], t: float) -> QColor:
    """White blended towards ``rgb`` by ``t`` in [0, 1]."""
    t = min(max(t, 0.0), 1.0)
    return QColor(*(round(255 + (c - 255) * t) for c in rgb))


# --------------------------------------------------------------------------- models


class ConfusionModel(QAbstractTableModel):
    """C×C counts (rows = true class, columns = predicted class); a cell's colour
    intensity is its share of the row (blue on the diagonal, red off it)."""

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.matrix: list[list[int]] = []
        self.names: list[str] = []

    def set_matrix(self, matrix: Any, names: list[str]) -> None:
        self.beginResetModel()
        self.matrix = [] if matrix is None else [[int(v) for v in row] for row in matrix]
        self.names = list(names) if matrix is not None else []
        self.endResetModel()

    def rowCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.matrix)

    def columnCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.matrix)

    def data(self, index: QModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        i, j = index.row(), index.column()
        count = self.matrix[i][j]
        row_total = sum(self.matrix[i])
        share = count / row_total if row_total else 0.0
        if role == Qt.ItemDataRole.DisplayRole:
            return str(count)
        if role == Qt.ItemDataRole.BackgroundRole:
            return _blend(DIAGONAL_RGB if i == j else OFF_DIAGONAL_RGB, 0.9 * share)
        if role == Qt.ItemDataRole.ForegroundRole:
            return QColor("white") if share > 0.55 else QColor("black")
        if role == Qt.ItemDataRole.TextAlignmentRole:
            return Qt.AlignmentFlag.AlignCenter
        if role == Qt.ItemDataRole.FontRole:
            font = QFont()
            font.setPointSizeF(font.pointSizeF() * 1.2)
            font.setBold(i == j)
            return font
        if role == Qt.ItemDataRole.ToolTipRole:
            what = "correct" if i == j else f"predicted as {self.names[j]!r}"
            return (
                f"{count} image(s) of {self.names[i]!r} {what}"
                f" ({100 * share:.0f} % of {row_total}); click to list them"
            )
        return None

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = 0) -> Any:
        if role == Qt.ItemDataRole.DisplayRole and 0 <= section < len(self.names):
            return self.names[section]
        if role == Qt.ItemDataRole.ToolTipRole and 0 <= section < len(self.names):
            side = "true" if orientation == Qt.Orientation.Vertical else "predicted"
            return f"{side} class {self.names[section]!r}"
        return None


class _EvaluationJob(QObject):
    """One :func:`evaluate_run` call in a pool thread; signals arrive on the GUI thread."""

    # every signal carries the job, so the view's bound-method slots (queued onto the
    # GUI thread) know which request answered
    progressed = Signal(int, int)
    succeeded = Signal(object, object)  # job, Evaluation
    failed = Signal(object, str)  # job, message
    cancelled = Signal(object)  # job

    def __init__(self, root: str, run_id: int, split: str):
        super().__init__()
        self.root, self.run_id, self.split = root, run_id, split
        self.token = CancelToken()

    def run(self) -> None:
        from tlstudio.core.project import Project
        from tlstudio.ml.evaluation import EvaluationCancelled, evaluate_run

        try:
            project = Project.open(self.root)
        except Exception as exc:  # reported, never raised in a pool thread
            self._emit(self.failed, self, str(exc))
            return
        try:
            ev = evaluate_run(
                project, self.run_id, self.split,
                progress=lambda d, t: self._emit(self.progressed, d, t), token=self.token,
            )  # fmt: skip
        except EvaluationCancelled:
            self._emit(self.cancelled, self)
        except Exception as exc:
            self._emit(self.failed, self, f"{exc}" or type(exc).__name__)
        else:
            self._emit(self.succeeded, self, ev)
        finally:
            project.close()

    @staticmethod
    def _emit(signal: Any, *args: Any) -> None:
        try:
            signal.emit(*args)
        except RuntimeError:  # the view is gone (application shutting down)
            pass


# --------------------------------------------------------------------------- view


class MetricsView(QWidget):
    """Evaluate the inspected run on a split and show what it gets right and wrong."""

    message = Signal(str)
    open_image = Signal(int)
    evaluated = Signal(object)  # the Evaluation now shown (after a run or from the cache)

    def __init__(self, app_state: AppState, parent: QWidget | None = None):
        super().__init__(parent)
        self.app_state = app_state
        self.evaluation: Evaluation | None = None
        self._cache: dict[tuple[int, str], Evaluation] = {}
        self._job: _EvaluationJob | None = None
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(1)
        self._plot: Any = None
        self._cv: dict[str, tuple[float, float]] = {}
        self._cv_runs: list[int] = []

        # -- controls
        self.split_combo = QComboBox()
        self.split_combo.setObjectName("metricsSplitCombo")
        for split in ("val", "test", "train"):
            self.split_combo.addItem(split, split)
        self.split_combo.setToolTip("The split whose labelled images are evaluated")
        self.evaluate_button = QPushButton("Evaluate")
        self.evaluate_button.setObjectName("metricsEvaluateButton")
        self.evaluate_button.setToolTip("Run the model over the split and measure it")
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(220)
        self.progress.setFormat("%v / %m images")
        self.progress.hide()
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.hide()
        self.copy_button = QPushButton("Copy")
        self.copy_button.setToolTip("Copy the per-class table, as sorted, as tab-separated text")
        self.export_button = QPushButton("Export CSV…")
        self.export_button.setToolTip("Save the summary, per-class table and confusion matrix")
        top = QHBoxLayout()
        top.addWidget(QLabel("Split:"))
        top.addWidget(self.split_combo)
        top.addWidget(self.evaluate_button)
        top.addWidget(self.progress)
        top.addWidget(self.cancel_button)
        top.addStretch(1)
        top.addWidget(self.copy_button)
        top.addWidget(self.export_button)

        self.status_label = QLabel()
        self.status_label.setObjectName("metricsStatus")
        self.status_label.setWordWrap(True)
        self.notes_label = QLabel()
        self.notes_label.setWordWrap(True)
        self.notes_label.setStyleSheet("color: #5f6368;")

        # -- summary cards
        self.cards_host = QWidget()
        self.cards_layout = QHBoxLayout(self.cards_host)
        self.cards_layout.setContentsMargins(0, 0, 0, 0)
        self.cards: dict[str, tuple[QLabel, QLabel]] = {}
        self.cv_label = QLabel()
        self.cv_label.setObjectName("metricsCvLabel")
        self.cv_label.setWordWrap(True)

        # -- confusion matrix + image list
        self.confusion_model = ConfusionModel(self)
        self.confusion_table = QTableView()
        self.confusion_table.setObjectName("metricsConfusion")
        self.confusion_table.setModel(self.confusion_model)
        self.confusion_table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.confusion_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        for header in (
            self.confusion_table.horizontalHeader(),
            self.confusion_table.verticalHeader(),
        ):
            header.setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
            header.setMinimumSectionSize(36)
        # a short title: a long one sets the box's minimum width (the table says the rest)
        self.confusion_box = QGroupBox("Confusion matrix")
        axes = QLabel("Rows: true class · columns: predicted class")
        axes.setWordWrap(True)
        axes.setStyleSheet("color: #5f6368;")
        cbox = QVBoxLayout(self.confusion_box)
        cbox.addWidget(axes)
        cbox.addWidget(self.confusion_table)

        self.images_title = QLabel("Images")
        self.images_title.setWordWrap(True)
        self.image_list = QListWidget()
        self.image_list.setObjectName("metricsImageList")
        self.image_list.setToolTip("Double-click or press Enter to open an image in the Label view")
        images_box = QWidget()
        ibox = QVBoxLayout(images_box)
        ibox.setContentsMargins(0, 0, 0, 0)
        ibox.addWidget(self.images_title)
        ibox.addWidget(self.image_list)

        # -- plot and per-class table
        self.plot_box = QGroupBox("Precision-recall curves")
        self.plot_box.setLayout(QVBoxLayout())
        self.class_model = QStandardItemModel(self)
        self.class_model.setSortRole(SORT_ROLE)
        self.class_table = QTableView()
        self.class_table.setObjectName("metricsClassTable")
        self.class_table.setModel(self.class_model)
        self.class_table.setSortingEnabled(True)
        self.class_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.class_table.setAlternatingRowColors(True)
        self.class_table.verticalHeader().hide()
        self.class_table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.class_box = QGroupBox("Per class")
        QVBoxLayout(self.class_box).addWidget(self.class_table)

        self.upper = upper = QSplitter(Qt.Orientation.Horizontal)
        upper.addWidget(self.confusion_box)
        upper.addWidget(images_box)
        upper.addWidget(self.plot_box)
        upper.setStretchFactor(0, 3)
        upper.setStretchFactor(1, 2)
        upper.setStretchFactor(2, 3)
        self.body = QSplitter(Qt.Orientation.Vertical)
        self.body.addWidget(upper)
        self.body.addWidget(self.class_box)
        self.body.setStretchFactor(0, 3)
        self.body.setStretchFactor(1, 2)

        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addWidget(self.status_label)
        lay.addWidget(self.cards_host)
        lay.addWidget(self.cv_label)
        lay.addWidget(self.notes_label)
        lay.addWidget(self.body, 1)

        self.evaluate_button.clicked.connect(self.evaluate)
        self.cancel_button.clicked.connect(self.cancel)
        self.copy_button.clicked.connect(self.copy_table)
        self.export_button.clicked.connect(self.export_csv)
        self.split_combo.currentIndexChanged.connect(lambda _i: self._show_for_current())
        self.confusion_table.clicked.connect(self._cell_clicked)
        self.image_list.itemActivated.connect(self._image_activated)
        app_state.run_changed.connect(lambda _r: self._show_for_current())
        app_state.project_opened.connect(lambda _p: self._forget())
        app_state.project_closed.connect(self._forget)
        app_state.data_changed.connect(self._labels_changed)
        self._show_for_current()

    # -- public -----------------------------------------------------------------------
    @property
    def split(self) -> str:
        return str(self.split_combo.currentData())

    def set_split(self, split: str) -> None:
        """Choose the split to evaluate ("val", "test" or "train")."""
        index = self.split_combo.findData(split)
        if index < 0:
            raise ValueError(f"unknown split {split!r}")
        self.split_combo.setCurrentIndex(index)

    def is_busy(self) -> bool:
        return self._job is not None

    def evaluate(self) -> None:
        """Evaluate the current run on the chosen split in the background."""
        project, run_id = self.app_state.project, self.app_state.run_id
        if project is None or run_id is None:
            self._set_status("Pick a trained run first.", error=True)
            return
        if self._job is not None:
            return
        job = _EvaluationJob(str(project.root), int(run_id), self.split)
        job.progressed.connect(self._progressed)
        job.succeeded.connect(self._finished)
        job.failed.connect(self._failed)
        job.cancelled.connect(self._cancelled)
        self._job = job
        self._set_busy(True)
        self._set_status(f"Evaluating run #{run_id} on the {self.split} split…")
        self.message.emit(f"Evaluating run #{run_id} on the {self.split} split")
        self._pool.start(job.run)

    def cancel(self) -> None:
        if self._job is not None:
            self._job.token.cancel()
            self.cancel_button.setEnabled(False)
            self._set_status("Cancelling…")

    def shutdown(self) -> None:
        """Cancel a running evaluation and wait for its thread."""
        if self._job is not None:
            self._job.token.cancel()
        self._pool.waitForDone()

    def table_tsv(self) -> str:
        """The per-class table as shown (current sort order) as tab-separated text."""
        m = self.class_model
        rows = [[m.headerData(c, Qt.Orientation.Horizontal) for c in range(m.columnCount())]]
        for r in range(m.rowCount()):
            rows.append([m.item(r, c).text() for c in range(m.columnCount())])
        return "\n".join("\t".join(str(v) for v in row) for row in rows) + "\n"

    def copy_table(self) -> None:
        if self.evaluation is None:
            self.message.emit("Nothing to copy: evaluate the run first")
            return
        QGuiApplication.clipboard().setText(self.table_tsv())
        self.message.emit(f"Copied the per-class table ({self.class_model.rowCount()} rows)")

    def export_csv(self) -> None:
        ev = self.evaluation
        if ev is None:
            self.message.emit("Nothing to export: evaluate the run first")
            return
        start = ""
        if self.app_state.project is not None:
            start = str(self.app_state.project.root / f"run{ev.run_id}_{ev.split}_metrics.csv")
        path, _filter = QFileDialog.getSaveFileName(
            self, "Export metrics", start, "CSV files (*.csv)"
        )
        if not path:
            return
        try:
            with open(path, "w", encoding="utf-8", newline="") as f:
                f.write(ev.to_csv())
        except OSError as exc:
            self._set_status(f"Could not write {path}: {exc.strerror or exc}", error=True)
            return
        self.message.emit(f"Metrics written to {path}")

    # -- background results --------------------------------------------------------------
    def _progressed(self, done: int, total: int) -> None:
        self.progress.setMaximum(max(total, 1))
        self.progress.setValue(done)

    def _finished(self, job: _EvaluationJob, ev: Evaluation) -> None:
        self._job_done(job)
        self._cache[(job.run_id, job.split)] = ev
        if (self.app_state.run_id, self.split) == (job.run_id, job.split):
            self._show(ev)
        self.message.emit(f"Run #{job.run_id} evaluated on {len(ev.image_ids)} {job.split} images")

    def _failed(self, job: _EvaluationJob, msg: str) -> None:
        self._job_done(job)
        self._set_status(f"Evaluation failed: {msg}", error=True)
        self.message.emit(f"Evaluation failed: {msg}")

    def _cancelled(self, job: _EvaluationJob) -> None:
        self._job_done(job)
        self._set_status("Evaluation cancelled.")

    def _job_done(self, job: _EvaluationJob) -> None:
        if self._job is job:
            self._job = None
        self._set_busy(False)

    def _set_busy(self, busy: bool) -> None:
        self.evaluate_button.setEnabled(not busy)
        self.split_combo.setEnabled(not busy)
        self.progress.setVisible(busy)
        self.cancel_button.setVisible(busy)
        self.cancel_button.setEnabled(busy)
        if busy:
            self.progress.setRange(0, 0)  # busy indicator until the first count arrives

    # -- state changes -----------------------------------------------------------------
    def _forget(self) -> None:
        if self._job is not None:
            self.shutdown()
        self._cache.clear()
        self._show_for_current()

    def _labels_changed(self) -> None:
        if not self._cache:
            return
        self._cache.clear()
        if self.evaluation is not None:
            self._set_status(
                self.status_label.text() + "  Labels changed since: press Evaluate to update.",
                error=True,
            )

    def _show_for_current(self) -> None:
        run_id = self.app_state.run_id
        self._cv = self._cv_for(run_id)
        ev = self._cache.get((run_id, self.split)) if run_id is not None else None
        if ev is not None:
            self._show(ev)
            return
        self._clear()
        if self.app_state.project is None or run_id is None:
            self._set_status("No run picked: choose a trained run above.")
        elif self._job is None:
            self._set_status(
                f"Run #{run_id}: press Evaluate to measure it on the {self.split} split."
            )
        self._show_cv(None)
        self._show_fold_warning(run_id)

    def _cv_for(self, run_id: int | None) -> dict[str, tuple[float, float]]:
        project = self.app_state.project
        self._cv_runs = []
        if project is None or run_id is None:
            return {}
        from tlstudio.ml.evaluation import cv_group, cv_summary

        self._cv_runs = cv_group(project, run_id)
        return cv_summary(project, self._cv_runs) if self._cv_runs else {}

    # -- display ----------------------------------------------------------------------------
    def _set_status(self, text: str, error: bool = False) -> None:
        self.status_label.setText(text)
        self.status_label.setStyleSheet("color: #c62828;" if error else "")

    def _clear(self) -> None:
        self.evaluation = None
        self.confusion_model.set_matrix(None, [])
        self.class_model.clear()
        self.image_list.clear()
        self.images_title.setText("Images")
        self.notes_label.clear()
        self._set_cards((), {})
        if self._plot is not None:
            self._plot.clear()

    def _show(self, ev: Evaluation) -> None:
        self._clear()
        self.evaluation = ev
        multi = ev.task == "classify" and ev.confusion is None
        keys = CARD_KEYS["classify_multi" if multi else ev.task]
        self._set_cards(keys, ev.summary)
        self._show_cv(ev)
        others = [
            f"{_label(k)} {format_value(k, v)}" for k, v in ev.summary.items() if k not in keys
        ]
        notes = ([" · ".join(others)] if others else []) + ev.notes
        self.notes_label.setText("\n".join(notes))
        self._set_status(
            f"Run #{ev.run_id} ({ev.task}) on the {ev.split} split: {len(ev.image_ids)} images"
            + (f", {len(ev.excluded)} without {ev.task} labels" if ev.excluded else "")
        )
        self._show_fold_warning(ev.run_id, append=True)

        self.confusion_box.setVisible(ev.confusion is not None)
        if ev.confusion is not None:
            self.confusion_model.set_matrix(ev.confusion, ev.class_names)
            wrong = [r for r in ev.records if not r.correct]
            what = f"Misclassified images ({len(wrong)})" if wrong else "No misclassified image"
            self._list_images(wrong, f"{what}; click a cell to list its images")
        else:
            worst = sorted(ev.records, key=_badness, reverse=True)
            self._list_images(worst, f"Images, worst first ({len(worst)})")
        self._fill_class_table(ev)
        self._draw_plot(ev)
        self.evaluated.emit(ev)

    def _set_cards(self, keys: tuple[str, ...], summary: dict[str, float]) -> None:
        while self.cards_layout.count():
            item = self.cards_layout.takeAt(0)
            if item.widget() is not None:
                item.widget().deleteLater()
        self.cards = {}
        for key in keys:
            frame = QFrame()
            frame.setFrameShape(QFrame.Shape.StyledPanel)
            frame.setObjectName(f"card_{key}")
            value = QLabel(format_value(key, summary.get(key)))
            value.setObjectName("cardValue")
            font = value.font()
            font.setPointSizeF(max(font.pointSizeF(), 9.0) * 2.2)
            font.setBold(True)
            value.setFont(font)
            value.setAlignment(Qt.AlignmentFlag.AlignCenter)
            caption = QLabel(_label(key))
            caption.setAlignment(Qt.AlignmentFlag.AlignCenter)
            caption.setWordWrap(True)
            grid = QGridLayout(frame)
            grid.addWidget(value, 0, 0)
            grid.addWidget(caption, 1, 0)
            self.cards_layout.addWidget(frame, 1)
            self.cards[key] = (value, caption)
        self.cards_host.setVisible(bool(keys))

    def _show_cv(self, ev: Evaluation | None) -> None:
        if not self._cv:
            self.cv_label.hide()
            return
        k = len(self._cv_runs)
        keys = CARD_KEYS.get(ev.task if ev else "", ()) or tuple(self._cv)
        parts = [
            f"{_label(name)} {format_value(name, m)} ± {format_value(name, s)}"
            for name, (m, s) in self._cv.items()
            if name in keys or (ev is None and name not in ("train_loss", "val_loss"))
        ]
        runs = ", ".join(f"#{r}" for r in self._cv_runs)
        self.cv_label.setText(
            f"<b>{k}-fold cross-validation</b> (runs {runs}; each fold's recorded validation"
            f" metrics, mean ± std): " + (" · ".join(parts) or "no metrics recorded")
        )
        for name, (_value, caption) in self.cards.items():
            if name in self._cv:
                m, s = self._cv[name]
                caption.setText(
                    f"{_label(name)}\n{k}-fold: {format_value(name, m)} ± {format_value(name, s)}"
                )
        self.cv_label.show()

    def _show_fold_warning(self, run_id: int | None, append: bool = False) -> None:
        if run_id is None or not self._cv_runs or self.split == "test":
            return
        text = (
            f"Run #{run_id} is one fold of a k-fold experiment: it trained on images outside"
            " its fold, the stored val split included, so val/train figures are optimistic;"
            " use the test split or the k-fold mean ± std."
        )
        base = self.status_label.text() + "  " if append else ""
        self._set_status(base + text, error=True)

    def _list_images(self, records: list[ImageRecord], title: str) -> None:
        self.image_list.clear()
        self.images_title.setText(title)
        project = self.app_state.project
        for r in records:
            name = f"#{r.image_id}"
            if project is not None:
                try:
                    name = project.image(r.image_id).path.rsplit("/", 1)[-1]
                except Exception:  # image deleted since the evaluation
                    pass
            text = f"{name}: {r.true} → {r.predicted or '—'}"
            if r.score is not None:
                text += f" ({_score_text(self.evaluation, r)})"
            item = QListWidgetItem(text)
            item.setData(IMAGE_ID_ROLE, r.image_id)
            item.setToolTip("Double-click or Enter: open in the Label view")
            if r.correct is False:
                item.setForeground(QColor(198, 40, 40))
            self.image_list.addItem(item)

    def listed_image_ids(self) -> list[int]:
        """Image ids in the list beside the confusion matrix, top to bottom."""
        return [
            int(self.image_list.item(i).data(IMAGE_ID_ROLE)) for i in range(self.image_list.count())
        ]

    def _cell_clicked(self, index: QModelIndex) -> None:
        ev = self.evaluation
        if ev is None or ev.confusion is None or not index.isValid():
            return
        i, j = index.row(), index.column()
        ids = set(ev.cell_images(i, j))
        records = [r for r in ev.records if r.image_id in ids]
        t, p = ev.class_names[i], ev.class_names[j]
        what = f"{t}, correctly predicted" if i == j else f"true {t}, predicted {p}"
        self._list_images(records, f"{what} ({len(records)})")

    def _image_activated(self, item: QListWidgetItem) -> None:
        image_id = item.data(IMAGE_ID_ROLE)
        if image_id is not None:
            self.open_image.emit(int(image_id))

    def _fill_class_table(self, ev: Evaluation) -> None:
        m = self.class_model
        m.clear()
        cols = ev.per_class_columns
        titles = dict(COLUMN_TITLES, name={"landmarks": "Point", "autoencode": "Class tag"}.get(
            ev.task, "Class"))  # fmt: skip
        m.setHorizontalHeaderLabels([titles.get(c, c) for c in cols])
        for row in ev.per_class:
            items = []
            for c in cols:
                v = row.get(c)
                item = QStandardItem(format_value(c, v))
                if c == "name":
                    item.setData(str(v).lower(), SORT_ROLE)
                else:
                    undefined = v is None or (isinstance(v, float) and math.isnan(v))
                    item.setData(-math.inf if undefined else float(v), SORT_ROLE)
                    item.setTextAlignment(
                        Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
                    )
                items.append(item)
            m.appendRow(items)
        self.class_box.setTitle(
            {"landmarks": "Per point", "autoencode": "Per class tag"}.get(ev.task, "Per class")
        )

    def _ensure_plot(self) -> Any:
        if self._plot is None:
            import pyqtgraph as pg

            w = pg.PlotWidget()
            w.setBackground("w")
            w.showGrid(x=True, y=True, alpha=0.2)
            for axis in ("left", "bottom"):
                w.getPlotItem().getAxis(axis).setTextPen("k")
                w.getPlotItem().getAxis(axis).setPen((120, 120, 120))
            w.setMinimumSize(260, 160)
            self.plot_box.layout().addWidget(w)
            self._plot = w
            # the splitter sized the empty box small: give the plot its share (3 : 2 : 3)
            total = sum(self.upper.sizes())
            self.upper.setSizes([total * 3 // 8, total * 2 // 8, total * 3 // 8])
        return self._plot

    def _class_colors(self, names: list[str]) -> dict[str, str]:
        project = self.app_state.project
        known = {c.name: c.color for c in project.classes()} if project is not None else {}
        fallback = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"]
        return {n: known.get(n, fallback[i % len(fallback)]) for i, n in enumerate(names)}

    def _draw_plot(self, ev: Evaluation) -> None:
        import numpy as np
        import pyqtgraph as pg

        w = self._ensure_plot()
        item = w.getPlotItem()
        item.clear()
        if item.legend is not None:
            item.legend.scene().removeItem(item.legend)
            item.legend = None
        item.getAxis("bottom").setTicks(None)
        colors = self._class_colors(ev.class_names)
        if ev.task in ("classify", "detect"):
            self.plot_box.setTitle(
                "Precision-recall curves" + (" (IoU ≥ .5)" if ev.task == "detect" else "")
            )
            item.addLegend(offset=(-5, -5), labelTextColor="k")
            ap_key = "ap50" if ev.task == "detect" else "ap"
            ap = {row["name"]: row.get(ap_key) for row in ev.per_class}
            for name, (prec, rec) in ev.pr_curves.items():
                x, y = _pr_steps(prec, rec)
                color = QColor(colors.get(name, "#000000"))
                color.setAlpha(210)  # curves often coincide (e.g. two perfect classes)
                label = f"{name} (AP {format_value('ap', ap.get(name))})"
                w.plot(x, y, pen=pg.mkPen(color, width=2), name=label)
            item.setLabel("bottom", "recall")
            item.setLabel("left", "precision")
            w.setXRange(0, 1.02, padding=0)
            w.setYRange(0, 1.05, padding=0)
            return
        if ev.task == "autoencode":
            self.plot_box.setTitle("Reconstruction error per image")
            errs = np.array([r.error for r in ev.records if r.error is not None], dtype=float)
            if len(errs):
                counts, edges = np.histogram(errs, bins=min(20, max(len(errs), 1)))
                w.plot(edges, counts, stepMode="center", fillLevel=0,
                       brush=(33, 102, 172, 150), pen=pg.mkPen((33, 102, 172), width=1))  # fmt: skip
            item.setLabel("bottom", "reconstruction error (MSE)")
            item.setLabel("left", "images")
            w.enableAutoRange()
            return
        key, title, ylabel = {
            "landmarks": ("mean_error_px", "Mean error per point", "mean error (image px)"),
            "segment": ("iou", "IoU per class", "IoU"),
        }[ev.task]
        self.plot_box.setTitle(title)
        rows = ev.per_class
        values = [float("nan") if r.get(key) is None else float(r[key]) for r in rows]
        xs = np.arange(len(rows))
        brushes = [pg.mkBrush(colors.get(r["name"], "#888888")) for r in rows]
        heights = [0.0 if math.isnan(v) else v for v in values]
        w.addItem(pg.BarGraphItem(x=xs, height=heights, width=0.7, brushes=brushes))
        item.getAxis("bottom").setTicks(
            [[(int(i), r["name"]) for i, r in zip(xs, rows, strict=True)]]
        )
        item.setLabel("bottom", "")
        item.setLabel("left", ylabel)
        w.enableAutoRange()
        if ev.task == "segment":
            w.setYRange(0, 1.05, padding=0)


def _pr_steps(precision: Any, recall: Any) -> tuple[list[float], list[float]]:
    """Step outline of a precision-recall curve given per threshold (recall rising):
    from recall 0 at the first precision, each recall interval drawn at the precision
    of its right end (as scikit-learn's display draws it)."""
    xs, ys = [0.0], [float(precision[0])] if len(precision) else [1.0]
    for r, p in zip(recall, precision, strict=True):
        xs += [xs[-1], float(r)]
        ys += [float(p), float(p)]
    return xs, ys


def _label(key: str) -> str:
    from tlstudio.ml.evaluation import METRIC_LABELS

    return METRIC_LABELS.get(key, key)


def _badness(r: ImageRecord) -> float:
    return -math.inf if r.error is None else float(r.error)


def _score_text(ev: Evaluation | None, r: ImageRecord) -> str:
    task = ev.task if ev is not None else ""
    if task == "classify":
        return f"p = {r.score:.2f}"
    if task == "detect":
        return f"{int(r.error or 0)} wrong, best score {r.score:.2f}"
    if task == "landmarks":
        return f"NME {r.score:.3f}, {r.error:.1f} px" if r.error is not None else f"{r.score:.3f}"
    if task == "segment":
        return f"IoU {r.score:.2f}"
    return f"error {r.score:.4g}"
