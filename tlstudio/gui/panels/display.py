"""The display dock: mask opacity and visibility, and the window/level used to show
16-bit and DICOM images (in the image's own units, e.g. HU after DICOM rescale),
with presets by modality (CT windows in HU, the DICOM header's windows, default,
full range) in a combo box here and in :attr:`DisplayPanel.preset_menu` with keys."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QMenu,
    QPushButton,
    QSlider,
    QWidget,
)

from tlstudio.gui.canvas import CanvasView
from tlstudio.gui.canvas.window_level import CT_PRESET_ITEMS, Preset, window_label
from tlstudio.gui.state import AppState
from tlstudio.gui.widgets.wheel_guard import guard_wheel

SPIN_RANGE = 1e9
CUSTOM = "Custom"  # the combo's entry while the window matches no preset


class DisplayPanel(QWidget):
    """Drives the canvas's mask overlay and window/level; follows ``window_changed`` back."""

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
        self.color_by_object = QCheckBox("Colour by object")
        self.color_by_object.setObjectName("colorByObject")
        self.color_by_object.setToolTip(
            "Fill and outline each object in a colour of its own, so touching objects of one "
            "class read as separate objects (off: in their class colour)"
        )
        self.color_by_object.toggled.connect(canvas.set_color_by_object)

        self.center = QDoubleSpinBox()
        self.width_ = QDoubleSpinBox()
        for spin in (self.center, self.width_):
            spin.setRange(-SPIN_RANGE, SPIN_RANGE)
            spin.setDecimals(1)
            spin.setKeyboardTracking(False)  # apply when typing is done, not per digit
            spin.valueChanged.connect(self._window_edited)
        self.width_.setMinimum(1e-3)
        self.preset = QComboBox()
        self.preset.setObjectName("windowPreset")
        self.preset.setToolTip(
            "Window presets: CT windows (HU) for CT images, the windows named in the DICOM "
            "header, the image's default and its full range (keys: Help → Keyboard shortcuts)"
        )
        self.preset.activated.connect(self._preset_picked)
        self.default_button = QPushButton("Default")
        self.default_button.setToolTip("The window from the file header (DICOM) or the data")
        self.default_button.clicked.connect(self.reset_window)
        self.full_button = QPushButton("Full range")
        self.full_button.setToolTip("From the image's lowest to its highest value")
        self.full_button.clicked.connect(self.full_window)
        self.preset_menu = QMenu("Window &preset", self)
        self._presets: list[Preset] = []

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
        buttons = QHBoxLayout()
        buttons.addWidget(self.default_button)
        buttons.addWidget(self.full_button)
        form = QFormLayout(self)
        form.addRow("Mask opacity:", row)
        form.addRow(self.show_mask)
        form.addRow(self.color_by_object)
        for box in self.layer_boxes:
            form.addRow(box)
        form.addRow("Window preset:", self.preset)
        form.addRow("Window centre:", self.center)
        form.addRow("Window width:", self.width_)
        form.addRow("", buttons)
        guard_wheel(self)

        canvas.window_changed.connect(self.show_window)
        # until the pixels are there, there is nothing to window
        canvas.image_loaded.connect(self._sync_window_controls)
        app_state.image_changed.connect(self._sync_window_controls)
        self._sync_window_controls()
        canvas.set_mask_opacity(self.opacity.value() / 100)

    # -- window / level ------------------------------------------------------------------
    def _sync_window_controls(self, _image_id: object = None) -> None:
        """Show the canvas's window and the image's presets; enabled once pixels are
        shown and only beyond 8 bits (the canvas may load before or after this hears
        of the new image)."""
        self._presets = self.canvas.window_level.presets()
        self._fill_combo()
        self._fill_menu()
        current = self.canvas.display_window()
        if current is not None:
            self.show_window(*current)
        enabled = self.canvas.image_ready and self.canvas.window_level.can_window()
        for w in (self.center, self.width_, self.preset, self.default_button, self.full_button):
            w.setEnabled(enabled)

    def _fill_combo(self) -> None:
        self.preset.blockSignals(True)
        self.preset.clear()
        self.preset.addItem(CUSTOM)
        for p in self._presets:
            self.preset.addItem(p.label, p)
        self.preset.blockSignals(False)

    def _fill_menu(self) -> None:
        """CT presets always listed (disabled unless the image is in HU), then this
        image's header windows, default and full range; each with its key."""
        menu = self.preset_menu
        menu.clear()  # deletes the actions it owns
        shown = {p.label: p for p in self._presets}
        for p in (*CT_PRESET_ITEMS, None, *(q for q in self._presets if q.kind != "ct")):
            if p is None:
                menu.addSeparator()
                continue
            act = QAction(p.label, menu)
            if p.key:
                act.setShortcut(QKeySequence(p.key))
            act.setEnabled(p.label in shown)
            if p.kind == "ct" and p.label not in shown:
                act.setToolTip("Only for CT images whose values are Hounsfield units")
            act.triggered.connect(lambda _=False, p=p: self.apply_preset(p))
            menu.addAction(act)
        menu.setToolTipsVisible(True)

    def apply_preset(self, preset: Preset) -> None:
        """Show the window of ``preset`` (kept for the image, except the default)."""
        self.canvas.window_level.apply(preset)

    def _preset_picked(self, index: int) -> None:
        preset = self.preset.itemData(index)
        if isinstance(preset, Preset):
            self.apply_preset(preset)

    def _opacity_changed(self, value: int) -> None:
        self.opacity_label.setText(f"{value} %")
        self.canvas.set_mask_opacity(value / 100)

    def show_window(self, center: float, width: float) -> None:
        """Show the canvas's window without sending it back; the combo names its preset."""
        for spin, v in ((self.center, center), (self.width_, width)):
            spin.blockSignals(True)
            spin.setValue(v)
            spin.blockSignals(False)
        index = 0
        for i, p in enumerate(self._presets, start=1):
            if p.window == (center, width):
                index = i
                break
        if not self._presets:  # 8-bit, or no pixels yet: nothing to choose
            text = "—"
        else:
            text = CUSTOM if index else window_label(CUSTOM, (center, width))
        self.preset.setItemText(0, text)
        self.preset.setCurrentIndex(index)

    def _window_edited(self, _value: float) -> None:
        self.canvas.set_window(self.center.value(), self.width_.value())

    def reset_window(self) -> None:
        self.canvas.reset_window()

    def full_window(self) -> None:
        for p in self._presets:
            if p.kind == "full":
                self.apply_preset(p)
