"""The Train panel's full view ("All settings…"): strategy presets, backbone and
weights, freeze depth, training options (folded), augmentation with its preview and the
images per split, in two columns when they fit and one otherwise. It only builds and
lays out the widgets; :class:`~tlstudio.gui.training.config_panel.TrainConfigPanel`
connects and reads them.

Built after the ML modules are imported (the backbone table and the editors use them).
"""

from __future__ import annotations

from PySide6.QtCore import QSettings, Qt
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from tlstudio.core.project_facts import ProjectFacts
from tlstudio.gui.training.adapt_row import AdaptRow
from tlstudio.gui.training.augment_editor import AugmentEditor
from tlstudio.gui.training.augment_preview import AugmentPreview, PreviewRequest
from tlstudio.gui.training.backbone_table import BackboneTable
from tlstudio.gui.training.freeze_strip import FreezeStrip
from tlstudio.gui.training.ml_loader import MlLoader
from tlstudio.gui.training.options_editor import TrainOptionsEditor
from tlstudio.gui.training.reflow import Columns
from tlstudio.gui.training.split_summary import SplitSummary
from tlstudio.ml.presets import CUSTOM, PRESETS
from tlstudio.ml.tasks.registry import task_info

SIDE_BY_SIDE_PX = 980  # narrower, two columns squeeze the stage boxes and the tables
FAST_PATH_TEXT = (
    "Backbone frozen and no augmentation: features are computed once and cached; "
    "epochs train only the head (fast)."
)


def group(title: str) -> tuple[QGroupBox, QVBoxLayout]:
    box = QGroupBox(title)
    layout = QVBoxLayout(box)
    layout.setContentsMargins(8, 6, 8, 8)
    layout.setSpacing(6)
    return box, layout


def note(name: str, style: str) -> QLabel:
    """A word-wrapped label for remarks (``style``: its style sheet)."""
    label = QLabel()
    label.setObjectName(name)
    label.setWordWrap(True)
    label.setStyleSheet(style)
    return label


