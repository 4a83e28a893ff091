"""The display dock: mask opacity and visibility, and the window/level used to show
16-bit and DICOM images (in the image's own units, e.g. HU after DICOM rescale)."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction
from PySide6.QtWidgets import (
    QCheckBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSlider,
    QWidget,
)

from tlstudio.core.errors import TlsError
from tlstudio.gui.canvas import CanvasView
from tlstudio.gui.state import AppState

SPIN_RANGE = 1e9


def full_range(bit_depth: int) -> tuple[float, float]:
    """(center, width) covering every value of an unsigned ``bit_depth``-bit container."""
    top = float(2**bit_depth) if bit_depth < 32 else 2.0**32
    return top / 2, top


class DisplayPanel(QWidget):
    """Drives the canvas's ``set_mask_opacity``, ``set_mask_visible``, ``set_window``
    and ``reset_window``; follows ``window_changed`` back."""

    def __init__(
        self,
        app_state: AppState,
        canvas: CanvasView,
        show_mask_action: QAction | None = None,
        parent: QWidget | None = None,
    ):
        super().__init__(parent)
        self.app_state = app_state
        self.canvas = canvas
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setObjectName("maskOpacity")
        self.opacity.setRange(0, 100)
        self.opacity.setValue(50)
        self.opacity_label = QLabel("50 %")
        self.opacity.valueChanged.connect(self._opacity_changed)
        self.show_mask = QCheckBox("Show mask")
        self.show_mask.setChecked(True)
        self.show_mask_action = show_mask_action
        if show_mask_action is not None:  # one state, two controls
            self.show_mask.setChecked(show_mask_action.isChecked())
            self.show_mask.toggled.connect(show_mask_action.setChecked)
            show_mask_action.toggled.connect(self.show_mask.setChecked)
        self.show_mask.toggled.connect(canvas.annotations.set_mask_visible)

        self.center = QDoubleSpinBox()
        self.width_ = QDoubleSpinBox()
        for spin in (self.center, self.width_):
            spin.setRange(-SPIN_RANGE, SPIN_RANGE)
            spin.setDecimals(1)
            spin.setKeyboardTracking(False)  # apply when typing is done, not per digit
            spin.valueChanged.connect(self._window_edited)
        self.width_.setMinimum(1e-3)
        self.default_button = QPushButton("Default")
        self.default_button.setToolTip("The window from the file header (DICOM) or the data")
        self.default_button.clicked.connect(self.reset_window)
        self.full_button = QPushButton("Full range")
        self.full_button.setToolTip("From the image's lowest to its highest value")
        self.full_button.clicked.connect(self.full_window)

        self.layer_boxes: list[QCheckBox] = []
        layers = canvas.annotations
        for text, slot in (("Show boxes", layers.set_boxes_visible),
                           ("Show landmarks", layers.set_landmarks_visible)):  # fmt: skip
            box = QCheckBox(text)
            box.setChecked(True)
            box.toggled.connect(slot)
            self.layer_boxes.append(box)

        row = QHBoxLayout()
        row.addWidget(self.opacity, 1)
        row.addWidget(self.opacity_label)
        presets = QHBoxLayout()
        presets.addWidget(self.default_button)
        presets.addWidget(self.full_button)
        form = QFormLayout(self)
        form.addRow("Mask opacity:", row)
        form.addRow(self.show_mask)
        for box in self.layer_boxes:
            form.addRow(box)
        form.addRow("Window centre:", self.center)
        form.addRow("Window width:", self.width_)
        form.addRow("Presets:", presets)

        canvas.window_changed.connect(self.show_window)
        # until the pixels are there, there is nothing to window
        canvas.image_loaded.connect(self._sync_window_controls)
        app_state.image_changed.connect(self._sync_window_controls)
        self._sync_window_controls()
        canvas.set_mask_opacity(self.opacity.value() / 100)

    def _sync_window_controls(self, _image_id: object = None) -> None:
        """Show the canvas's window; enabled once pixels are shown and only beyond 8 bits
        (the canvas may load before or after this hears of the new image)."""
        current = self.canvas.display_window()
        if current is not None:
            self.show_window(*current)
        self._enable_window(self.canvas.image_ready and self.canvas.can_window())

    def _enable_window(self, enabled: bool) -> None:
        for w in (self.center, self.width_, self.default_button, self.full_button):
            w.setEnabled(enabled)

    def _opacity_changed(self, value: int) -> None:
        self.opacity_label.setText(f"{value} %")
        self.canvas.set_mask_opacity(value / 100)

    def show_window(self, center: float, width: float) -> None:
        """Show the canvas's window without sending it back."""
        for spin, v in ((self.center, center), (self.width_, width)):
            spin.blockSignals(True)
            spin.setValue(v)
            spin.blockSignals(False)

    def _window_edited(self, _value: float) -> None:
        self.canvas.set_window(self.center.value(), self.width_.value())

    def reset_window(self) -> None:
        self.canvas.reset_window()

    def full_window(self) -> None:
        project, image_id = self.app_state.project, self.app_state.image_id
        if project is None or image_id is None:
            return
        try:
            rec = project.image(image_id)
        except TlsError:
            return
        rng = self.canvas.data_range()  # the canvas knows the real values
        if rng is not None:
            lo, hi = rng
            center, width = (lo + hi) / 2, max(hi - lo, 1.0)
        else:
            center, width = full_range(rec.bit_depth)
        self.show_window(center, width)
        self.canvas.set_window(center, width)
