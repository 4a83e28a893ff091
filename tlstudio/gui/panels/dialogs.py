"""Small dialogs of the File menu and the import result list."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QApplication,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from tlstudio.core.formats import LABEL_FORMATS, label_format
from tlstudio.gui.workers.importer import ImportJob, ImportResult


def show_message(
    parent: QWidget | None, title: str, text: str, icon=QMessageBox.Icon.Warning
) -> QMessageBox:
    """A window-modal message that does not block the caller (no nested event loop)."""
    box = QMessageBox(icon, title, text, QMessageBox.StandardButton.Ok, parent)
    box.setObjectName("message")
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    box.open()
    return box


def _path_row(edit: QLineEdit, *buttons: QPushButton) -> QWidget:
    row = QWidget()
    lay = QHBoxLayout(row)
    lay.setContentsMargins(0, 0, 0, 0)
    lay.addWidget(edit, 1)
    for b in buttons:
        lay.addWidget(b)
    return row


class NewProjectDialog(QDialog):
    """Folder of a new project and whether images may carry several class tags."""

    def __init__(self, parent: QWidget | None = None, start_dir: str = ""):
        super().__init__(parent)
        self.setWindowTitle("New project")
        self.folder = QLineEdit(start_dir)
        self.folder.setPlaceholderText("a new or empty folder")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        self.multi_label = QCheckBox("Images may have several class tags (multi-label)")
        form = QFormLayout(self)
        form.addRow("Folder:", _path_row(self.folder, browse))
        form.addRow(self.multi_label)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def _browse(self) -> None:
        typed = Path(self.folder.text().strip() or Path.home())
        start = typed if typed.is_dir() else typed.parent  # the prefilled folder is new
        d = QFileDialog.getExistingDirectory(self, "Project folder", str(start))
        if d:
            self.folder.setText(d)


class LabelImportDialog(QDialog):
    """Choose a label file or dataset folder and its format (or detection)."""

    def __init__(self, parent: QWidget | None = None, start_dir: str = ""):
        super().__init__(parent)
        self.setWindowTitle("Import labels")
        self.start_dir = start_dir
        self.format = QComboBox()
        self.format.addItem("Detect from the content", None)
        for f in LABEL_FORMATS:
            self.format.addItem(f"{f.name} — {f.description}", f.name)
        self.source = QLineEdit()
        self.source.setPlaceholderText("label file or dataset folder")
        file_btn, dir_btn = QPushButton("File…"), QPushButton("Folder…")
        file_btn.clicked.connect(self._pick_file)
        dir_btn.clicked.connect(self._pick_folder)
        self.copy = QCheckBox("Copy new images into the project folder")
        form = QFormLayout(self)
        form.addRow("Format:", self.format)
        form.addRow("Source:", _path_row(self.source, file_btn, dir_btn))
        form.addRow(self.copy)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def _pick_file(self) -> None:
        f, _ = QFileDialog.getOpenFileName(
            self, "Label file", self.start_dir, "Label files (*.json *.xml *.yaml *.yml *.csv "
            "*.txt);;All files (*)",
        )  # fmt: skip
        if f:
            self.source.setText(f)

    def _pick_folder(self) -> None:
        d = QFileDialog.getExistingDirectory(self, "Dataset folder", self.start_dir)
        if d:
            self.source.setText(d)

    def job(self) -> ImportJob | None:
        src = self.source.text().strip()
        if not src:
            return None
        return ImportJob(
            (Path(src),), mode="labels", label_format=self.format.currentData(),
            copy=self.copy.isChecked(),
        )  # fmt: skip


class ExportDialog(QDialog):
    """Format, YOLO kind and template, and the output folder (or file) of an export."""

    def __init__(self, templates: list[str], parent: QWidget | None = None, start_dir: str = ""):
        super().__init__(parent)
        self.setWindowTitle("Export labels")
        self.start_dir = start_dir
        self.format = QComboBox()
        for f in LABEL_FORMATS:
            self.format.addItem(f"{f.name} — {f.description}", f.name)
        self.kind = QComboBox()
        self.kind.addItems(label_format("yolo").export_kinds)
        self.template = QComboBox()
        self.template.addItems(templates)
        self.out = QLineEdit()
        self.out.setPlaceholderText("output folder (COCO and CSV: also a .json / .csv file)")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        form = QFormLayout(self)
        form.addRow("Format:", self.format)
        form.addRow("YOLO task:", self.kind)
        form.addRow("Template:", self.template)
        form.addRow("Output:", _path_row(self.out, browse))
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)
        self.format.currentIndexChanged.connect(self._update)
        self.kind.currentIndexChanged.connect(self._update)
        self._update()

    def _update(self) -> None:
        yolo = self.format.currentData() == "yolo"
        self.kind.setEnabled(yolo)
        takes = label_format(self.format.currentData()).takes_template  # DeepLabCut
        self.template.setEnabled((yolo and self.kind.currentText() == "pose") or takes)

    def _browse(self) -> None:
        d = QFileDialog.getExistingDirectory(self, "Export to folder", self.start_dir)
        if d:
            self.out.setText(d)

    def choice(self) -> tuple[str, str | None, str | None, Path] | None:
        """(format, kind, template, output path), or None without an output path."""
        out = self.out.text().strip()
        if not out:
            return None
        fmt = self.format.currentData()
        kind = self.kind.currentText() if fmt == "yolo" else None
        takes = kind == "pose" or label_format(fmt).takes_template
        template = self.template.currentText() or None if takes else None
        return fmt, kind, template, Path(out)


class ImportResultDialog(QDialog):
    """Every file that could not be imported, with the whole reason (wrapped, also in the
    row's tooltip, and copied with *Copy*: reasons carry install hints to paste);
    warnings and notes below."""

    FILE_COLUMN_SHARE = 0.4  # of the table's width, at most, for the file column

    def __init__(self, result: ImportResult, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("importResultDialog")
        self.setWindowTitle("Import finished")
        self.resize(760, 400)
        lay = QVBoxLayout(self)
        self.summary = QLabel(result.summary())
        self.summary.setWordWrap(True)
        lay.addWidget(self.summary)
        rows = [(f, r) for f, r in result.failed] + [
            (f, f"warning: {w}") for f, w in result.warnings
        ]
        self.table = QTableWidget(len(rows), 2)
        self.table.setObjectName("importResultTable")
        self.table.setHorizontalHeaderLabels(["File", "Reason"])
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setWordWrap(True)  # the reason wraps onto more lines, never "…"
        self.table.setTextElideMode(Qt.TextElideMode.ElideMiddle)  # long paths: keep the name
        for i, (f, reason) in enumerate(rows):
            for col, text in enumerate((f, reason)):
                item = QTableWidgetItem(text)
                item.setToolTip(f"{f}\n\n{reason}")
                self.table.setItem(i, col, item)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(True)
        header.sectionResized.connect(lambda *_: self.table.resizeRowsToContents())
        lay.addWidget(self.table, 1)
        if result.notes:
            notes = QLabel("\n".join(result.notes))
            notes.setWordWrap(True)
            notes.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            lay.addWidget(notes)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self.copy_button = buttons.addButton("Copy", QDialogButtonBox.ButtonRole.ActionRole)
        self.copy_button.setToolTip("Copy every file and its whole reason (tab-separated)")
        self.copy_button.clicked.connect(self.copy)
        buttons.rejected.connect(self.close)
        lay.addWidget(buttons)

    def showEvent(self, event) -> None:
        super().showEvent(event)
        self._fit_columns()

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._fit_columns()

    def _fit_columns(self) -> None:
        """File column as wide as its paths but at most a share of the table; the reason
        column takes the rest and its rows grow to show every line."""
        self.table.resizeColumnToContents(0)
        limit = int(self.table.viewport().width() * self.FILE_COLUMN_SHARE)
        if self.table.columnWidth(0) > limit:
            self.table.setColumnWidth(0, limit)
        self.table.resizeRowsToContents()

    def rows(self) -> list[tuple[str, str]]:
        """(file, reason) as shown."""
        return [
            (self._cell_text(i, 0), self._cell_text(i, 1)) for i in range(self.table.rowCount())
        ]

    def _cell_text(self, row: int, column: int) -> str:
        item = self.table.item(row, column)
        return "" if item is None else item.text()

    def text(self) -> str:
        """The summary and one ``file<TAB>reason`` line per row."""
        return "\n".join([self.summary.text(), *(f"{f}\t{r}" for f, r in self.rows())])

    def copy(self) -> None:
        QApplication.clipboard().setText(self.text())
