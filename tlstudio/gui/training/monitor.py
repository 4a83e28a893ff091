"""Live view of a training run: loss, main metric and learning-rate curves, progress,
Pause/Resume and Cancel, device choice and status/error messages.

Events arriving from the :class:`~tlstudio.gui.training.worker.TrainingController`
are appended to plain Python lists; a ~4 Hz QTimer redraws the curves only when the
lists changed, never per batch. pyqtgraph is imported when the widget is first shown.
"""

from __future__ import annotations

import bisect
import html
import math
import sys
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt, QTimer, Signal, Slot
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from tlstudio.gui.plots.grid import PlotGrid
from tlstudio.ml.events import BatchEnded, EpochEnded, FitEnded, FitStarted

if TYPE_CHECKING:  # pragma: no cover
    from tlstudio.gui.training.worker import TrainingController

REDRAW_INTERVAL_MS = 250
AS_CONFIGURED = "As configured"
SMOOTHING = 0.8  # weight of the past in the debiased moving average of the batch loss

ERROR_TITLES = {
    "nan_loss": "Loss became NaN",
    "out_of_memory": "Out of memory",
    "missing_weights": "Missing weights",
    "bad_image": "Unreadable image",
    "device": "Device not available",
    "config": "Invalid configuration",
    "error": "Training failed",
}

COLORS = {
    "batch": (120, 150, 200, 90),
    "smooth": (31, 119, 180),
    "train_epoch": (31, 119, 180),
    "val": (255, 127, 14),
    "metric": (44, 160, 44),
    "lr": (148, 103, 189),
    "marker": (150, 150, 150),
    "cursor": (90, 90, 90),
}


def format_duration(seconds: float) -> str:
    """Seconds as ``M:SS`` or ``H:MM:SS``."""
    s = max(0, int(round(seconds)))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def list_devices() -> list[tuple[str, str]]:
    """(device key, label) of every device torch can train on: CPU, each CUDA device with
    its name and memory, and MPS when available. Imports torch: call it off the GUI thread."""
    import torch

    devices = [("cpu", "CPU")]
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            devices.append((f"cuda:{i}", f"CUDA {i}: {p.name} ({p.total_memory / 2**30:.0f} GiB)"))
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append(("mps", "Apple GPU (MPS)"))
    return devices


def _fmt(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.4g}"


