"""The metrics view's plot box: precision-recall curves (classify, detect), the
reconstruction-error histogram (autoencode) or a bar per point / class (landmarks,
segment). pyqtgraph is imported when the first evaluation is drawn."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QGroupBox, QVBoxLayout

from tlstudio.gui.inspect.metrics_format import format_value

if TYPE_CHECKING:  # pragma: no cover
    from tlstudio.ml.evaluation import Evaluation


class MetricsPlot(QGroupBox):
    """A titled box whose plot is made on the first :meth:`draw`.

    ``created`` comes once, when the plot widget was added (the box then wants room)."""

    created = Signal()

    def __init__(self) -> None:
        super().__init__("Precision-recall curves")
        self._layout = QVBoxLayout(self)
        self.plot: Any = None

    def clear(self) -> None:
        if self.plot is not None:
            self.plot.clear()

    def _ensure_plot(self) -> Any:
        if self.plot is None:
            import pyqtgraph as pg  # type: ignore[import-untyped]  # no stubs or py.typed

            w = pg.PlotWidget()
            w.setBackground("w")
            w.showGrid(x=True, y=True, alpha=0.2)
            for axis in ("left", "bottom"):
                w.getPlotItem().getAxis(axis).setTextPen("k")
                w.getPlotItem().getAxis(axis).setPen((120, 120, 120))
            w.setMinimumSize(260, 160)
            self._layout.addWidget(w)
            self.plot = w
            self.created.emit()
        return self.plot

    def draw(self, ev: Evaluation, colors: dict[str, str]) -> None:
        """Plot ``ev``; ``colors``: "#rrggbb" per class name."""
        import numpy as np
        import pyqtgraph as pg

        w = self._ensure_plot()
        item = w.getPlotItem()
        item.clear()
        if item.legend is not None:
            item.legend.scene().removeItem(item.legend)
            item.legend = None
        item.getAxis("bottom").setTicks(None)
        if ev.task in ("classify", "detect", "instances"):
            iou = {"detect": " (IoU ≥ .5)", "instances": " (mask IoU ≥ .5)"}.get(ev.task, "")
            self.setTitle("Precision-recall curves" + iou)
            item.addLegend(offset=(-5, -5), labelTextColor="k")
            ap_key = {"detect": "ap50", "instances": "segm_ap50"}.get(ev.task, "ap")
            ap = {row["name"]: row.get(ap_key) for row in ev.per_class}
            for name, (prec, rec) in ev.pr_curves.items():
                x, y = pr_steps(prec, rec)
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
            self.setTitle("Reconstruction error per image")
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
        self.setTitle(title)
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


def pr_steps(precision: Any, recall: Any) -> tuple[list[float], list[float]]:
    """Step outline of a precision-recall curve given per threshold (recall rising):
    from recall 0 at the first precision, each recall interval drawn at the precision
    of its right end (as scikit-learn's display draws it)."""
    xs, ys = [0.0], [float(precision[0])] if len(precision) else [1.0]
    for r, p in zip(recall, precision, strict=True):
        xs += [xs[-1], float(r)]
        ys += [float(p), float(p)]
    return xs, ys
