"""The metrics view's confusion matrix model: C×C counts coloured by each cell's share
of its row (blue on the diagonal, red off it)."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QObject, QPersistentModelIndex, Qt
from PySide6.QtGui import QColor, QFont

#: colours of the confusion matrix: correct (diagonal) and confused (off-diagonal)
DIAGONAL_RGB = (33, 102, 172)
OFF_DIAGONAL_RGB = (214, 96, 77)


def _blend(rgb: tuple[int, int, int], t: float) -> QColor:
    """White blended towards ``rgb`` by ``t`` in [0, 1]."""
    t = min(max(t, 0.0), 1.0)
    return QColor(*(round(255 + (c - 255) * t) for c in rgb))


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

    def rowCount(
        self,
        parent: QModelIndex | QPersistentModelIndex = QModelIndex(),  # noqa: B008
    ) -> int:
        return 0 if parent.isValid() else len(self.matrix)

    def columnCount(
        self,
        parent: QModelIndex | QPersistentModelIndex = QModelIndex(),  # noqa: B008
    ) -> int:
        return 0 if parent.isValid() else len(self.matrix)

    def data(
        self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
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
