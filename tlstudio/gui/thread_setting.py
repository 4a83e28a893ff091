"""The window's "CPU threads" setting (Edit → CPU threads…): how many threads training,
prediction and the other model work may use, kept in QSettings and handed to the
process's thread budget (:mod:`tlstudio.runtime.threads`) when the window starts and
whenever it is changed. 0 means automatic: one core fewer than the machine has."""

from __future__ import annotations

import sys

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QSpinBox, QVBoxLayout, QWidget

from tlstudio.runtime.threads import ThreadBudget, available_cores, configure, default_threads

THREADS_KEY = "performance/threads"


def stored_threads(settings: QSettings) -> int:
    """The setting (0 = automatic; anything unreadable counts as automatic)."""
    raw = settings.value(THREADS_KEY, 0)
    if not isinstance(raw, int | float | str):  # e.g. None or a list: int() fails
        return 0
    try:
        value = int(raw)
    except (TypeError, ValueError):
        return 0
    return max(0, value)


def apply_thread_setting(settings: QSettings) -> ThreadBudget:
    """Make the stored setting the process's thread budget (for the jobs started next).
    Once torch is loaded it gets the budget at once: threads started later (Grad-CAM,
    the latent map, the anomaly ranking apply no budget themselves) begin with torch's
    current count; a training or prediction already running keeps its own."""
    budget = configure(stored_threads(settings) or None, gui=True)
    if "torch" in sys.modules:  # never import torch here: the window starts without it
        from tlstudio.ml.threads import apply

        apply(budget)
    return budget


class ThreadsDialog(QDialog):
    """Asks for the number of CPU threads; OK stores and applies it."""

    def __init__(self, settings: QSettings, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("threadsDialog")
        self.setWindowTitle("CPU threads")
        self.settings = settings
        cores = available_cores()
        auto = default_threads(cores, gui=True)
        text = QLabel(
            f"Threads that training, prediction and the other model work may use at once. "
            f"This computer has {cores} core{'s' if cores != 1 else ''}; automatic uses "
            f"{auto}, leaving one for the window. On a machine shared with other work, "
            "fewer threads are often faster. Applies to the work started from now on."
        )
        text.setWordWrap(True)
        text.setMinimumWidth(400)  # wrapped text gets the height it needs at this width
        self.spin = QSpinBox()
        self.spin.setObjectName("threadsSpin")
        self.spin.setRange(0, max(64, 4 * cores))
        self.spin.setSpecialValueText(f"Automatic ({auto})")
        self.spin.setSuffix(" threads")
        self.spin.setValue(stored_threads(settings))
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addWidget(text)
        lay.addWidget(self.spin)
        lay.addWidget(buttons)

    def accept(self) -> None:
        self.settings.setValue(THREADS_KEY, self.spin.value())
        apply_thread_setting(self.settings)
        super().accept()
