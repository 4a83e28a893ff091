"""Help → Keyboard shortcuts: every key the window, the canvas tools and the browser know."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)


class ShortcutsDialog(QDialog):
    """A table of (section, keys, what it does), sections in the given order."""

    def __init__(self, entries: list[tuple[str, str, str]], parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Keyboard shortcuts")
        self.resize(560, 620)
        self.entries = entries
        self.table = QTableWidget(0, 2)
        self.table.setHorizontalHeaderLabels(["Keys", "Action"])
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setSelectionMode(QTableWidget.SelectionMode.NoSelection)
        self.table.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        bold = QFont()
        bold.setBold(True)
        section = None
        for sec, keys, what in entries:
            if sec != section:
                section = sec
                r = self.table.rowCount()
                self.table.insertRow(r)
                head = QTableWidgetItem(sec)
                head.setFont(bold)
                self.table.setItem(r, 0, head)
                self.table.setSpan(r, 0, 1, 2)
            r = self.table.rowCount()
            self.table.insertRow(r)
            self.table.setItem(r, 0, QTableWidgetItem(keys))
            self.table.setItem(r, 1, QTableWidgetItem(what))
        self.table.resizeColumnToContents(0)
        self.table.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.close)
        lay = QVBoxLayout(self)
        lay.addWidget(self.table)
        lay.addWidget(buttons)

    def text(self) -> str:
        """All rows as text (for tests and copying)."""
        t = self.table
        lines = []
        for r in range(t.rowCount()):
            cells = [item.text() for c in range(2) if (item := t.item(r, c)) is not None]
            lines.append("\t".join(cells))
        return "\n".join(lines)
