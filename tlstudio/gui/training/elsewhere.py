"""Training on a GPU server or a SLURM cluster, from the Train panel.

"Train elsewhere…" opens :class:`TrainElsewhereDialog`: it writes a job folder for the
configured run (:func:`tlstudio.core.jobs.write_bundle`: the run's settings, a small
project with the labels, the images or their relative paths, ``run.sh``) and says what to
run on the server and how to bring the run back. History → "Import finished run…"
(:func:`import_finished_run`) copies the run the job trained into the project, asking
first when the project's labels changed since the job was written. Both run as
:class:`~tlstudio.gui.workers.jobs.BackgroundJob` with their own project connection.
"""

from __future__ import annotations

import shlex
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Signal
from PySide6.QtGui import QFontDatabase
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from tlstudio.gui.workers.jobs import BackgroundJob

if TYPE_CHECKING:  # pragma: no cover
    from tlstudio.gui.state import AppState
    from tlstudio.gui.training.history import RunHistoryPanel
    from tlstudio.ml.runner import RunSpec

INTRO = (
    "Write a job folder that trains these settings on a GPU server or a cluster: the run's "
    "settings, the labels and splits of the images it uses, the images themselves (or, for "
    "storage the server shares with this computer, their paths) and run.sh, which trains "
    "with torchrun, one process per GPU, or under SLURM with sbatch."
)


def _write_job(root: str, spec: dict[str, Any], folder: str, copy_images: bool, progress) -> Any:
    """In a pool thread: the job folder for ``spec`` on the project's train/val images."""
    from tlstudio.core.jobs import write_bundle
    from tlstudio.core.project import Project
    from tlstudio.ml.data import train_val_ids

    seed = int(spec.get("train", {}).get("seed", 0))
    with Project.open(root, read_only=True) as project:
        train, val = train_val_ids(project, seed=seed)
        return write_bundle(
            project, spec, folder, train, val, copy_images=copy_images,
            progress=lambda done, total: progress(done, total, "copying images"),
        )  # fmt: skip


def commands_text(job: Any, project_root: Path) -> str:
    """What to run on the server and back here, for the job just written."""
    folder = shlex.quote(str(job.folder))
    images = "copied into it" if job.images_copied else "referred to by relative paths"
    lines = [
        f"Job folder: {job.folder}",
        f"{len(job.train_ids)} training and {len(job.val_ids)} validation images, {images}.",
        *[f"Warning: {w}" for w in job.warnings],
        "",
        "1. Copy the folder to the GPU server and start it there (one process per GPU):",
        f"       bash {folder}/run.sh",
        "   or on a SLURM cluster (edit the #SBATCH lines of run.sh first):",
        f"       cd {folder} && sbatch run.sh",
        "2. Copy the folder back here, then History → Import finished run… and choose it, or:",
        f"       tlstudio import-run {shlex.quote(str(project_root))} {folder}",
    ]
    return "\n".join(lines)


