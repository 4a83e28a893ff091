"""The Inspect mode: a run picker above tabs of views (metrics, latent space, anomalies,
explanations, export). The picker sets ``AppState.run_id``; every view follows it."""

from __future__ import annotations

import datetime
from collections.abc import Callable

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from tlstudio.core.runs import RunRecord, RunStore
from tlstudio.gui.state import AppState
from tlstudio.gui.widgets.wheel_guard import guard_wheel

#: (tab title, factory) of every Inspect view, in tab order; factories import lazily so
#: opening the window does not load torch.
ViewFactory = Callable[[AppState], QWidget]


def _metrics(s: AppState) -> QWidget:
    from tlstudio.gui.inspect.metrics_view import MetricsView

    return MetricsView(s)


def _latent(s: AppState) -> QWidget:
    from tlstudio.gui.inspect.latent_view import LatentView

    return LatentView(s)


def _anomaly(s: AppState) -> QWidget:
    from tlstudio.gui.inspect.anomaly_view import AnomalyView

    return AnomalyView(s)


def _explain(s: AppState) -> QWidget:
    from tlstudio.gui.inspect.explain_view import ExplainView

    return ExplainView(s)


def _export(s: AppState) -> QWidget:
    from tlstudio.gui.inspect.export_view import ExportView

    return ExportView(s)


VIEWS: tuple[tuple[str, ViewFactory], ...] = (
    ("Metrics", _metrics),
    ("Latent space", _latent),
    ("Anomalies", _anomaly),
    ("Explain", _explain),
    ("Export", _export),
)


def run_title(run: RunRecord, *, when: bool = True) -> str:
    """One line naming a run: ``#12 classify · resnet18 · accuracy 0.913 · 25 Nov 09:41``
    (no metric when there is none; no date with ``when=False``)."""
    metric = (
        f" · {run.metric_name} {run.best_metric:.3f}"
        if run.metric_name and run.best_metric is not None
        else ""
    )
    date = datetime.datetime.fromtimestamp(run.created_at).strftime(" · %d %b %H:%M")
    ensemble = run.config.get("ensemble") if isinstance(run.config, dict) else None
    if isinstance(ensemble, dict):  # members: see tlstudio.ml.ensemble
        ids = [int(i) for i in ensemble.get("members", [])]
        shown = ", ".join(f"#{i}" for i in ids[:4]) + (", …" if len(ids) > 4 else "")
        what = f"ensemble of {len(ids)} ({shown})"
        return f"#{run.id} {run.task} · {what} · {run.backbone}{date if when else ''}"
    return f"#{run.id} {run.task} · {run.backbone}{metric}{date if when else ''}"


def preferred_run(runs: list[RunRecord]) -> RunRecord | None:
    """The run to show first: the newest finished one among ``runs`` (newest first),
    else the newest (a cancelled run that saved a model); None without runs."""
    return next((r for r in runs if r.status == "finished"), runs[0] if runs else None)


