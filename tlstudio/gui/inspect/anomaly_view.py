"""Anomalies of an autoencoder run: every image ranked by reconstruction error (highest
first) with thumbnails; the selected image is shown next to its reconstruction and their
difference. Double-click opens the image in the Label canvas.

The ranking (which predicts the images that have no stored prediction yet) and each
reconstruction run as :class:`~tlstudio.gui.workers.jobs.BackgroundJob` s in this
view's thread pool, each with its own Project connection.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QAbstractListModel, QModelIndex, QPersistentModelIndex, QSize, Qt, Signal
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QListView,
    QProgressBar,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from tlstudio.core.cancel import CancelToken
from tlstudio.core.errors import Cancelled
from tlstudio.core.runs import RunStore
from tlstudio.gui.state import AppState
from tlstudio.gui.workers.jobs import BackgroundJob, Progress, job_pool
from tlstudio.gui.workers.thumbnails import ProjectThumbnails, placeholder_icon

ICON_PX = 64  # list thumbnails, longest side (screen pixels)
PREVIEW_PX = 280  # original / reconstruction / difference, each (screen pixels)


@dataclass(frozen=True)
class _Row:
    image_id: int
    error: float
    name: str
    sha256: str
    path: str


def _rank(
    root: Path, run_id: int, token: CancelToken, progress: Progress
) -> tuple[list[_Row], bool]:
    from tlstudio.core.project import Project
    from tlstudio.ml import embed

    project = Project.open(root)
    try:
        before = len(RunStore(project).predicted_images(run_id))
        ranking = embed.anomaly_ranking(
            project, run_id, progress=lambda d, t: progress(d, t, "predict"), token=token
        )
        predicted = len(RunStore(project).predicted_images(run_id)) != before
        if token.is_cancelled:  # the ranking lacks the images left unpredicted
            raise Cancelled("anomaly ranking cancelled")
        rows = []
        for image_id, error in ranking:
            rec = project.image(image_id)
            rows.append(_Row(image_id, error, rec.name, rec.sha256, str(project.image_path(rec))))
        return rows, predicted
    finally:
        project.close()


def _reconstruct(root: Path, run_id: int, image_id: int) -> tuple[int, Any]:
    from tlstudio.core.project import Project
    from tlstudio.ml import embed

    project = Project.open(root)
    try:
        return image_id, embed.reconstructions(project, run_id, [image_id])[0]
    finally:
        project.close()


def rgb_pixmap(rgb: np.ndarray, size: int) -> QPixmap:
    """H×W×3 uint8 RGB → QPixmap scaled to fit ``size``×``size`` (nearest neighbour, so
    the pixels the network saw stay visible)."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    h, w = rgb.shape[:2]
    image = QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()
    return QPixmap.fromImage(image).scaled(
        size, size, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.FastTransformation
    )


def difference_rgb(original: np.ndarray, reconstruction: np.ndarray) -> np.ndarray:
    """Per-pixel absolute difference (mean over channels) as a dark-to-yellow heat image,
    scaled so 255 = the largest difference in this image."""
    d = np.abs(original.astype(np.float32) - reconstruction.astype(np.float32)).mean(axis=2)
    d = d / max(float(d.max()), 1.0)
    heat = np.stack([np.clip(2 * d, 0, 1), np.clip(2 * d - 0.5, 0, 1), 0.15 * (1 - d)], axis=2)
    return (heat * 255).astype(np.uint8)