class FullView(QWidget):
    """Every setting of a run (see the module docstring)."""

    def __init__(self, settings: QSettings | None, parent: QWidget | None = None):
        super().__init__(parent)
        self.preset_combo = QComboBox()
        self.preset_combo.setObjectName("presetCombo")
        for preset in PRESETS:
            self.preset_combo.addItem(preset.label, preset.name)
            self.preset_combo.setItemData(
                self.preset_combo.count() - 1, preset.tip, Qt.ItemDataRole.ToolTipRole
            )
        self.preset_combo.addItem("Custom", CUSTOM)
        self.preset_combo.setToolTip(
            "A strategy fills in freeze depth, learning rate, epochs and augmentation; "
            "editing any of them afterwards makes it Custom"
        )
        self.preset_note = note("presetNote", "color: palette(mid);")
        row = QHBoxLayout()
        row.addWidget(QLabel("Strategy"))
        row.addWidget(self.preset_combo, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        layout.addWidget(self.preset_note)
        columns = Columns(self._left(settings), self._right(), min_width=SIDE_BY_SIDE_PX)
        layout.addWidget(columns, 1)

    def _left(self, settings: QSettings | None) -> QWidget:
        """Backbone, freeze depth, training options."""
        self.backbone_table = BackboneTable(settings, statuses=MlLoader.statuses)
        backbone_box, bl = group("Backbone")
        bl.addWidget(self.backbone_table)
        self.freeze_strip = FreezeStrip()
        self.fast_path_label = note(
            "fastPathLabel",
            "background: #e8f5e9; color: #1b5e20; border: 1px solid #a5d6a7;"
            " border-radius: 4px; padding: 4px;",
        )
        self.fast_path_label.setText(FAST_PATH_TEXT)
        freeze_box, fl = group("Freeze depth")
        fl.addWidget(self.freeze_strip)
        fl.addWidget(self.fast_path_label)
        self.advanced_button = QToolButton()
        self.advanced_button.setObjectName("advancedButton")
        self.advanced_button.setText("Advanced settings")
        self.advanced_button.setCheckable(True)
        self.advanced_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.advanced_button.setArrowType(Qt.ArrowType.RightArrow)
        self.advanced_button.setStyleSheet("QToolButton { border: none; font-weight: bold; }")
        self.advanced_button.toggled.connect(self._toggle_advanced)
        self.options_editor = TrainOptionsEditor()
        self.smoothing_spin = QDoubleSpinBox()
        self.smoothing_spin.setRange(0, 0.5)
        self.smoothing_spin.setSingleStep(0.05)
        self.smoothing_spin.setToolTip(
            "Classification only: soften the one-hot targets by this much so the model is "
            "less overconfident."
        )
        form = self.options_editor.form
        self.smoothing_label = form.add_row("Label smoothing", self.smoothing_spin)
        self.input_spin = QSpinBox()
        self.input_spin.setRange(0, 1024)
        self.input_spin.setSingleStep(32)
        self.input_spin.setSuffix(" px")
        self.input_spin.setToolTip(
            "Side of the square network input in pixels; larger sees more detail but is slower."
        )
        form.add_row("Input size", self.input_spin)
        self.advanced = QGroupBox()
        al = QVBoxLayout(self.advanced)
        al.setContentsMargins(0, 0, 0, 0)
        al.addWidget(self.options_editor)
        self.advanced.setVisible(False)
        left = QWidget()
        ll = QVBoxLayout(left)
        ll.setContentsMargins(0, 0, 0, 0)
        for w in (backbone_box, freeze_box, self.advanced_button, self.advanced):
            ll.addWidget(w)
        ll.addStretch(1)
        return left

    def _right(self) -> QWidget:
        """Augmentation with its preview, images per split."""
        aug_box, al = group("Augmentation")
        self.augment_editor = AugmentEditor()
        al.addWidget(self.augment_editor)
        self.preview = AugmentPreview(tile=100)
        self.preview.setObjectName("augmentPreview")
        al.addWidget(self.preview, 0, Qt.AlignmentFlag.AlignHCenter)
        split_box, sl = group("Images per split")
        self.split_summary = SplitSummary()
        sl.addWidget(self.split_summary)
        adapt_box, dl = group("Adapt to domain")
        self.adapt_row = AdaptRow()
        dl.addWidget(self.adapt_row)
        right = QWidget()
        rl = QVBoxLayout(right)
        rl.setContentsMargins(0, 0, 0, 0)
        rl.addWidget(aug_box)
        rl.addWidget(split_box)
        rl.addWidget(adapt_box)
        rl.addStretch(1)
        return right

    def preview_request(
        self, facts: ProjectFacts, task: str, image_id: int | None, template_id: int | None
    ) -> PreviewRequest | None:
        """What the augmentation preview should draw: the current image first, then
        images with ``task``'s labels (None when there is no image to show)."""
        ids = [] if image_id is None else [image_id]
        ids += facts.samples[task_info(task).label_kind or "images"]
        ids += facts.samples["images"][:3]
        ids = list(dict.fromkeys(ids))[:40]
        if not ids:
            return None
        bspec = self.backbone_table.spec()
        return PreviewRequest(
            root=facts.root,
            task=task,
            image_ids=tuple(ids),
            input_size=self.input_spin.value() or bspec.input_size,
            mean=bspec.mean,
            std=bspec.std,
            augment=self.augment_editor.config(),
            template_id=template_id,
            multi_label=facts.multi_label,
            tile=self.preview.tile_pixels(),
        )

    def _toggle_advanced(self, shown: bool) -> None:
        self.advanced.setVisible(shown)
        arrow = Qt.ArrowType.DownArrow if shown else Qt.ArrowType.RightArrow
        self.advanced_button.setArrowType(arrow)
