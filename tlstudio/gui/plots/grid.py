"""A grid of pyqtgraph plots that re-flows with its width: as many plots per row as fit
at :data:`MIN_PLOT_WIDTH` pixels each, one per row when even that does not fit. When the
plots do not fill the rows evenly, the first row holds the remainder, wider (so a loss
curve on top gets the whole width). Used by the Train panel's monitor and run history.

pyqtgraph is imported by :meth:`PlotGrid.add_plot`, not by this module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QSize
from PySide6.QtGui import QResizeEvent
from PySide6.QtWidgets import QHBoxLayout, QSizePolicy, QVBoxLayout, QWidget

if TYPE_CHECKING:  # pragma: no cover
    from pyqtgraph import PlotItem  # type: ignore[import-untyped]

MIN_PLOT_WIDTH = 300  # px: narrower plots crowd their tick labels
MIN_PLOT_HEIGHT = 110  # px
SPACING = 6  # px between plots
AXIS_WIDTH = 52  # px: fixed, so longer tick labels never re-lay out the scene on a redraw


def style_plot(plot: PlotItem, title: str, x_label: str = "epoch") -> None:
    """The look every training plot shares: white background, light grid, dark axes."""
    plot.setTitle(title)
    plot.showGrid(x=True, y=True, alpha=0.2)
    plot.setLabel("bottom", x_label)
    for axis in ("left", "bottom"):
        plot.getAxis(axis).setTextPen("k")
        plot.getAxis(axis).setPen((120, 120, 120))
    plot.getAxis("left").setWidth(AXIS_WIDTH)


def lone_plot_widget(name: str, x_label: str, y_label: str) -> Any:
    """A pyqtgraph PlotWidget on its own (not in a grid) with the training plots' look:
    white background, light grid, dark axes, both axes labelled. ``name``: its objectName."""
    import pyqtgraph as pg  # type: ignore[import-untyped]  # no stubs or py.typed

    widget = pg.PlotWidget()
    widget.setObjectName(name)
    widget.setBackground("w")
    item = widget.getPlotItem()
    item.showGrid(x=True, y=True, alpha=0.2)
    for axis in ("left", "bottom"):
        item.getAxis(axis).setTextPen("k")
        item.getAxis(axis).setPen((120, 120, 120))
    item.setLabel("bottom", x_label)
    item.setLabel("left", y_label)
    return widget


def columns_for(width: int, count: int, min_width: int = MIN_PLOT_WIDTH) -> int:
    """Plots per row for ``count`` plots in ``width`` pixels (at least 1)."""
    fit = (width + SPACING) // (min_width + SPACING)
    return max(1, min(count, fit))


class PlotGrid(QWidget):
    """Plots (one ``pyqtgraph.PlotWidget`` each) laid out in rows by the width."""

    def __init__(self, parent: QWidget | None = None, *, min_plot_width: int = MIN_PLOT_WIDTH):
        super().__init__(parent)
        self.min_plot_width = min_plot_width
        self._views: list[QWidget] = []
        self._columns = 0
        self._rows = QVBoxLayout(self)
        self._rows.setContentsMargins(0, 0, 0, 0)
        self._rows.setSpacing(SPACING)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    def add_plot(self, title: str, x_label: str = "epoch") -> PlotItem:
        """A new plot at the end of the grid, styled with :func:`style_plot`."""
        import pyqtgraph as pg  # type: ignore[import-untyped]

        view = pg.PlotWidget(background="w")
        view.setMinimumSize(160, MIN_PLOT_HEIGHT)
        view.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        plot: Any = view.getPlotItem()
        style_plot(plot, title, x_label)
        self._views.append(view)
        self._columns = 0  # re-flow
        self._reflow()
        return plot

    def plot_widgets(self) -> list[QWidget]:
        """The plots' widgets, in the order they were added."""
        return list(self._views)

    def columns(self) -> int:
        """Plots per full row now."""
        return self._columns

    def minimumSizeHint(self) -> QSize:
        rows = len(self._views)  # the narrowest layout: one plot per row
        return QSize(160, rows * MIN_PLOT_HEIGHT + max(0, rows - 1) * SPACING)

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._reflow()

    def _reflow(self) -> None:
        n = len(self._views)
        if not n:
            return
        columns = columns_for(self.width(), n, self.min_plot_width)
        if columns == self._columns:
            return
        self._columns = columns
        while self._rows.count():
            row = self._rows.takeAt(0)
            layout = row.layout() if row is not None else None
            if layout is not None:
                while layout.count():
                    layout.takeAt(0)
                layout.deleteLater()
        first = n % columns or columns
        start = 0
        for size in [first] + [columns] * ((n - first) // columns):
            row_layout = QHBoxLayout()
            row_layout.setSpacing(SPACING)
            for view in self._views[start : start + size]:
                row_layout.addWidget(view, 1)
            self._rows.addLayout(row_layout, 1)
            start += size
