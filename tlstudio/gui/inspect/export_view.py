"""Export the inspected run's model (ONNX or TorchScript, with a JSON sidecar) and write
its HTML report.

Both run as :class:`~tlstudio.gui.workers.jobs.BackgroundJob` s in a private one-thread
pool: the job opens its own
:class:`~tlstudio.core.project.Project` (SQLite connections belong to one thread) and
imports torch there, so the window stays responsive and opening this tab loads nothing
heavy. Results and errors come back as plain data.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from PySide6.QtCore import QUrl, Signal
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from tlstudio.core.project import Project
from tlstudio.core.runs import RunStore
from tlstudio.gui.state import AppState
from tlstudio.gui.widgets.wheel_guard import guard_wheel
from tlstudio.gui.workers.jobs import BackgroundJob, job_pool

#: format → (button text, file suffix, file-dialog filter, one-line description)
FORMATS: dict[str, tuple[str, str, str, str]] = {
    "onnx": (
        "ONNX",
        ".onnx",
        "ONNX model (*.onnx)",
        "Runs in onnxruntime from Python, C++, C#, Java or JavaScript, without PyTorch; "
        "any batch size (detectors: one image at a time).",
    ),
    "torchscript": (
        "TorchScript",
        ".pt",
        "TorchScript model (*.pt)",
        "Loads with torch.jit.load in Python or LibTorch (C++); needs PyTorch. A program, "
        "not data: whoever runs it must trust it (tlstudio predict --trust-torchscript).",
    ),
}


def _export_job(root: str, run_id: int, path: str, fmt: str, check: bool) -> dict[str, Any]:
    """Worker: export and return plain data for the GUI thread."""
    from tlstudio.ml.export import export_model

    with Project.open(root) as project:
        res = export_model(project, run_id, path, fmt, check=check)
    info = json.loads(res.sidecar_path.read_text(encoding="utf-8"))
    return {
        "root": root,
        "run_id": run_id,
        "path": str(res.path),
        "sidecar": str(res.sidecar_path),
        "format": fmt,
        "max_abs_diff": res.max_abs_diff,
        "checked_images": res.checked_images,
        "export_s": res.export_s,
        "size_bytes": res.path.stat().st_size,
        "input": info.get("input", {}),
        "outputs": info.get("outputs", []),
    }


def _report_job(
    root: str, run_id: int, path: str, split: str, samples: int, heatmaps: bool
) -> dict[str, Any]:
    """Worker: write the report and return its path."""
    from tlstudio.ml.report import write_report

    with Project.open(root) as project:
        out = write_report(project, run_id, path, split=split, samples=samples, heatmaps=heatmaps)
    return {"root": root, "run_id": run_id, "path": str(out), "size_bytes": out.stat().st_size}


class ExportView(QWidget):
    """Export model / write report for ``AppState.run_id`` (Inspect view contract)."""

    message = Signal(str)  # status-bar text
    open_image = Signal(int)  # unused here; part of the Inspect view contract
    export_finished = Signal(object)  # dict (see _export_job) after a successful export
    report_finished = Signal(str)  # report path after a successful write
    failed = Signal(str)  # error message of a failed job

    def __init__(self, app_state: AppState, parent: QWidget | None = None):
        super().__init__(parent)
        self.app_state = app_state
        self._pool = job_pool(self, 1, "export view")
        self._busy = False
        # (project folder, run id) the shown results belong to
        self._results_for: tuple[str | None, int | None] | None = None
        self._report_path: str | None = None
        self._export_folder: str | None = None

        self.run_label = QLabel()
        self.run_label.setObjectName("exportRunLabel")
        font = self.run_label.font()
        font.setPointSizeF(font.pointSizeF() * 1.15)
        font.setBold(True)
        self.run_label.setFont(font)

        # -- export ------------------------------------------------------------------
        self.format_buttons: dict[str, QRadioButton] = {}
        self._format_group = QButtonGroup(self)
        fmt_row = QHBoxLayout()
        fmt_row.addWidget(QLabel("Format:"))
        for key, (text, _suffix, _filter, tip) in FORMATS.items():
            button = QRadioButton(text)
            button.setObjectName(f"exportFormat_{key}")
            button.setToolTip(tip)
            self._format_group.addButton(button)
            self.format_buttons[key] = button
            fmt_row.addWidget(button)
        fmt_row.addStretch(1)
        self.format_buttons["onnx"].setChecked(True)
        self.format_help = QLabel()
        self.format_help.setWordWrap(True)
        self.format_help.setStyleSheet("color: #555;")
        self.check_box = QCheckBox("Check the exported file against PyTorch on project images")
        self.check_box.setChecked(True)
        self.check_box.setToolTip(
            "Run the exported file on up to 3 project images and refuse it if any output "
            "differs from the PyTorch model by more than 1e-4"
        )
        self.export_button = QPushButton("Export model…")
        self.export_button.setObjectName("exportModelButton")
        self.export_result = QLabel()
        self.export_result.setObjectName("exportResult")
        self.export_result.setWordWrap(True)
        self.export_result.setTextInteractionFlags(
            self.export_result.textInteractionFlags() | _selectable()
        )
        self.show_folder_button = QPushButton("Show in folder")
        self.show_folder_button.setVisible(False)

        export_box = QGroupBox("Export model")
        ebox = QVBoxLayout(export_box)
        ebox.addLayout(fmt_row)
        ebox.addWidget(self.format_help)
        ebox.addWidget(self.check_box)
        row = QHBoxLayout()
        row.addWidget(self.export_button)
        row.addWidget(self.show_folder_button)
        row.addStretch(1)
        ebox.addLayout(row)
        ebox.addWidget(self.export_result)

        # -- report ------------------------------------------------------------------
        self.split_combo = QComboBox()
        for split in ("val", "test", "train"):
            self.split_combo.addItem(split, split)
        self.split_combo.setToolTip("The split whose metrics and sample images the report shows")
        self.samples_spin = QSpinBox()
        self.samples_spin.setRange(0, 64)
        self.samples_spin.setValue(8)
        self.samples_spin.setSuffix(" images")
        self.heatmaps_box = QCheckBox("Class-activation heatmaps of the samples")
        self.heatmaps_box.setChecked(True)
        self.report_button = QPushButton("Write report…")
        self.report_button.setObjectName("writeReportButton")
        self.open_report_button = QPushButton("Open report")
        self.open_report_button.setObjectName("openReportButton")
        self.open_report_button.setEnabled(False)
        self.report_result = QLabel()
        self.report_result.setObjectName("reportResult")
        self.report_result.setWordWrap(True)
        self.report_result.setTextInteractionFlags(
            self.report_result.textInteractionFlags() | _selectable()
        )
        report_box = QGroupBox("Report")
        rform = QFormLayout()
        rform.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.FieldsStayAtSizeHint)
        rform.addRow("Split:", self.split_combo)
        rform.addRow("Samples:", self.samples_spin)
        rform.addRow("", self.heatmaps_box)
        rbox = QVBoxLayout(report_box)
        intro = QLabel(
            "One HTML file with everything embedded (configuration, dataset counts, training "
            "curves, metrics, sample predictions): open it in any browser, mail it, print it."
        )
        intro.setWordWrap(True)
        rbox.addWidget(intro)
        rbox.addLayout(rform)
        rrow = QHBoxLayout()
        rrow.addWidget(self.report_button)
        rrow.addWidget(self.open_report_button)
        rrow.addStretch(1)
        rbox.addLayout(rrow)
        rbox.addWidget(self.report_result)

        # -- status ------------------------------------------------------------------
        self.busy_label = QLabel()
        self.progress = QProgressBar()
        self.progress.setRange(0, 0)  # busy indicator: the jobs report no fractions
        self.progress.setMaximumWidth(240)
        self.progress.setVisible(False)
        self.error_label = QLabel()
        self.error_label.setObjectName("exportError")
        self.error_label.setWordWrap(True)
        self.error_label.setStyleSheet("color: #c62828;")
        self.error_label.setVisible(False)
        self.error_label.setTextInteractionFlags(
            self.error_label.textInteractionFlags() | _selectable()
        )
        status = QHBoxLayout()
        status.addWidget(self.progress)
        status.addWidget(self.busy_label, 1)

        lay = QVBoxLayout(self)
        lay.addWidget(self.run_label)
        lay.addWidget(export_box)
        lay.addWidget(report_box)
        lay.addLayout(status)
        lay.addWidget(self.error_label)
        lay.addStretch(1)

        self._format_group.buttonToggled.connect(lambda *_: self._update_format_help())
        self.export_button.clicked.connect(self.export_model)
        self.report_button.clicked.connect(self.write_report)
        self.open_report_button.clicked.connect(self.open_report)
        self.show_folder_button.clicked.connect(self._show_folder)
        app_state.run_changed.connect(lambda _r: self._update_run())
        app_state.project_closed.connect(self._update_run)
        app_state.project_opened.connect(lambda _p: self._update_run())
        self._update_format_help()
        self._update_run()
        guard_wheel(self)

    def _clear_results(self) -> None:
        """Forget the files written for another run or project."""
        self._report_path = self._export_folder = None
        self.export_result.clear()
        self.report_result.clear()
        self.show_folder_button.setVisible(False)
        self.open_report_button.setEnabled(False)
        self.error_label.setVisible(False)

    def _is_current(self, res: dict[str, Any]) -> bool:
        """Whether a finished job's result belongs to the project and run on screen."""
        project = self.app_state.project
        return (
            project is not None
            and res["root"] == str(project.root)
            and res["run_id"] == self.app_state.run_id
        )

    # -- state ---------------------------------------------------------------------------
    @property
    def format(self) -> str:
        """The chosen export format: "onnx" or "torchscript"."""
        return next(k for k, b in self.format_buttons.items() if b.isChecked())

    def _update_format_help(self) -> None:
        self.format_help.setText(FORMATS[self.format][3])

    def _run(self):
        project, run_id = self.app_state.project, self.app_state.run_id
        if project is None or run_id is None:
            return None
        try:
            return RunStore(project).get(run_id)
        except Exception:  # a run deleted meanwhile reads as no run
            return None

    def _update_run(self) -> None:
        run = self._run()
        project = self.app_state.project
        shown_for = (str(project.root) if project else None, run.id if run else None)
        if shown_for != self._results_for:
            self._results_for = shown_for
            self._clear_results()
        if run is None:
            self.run_label.setText("No run selected: pick a trained run above.")
        else:
            metric = (
                f" · {run.metric_name} {run.best_metric:.3f}"
                if run.metric_name and run.best_metric is not None
                else ""
            )
            self.run_label.setText(f"Run #{run.id}: {run.task} · {run.backbone}{metric}")
        ok = run is not None and bool(run.checkpoint) and not self._busy
        self.export_button.setEnabled(ok)
        self.report_button.setEnabled(run is not None and not self._busy)

    def _set_busy(self, text: str | None) -> None:
        self._busy = text is not None
        self.progress.setVisible(self._busy)
        self.busy_label.setText(text or "")
        if self._busy:
            self.error_label.setVisible(False)
        self._update_run()

    def _fail(self, what: str, message: str) -> None:
        self._set_busy(None)
        text = f"{what} failed: {message}"
        self.error_label.setText(text)
        self.error_label.setVisible(True)
        self.message.emit(text)
        self.failed.emit(message)

    # -- export --------------------------------------------------------------------------
    def export_model(self) -> None:
        """Ask for a file name, then export in the background."""
        run = self._run()
        project = self.app_state.project
        if run is None or project is None or self._busy:
            return
        _text, suffix, filt, _tip = FORMATS[self.format]
        suggested = str(project.root / f"run{run.id}_{run.task}_{run.backbone}{suffix}")
        path, _chosen = QFileDialog.getSaveFileName(self, "Export model", suggested, filt)
        if not path:
            return
        if not path.lower().endswith(suffix):
            path += suffix
        fmt, check, root, run_id = (
            self.format,
            self.check_box.isChecked(),
            str(project.root),
            run.id,
        )
        self._set_busy(f"Exporting run #{run_id} as {FORMATS[fmt][0]}…")
        self.message.emit(f"Exporting run #{run_id} to {path}…")
        job = BackgroundJob(
            lambda _token, _progress: _export_job(root, run_id, path, fmt, check),
            context=self,
            needs_ml=True,
        )
        job.succeeded.connect(self._exported)
        job.failed.connect(lambda _kind, msg: self._fail("Export", msg))
        job.start(self._pool)

    def _exported(self, res: dict[str, Any]) -> None:
        self._set_busy(None)
        if not self._is_current(res):  # the project or run changed meanwhile
            return
        name = FORMATS[res["format"]][0]
        lines = [
            f"<b>Exported run #{res['run_id']} as {name}</b> to <code>{_h(res['path'])}</code> "
            f"({res['size_bytes'] / 1e6:.1f} MB, {res['export_s']:.1f} s).",
            f"Sidecar (classes, preprocessing, outputs, metrics): <code>{_h(res['sidecar'])}</code>",
        ]
        if res["max_abs_diff"] is not None:
            lines.append(
                f"Check: max |{name} − PyTorch| = {res['max_abs_diff']:.2g} on "
                f"{res['checked_images']} project images."
            )
        else:
            lines.append("Not checked against PyTorch.")
        shape = res["input"].get("shape")
        if shape:
            lines.append(
                f"Input <code>{_h(res['input'].get('name', 'image'))}</code> "
                f"{_h('×'.join(str(d) for d in shape))} float32, RGB scaled to 0..1 and "
                "normalised (mean/std in the sidecar)."
            )
        for out in res["outputs"]:
            lines.append(
                f"Output <code>{_h(out['name'])}</code> {_h(out['shape'])}: {_h(out['meaning'])}"
            )
        lines.append(
            "Run it on a folder of images without the project: "
            f"<code>tlstudio predict --model {_h(_quote(res['path']))} FOLDER</code>"
        )
        self.export_result.setText("<br>".join(lines))
        self._export_folder = str(Path(res["path"]).parent)
        self.show_folder_button.setVisible(True)
        text = f"Exported run #{res['run_id']} to {res['path']}"
        if res["max_abs_diff"] is not None:
            text += f" (max difference {res['max_abs_diff']:.2g})"
        self.message.emit(text)
        self.export_finished.emit(res)

    def _show_folder(self) -> None:
        if self._export_folder:
            QDesktopServices.openUrl(QUrl.fromLocalFile(self._export_folder))

    # -- report --------------------------------------------------------------------------
    def write_report(self) -> None:
        """Ask for a file name, then write the report in the background."""
        run = self._run()
        project = self.app_state.project
        if run is None or project is None or self._busy:
            return
        suggested = str(project.root / f"run{run.id}_report.html")
        path, _chosen = QFileDialog.getSaveFileName(
            self, "Write report", suggested, "HTML report (*.html)"
        )
        if not path:
            return
        if not path.lower().endswith((".html", ".htm")):
            path += ".html"
        root, run_id = str(project.root), run.id
        split = self.split_combo.currentData()
        samples, heatmaps = self.samples_spin.value(), self.heatmaps_box.isChecked()
        self._set_busy(f"Writing the report of run #{run_id}…")
        self.message.emit(f"Writing the report of run #{run_id} to {path}…")
        job = BackgroundJob(
            lambda _token, _progress: _report_job(root, run_id, path, split, samples, heatmaps),
            context=self,
            needs_ml=True,
        )
        job.succeeded.connect(self._reported)
        job.failed.connect(lambda _kind, msg: self._fail("Report", msg))
        job.start(self._pool)

    def _reported(self, res: dict[str, Any]) -> None:
        self._set_busy(None)
        if not self._is_current(res):
            return
        self._report_path = res["path"]
        self.report_result.setText(
            f"<b>Report of run #{res['run_id']} written</b> to <code>{_h(res['path'])}</code> "
            f"({res['size_bytes'] / 1e6:.1f} MB). Open it in your browser with "
            "<i>Open report</i>."
        )
        self.open_report_button.setEnabled(True)
        self.message.emit(f"Report written to {res['path']}")
        self.report_finished.emit(res["path"])

    def open_report(self) -> None:
        """Open the last written report in the system's browser."""
        if self._report_path:
            QDesktopServices.openUrl(QUrl.fromLocalFile(self._report_path))

    # -- contract ------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Wait for a running export or report (they cannot be interrupted midway)."""
        self._pool.waitForDone()


def _selectable():
    from PySide6.QtCore import Qt

    return Qt.TextInteractionFlag.TextSelectableByMouse


def _h(text: object) -> str:
    import html

    return html.escape(str(text))


def _quote(path: str) -> str:
    import shlex

    return shlex.quote(path)
