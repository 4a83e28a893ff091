"""A non-modal banner above the canvas listing image files that are not where the
project expects them, with "Relink folder…". The file checks and the relinking
run off the GUI thread, each with its own project connection."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QFileDialog, QFrame, QHBoxLayout, QLabel, QPushButton, QWidget

from tlstudio.core.project import Project
from tlstudio.gui.state import AppState
from tlstudio.gui.workers.jobs import start_job

MAX_NAMED = 5


def find_missing(root: Path) -> list[str]:
    """Stored paths of the missing images of the project at ``root`` (any thread)."""
    with Project.open(root) as project:
        return [r.path for r in project.missing_images()]


def relink(root: Path, folder: Path) -> tuple[int, list[str]]:
    """Relink from ``folder``; (how many were found, paths still missing) (any thread)."""
    with Project.open(root) as project:
        found = project.relink_folder(folder)
        return found, [r.path for r in project.missing_images()]


class MissingFilesBanner(QFrame):
    """Hidden unless the open project has missing image files."""

    checked = Signal(list)  # stored paths still missing, after each check or relink
    relinked = Signal(int)  # how many images were relinked

    def __init__(self, app_state: AppState, parent: QWidget | None = None):
        super().__init__(parent)
        self.app_state = app_state
        self.missing: list[str] = []
        self.setObjectName("missingBanner")
        self.setStyleSheet(
            "#missingBanner { background: #fff4ce; border: 1px solid #e0c060; border-radius: 4px; }"
        )
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.relink_button = QPushButton("Relink folder…")
        self.relink_button.clicked.connect(self.choose_folder)
        close = QPushButton("Dismiss")
        close.clicked.connect(self.hide)
        lay = QHBoxLayout(self)
        lay.addWidget(self.label, 1)
        lay.addWidget(self.relink_button)
        lay.addWidget(close)
        self.hide()
        app_state.project_opened.connect(lambda _p: self.check())
        app_state.project_closed.connect(self._clear)

    def check(self) -> None:
        """Look for missing files in the background; the banner updates when done."""
        project = self.app_state.project
        if project is None:
            return
        root = project.root
        start_job(
            lambda _token, _progress: find_missing(root),
            context=self,
            succeeded=lambda paths: self._show(root, paths),
        )

    def choose_folder(self) -> None:
        start = str(self.app_state.project.root) if self.app_state.project else ""
        folder = QFileDialog.getExistingDirectory(self, "Folder with the moved images", start)
        if folder:
            self.relink_from(Path(folder))

    def relink_from(self, folder: Path) -> None:
        project = self.app_state.project
        if project is None:
            return
        root = project.root
        self.relink_button.setEnabled(False)
        self.label.setText(f"Searching {folder} for the missing images…")

        def done(result: tuple[int, list[str]]) -> None:
            self.relink_button.setEnabled(True)
            found, still = result
            self._show(root, still)
            self.relinked.emit(found)
            if found:
                self.app_state.data_changed.emit()  # the canvas reloads the current image

        def failed(_kind: str, message: str) -> None:
            self.relink_button.setEnabled(True)
            self.label.setText(f"Relinking failed: {message}")

        start_job(
            lambda _token, _progress: relink(root, folder),
            context=self,
            succeeded=done,
            failed=failed,
        )

    def _show(self, root: Path, paths: list[str]) -> None:
        project = self.app_state.project
        if project is None or project.root != root:  # another project was opened meanwhile
            return
        self.missing = list(paths)
        self.checked.emit(self.missing)
        if not paths:
            self.hide()
            return
        named = ", ".join(p.rsplit("/", 1)[-1] for p in paths[:MAX_NAMED])
        more = f" and {len(paths) - MAX_NAMED} more" if len(paths) > MAX_NAMED else ""
        n = len(paths)
        self.label.setText(
            f"{n} image file{'s are' if n != 1 else ' is'} missing: {named}{more}. "
            "Relink a folder where they are now."
        )
        self.label.setToolTip("\n".join(paths[:200]))
        self.show()

    def _clear(self) -> None:
        self.missing = []
        self.hide()
