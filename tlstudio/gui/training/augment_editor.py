"""The augmentation editor: a master switch and one input per
:class:`~tlstudio.ml.transforms.AugmentConfig` field, built from the fields' labels and
help text. :meth:`AugmentEditor.config` is None while the switch is off.

Imports :mod:`tlstudio.ml.transforms` (torch) when built, not when imported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QCheckBox, QVBoxLayout, QWidget

from tlstudio.gui.training.setting_widgets import SettingsForm

if TYPE_CHECKING:  # pragma: no cover
    from tlstudio.ml.transforms import AugmentConfig


class AugmentEditor(QWidget):
    """Switch + options. ``changed`` follows every edit (by the user or by code)."""

    changed = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        from tlstudio.ml.transforms import AugmentConfig

        self._config_type = AugmentConfig
        self._editable = True
        self.switch = QCheckBox("Augment training images")
        self.switch.setObjectName("augmentSwitch")
        self.switch.setToolTip(
            "Master switch: off trains on the images exactly as they are (and, with a frozen "
            "backbone, allows the cached-features fast path)"
        )
        self.form = SettingsForm(AugmentConfig)
        self.form.set_values(AugmentConfig())
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        layout.addWidget(self.switch, 0, Qt.AlignmentFlag.AlignLeft)  # as wide as its text
        layout.addWidget(self.form)
        self.switch.toggled.connect(self._switched)
        self.form.changed.connect(lambda _name: self.changed.emit())
        self._sync()

    def config(self) -> AugmentConfig | None:
        """The augmentation to train with; None when the switch is off."""
        return self.options() if self.switch.isChecked() else None

    def options(self) -> AugmentConfig:
        """The options' values, whether the switch is on or not."""
        return self._config_type(**self.form.values())

    def set_config(self, config: AugmentConfig | None) -> None:
        """Switch on with ``config``'s values, or off (None; the options keep theirs)."""
        if config is not None:
            self.form.set_values(config)
        self.switch.setChecked(config is not None)

    def set_task(self, task: str) -> None:
        """Mix-up and CutMix apply to classification only."""
        self.form.set_task(task)

    def set_editable(self, editable: bool) -> None:
        """While a run trains nothing can be changed."""
        self._editable = editable
        self.switch.setEnabled(editable)
        self._sync()

    def _switched(self, _on: bool) -> None:
        self._sync()
        self.changed.emit()

    def _sync(self) -> None:
        self.form.setEnabled(self._editable and self.switch.isChecked())
