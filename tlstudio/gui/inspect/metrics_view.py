"""Metrics of the inspected run on a split: summary figures, confusion matrix with the
images behind each cell, a sortable per-class table, precision-recall curves and the
k-fold mean ± std of a cross-validation experiment.

"Evaluate" runs :func:`tlstudio.ml.evaluation.evaluate_run` as a
:class:`~tlstudio.gui.workers.jobs.BackgroundJob` in a private one-thread pool (the job
opens its own :class:`~tlstudio.core.project.Project`); results are kept in memory per
(run, split) until the labels change. The confusion matrix model, the number formats
and the plot are in :mod:`.metrics_confusion`, :mod:`.metrics_format` and
:mod:`.metrics_plot`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QModelIndex, Qt, Signal
from PySide6.QtGui import QColor, QGuiApplication, QStandardItemModel
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

from tlstudio.core.cancel import CancelToken
from tlstudio.gui.inspect.metrics_calibration import CalibrationBox
from tlstudio.gui.inspect.metrics_confusion import ConfusionModel
from tlstudio.gui.inspect.metrics_format import (
    CARD_KEYS,
    SORT_ROLE,
    badness,
    fill_class_table,
    fill_domain_table,
    format_value,
    metric_label,
    score_text,
)
from tlstudio.gui.inspect.metrics_plot import MetricsPlot
from tlstudio.gui.state import AppState
from tlstudio.gui.workers.jobs import BackgroundJob, Progress, job_pool

if TYPE_CHECKING:  # pragma: no cover
    from tlstudio.ml.evaluation import Evaluation, ImageRecord

IMAGE_ID_ROLE = Qt.ItemDataRole.UserRole + 2


def _evaluate(
    root: str, run_id: int, split: str, token: CancelToken, progress: Progress
) -> Evaluation:
    """Job: :func:`evaluate_run` with its own project connection."""
    from tlstudio.core.project import Project
    from tlstudio.ml.evaluation import evaluate_run

    with Project.open(root) as project:
        return evaluate_run(project, run_id, split, progress=progress, token=token)


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
        self._job: BackgroundJob | None = None
        self._pool = job_pool(self, 1, "metrics view")
        self._cv: dict[str, tuple[float, float]] = {}
        self._cv_runs: list[int] = []
        self._cv_selection: str | None = None

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
        self.plot_box = MetricsPlot()
        self.plot_box.created.connect(self._give_plot_room)
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
        # per image domain (site, scanner, batch): shown when the split's images have one
        self.domain_model = QStandardItemModel(self)
        self.domain_model.setSortRole(SORT_ROLE)
        self.domain_table = QTableView()
        self.domain_table.setObjectName("metricsDomainTable")
        self.domain_table.setModel(self.domain_model)
        self.domain_table.setSortingEnabled(True)
        self.domain_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.domain_table.verticalHeader().hide()
        self.domain_table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.domain_box = QGroupBox("Per domain")
        self.domain_box.setToolTip(
            "The summary figures of each image domain (site, scanner, batch) in the split: "
            "a model trained on one domain often does worse on another"
        )
        QVBoxLayout(self.domain_box).addWidget(self.domain_table)
        self.domain_box.hide()

        self.upper_split = upper = QSplitter(Qt.Orientation.Horizontal)
        upper.addWidget(self.confusion_box)
        upper.addWidget(images_box)
        upper.addWidget(self.plot_box)
        upper.setStretchFactor(0, 3)
        upper.setStretchFactor(1, 2)
        upper.setStretchFactor(2, 3)
        self.calibration_box = CalibrationBox()
        # not `lower`: that is QWidget.lower() (stacking order)
        self.lower_split = QSplitter(Qt.Orientation.Horizontal)
        self.lower_split.addWidget(self.class_box)
        self.lower_split.addWidget(self.domain_box)
        self.lower_split.addWidget(self.calibration_box)
        self.lower_split.setStretchFactor(0, 3)
        self.lower_split.setStretchFactor(1, 2)
        self.lower_split.setStretchFactor(2, 2)
        self.body = QSplitter(Qt.Orientation.Vertical)
        self.body.addWidget(upper)
        self.body.addWidget(self.lower_split)
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
        root, run_id, split = str(project.root), int(run_id), self.split
        job = BackgroundJob(
            lambda token, progress: _evaluate(root, run_id, split, token, progress),
            context=self,
            needs_ml=True,
        )
        job.progressed.connect(self._progressed)
        job.succeeded.connect(lambda ev, j=job: self._finished(j, run_id, split, ev))
        job.failed.connect(lambda _kind, msg, j=job: self._failed(j, msg))
        job.cancelled.connect(lambda j=job: self._cancelled(j))
        self._set_busy(True)
        self._set_status(f"Evaluating run #{run_id} on the {split} split…")
        self.message.emit(f"Evaluating run #{run_id} on the {split} split")
        self._job = job.start(self._pool)

    def cancel(self) -> None:
        if self._job is not None:
            self._job.cancel()
            self.cancel_button.setEnabled(False)
            self._set_status("Cancelling…")

    def shutdown(self) -> None:
        """Cancel a running evaluation and wait for its thread."""
        if self._job is not None:
            self._job.cancel()
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
    def _progressed(self, done: int, total: int, _stage: str) -> None:
        self.progress.setMaximum(max(total, 1))
        self.progress.setValue(done)

    def _finished(self, job: BackgroundJob, run_id: int, split: str, ev: Evaluation) -> None:
        self._job_done(job)
        self._cache[(run_id, split)] = ev
        if (self.app_state.run_id, self.split) == (run_id, split):
            self._show(ev)
        self.message.emit(f"Run #{run_id} evaluated on {len(ev.image_ids)} {split} images")

    def _failed(self, job: BackgroundJob, msg: str) -> None:
        self._job_done(job)
        self._set_status(f"Evaluation failed: {msg}", error=True)
        self.message.emit(f"Evaluation failed: {msg}")

    def _cancelled(self, job: BackgroundJob) -> None:
        self._job_done(job)
        self._set_status("Evaluation cancelled.")

    def _job_done(self, job: BackgroundJob) -> None:
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
        from tlstudio.ml.evaluation import cv_group, cv_selection, cv_summary

        self._cv_runs = cv_group(project, run_id)
        self._cv_selection = cv_selection(project, self._cv_runs) if self._cv_runs else None
        return cv_summary(project, self._cv_runs) if self._cv_runs else {}

    # -- display ----------------------------------------------------------------------------
    def _set_status(self, text: str, error: bool = False) -> None:
        self.status_label.setText(text)
        self.status_label.setStyleSheet("color: #c62828;" if error else "")

    def _clear(self) -> None:
        self.evaluation = None
        self.confusion_model.set_matrix(None, [])
        self.class_model.clear()
        self.domain_model.clear()
        self.domain_box.hide()
        self.image_list.clear()
        self.images_title.setText("Images")
        self.notes_label.clear()
        self._set_cards((), {})
        self.plot_box.clear()
        self.calibration_box.show_evaluation(None)

    def _show(self, ev: Evaluation) -> None:
        self._clear()
        self.evaluation = ev
        multi = ev.task == "classify" and ev.confusion is None
        keys = CARD_KEYS["classify_multi" if multi else ev.task]
        self._set_cards(keys, ev.summary)
        self._show_cv(ev)
        others = [
            f"{metric_label(k)} {format_value(k, v)}"
            for k, v in ev.summary.items()
            if k not in keys
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
            worst = sorted(ev.records, key=badness, reverse=True)
            self._list_images(worst, f"Images, worst first ({len(worst)})")
        self._fill_class_table(ev)
        fill_domain_table(self.domain_model, ev, keys)
        self.domain_box.setVisible(bool(ev.by_domain))
        self.plot_box.draw(ev, self._class_colors(ev.class_names))
        self.calibration_box.show_evaluation(ev)
        self.evaluated.emit(ev)

    def _set_cards(self, keys: tuple[str, ...], summary: dict[str, float]) -> None:
        while self.cards_layout.count():
            item = self.cards_layout.takeAt(0)
            widget = item.widget() if item is not None else None
            if widget is not None:
                widget.deleteLater()
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
            caption = QLabel(metric_label(key))
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
            f"{metric_label(name)} {format_value(name, m)} ± {format_value(name, s)}"
            for name, (m, s) in self._cv.items()
            if name in keys or (ev is None and name not in ("train_loss", "val_loss"))
        ]
        runs = ", ".join(f"#{r}" for r in self._cv_runs)
        how = {
            "inner": "each fold's model scored on its held-out fold, its epoch picked on an "
            "inner split",
            "last": "each fold's last-epoch model scored on its held-out fold",
        }.get(self._cv_selection or "", "each fold's best validation epoch, picked on its "
              "held-out fold (optimistic)")  # fmt: skip
        self.cv_label.setText(
            f"<b>{k}-fold cross-validation</b> (runs {runs}; {how}; mean ± std): "
            + (" · ".join(parts) or "no metrics recorded")
        )
        for name, (_value, caption) in self.cards.items():
            if name in self._cv:
                m, s = self._cv[name]
                caption.setText(
                    f"{metric_label(name)}\n{k}-fold: {format_value(name, m)} ± {format_value(name, s)}"
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
                text += f" ({score_text(self.evaluation, r)})"
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
        fill_class_table(self.class_model, ev)
        self.class_box.setTitle(
            {"landmarks": "Per point", "autoencode": "Per class tag"}.get(ev.task, "Per class")
        )

    def _give_plot_room(self) -> None:
        # the splitter sized the empty box small: give the plot its share (3 : 2 : 3)
        total = sum(self.upper_split.sizes())
        self.upper_split.setSizes([total * 3 // 8, total * 2 // 8, total * 3 // 8])

    def _class_colors(self, names: list[str]) -> dict[str, str]:
        project = self.app_state.project
        known = {c.name: c.color for c in project.classes()} if project is not None else {}
        fallback = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"]
        return {n: known.get(n, fallback[i % len(fallback)]) for i, n in enumerate(names)}
