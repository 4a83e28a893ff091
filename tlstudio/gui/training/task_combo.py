"""The task menu, from the task registry: tasks the project has no labels for are
greyed out with the reason."""

from __future__ import annotations

from collections.abc import Mapping

from PySide6.QtCore import Qt
from PySide6.QtGui import QBrush, QColor, QStandardItemModel
from PySide6.QtWidgets import QComboBox, QWidget

from tlstudio.ml.tasks.registry import TASKS, task_info

TIP = "What the model learns; tasks without the labels they need are greyed out"


class TaskCombo(QComboBox):
    """Every registered task by its plain label; ``currentData()`` is the task's name."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("taskCombo")
        for info in TASKS:
            self.addItem(info.label, info.name)
        self.setMinimumContentsLength(12)
        self.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.setToolTip(TIP)

    def set_reasons(self, reasons: Mapping[str, str | None]) -> None:
        """Grey out the tasks with a reason (why they cannot train), showing it."""
        model = self.model()
        assert isinstance(model, QStandardItemModel)
        for i in range(self.count()):
            info = task_info(self.itemData(i))
            reason = reasons.get(info.name)
            item = model.item(i)
            item.setEnabled(reason is None)
            item.setText(info.label + (f" — {reason}" if reason else ""))
            item.setData(reason or f"Needs {info.needs}.", Qt.ItemDataRole.ToolTipRole)
            if reason:
                item.setForeground(QBrush(QColor("#9e9e9e")))
            else:
                item.setData(None, Qt.ItemDataRole.ForegroundRole)
        self.setToolTip(reasons.get(self.currentData()) or TIP)