class _RankModel(QAbstractListModel):
    """Rows of the ranking: "rank. name" and the error; icons from ``thumbs``."""

    def __init__(self, thumbs: ProjectThumbnails, parent: QWidget | None = None):
        super().__init__(parent)
        self.rows: list[_Row] = []
        self.thumbs = thumbs
        self._by_key: dict[str, list[int]] = {}
        self._placeholder = placeholder_icon(ICON_PX)

    def set_rows(self, rows: list[_Row]) -> None:
        self.beginResetModel()
        self.rows = rows
        self._by_key = {}
        for i, r in enumerate(rows):
            self._by_key.setdefault(r.sha256, []).append(i)
        self.endResetModel()

    def rowCount(
        self,
        parent: QModelIndex | QPersistentModelIndex = QModelIndex(),  # noqa: B008
    ) -> int:
        return 0 if parent.isValid() else len(self.rows)

    def data(
        self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if not index.isValid():
            return None
        r = self.rows[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return f"{index.row() + 1}. {r.name}\nerror {r.error:.4g}"
        if role == Qt.ItemDataRole.DecorationRole:
            icon = self.thumbs.icon(r.sha256, Path(r.path))
            return icon or self._placeholder
        if role == Qt.ItemDataRole.ToolTipRole:
            return f"{r.path}\nimage {r.image_id}, reconstruction error {r.error:.6g}"
        if role == Qt.ItemDataRole.UserRole:
            return r.image_id
        return None

    def thumbnail_ready(self, key: str) -> None:
        for i in self._by_key.get(key, []):
            idx = self.index(i)
            self.dataChanged.emit(idx, idx, [Qt.ItemDataRole.DecorationRole])


class AnomalyView(QWidget):
    """Images of an autoencoder run ranked by reconstruction error (Inspect mode)."""

    message = Signal(str)  # status-bar text
    open_image = Signal(int)  # show this image in the Label canvas
    ranked = Signal(int)  # the ranking is shown (number of images)
    reconstruction_shown_for = Signal(int)  # image id now shown with its reconstruction

    def __init__(self, app_state: AppState, parent: QWidget | None = None):
        super().__init__(parent)
        self.app_state = app_state
        self._pool = job_pool(self, 2, "anomaly view")
        self._rank_job: BackgroundJob | None = None
        self._recon_job: BackgroundJob | None = None
        self._ranked_run: int | None = None
        self._shown_image: int | None = None
        self._wanted_image: int | None = None
        self._thumbs = ProjectThumbnails(app_state, icon_size=ICON_PX, parent=self)

        self.info_label = QLabel("")
        self.info_label.setObjectName("anomalyInfo")
        self.info_label.setWordWrap(True)
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(220)
        self.progress.hide()
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.hide()
        self.rank_button = QPushButton("Rank again")
        self.rank_button.setToolTip("Re-read the reconstruction errors of every image")

        self.model = _RankModel(self._thumbs, self)
        self._thumbs.thumbnail_ready.connect(self.model.thumbnail_ready)
        self.list_view = QListView()
        self.list_view.setObjectName("anomalyList")
        self.list_view.setModel(self.model)
        self.list_view.setIconSize(QSize(ICON_PX, ICON_PX))
        self.list_view.setUniformItemSizes(True)
        self.list_view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.list_view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.list_view.setMinimumWidth(260)

        self.original_label = QLabel()
        self.recon_label = QLabel()
        self.diff_label = QLabel()
        titles = ("Original (network input)", "Reconstruction", "Difference")
        grid = QGridLayout()
        for col, (title, label) in enumerate(
            zip(titles, (self.original_label, self.recon_label, self.diff_label), strict=True)
        ):
            label.setFixedSize(PREVIEW_PX, PREVIEW_PX)
            label.setAlignment(Qt.AlignmentFlag.AlignCenter)
            label.setStyleSheet("background: #f0f1f3; border: 1px solid #d0d4da;")
            head = QLabel(f"<b>{title}</b>")
            head.setAlignment(Qt.AlignmentFlag.AlignCenter)
            grid.addWidget(head, 0, col)
            grid.addWidget(label, 1, col)
        self.error_label = QLabel("Select an image in the list.")
        self.error_label.setObjectName("anomalyError")
        self.error_label.setWordWrap(True)
        detail = QWidget()
        dl = QVBoxLayout(detail)
        dl.addLayout(grid)
        dl.addWidget(self.error_label)
        dl.addStretch(1)

        self.splitter = QSplitter()
        self.splitter.addWidget(self.list_view)
        self.splitter.addWidget(detail)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setSizes([320, 880])

        top = QHBoxLayout()
        top.addWidget(self.info_label, 1)
        top.addWidget(self.progress)
        top.addWidget(self.cancel_button)
        top.addWidget(self.rank_button)
        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addWidget(self.splitter, 1)

        self.cancel_button.clicked.connect(self._cancel)
        self.rank_button.clicked.connect(self.rank)
        self.list_view.selectionModel().currentChanged.connect(self._current_changed)
        self.list_view.doubleClicked.connect(self._double_clicked)
        app_state.run_changed.connect(lambda _r: self._run_changed())
        app_state.project_opened.connect(lambda _p: self._run_changed())
        app_state.project_closed.connect(self._run_changed)
        self._run_changed()

    # -- public ---------------------------------------------------------------------------
    def ranking(self) -> list[tuple[int, float]]:
        """(image id, error) rows as listed, highest error first."""
        return [(r.image_id, r.error) for r in self.model.rows]

    def ranking_ready(self) -> bool:
        return self._ranked_run is not None and self._rank_job is None

    def reconstruction_shown(self) -> bool:
        return self._shown_image is not None and self._shown_image == self._wanted_image

    def rank(self) -> None:
        """Rank the current autoencoder run's images (predicting those without errors)."""
        project, run_id = self.app_state.project, self.app_state.run_id
        if project is None or run_id is None or self._rank_job is not None:
            return
        if not self._is_autoencoder(run_id):
            return
        root = project.root
        job = BackgroundJob(
            lambda token, progress: _rank(root, run_id, token, progress),
            context=self,
            needs_ml=True,
        )
        job.progressed.connect(self._progressed)
        job.succeeded.connect(lambda res, r=run_id: self._ranked(r, res))
        job.failed.connect(self._rank_failed)
        job.cancelled.connect(self._rank_cancelled)
        self._rank_job = job.start(self._pool)
        self.progress.setRange(0, 0)
        self.progress.setFormat("Reading errors…")
        self.progress.show()
        self.cancel_button.show()
        self.rank_button.setEnabled(False)

    def shutdown(self) -> None:
        for job in (self._rank_job, self._recon_job):
            if job is not None:
                job.cancel()
        self._thumbs.shutdown()
        self._pool.waitForDone()

    # -- state ----------------------------------------------------------------------------
    def _is_autoencoder(self, run_id: int) -> bool:
        project = self.app_state.project
        return project is not None and RunStore(project).get(run_id).task == "autoencode"

    def _run_changed(self) -> None:
        if self._rank_job is not None:
            self._rank_job.cancel()
        self._ranked_run = None
        self._shown_image = self._wanted_image = None
        self.model.set_rows([])
        self._clear_preview()
        project, run_id = self.app_state.project, self.app_state.run_id
        ok = project is not None and run_id is not None and self._is_autoencoder(run_id)
        self.splitter.setVisible(ok)
        self.rank_button.setVisible(ok)
        if project is None or run_id is None:
            self.info_label.setText("No run chosen: train an autoencoder, then pick it above.")
        elif not ok:
            task = RunStore(project).get(run_id).task
            self.info_label.setText(
                f"The anomaly ranking needs an autoencoder run; run #{run_id} is a {task} run. "
                "Train one with the task Autoencoder, then pick it above."
            )
        else:
            self.info_label.setText(f"Run #{run_id}: images ranked by reconstruction error.")
            if self.isVisible():
                self.rank()

    def showEvent(self, event) -> None:
        super().showEvent(event)
        run_id = self.app_state.run_id
        if run_id is not None and self._ranked_run != run_id and self._rank_job is None:
            self.rank()

    def _clear_preview(self) -> None:
        for label in (self.original_label, self.recon_label, self.diff_label):
            label.setPixmap(QPixmap())
        self.error_label.setText("Select an image in the list.")

    # -- jobs -----------------------------------------------------------------------------
    def _progressed(self, done: int, total: int, _stage: str) -> None:
        if total > 0:
            self.progress.setRange(0, total)
            self.progress.setValue(done)
            self.progress.setFormat("Predicting %v/%m")

    def _end_rank_job(self) -> None:
        self._rank_job = None
        self.progress.hide()
        self.cancel_button.hide()
        self.rank_button.setEnabled(True)

    def _ranked(self, run_id: int, result: tuple[list[_Row], bool]) -> None:
        self._end_rank_job()
        rows, predicted = result
        if predicted:
            self.app_state.predictions_changed.emit()
        if run_id != self.app_state.run_id:
            return
        self._ranked_run = run_id
        self.model.set_rows(rows)
        if rows:
            lo, hi = rows[-1].error, rows[0].error
            self.info_label.setText(
                f"Run #{run_id}: {len(rows)} images ranked by reconstruction error, highest "
                f"first (from {hi:.4g} down to {lo:.4g}, mean squared error in normalised "
                "input units). Double-click an image to open it."
            )
        self.message.emit(f"Ranked {len(rows)} images by reconstruction error")
        self.ranked.emit(len(rows))

    def _rank_failed(self, _kind: str, message: str) -> None:
        self._end_rank_job()
        self.info_label.setText(f"Could not rank the images: {message}")
        self.message.emit(f"Anomaly ranking failed: {message}")

    def _rank_cancelled(self) -> None:
        self._end_rank_job()
        self.message.emit("Anomaly ranking cancelled")

    def _cancel(self) -> None:
        if self._rank_job is not None:
            self._rank_job.cancel()
            self.progress.setFormat("Cancelling…")

    def _current_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        if not current.isValid():
            return
        self._wanted_image = int(current.data(Qt.ItemDataRole.UserRole))
        self.error_label.setText("Reconstructing…")
        self._request_reconstruction()

    def _request_reconstruction(self) -> None:
        project, run_id = self.app_state.project, self.app_state.run_id
        busy = self._recon_job is not None
        if busy or project is None or run_id is None or self._wanted_image is None:
            return
        image_id, root = self._wanted_image, project.root
        job = BackgroundJob(
            lambda _t, _p: _reconstruct(root, run_id, image_id), context=self, needs_ml=True
        )
        job.succeeded.connect(self._reconstructed)
        job.failed.connect(lambda _kind, message: self._reconstruct_failed(message))
        job.cancelled.connect(lambda: self._reconstruct_failed("cancelled"))
        self._recon_job = job.start(self._pool)

    def _reconstructed(self, result: tuple[int, Any]) -> None:
        self._recon_job = None
        image_id, (original, recon, error) = result
        if image_id != self._wanted_image:
            self._request_reconstruction()  # the user moved on meanwhile: show the latest
            return
        self.original_label.setPixmap(rgb_pixmap(original, PREVIEW_PX))
        self.recon_label.setPixmap(rgb_pixmap(recon, PREVIEW_PX))
        self.diff_label.setPixmap(rgb_pixmap(difference_rgb(original, recon), PREVIEW_PX))
        rank = next((i for i, r in enumerate(self.model.rows) if r.image_id == image_id), None)
        where = f", rank {rank + 1} of {len(self.model.rows)}" if rank is not None else ""
        name = self.model.rows[rank].name if rank is not None else f"image {image_id}"
        self.error_label.setText(
            f"<b>{name}</b>: reconstruction error {error:.4g}{where} "
            f"({original.shape[1]}×{original.shape[0]} px network input). "
            "Difference: brighter = larger error."
        )
        self._shown_image = image_id
        self.reconstruction_shown_for.emit(image_id)

    def _reconstruct_failed(self, message: str) -> None:
        self._recon_job = None
        self.error_label.setText(f"Could not reconstruct: {message}")

    def _double_clicked(self, index: QModelIndex) -> None:
        if index.isValid():
            image_id = int(index.data(Qt.ItemDataRole.UserRole))
            self.message.emit(f"Opening image {image_id}")
            self.open_image.emit(image_id)
