"""The backbone chooser: a table of backbones with their size, cost, accuracy and
weights, the weights actions (import a file, download) and the weights choice.

"CPU cost" is a static estimate: the backbone's multiply-accumulates per image at its
own input size (torchvision's published GFLOPS; the TensorFlow README's MACs for
EfficientNet-Lite), relative to EfficientNet-Lite0. It ranks backbones; it does not
predict wall time, because depthwise convolutions run slower per FLOP on CPUs than
dense ones. "Measure speed" times the selected backbone on this machine's CPU (random
weights, batch of 4, median of 3 after a warm-up) and keeps the ms/image in QSettings;
a measured figure replaces the estimate in the table.

Importing torch-heavy modules happens before this widget is built (see
:mod:`tlstudio.gui.training.config_panel`), so its constructor may use them.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import TYPE_CHECKING, cast

from PySide6.QtCore import QCoreApplication, QSettings, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QStandardItemModel
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMessageBox,
    QProgressDialog,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from tlstudio.core.cancel import CancelToken
from tlstudio.core.errors import Cancelled
from tlstudio.gui.workers.jobs import BackgroundJob, Progress, job_pool, start_job

if TYPE_CHECKING:  # torch-heavy modules: imported lazily at run time
    from tlstudio.ml.architectures import BackboneSpec
    from tlstudio.ml.weights import WeightsStatus

DEFAULT_BACKBONE = "efficientnet_lite0"

#: GMACs per image at the backbone's own input size (torchvision ``_ops``; Lite: TF README).
GMACS: dict[str, float] = {
    "resnet18": 1.814,
    "resnet34": 3.664,
    "resnet50": 4.089,
    "mobilenet_v3_small": 0.057,
    "mobilenet_v3_large": 0.217,
    "efficientnet_b0": 0.386,
    "efficientnet_b1": 0.687,
    "convnext_tiny": 4.456,
    "vgg16_bn": 15.47,
    "densenet121": 2.834,
    "regnet_y_400mf": 0.402,
    "efficientnet_lite0": 0.4,
    "efficientnet_lite1": 0.6,
    "efficientnet_lite2": 0.9,
}

WEIGHTS_CHOICES: tuple[tuple[str, str, str], ...] = (
    ("auto", "auto (bundled, else downloaded)", "Bundled weights if the backbone has them, else downloaded or imported ones."),
    ("bundled", "bundled", "The ImageNet weights that ship with tlstudio (EfficientNet-Lite only)."),
    ("cached", "downloaded / imported", "Weights in torch's cache, put there by Download or Import weights file."),
    ("none", "none (train from scratch)", "Random initial weights: no transfer learning; needs far more images."),
)  # fmt: skip

COLUMNS = ("Backbone", "Params", "Input", "CPU cost", "Top-1", "Weights")
_SPEED_KEY = "train/cpu_ms_per_image/{name}"


def measure_cpu_ms_per_image(name: str, input_size: int, batch: int = 4, repeats: int = 3) -> float:
    """Median CPU milliseconds per image of a forward pass of ``name`` (random weights)."""
    import torch

    from tlstudio.ml.backbones import build_backbone

    model = build_backbone(name, "none").eval()
    x = torch.randn(batch, 3, input_size, input_size)
    times = []
    with torch.inference_mode():
        model(x)  # warm-up: allocations, kernel selection
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t0)
    return 1000.0 * statistics.median(times) / batch


def read_weights_statuses(names: list[str]) -> dict[str, WeightsStatus]:
    """:func:`~tlstudio.ml.weights.weights_status` of each backbone (disk only; ~3 ms each)."""
    from tlstudio.ml.weights import weights_status

    return {name: weights_status(name) for name in names}


def download_job(name: str) -> BackgroundJob:
    """A job that runs :func:`tlstudio.ml.weights.download_weights` (the only network
    access): ``progressed(bytes done, bytes in all (0: unknown), "")``, ``succeeded(path
    of the cached file)``; a cancel stops it at the next chunk (the partial file is
    removed)."""

    def download(token: CancelToken, progress: Progress) -> str:
        from tlstudio.ml import weights as W

        def report(done: int, total: int) -> None:
            if token.is_cancelled:
                raise Cancelled(f"download of {name}'s weights cancelled")
            progress(done, total)

        return str(W.download_weights(name, report))

    return BackgroundJob(download, name=f"download {name}", needs_ml=True, progress_interval_s=0.1)


def _item(text: str, tip: str = "", align_right: bool = False) -> QTableWidgetItem:
    item = QTableWidgetItem(text)
    item.setFlags(Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemIsEnabled)
    if tip:
        item.setToolTip(tip)
    if align_right:
        item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
    return item


class BackboneTable(QWidget):
    """Backbones with their facts; the selected row is the run's backbone."""

    backbone_changed = Signal(str)
    weights_changed = Signal()  # the weights choice, or what is available, changed
    status_refreshed = Signal()  # weights availability re-read from disk
    speed_measured = Signal(str)  # a backbone's CPU time per image was measured and kept
    message = Signal(str)  # confirmations for a status bar

    def __init__(
        self,
        settings: QSettings | None = None,
        parent: QWidget | None = None,
        *,
        statuses: dict[str, WeightsStatus] | None = None,
    ):
        """``statuses``: :func:`~tlstudio.ml.weights.weights_status` per backbone, if
        already known (reading them takes ~40 ms, so the panel gathers them off the GUI
        thread); else they are read here."""
        super().__init__(parent)
        from tlstudio.ml.backbones import list_backbones

        self._settings = settings if settings is not None else QSettings()
        self._specs = {s.name: s for s in list_backbones()}
        self._names = list(self._specs)
        self._status: dict[str, WeightsStatus] = {}
        self._current = ""
        self._busy = False
        self._editable = True
        self._download: BackgroundJob | None = None
        self._progress: QProgressDialog | None = None
        self._pool = job_pool(self, 1, "weights-download")  # a download waits for no one

        self.table = QTableWidget(len(self._names), len(COLUMNS))
        self.table.setObjectName("backboneTable")
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(22)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setAlternatingRowColors(True)
        self.table.setWordWrap(False)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for col in range(1, len(COLUMNS)):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
        tips = (
            "torchvision ImageNet models and EfficientNet-Lite",
            "Parameters of the feature extractor, in millions",
            "The input size (pixels) the backbone was trained at",
            "Estimated CPU cost per image relative to EfficientNet-Lite0 (from multiply-"
            "accumulates); ms = measured on this computer with Measure speed",
            "ImageNet top-1 accuracy of the pretrained weights (%)",
            "bundled: ships with tlstudio; cached: downloaded or imported; missing: "
            "download or import, or train from scratch",
        )
        for col, tip in enumerate(tips):
            header_item = self.table.horizontalHeaderItem(col)
            if header_item is not None:  # set by setHorizontalHeaderLabels above
                header_item.setToolTip(tip)
        for row, name in enumerate(self._names):
            spec = self._specs[name]
            self.table.setItem(row, 0, _item(name, f"{name} ({spec.family})"))
            self.table.setItem(row, 1, _item(f"{spec.num_params / 1e6:.1f} M", align_right=True))
            self.table.setItem(row, 2, _item(f"{spec.input_size}", align_right=True))
            self.table.setItem(row, 3, _item("", align_right=True))
            top1 = "—" if spec.imagenet_top1 is None else f"{spec.imagenet_top1:.1f} %"
            self.table.setItem(row, 4, _item(top1, align_right=True))
            self.table.setItem(row, 5, _item(""))
            self._show_speed(name)
        self.table.itemSelectionChanged.connect(self._selection_changed)

        self.import_button = QPushButton("Import weights file…")
        self.import_button.setToolTip(
            "Use a weights file downloaded elsewhere (.pth/.pt/.safetensors state dict); it is "
            "checked against the architecture and copied into torch's cache"
        )
        self.import_button.clicked.connect(self.import_weights_file)
        self.download_button = QPushButton("Download…")
        self.download_button.clicked.connect(self.download_weights)
        self.measure_button = QPushButton("Measure speed")
        self.measure_button.setToolTip(
            "Time the selected backbone on this computer's CPU (a few seconds) and show ms/image"
        )
        self.measure_button.clicked.connect(self.measure_speed)
        self.weights_combo = QComboBox()
        self.weights_combo.setObjectName("weightsCombo")
        for value, label, tip in WEIGHTS_CHOICES:
            self.weights_combo.addItem(label, value)
            self.weights_combo.setItemData(
                self.weights_combo.count() - 1, tip, Qt.ItemDataRole.ToolTipRole
            )
        self.weights_combo.setToolTip("Which initial weights the backbone starts from")
        self.weights_combo.currentIndexChanged.connect(lambda _i: self._weights_choice_changed())
        self.status_label = QLabel()
        self.status_label.setObjectName("weightsStatusLabel")
        self.status_label.setWordWrap(True)

        choice = QHBoxLayout()
        choice.addWidget(QLabel("Weights"))
        choice.addWidget(self.weights_combo, 1)
        choice.addWidget(self.measure_button)
        buttons = QHBoxLayout()
        buttons.addWidget(self.import_button)
        buttons.addWidget(self.download_button)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        layout.addWidget(self.table, 1)
        layout.addLayout(choice)
        layout.addLayout(buttons)
        layout.addWidget(self.status_label)

        self._apply_statuses(
            statuses if statuses is not None else read_weights_statuses(self._names)
        )
        self.set_backbone(DEFAULT_BACKBONE)
        header_h = self.table.horizontalHeader().sizeHint().height()
        self.table.setFixedHeight(header_h + 22 * len(self._names) + 2 * self.table.frameWidth())

    # -- selection ---------------------------------------------------------------
    def backbone(self) -> str:
        return self._current

    def set_backbone(self, name: str) -> None:
        if name not in self._specs:
            raise KeyError(f"unknown backbone {name!r}")
        row = self._names.index(name)
        self.table.selectRow(row)
        self.table.scrollToItem(self._cell(row, 0))

    def _cell(self, row: int, column: int) -> QTableWidgetItem:
        """The table's item at ``(row, column)``; the constructor gives every cell one."""
        item = self.table.item(row, column)
        if item is None:
            raise LookupError(f"backbone table has no item at row {row}, column {column}")
        return item

    def spec(self, name: str | None = None) -> BackboneSpec:
        """The :class:`BackboneSpec` of ``name`` (default: the selected backbone)."""
        return self._specs[name or self.backbone()]

    def _selection_changed(self) -> None:
        rows = self.table.selectionModel().selectedRows()
        if not rows:  # ctrl-click deselected: a run always has a backbone
            self.table.selectRow(self._names.index(self._current))
            return
        name = self._names[rows[0].row()]
        if name == self._current:
            return
        self._current = name
        self._sync_buttons()
        self._sync_weights_items()
        self.backbone_changed.emit(self.backbone())
        self.weights_changed.emit()

    # -- weights -------------------------------------------------------------------
    def weights_choice(self) -> str:
        return str(self.weights_combo.currentData())

    def set_weights_choice(self, value: str) -> None:
        """``auto``, ``bundled``, ``cached``, ``none`` or the path of a weights file."""
        index = self.weights_combo.findData(value)
        if index < 0:
            self.weights_combo.addItem(f"file: {Path(value).name}", value)
            index = self.weights_combo.count() - 1
            self.weights_combo.setItemData(index, value, Qt.ItemDataRole.ToolTipRole)
        self.weights_combo.setCurrentIndex(index)

    def status(self, name: str | None = None) -> WeightsStatus:
        """The :class:`WeightsStatus` of ``name`` (default: the selected backbone)."""
        return self._status[name or self.backbone()]

    def weights_problem(self) -> str | None:
        """Why the chosen weights cannot be used with the selected backbone, else None."""
        name, choice = self.backbone(), self.weights_choice()
        st = self._status[name]
        if choice == "auto" and not (st.bundled or st.cached):
            return (
                f"{name} has no pretrained weights on this computer: download them, import a "
                f"weights file, or choose 'none (train from scratch)'"
            )
        if choice == "bundled" and not st.bundled:
            return f"{name} has no bundled weights (only EfficientNet-Lite ships them)"
        if choice == "cached" and not st.cached:
            return f"{name}'s weights are not downloaded or imported yet"
        if choice not in ("auto", "bundled", "cached", "none") and not Path(choice).is_file():
            return f"weights file {choice} does not exist"
        return None

    def refresh_status(self) -> None:
        """Re-check (on disk, in a pool thread) which weights each backbone has."""
        names = list(self._names)
        start_job(
            lambda _token, _progress: read_weights_statuses(names),
            context=self,
            succeeded=self._apply_statuses,
            needs_ml=True,
        )

    def _apply_statuses(self, statuses: dict[str, WeightsStatus]) -> None:
        for row, name in enumerate(self._names):
            st = statuses[name]
            self._status[name] = st
            if st.bundled:
                text, tip, color = "bundled", "ships with tlstudio: works offline", "#2e7d32"
            elif st.cached:
                text, tip, color = "cached", f"in torch's cache: {st.cached_path}", "#2e7d32"
            else:
                text, tip, color = "missing", "download or import a weights file", "#c62828"
            item = self._cell(row, 5)
            item.setText(text)
            item.setToolTip(tip)
            item.setForeground(QBrush(QColor(color)))
        self._sync_buttons()
        self._sync_weights_items()
        self.weights_changed.emit()
        self.status_refreshed.emit()

    def _weights_choice_changed(self) -> None:
        self._sync_status_text()
        self.weights_changed.emit()

    def _sync_weights_items(self) -> None:
        st = self._status.get(self.backbone())
        if st is None:
            return
        model = cast(QStandardItemModel, self.weights_combo.model())  # QComboBox's default model
        for i in range(self.weights_combo.count()):
            value = self.weights_combo.itemData(i)
            ok = {"bundled": st.bundled, "cached": st.cached}.get(value, True)
            model.item(i).setEnabled(ok)
        self._sync_status_text()

    def _sync_status_text(self) -> None:
        name = self.backbone()
        st = self._status.get(name)
        if st is None:
            return
        problem = self.weights_problem()
        if problem:
            self.status_label.setText(f"<span style='color:#c62828'>{problem}</span>")
        elif st.bundled:
            self.status_label.setText(f"{name}: ImageNet weights bundled with tlstudio (offline).")
        elif st.cached:
            self.status_label.setText(f"{name}: ImageNet weights in torch's cache.")
        else:
            self.status_label.setText(f"{name}: training from scratch (random weights).")

    def _sync_buttons(self) -> None:
        name = self.backbone()
        st = self._status.get(name)
        idle = self._editable and not self._busy
        self.table.setEnabled(self._editable)
        self.weights_combo.setEnabled(self._editable)
        self.measure_button.setEnabled(idle)
        if st is not None and st.bundled:
            self.import_button.setEnabled(False)
            self.import_button.setToolTip(f"{name}'s weights ship with tlstudio")
        else:
            self.import_button.setEnabled(idle)
            self.import_button.setToolTip(
                "Use a weights file downloaded elsewhere (.pth/.pt/.safetensors state dict); "
                "it is checked against the architecture and copied into torch's cache"
            )
        if st is None or st.url is None:
            self.download_button.setEnabled(False)
            self.download_button.setToolTip(f"{name}'s weights ship with tlstudio: no download")
        else:
            self.download_button.setEnabled(idle)
            self.download_button.setToolTip(
                f"Download {name}'s ImageNet weights from {st.url} (needs the internet)"
            )

    def set_editable(self, editable: bool) -> None:
        """While a run trains: no backbone or weights changes, no timing."""
        self._editable = editable
        self._sync_buttons()

    # -- import ----------------------------------------------------------------------
    def import_weights_file(self) -> None:
        """Ask for a file and import it as the selected backbone's weights (in a pool thread)."""
        name = self.backbone()
        path, _ = QFileDialog.getOpenFileName(
            self,
            f"Import ImageNet weights for {name}",
            "",
            "PyTorch weights (*.pth *.pt *.bin *.safetensors);;All files (*)",
        )
        if not path:
            return
        from tlstudio.ml import weights as W

        self._set_busy(True, f"Checking {Path(path).name} against {name}…")
        start_job(
            lambda _token, _progress: W.import_weights_file(name, path),
            context=self,
            succeeded=lambda dest: self._imported(name, path, dest),
            failed=lambda _kind, msg: self._import_failed(name, path, msg),
            needs_ml=True,
        )

    def _imported(self, name: str, src: str, dest: object) -> None:
        self._set_busy(False)
        self.refresh_status()
        self.message.emit(f"Imported {Path(src).name} as {name} weights ({dest})")

    def _import_failed(self, name: str, src: str, msg: str) -> None:
        self._set_busy(False)
        self._sync_status_text()
        text = msg if src in msg else f"{src}: {msg}"
        QMessageBox.critical(
            self,
            "Import weights",
            f"{Path(src).name} cannot be used as {name} weights.\n\n{text}",
        )

    # -- download --------------------------------------------------------------------
    def download_weights(self) -> None:
        """Download the selected backbone's weights, after the user confirms."""
        name = self.backbone()
        st = self._status[name]
        if st.url is None or self._download is not None:
            return
        answer = QMessageBox.question(
            self,
            "Download weights",
            f"Download the ImageNet weights of {name} from\n{st.url}\ninto {st.cached_path.parent}?",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
        )
        if answer != QMessageBox.StandardButton.Yes:
            return
        job = download_job(name)
        app = QCoreApplication.instance()
        if app is not None:  # quitting stops the download (closing the panel does too)
            app.aboutToQuit.connect(job.cancel)
        progress = QProgressDialog(f"Downloading {name} weights…", "Cancel", 0, 0, self)
        progress.setWindowTitle("Download weights")
        progress.setWindowModality(Qt.WindowModality.WindowModal)
        progress.setMinimumDuration(0)
        progress.setAutoClose(False)
        progress.setAutoReset(False)
        progress.canceled.connect(job.cancel)
        job.progressed.connect(
            lambda done, total, _stage: self._download_progress(name, done, total)
        )
        job.succeeded.connect(lambda path: self._download_done(name, path, None))
        job.failed.connect(lambda _kind, msg: self._download_done(name, None, msg))
        job.cancelled.connect(lambda: self._download_done(name, None, ""))
        self._download, self._progress = job, progress
        self._set_busy(True, f"Downloading {name} weights…")
        progress.show()
        job.start(self._pool)

    def _download_progress(self, name: str, done: int, total: int) -> None:
        if self._progress is None:
            return
        if self._progress.wasCanceled() and self._download is not None:
            self._download.cancel()
            return
        if total > 0:
            self._progress.setRange(0, 1000)
            self._progress.setValue(int(1000 * done / total))
            self._progress.setLabelText(
                f"Downloading {name} weights… {done / 1e6:.1f} of {total / 1e6:.1f} MB"
            )
        else:
            self._progress.setLabelText(f"Downloading… {done / 1e6:.1f} MB")

    def _download_done(self, name: str, path: str | None, error: str | None) -> None:
        if self._progress is not None:
            self._progress.close()
            self._progress.deleteLater()
        self._download, self._progress = None, None
        self._set_busy(False)
        if path is not None:
            self.refresh_status()
            self.message.emit(f"Downloaded {name} weights to {path}")
        elif error:
            QMessageBox.critical(
                self,
                "Download weights",
                f"Could not download the ImageNet weights of {name}.\n\n"
                "If this computer is offline or behind a firewall, download the file on "
                "another computer and use “Import weights file…”, or train from scratch.\n\n"
                f"Details: {error}",
            )
        else:
            self.status_label.setText(f"Download of {name} weights cancelled.")

    def wait_for_download(self, msecs: int = 30000) -> bool:
        """Tests: wait until a running download ends (and deliver its outcome)."""
        return self._download is None or self._download.wait(msecs)

    # -- speed -----------------------------------------------------------------------
    def measured_ms(self, name: str) -> float | None:
        value = self._settings.value(_SPEED_KEY.format(name=name))
        try:
            return None if value is None else float(value)
        except (TypeError, ValueError):
            return None

    def _show_speed(self, name: str) -> None:
        item = self._cell(self._names.index(name), 3)
        ms = self.measured_ms(name)
        if ms is not None:
            item.setText(f"{ms:.0f} ms")
            item.setToolTip(f"measured on this computer's CPU: {ms:.1f} ms per image")
        else:
            rel = GMACS.get(name, 0.0) / GMACS[DEFAULT_BACKBONE]
            item.setText(f"≈{rel:.1f}×" if rel >= 0.95 or rel == 0 else f"≈{rel:.2f}×")
            item.setToolTip(
                f"estimate: {GMACS.get(name, float('nan')):.2f} GMACs per image, {rel:.2f}× "
                f"EfficientNet-Lite0; use Measure speed for a timing on this computer"
            )

    def measure_speed(self) -> None:
        """Time the selected backbone in a pool thread; store ms/image in QSettings."""
        name = self.backbone()
        size = self._specs[name].input_size
        self._set_busy(True, f"Measuring {name} on the CPU…")
        start_job(
            lambda _token, _progress: measure_cpu_ms_per_image(name, size),
            context=self,
            succeeded=lambda ms: self._measured(name, float(ms)),
            failed=lambda _kind, msg: self._measure_failed(name, msg),
            needs_ml=True,
        )

    def _measured(self, name: str, ms: float) -> None:
        self._settings.setValue(_SPEED_KEY.format(name=name), ms)
        self._set_busy(False)
        self._show_speed(name)
        self.status_label.setText(f"{name}: {ms:.1f} ms per image on this CPU (forward pass).")
        self.speed_measured.emit(name)

    def _measure_failed(self, name: str, msg: str) -> None:
        self._set_busy(False)
        self.status_label.setText(f"Could not time {name}: {msg}")

    def _set_busy(self, busy: bool, text: str = "") -> None:
        self._busy = busy
        if busy:
            self.status_label.setText(text)
        self._sync_buttons()
