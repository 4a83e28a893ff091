"""Layouts that fit a laptop: they re-arrange with the width instead of growing the
window or needing sideways scrolling.

Each widget reports the minimum size of its *narrowest* arrangement and switches to a
wider one only when the width is above that arrangement's own minimum, so the window
never has to grow and shrinking it always gets back to the narrow arrangement.
"""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QResizeEvent
from PySide6.QtWidgets import (
    QBoxLayout,
    QFrame,
    QGridLayout,
    QScrollArea,
    QSizePolicy,
    QStyle,
    QWidget,
)

SLACK_PX = 24  # room above a wider arrangement's minimum before switching to it


class VerticalScrollArea(QScrollArea):
    """Scrolls up and down only: its minimum width is its content's minimum width, so the
    content is never clipped at the side nor needs a horizontal scroll bar."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)

    def minimumSizeHint(self) -> QSize:
        content = self.widget()
        bar = self.style().pixelMetric(QStyle.PixelMetric.PM_ScrollBarExtent)
        width = (content.minimumSizeHint().width() if content is not None else 0) + bar + 4
        return QSize(width, 120)

    def sizeHint(self) -> QSize:
        hint = super().sizeHint()
        return QSize(max(hint.width(), self.minimumSizeHint().width()), hint.height())


class Columns(QWidget):
    """Two columns side by side when both fit (and the width is at least ``min_width``,
    below which side by side squeezes them), else the second below the first."""

    def __init__(
        self, first: QWidget, second: QWidget, parent: QWidget | None = None, *,
        min_width: int = 0,
    ):  # fmt: skip
        super().__init__(parent)
        self.first, self.second = first, second
        self.min_width = min_width
        self._box = QBoxLayout(QBoxLayout.Direction.TopToBottom, self)
        self._box.setContentsMargins(0, 0, 0, 0)
        self._box.setSpacing(8)
        self._box.addWidget(first, 1)
        self._box.addWidget(second, 0)

    def side_by_side(self) -> bool:
        return self._box.direction() == QBoxLayout.Direction.LeftToRight

    def _wide_minimum(self) -> int:
        return (
            self.first.minimumSizeHint().width()
            + self.second.minimumSizeHint().width()
            + self._box.spacing()
        )

    def minimumSizeHint(self) -> QSize:
        width = max(self.first.minimumSizeHint().width(), self.second.minimumSizeHint().width())
        return QSize(width, super().minimumSizeHint().height())

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        wide = self.width() >= max(self._wide_minimum() + SLACK_PX, self.min_width)
        if wide != self.side_by_side():
            self._box.setDirection(
                QBoxLayout.Direction.LeftToRight if wide else QBoxLayout.Direction.TopToBottom
            )
            self.second.setSizePolicy(
                QSizePolicy.Policy.Fixed if wide else QSizePolicy.Policy.Preferred,
                QSizePolicy.Policy.Preferred,
            )


class ReflowGrid(QWidget):
    """Cells of (label, input) pairs in as many side-by-side columns as fit, up to
    ``max_columns``, filled row by row."""

    def __init__(self, max_columns: int = 2, parent: QWidget | None = None):
        super().__init__(parent)
        self.max_columns = max_columns
        self._cells: list[tuple[QWidget | None, QWidget]] = []
        self._columns = 0
        self._grid = QGridLayout(self)
        self._grid.setContentsMargins(0, 0, 0, 0)
        self._grid.setHorizontalSpacing(8)
        self._grid.setVerticalSpacing(4)

    def add_cell(self, label: QWidget | None, field: QWidget) -> None:
        """A cell: ``label`` (None: ``field`` takes the cell's whole width) and ``field``."""
        for w in (label, field):
            if w is not None:
                w.setParent(self)
        self._cells.append((label, field))
        self._place(max(1, self._columns or 1), force=True)

    def cells(self) -> Sequence[tuple[QWidget | None, QWidget]]:
        return list(self._cells)

    def columns(self) -> int:
        return self._columns

    def _cell_width(self) -> int:
        widest = 0
        for label, field in self._cells:
            w = field.minimumSizeHint().width()
            if label is not None:
                w += label.minimumSizeHint().width() + self._grid.horizontalSpacing()
            widest = max(widest, w)
        return widest

    def minimumSizeHint(self) -> QSize:
        return QSize(self._cell_width(), super().minimumSizeHint().height())

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        cell = self._cell_width() + 3 * self._grid.horizontalSpacing()
        fit = max(1, (self.width() - SLACK_PX) // max(cell, 1))
        self._place(min(self.max_columns, fit))

    def _place(self, columns: int, force: bool = False) -> None:
        if columns == self._columns and not force:
            return
        self._columns = columns
        grid = self._grid
        while grid.count():
            grid.takeAt(0)
        for c in range(2 * self.max_columns):
            grid.setColumnStretch(c, 0)
        for i, (label, field) in enumerate(self._cells):
            row, col = divmod(i, columns)
            if label is None:
                grid.addWidget(field, row, 2 * col, 1, 2)
            else:
                grid.addWidget(label, row, 2 * col)
                grid.addWidget(field, row, 2 * col + 1)
        for col in range(columns):
            grid.setColumnStretch(2 * col + 1, 1)
