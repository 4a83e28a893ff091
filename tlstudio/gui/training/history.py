"""Every training run of the project in a table; several selected runs overlay their
validation loss and main metric curves; a run's configuration can be reused or the
run deleted (with its files)."""

from __future__ import annotations

import datetime as dt
import math
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QColor, QShowEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMessageBox,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from tlstudio.core.runs import RunRecord, RunStore
from tlstudio.gui.plots.grid import PlotGrid

if TYPE_CHECKING:  # pragma: no cover
    from tlstudio.gui.state import AppState

COLUMNS = (
    "Run",
    "Date",
    "Task",
    "Backbone",
    "Freeze",
    "Best metric",
    "Value",
    "Duration",
    "Device",
    "Status",
)
STATUS_COLORS = {"failed": "#c62828", "cancelled": "#8a6d00", "running": "#1565c0"}
PALETTE = (
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _freeze(run: RunRecord) -> str:
    f = run.config.get("train", {}).get("freeze", "all")
    return "all (features)" if f == "all" else str(f)


class RunHistoryPanel(QWidget):
    """Table of the project's runs and an overlay of the selected runs' curves.

    ``reuse_requested(RunSpec)`` asks the configuration panel to take a run's settings;
    ``run_deleted(run_id)`` follows a deletion."""

    reuse_requested = Signal(object)  # RunSpec
    run_deleted = Signal(int)
    import_requested = Signal()  # "Import finished run…": a run trained elsewhere

    def __init__(self, app_state: AppState, parent: QWidget | None = None):
        super().__init__(parent)
        self.app_state = app_state
        self.runs: list[RunRecord] = []
        self.active_run_id: int | None = None  # the run training now: it cannot be deleted
        self._built = False
        self._overlaid: list[int] = []

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().hide()
        self.table.setAlternatingRowColors(True)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        self.reuse_button = QPushButton("Use this configuration")
        self.reuse_button.setToolTip("Copy the selected run's settings into the configuration")
        self.delete_button = QPushButton("Delete run")
        self.delete_button.setToolTip("Forget the selected runs and delete their files")
        self.refresh_button = QPushButton("Refresh")
        self.import_button = QPushButton("Import finished run…")
        self.import_button.setObjectName("importRunButton")
        self.import_button.setToolTip(
            "Bring in a run trained on another machine from its job folder"
        )
        self.import_button.clicked.connect(self.import_requested)
        self.info_label = QLabel("Select runs to compare their curves.")
        self.info_label.setStyleSheet("color: #555;")
        self.info_label.setWordWrap(True)
        self.plots = PlotGrid()  # validation loss and main metric; filled when first shown
        self.plots.setObjectName("historyPlots")

        buttons = QHBoxLayout()
        buttons.addWidget(self.reuse_button)
        buttons.addWidget(self.delete_button)
        buttons.addStretch(1)
        buttons.addWidget(self.import_button)
        buttons.addWidget(self.refresh_button)
        top = QWidget()
        tl = QVBoxLayout(top)
        tl.setContentsMargins(0, 0, 0, 0)
        tl.addWidget(self.table, 1)
        tl.addLayout(buttons)
        tl.addWidget(self.info_label)
        self.splitter = QSplitter(Qt.Orientation.Vertical)
        self.splitter.setChildrenCollapsible(False)
        self.splitter.addWidget(top)
        self.splitter.addWidget(self.plots)
        self.splitter.setStretchFactor(0, 1)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setSizes([300, 300])
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.splitter)

        self.table.itemSelectionChanged.connect(self._on_selection)
        self.reuse_button.clicked.connect(self.reuse_selected)
        self.delete_button.clicked.connect(self.delete_selected)
        self.refresh_button.clicked.connect(self.refresh)
        app_state.project_opened.connect(lambda _p: self.refresh())
        app_state.project_closed.connect(self.refresh)
        self.refresh()

    # -- public -------------------------------------------------------------------------------
    def store(self) -> RunStore | None:
        project = self.app_state.project
        return None if project is None else RunStore(project)

    @Slot()
    def refresh(self) -> None:
        """Reload the table from the project (keeps the selection)."""
        keep = set(self.selected_run_ids())
        store = self.store()
        self.runs = store.list()[::-1] if store is not None else []  # newest first
        t = self.table
        t.blockSignals(True)
        t.clearSelection()
        t.setRowCount(len(self.runs))
        for row, run in enumerate(self.runs):
            when = dt.datetime.fromtimestamp(run.created_at).strftime("%Y-%m-%d %H:%M")
            value = "" if run.best_metric is None else f"{run.best_metric:.4g}"
            cells = (
                str(run.id), when, run.task, run.backbone, _freeze(run), run.metric_name or "",
                value, _duration(run.duration_s), run.device or "", run.status,
            )  # fmt: skip
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if col == 0:
                    item.setData(Qt.ItemDataRole.UserRole, run.id)
                if col == len(cells) - 1:
                    if run.status in STATUS_COLORS:
                        item.setForeground(QColor(STATUS_COLORS[run.status]))
                    if run.error:
                        item.setToolTip(run.error)
                        item.setText(f"{run.status}: {run.error}")
                t.setItem(row, col, item)
        t.blockSignals(False)
        self.select_runs([i for i in keep if any(r.id == i for r in self.runs)])

    def selected_run_ids(self) -> list[int]:
        rows = sorted({i.row() for i in self.table.selectionModel().selectedRows()})
        return [self.runs[r].id for r in rows if r < len(self.runs)]

    def select_runs(self, run_ids: list[int]) -> None:
        """Select the rows of ``run_ids`` (the overlay follows)."""
        t = self.table
        t.blockSignals(True)
        t.clearSelection()
        mode = t.selectionMode()
        t.setSelectionMode(QAbstractItemView.SelectionMode.MultiSelection)
        for row, run in enumerate(self.runs):
            if run.id in run_ids:
                t.selectRow(row)
        t.setSelectionMode(mode)
        t.blockSignals(False)
        self._on_selection()

    def overlaid_runs(self) -> list[int]:
        """Ids of the runs whose curves the overlay shows."""
        return list(self._overlaid)

    @Slot()
    def reuse_selected(self) -> None:
        """Emit ``reuse_requested`` with the selected run's RunSpec (built in the background,
        since the runner module imports torch)."""
        ids = self.selected_run_ids()
        if len(ids) != 1:
            return
        config = next(r.config for r in self.runs if r.id == ids[0])
        from tlstudio.gui.workers.jobs import start_job

        def build(_token: object, _progress: object) -> Any:
            from tlstudio.core.errors import TlsError
            from tlstudio.ml.runner import RunSpec

            task = str(config.get("task", ""))
            if "," in task:  # the panel trains one task per run
                raise TlsError(
                    f"run {ids[0]} trains several tasks at once ({task}); the Train panel "
                    f"trains one task per run. Train it again with: tlstudio train DIR "
                    f"--task {task}"
                )
            return RunSpec.from_dict(config)

        start_job(
            build,
            context=self,
            succeeded=self.reuse_requested.emit,
            failed=lambda _kind, message: self._show_error(message),
            needs_ml=True,
        )

    @Slot()
    def delete_selected(self) -> None:
        """Ask, then delete the selected runs and their folders."""
        store = self.store()
        ids = [i for i in self.selected_run_ids() if i != self.active_run_id]
        if store is None or not ids:
            return
        names = ", ".join(str(i) for i in ids)
        answer = QMessageBox.question(
            self,
            "Delete runs" if len(ids) > 1 else "Delete run",
            f"Delete run{'s' if len(ids) > 1 else ''} {names} with {'their' if len(ids) > 1 else 'its'} "
            "checkpoints and predictions? This cannot be undone.",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.No,
        )
        if answer != QMessageBox.StandardButton.Yes:
            return
        for run_id in ids:
            store.delete(run_id)
            self.run_deleted.emit(run_id)
        self.refresh()

    def set_active_run(self, run_id: int | None) -> None:
        self.active_run_id = run_id
        self._update_buttons()

    # -- internals ------------------------------------------------------------------------------
    def _show_error(self, message: str) -> None:
        self.info_label.setText(f"<span style='color:#c62828'>{message}</span>")

    def _update_buttons(self) -> None:
        ids = self.selected_run_ids()
        self.reuse_button.setEnabled(len(ids) == 1)
        self.delete_button.setEnabled(bool([i for i in ids if i != self.active_run_id]))

    def _on_selection(self) -> None:
        self._update_buttons()
        self._overlay(self.selected_run_ids())

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        if not self._built:
            self._overlay(self.selected_run_ids())

    def _ensure_built(self) -> None:
        if self._built:
            return
        import pyqtgraph as pg  # type: ignore[import-untyped]  # no stubs or py.typed

        self._built = True
        self._pg = pg
        self.loss_plot = self.plots.add_plot("validation loss")
        self.metric_plot = self.plots.add_plot("main metric")
        for plot in (self.loss_plot, self.metric_plot):
            plot.addLegend(offset=(-5, 5), labelTextColor="k")

    def _overlay(self, run_ids: list[int]) -> None:
        self._overlaid = list(run_ids)
        if not self.isVisible() and not self._built:
            return  # drawn when first shown
        self._ensure_built()
        pg = self._pg
        for plot in (self.loss_plot, self.metric_plot):
            plot.clear()
            if plot.legend is not None:
                plot.legend.clear()
        store = self.store()
        if store is None:
            return
        names = set()
        for k, run_id in enumerate(run_ids):
            run = next((r for r in self.runs if r.id == run_id), None)
            if run is None:
                continue
            color = PALETTE[k % len(PALETTE)]
            epochs = store.epochs(run_id)
            xs = [e + 1 for e, _ in epochs]
            val = [m.get("val_loss", math.nan) for _, m in epochs]
            metric = run.metric_name or "val_loss"
            names.add(metric)
            mv = [m.get(metric, math.nan) for _, m in epochs]
            label = f"run {run_id} ({run.backbone}, freeze {_freeze(run)})"
            for plot, ys, mlabel in (
                (self.loss_plot, val, label),
                (self.metric_plot, mv, f"run {run_id} {metric}"),
            ):
                pts = [(x, y) for x, y in zip(xs, ys, strict=True) if y == y]
                if not pts:
                    continue
                plot.plot(
                    [p[0] for p in pts], [p[1] for p in pts],
                    pen=pg.mkPen(color=color, width=2), symbol="o", symbolSize=6,
                    symbolBrush=color, name=mlabel,
                )  # fmt: skip
        self.metric_plot.setTitle(" / ".join(sorted(names)) if names else "main metric")
        self.info_label.setText(
            f"{len(run_ids)} runs overlaid" if run_ids else "Select runs to compare their curves."
        )
