"""The training configuration side of the Train panel. Above: the task and the Train
button. Below, one of two views of the same configuration: the Quick view (one question
that picks a strategy, the estimated time, the images) and, one click away ("All
settings…"), the full view: strategy presets, backbone and weights, freeze depth,
training options, augmentation with a live preview and the images per split.
:meth:`TrainConfigPanel.spec` turns the widgets into a :class:`~tlstudio.ml.runner.RunSpec`;
the Train button emits it, after offering to make a split when there is none.

Start-up cost: everything under :mod:`tlstudio.ml` but the torch-free registries imports
torch (seconds), so this module imports none of it. The panel shows "Loading…" and
imports the ML modules in a background thread when it is first shown (or when
:meth:`TrainConfigPanel.preload` is called), then builds its widgets. Public methods that
need them (``spec``, ``set_spec``…) wait for that import if it has not finished.

Facts about the project (:func:`~tlstudio.core.project_facts.read_project_facts`) are
gathered in a pool thread with its own project connection, after ``project_opened`` and
(debounced) ``data_changed``, and only while the panel is visible.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from PySide6.QtCore import QSettings, Qt, QTimer, Signal
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPushButton,
    QStackedLayout,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from tlstudio.core.project_facts import ProjectFacts, read_project_facts
from tlstudio.gui.state import AppState
from tlstudio.gui.training.ml_loader import MlLoader
from tlstudio.gui.training.quick_view import QuickView
from tlstudio.gui.training.reflow import VerticalScrollArea
from tlstudio.gui.training.split_check import MAKE, ask_about_split, make_split, split_issue
from tlstudio.gui.training.task_combo import TaskCombo
from tlstudio.gui.training.time_estimate import describe_estimate, images_for_run
from tlstudio.gui.widgets.wheel_guard import guard_wheel
from tlstudio.gui.workers.jobs import start_job, wait_for_jobs
from tlstudio.ml.presets import CUSTOM, PRESETS, Preset, matching_preset
from tlstudio.ml.tasks.registry import default_task, task_info, unavailable_reasons

if TYPE_CHECKING:  # pragma: no cover
    from tlstudio.ml.runner import RunSpec

FACTS_DEBOUNCE_MS = 300
#: TrainConfig fields a strategy sets: editing one by hand makes the strategy Custom.
PRESET_FIELDS = ("lr", "epochs", "stage_lr_decay", "progressive_every", "head_warmup_epochs")


class TrainConfigPanel(QWidget):
    """Configure a training run. ``spec()`` reads it, ``set_spec()`` fills it and the
    Train button emits ``start_requested(RunSpec)``; ``set_running(True)`` locks it."""

    start_requested = Signal(object)  # RunSpec
    elsewhere_requested = Signal(object)  # RunSpec to train on another machine
    spec_changed = Signal()  # any setting changed (the spec() result may differ)
    ready = Signal()  # the widgets are built (ML modules imported)
    facts_updated = Signal()  # task availability and split summary refreshed
    message = Signal(str)  # confirmations for a status bar

    def __init__(
        self, app_state: AppState, parent: QWidget | None = None, *,
        settings: QSettings | None = None,
    ):  # fmt: skip
        super().__init__(parent)
        self.app_state = app_state
        self._settings = settings
        self._built = self._building = self._running = False
        self._applying = 0  # > 0 while code (not the user) changes widgets
        self._facts: ProjectFacts | None = None
        self._reasons: dict[str, str | None] = {}
        self._facts_dirty = True
        self._facts_generation = 0
        self._task_chosen = False  # the user or set_spec picked the task (for this project)
        self._new_project = True  # the next facts are a newly opened project's
        self._base_options: dict[str, object] = {}
        self._base_task: str | None = None
        self._use_feature_cache = True
        self._preview_dirty = True
        self._run_note = ""
        self.split_question: QMessageBox | None = None

        self._stack = QStackedLayout(self)
        self._loading = QLabel("Loading the training components…")
        self._loading.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self._loading.setWordWrap(True)
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
        if not self._built:
            MlLoader.start()
            self._poll.start()

    def is_ready(self) -> bool:
        return self._built

    def wait_ready(self) -> None:
        """Build the widgets now, waiting for the ML import if needed."""
        self._ensure_built()

    def _poll_loader(self) -> None:
        if MlLoader.done():
            self._poll.stop()
            try:
                self._ensure_built()
            except Exception as exc:  # an import failed: say so instead of "Loading…"
                self._loading.setText(f"The training components could not be loaded:\n{exc}")

    def _ensure_built(self) -> None:
        if self._built or self._building:
            return
        MlLoader.wait()
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

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        if not self._built:
            self.preload()
        elif self._facts_dirty:
            self._refresh_facts()
        elif self._preview_dirty:
            self._update_preview()

    # ------------------------------------------------------------------ building
    def _build(self) -> None:
        from tlstudio.gui.training.full_view import FullView, note

        self._content = QWidget()
        outer = QVBoxLayout(self._content)
        outer.setContentsMargins(6, 6, 6, 6)
        outer.setSpacing(6)

        # -- header, shared by both views: task, view switch, Train ------------------
        self.task_combo = TaskCombo()
        self.task_combo.activated.connect(self._task_picked)
        self.task_combo.currentIndexChanged.connect(lambda _i: self._task_changed())
        self.template_combo = QComboBox()
        self.template_combo.setObjectName("templateCombo")
        self.template_combo.setToolTip("Landmark template the model predicts the points of")
        self.template_combo.addItem("most used template", None)
        self.template_combo.currentIndexChanged.connect(lambda _i: self._changed())
        self.template_label = QLabel("Template")
        self.view_button = QPushButton("All settings…")
        self.view_button.setObjectName("allSettingsButton")
        self.view_button.setCheckable(True)
        self.view_button.setToolTip("Every setting: backbone, freeze depth, options, augmentation")
        self.view_button.toggled.connect(self.show_all_settings)
        self.train_button = QPushButton("Train")
        self.train_button.setObjectName("trainButton")
        self.train_button.setMinimumSize(96, 30)
        font = self.train_button.font()
        font.setBold(True)
        self.train_button.setFont(font)
        self.train_button.clicked.connect(self._train_clicked)
        top = QHBoxLayout()
        top.addWidget(QLabel("Task"))
        top.addWidget(self.task_combo, 1)
        top.addWidget(self.view_button)
        self.elsewhere_button = QPushButton("Train elsewhere…")
        self.elsewhere_button.setObjectName("trainElsewhereButton")
        self.elsewhere_button.setToolTip(
            "Write a job folder to train these settings on a GPU server or cluster"
        )
        self.elsewhere_button.clicked.connect(lambda: self.elsewhere_requested.emit(self.spec()))
        top.addWidget(self.elsewhere_button)
        top.addWidget(self.train_button)
        template_row = QHBoxLayout()
        template_row.addWidget(self.template_label)
        template_row.addWidget(self.template_combo, 1)
        self.problem_label = note("trainProblemLabel", "color: #c62828;")
        outer.addLayout(top)
        outer.addLayout(template_row)
        outer.addWidget(self.problem_label)

        # -- the two views -------------------------------------------------------------
        self.quick_view = QuickView()
        self.quick_view.preset_chosen.connect(self._quick_preset_chosen)
        self.quick_scroll = VerticalScrollArea()
        self.quick_scroll.setWidget(self.quick_view)
        self.full_view = full = FullView(self._settings)
        self.full_scroll = VerticalScrollArea()
        self.full_scroll.setWidget(full)
        # the full view's widgets, by the names the panel has always given them
        self.preset_combo, self.preset_note = full.preset_combo, full.preset_note
        self.backbone_table, self.freeze_strip = full.backbone_table, full.freeze_strip
        self.fast_path_label, self.options_editor = full.fast_path_label, full.options_editor
        self.advanced_button, self.advanced = full.advanced_button, full.advanced
        self.smoothing_spin, self.smoothing_label = full.smoothing_spin, full.smoothing_label
        self.input_spin, self.augment_editor = full.input_spin, full.augment_editor
        self.augment_switch, self.preview = full.augment_editor.switch, full.preview
        self.split_summary, self.split_table = full.split_summary, full.split_summary.table
        self.adapt_row = full.adapt_row
        self.adapt_row.changed.connect(self._changed)
        self.preset_combo.currentIndexChanged.connect(lambda _i: self._preset_chosen())
        self.backbone_table.backbone_changed.connect(self._backbone_changed)
        self.backbone_table.weights_changed.connect(self._changed)
        self.backbone_table.message.connect(self.message)
        self.freeze_strip.depth_changed.connect(lambda _d: self._edited())
        self.options_editor.changed.connect(self._option_changed)
        for spin in (self.smoothing_spin, self.input_spin):
            spin.valueChanged.connect(lambda *_: self._changed())
        self.augment_editor.changed.connect(self._edited)
        self.views = QStackedWidget()
        self.views.addWidget(self.quick_scroll)
        self.views.addWidget(self.full_scroll)
        outer.addWidget(self.views, 1)
        self.quick_view.measure_requested.connect(self.backbone_table.measure_speed)
        self.backbone_table.speed_measured.connect(lambda _name: self._changed())
        guard_wheel(self._content)

        self._applying += 1
        try:
            self._backbone_changed(self.backbone_table.backbone())
            self._apply_preset(PRESETS[0])
            self.preset_combo.setCurrentIndex(0)
            self._task_changed()
        finally:
            self._applying -= 1

    # ------------------------------------------------------------------ views
    def show_all_settings(self, shown: bool = True) -> None:
        """The full view (True) or the Quick view; both edit the same configuration."""
        self._ensure_built()
        self.views.setCurrentWidget(self.full_scroll if shown else self.quick_scroll)
        self.view_button.blockSignals(True)
        self.view_button.setChecked(shown)
        self.view_button.blockSignals(False)
        self.view_button.setText("Quick view" if shown else "All settings…")
        self._update_preview()

    def is_quick_view(self) -> bool:
        return self._built and self.views.currentWidget() is self.quick_scroll

    def _quick_preset_chosen(self, name: str) -> None:
        self.preset_combo.setCurrentIndex(self.preset_combo.findData(name))

    # ------------------------------------------------------------------ reading
    def task(self) -> str:
        self._ensure_built()
        return str(self.task_combo.currentData())

    def spec(self) -> RunSpec:
        """The run the widgets describe."""
        from tlstudio.ml.runner import RunSpec

        self._ensure_built()
        task = self.task()
        train = dataclasses.replace(
            self.options_editor.config(), freeze=self.freeze_strip.freeze_value()
        )
        options = dict(self._base_options) if task == self._base_task else {}
        options.pop("label_smoothing", None)
        if task == "classify" and self.smoothing_spin.value() > 0:
            options["label_smoothing"] = self.smoothing_spin.value()
        return RunSpec(
            task=task,
            backbone=self.backbone_table.backbone(),
            weights=self.backbone_table.weights_choice(),
            train=train,
            augment=self.augment_editor.config(),
            model_options=options,
            input_size=self.input_spin.value() or None,
            template_id=self.template_combo.currentData() if task == "landmarks" else None,
            use_feature_cache=self._use_feature_cache,
            adapt=self.adapt_row.config(),
        )

    def preset(self) -> str:
        """Name of the chosen strategy, or ``"custom"``."""
        self._ensure_built()
        return str(self.preset_combo.currentData())

    def has_facts(self) -> bool:
        """True once the project's labels and splits have been read."""
        return self._facts is not None

    def facts(self) -> ProjectFacts | None:
        return self._facts

    def task_reason(self, task: str) -> str | None:
        """Why ``task`` cannot be trained on the project (None if it can or is unknown yet)."""
        return self._reasons.get(task)

    def uses_fast_path(self) -> bool:
        from tlstudio.ml.runner import uses_feature_cache

        return bool(uses_feature_cache(self.spec()))

    def split_warnings(self) -> list[str]:
        return self.split_summary.warnings()

    # ------------------------------------------------------------------ writing
    def set_spec(self, spec: RunSpec) -> None:
        """Fill the widgets from ``spec`` (e.g. a previous run's config)."""
        self._ensure_built()
        index = self.task_combo.findData(spec.task)
        if index < 0:
            raise ValueError(f"unknown task {spec.task!r}")
        self._applying += 1
        try:
            self._task_chosen = True
            self.task_combo.setCurrentIndex(index)
            self.backbone_table.set_backbone(spec.backbone)
            self.backbone_table.set_weights_choice(str(spec.weights))
            self.options_editor.set_config(spec.train)
            self.freeze_strip.set_depth(spec.train.freeze)
            self.augment_editor.set_config(spec.augment)
            self._base_options = dict(spec.model_options)
            self._base_task = spec.task
            self.smoothing_spin.setValue(float(spec.model_options.get("label_smoothing", 0.0)))  # type: ignore[arg-type]
            self.input_spin.setValue(spec.input_size or 0)
            if spec.template_id is not None:
                index = self.template_combo.findData(spec.template_id)
                if index < 0:
                    self.template_combo.addItem(f"template {spec.template_id}", spec.template_id)
                    index = self.template_combo.count() - 1
                self.template_combo.setCurrentIndex(index)
            else:
                self.template_combo.setCurrentIndex(0)
            self._use_feature_cache = bool(spec.use_feature_cache)
            self.adapt_row.set_config(spec.adapt)
            self.preset_combo.setCurrentIndex(self.preset_combo.findData(self._matching_preset()))
        finally:
            self._applying -= 1
        self._task_changed()

    def set_running(self, running: bool) -> None:
        """Lock (True) or unlock the settings while a run trains."""
        self._running = bool(running)
        if self._built:
            self._apply_running()
            self._update_train_button()

    def _apply_running(self) -> None:
        editable = not self._running
        for w in (self.task_combo, self.template_combo, self.preset_combo, self.freeze_strip,
                  self.advanced, self.adapt_row):  # fmt: skip
            w.setEnabled(editable)
        self.backbone_table.set_editable(editable)
        self.augment_editor.set_editable(editable)
        self.quick_view.set_editable(editable)
        self.preview.set_active(editable)

    # ------------------------------------------------------------------ presets
    def _preset_chosen(self) -> None:
        preset = next((p for p in PRESETS if p.name == self.preset_combo.currentData()), None)
        self.preset_note.setText(preset.tip if preset is not None else "Custom settings.")
        if preset is not None and not self._applying:
            self._applying += 1
            try:
                self._apply_preset(preset)
            finally:
                self._applying -= 1
        self._changed()

    def _apply_preset(self, p: Preset) -> None:
        from tlstudio.ml.transforms import AugmentConfig

        n = self.freeze_strip.num_stages()
        self.options_editor.set_config(p.apply(self.options_editor.config(), n))
        self.freeze_strip.set_depth(p.depth(n))
        self.augment_editor.set_config(AugmentConfig() if p.augment else None)
        self.preset_note.setText(p.tip)

    def _matching_preset(self) -> str:
        """The strategy whose settings the widgets hold, else ``"custom"``."""
        from tlstudio.ml.transforms import AugmentConfig

        augment = self.augment_editor.config()
        default = None if augment is None else augment == AugmentConfig()
        train = dataclasses.replace(self.options_editor.config(), freeze=self.freeze_strip.depth())
        return matching_preset(train, default, self.freeze_strip.num_stages())

    def _edited(self) -> None:
        """A field a strategy sets changed: by the user it makes the strategy Custom."""
        if not self._applying and self.preset_combo.currentData() != CUSTOM:
            self.preset_combo.blockSignals(True)
            self.preset_combo.setCurrentIndex(self.preset_combo.findData(CUSTOM))
            self.preset_combo.blockSignals(False)
            self.preset_note.setText("Custom settings.")
        self._changed()

    def _option_changed(self, name: str) -> None:
        if name in PRESET_FIELDS:
            self._edited()
        else:
            self._changed()

    # ------------------------------------------------------------------ reactions
    def _task_picked(self, _index: int) -> None:
        self._task_chosen = True

    def _task_changed(self) -> None:
        if not hasattr(self, "input_spin"):
            return  # still building
        task = self.task_combo.currentData()
        self.template_label.setVisible(task == "landmarks")
        self.template_combo.setVisible(task == "landmarks")
        self.smoothing_spin.setEnabled(task == "classify")
        self.smoothing_label.setEnabled(task == "classify")
        self.augment_editor.set_task(str(task))
        self._fill_split_summary()
        self._changed()

    def _backbone_changed(self, name: str) -> None:
        spec = self.backbone_table.spec(name)
        self._applying += 1
        try:
            self.freeze_strip.set_backbone(name, spec.stages, spec.num_params)
            preset = next((p for p in PRESETS if p.name == self.preset_combo.currentData()), None)
            if preset is not None:  # "top two stages" means something else per backbone
                self.freeze_strip.set_depth(preset.depth(self.freeze_strip.num_stages()))
        finally:
            self._applying -= 1
        self.input_spin.setSpecialValueText(f"backbone's ({spec.input_size} px)")
        self._changed()

    def _changed(self) -> None:
        if not self._built:
            return  # _ensure_built calls this once the widgets exist
        try:
            fast = self.uses_fast_path()
        except Exception:
            fast = False
        self.fast_path_label.setVisible(fast)
        self.quick_view.set_preset(str(self.preset_combo.currentData()))
        self._update_quick_texts()
        self._update_train_button()
        self._update_preview()
        self.spec_changed.emit()

    # ------------------------------------------------------------------ quick view texts
    def _update_quick_texts(self) -> None:
        facts = self._facts
        if facts is None:
            self.quick_view.set_estimate("Reading the project…", False)
            self.quick_view.set_data_summary("")
            return
        spec = self.spec()
        warnings = self.split_summary.warnings()  # too few images of a class, and such
        self.quick_view.set_data_summary(
            "\n".join([images_for_run(facts, spec.task)[2], *warnings])
        )
        n, depth = self.freeze_strip.num_stages(), self.freeze_strip.depth()
        measured = self.backbone_table.measured_ms(spec.backbone)
        text = describe_estimate(
            spec, facts, self.backbone_table.spec(spec.backbone), measured,
            trainable_fraction=(n - depth) / n if n else 0.0,
            fast_path=self.uses_fast_path(), gpu=MlLoader.gpu,
        )  # fmt: skip
        self.quick_view.set_estimate(text, measured is None)

    # ------------------------------------------------------------------ Train
    def train_problem(self) -> str | None:
        """Why Train is disabled, or None when a run can start."""
        from tlstudio.ml.train_config import TrainConfigError

        if not self._built:
            return "Loading the training components…"
        if self.app_state.project is None:
            return "Open a project to train."
        if self._running:
            return "A run is in progress."
        if self._facts is None:
            return "Checking the project's labels…"
        task = self.task()
        reason = self._reasons.get(task)
        if reason:
            return f"{task_info(task).label} cannot be trained: {reason}."
        problem = self.backbone_table.weights_problem()
        if problem:
            return problem + "."
        try:
            self.spec().train.validate()
        except TrainConfigError as exc:
            return str(exc)
        frozen = self.spec().train.freeze == "all"
        return self.adapt_row.problem(task, self.uses_fast_path(), frozen)

    def _update_train_button(self) -> None:
        if not hasattr(self, "train_button"):
            return
        problem = self.train_problem()
        self.train_button.setEnabled(problem is None)
        self.train_button.setToolTip(problem or "Start training with these settings")
        show = problem is not None and not self._running and self._facts is not None
        self.problem_label.setText(problem or "" if show else "")
        self.problem_label.setVisible(bool(show))

    def _train_clicked(self) -> None:
        problem = self.train_problem()
        if problem is not None:
            QMessageBox.warning(self, "Train", problem)
            return
        assert self._facts is not None  # train_problem checked it
        issue = split_issue(self._facts, self.task())
        if issue is None:
            self._run_note = ""
            self.start_requested.emit(self.spec())
            return

        def answered(choice: str | None) -> None:
            self.split_question = None
            if choice is None:
                return
            if choice == MAKE and not self._make_split(issue.only_unassigned):
                return
            if choice != MAKE:
                self._run_note = issue.anyway_note
            self.start_requested.emit(self.spec())

        self.split_question = ask_about_split(self, issue, answered)

    def _make_split(self, only_unassigned: bool) -> bool:
        seed = self.options_editor.config().seed
        note = make_split(self, self.app_state, seed=seed, only_unassigned=only_unassigned)
        if note is None:
            return False
        self._run_note = note
        self.message.emit(note)
        return True

    def take_run_note(self) -> str:
        """What the last Train click decided about the split (for the monitor), once."""
        note, self._run_note = self._run_note, ""
        return note

    # ------------------------------------------------------------------ project facts
    def _project_opened(self, _project: object) -> None:
        self._facts = None
        self._reasons = {}
        self._task_chosen = False  # the new project's labels decide the task
        self._new_project = True
        self._facts_dirty = True
        if self._built:
            self.template_combo.setCurrentIndex(0)
            self._apply_facts_to_widgets()
            if self.isVisible():
                self._refresh_facts()

    def _project_closed(self) -> None:
        self._facts = None
        self._reasons = {}
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
        start_job(
            lambda _token, _progress: read_project_facts(root),
            context=self,
            succeeded=lambda facts: self._facts_ready(generation, facts),
            failed=lambda _kind, msg: self._facts_failed(generation, msg),
        )

    def _facts_ready(self, generation: int, facts: ProjectFacts) -> None:
        project = self.app_state.project
        if generation != self._facts_generation or project is None:
            return
        if facts.root != str(project.root):
            return
        self._facts = facts
        self._reasons = unavailable_reasons(
            images=facts.images,
            labelled={kind: n.total for kind, n in facts.labelled.items()},
            tagged_classes=facts.tagged_classes,
            multi_label=facts.multi_label,
        )
        if self._new_project:
            self._new_project = False
            if facts.runs == 0:
                self.show_all_settings(False)  # the Quick view is where a new project starts
        self._apply_facts_to_widgets()
        self.facts_updated.emit()

    def _facts_failed(self, generation: int, message: str) -> None:
        if generation == self._facts_generation:
            self.split_summary.show_message(f"Could not read the project: {message}")

    def _apply_facts_to_widgets(self) -> None:
        facts = self._facts
        self.task_combo.set_reasons(self._reasons)
        if facts is not None and not self._task_chosen:
            best = default_task(self._reasons)
            if best != self.task_combo.currentData():
                self._applying += 1
                try:
                    self.task_combo.setCurrentIndex(self.task_combo.findData(best))
                finally:
                    self._applying -= 1
        chosen = self.template_combo.currentData()
        self.template_combo.blockSignals(True)
        self.template_combo.clear()
        self.template_combo.addItem("most used template", None)
        for tid, name in () if facts is None else facts.templates:
            self.template_combo.addItem(name, tid)
        self.template_combo.setCurrentIndex(max(self.template_combo.findData(chosen), 0))
        self.template_combo.blockSignals(False)
        self.adapt_row.set_domains(() if facts is None else facts.domains)
        self._fill_split_summary()
        self._preview_dirty = True
        self._changed()

    def _fill_split_summary(self) -> None:
        if self._facts is None:
            self.split_summary.show_message(
                "" if self.app_state.project is None else "Reading the project…"
            )
        else:
            self.split_summary.update_from(self._facts, str(self.task_combo.currentData()))

    # ------------------------------------------------------------------ preview
    def _update_preview(self) -> None:
        if not hasattr(self, "preview"):
            return
        if not self.isVisible() or self.is_quick_view():
            self._preview_dirty = True
            return
        project, facts = self.app_state.project, self._facts
        if project is None or facts is None or facts.root != str(project.root):
            return
        task = str(self.task_combo.currentData())
        template = self.template_combo.currentData() if task == "landmarks" else None
        request = self.full_view.preview_request(facts, task, self.app_state.image_id, template)
        if request is None:
            return
        current = self.preview.request()
        if request == current and not self._preview_dirty:
            return
        self._preview_dirty = False
        self.preview.set_request(request, immediate=current is None)

    def wait_idle(self, msecs: int = 30000) -> bool:
        """Tests and screenshots: wait for the preview and facts jobs to finish."""
        ok = wait_for_jobs(msecs)
        if self._built:
            ok = self.preview.wait(msecs) and ok
            ok = self.backbone_table.wait_for_download(msecs) and ok
        return ok
