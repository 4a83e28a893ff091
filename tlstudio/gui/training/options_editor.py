"""The training-options editor: one input per labelled
:class:`~tlstudio.ml.trainer.TrainConfig` field (epochs, batch size, learning rate…),
built from the fields' labels, ranges and help text. Fields without an input (momentum,
gradient clipping…) keep the values of the last :meth:`TrainOptionsEditor.set_config`.

Imports :mod:`tlstudio.ml.trainer` (torch) when built, not when imported.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QVBoxLayout, QWidget

from tlstudio.gui.training.setting_widgets import SettingsForm

if TYPE_CHECKING:  # pragma: no cover
    from tlstudio.ml.train_config import TrainConfig


class TrainOptionsEditor(QWidget):
    """``changed(name)`` names the field that changed (by the user or by code)."""

    changed = Signal(str)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        from tlstudio.ml.train_config import TrainConfig

        self._base: TrainConfig = TrainConfig()
        self.form = SettingsForm(TrainConfig)
        self.form.set_values(self._base)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 6, 8, 8)
        layout.addWidget(self.form)
        self.form.changed.connect(self.changed)

    def config(self) -> TrainConfig:
        """The last :meth:`set_config` value with the inputs' values."""
        return dataclasses.replace(self._base, **self.form.values())

    def set_config(self, config: TrainConfig) -> None:
        self._base = dataclasses.replace(config)
        self.form.set_values(config)

    def widget(self, name: str) -> QWidget:
        return self.form.widget(name)
