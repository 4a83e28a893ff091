"""The Train panel's Quick view: one plain-language question that picks a training
strategy, the estimated training time on this computer and what the images are. The
task and the Train button sit above it, shared with the full view ("All settings…");
both views edit the same configuration.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QButtonGroup,
    QFrame,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QRadioButton,
    QVBoxLayout,
    QWidget,
)

#: (preset name, the answer in a few words, the answer in full with what it means and costs)
CHOICES: tuple[tuple[str, str, str], ...] = (
    ("feature_extraction", "Few images, like everyday photos",
     "Tens of images per class, of things a camera sees every day. Feature extraction: the "
     "pretrained network stays as it is and only a small final layer learns. The fastest "
     "(each image goes through the network once) and the safest with few images."),
    ("fine_tune_top", "Hundreds of images, or unlike photos",
     "A few hundred images per class, or images unlike photos (scans, micrographs). "
     "Fine-tuning of the top stages: the last two stages of the network adapt to your "
     "images, which are varied (flipped, turned, zoomed) as it learns. Several times "
     "slower; usually more accurate."),
    ("full", "Thousands of images, unlike photos",
     "A thousand or more images per class that look nothing like photos. Full "
     "fine-tuning: every layer adapts. The slowest, and with few images it learns them by "
     "heart instead of learning what matters."),
)  # fmt: skip
QUESTION = "How much data do you have, and how different is it from everyday photos?"


def _label(text: str, style: str = "", name: str = "") -> QLabel:
    label = QLabel(text)
    label.setWordWrap(True)
    label.setTextFormat(Qt.TextFormat.PlainText)
    if style:
        label.setStyleSheet(style)
    if name:
        label.setObjectName(name)
    return label


class QuickView(QWidget):
    """``preset_chosen(name)`` when the user picks an answer; ``measure_requested`` when
    they ask to time the backbone on this computer."""

    preset_chosen = Signal(str)
    measure_requested = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("quickView")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.setSpacing(6)
        question = _label(QUESTION, "font-weight: bold;")
        layout.addWidget(question)
        self.group = QButtonGroup(self)
        self.radios: dict[str, QRadioButton] = {}
        for name, answer, meaning in CHOICES:
            radio = QRadioButton(answer)
            radio.setObjectName(f"quick_{name}")
            radio.setToolTip(meaning)
            # a radio button's text does not wrap: a few words, the rest below it
            self.group.addButton(radio)
            self.radios[name] = radio
            radio.toggled.connect(lambda on, n=name: self._toggled(n, on))
            layout.addWidget(radio)
            detail = _label(meaning, "color: #555; margin-left: 22px;")
            layout.addWidget(detail)
        self.custom_note = _label(
            "Your settings match none of these answers: see All settings…",
            "color: #8a5a00;",
            "quickCustomNote",
        )
        layout.addWidget(self.custom_note)

        line = QFrame()
        line.setFrameShape(QFrame.Shape.HLine)
        line.setFrameShadow(QFrame.Shadow.Sunken)
        layout.addWidget(line)
        layout.addWidget(_label("Estimated training time", "font-weight: bold;"))
        self.estimate_label = _label("", name="estimateLabel")
        layout.addWidget(self.estimate_label)
        self.measure_button = QPushButton("Time the backbone on this computer")
        self.measure_button.setObjectName("quickMeasureButton")
        self.measure_button.setToolTip(
            "Times a forward pass of the chosen backbone on this computer's CPU (a few "
            "seconds), so the estimate uses this computer's speed"
        )
        self.measure_button.clicked.connect(self.measure_requested)
        row = QHBoxLayout()
        row.addWidget(self.measure_button)
        row.addStretch(1)
        layout.addLayout(row)
        layout.addWidget(_label("Images", "font-weight: bold;"))
        self.data_label = _label("", name="quickDataLabel")
        layout.addWidget(self.data_label)
        layout.addStretch(1)
        self._applying = False

    def set_preset(self, name: str) -> None:
        """Show ``name``'s answer as chosen (none for other strategies)."""
        self._applying = True
        try:
            self.group.setExclusive(False)
            for key, radio in self.radios.items():
                radio.setChecked(key == name)
            self.group.setExclusive(True)
        finally:
            self._applying = False
        self.custom_note.setVisible(name not in self.radios)

    def chosen(self) -> str | None:
        return next((k for k, r in self.radios.items() if r.isChecked()), None)

    def set_estimate(self, text: str, measurable: bool) -> None:
        self.estimate_label.setText(text)
        self.measure_button.setVisible(measurable)

    def set_data_summary(self, text: str) -> None:
        self.data_label.setText(text)

    def set_editable(self, editable: bool) -> None:
        for radio in self.radios.values():
            radio.setEnabled(editable)
        self.measure_button.setEnabled(editable)

    def _toggled(self, name: str, on: bool) -> None:
        if on and not self._applying:
            self.custom_note.hide()
            self.preset_chosen.emit(name)
