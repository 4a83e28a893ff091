"""Importing images and label files off the GUI thread, with progress and Cancel.

:func:`run_import` runs as a :class:`~tlstudio.gui.workers.jobs.BackgroundJob` in a
one-thread pool with its *own* :class:`Project` opened on the same folder (SQLite
connections are per thread) and reports plain data. :class:`ImportController` owns the
job and the progress dialog, refreshes the GUI when the job is done and emits
``finished(result)``; the window shows the result (a dialog listing failures). Dropped
files and File → Import use the same path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import QProgressBar, QProgressDialog, QWidget

from tlstudio.core import imageio
from tlstudio.core.cancel import CancelToken
from tlstudio.core.errors import FormatError, TlsError, error_message, shown_path
from tlstudio.core.formats import (
    LABEL_SUFFIXES,
    LabelImportReport,
    detect_format,
    import_labels,
)
from tlstudio.core.project import Project
from tlstudio.gui.state import AppState
from tlstudio.gui.workers.jobs import BackgroundJob, Progress, job_pool

MODES = ("auto", "images", "labels")


@dataclass(frozen=True)
class ImportJob:
    """What to import. ``mode``: 'auto' (image files and folders are added as images,
    label files by content), 'images' or 'labels' (each path is a label file or dataset
    folder, in ``label_format`` or detected). ``copy``: copy new images into the project."""

    paths: tuple[Path, ...]
    mode: str = "auto"
    label_format: str | None = None
    copy: bool = False


@dataclass
class ImportResult:
    """Plain outcome of an import; ``failed`` lists (file, reason) of every bad input."""

    images_added: int = 0
    duplicates: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[tuple[str, str]] = field(default_factory=list)
    labels: list[tuple[str, str, LabelImportReport]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    cancelled: bool = False

    @property
    def changed_labels(self) -> bool:
        return bool(self.labels)

    def summary(self) -> str:
        parts = [f"{self.images_added} image{'s' if self.images_added != 1 else ''} added"]
        for path, fmt, rep in self.labels:
            n = sum(rep.annotations.values())
            parts.append(f"{Path(path).name} ({fmt}): {n} annotations, {rep.images_added} images")
        if self.duplicates:
            n = len(self.duplicates)
            parts.append(f"{n} duplicate{'s' if n != 1 else ''} skipped")
        if self.failed:
            parts.append(f"{len(self.failed)} bad file{'s' if len(self.failed) != 1 else ''}")
        if self.cancelled:
            parts.append("cancelled")
        return "; ".join(parts)


def split_paths(job: ImportJob) -> tuple[list[Path], list[Path]]:
    """(image paths, label sources) of a job. Only suffixes are looked at."""
    if job.mode == "images":
        return list(job.paths), []
    if job.mode == "labels":
        return [], list(job.paths)
    images, labels = [], []
    for p in job.paths:
        if p.is_file() and p.suffix.lower() in LABEL_SUFFIXES and not imageio.is_image_file(p):
            labels.append(p)
        else:
            images.append(p)
    return images, labels


#: progress stage while images are added (``done`` of ``total`` images)
ADDING_IMAGES = "Adding images"


def run_import(
    project_root: Path, job: ImportJob, token: CancelToken, progress: Progress
) -> ImportResult:
    """Do ``job`` with an own :class:`Project` on ``project_root`` (any thread); stops
    after the current file once ``token`` is cancelled. Every bad input is listed in the
    result, never raised. Progress stages: "Looking at the files…", ``ADDING_IMAGES``
    (images), "Importing labels from NAME…" (label sources), "Done"."""
    result = ImportResult()
    try:
        project = Project.open(project_root)
    except Exception as exc:
        result.failed.append((str(project_root), f"cannot open the project: {exc}"))
        return result
    try:
        _import(project, job, token, progress, result)
    except Exception as exc:  # reported in the result dialog, never a crash
        result.failed.append(("(import)", error_message(exc)))
    finally:
        project.close()
    return result


def _import(
    project: Project, job: ImportJob, token: CancelToken, progress: Progress, result: ImportResult
) -> None:
    progress(0, 0, "Looking at the files…")
    images, labels = split_paths(job)
    if job.mode == "auto":
        for p in images:
            if p.is_dir():
                try:
                    fmt = detect_format(p)
                except (FormatError, OSError):
                    continue
                result.notes.append(
                    f"{p} looks like a {fmt} dataset; only its images were added. "
                    "Use File → Import labels… to import its labels."
                )
    if images:  # first, so label files can refer to these images
        report = project.add_images(
            images,
            copy=job.copy,
            progress=lambda done, total: progress(done, total, ADDING_IMAGES),
            should_cancel=lambda: token.is_cancelled,
        )
        result.images_added = len(report.added)
        result.duplicates = [str(p) for p in report.duplicates]
        result.failed += [(shown_path(p), reason) for p, reason in report.failed]
        result.failed += [(shown_path(p), reason) for p, reason in report.skipped]
        result.warnings += [(str(p), msg) for p, msg in report.warnings]
        result.cancelled = report.cancelled
    for i, p in enumerate(labels):
        if token.is_cancelled:
            result.cancelled = True
            break
        progress(i, len(labels), f"Importing labels from {p.name}…")
        try:
            fmt = job.label_format or detect_format(p)
            label_report = import_labels(project, p, fmt, copy_images=job.copy)
        except (TlsError, ValueError, OSError) as exc:
            result.failed.append((str(p), str(exc)))
            continue
        result.labels.append((str(p), fmt, label_report))
        result.warnings += [(str(p), msg) for msg in label_report.warnings]
    progress(1, 1, "Done")


class ImportController(QObject):
    """Starts imports (one at a time), shows progress with Cancel, refreshes the GUI.

    ``finished(result)`` is emitted after ``app_state.data_changed`` went out; showing the
    result is the receiver's job (this module opens no dialog but the progress)."""

    started = Signal()
    finished = Signal(object)  # ImportResult

    def __init__(self, app_state: AppState, parent_widget: QWidget):
        super().__init__(parent_widget)
        self.app_state = app_state
        self.parent_widget = parent_widget
        # its own thread: a long import must not hold up the window's short jobs
        self._pool = job_pool(self, 1, "import")
        self.job: BackgroundJob | None = None
        self.progress: QProgressDialog | None = None
        self.last_result: ImportResult | None = None

    @property
    def busy(self) -> bool:
        return self.job is not None

    def start(self, job: ImportJob) -> bool:
        """Start ``job`` on the open project; False if none is open or one is running."""
        project = self.app_state.project
        if project is None or self.busy or not job.paths:
            return False
        root = project.root
        self.job = BackgroundJob(
            lambda token, progress: run_import(root, job, token, progress),
            context=self,
            progress_interval_s=0.05,  # at most ~20 updates a second, plus each stage's end
        )
        self.job.progressed.connect(self._on_progress)
        self.job.succeeded.connect(self._on_finished)
        self.job.failed.connect(self._on_failed)
        self.job.cancelled.connect(lambda: self._on_finished(ImportResult(cancelled=True)))
        self._show_progress()
        self.job.start(self._pool)
        self.started.emit()
        return True

    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancel()
            if self.progress is not None:
                self.progress.setLabelText("Cancelling after the current file…")

    def shutdown(self) -> None:
        """Cancel a running import and wait for it (window closing)."""
        if self.job is not None:
            self.job.cancel()
        self._pool.waitForDone()

    def _show_progress(self) -> None:
        dlg = QProgressDialog("Importing…", "Cancel", 0, 0, self.parent_widget)
        dlg.setWindowTitle("Import")
        # Window-modal so nothing edits the project meanwhile. The bar is driven directly:
        # QProgressDialog.setValue on a modal dialog would call processEvents().
        dlg.setWindowModality(Qt.WindowModality.WindowModal)
        dlg.setAutoClose(False)
        dlg.setAutoReset(False)
        dlg.setMinimumDuration(300)
        self._bar = QProgressBar(dlg)
        dlg.setBar(self._bar)
        dlg.setValue(0)  # not shown yet: only starts the show-after-300-ms timer
        dlg.canceled.connect(self.cancel)
        self.progress = dlg

    def _on_progress(self, done: int, total: int, stage: str) -> None:
        if self.progress is None:
            return
        self._bar.setRange(0, total)
        self._bar.setValue(done)
        text = f"{stage}: {done} of {total}" if stage == ADDING_IMAGES else stage
        self.progress.setLabelText(text)

    def _on_failed(self, _kind: str, message: str) -> None:
        # run_import lists its failures in the result: this is a bug past that
        self._on_finished(ImportResult(failed=[("(import)", message)]))

    def _on_finished(self, result: ImportResult) -> None:
        if self.progress is not None:
            self.progress.canceled.disconnect(self.cancel)
            self.progress.close()
            self.progress.deleteLater()
            self.progress = None
        self.job = None
        self.last_result = result
        stack = self.app_state.undo_stack
        if result.changed_labels and stack is not None:
            # Undoing an earlier AddClass would now also delete the imported annotations
            # that use that class, so the history before a label import is dropped.
            stack.clear()  # emits data_changed
        else:
            self.app_state.data_changed.emit()
        self.finished.emit(result)  # the window lists failures, warnings and notes