class TrainElsewhereDialog(QDialog):
    """Writes the job folder of ``spec`` for the open project; ``written(job)`` after."""

    written = Signal(object)  # tlstudio.core.jobs.Job

    def __init__(self, app_state: AppState, spec: RunSpec, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("trainElsewhereDialog")
        self.setWindowTitle("Train elsewhere")
        self.app_state = app_state
        self.spec = spec
        self.job: Any = None
        self._job: BackgroundJob | None = None
        assert app_state.project is not None  # the Train panel offers this with a project
        self.root = app_state.project.root
        root = self.root
        stamp = time.strftime("%Y%m%d-%H%M")
        intro = QLabel(INTRO)
        intro.setWordWrap(True)
        what = QLabel(f"Run: {spec.task} · {spec.backbone} · {spec.train.epochs} epochs · "
                      f"batch {spec.train.batch_size} per process")  # fmt: skip
        what.setObjectName("elsewhereRunLabel")
        self.folder_edit = QLineEdit(str(root.parent / f"{root.name}-job-{stamp}"))
        self.folder_edit.setObjectName("jobFolderEdit")
        self.folder_edit.setToolTip("A new or empty folder")
        self.browse_button = QPushButton("Browse…")
        self.browse_button.clicked.connect(self._browse)
        self.copy_box = QCheckBox("Copy the images into the job folder")
        self.copy_box.setObjectName("copyImagesBox")
        self.copy_box.setChecked(True)
        self.copy_box.setToolTip(
            "Off: the job refers to the images by paths relative to the job folder, for "
            "storage the server shares with this computer"
        )
        self.write_button = QPushButton("Write job folder")
        self.write_button.setObjectName("writeJobButton")
        self.write_button.setDefault(True)
        self.write_button.clicked.connect(self.write_job)
        self.status_label = QLabel("")
        self.status_label.setObjectName("elsewhereStatus")
        self.status_label.setWordWrap(True)
        self.commands = QPlainTextEdit()
        self.commands.setObjectName("elsewhereCommands")
        self.commands.setReadOnly(True)
        self.commands.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.commands.setPlaceholderText(
            "The commands to run appear here once the folder is written."
        )
        self.commands.setMinimumHeight(150)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)

        row = QHBoxLayout()
        row.addWidget(QLabel("Job folder"))
        row.addWidget(self.folder_edit, 1)
        row.addWidget(self.browse_button)
        act = QHBoxLayout()
        act.addWidget(self.copy_box)
        act.addStretch(1)
        act.addWidget(self.write_button)
        lay = QVBoxLayout(self)
        lay.addWidget(intro)
        lay.addWidget(what)
        lay.addLayout(row)
        lay.addLayout(act)
        lay.addWidget(self.status_label)
        lay.addWidget(self.commands, 1)
        lay.addWidget(buttons)
        self.resize(720, 460)

    def write_job(self) -> None:
        """Write the folder in the background; the commands follow."""
        folder = self.folder_edit.text().strip()
        if not folder or self._job is not None:
            return
        self.write_button.setEnabled(False)
        self.status_label.setText("Writing the job folder…")
        root, spec, copy = str(self.root), self.spec.to_dict(), self.copy_box.isChecked()
        job = BackgroundJob(
            lambda _t, progress: _write_job(root, spec, folder, copy, progress), context=self
        )
        job.progressed.connect(lambda d, t, s: self.status_label.setText(f"{s}: {d}/{t}"))
        job.succeeded.connect(self._written)
        job.failed.connect(self._failed)
        job.finished.connect(self._ended)
        self._job = job.start()

    def wait(self, msecs: int = 60_000) -> bool:
        """Tests and shutdown: wait for a write that is going on."""
        return self._job is None or self._job.wait(msecs)

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(
            self, "Job folder (new or empty)", str(Path(self.folder_edit.text()).parent)
        )
        if folder:
            self.folder_edit.setText(folder)

    def _written(self, job: Any) -> None:
        self.job = job
        self.status_label.setText("Written. Run it on the server:")
        self.commands.setPlainText(commands_text(job, self.root))
        self.written.emit(job)

    def _failed(self, _kind: str, message: str) -> None:
        self.status_label.setText(f"<span style='color:#c62828'>Not written: {message}</span>")

    def _ended(self) -> None:
        self._job = None
        self.write_button.setEnabled(True)

    def reject(self) -> None:
        if self._job is not None:
            self._job.cancel()
            self._job.wait()
        super().reject()


# --------------------------------------------------------------------------- import


def _import(root: str, folder: str, force: bool) -> tuple[str, Any]:
    """In a pool thread: ("imported", run id) or ("labels_changed", message)."""
    from tlstudio.core.jobs import LabelsChangedError, import_run
    from tlstudio.core.project import Project

    with Project.open(root) as project:
        try:
            return "imported", import_run(project, folder, force=force)
        except LabelsChangedError as exc:
            return "labels_changed", exc.reason


def import_finished_run(
    parent: QWidget, app_state: AppState, history: RunHistoryPanel, folder: str | None = None
) -> BackgroundJob | None:
    """Ask for a job folder (unless ``folder``) and import its run; the history then shows
    it selected and it becomes the run Inspect and Predictions show. Returns the job."""
    project = app_state.project
    if project is None:
        return None
    if folder is None:
        folder = QFileDialog.getExistingDirectory(
            parent, "Job folder with the finished run", str(project.root.parent)
        )
        if not folder:
            return None
    root = str(project.root)

    def start(force: bool) -> BackgroundJob:
        job = BackgroundJob(lambda _t, _p: _import(root, folder, force), context=history)
        job.succeeded.connect(answered)
        job.failed.connect(
            lambda _kind, message: QMessageBox.warning(parent, "Import finished run", message)
        )
        history.info_label.setText(f"Importing the run of {folder}…")
        return job.start()

    def answered(outcome: tuple[str, Any]) -> None:
        what, value = outcome
        if what == "labels_changed":
            reply = QMessageBox.question(
                parent, "Import finished run",
                f"{value[:1].upper()}{value[1:]}.\n\nImport the run anyway?",
                QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                QMessageBox.StandardButton.No,
            )  # fmt: skip
            if reply == QMessageBox.StandardButton.Yes:
                state["job"] = start(True)
            else:
                history.info_label.setText("Not imported.")
            return
        history.refresh()
        history.select_runs([value])
        history.info_label.setText(f"Imported the job's run as run {value}.")
        app_state.set_run(value)

    state: dict[str, BackgroundJob] = {}
    state["job"] = start(False)
    return state["job"]
