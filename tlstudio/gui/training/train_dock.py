"""The Train panel: the run configuration, the live monitor and the run history, and the
training controller that connects them. On a wide panel the configuration sits left of
the Monitor and History tabs; on a narrow one (a laptop) it becomes a third tab,
"Settings", so every control stays reachable without sideways scrolling.

Put it in a dock: ``dock.setWidget(TrainDock(app_state))``; in the window's
``closeEvent`` call ``train_dock.confirm_close()`` and ignore the event when it
returns False.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QSize, Qt, Signal, Slot
from PySide6.QtGui import QResizeEvent
from PySide6.QtWidgets import (
    QMessageBox,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from tlstudio.core.errors import TlsError
from tlstudio.core.runs import RunStore

from .config_panel import TrainConfigPanel
from .history import RunHistoryPanel
from .instant_fewshot import InstantFewShotView
from .lr_finder_view import LrFinderView
from .monitor import TrainingMonitor
from .worker import TrainingController

#: Panel width (px) from which the configuration sits beside the tabs: its own minimum
#: plus room for two monitor plots of 300 px side by side.
SIDE_BY_SIDE_PX = 1200
SETTINGS_TAB = "Settings"

if TYPE_CHECKING:  # pragma: no cover
    from tlstudio.gui.state import AppState
    from tlstudio.ml.runner import RunSpec


def honest_note(config: dict[str, Any]) -> str:
    """What the figures of a finished run mean (tlstudio.ml.selection records them): the
    kept epoch's validation figure was picked on those images; the test score, never used
    for selection; the calibration fitted on val. Empty when none was recorded."""
    parts = []
    sel, test, cal = config.get("selection"), config.get("test"), config.get("calibration")
    if isinstance(sel, dict) and sel.get("picked_on") == "val" and sel.get("epoch") is not None:
        parts.append(
            f"Kept epoch {int(sel['epoch']) + 1}: its validation figure was picked on those "
            "images and leans optimistic."
        )
    if isinstance(test, dict) and isinstance(test.get("metrics"), dict):
        shown = ", ".join(
            f"{k.replace('_', ' ')} {v:.3f}" for k, v in list(test["metrics"].items())[:3]
        )
        label = str(test.get("label") or "test")
        parts.append(f"{label[:1].upper()}{label[1:]} ({test.get('images')} images): {shown}.")
    if isinstance(cal, dict) and "ece_before" in cal:
        parts.append(
            f"Calibrated on val: temperature {cal['temperature']:.3g}, expected calibration "
            f"error {cal['ece_before']:.3f} → {cal['ece_after']:.3f}."
        )
    return " ".join(parts)


class TrainDock(QWidget):
    """Configuration | (Monitor, History) with the :class:`TrainingController`.

    ``threads``: torch threads for training (None: one core fewer than the machine has).
    The "Instant few-shot" and "Find learning rate" tabs use the configuration's backbone
    and settings; ``open_image`` and ``message`` come from them."""

    open_image = Signal(int)
    message = Signal(str)

    def __init__(
        self, app_state: AppState, parent: QWidget | None = None, *, threads: int | None = None
    ):
        super().__init__(parent)
        self.setObjectName("trainPanel")
        self.app_state = app_state
        self.controller = TrainingController(app_state, self, threads=threads)
        self.config = TrainConfigPanel(app_state)
        self.monitor = TrainingMonitor()
        self.history = RunHistoryPanel(app_state)
        self.tabs = QTabWidget()
        self.tabs.setObjectName("trainTabs")
        self.instant = InstantFewShotView(app_state, self.config.spec)
        self.lr_finder = LrFinderView(app_state, self.config.spec)
        self.tabs.addTab(self.monitor, "Monitor")
        self.tabs.addTab(self.history, "History")
        self.tabs.addTab(self.instant, "Instant few-shot")
        self.tabs.addTab(self.lr_finder, "Find learning rate")
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.setChildrenCollapsible(False)
        self.splitter.addWidget(self.tabs)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        # the narrow arrangement's minimum is the panel's (see minimumSizeHint)
        lay.setSizeConstraint(QVBoxLayout.SizeConstraint.SetNoConstraint)
        lay.addWidget(self.splitter)
        self._side_by_side: bool | None = None
        self.elsewhere_dialog: Any = None  # the last "Train elsewhere" dialog
        self.import_job: Any = None  # the last "Import finished run…" job
        self._arrange(False)
        self.tabs.setCurrentWidget(self.config)  # where a session starts

        self.monitor.bind(self.controller)
        self.config.start_requested.connect(self.start)
        self.history.reuse_requested.connect(self.config.set_spec)
        self.instant.open_image.connect(self.open_image)
        self.lr_finder.rate_chosen.connect(self._use_rate)
        for view in (self.instant, self.lr_finder):
            view.message.connect(self.message)
        self.config.elsewhere_requested.connect(self.train_elsewhere)
        self.history.import_requested.connect(self.import_run)
        c = self.controller
        c.running_changed.connect(self._on_running_changed)
        c.fit_started.connect(self._on_fit_started)
        c.finished.connect(self._on_finished)
        c.failed.connect(lambda *_: self.history.refresh())
        app_state.project_opened.connect(lambda _p: self._project_changed())
        app_state.project_closed.connect(self._project_changed)

    # -- public -------------------------------------------------------------------------------
    @Slot(object)
    def start(self, spec: RunSpec) -> bool:
        """Start training ``spec`` (the monitor's device choice replaces the spec's unless
        it is "As configured"). False when a run is going or no project is open."""
        if self.controller.is_running:
            return False
        if self.app_state.project is None:
            self.monitor.on_failed("config", "Open a project before training.")
            return False
        device = self.monitor.device()
        if device != "auto":
            spec = copy.deepcopy(spec)
            spec.train.device = device
        if not self.controller.start(spec):
            return False
        self.monitor.set_note(self.config.take_run_note())
        self.tabs.setCurrentWidget(self.monitor)
        return True

    @Slot(object)
    def train_elsewhere(self, spec: RunSpec) -> None:
        """ "Train elsewhere…": the dialog that writes a job folder for ``spec``."""
        if self.app_state.project is None:
            return
        from .elsewhere import TrainElsewhereDialog

        self.elsewhere_dialog = TrainElsewhereDialog(self.app_state, spec, self)
        self.elsewhere_dialog.open()

    @Slot()
    def import_run(self) -> None:
        """History → "Import finished run…": a run a job folder trained elsewhere."""
        from .elsewhere import import_finished_run

        self.import_job = import_finished_run(self, self.app_state, self.history)

    def side_by_side(self) -> bool:
        """True when the configuration sits beside the tabs, False when it is a tab."""
        return bool(self._side_by_side)

    def show_settings(self) -> None:
        """Bring the configuration into view (its tab, when it is one)."""
        if not self._side_by_side:
            self.tabs.setCurrentWidget(self.config)

    def minimumSizeHint(self) -> QSize:
        """The narrow arrangement's minimum: the configuration is one of the tabs."""
        tabs = self.tabs.minimumSizeHint()
        config = self.config.minimumSizeHint()
        return QSize(max(tabs.width(), config.width()), max(tabs.height(), config.height()))

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._arrange(self.width() >= SIDE_BY_SIDE_PX)

    def confirm_close(self) -> bool:
        """For the window's closeEvent: True when it may close. While a run is going, asks
        "Training is running. Stop it and close?" and, if yes, cancels it and waits."""
        if not self.controller.is_running:
            self.instant.shutdown()  # seconds at most: cancelled between batches
            self.lr_finder.shutdown()
            return True
        answer = QMessageBox.question(
            self,
            "Training is running",
            "Training is running. Stop it and close?",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.No,
        )
        if answer != QMessageBox.StandardButton.Yes:
            return False
        return self.shutdown()

    def shutdown(self, ms: int = 30_000) -> bool:
        """Cancel a run (and a few-shot fit or rate sweep) and wait for its thread (no
        question asked)."""
        self.instant.shutdown()
        self.lr_finder.shutdown()
        return self.controller.shutdown(ms)

    def _use_rate(self, rate: float) -> None:
        """The learning-rate finder's suggestion becomes the configured learning rate."""
        spec = self.config.spec()
        spec.train.lr = float(rate)
        self.config.set_spec(spec)

    # -- internals ------------------------------------------------------------------------------
    def _arrange(self, side_by_side: bool) -> None:
        if side_by_side == self._side_by_side:
            return
        self._side_by_side = side_by_side
        current = self.tabs.currentWidget()
        if side_by_side:
            self.tabs.removeTab(self.tabs.indexOf(self.config))
            self.splitter.insertWidget(0, self.config)
            self.splitter.setStretchFactor(0, 0)
            self.splitter.setStretchFactor(1, 1)
            self.config.show()
            if current is self.config:
                current = self.monitor
        else:
            self.tabs.insertTab(0, self.config, SETTINGS_TAB)
        self.tabs.setCurrentWidget(current)

    def _project_changed(self) -> None:
        """Another project: nothing of the last one's runs stays in the monitor."""
        if not self.controller.is_running:
            self.monitor.clear()
        if not self._side_by_side:
            self.tabs.setCurrentWidget(self.config)

    def _on_running_changed(self, running: bool) -> None:
        setter = getattr(self.config, "set_running", None)
        if setter is not None:
            setter(running)
        if not running:
            self.history.set_active_run(None)

    def _on_fit_started(self, ev: Any) -> None:
        self.history.set_active_run(ev.run_id)
        self.history.refresh()
        self._show_run_warnings(ev.run_id)

    def _show_run_warnings(self, run_id: int) -> None:
        """Add what the runner recorded about the run's images (e.g. files missing and
        left out) to the monitor's note, so the user sees it while the run goes."""
        project = self.app_state.project
        if project is None:
            return
        try:
            warnings = RunStore(project).get(run_id).config.get("warnings") or []
        except TlsError:
            return  # the run was deleted meanwhile
        note = self.monitor.note_label.text()
        self.monitor.set_note("\n".join([*filter(None, [note]), *map(str, warnings)]))

    def _on_finished(self, run_id: int) -> None:
        """Refresh the history; a run that saved a model becomes the run being inspected
        (Predictions dock and Inspect mode follow ``AppState.run_id``)."""
        self.history.refresh()
        project = self.app_state.project
        if run_id >= 0 and project is not None:
            try:
                rec = RunStore(project).get(run_id)
            except TlsError:
                return  # the run was deleted meanwhile
            note = honest_note(rec.config)
            if note:
                shown = self.monitor.note_label.text()
                self.monitor.set_note(f"{shown}\n{note}" if shown else note)
            if rec.checkpoint is not None:
                self.app_state.set_run(run_id)
