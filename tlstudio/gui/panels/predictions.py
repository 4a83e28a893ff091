"""The "Predictions" dock: run a trained model over images, show its prediction
on the canvas and accept it as labels (model-assisted labelling).

The run picker sets ``AppState.run_id`` and follows ``run_changed``; the panel
loads the current image's stored prediction of that run and hands it to the
canvas (:meth:`CanvasView.set_prediction`) whenever the image, the run or the
stored predictions change. Predicting runs in the background
(:class:`~tlstudio.gui.workers.predict.PredictController`); accepting is one
undoable command (:func:`tlstudio.core.predictions.accept_command`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from tlstudio.core.errors import TlsError
from tlstudio.core.labelset import LandmarkTemplate
from tlstudio.core.predictions import (
    NO_LABELS_NOTE,
    accept_command,
    accept_count,
    describe_prediction,
    run_template_id,
    unlabelled_image_ids,
)
from tlstudio.core.runs import RunRecord, RunStore
from tlstudio.gui.inspect.panel import preferred_run, run_title
from tlstudio.gui.state import AppState
from tlstudio.gui.widgets.wheel_guard import guard_wheel
from tlstudio.gui.workers.jobs import start_job
from tlstudio.gui.workers.predict import PredictController

if TYPE_CHECKING:
    from tlstudio.gui.canvas import CanvasView

#: "Predict on" choices: (key, text shown).
TARGETS = (
    ("val", "val split"),
    ("test", "test split"),
    ("unlabelled", "unlabelled images"),
    ("current", "current image"),
    ("selected", "selected images"),
    ("all", "all images"),
)
MODES = (("replace", "Replace labels of that kind"), ("add", "Add to the labels"))
ACCEPT_SHORTCUT = "Shift+A"


class _RunCombo(QComboBox):
    """A combo box that re-reads the runs each time its list opens (new runs appear)."""

    def __init__(self, refresh, parent: QWidget | None = None):
        super().__init__(parent)
        self._refresh = refresh

    def showPopup(self) -> None:
        self._refresh()
        super().showPopup()


class PredictionsPanel(QWidget):
    """Run picker, Predict on a set of images (progress, Cancel), label/prediction
    visibility, score threshold (0–1), Accept (Shift+A) and Accept all, and one line
    describing the current image's prediction."""

    message = Signal(str)  # status-bar text

    def __init__(self, app_state: AppState, canvas: CanvasView, parent: QWidget | None = None,
                 selected_ids: Callable[[], list[int]] | None = None):  # fmt: skip
        """``selected_ids()`` gives the images selected in the browser (the "images
        selected in the browser" choice; without it that choice means the current image)."""
        super().__init__(parent)
        self.setObjectName("predictionsPanel")
        self.app_state = app_state
        self.canvas = canvas
        self._selected_ids = selected_ids
        self.controller = PredictController(app_state, self)
        self.confirm_box: QMessageBox | None = None  # the open "Accept all" question
        self._record: RunRecord | None = None
        self._template: LandmarkTemplate | None = None
        self._building = False  # an "Accept all" step is being built in the background
        self._data_version = 0  # counts AppState.data_changed (labels edited, undone, ...)

        self.run_combo = _RunCombo(self.refresh_runs)
        self.run_combo.setObjectName("predictionsRunCombo")
        self.run_combo.setToolTip("The trained run whose predictions are shown and accepted")
        self.run_combo.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self.run_combo.setMinimumContentsLength(9)
        self.target_combo = QComboBox()
        for key, text in TARGETS:
            self.target_combo.addItem(text, key)
        self.target_combo.setCurrentIndex(self.target_combo.findData("all"))
        self.target_combo.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self.target_combo.setMinimumContentsLength(8)
        self.target_combo.setToolTip(
            "Unlabelled images: those without labels of the kind the run predicts "
            "(no class tag for a classifier, no box for a detector, ...). Selected images: "
            "those selected in the image browser (Ctrl/Shift-click)."
        )
        self.predict_button = QPushButton("Predict")
        self.predict_button.setToolTip("Run the model on these images and store its predictions")
        self.progress = QProgressBar()
        self.progress.setTextVisible(True)
        self.progress.setFormat("%v / %m images")
        self.cancel_button = QPushButton("Cancel")
        self.tta_check = QCheckBox("Predict with test-time augmentation")
        self.tta_check.setObjectName("ttaCheck")
        self.tta_check.setToolTip(
            "Test-time augmentation: also predict on the mirror image and slightly smaller and larger copies, map the "
            "outputs back (left/right landmarks swapped) and combine them: steadier "
            "predictions, 4× the time. Leave it off for models that must tell left from right."
        )
        self.show_labels = QCheckBox("Labels")
        self.show_labels.setChecked(True)
        self.show_labels.setToolTip("Show the image's labels on the canvas")
        self.show_predictions = QCheckBox("Predictions")
        self.show_predictions.setChecked(True)
        self.show_predictions.setToolTip("Show the run's prediction on the canvas")
        self.threshold_slider = QSlider(Qt.Orientation.Horizontal)
        self.threshold_slider.setRange(0, 100)
        self.threshold_slider.setSingleStep(1)
        self.threshold_slider.setPageStep(10)
        self.threshold_slider.setToolTip(
            "Minimum score (0–1) of the boxes and landmark points shown and accepted; "
            "classes need this probability to be accepted"
        )
        self.threshold_label = QLabel()
        self.threshold_label.setMinimumWidth(32)
        self.mode_combo = QComboBox()
        self.mode_combo.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self.mode_combo.setMinimumContentsLength(9)
        for key, text in MODES:
            self.mode_combo.addItem(text, key)
        self.mode_combo.setToolTip(
            "Replace: the image's labels of the predicted kind are replaced.\n"
            "Add: existing labels stay; predicted ones are added "
            "(a single-label image keeps its class)."
        )
        self.accept_action = QAction("Accept prediction", self)
        self.accept_action.setShortcut(QKeySequence(ACCEPT_SHORTCUT))
        self.accept_action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        self.accept_action.setToolTip(
            f"Write the current image's prediction as labels ({ACCEPT_SHORTCUT})"
        )
        self.addAction(self.accept_action)
        self.accept_button = QPushButton(f"Accept ({ACCEPT_SHORTCUT})")
        self.accept_button.setToolTip(self.accept_action.toolTip())
        self.accept_all_button = QPushButton("Accept all above threshold")
        self.accept_all_button.setToolTip(
            "Write every predicted image's prediction of this run as labels (one undo step)"
        )
        self.description = QLabel()
        self.description.setObjectName("predictionDescription")
        self.description.setWordWrap(True)
        self.description.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        # one labelled row per step (run, predict, show, accept), no group boxes: the dock
        # shares the right side with two others, and its Accept buttons must show at
        # 1280×800 without scrolling; still in a scroll area for shorter screens
        content = self._content = QWidget()
        self.scroll_area = QScrollArea()  # not `scroll`: that is QWidget.scroll(dx, dy)
        self.scroll_area.setWidgetResizable(True)
        self.scroll_area.setFrameShape(QFrame.Shape.NoFrame)
        self.scroll_area.setWidget(content)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(self.scroll_area)
        grid = QGridLayout(content)
        grid.setContentsMargins(6, 4, 6, 4)
        grid.setVerticalSpacing(4)
        grid.setColumnStretch(1, 1)
        checks = QHBoxLayout()
        checks.addWidget(self.show_labels)
        checks.addWidget(self.show_predictions)
        checks.addStretch(1)
        thr = QHBoxLayout()
        thr.addWidget(self.threshold_slider, 1)
        thr.addWidget(self.threshold_label)
        rows: list[tuple[QWidget | str, QWidget | QHBoxLayout]] = [
            ("Run:", self.run_combo),
            (self.predict_button, self.target_combo),  # reads "Predict [all images]"
            (self.cancel_button, self.progress),  # shown only while predicting
            ("Show:", checks),
            ("Score ≥", thr),
            ("Accept:", self.mode_combo),
            ("", self.accept_button),
            ("", self.accept_all_button),
            ("", self.tta_check),  # an option of Predict, below Accept: those stay in view
        ]
        for row, (left, right) in enumerate(rows):
            if isinstance(left, QWidget):
                grid.addWidget(left, row, 0)
            elif left:
                grid.addWidget(QLabel(left), row, 0)
            column, span = (1, 1) if left else (0, 2)  # the Accept buttons: full width
            if isinstance(right, QHBoxLayout):
                grid.addLayout(right, row, column, 1, span)
            else:
                grid.addWidget(right, row, column, 1, span)
        grid.addWidget(self.description, len(rows), 0, 1, 2)
        grid.setRowStretch(len(rows) + 1, 1)

        self.run_combo.currentIndexChanged.connect(self._run_chosen)
        self.predict_button.clicked.connect(self.predict)
        self.cancel_button.clicked.connect(self.controller.cancel)
        self.show_labels.toggled.connect(canvas.set_labels_visible)
        self.show_predictions.toggled.connect(canvas.set_predictions_visible)
        self.threshold_slider.valueChanged.connect(self._threshold_moved)
        self.accept_action.triggered.connect(self.accept_current)
        self.accept_button.clicked.connect(self.accept_action.trigger)
        self.accept_all_button.clicked.connect(self.accept_all)
        self.controller.progress.connect(self._on_progress)
        self.controller.failed.connect(self._on_failed)
        self.controller.finished.connect(self._on_finished)
        self.controller.running_changed.connect(lambda _r: self._update_enabled())
        app_state.project_opened.connect(lambda _p: self.refresh_runs())
        app_state.project_closed.connect(self.refresh_runs)
        app_state.run_changed.connect(self._follow_run)
        app_state.image_changed.connect(lambda _i: self.update_prediction())
        app_state.predictions_changed.connect(self.update_prediction)
        app_state.data_changed.connect(self._on_data_changed)

        self._set_running(False)
        self.threshold_slider.setValue(50)
        self._threshold_moved(50)
        self.refresh_runs()
        guard_wheel(self)  # scrolling the dock never moves the threshold or a choice

    def sizeHint(self) -> QSize:
        """The content's own size (a scroll area alone asks for a guess)."""
        return self._content.sizeHint() + QSize(2, 2)

    # -- properties ------------------------------------------------------------------
    @property
    def score_threshold(self) -> float:
        """The slider's threshold, 0–1."""
        return self.threshold_slider.value() / 100.0

    @property
    def mode(self) -> str:
        return self.mode_combo.currentData()

    @property
    def run(self) -> RunRecord | None:
        """The record of ``app_state.run_id`` (None when no run is chosen)."""
        return self._record

    # -- runs --------------------------------------------------------------------------
    def refresh_runs(self) -> None:
        """Re-read the runs with a model; keep ``app_state.run_id`` (or choose the newest
        finished one)."""
        project = self.app_state.project
        runs = RunStore(project).with_model() if project is not None else []
        current = self.app_state.run_id
        self.run_combo.blockSignals(True)
        self.run_combo.clear()
        for run in runs:
            self.run_combo.addItem(run_title(run, when=False), run.id)
        index = self.run_combo.findData(current) if current is not None else -1
        preferred = preferred_run(runs)  # None only without runs
        if index < 0 and current is None and preferred is not None:
            index = self.run_combo.findData(preferred.id)
        self.run_combo.setCurrentIndex(index)
        self.run_combo.setPlaceholderText(
            "no run yet" if not runs else ""
        )  # short: it sizes the box
        self.run_combo.blockSignals(False)
        if index >= 0 and current is None:
            self.app_state.set_run(self.run_combo.itemData(index))
        else:
            self._load_run()

    def _run_chosen(self, index: int) -> None:
        if index >= 0:
            self.app_state.set_run(self.run_combo.itemData(index))

    def _follow_run(self, run_id: object) -> None:
        index = self.run_combo.findData(run_id) if run_id is not None else -1
        if index < 0 and run_id is not None:
            self.refresh_runs()  # trained since the list was filled
            return
        self.run_combo.blockSignals(True)
        self.run_combo.setCurrentIndex(index)
        self.run_combo.blockSignals(False)
        self._load_run()

    def _load_run(self) -> None:
        project, run_id = self.app_state.project, self.app_state.run_id
        self._record = self._template = None
        if project is not None and run_id is not None:
            try:
                self._record = RunStore(project).get(run_id)
                tid = run_template_id(self._record)
                if "landmarks" in self._record.task.split(",") and tid is not None:
                    self._template = project.template(tid)
            except TlsError as exc:
                self.message.emit(str(exc))
        self.update_prediction()

    # -- the current image's prediction ------------------------------------------------
    def update_prediction(self) -> None:
        """Load the current image's prediction of the run onto the canvas."""
        project, rec, image_id = self.app_state.project, self._record, self.app_state.image_id
        pred = None
        if project is not None and rec is not None and image_id is not None:
            pred = RunStore(project).prediction(rec.id, image_id)
        self.canvas.set_prediction(pred, rec.task if rec is not None else None, self._template)
        self._update_description()

    def _on_data_changed(self) -> None:
        self._data_version += 1
        self._update_description()

    def _update_description(self) -> None:
        project, rec, image_id = self.app_state.project, self._record, self.app_state.image_id
        if project is None:
            text = ""
        elif rec is None:
            text = "Choose a trained run above (train one in the Train tab)."
        elif image_id is None:
            text = "Select an image to see its prediction."
        else:
            pred = self.canvas.prediction()
            if pred is not None and (pred.image_id != image_id or pred.run_id != rec.id):
                pred = None
            try:
                labels = project.annotations(image_id)
            except TlsError:
                labels = None
            text = describe_prediction(project, rec.task, pred, labels, self.score_threshold)
        self.description.setText(text)
        self._update_enabled()

    # -- predicting ----------------------------------------------------------------------
    def target_image_ids(self, target: str | None = None) -> list[int] | None:
        """Image ids of a "Predict on" choice (default: the combo's), None = all images."""
        project, rec = self.app_state.project, self._record
        target = target or self.target_combo.currentData()
        if project is None:
            return []
        if target == "all":
            return None
        if target in ("val", "test"):
            return [r.id for r in project.images_in_split(target)]
        if target == "selected" and self._selected_ids is not None:
            return list(self._selected_ids())
        if target in ("current", "selected"):
            return [] if self.app_state.image_id is None else [self.app_state.image_id]
        task = rec.task if rec is not None else ""
        tid = run_template_id(rec) if rec is not None else None
        return unlabelled_image_ids(project, task, tid)

    def predict(self) -> bool:
        """Start predicting the chosen images with the chosen run (in a thread)."""
        if self.app_state.project is None or self._record is None:
            self.message.emit("Choose a trained run first.")
            return False
        if self.controller.is_running:
            return False
        ids = self.target_image_ids()
        if ids is not None and not ids:
            what = self.target_combo.currentText()
            self.message.emit(f"Nothing to predict: the {what} selection has no images.")
            return False
        total = len(ids) if ids is not None else self.app_state.project.image_count()
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(0)
        tta = self.tta_check.isChecked()
        if not self.controller.start(self._record.id, ids, tta=tta):
            return False
        self._set_running(True)
        how = " with test-time augmentation" if tta else ""
        self.message.emit(f"Predicting {total} images with run #{self._record.id}{how} …")
        return True

    def _on_progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)

    def _on_failed(self, message: str) -> None:
        self.message.emit(message)
        self.description.setText(message)

    def _on_finished(self, n: int) -> None:
        self._set_running(False)
        if self.controller.last_error is None:
            self.message.emit(f"Predicted {n} image{'s' if n != 1 else ''}.")

    def _set_running(self, running: bool) -> None:
        self.progress.setVisible(running)
        self.cancel_button.setVisible(running)
        self.tta_check.setEnabled(not running)
        self._update_enabled()

    # -- display ---------------------------------------------------------------------------
    def _threshold_moved(self, value: int) -> None:
        t = value / 100.0
        self.threshold_label.setText(f"{t:.2f}")
        self.canvas.set_score_threshold(t)
        self._update_description()

    # -- accepting ---------------------------------------------------------------------------
    def accept_current(self) -> bool:
        """Write the current image's prediction as labels (one undo step)."""
        project, rec, image_id = self.app_state.project, self._record, self.app_state.image_id
        if project is None or rec is None or image_id is None:
            self.message.emit("Choose a run and an image first.")
            return False
        run_id = rec.id
        return self._push(
            lambda: accept_command(project, run_id, [image_id], self.score_threshold, self.mode),
            f"Nothing to accept on this image (no prediction scoring ≥ {self.score_threshold:.2f},"
            " or the labels already match).",
        )

    def accept_all(self) -> bool:
        """Write every predicted image's prediction above the threshold as labels in one
        undo step, after a question naming the count (a window-modal box, ``confirm_box``).
        The step is built in a background thread (own project connection): on many
        images, reading predictions and labels takes longer than the GUI may wait.
        Returns False when nothing was started."""
        project, rec = self.app_state.project, self._record
        if project is None or rec is None:
            self.message.emit("Choose a run first.")
            return False
        if self._building or self.confirm_box is not None:
            return False
        root, run_id = project.root, rec.id
        threshold, mode = self.score_threshold, self.mode
        version = self._data_version

        def build():
            from tlstudio.core.project import Project

            own = Project.open(root)
            try:
                ids = [i for i, _s in RunStore(own).predicted_images(run_id)]
                return accept_command(own, run_id, ids, threshold, mode)
            finally:
                own.close()

        def built(command) -> None:
            self._building = False
            self._update_enabled()
            if self.app_state.project is None or self.app_state.project.root != root:
                return
            if version != self._data_version:  # labels changed meanwhile: read them again
                self.accept_all()
                return
            self._ask_accept_all(command, run_id, threshold, mode)

        def failed(_kind: str, message: str) -> None:
            self._building = False
            self._update_enabled()
            self.message.emit(f"Cannot accept: {message}")

        self._building = True
        self._update_enabled()
        self.message.emit(f"Reading the predictions of run #{run_id} …")
        start_job(lambda _token, _progress: build(), context=self, succeeded=built, failed=failed)
        return True

    def _ask_accept_all(self, command, run_id: int, threshold: float, mode: str) -> None:
        n = accept_count(command)
        if not n:
            self.message.emit(
                f"Nothing to accept: no prediction of run #{run_id} scores ≥ "
                f"{threshold:.2f} where labels would change."
            )
            return
        how = "replacing" if mode == "replace" else "adding to"
        box = QMessageBox(
            QMessageBox.Icon.Question,
            "Accept predictions",
            f"Accept the predictions of run #{run_id} on {n} image{'s' if n != 1 else ''}, "
            f"{how} their labels (score ≥ {threshold:.2f})?\n\n"
            "This is one step: Edit → Undo reverts it.",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
            self,
        )
        box.setDefaultButton(QMessageBox.StandardButton.Yes)
        self.confirm_box = box
        version = self._data_version

        def answered(result: int) -> None:
            self.confirm_box = None
            box.deleteLater()
            if result != QMessageBox.StandardButton.Yes:
                return
            if version != self._data_version:  # the labels the step was built on changed
                self.message.emit("The labels changed meanwhile; press Accept all again.")
                return
            self._push(lambda: command, "Nothing to accept any more.")

        box.finished.connect(answered)
        box.open()

    def _push(self, build, nothing: str) -> bool:
        try:
            command = build()
            if command is None:
                self.message.emit(nothing)
                return False
            self.app_state.push(command)
        except (TlsError, RuntimeError) as exc:
            self.message.emit(f"Cannot accept: {exc}")
            return False
        self.message.emit(command.text)
        return True

    def _update_enabled(self) -> None:
        rec = self._record
        running = self.controller.is_running
        has_run = rec is not None and self.app_state.project is not None
        can_label = has_run and rec is not None and rec.task != "autoencode"
        has_pred = self.canvas.prediction() is not None and has_run
        self.predict_button.setEnabled(has_run and not running)
        self.target_combo.setEnabled(not running)
        self.accept_action.setEnabled(can_label and has_pred)
        self.accept_button.setEnabled(can_label and has_pred)
        self.accept_all_button.setEnabled(can_label and not running and not self._building)
        self.mode_combo.setEnabled(can_label)
        tip = NO_LABELS_NOTE if has_run and not can_label else ""
        self.accept_all_button.setStatusTip(tip)

    # -- lifecycle -------------------------------------------------------------------------
    def showEvent(self, event) -> None:
        super().showEvent(event)
        if self.app_state.project is not None:
            self.refresh_runs()

    def shutdown(self) -> None:
        """Cancel a running prediction and wait for its thread."""
        if self.confirm_box is not None:
            self.confirm_box.reject()
        self.controller.shutdown()
