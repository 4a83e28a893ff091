"""The Train panel's "Find learning rate" tab: sweep the learning rate over a few hundred
batches of the configured model (:func:`tlstudio.ml.lr_find.lr_find`, a
:class:`~tlstudio.gui.workers.jobs.BackgroundJob`), plot the loss against the rate (log
axis) and offer the suggested rate for the settings. The project is never changed; only
"Use this rate" changes the Train settings' learning rate."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from tlstudio.core.cancel import CancelToken
from tlstudio.gui.state import AppState
from tlstudio.gui.training.job_tab import JobTab
from tlstudio.gui.workers.jobs import BackgroundJob, Progress


def sweep(root: str, spec: Any, iterations: int, token: CancelToken, progress: Progress) -> Any:
    """Job: the sweep on a project connection of its own."""
    from tlstudio.core.project import Project
    from tlstudio.ml.lr_find import lr_find

    with Project.open(root) as project:
        return lr_find(
            project, spec, iterations=iterations, token=token,
            progress=lambda d, t: progress(d, t, "batches"),
        )  # fmt: skip


class LrFinderView(JobTab):
    """Find learning rate: button, batches, progress, the curve and the suggestion.
    ``rate_chosen(rate)`` when the user takes the suggested rate."""

    rate_chosen = Signal(float)
    message = Signal(str)

    def __init__(
        self, app_state: AppState, spec_source: Callable[[], Any], parent: QWidget | None = None
    ):
        super().__init__(parent)
        self.setObjectName("lrFinder")
        self.app_state = app_state
        self._spec_source = spec_source
        self.result: Any = None

        intro = QLabel(
            "Train a throw-away copy of the configured model for a few hundred batches while "
            "the learning rate grows from 1e-7 to 10, and read the rate off where the loss "
            "falls fastest. No run is recorded; the project does not change."
        )
        intro.setWordWrap(True)
        self.find_button = QPushButton("Find learning rate")
        self.find_button.setObjectName("lrFindButton")
        self.iterations = QSpinBox()
        self.iterations.setRange(20, 2000)
        self.iterations.setValue(100)
        self.iterations.setSuffix(" batches")
        self.iterations.setToolTip("How many batches the sweep trains (more: a smoother curve)")
        self.cancel_button = QPushButton("Cancel")
        self.progress = QProgressBar()
        self.progress.setFormat("%v / %m batches")
        self.suggestion = self.status = QLabel("Press Find learning rate.")
        self.suggestion.setObjectName("lrSuggestion")
        self.suggestion.setWordWrap(True)
        self.use_button = QPushButton("Use this rate")
        self.use_button.setObjectName("lrUseButton")
        self.use_button.setToolTip("Set the Train settings' learning rate to the suggestion")
        self.use_button.setEnabled(False)
        row = QHBoxLayout()
        row.addWidget(self.find_button)
        row.addWidget(self.iterations)
        row.addWidget(self.progress, 1)
        row.addWidget(self.cancel_button)
        row.addStretch(1)
        answer = QHBoxLayout()
        answer.addWidget(self.suggestion, 1)
        answer.addWidget(self.use_button)
        self._plot_host = QVBoxLayout()
        self.plot: Any = None
        lay = QVBoxLayout(self)
        lay.addWidget(intro)
        lay.addLayout(row)
        lay.addLayout(answer)
        lay.addLayout(self._plot_host, 1)
        self.find_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)
        self.use_button.clicked.connect(self._use)
        self._set_busy(False)

    def start(self) -> bool:
        """Sweep the configured model (in the background)."""
        project = self.app_state.project
        if project is None or self._job is not None:
            return False
        import copy

        spec = copy.deepcopy(self._spec_source())
        root, n = str(project.root), self.iterations.value()
        self.suggestion.setText(f"Sweeping {n} batches of {spec.task} on {spec.backbone}…")
        self.use_button.setEnabled(False)
        self._run(
            lambda token, progress: sweep(root, spec, n, token, progress),
            name="lr finder",
            failed="The sweep failed",
            done=self._done,
        )
        return True

    # -- results -----------------------------------------------------------------------------

    def _done(self, job: BackgroundJob, result: Any) -> None:
        self.result = result
        if result.suggested is not None:
            text = (
                f"Suggested learning rate: {result.suggested:.1e} ({result.reason}; "
                f"{len(result.lrs)} batches, {result.stopped})."
            )
        else:
            text = f"No suggestion: {result.reason}."
        self._ended(job, text)
        self.use_button.setEnabled(result.suggested is not None)
        self._draw(result)

    def _lock_inputs(self, busy: bool) -> None:
        self.find_button.setEnabled(not busy)
        self.iterations.setEnabled(not busy)

    def _use(self) -> None:
        if self.result is not None and self.result.suggested is not None:
            self.rate_chosen.emit(float(self.result.suggested))
            self.message.emit(f"Learning rate set to {self.result.suggested:.1e}")

    def _draw(self, result: Any) -> None:
        import numpy as np
        import pyqtgraph as pg  # type: ignore[import-untyped]  # no stubs or py.typed

        if self.plot is None:
            from tlstudio.gui.plots.grid import lone_plot_widget

            w = lone_plot_widget("lrPlot", "learning rate", "loss")
            w.getPlotItem().setLogMode(x=True, y=False)
            w.setMinimumSize(260, 180)
            self._plot_host.addWidget(w)
            self.plot = w
        w = self.plot
        item = w.getPlotItem()
        item.clear()
        if not result.lrs:
            return
        lrs = np.asarray(result.lrs)
        w.plot(lrs, np.asarray(result.losses), pen=pg.mkPen((190, 190, 190), width=1))
        w.plot(lrs, np.asarray(result.smoothed), pen=pg.mkPen((33, 102, 172), width=2))
        if result.suggested is not None:
            # log mode: the item's x is log10 of the rate
            line = pg.InfiniteLine(np.log10(result.suggested), angle=90,
                                   pen=pg.mkPen((214, 39, 40), width=1, style=Qt.PenStyle.DashLine))  # fmt: skip
            w.addItem(line)
        low = float(min(np.min(result.smoothed), np.min(result.losses)))
        high = float(np.max(result.smoothed[:5]))
        w.setYRange(low - 0.1 * abs(low), max(high, low) * 1.3 + 1e-6, padding=0)
