""" "Combine runs into an ensemble": tick runs of one task (the folds of the inspected
run's k-fold experiment are ticked for you) and create an ensemble run from them
(:func:`tlstudio.ml.ensemble.create_ensemble`, in a background job with its own project
connection). The new run appears in every run picker like any other."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QVBoxLayout,
    QWidget,
)

from tlstudio.core.runs import RunRecord, RunStore
from tlstudio.gui.state import AppState
from tlstudio.gui.workers.jobs import start_job

RUN_ROLE = Qt.ItemDataRole.UserRole + 3
COMBINES = {"detect": (("wbf", "weighted box fusion"), ("nms", "non-maximum suppression"))}


def is_ensemble(run: RunRecord) -> bool:
    return isinstance(run.config, dict) and "ensemble" in run.config


def _create(root: str, members: list[int], combine: str | None) -> int:
    from tlstudio.core.project import Project
    from tlstudio.ml.ensemble import create_ensemble

    with Project.open(root) as project:
        return create_ensemble(project, members, combine=combine)


class EnsembleDialog(QDialog):
    """Pick member runs; ``created(run_id)`` once the ensemble run is recorded."""

    created = Signal(int)
    message = Signal(str)

    def __init__(self, app_state: AppState, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("ensembleDialog")
        self.setWindowTitle("Combine runs into an ensemble")
        self.app_state = app_state
        self._busy = False
        project, current = app_state.project, app_state.run_id
        runs = RunStore(project).with_model() if project is not None else []
        task = next((r.task for r in runs if r.id == current), runs[0].task if runs else "")
        self.task = task
        intro = QLabel(
            f"The ticked {task} runs predict together: their probabilities (heatmaps for "
            "landmarks, boxes for detection) are combined, and how much they disagree is "
            "shown as an uncertainty. Runs must share the input size and preprocessing."
        )
        intro.setWordWrap(True)
        self.run_list = QListWidget()
        self.run_list.setObjectName("ensembleRunList")
        from tlstudio.gui.inspect.panel import run_title

        ticked = set(self._suggested(current))
        for run in runs:
            if run.task != task or is_ensemble(run) or run.status != "finished":
                continue
            item = QListWidgetItem(run_title(run))
            item.setData(RUN_ROLE, run.id)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(
                Qt.CheckState.Checked if run.id in ticked else Qt.CheckState.Unchecked
            )
            self.run_list.addItem(item)
        self.combine_combo = QComboBox()
        for key, text in COMBINES.get(task, ()):
            self.combine_combo.addItem(text, key)
        combine_row = QHBoxLayout()
        combine_row.addWidget(QLabel("Boxes combined by:"))
        combine_row.addWidget(self.combine_combo, 1)
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        self.ok_button = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.ok_button.setText("Create ensemble")
        self.ok_button.setObjectName("createEnsembleButton")
        lay = QVBoxLayout(self)
        lay.addWidget(intro)
        lay.addWidget(self.run_list, 1)
        if task in COMBINES:
            lay.addLayout(combine_row)
        lay.addWidget(self.status)
        lay.addWidget(self.buttons)
        self.buttons.accepted.connect(self.create_ensemble)
        self.buttons.rejected.connect(self.reject)
        self.run_list.itemChanged.connect(lambda _i: self._update())
        self.resize(560, 420)
        self._update()

    def _suggested(self, current: int | None) -> list[int]:
        """The inspected run's k-fold siblings (all folds), else the run itself."""
        project = self.app_state.project
        if project is None or current is None:
            return []
        from tlstudio.ml.evaluation import cv_group

        return cv_group(project, current) or [current]

    def checked_runs(self) -> list[int]:
        return [
            int(self.run_list.item(i).data(RUN_ROLE))
            for i in range(self.run_list.count())
            if self.run_list.item(i).checkState() == Qt.CheckState.Checked
        ]

    def _update(self) -> None:
        n = len(self.checked_runs())
        self.ok_button.setEnabled(n >= 2 and not self._busy)
        if not self._busy:
            self.status.setText(
                f"{n} run{'s' if n != 1 else ''} ticked"
                + ("; tick at least two." if n < 2 else ".")
            )

    def create_ensemble(self) -> None:  # not `create`: that is QWidget.create()
        """Record the ensemble in the background; the dialog closes when it is done."""
        project = self.app_state.project
        members = sorted(self.checked_runs())
        if project is None or len(members) < 2 or self._busy:
            return
        self._busy = True
        self._update()
        self.status.setText("Creating the ensemble…")
        combine = self.combine_combo.currentData() if self.combine_combo.count() else None

        def done(run_id: object) -> None:
            self._busy = False
            self.created.emit(int(run_id))  # type: ignore[call-overload]
            self.message.emit(f"Ensemble run #{run_id} of runs {', '.join(map(str, members))}")
            self.accept()

        def failed(_kind: str, message: str) -> None:
            self._busy = False
            self._update()
            self.status.setText(f"Cannot combine these runs: {message}")

        start_job(
            lambda _t, _p: _create(str(project.root), members, combine),
            context=self, succeeded=done, failed=failed,
        )  # fmt: skip
