"""The metrics view's calibration box (classification): the expected calibration error
before and after the run's temperature, and the reliability diagram — per confidence
bin, how often the predicted class was right (bars on the diagonal: the model means
what it says). pyqtgraph is imported when the first evaluation is drawn."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QGroupBox, QLabel, QVBoxLayout

if TYPE_CHECKING:  # pragma: no cover
    from tlstudio.ml.evaluation import Evaluation

#: (colour, legend) of the diagram's series: before the temperature, after it (or as
#: predicted when none was fitted)
BEFORE = ((190, 190, 190), "raw")
AFTER = ((33, 102, 172), "calibrated")
AS_IS = ((33, 102, 172), "as predicted")


def calibration_text(ev: Evaluation) -> str:
    """One or two lines: the ECE as predicted, before → after when a temperature was
    fitted, and what the numbers mean."""
    cal = ev.calibration
    if cal is None:
        return ""
    after, before = cal["after"], cal["before"]
    if before is not None:
        text = (
            f"Expected calibration error {before.ece:.3f} → {after.ece:.3f} with temperature "
            f"{cal['temperature']:.3g} (fitted on the val split)."
        )
    else:
        text = (
            f"Expected calibration error {after.ece:.3f}; no temperature fitted "
            "(too few val images, or a run from before calibration)."
        )
    return text + " 0 = its probabilities match how often it is right."


class CalibrationBox(QGroupBox):
    """Shows :attr:`Evaluation.calibration`; hidden for evaluations without it."""

    def __init__(self) -> None:
        super().__init__("Calibration")
        self.setObjectName("metricsCalibration")
        self.text = QLabel()
        self.text.setObjectName("calibrationText")
        self.text.setWordWrap(True)
        self._layout = QVBoxLayout(self)
        self._layout.addWidget(self.text)
        self.plot: Any = None
        #: (bin centre, accuracy) bars drawn per series name, for tests and tooltips
        self.bars: dict[str, list[tuple[float, float]]] = {}
        self.hide()

    def _ensure_plot(self) -> Any:
        if self.plot is None:
            from tlstudio.gui.plots.grid import lone_plot_widget

            w = lone_plot_widget("reliabilityPlot", "confidence", "accuracy")
            w.setMinimumSize(220, 160)
            w.setMouseEnabled(x=False, y=False)
            self._layout.addWidget(w, 1)
            self.plot = w
        return self.plot

    def show_evaluation(self, ev: Evaluation | None) -> None:
        """Draw ``ev``'s calibration, or hide the box."""
        self.bars = {}
        if ev is None or ev.calibration is None:
            self.hide()
            return
        import numpy as np
        import pyqtgraph as pg  # type: ignore[import-untyped]  # no stubs or py.typed

        self.show()
        self.text.setText(calibration_text(ev))
        w = self._ensure_plot()
        item = w.getPlotItem()
        item.clear()
        if item.legend is not None:
            item.legend.scene().removeItem(item.legend)
            item.legend = None
        legend = item.addLegend(offset=(5, 5), labelTextColor="k")
        cal = ev.calibration
        after = AFTER if cal["before"] is not None else AS_IS
        series = [(BEFORE, cal["before"], 0.8), (after, cal["after"], 0.5)]
        for (color, name), rel, width in series:
            if rel is None:
                continue
            edges = np.asarray(rel.bin_edges)
            centres = (edges[:-1] + edges[1:]) / 2
            step = float(edges[1] - edges[0])
            shown = [(float(c), float(a)) for c, a in zip(centres, rel.accuracy, strict=True)
                     if a is not None]  # fmt: skip
            self.bars[name] = shown
            if not shown:
                continue
            xs, hs = zip(*shown, strict=True)
            bar = pg.BarGraphItem(
                x=list(xs),
                height=list(hs),
                width=step * width,
                brush=pg.mkBrush(*color, 170),
                pen=pg.mkPen(color),
            )
            w.addItem(bar)
            legend.addItem(bar, f"{name} (ECE {rel.ece:.3f})")
        w.plot([0, 1], [0, 1], pen=pg.mkPen((120, 120, 120), width=1, style=Qt.PenStyle.DashLine))
        w.setXRange(0, 1, padding=0.02)
        w.setYRange(0, 1.02, padding=0)
