"""The training configuration side of the Train panel: task, backbone and weights,
freeze depth, strategy presets, advanced settings, augmentation with a live preview,
the split summary and the fast-path note. :meth:`TrainConfigPanel.spec` turns the
widgets into a :class:`~tlstudio.ml.runner.RunSpec`; the Train button emits it.

Start-up cost: everything under :mod:`tlstudio.ml` imports torch (seconds), so this
module imports none of it. The panel shows "Loading…" and imports the ML modules in a
background thread when it is first shown (or when :meth:`TrainConfigPanel.preload` is
called), then builds its widgets. Public methods that need them (``spec``,
``set_spec``…) wait for that import if it has not finished.

Facts about the project (which tasks have labels, images per split and class) are
gathered in a pool thread with its own project connection, after ``project_opened``
and (debounced) ``data_changed``, and only while the panel is visible.
"""

from __future__ import annotations

import dataclasses
import importlib
import threading
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QCoreApplication, QEvent, QObject, QSettings, Qt, QTimer, Signal
from PySide6.QtGui import QBrush, QColor, QValidator
from PySide6.QtWidgets import (
    QAbstractItemView,
    QAbstractSpinBox,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFrame,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMessageBox,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSpinBox,
    QStackedLayout,
    QTableWidget,
    QTableWidgetItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from tlstudio.gui.state import AppState
from tlstudio.gui.workers.tasks import run_in_background

TASK_LABELS: dict[str, str] = {
    "classify": "Classification",
    "detect": "Detection",
    "landmarks": "Landmarks",
    "segment": "Segmentation",
    "autoencode": "Autoencoder",
}
SPLIT_COLUMNS = ("train", "val", "test", "unassigned")
MIN_TRAIN_IMAGES = 5  # per class, below which the split summary warns
FACTS_DEBOUNCE_MS = 300
FAST_PATH_TEXT = (
    "Backbone frozen and no augmentation: features are computed once and cached; "
    "epochs train only the head (fast)."
)
_ML_MODULES = (
    "tlstudio.ml.backbones",
    "tlstudio.ml.weights",
    "tlstudio.ml.transforms",
    "tlstudio.ml.trainer",
    "tlstudio.ml.data",
    "tlstudio.ml.runner",
)
_GUI_MODULES = (  # Qt only, but compiling them is worth doing off the GUI thread too
    "tlstudio.gui.training.backbone_table",
    "tlstudio.gui.training.freeze_strip",
    "tlstudio.gui.training.augment_preview",
)


# --------------------------------------------------------------------------- ML import


class _MlLoader:
    """Imports the torch-heavy modules once, in a background thread."""

    _lock = threading.Lock()
    _thread: threading.Thread | None = None
    _done = threading.Event()
    _error: BaseException | None = None
    statuses: dict | None = None  # weights status per backbone, read by the thread

    @classmethod
    def start(cls) -> None:
        with cls._lock:
            if cls._thread is None and not cls._done.is_set():
                cls._thread = threading.Thread(
                    target=cls._run, name="tlstudio-ml-import", daemon=True
                )
                cls._thread.start()

    @classmethod
    def _run(cls) -> None:
        try:
            for name in _ML_MODULES + _GUI_MODULES:
                importlib.import_module(name)
            from tlstudio.gui.training.backbone_table import read_weights_statuses
            from tlstudio.ml.backbones import list_backbones

            cls.statuses = read_weights_statuses([s.name for s in list_backbones()])
        except BaseException as exc:  # reported by wait()
            cls._error = exc
        finally:
            cls._done.set()

    @classmethod
    def done(cls) -> bool:
        return cls._done.is_set()

    @classmethod
    def wait(cls) -> None:
        """Block until the modules are imported (importing here if no thread started)."""
        with cls._lock:
            started = cls._thread is not None
        if not started and not cls._done.is_set():
            for name in _ML_MODULES:
                importlib.import_module(name)
            cls._done.set()
        cls._done.wait()
        if cls._error is not None:
            raise cls._error


# --------------------------------------------------------------------------- presets


@dataclass(frozen=True)
class Preset:
    """A training strategy. ``freeze``: "all", or an int k >= 0 (stages frozen), or a
    negative -k meaning "all but the top k stages"."""

    key: str
    label: str
    tip: str
    freeze: int | str
    augment: bool
    lr: float
    epochs: int
    stage_lr_decay: float
    progressive_every: int = 0
    head_warmup_epochs: int = 0

    def depth(self, n_stages: int) -> int:
        if self.freeze == "all":
            return n_stages
        k = int(self.freeze)
        return max(0, n_stages + k) if k < 0 else min(k, n_stages)


PRESETS: tuple[Preset, ...] = (
    Preset("feature_extraction", "Feature extraction",
           "Freeze the whole backbone and train only the head: fastest, and best with very few images.",
           "all", False, 3e-3, 30, 1.0),
    Preset("fine_tune_top", "Fine-tune top stages",
           "Train the top two stages with smaller learning rates below the head: a good default with a few hundred images.",
           -2, True, 1e-3, 20, 0.5),
    Preset("full", "Full fine-tuning",
           "Train every stage at a small learning rate: for larger sets or images unlike ImageNet photos.",
           0, True, 3e-4, 20, 1.0),
    Preset("progressive", "Progressive unfreezing",
           "Train the head for 2 epochs, then unfreeze one more stage every 3 epochs from the top.",
           "all", True, 1e-3, 20, 0.5, progressive_every=3, head_warmup_epochs=2),
)  # fmt: skip
CUSTOM = "custom"


# --------------------------------------------------------------------------- project facts


def collect_project_facts(root: str, sample_ids: int = 30) -> dict[str, Any]:
    """Plain facts about the project at ``root`` for the panel; runs in a pool thread
    with its own connection. ``counts[task][row][split]`` = images; rows are class ids
    (classify, detect, segment), template ids (landmarks) or ``"all"`` (autoencode)."""
    from tlstudio.core.project import Project
    from tlstudio.ml.data import available_tasks

    project = Project.open(root)
    try:
        available = available_tasks(project)
        classes = [(c.id, c.name, c.color) for c in project.classes()]
        templates = [(t.id, t.name) for t in project.templates()]
        split_of = {r.id: (r.split or "unassigned") for r in project.images()}
        labelled: dict[str, dict[int, set]] = {t: {} for t in ("classify", "detect", "landmarks", "segment")}  # fmt: skip
        for image_id in split_of:
            tags = project.tags(image_id)
            if tags:
                labelled["classify"][image_id] = set(tags)
            boxes = project.boxes(image_id)
            if boxes:
                labelled["detect"][image_id] = {b.class_id for b in boxes}
            sets = project.landmark_sets(image_id)
            if sets:
                labelled["landmarks"][image_id] = {s.template_id for s in sets}
        mask_images = getattr(project, "_mask_images_with", None)  # per-class index, no decoding
        for cid, _name, _color in classes:
            ids = mask_images(cid) if mask_images is not None else []
            for image_id in ids:
                labelled["segment"].setdefault(image_id, set()).add(cid)
        if mask_images is None:  # pragma: no cover - older core: decode the masks
            for image_id in split_of:
                mask = project.mask(image_id)
                if mask is not None:
                    labelled["segment"][image_id] = {
                        int(v) for v in set(mask.ravel().tolist()) if v
                    }
        multi_label = project.multi_label
    finally:
        project.close()

    def zero() -> dict[str, int]:
        return dict.fromkeys(SPLIT_COLUMNS, 0)

    counts: dict[str, dict[Any, dict[str, int]]] = {}
    for task, per_image in labelled.items():
        rows: dict[Any, dict[str, int]] = {}
        for image_id, keys in per_image.items():
            for key in keys:
                rows.setdefault(key, zero())[split_of[image_id]] += 1
        counts[task] = rows
    everything = zero()
    for split in split_of.values():
        everything[split] += 1
    counts["autoencode"] = {"all": everything}
    order = {"train": 0, "unassigned": 1, "val": 2, "test": 3}
    ranked = sorted(split_of, key=lambda i: (order[split_of[i]], i))
    samples = {task: [i for i in ranked if i in per_image][:sample_ids] for task, per_image in labelled.items()}  # fmt: skip
    samples["autoencode"] = ranked[:sample_ids]
    return {
        "root": root,
        "available": available,
        "classes": classes,
        "templates": templates,
        "counts": counts,
        "split_totals": everything,
        "samples": samples,
        "multi_label": multi_label,
    }


# --------------------------------------------------------------------------- small widgets


class SciSpinBox(QDoubleSpinBox):
    """A spin box for values spanning decades (learning rate, weight decay): shows
    ``3e-04``-style text and steps through 1, 2, 3, 5 × 10^k."""

    def __init__(self, minimum: float, maximum: float, parent: QWidget | None = None):
        super().__init__(parent)
        self.setDecimals(12)
        self.setRange(minimum, maximum)
        nice = [m * 10.0**e for e in range(-8, 3) for m in (1, 2, 3, 5)]
        self._nice = [v for v in nice if minimum <= v <= maximum]

    def textFromValue(self, value: float) -> str:
        return "0" if value == 0 else f"{value:.3g}"

    def valueFromText(self, text: str) -> float:
        try:
            return float(text.strip())
        except ValueError:
            return self.value()

    def validate(self, text: str, pos: int):
        t = text.strip()
        try:
            v = float(t)
        except ValueError:
            ok = t == "" or t[-1] in "eE.-+" or t.lower().endswith(("e-", "e+"))
            state = QValidator.State.Intermediate if ok else QValidator.State.Invalid
            return state, text, pos
        if self.minimum() <= v <= self.maximum():
            return QValidator.State.Acceptable, text, pos
        return QValidator.State.Intermediate, text, pos

    def stepBy(self, steps: int) -> None:
        v = self.value()
        if steps > 0:
            bigger = [x for x in self._nice if x > v * (1 + 1e-9)]
            if bigger:
                self.setValue(bigger[min(steps, len(bigger)) - 1])
        elif steps < 0:
            smaller = [x for x in self._nice if x < v * (1 - 1e-9)]
            if smaller:
                self.setValue(smaller[max(steps, -len(smaller))])
            elif self.minimum() == 0:
                self.setValue(0.0)


class _WheelGuard(QObject):
    """Wheel over an unfocused spin box or combo box scrolls the page instead of
    silently changing a setting."""

    def __init__(self, scroll: QScrollArea):
        super().__init__(scroll)
        self._scroll = scroll

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.Wheel and isinstance(obj, QWidget) and not obj.hasFocus():
            QCoreApplication.sendEvent(self._scroll.verticalScrollBar(), event)
            return True
        return False


def _spin(lo: int, hi: int, value: int, tip: str, step: int = 1) -> QSpinBox:
    s = QSpinBox()
    s.setRange(lo, hi)
    s.setSingleStep(step)
    s.setValue(value)
    s.setToolTip(tip)
    return s


def _dspin(lo: float, hi: float, value: float, step: float, tip: str, decimals: int = 2) -> QDoubleSpinBox:  # fmt: skip
    s = QDoubleSpinBox()
    s.setDecimals(decimals)
    s.setRange(lo, hi)
    s.setSingleStep(step)
    s.setValue(value)
    s.setToolTip(tip)
    return s


def _combo(items: tuple[tuple[str, str], ...], tip: str) -> QComboBox:
    c = QComboBox()
    for value, label in items:
        c.addItem(label, value)
    c.setToolTip(tip)
    return c


def _set_combo_data(combo: QComboBox, value: Any, label: str | None = None) -> None:
    index = combo.findData(value)
    if index < 0:
        combo.addItem(label or str(value), value)
        index = combo.count() - 1
    combo.setCurrentIndex(index)


def _group(title: str) -> tuple[QGroupBox, QVBoxLayout]:
    box = QGroupBox(title)
    layout = QVBoxLayout(box)
    layout.setContentsMargins(8, 6, 8, 8)
    layout.setSpacing(6)
    return box, layout


def _ml() -> Any:
    """The ML names the panel uses (imported already; cheap after the first call)."""
    from tlstudio.ml import runner, trainer, transforms

    return runner, trainer, transforms


# --------------------------------------------------------------------------- the panel


class TrainConfigPanel(QWidget):
    """Configure a training run. ``spec()`` reads it, ``set_spec()`` fills it and the
    Train button emits ``start_requested(RunSpec)``; ``set_running(True)`` locks it."""

    start_requested = Signal(object)  # RunSpec
    spec_changed = Signal()  # any setting changed (the spec() result may differ)
    ready = Signal()  # the widgets are built (ML modules imported)
    facts_updated = Signal()  # task availability and split summary refreshed
    message = Signal(str)  # confirmations for a status bar

    def __init__(
        self,
        app_state: AppState,
        parent: QWidget | None = None,
        *,
        settings: QSettings | None = None,
    ):
        super().__init__(parent)
        self.app_state = app_state
        self._settings = settings
        self._built = False
        self._building = False
        self._running = False
        self._applying = 0  # > 0 while code (not the user) changes widgets
        self._facts: dict[str, Any] | None = None
        self._facts_dirty = True
        self._facts_generation = 0
        self._task_chosen = False  # the user or set_spec picked the task
        self._base_train = None  # TrainConfig whose fields without widgets spec() keeps
        self._base_options: dict[str, Any] = {}
        self._base_task: str | None = None
        self._use_feature_cache = True
        self._preview_dirty = True

        self._stack = QStackedLayout(self)
        self._loading = QLabel("Loading the training components…")
        self._loading.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self._loading.setStyleSheet("color: palette(mid);")
        self._stack.addWidget(self._loading)

        self._poll = QTimer(self)
        self._poll.setInterval(50)
        self._poll.timeout.connect(self._poll_loader)
        self._facts_timer = QTimer(self)
        self._facts_timer.setSingleShot(True)
        self._facts_timer.setInterval(FACTS_DEBOUNCE_MS)
        self._facts_timer.timeout.connect(self._refresh_facts)

        app_state.project_opened.connect(self._project_opened)
        app_state.project_closed.connect(self._project_closed)
        app_state.data_changed.connect(self._data_changed)
        app_state.image_changed.connect(lambda _i: self._update_preview())

    # ------------------------------------------------------------------ loading
    def preload(self) -> None:
        """Start importing the ML modules in the background (the main window may call
        this once it is on screen, so the Train tab opens ready)."""
        if self._built:
            return
        _MlLoader.start()
        self._poll.start()

    def is_ready(self) -> bool:
        return self._built

    def wait_ready(self) -> None:
        """Build the widgets now, waiting for the ML import if needed."""
        self._ensure_built()

    def _poll_loader(self) -> None:
        if _MlLoader.done():
            self._poll.stop()
            try:
                self._ensure_built()
            except Exception as exc:  # an import failed: say so instead of "Loading…"
                self._loading.setText(f"The training components could not be loaded:\n{exc}")

    def _ensure_built(self) -> None:
        if self._built or self._building:
            return
        _MlLoader.wait()
        self._building = True
        try:
            self._build()
        finally:
            self._building = False
        self._built = True
        self._stack.addWidget(self._content)
        self._stack.setCurrentWidget(self._content)
        self.ready.emit()
        self._apply_running()
        self._facts_dirty = True
        if self.isVisible() or self.app_state.project is not None:
            self._refresh_facts()
        self._changed()

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if not self._built:
            self.preload()
            return
        if self._facts_dirty:
            self._refresh_facts()
        elif self._preview_dirty:
            self._update_preview()

    # ------------------------------------------------------------------ building
    def _build(self) -> None:
        runner, trainer, transforms = _ml()
        from tlstudio.gui.training.augment_preview import AugmentPreview
        from tlstudio.gui.training.backbone_table import BackboneTable
        from tlstudio.gui.training.freeze_strip import FreezeStrip

        defaults = trainer.TrainConfig()
        aug_defaults = transforms.AugmentConfig()
        help_ = transforms.AUGMENT_HELP
        self._base_train = defaults

        self._content = QWidget()
        outer = QVBoxLayout(self._content)
        outer.setContentsMargins(6, 6, 6, 6)
        outer.setSpacing(6)

        # -- top bar: task, strategy, Train -------------------------------------
        self.task_combo = QComboBox()
        self.task_combo.setObjectName("taskCombo")
        self.task_combo.setToolTip("What the model learns; tasks without labels are greyed out")
        for task, label in TASK_LABELS.items():
            self.task_combo.addItem(label, task)
        self.task_combo.setMinimumContentsLength(14)
        self.task_combo.activated.connect(self._task_picked)
        self.task_combo.currentIndexChanged.connect(lambda _i: self._task_changed())
        self.template_combo = QComboBox()
        self.template_combo.setObjectName("templateCombo")
        self.template_combo.setToolTip("Landmark template the model predicts the points of")
        self.template_combo.addItem("most used template", None)
        self.template_combo.currentIndexChanged.connect(lambda _i: self._changed())
        self.template_label = QLabel("Template")
        self.preset_combo = QComboBox()
        self.preset_combo.setObjectName("presetCombo")
        for preset in PRESETS:
            self.preset_combo.addItem(preset.label, preset.key)
            self.preset_combo.setItemData(
                self.preset_combo.count() - 1, preset.tip, Qt.ItemDataRole.ToolTipRole
            )
        self.preset_combo.addItem("Custom", CUSTOM)
        self.preset_combo.setItemData(
            len(PRESETS), "Your own settings (any edit below switches here)", Qt.ItemDataRole.ToolTipRole
        )  # fmt: skip
        self.preset_combo.setToolTip(
            "A strategy fills in freeze depth, learning rate, epochs and augmentation; "
            "editing any of them afterwards makes it Custom"
        )
        self.preset_combo.currentIndexChanged.connect(lambda _i: self._preset_chosen())
        self.train_button = QPushButton("Train")
        self.train_button.setObjectName("trainButton")
        self.train_button.setMinimumWidth(110)
        self.train_button.setMinimumHeight(30)
        font = self.train_button.font()
        font.setBold(True)
        self.train_button.setFont(font)
        self.train_button.clicked.connect(self._train_clicked)
        top = QHBoxLayout()
        top.addWidget(QLabel("Task"))
        top.addWidget(self.task_combo)
        top.addWidget(self.template_label)
        top.addWidget(self.template_combo)
        top.addSpacing(12)
        top.addWidget(QLabel("Strategy"))
        top.addWidget(self.preset_combo)
        top.addStretch(1)
        top.addWidget(self.train_button)
        self.preset_note = QLabel()
        self.preset_note.setObjectName("presetNote")
        self.preset_note.setWordWrap(True)
        self.preset_note.setStyleSheet("color: palette(mid);")
        self.problem_label = QLabel()
        self.problem_label.setObjectName("trainProblemLabel")
        self.problem_label.setWordWrap(True)
        self.problem_label.setStyleSheet("color: #c62828;")
        outer.addLayout(top)
        outer.addWidget(self.preset_note)
        outer.addWidget(self.problem_label)

        # -- left column: backbone, freeze, fast path, advanced -------------------
        self.backbone_table = BackboneTable(self._settings, statuses=_MlLoader.statuses)
        self.backbone_table.backbone_changed.connect(self._backbone_changed)
        self.backbone_table.weights_changed.connect(self._changed)
        self.backbone_table.message.connect(self.message)
        backbone_box, bl = _group("Backbone")
        bl.addWidget(self.backbone_table)

        self.freeze_strip = FreezeStrip()
        self.freeze_strip.depth_changed.connect(lambda _d: self._edited())
        self.fast_path_label = QLabel(FAST_PATH_TEXT)
        self.fast_path_label.setObjectName("fastPathLabel")
        self.fast_path_label.setWordWrap(True)
        self.fast_path_label.setStyleSheet(
            "background: #e8f5e9; color: #1b5e20; border: 1px solid #a5d6a7;"
            " border-radius: 4px; padding: 4px;"
        )
        freeze_box, fl = _group("Freeze depth")
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
        self.advanced = self._build_advanced(defaults)
        self.advanced.setVisible(False)

        left = QVBoxLayout()
        left.setSpacing(8)
        left.addWidget(backbone_box)
        left.addWidget(freeze_box)
        left.addWidget(self.advanced_button)
        left.addWidget(self.advanced)
        left.addStretch(0)

        # -- right column: augmentation + preview, splits --------------------------
        aug_box, al = _group("Augmentation")
        self.augment_switch = QCheckBox("Augment training images")
        self.augment_switch.setObjectName("augmentSwitch")
        self.augment_switch.setToolTip(
            "Master switch: off trains on the images exactly as they are (and, with a frozen "
            "backbone, allows the cached-features fast path)"
        )
        self.augment_switch.toggled.connect(self._augment_toggled)
        al.addWidget(self.augment_switch)
        self.augment_options = QWidget()
        grid = QGridLayout(self.augment_options)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setHorizontalSpacing(6)
        grid.setVerticalSpacing(3)
        a = aug_defaults
        self.aug_hflip = _dspin(0, 1, a.hflip, 0.1, help_["hflip"])
        self.aug_vflip = _dspin(0, 1, a.vflip, 0.1, help_["vflip"])
        self.aug_rotate = _dspin(0, 180, a.rotate_deg, 5, help_["rotate_deg"], 0)
        self.aug_rotate.setSuffix("°")
        self.aug_jitter = _dspin(0, 1, a.color_jitter, 0.05, help_["color_jitter"])
        self.aug_scale_min = _dspin(0.1, 4, a.scale[0], 0.05, help_["scale"])
        self.aug_scale_max = _dspin(0.1, 4, a.scale[1], 0.05, help_["scale"])
        self.aug_crop = QCheckBox("Random crop")
        self.aug_crop.setChecked(a.random_resized_crop)
        self.aug_crop.setToolTip(help_["random_resized_crop"])
        self.aug_crop_min = _dspin(0.05, 1, a.crop_scale[0], 0.05, help_["crop_scale"])
        self.aug_crop_max = _dspin(0.05, 1, a.crop_scale[1], 0.05, help_["crop_scale"])
        self.aug_erasing = _dspin(0, 1, a.random_erasing, 0.1, help_["random_erasing"])
        self.aug_mixup = _dspin(0, 2, a.mixup_alpha, 0.1, help_["mixup_alpha"])
        self.aug_cutmix = _dspin(0, 2, a.cutmix_alpha, 0.1, help_["cutmix_alpha"])
        self.aug_crop.toggled.connect(self._sync_aug_enabled)

        def pair(lo: QWidget, hi: QWidget) -> QWidget:
            w = QWidget()
            h = QHBoxLayout(w)
            h.setContentsMargins(0, 0, 0, 0)
            h.setSpacing(2)
            h.addWidget(lo)
            h.addWidget(QLabel("–"))
            h.addWidget(hi)
            return w

        def label(text: str, tip: str) -> QLabel:
            lab = QLabel(text)
            lab.setToolTip(tip)
            return lab

        cells = (
            ("Flip left-right", self.aug_hflip), ("Flip top-bottom", self.aug_vflip),
            ("Rotate ±", self.aug_rotate), ("Colour jitter", self.aug_jitter),
            ("Erasing", self.aug_erasing), ("Mix-up α", self.aug_mixup),
            ("CutMix α", self.aug_cutmix),
        )  # fmt: skip
        for i, (text, w) in enumerate(cells):
            r, c = divmod(i, 2)
            grid.addWidget(label(text, w.toolTip()), r, 2 * c)
            grid.addWidget(w, r, 2 * c + 1)
        r = (len(cells) + 1) // 2
        grid.addWidget(label("Zoom", help_["scale"]), r, 0)
        grid.addWidget(pair(self.aug_scale_min, self.aug_scale_max), r, 1, 1, 3, Qt.AlignmentFlag.AlignLeft)  # fmt: skip
        grid.addWidget(self.aug_crop, r + 1, 0)
        grid.addWidget(pair(self.aug_crop_min, self.aug_crop_max), r + 1, 1, 1, 3, Qt.AlignmentFlag.AlignLeft)  # fmt: skip
        self.aug_crop.setText("Crop area")
        grid.setColumnStretch(1, 1)
        grid.setColumnStretch(3, 1)
        al.addWidget(self.augment_options)
        self.preview = AugmentPreview(tile=100)
        self.preview.setObjectName("augmentPreview")
        al.addWidget(self.preview, 0, Qt.AlignmentFlag.AlignHCenter)
        for w in self._augment_widgets():
            signal = w.toggled if isinstance(w, QCheckBox) else w.valueChanged
            signal.connect(lambda *_: self._edited())

        split_box, sl = _group("Images per split")
        self.split_table = QTableWidget(0, len(SPLIT_COLUMNS))
        self.split_table.setObjectName("splitTable")
        self.split_table.setHorizontalHeaderLabels(list(SPLIT_COLUMNS))
        self.split_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.split_table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.split_table.verticalHeader().setDefaultSectionSize(20)
        self.split_table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.split_table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)  # fmt: skip
        self.split_table.setToolTip(
            "Images with labels for the chosen task, per split and class (an image with "
            "two classes counts for both)"
        )
        self.split_note = QLabel()
        self.split_note.setObjectName("splitNote")
        self.split_note.setWordWrap(True)
        self.split_note.setStyleSheet("color: palette(mid);")
        self.split_warning = QLabel()
        self.split_warning.setObjectName("splitWarning")
        self.split_warning.setWordWrap(True)
        self.split_warning.setStyleSheet("color: #b45309;")
        sl.addWidget(self.split_table)
        sl.addWidget(self.split_note)
        sl.addWidget(self.split_warning)

        right = QVBoxLayout()
        right.setSpacing(8)
        right.addWidget(aug_box)
        right.addWidget(split_box)
        right.addStretch(1)

        columns = QWidget()
        cl = QHBoxLayout(columns)
        cl.setContentsMargins(0, 0, 0, 0)
        cl.setSpacing(8)
        left_w, right_w = QWidget(), QWidget()
        left_w.setLayout(left)
        right_w.setLayout(right)
        left.setContentsMargins(0, 0, 0, 0)
        right.setContentsMargins(0, 0, 0, 0)
        right_w.setFixedWidth(370)
        left_w.setMinimumWidth(420)
        left_w.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        cl.addWidget(left_w, 1)
        cl.addWidget(right_w, 0)
        self.scroll = QScrollArea()
        self.scroll.setWidgetResizable(True)
        self.scroll.setFrameShape(QFrame.Shape.NoFrame)
        self.scroll.setWidget(columns)
        outer.addWidget(self.scroll, 1)
        guard = _WheelGuard(self.scroll)
        wheel_targets = [
            *self._augment_widgets(), self.backbone_table.weights_combo, self.epochs_spin,
            self.batch_spin, self.lr_spin, self.decay_spin, self.optimizer_combo,
            self.schedule_combo, self.wd_spin, self.smoothing_spin, self.patience_spin,
            self.warmup_spin, self.progressive_spin, self.seed_spin, self.input_spin,
            self.device_combo,
        ]  # fmt: skip
        for w in wheel_targets:
            if not isinstance(w, (QAbstractSpinBox, QComboBox)):
                continue
            w.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
            w.installEventFilter(guard)

        self._applying += 1
        try:
            self._backbone_changed(self.backbone_table.backbone())
            self._apply_preset(PRESETS[0])
            self.preset_combo.setCurrentIndex(0)
            self._task_changed()
        finally:
            self._applying -= 1

    def _build_advanced(self, d) -> QWidget:
        box = QGroupBox()
        grid = QGridLayout(box)
        grid.setContentsMargins(8, 6, 8, 8)
        grid.setHorizontalSpacing(8)
        grid.setVerticalSpacing(4)
        self.epochs_spin = _spin(1, 10000, d.epochs, "Passes over the training images.")
        self.batch_spin = _spin(1, 4096, d.batch_size, "Images per optimiser step; lower it if memory runs out.")  # fmt: skip
        self.lr_spin = SciSpinBox(1e-7, 10.0)
        self.lr_spin.setValue(d.lr)
        self.lr_spin.setToolTip("Learning rate of the head; the peak rate for the one-cycle schedule.")  # fmt: skip
        self.decay_spin = _dspin(0.05, 1.0, d.stage_lr_decay, 0.05,
                                 "Each stage below the head trains at this factor times the rate of the stage above it (1 = same rate).")  # fmt: skip
        self.optimizer_combo = _combo((("adamw", "AdamW"), ("sgd", "SGD + momentum")),
                                      "The optimiser: AdamW adapts per weight; SGD with momentum is the classic choice.")  # fmt: skip
        self.schedule_combo = _combo(
            (
                ("cosine", "cosine"),
                ("onecycle", "one-cycle"),
                ("step", "step"),
                ("none", "constant"),
            ),
            "How the learning rate changes over training.",
        )
        self.wd_spin = SciSpinBox(0.0, 1.0)
        self.wd_spin.setValue(d.weight_decay)
        self.wd_spin.setToolTip("Weight decay (L2 penalty) that keeps weights small to curb overfitting.")  # fmt: skip
        self.smoothing_spin = _dspin(0, 0.5, 0.0, 0.05,
                                     "Classification only: soften the one-hot targets by this much so the model is less overconfident.")  # fmt: skip
        self.patience_spin = _spin(0, 1000, d.early_stopping_patience or 0,
                                   "Stop when the validation metric has not improved for this many epochs (off = train all epochs).")  # fmt: skip
        self.patience_spin.setSpecialValueText("off")
        self.warmup_spin = _spin(0, 1000, d.head_warmup_epochs,
                                 "Epochs that train only the head, with the whole backbone frozen, before the freeze depth applies.")  # fmt: skip
        self.progressive_spin = _spin(0, 1000, d.progressive_every,
                                      "Unfreeze one more stage from the top every this many epochs (off = fixed freeze depth).")  # fmt: skip
        self.progressive_spin.setSpecialValueText("off")
        self.seed_spin = _spin(0, 2**31 - 1, d.seed, "Random seed for splits, initial head weights and augmentation, so runs repeat.")  # fmt: skip
        self.input_spin = _spin(0, 1024, 0, "Side of the square network input in pixels; larger sees more detail but is slower.", step=32)  # fmt: skip
        self.device_combo = _combo((("auto", "auto"), ("cpu", "CPU"), ("cuda", "CUDA GPU"), ("mps", "Apple GPU")),
                                   "Where to train: auto picks a GPU when there is one.")  # fmt: skip
        _set_combo_data(self.device_combo, d.device)
        fields = (
            ("Epochs", self.epochs_spin), ("Batch size", self.batch_spin),
            ("Learning rate", self.lr_spin), ("Per-stage LR decay", self.decay_spin),
            ("Optimiser", self.optimizer_combo), ("Schedule", self.schedule_combo),
            ("Weight decay", self.wd_spin), ("Label smoothing", self.smoothing_spin),
            ("Early stopping", self.patience_spin), ("Head warm-up", self.warmup_spin),
            ("Unfreeze every", self.progressive_spin), ("Seed", self.seed_spin),
            ("Input size", self.input_spin), ("Device", self.device_combo),
        )  # fmt: skip
        self._field_labels: dict[QWidget, QLabel] = {}
        for i, (text, w) in enumerate(fields):
            r, c = divmod(i, 2)
            lab = QLabel(text)
            lab.setToolTip(w.toolTip())
            self._field_labels[w] = lab
            grid.addWidget(lab, r, 2 * c)
            grid.addWidget(w, r, 2 * c + 1)
        grid.setColumnStretch(1, 1)
        grid.setColumnStretch(3, 1)
        self.patience_spin.setSuffix(" epochs")
        self.warmup_spin.setSuffix(" epochs")
        self.progressive_spin.setSuffix(" epochs")
        self.input_spin.setSuffix(" px")
        # fields a strategy sets: editing one makes the strategy Custom
        for w in (self.epochs_spin, self.lr_spin, self.decay_spin, self.warmup_spin, self.progressive_spin):  # fmt: skip
            w.valueChanged.connect(lambda *_: self._edited())
        for w in (self.batch_spin, self.wd_spin, self.smoothing_spin, self.patience_spin,
                  self.seed_spin, self.input_spin):  # fmt: skip
            w.valueChanged.connect(lambda *_: self._changed())
        for c in (self.optimizer_combo, self.schedule_combo, self.device_combo):
            c.currentIndexChanged.connect(lambda *_: self._changed())
        self.input_spin.valueChanged.connect(lambda *_: self._update_preview())
        return box

    def _augment_widgets(self) -> list[QWidget]:
        return [
            self.aug_hflip, self.aug_vflip, self.aug_rotate, self.aug_jitter, self.aug_scale_min,
            self.aug_scale_max, self.aug_crop, self.aug_crop_min, self.aug_crop_max,
            self.aug_erasing, self.aug_mixup, self.aug_cutmix,
        ]  # fmt: skip

    # ------------------------------------------------------------------ reading
    def task(self) -> str:
        self._ensure_built()
        return str(self.task_combo.currentData())

    def spec(self):
        """The run the widgets describe, as a :class:`~tlstudio.ml.runner.RunSpec`."""
        self._ensure_built()
        runner, trainer, transforms = _ml()
        task = self.task()
        base = self._base_train if self._base_train is not None else trainer.TrainConfig()
        train = dataclasses.replace(
            base,
            epochs=self.epochs_spin.value(),
            batch_size=self.batch_spin.value(),
            lr=self.lr_spin.value(),
            optimizer=str(self.optimizer_combo.currentData()),
            weight_decay=self.wd_spin.value(),
            schedule=str(self.schedule_combo.currentData()),
            freeze=self.freeze_strip.freeze_value(),
            stage_lr_decay=self.decay_spin.value(),
            head_warmup_epochs=self.warmup_spin.value(),
            progressive_every=self.progressive_spin.value(),
            early_stopping_patience=self.patience_spin.value() or None,
            seed=self.seed_spin.value(),
            device=str(self.device_combo.currentData()),
        )
        options = dict(self._base_options) if task == self._base_task else {}
        options.pop("label_smoothing", None)
        if task == "classify" and self.smoothing_spin.value() > 0:
            options["label_smoothing"] = self.smoothing_spin.value()
        template = self.template_combo.currentData() if task == "landmarks" else None
        return runner.RunSpec(
            task=task,
            backbone=self.backbone_table.backbone(),
            weights=self.backbone_table.weights_choice(),
            train=train,
            augment=self._augment_config() if self.augment_switch.isChecked() else None,
            model_options=options,
            input_size=self.input_spin.value() or None,
            template_id=template,
            use_feature_cache=self._use_feature_cache,
        )

    def _augment_config(self):
        _runner, _trainer, transforms = _ml()
        lo, hi = sorted((self.aug_scale_min.value(), self.aug_scale_max.value()))
        clo, chi = sorted((self.aug_crop_min.value(), self.aug_crop_max.value()))
        return transforms.AugmentConfig(
            hflip=self.aug_hflip.value(),
            vflip=self.aug_vflip.value(),
            rotate_deg=self.aug_rotate.value(),
            scale=(lo, hi),
            random_resized_crop=self.aug_crop.isChecked(),
            crop_scale=(clo, chi),
            color_jitter=self.aug_jitter.value(),
            random_erasing=self.aug_erasing.value(),
            mixup_alpha=self.aug_mixup.value(),
            cutmix_alpha=self.aug_cutmix.value(),
        )

    def preset(self) -> str:
        """Key of the chosen strategy, or ``"custom"``."""
        self._ensure_built()
        return str(self.preset_combo.currentData())

    def has_facts(self) -> bool:
        """True once the project's labels and splits have been read."""
        return self._facts is not None

    def task_reason(self, task: str) -> str | None:
        """Why ``task`` cannot be trained on the project (None if it can or is unknown yet)."""
        if self._facts is None:
            return None
        return self._facts["available"].get(task)

    def uses_fast_path(self) -> bool:
        _runner = _ml()[0]
        return bool(_runner.uses_feature_cache(self.spec()))

    # ------------------------------------------------------------------ writing
    def set_spec(self, spec) -> None:
        """Fill the widgets from ``spec`` (e.g. a previous run's config)."""
        self._ensure_built()
        _runner, trainer, _transforms = _ml()
        t = spec.train
        self._applying += 1
        try:
            self._task_chosen = True
            index = self.task_combo.findData(spec.task)
            if index < 0:
                raise ValueError(f"unknown task {spec.task!r}")
            self.task_combo.setCurrentIndex(index)
            self.backbone_table.set_backbone(spec.backbone)
            self.backbone_table.set_weights_choice(str(spec.weights))
            self._base_train = dataclasses.replace(t)
            self.epochs_spin.setValue(t.epochs)
            self.batch_spin.setValue(t.batch_size)
            self.lr_spin.setValue(t.lr)
            self.decay_spin.setValue(t.stage_lr_decay)
            _set_combo_data(self.optimizer_combo, t.optimizer)
            _set_combo_data(self.schedule_combo, t.schedule)
            self.wd_spin.setValue(t.weight_decay)
            self.patience_spin.setValue(t.early_stopping_patience or 0)
            self.warmup_spin.setValue(t.head_warmup_epochs)
            self.progressive_spin.setValue(t.progressive_every)
            self.seed_spin.setValue(t.seed)
            _set_combo_data(self.device_combo, t.device)
            self.freeze_strip.set_depth(t.freeze)
            self.augment_switch.setChecked(spec.augment is not None)
            if spec.augment is not None:
                self._fill_augment(spec.augment)
            self._base_options = dict(spec.model_options)
            self._base_task = spec.task
            self.smoothing_spin.setValue(float(spec.model_options.get("label_smoothing", 0.0)))
            self.input_spin.setValue(spec.input_size or 0)
            if spec.template_id is not None:
                _set_combo_data(
                    self.template_combo, spec.template_id, f"template {spec.template_id}"
                )
            else:
                self.template_combo.setCurrentIndex(0)
            self._use_feature_cache = bool(spec.use_feature_cache)
            match = self._matching_preset()
            self.preset_combo.setCurrentIndex(self.preset_combo.findData(match))
        finally:
            self._applying -= 1
        self._task_changed()

    def _fill_augment(self, a) -> None:
        self.aug_hflip.setValue(a.hflip)
        self.aug_vflip.setValue(a.vflip)
        self.aug_rotate.setValue(a.rotate_deg)
        self.aug_scale_min.setValue(a.scale[0])
        self.aug_scale_max.setValue(a.scale[1])
        self.aug_crop.setChecked(a.random_resized_crop)
        self.aug_crop_min.setValue(a.crop_scale[0])
        self.aug_crop_max.setValue(a.crop_scale[1])
        self.aug_jitter.setValue(a.color_jitter)
        self.aug_erasing.setValue(a.random_erasing)
        self.aug_mixup.setValue(a.mixup_alpha)
        self.aug_cutmix.setValue(a.cutmix_alpha)

    def set_running(self, running: bool) -> None:
        """Lock (True) or unlock the settings while a run trains."""
        self._running = bool(running)
        if self._built:
            self._apply_running()
            self._update_train_button()

    def _apply_running(self) -> None:
        editable = not self._running
        for w in (self.task_combo, self.template_combo, self.preset_combo, self.freeze_strip,
                  self.advanced, self.augment_switch):  # fmt: skip
            w.setEnabled(editable)
        self.backbone_table.set_editable(editable)
        self.preview.set_active(editable)
        self._sync_aug_enabled()

    # ------------------------------------------------------------------ presets
    def _preset_chosen(self) -> None:
        key = self.preset_combo.currentData()
        preset = next((p for p in PRESETS if p.key == key), None)
        self.preset_note.setText(preset.tip if preset is not None else "Custom settings.")
        if preset is None or self._applying:
            self._changed()
            return
        self._applying += 1
        try:
            self._apply_preset(preset)
        finally:
            self._applying -= 1
        self._changed()

    def _apply_preset(self, p: Preset) -> None:
        _runner, _trainer, transforms = _ml()
        self.freeze_strip.set_depth(p.depth(self.freeze_strip.num_stages()))
        self.lr_spin.setValue(p.lr)
        self.epochs_spin.setValue(p.epochs)
        self.decay_spin.setValue(p.stage_lr_decay)
        self.progressive_spin.setValue(p.progressive_every)
        self.warmup_spin.setValue(p.head_warmup_epochs)
        if p.augment:
            self._fill_augment(transforms.AugmentConfig())
        self.augment_switch.setChecked(p.augment)
        self.preset_note.setText(p.tip)

    def _matching_preset(self) -> str:
        """The strategy whose settings the widgets hold, else ``"custom"``."""
        _runner, _trainer, transforms = _ml()
        default_aug = transforms.AugmentConfig()
        n = self.freeze_strip.num_stages()
        for p in PRESETS:
            aug_ok = (
                self.augment_switch.isChecked() and self._augment_config() == default_aug
                if p.augment
                else not self.augment_switch.isChecked()
            )
            if (
                aug_ok
                and self.freeze_strip.depth() == p.depth(n)
                and abs(self.lr_spin.value() - p.lr) < 1e-12
                and self.epochs_spin.value() == p.epochs
                and abs(self.decay_spin.value() - p.stage_lr_decay) < 1e-9
                and self.progressive_spin.value() == p.progressive_every
                and self.warmup_spin.value() == p.head_warmup_epochs
            ):
                return p.key
        return CUSTOM

    def _edited(self) -> None:
        """A field a strategy sets changed: by the user it makes the strategy Custom."""
        if not self._applying and self.preset_combo.currentData() != CUSTOM:
            self.preset_combo.blockSignals(True)
            self.preset_combo.setCurrentIndex(self.preset_combo.findData(CUSTOM))
            self.preset_combo.blockSignals(False)
            self.preset_note.setText("Custom settings.")
        self._changed()

    # ------------------------------------------------------------------ reactions
    def _task_picked(self, _index: int) -> None:
        self._task_chosen = True

    def _task_changed(self) -> None:
        if not hasattr(self, "smoothing_spin"):
            return  # still building
        task = self.task_combo.currentData()
        is_landmarks = task == "landmarks"
        self.template_label.setVisible(is_landmarks)
        self.template_combo.setVisible(is_landmarks)
        classify = task == "classify"
        self.smoothing_spin.setEnabled(classify)
        self._field_labels[self.smoothing_spin].setEnabled(classify)
        self._sync_aug_enabled()
        self._fill_split_table()
        self._changed()
        self._update_preview()

    def _backbone_changed(self, name: str) -> None:
        spec = self.backbone_table.spec(name)
        self._applying += 1
        try:
            self.freeze_strip.set_backbone(name, spec.stages, spec.num_params)
            preset = next((p for p in PRESETS if p.key == self.preset_combo.currentData()), None)
            if preset is not None:  # "top two stages" means something else per backbone
                self.freeze_strip.set_depth(preset.depth(self.freeze_strip.num_stages()))
        finally:
            self._applying -= 1
        self.input_spin.setSpecialValueText(f"backbone's ({spec.input_size} px)")
        self._changed()
        self._update_preview()

    def _augment_toggled(self, _on: bool) -> None:
        self._sync_aug_enabled()
        self._edited()

    def _sync_aug_enabled(self) -> None:
        on = self.augment_switch.isChecked() and not self._running
        self.augment_options.setEnabled(on)
        if on:
            classify = self.task_combo.currentData() == "classify"
            self.aug_mixup.setEnabled(classify)
            self.aug_cutmix.setEnabled(classify)
            crop = self.aug_crop.isChecked()
            self.aug_crop_min.setEnabled(crop)
            self.aug_crop_max.setEnabled(crop)

    def _toggle_advanced(self, shown: bool) -> None:
        self.advanced.setVisible(shown)
        self.advanced_button.setArrowType(
            Qt.ArrowType.DownArrow if shown else Qt.ArrowType.RightArrow
        )

    def _changed(self) -> None:
        if not self._built:
            return  # _ensure_built calls this once the widgets exist
        try:
            fast = self.uses_fast_path()
        except Exception:
            fast = False
        self.fast_path_label.setVisible(fast)
        self._update_train_button()
        self._update_preview()
        self.spec_changed.emit()

    # ------------------------------------------------------------------ Train
    def train_problem(self) -> str | None:
        """Why Train is disabled, or None when a run can start."""
        if not self._built:
            return "Loading the training components…"
        if self.app_state.project is None:
            return "Open a project to train."
        if self._running:
            return "A run is in progress."
        if self._facts is None:
            return "Checking the project's labels…"
        task = self.task()
        reason = self._facts["available"].get(task)
        if reason:
            return f"{TASK_LABELS[task]} cannot be trained: {reason}."
        problem = self.backbone_table.weights_problem()
        if problem:
            return problem + "."
        _runner, trainer, _transforms = _ml()
        try:
            self.spec().train.validate()
        except trainer.TrainConfigError as exc:
            return str(exc)
        return None

    def _update_train_button(self) -> None:
        if not hasattr(self, "train_button"):
            return
        problem = self.train_problem()
        self.train_button.setEnabled(problem is None)
        self.train_button.setToolTip(problem or "Start training with these settings")
        show = problem is not None and not self._running and self._facts is not None
        self.problem_label.setText(problem if show else "")
        self.problem_label.setVisible(bool(show))

    def _train_clicked(self) -> None:
        problem = self.train_problem()
        if problem is not None:
            QMessageBox.warning(self, "Train", problem)
            return
        self.start_requested.emit(self.spec())

    # ------------------------------------------------------------------ project facts
    def _project_opened(self, _project: object) -> None:
        self._facts = None
        self._task_chosen = False
        self._facts_dirty = True
        if self._built:
            self._apply_facts_to_widgets()
            if self.isVisible():
                self._refresh_facts()

    def _project_closed(self) -> None:
        self._facts = None
        self._facts_generation += 1
        self._facts_dirty = True
        if self._built:
            self._apply_facts_to_widgets()
            self.preview.set_request(None)

    def _data_changed(self) -> None:
        self._facts_dirty = True
        if self._built and self.isVisible():
            self._facts_timer.start()

    def refresh(self) -> None:
        """Re-read the project's labels and splits now (in a pool thread)."""
        self._ensure_built()
        self._refresh_facts()

    def _refresh_facts(self) -> None:
        project = self.app_state.project
        self._facts_timer.stop()
        if project is None:
            self._facts = None
            self._apply_facts_to_widgets()
            return
        self._facts_dirty = False
        self._facts_generation += 1
        generation, root = self._facts_generation, str(project.root)
        run_in_background(
            lambda: collect_project_facts(root),
            lambda facts: self._facts_ready(generation, facts),
            lambda msg: self._facts_failed(generation, msg),
            context=self,
        )

    def _facts_ready(self, generation: int, facts: dict[str, Any]) -> None:
        project = self.app_state.project
        if generation != self._facts_generation or project is None:
            return
        if facts["root"] != str(project.root):
            return
        self._facts = facts
        self._apply_facts_to_widgets()
        self.facts_updated.emit()

    def _facts_failed(self, generation: int, message: str) -> None:
        if generation == self._facts_generation:
            self.split_note.setText(f"Could not read the project: {message}")

    def _apply_facts_to_widgets(self) -> None:
        facts = self._facts
        model = self.task_combo.model()
        for i in range(self.task_combo.count()):
            task = self.task_combo.itemData(i)
            reason = None if facts is None else facts["available"].get(task)
            item = model.item(i)
            item.setEnabled(reason is None)
            item.setText(TASK_LABELS[task] + (f" — {reason}" if reason else ""))
            item.setData(reason or "", Qt.ItemDataRole.ToolTipRole)
            if reason:
                item.setForeground(QBrush(QColor("#9e9e9e")))
            else:
                item.setData(None, Qt.ItemDataRole.ForegroundRole)
        if facts is not None and not self._task_chosen:
            current = self.task_combo.currentData()
            if facts["available"].get(current):
                first = next((t for t in TASK_LABELS if not facts["available"].get(t)), None)
                if first is not None:
                    self._applying += 1
                    try:
                        self.task_combo.setCurrentIndex(self.task_combo.findData(first))
                    finally:
                        self._applying -= 1
        # templates
        chosen = self.template_combo.currentData()
        self.template_combo.blockSignals(True)
        self.template_combo.clear()
        self.template_combo.addItem("most used template", None)
        for tid, name in [] if facts is None else facts["templates"]:
            self.template_combo.addItem(name, tid)
        index = self.template_combo.findData(chosen)
        self.template_combo.setCurrentIndex(max(index, 0))
        self.template_combo.blockSignals(False)
        task = self.task_combo.currentData()
        reason = None if facts is None else facts["available"].get(task)
        self.task_combo.setToolTip(
            reason or "What the model learns; tasks without labels are greyed out"
        )
        self._fill_split_table()
        self._preview_dirty = True
        self._changed()

    def _fill_split_table(self) -> None:
        table = self.split_table
        facts = self._facts
        if facts is None:
            table.setRowCount(0)
            self.split_note.setText(
                "" if self.app_state.project is None else "Reading the project…"
            )
            self.split_warning.setText("")
            return
        task = self.task_combo.currentData()
        counts = facts["counts"].get(task, {})
        rows: list[tuple[str, dict[str, int]]] = []
        if task == "autoencode":
            rows.append(("all images", counts.get("all", dict.fromkeys(SPLIT_COLUMNS, 0))))
        elif task == "landmarks":
            for tid, name in facts["templates"]:
                if tid in counts:
                    rows.append((name, counts[tid]))
        else:
            for cid, name, _color in facts["classes"]:
                if cid in counts or task == "classify":
                    rows.append((name, counts.get(cid, dict.fromkeys(SPLIT_COLUMNS, 0))))
        table.setRowCount(len(rows))
        table.setVerticalHeaderLabels([name for name, _ in rows])
        for r, (_name, per_split) in enumerate(rows):
            for c, split in enumerate(SPLIT_COLUMNS):
                item = QTableWidgetItem(str(per_split.get(split, 0)))
                item.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
                table.setItem(r, c, item)
        height = table.horizontalHeader().height() + sum(table.rowHeight(r) for r in range(len(rows))) + 4  # fmt: skip
        table.setFixedHeight(max(height, table.horizontalHeader().height() + 24))

        totals = facts["split_totals"]
        has_split = totals["train"] + totals["val"] > 0
        notes = []
        if not has_split:
            notes.append(
                "No train/val split assigned: at train time a random 20 % of the unassigned "
                "images is held out for validation."
            )
        elif totals["unassigned"]:
            notes.append(f"{totals['unassigned']} images have no split and are not used.")
        if task in ("detect", "segment"):
            notes.append("Counts are images containing the class.")
        self.split_note.setText(" ".join(notes))
        self.split_note.setVisible(bool(notes))
        warnings = []
        if task in ("classify", "detect", "segment"):
            val_total = sum(per["val"] for _n, per in rows)
            for name, per in rows:
                train = per["train"] if has_split else per["unassigned"]
                if train < MIN_TRAIN_IMAGES:
                    where = "training" if has_split else "labelled"
                    warnings.append(
                        f"⚠ {name}: only {train} {where} image{'s' if train != 1 else ''} "
                        f"({MIN_TRAIN_IMAGES} or more recommended)"
                    )
                if has_split and val_total and per["val"] == 0:
                    warnings.append(f"⚠ {name}: missing from the validation split")
        if len(warnings) > 6:
            warnings = warnings[:5] + [f"… and {len(warnings) - 5} more"]
        self.split_warning.setText("\n".join(warnings))
        self.split_warning.setVisible(bool(warnings))

    def split_warnings(self) -> list[str]:
        text = self.split_warning.text()
        return [line for line in text.split("\n") if line]

    # ------------------------------------------------------------------ preview
    def _preview_request(self):
        from tlstudio.gui.training.augment_preview import PreviewRequest

        project, facts = self.app_state.project, self._facts
        if project is None or facts is None or facts["root"] != str(project.root):
            return None
        task = self.task_combo.currentData()
        ids: list[int] = []
        if self.app_state.image_id is not None:
            ids.append(self.app_state.image_id)
        ids += facts["samples"].get(task, [])
        ids += facts["samples"]["autoencode"][:3]
        ids = list(dict.fromkeys(ids))[:40]
        if not ids:
            return None
        bspec = self.backbone_table.spec()
        size = self.input_spin.value() or bspec.input_size
        augment = self._augment_config() if self.augment_switch.isChecked() else None
        template = self.template_combo.currentData() if task == "landmarks" else None
        return PreviewRequest(
            root=str(project.root),
            task=task,
            image_ids=tuple(ids),
            input_size=size,
            mean=tuple(bspec.mean),
            std=tuple(bspec.std),
            augment=augment,
            template_id=template,
            multi_label=bool(facts["multi_label"]),
            tile=self.preview.tile_pixels(),
        )

    def _update_preview(self) -> None:
        if not hasattr(self, "preview"):
            return
        if not self.isVisible():
            self._preview_dirty = True
            return
        request = self._preview_request()
        if request is None:
            return
        current = self.preview.request()
        if request == current and not self._preview_dirty:
            return
        self._preview_dirty = False
        self.preview.set_request(request, immediate=current is None)

    def wait_idle(self, msecs: int = 30000) -> bool:
        """Tests and screenshots: wait for the preview and facts threads to finish."""
        from tlstudio.gui.workers.tasks import wait_for_background

        ok = wait_for_background(msecs)
        if self._built:
            ok = self.preview.wait(msecs) and ok
            ok = self.backbone_table.wait_for_download(msecs) and ok
        return ok