class TrainingMonitor(QWidget):
    """Curves and controls of the current run. Feed it with :meth:`bind` (a controller)
    or call the ``on_*`` slots directly; :meth:`reset` clears it for a new run.

    Data lists (x in epochs; batch ``x`` = epoch + fraction of it done, epoch ``x`` = epoch
    number counted from 1, i.e. the end of that epoch): ``batch_x``, ``batch_loss``,
    ``batch_smooth``, ``batch_lr``, ``epoch_x``, ``train_loss_epoch``, ``val_loss_epoch``
    (NaN when there is no validation), ``metric_epoch``."""

    pause_requested = Signal()
    resume_requested = Signal()
    cancel_requested = Signal()

    # Set by _clear_data (the run's outcome, and the loss's moving average) ...
    ended_status: str | None
    epochs_done: int | None  # completed epochs, once the run ended
    error_kind: str | None
    error_message: str | None
    _ema: float
    _ema_n: int
    # ... and by _ensure_built, when the widget is first shown (pyqtgraph items: untyped)
    curves: dict[str, Any]
    _plots: tuple[Any, ...]
    _metric_title: str

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.controller: TrainingController | None = None
        self.metric_name = "val_loss"
        self.running = False
        self.paused = False
        self.epochs = 0
        self.steps_per_epoch = 0
        self.run_device: str | None = None
        self.last_batch: BatchEnded | None = None
        self.redraws = 0  # how many times the curves were redrawn (for tests/benchmarks)
        self._built = False
        self._dirty = False
        self._progress_dirty = False
        self._markers_drawn = 0
        self._extraction: tuple[str, int, int] | None = None
        self._clear_data()

        self.device_combo = QComboBox()
        self.device_combo.setToolTip(
            'Where the next run trains; anything but "As configured" overrides the '
            "configuration's device"
        )
        self.device_combo.addItem(AS_CONFIGURED, "auto")
        self.device_combo.addItem("CPU", "cpu")
        self.memory_label = QLabel()
        self.memory_label.setToolTip("GPU memory held by tensors of this process")
        self.fast_path_label = QLabel("Features cached: training only the head")
        self.fast_path_label.setStyleSheet("color: #2a7a2a; font-weight: bold;")
        self.fast_path_label.hide()
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setValue(0)
        self.progress.setTextVisible(True)
        self.progress.setFormat("No run yet")
        self.pause_button = QPushButton("Pause")
        self.pause_button.setToolTip("Pause after the current batch; Resume goes on")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop after the current batch; the run is kept as cancelled")
        self.status_label = QLabel("Configure a run and press Train.")
        self.status_label.setWordWrap(True)
        self.status_label.setTextFormat(Qt.TextFormat.RichText)
        self.status_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.note_label = QLabel()  # how the images were split for this run, and such
        self.note_label.setObjectName("runNoteLabel")
        self.note_label.setWordWrap(True)
        self.note_label.setTextFormat(Qt.TextFormat.PlainText)  # it names files
        self.note_label.setStyleSheet("color: #8a5a00;")
        self.note_label.hide()
        self.hover_label = QLabel(" ")
        self.hover_label.setStyleSheet("color: #555;")
        self.hover_label.setWordWrap(True)
        self.hover_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.plots = PlotGrid()  # loss, metric, learning rate; filled when first shown
        self.plots.setObjectName("monitorPlots")

        top = QHBoxLayout()
        top.addWidget(QLabel("Device:"))
        top.addWidget(self.device_combo, 1)
        top.addWidget(self.memory_label)
        top.addStretch(1)
        top.addWidget(self.fast_path_label)
        self.fast_path_label.setWordWrap(True)
        bar = QHBoxLayout()
        bar.addWidget(self.progress, 1)
        bar.addWidget(self.pause_button)
        bar.addWidget(self.cancel_button)
        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addLayout(bar)
        lay.addWidget(self.status_label)
        lay.addWidget(self.note_label)
        lay.addWidget(self.plots, 1)
        lay.addWidget(self.hover_label)

        self.pause_button.clicked.connect(self._toggle_pause)
        self.cancel_button.clicked.connect(self._cancel)
        self.timer = QTimer(self)
        self.timer.setInterval(REDRAW_INTERVAL_MS)
        self.timer.timeout.connect(self._tick)
        self.timer.start()
        self._devices_requested = False
        self.set_running(False)

    # -- public -------------------------------------------------------------------------------
    def bind(self, controller: TrainingController) -> None:
        """Listen to ``controller``'s signals and drive it with the buttons."""
        self.controller = controller
        c = controller
        c.started.connect(lambda _spec: self.reset())
        c.running_changed.connect(self.set_running)
        c.main_metric_named.connect(self.on_main_metric_named)
        c.fit_started.connect(self.on_fit_started)
        c.batch_ended.connect(self.on_batch_ended)
        c.batch_points.connect(self.on_batch_points)
        c.epoch_ended.connect(self.on_epoch_ended)
        c.fit_ended.connect(self.on_fit_ended)
        c.failed.connect(self.on_failed)
        c.batch_size_reduced.connect(self.on_batch_size_reduced)
        c.extraction_progress.connect(self.on_extraction_progress)
        c.pause_changed.connect(self.on_pause_changed)
        self.pause_requested.connect(c.pause)
        self.resume_requested.connect(c.resume)
        self.cancel_requested.connect(c.cancel)

    def device(self) -> str:
        """The chosen device key: ``auto`` (the configuration decides), ``cpu``, ``cuda:N``
        or ``mps``."""
        return str(self.device_combo.currentData() or "auto")

    def set_device(self, key: str) -> None:
        i = self.device_combo.findData(key)
        if i >= 0:
            self.device_combo.setCurrentIndex(i)

    def set_devices(self, devices: list[tuple[str, str]]) -> None:
        """Replace the device list (keeps "As configured" first and the current choice)."""
        current = self.device()
        self.device_combo.clear()
        self.device_combo.addItem(AS_CONFIGURED, "auto")
        for key, label in devices:
            self.device_combo.addItem(label, key)
        self.set_device(current)

    def refresh_devices(self) -> None:
        """List the devices in the background (it imports torch)."""
        from tlstudio.gui.workers.jobs import start_job

        self._devices_requested = True
        start_job(
            lambda _token, _progress: list_devices(),
            context=self,
            succeeded=self.set_devices,
            needs_ml=True,
        )

    def clear(self) -> None:
        """Forget every run (another project was opened): empty curves, "No run yet"."""
        self.reset()
        self.set_note("")
        self.progress.setFormat("No run yet")
        self._set_status("Configure a run and press Train.")
        self.hover_label.setText(" ")
        for line in getattr(self, "_cursors", []):
            line.hide()

    def set_note(self, text: str) -> None:
        """A line about the run shown under the status (empty: hidden)."""
        self.note_label.setText(text)
        self.note_label.setVisible(bool(text))

    def plot_widgets(self) -> list[QWidget]:
        """The loss, metric and learning-rate plots' widgets (empty until first shown)."""
        return self.plots.plot_widgets()

    def reset(self) -> None:
        """Forget the previous run's data (a new run starts)."""
        self._clear_data()
        self.last_batch = None
        self.epochs = self.steps_per_epoch = 0
        self.run_device = None
        self.paused = False
        self._extraction = None
        self.fast_path_label.hide()
        self.memory_label.clear()
        self.progress.setValue(0)
        self.progress.setFormat("Starting…")
        self._set_status("Starting: loading the model and the images…")
        if self._built:
            self._remove_markers()
            self._x_span = 0
            for plot in self._plots:
                plot.enableAutoRange(axis="x")
        self._markers_drawn = 0
        self._dirty = True

    @Slot(bool)
    def set_running(self, running: bool) -> None:
        self.running = running
        self.pause_button.setEnabled(running)
        self.cancel_button.setEnabled(running)
        self.device_combo.setEnabled(not running)
        if not running:
            self.paused = False
            self.pause_button.setText("Pause")
            self._dirty = True
            self._update_progress()  # the bar's last word agrees with the status text now

    def redraw(self) -> None:
        """Redraw the curves and the progress text now (the timer calls it when needed)."""
        self._ensure_built()
        self._dirty = False
        self.redraws += 1
        c = self.curves
        c["batch"].setData(self.batch_x, self.batch_loss)
        c["smooth"].setData(self.batch_x, self.batch_smooth)
        c["lr"].setData(self.batch_x, self.batch_lr)
        c["train_epoch"].setData(self.epoch_x, self.train_loss_epoch)
        vx = [x for x, v in zip(self.epoch_x, self.val_loss_epoch, strict=True) if v == v]
        vy = [v for v in self.val_loss_epoch if v == v]
        c["val"].setData(vx, vy)
        mx = [x for x, v in zip(self.epoch_x, self.metric_epoch, strict=True) if v == v]
        my = [v for v in self.metric_epoch if v == v]
        c["metric"].setData(mx, my)
        if self.epochs and self._x_span != self.epochs:  # the whole run's width from the start
            self._x_span = self.epochs
            for plot in self._plots:
                plot.setXRange(0, self.epochs, padding=0.02)
        if self._metric_title != self.metric_name:  # setTitle re-lays out the plot: only on change
            self._metric_title = self.metric_name
            self.metric_plot.setTitle(self.metric_name)
        self._draw_markers()
        self._update_progress()

    # -- slots for the controller's signals ---------------------------------------------------
    @Slot(str)
    def on_main_metric_named(self, name: str) -> None:
        self.metric_name = name or "val_loss"
        self._dirty = True

    @Slot(object)
    def on_fit_started(self, ev: FitStarted) -> None:
        self.epochs, self.steps_per_epoch = ev.epochs, ev.steps_per_epoch
        self._dirty = True
        self.run_device = ev.device
        self._extraction = None
        self.fast_path_label.setVisible(bool(ev.feature_cache))
        images = f"{ev.train_images} training image{'s' if ev.train_images != 1 else ''}"
        images += f", {ev.val_images} for validation" if ev.val_images else ", no validation images"
        self._set_status(
            f"Training on {html.escape(ev.device)}: {images}; "
            f"{ev.trainable_params:,} of {ev.total_params:,} parameters train."
        )
        self._progress_dirty = True

    @Slot(object)
    def on_batch_points(self, points: list[tuple[float, float, float]]) -> None:
        for x, loss, lr in points:
            self.batch_x.append(x)
            self.batch_loss.append(loss)
            self.batch_lr.append(lr)
            if math.isfinite(loss):
                self._ema = SMOOTHING * self._ema + (1 - SMOOTHING) * loss
                self._ema_n += 1
            self.batch_smooth.append(
                self._ema / (1 - SMOOTHING**self._ema_n) if self._ema_n else loss
            )
        self._dirty = True

    @Slot(object)
    def on_batch_ended(self, ev: BatchEnded) -> None:
        self.last_batch = ev
        self.steps_per_epoch = ev.steps_per_epoch
        self._progress_dirty = True

    @Slot(object)
    def on_epoch_ended(self, ev: EpochEnded) -> None:
        self.epochs = ev.epochs
        self.epoch_x.append(ev.epoch + 1)
        self.train_loss_epoch.append(ev.train_loss)
        self.val_loss_epoch.append(math.nan if ev.val_loss is None else ev.val_loss)
        self.metric_epoch.append(self._metric_of(ev))
        self.epoch_metrics.append(dict(ev.metrics))
        self._dirty = True

    @Slot(object)
    def on_fit_ended(self, ev: FitEnded) -> None:
        self._progress_dirty = True
        self._dirty = True
        self.epochs_done = ev.epochs_run
        if ev.status == "failed":
            return  # the error message (failed signal) stays
        text = {"finished": "Finished", "stopped_early": "Stopped early", "cancelled": "Cancelled"}
        msg = f"{text.get(ev.status, ev.status)} after {ev.epochs_run} epoch"
        msg += "s" if ev.epochs_run != 1 else ""
        msg += f" in {format_duration(ev.duration_s)}"
        if ev.best_epoch is not None and ev.best_metric is not None:
            msg += f"; best {ev.metric_name} {_fmt(ev.best_metric)} at epoch {ev.best_epoch + 1}"
        self._set_status(html.escape(msg) + ".")
        self.ended_status = ev.status

    @Slot(str, str)
    def on_failed(self, kind: str, message: str) -> None:
        self.ended_status = "failed"
        title = ERROR_TITLES.get(kind, ERROR_TITLES["error"])
        self.status_label.setText(f"<b>{html.escape(title)}</b>: {html.escape(message)}")
        self.status_label.setStyleSheet("color: #c62828;")
        self.error_kind, self.error_message = kind, message

    @Slot(int, int)
    def on_batch_size_reduced(self, old: int, new: int) -> None:
        self.status_label.setText(
            f"<b>Out of GPU memory</b>: batch size {old} → {new}; the epoch starts again."
        )
        self.status_label.setStyleSheet("color: #b26a00;")

    @Slot(str, int, int)
    def on_extraction_progress(self, stage: str, done: int, total: int) -> None:
        self._extraction = (stage, done, total)
        self._progress_dirty = True

    @Slot(bool)
    def on_pause_changed(self, paused: bool) -> None:
        self.paused = paused
        if paused:
            self._set_status("Paused. Resume to go on, or Cancel.")
        elif self.running:
            self._set_status("Training…")
        self._progress_dirty = True

    # -- internals ------------------------------------------------------------------------------
    def _clear_data(self) -> None:
        self.batch_x: list[float] = []
        self.batch_loss: list[float] = []
        self.batch_smooth: list[float] = []
        self.batch_lr: list[float] = []
        self.epoch_x: list[int] = []
        self.train_loss_epoch: list[float] = []
        self.val_loss_epoch: list[float] = []
        self.metric_epoch: list[float] = []
        self.epoch_metrics: list[dict[str, float]] = []
        self.ended_status = None
        self.epochs_done = None
        self.error_kind = None
        self.error_message = None
        self._ema, self._ema_n = 0.0, 0

    def _metric_of(self, ev: EpochEnded) -> float:
        name = self.metric_name
        if name == "val_loss":
            value = ev.val_loss
        elif name == "train_loss":
            value = ev.train_loss
        else:
            value = ev.metrics.get(name)
        return math.nan if value is None else float(value)

    def _set_status(self, rich_text: str) -> None:
        self.status_label.setStyleSheet("")
        self.status_label.setText(rich_text)

    def _toggle_pause(self) -> None:
        if not self.running:
            return
        if self.pause_button.text() == "Pause":
            self.pause_button.setText("Resume")
            self._set_status("Pausing after the current batch…")
            self.pause_requested.emit()
        else:
            self.pause_button.setText("Pause")
            self.resume_requested.emit()

    def _cancel(self) -> None:
        if self.running:
            self._set_status("Cancelling after the current batch…")
            self.cancel_button.setEnabled(False)
            self.cancel_requested.emit()

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self._ensure_built()
        if not self._devices_requested:
            self.refresh_devices()

    def _tick(self) -> None:
        if self._dirty and self.isVisible():
            self.redraw()
        elif self._progress_dirty:
            self._update_progress()
        self._update_memory()

    def _update_memory(self) -> None:
        dev = self.run_device
        if not (self.running and dev and dev.startswith("cuda")) or "torch" not in sys.modules:
            return
        torch = sys.modules["torch"]
        try:
            used = torch.cuda.memory_allocated(dev)
            total = torch.cuda.get_device_properties(dev).total_memory
        except Exception:  # the device went away; nothing to show
            return
        self.memory_label.setText(f"GPU memory: {used / 2**20:,.0f} MiB of {total / 2**30:.0f} GiB")

    def _update_progress(self) -> None:
        self._progress_dirty = False
        ev = self.last_batch
        if self._extraction is not None and ev is None:
            stage, done, total = self._extraction
            what = stage.replace("features ", "")
            self.progress.setValue(int(1000 * done / total) if total else 0)
            self.progress.setFormat(f"Computing features ({what} images): {done}/{total}")
            return
        if not self.running and self.ended_status:
            # one count with the status text: completed epochs (the last one's number)
            done = self.epochs_done if self.epochs_done is not None else len(self.epoch_x)
            of = max(self.epochs, 1)
            status = self.ended_status.replace("_", " ")
            self.progress.setValue(1000 if status == "finished" else int(1000 * done / of))
            if done:
                self.progress.setFormat(f"{status} after epoch {done}/{of}")
            else:
                self.progress.setFormat(f"{status} before the first epoch ended")
            return
        if ev is None:
            return
        epochs = max(self.epochs, 1)
        spe = max(ev.steps_per_epoch, 1)
        done_steps = ev.epoch * spe + ev.step + 1
        if self.epoch_x and self.epoch_x[-1] >= ev.epoch + 1:
            done_steps = self.epoch_x[-1] * spe  # validation of that epoch is done too
        self.progress.setValue(min(1000, int(1000 * done_steps / (epochs * spe))))
        text = (
            f"epoch {ev.epoch + 1}/{epochs} · step {ev.step + 1}/{spe} · "
            f"{ev.images_per_s:.0f} img/s · ETA {format_duration(ev.eta_s)}"
        )
        if self.paused:
            text += " · paused"
        self.progress.setFormat(text)

    # -- plots --------------------------------------------------------------------------------
    def _ensure_built(self) -> None:
        if self._built:
            return
        import pyqtgraph as pg  # type: ignore[import-untyped]  # no stubs or py.typed

        self._built = True
        self._pg = pg
        self.loss_plot = self.plots.add_plot("loss")
        self.metric_plot = self.plots.add_plot(self.metric_name)
        self._metric_title = self.metric_name
        self._x_span = 0
        self.lr_plot = self.plots.add_plot("learning rate")
        self._plots = (self.loss_plot, self.metric_plot, self.lr_plot)
        # no setXLink: the plots are separate widgets of different widths, and linking
        # would align them by screen position; each shows the whole run instead
        self.loss_plot.addLegend(offset=(-5, 5), labelTextColor="k")

        def pen(name: str, width: float = 1.5, style=None):
            kw: dict[str, Any] = {"color": COLORS[name], "width": width}
            if style is not None:
                kw["style"] = style
            return pg.mkPen(**kw)

        lp = self.loss_plot
        self.curves = {
            "batch": lp.plot(pen=pen("batch", 1)),
            "smooth": lp.plot(pen=pen("smooth", 2), name="train (per batch, smoothed)"),
            "train_epoch": lp.plot(
                pen=None,
                symbol="o",
                symbolSize=7,
                symbolBrush=COLORS["train_epoch"],
                name="train (epoch)",
            ),  # fmt: skip
            "val": lp.plot(
                pen=pen("val", 2),
                symbol="s",
                symbolSize=7,
                symbolBrush=COLORS["val"],
                name="validation",
            ),  # fmt: skip
            "metric": self.metric_plot.plot(
                pen=pen("metric", 2), symbol="o", symbolSize=7, symbolBrush=COLORS["metric"]
            ),
            "lr": self.lr_plot.plot(pen=pen("lr", 2)),
        }
        for name in ("batch", "smooth", "lr"):  # one point per batch: may be long
            self.curves[name].setClipToView(True)
            self.curves[name].setDownsampling(auto=True, method="peak")
        self._markers: list[Any] = []
        self._cursors = []
        for plot in self._plots:
            line = pg.InfiniteLine(
                angle=90, movable=False, pen=pg.mkPen(COLORS["cursor"], style=Qt.PenStyle.DotLine)
            )
            line.hide()
            plot.addItem(line, ignoreBounds=True)
            self._cursors.append(line)
        for plot in self._plots:
            # every plot has a scene of its own: a position means something in its plot only
            plot.scene().sigMouseMoved.connect(lambda pos, p=plot: self._on_mouse_moved(p, pos))
        self._dirty = True

    def _remove_markers(self) -> None:
        for plot, line in self._markers:
            plot.removeItem(line)
        self._markers = []

    def _draw_markers(self) -> None:
        """One dashed vertical line per finished epoch, in every plot."""
        pg = self._pg
        if len(self.epoch_x) < self._markers_drawn:
            self._remove_markers()
            self._markers_drawn = 0
        for x in self.epoch_x[self._markers_drawn :]:
            for plot in self._plots:
                line = pg.InfiniteLine(
                    pos=x, angle=90, movable=False,
                    pen=pg.mkPen(COLORS["marker"], style=Qt.PenStyle.DashLine),
                )  # fmt: skip
                plot.addItem(line, ignoreBounds=True)
                self._markers.append((plot, line))
        self._markers_drawn = len(self.epoch_x)

    @property
    def epoch_markers(self) -> list[float]:
        """x of the epoch marker lines drawn so far (one per finished epoch)."""
        return [line.value() for plot, line in self._markers if plot is self.loss_plot]

    def _on_mouse_moved(self, plot: Any, pos: Any) -> None:
        if plot.getViewBox().sceneBoundingRect().contains(pos):
            self.show_readout(plot.getViewBox().mapSceneToView(pos).x())
            return
        for line in self._cursors:
            line.hide()

    def readout(self, x: float) -> str:
        """The values under epoch position ``x`` (what the hover label shows)."""
        parts = [f"epoch {x:.2f}"]
        if self.batch_x:
            i = bisect.bisect_left(self.batch_x, x)
            if i >= len(self.batch_x) or (
                i > 0 and abs(self.batch_x[i - 1] - x) <= abs(self.batch_x[i] - x)
            ):
                i -= 1
            parts.append(
                f"batch loss {_fmt(self.batch_loss[i])} (smoothed {_fmt(self.batch_smooth[i])})"
            )
            parts.append(f"lr {self.batch_lr[i]:.3g}")
        if self.epoch_x:
            e = min(range(len(self.epoch_x)), key=lambda k: abs(self.epoch_x[k] - x))
            parts.append(
                f"epoch {self.epoch_x[e]}: train loss {_fmt(self.train_loss_epoch[e])}, "
                f"val loss {_fmt(self.val_loss_epoch[e])}, "
                f"{self.metric_name} {_fmt(self.metric_epoch[e])}"
            )
        return " · ".join(parts)

    def show_readout(self, x: float) -> None:
        self.hover_label.setText(self.readout(x))
        for line in getattr(self, "_cursors", []):
            line.setValue(x)
            line.show()