class InspectPanel(QWidget):
    """Run picker plus one tab per view; views are built the first time they are shown."""

    message = Signal(str)
    open_image = Signal(int)

    def __init__(self, app_state: AppState, parent: QWidget | None = None,
                 views: tuple[tuple[str, ViewFactory], ...] = VIEWS):  # fmt: skip
        super().__init__(parent)
        self.app_state = app_state
        self._factories = list(views)
        self.views: dict[str, QWidget] = {}

        self.run_combo = QComboBox()
        self.run_combo.setObjectName("inspectRunCombo")
        self.run_combo.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self.run_combo.setMinimumContentsLength(24)  # stretches wider when there is room
        self.run_combo.setToolTip("The trained run to inspect (runs with a saved model)")
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.setToolTip("Reload the list of runs")
        self.ensemble_button = QPushButton("Ensemble…")
        self.ensemble_button.setObjectName("inspectEnsembleButton")
        self.ensemble_button.setToolTip(
            "Combine several runs (k-fold models, seeds) into one predictor, with their "
            "disagreement shown as an uncertainty"
        )
        self.ensemble_dialog: QWidget | None = None
        self.empty_label = QLabel(
            "No trained run yet: train a model in the Train tab (F3), then inspect it here."
        )
        self.empty_label.setObjectName("inspectEmpty")
        top = QHBoxLayout()
        top.addWidget(QLabel("Run:"))
        top.addWidget(self.run_combo, 1)
        top.addWidget(self.ensemble_button)
        top.addWidget(self.refresh_button)
        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        for title, _factory in self._factories:
            self.tabs.addTab(QWidget(), title)  # placeholder until first shown
        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addWidget(self.empty_label)
        lay.addWidget(self.tabs, 1)

        self.run_combo.currentIndexChanged.connect(self._run_chosen)
        self.refresh_button.clicked.connect(self.refresh_runs)
        self.ensemble_button.clicked.connect(self.open_ensemble_dialog)
        self.tabs.currentChanged.connect(self._ensure_view)
        app_state.project_opened.connect(lambda _p: self.refresh_runs())
        app_state.project_closed.connect(self.refresh_runs)
        app_state.run_changed.connect(self._follow_run)
        self.refresh_runs()
        guard_wheel(self)  # the wheel scrolls the page; it never changes an unfocused input

    # -- runs -------------------------------------------------------------------------
    def refresh_runs(self) -> None:
        """Fill the picker with the project's runs; keep or pick ``AppState.run_id``."""
        project = self.app_state.project
        runs = RunStore(project).with_model() if project is not None else []
        self.run_combo.blockSignals(True)
        self.run_combo.clear()
        for run in runs:
            self.run_combo.addItem(run_title(run), run.id)
        self.run_combo.blockSignals(False)
        self.empty_label.setVisible(not runs)
        self.ensemble_button.setEnabled(len(runs) >= 2)
        if not runs:
            self.app_state.set_run(None)
            return
        current = self.app_state.run_id
        index = self.run_combo.findData(current) if current is not None else -1
        preferred = preferred_run(runs)  # not None: runs is not empty here
        if index < 0 and preferred is not None:
            index = self.run_combo.findData(preferred.id)
        self.run_combo.setCurrentIndex(index)
        self._run_chosen(self.run_combo.currentIndex())

    def _run_chosen(self, index: int) -> None:
        if index >= 0:
            self.app_state.set_run(self.run_combo.itemData(index))

    def _follow_run(self, run_id: object) -> None:
        index = self.run_combo.findData(run_id)
        if index < 0 and run_id is not None and self.app_state.project is not None:
            self.refresh_runs()  # a run trained since the list was filled
            return
        if index >= 0 and index != self.run_combo.currentIndex():
            self.run_combo.setCurrentIndex(index)

    def open_ensemble_dialog(self) -> None:
        """Open "Combine runs into an ensemble" (window-modal); the new run is picked."""
        from tlstudio.gui.inspect.ensemble_dialog import EnsembleDialog

        dialog = EnsembleDialog(self.app_state, self)
        dialog.message.connect(self.message)
        dialog.created.connect(self.app_state.set_run)
        dialog.finished.connect(dialog.deleteLater)
        self.ensemble_dialog = dialog
        dialog.open()

    # -- views ------------------------------------------------------------------------
    def showEvent(self, event) -> None:
        super().showEvent(event)
        self._ensure_view(self.tabs.currentIndex())

    def _ensure_view(self, index: int) -> None:
        if index < 0:
            return
        title, factory = self._factories[index]
        if title in self.views:
            return
        view = factory(self.app_state)
        view.setObjectName(f"inspect{title.replace(' ', '')}View")
        if hasattr(view, "message"):
            view.message.connect(self.message)
        if hasattr(view, "open_image"):
            view.open_image.connect(self.open_image)
        self.views[title] = view
        self.tabs.blockSignals(True)
        placeholder = self.tabs.widget(index)
        self.tabs.removeTab(index)
        self.tabs.insertTab(index, view, title)
        self.tabs.setCurrentIndex(index)
        self.tabs.blockSignals(False)
        if placeholder is not None:  # the tab at index existed (it was just replaced)
            placeholder.deleteLater()
        guard_wheel(self)  # the new view's inputs too

    def view(self, title: str) -> QWidget:
        """The view of tab ``title``, built if needed."""
        index = [t for t, _ in self._factories].index(title)
        self._ensure_view(index)
        return self.views[title]

    def shutdown(self) -> None:
        for view in self.views.values():
            if hasattr(view, "shutdown"):
                view.shutdown()
