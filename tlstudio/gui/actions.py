"""The window's actions: one table of every menu/toolbar command with its keys, the
undo/redo and tool bindings, the recent-projects list, and what the File menu does.

Keys (also listed in Help → Keyboard shortcuts, built from :data:`SPECS`):
next/previous image are PgDown/PgUp *and* Ctrl+Right/Ctrl+Left (the first pair
for one hand on the keyboard, the second when the list has focus elsewhere),
next unlabelled image is Ctrl+U.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QObject, QSettings, Signal
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import QDialog, QFileDialog, QMenu, QMessageBox, QWidget

from tlstudio.core.errors import TlsError
from tlstudio.core.project import Project
from tlstudio.core.store import DB_NAME
from tlstudio.gui.panels.dialogs import ExportDialog, LabelImportDialog, NewProjectDialog
from tlstudio.gui.panels.dialogs import show_message as _show_message
from tlstudio.gui.state import AppState
from tlstudio.gui.workers.importer import ImportController, ImportJob
from tlstudio.gui.workers.jobs import start_job

MAX_RECENT = 10
RECENT_KEY = "recent/projects"
COPY_KEY = "import/copy_images"
TOOLS = ("select", "box", "landmarks", "mask", "objects")
IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.bmp *.tif *.tiff *.dcm *.dicom);;All files (*)"


@dataclass(frozen=True)
class ActionSpec:
    name: str
    section: str  # menu it lives in (also the heading in the shortcuts dialog)
    text: str
    keys: tuple[str, ...] = ()
    tip: str = ""
    checkable: bool = False


SPECS: tuple[ActionSpec, ...] = (
    ActionSpec("new_project", "File", "&New project…", ("Ctrl+N",), "Create a project folder"),
    ActionSpec("open_project", "File", "&Open project…", ("Ctrl+O",), "Open a project folder"),
    ActionSpec("import_images", "File", "Import &images…", ("Ctrl+I",), "Add image files"),
    ActionSpec("import_folder", "File", "Import image &folder…", ("Ctrl+Shift+I",),
               "Add every image in a folder and its sub-folders"),
    ActionSpec("import_labels", "File", "Import &labels…", ("Ctrl+Shift+O",),
               "Import a label file or dataset (COCO, YOLO, VOC, labelme, folders, CSV)"),
    ActionSpec("export_labels", "File", "&Export labels…", ("Ctrl+E",),
               "Write the labels in an interchange format"),
    ActionSpec("copy_images", "File", "Copy imported images into the project", (),
               "Imports copy new images into the project's images/ folder", True),
    ActionSpec("close_project", "File", "&Close project", ("Ctrl+W",)),
    ActionSpec("quit", "File", "&Quit", ("Ctrl+Q",)),
    ActionSpec("undo", "Edit", "&Undo", ("Ctrl+Z",)),
    ActionSpec("redo", "Edit", "&Redo", ("Ctrl+Shift+Z", "Ctrl+Y")),
    ActionSpec("tag_image", "Edit", "&Tag image with selected class", ("Ctrl+T",),
               "Single-label: set the class tag; multi-label: toggle it"),
    ActionSpec("cpu_threads", "Edit", "CPU t&hreads…", (),
               "How many CPU threads training and prediction use"),
    ActionSpec("next_image", "Go", "&Next image", ("PgDown", "Ctrl+Right")),
    ActionSpec("previous_image", "Go", "&Previous image", ("PgUp", "Ctrl+Left")),
    ActionSpec("next_unlabelled", "Go", "Next &unlabelled image", ("Ctrl+U",)),
    ActionSpec("fit", "View", "&Fit to window", ("Ctrl+0",)),
    ActionSpec("zoom_1to1", "View", "Zoom &1:1", ("Ctrl+1",)),
    ActionSpec("show_mask", "View", "Show &mask", ("Ctrl+M",), "Show or hide the mask overlay",
               True),
    ActionSpec("mode_label", "View", "&Label images", ("F2",), "Show the labelling canvas", True),
    ActionSpec("mode_train", "View", "&Train models", ("F3",),
               "Show the Train panel: backbone, freeze depth, live curves, run history", True),
    ActionSpec("mode_inspect", "View", "&Inspect models", ("F4",),
               "Show the Inspect panel: metrics, latent space, explanations, export", True),
    ActionSpec("grid", "View", "Thumbnail &grid", ("Ctrl+G",),
               "Browser as a thumbnail grid (checked) or a list", True),
    ActionSpec("tool_select", "Tools", "&Select", ("V",), "Select and move annotations", True),
    ActionSpec("tool_box", "Tools", "&Box", ("B",), "Draw bounding boxes", True),
    ActionSpec("tool_landmarks", "Tools", "&Landmarks", ("L",), "Place landmark points", True),
    ActionSpec("tool_mask", "Tools", "&Mask", ("M",), "Paint the mask", True),
    ActionSpec("tool_objects", "Tools", "&Objects", ("I",),
               "Paint objects: a drag paints a new object or adds to the selected one; a "
               "click selects one", True),
    ActionSpec("shortcuts", "Help", "&Keyboard shortcuts", ("F1",)),
    ActionSpec("about", "Help", "&About tlstudio"),
)  # fmt: skip


class Actions(QObject):
    """Every QAction of the window, by name (``actions["undo"]``)."""

    def __init__(self, window: QWidget):
        super().__init__(window)
        self.by_name: dict[str, QAction] = {}
        self.specs = {s.name: s for s in SPECS}
        for spec in SPECS:
            act = QAction(spec.text, window)
            act.setObjectName(f"action_{spec.name}")
            act.setShortcuts([QKeySequence(k) for k in spec.keys])
            act.setCheckable(spec.checkable)
            if spec.tip:
                act.setStatusTip(spec.tip)
                act.setToolTip(f"{spec.tip} ({', '.join(spec.keys)})" if spec.keys else spec.tip)
            self.by_name[spec.name] = act
        self["show_mask"].setChecked(True)
        self["grid"].setChecked(True)
        self.tools = QActionGroup(self)
        self.tools.setExclusive(True)
        for tool in TOOLS:
            act = self[f"tool_{tool}"]
            act.setData(tool)
            self.tools.addAction(act)
        self["tool_select"].setChecked(True)
        self["undo"].setEnabled(False)
        self["redo"].setEnabled(False)
        self.app_state: AppState | None = None

    def __getitem__(self, name: str) -> QAction:
        return self.by_name[name]

    def section(self, section: str) -> list[QAction]:
        return [self.by_name[s.name] for s in SPECS if s.section == section]

    # -- bindings ---------------------------------------------------------------------
    def bind(self, app_state: AppState) -> None:
        """Undo/redo and tools follow ``app_state``; project actions need a project."""
        self.app_state = app_state
        self["undo"].triggered.connect(self.undo)
        self["redo"].triggered.connect(self.redo)
        self.tools.triggered.connect(lambda act: app_state.set_tool(act.data()))
        app_state.tool_changed.connect(self._tool_changed)
        app_state.data_changed.connect(self.sync)
        app_state.project_opened.connect(lambda _p: self.sync())
        app_state.project_closed.connect(self.sync)
        self.sync()

    def undo(self) -> None:
        self._step("undo")

    def redo(self) -> None:
        self._step("redo")

    def _step(self, which: str) -> None:
        stack = self.app_state.undo_stack if self.app_state else None
        if stack is None:
            return
        try:
            getattr(stack, which)()
        except (TlsError, sqlite3.Error) as exc:  # e.g. a record removed meanwhile
            owner = self.parent()
            parent = owner if isinstance(owner, QWidget) else None
            _show_message(parent, "tlstudio", f"Cannot {which}: {exc}")

    def sync(self) -> None:
        """Undo/redo texts say what they will do ("Undo Add box"); enable by state."""
        state = self.app_state
        stack = state.undo_stack if state else None
        undo, redo = self["undo"], self["redo"]
        undo.setEnabled(bool(stack and stack.can_undo))
        redo.setEnabled(bool(stack and stack.can_redo))
        undo.setText(f"&Undo {stack.undo_text}" if stack and stack.can_undo else "&Undo")
        redo.setText(f"&Redo {stack.redo_text}" if stack and stack.can_redo else "&Redo")
        has_project = bool(state and state.project is not None)
        for name in ("import_images", "import_folder", "import_labels", "export_labels",
                     "close_project", "next_image", "previous_image", "next_unlabelled",
                     "tag_image"):  # fmt: skip
            self[name].setEnabled(has_project)

    def _tool_changed(self, tool: str) -> None:
        act = self.by_name.get(f"tool_{tool}")
        if act is not None and not act.isChecked():
            act.setChecked(True)

    # -- help ----------------------------------------------------------------------------
    def shortcut_entries(self) -> list[tuple[str, str, str]]:
        """(section, keys, description) of every action that has keys, in menu order."""
        out = []
        for spec in SPECS:
            act = self.by_name[spec.name]
            keys = [k.toString(QKeySequence.SequenceFormat.NativeText) for k in act.shortcuts()]
            if keys:
                out.append((spec.section, " / ".join(keys), spec.text.replace("&", "")))
        return out


class RecentProjects:
    """Most recently opened project folders (newest first, at most MAX_RECENT), in QSettings."""

    def __init__(self, settings: QSettings):
        self.settings = settings

    def _read(self) -> list[str]:
        value = self.settings.value(RECENT_KEY, [])
        if isinstance(value, str):  # QSettings gives a lone string for a one-item list
            return [value]
        return [str(v) for v in value] if isinstance(value, list | tuple) else []

    def paths(self) -> list[str]:
        """Folders that are still projects; the others are dropped from the list."""
        stored = self._read()
        alive = [p for p in stored if (Path(p) / DB_NAME).is_file()]
        if alive != stored:
            self.settings.setValue(RECENT_KEY, alive)
        return alive

    def add(self, path: str | Path) -> None:
        p = str(Path(path).resolve())
        paths = [p] + [q for q in self._read() if q != p]
        self.settings.setValue(RECENT_KEY, paths[:MAX_RECENT])

    def clear(self) -> None:
        self.settings.setValue(RECENT_KEY, [])


class ProjectActions(QObject):
    """What the File menu does: new/open/close, recent projects, imports and exports."""

    message = Signal(str)  # status-bar text

    def __init__(
        self,
        window: QWidget,
        app_state: AppState,
        settings: QSettings,
        importer: ImportController,
        actions: Actions,
    ):
        super().__init__(window)
        self.window, self.app_state, self.settings = window, app_state, settings
        self.importer, self.action_table = importer, actions
        self.recent = RecentProjects(settings)
        self.last_error: str | None = None
        copy = settings.value(COPY_KEY, False)
        actions["copy_images"].setChecked(copy in (True, "true", "1", 1))
        actions["copy_images"].toggled.connect(lambda on: settings.setValue(COPY_KEY, on))
        for name, fn in (
            ("new_project", self.new_project), ("open_project", self.open_dialog),
            ("import_images", self.import_images), ("import_folder", self.import_folder),
            ("import_labels", self.import_labels), ("export_labels", self.export_labels),
            ("close_project", self.close_project),
        ):  # fmt: skip
            actions[name].triggered.connect(fn)

    def _error(self, title: str, text: str) -> None:
        self.last_error = text
        _show_message(self.window, title, text)

    def _start_dir(self) -> str:
        project = self.app_state.project
        if project is not None:
            return str(project.root)
        paths = self.recent.paths()
        return str(Path(paths[0]).parent) if paths else str(Path.home())

    # -- projects -------------------------------------------------------------------------
    def open_project(self, path: str | Path) -> bool:
        """Open the project at ``path``; an error is shown in a message box, not raised."""
        try:
            project = Project.open(path)
        except (TlsError, OSError, sqlite3.Error) as exc:
            self._error("Cannot open project", str(exc))
            return False
        self.recent.add(project.root)
        self.message.emit(f"Opened {project.root}")  # first: the canvas may have news to add
        self.app_state.open_project(project)
        return True

    def open_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self.window, "Open project", self._start_dir())
        if folder:
            self.open_project(folder)

    def fresh_project_folder(self) -> Path:
        """A folder that does not exist yet, next to the open project (or the most recent
        one, or in the home folder): ``new-project``, ``new-project-2``, …"""
        project = self.app_state.project
        if project is not None:
            parent = project.root.parent
        else:
            paths = self.recent.paths()
            parent = Path(paths[0]).parent if paths else Path.home()
        n = 1
        while (folder := parent / ("new-project" if n == 1 else f"new-project-{n}")).exists():
            n += 1
        return folder

    def new_project(self) -> None:
        dlg = NewProjectDialog(self.window, str(self.fresh_project_folder()))
        if dlg.exec() != QDialog.DialogCode.Accepted or not dlg.folder.text().strip():
            return
        try:
            project = Project.create(
                dlg.folder.text().strip(), multi_label=dlg.multi_label.isChecked()
            )
        except (TlsError, OSError, sqlite3.Error) as exc:
            self._error("Cannot create project", str(exc))
            return
        self.app_state.open_project(project)
        self.recent.add(project.root)

    def close_project(self) -> None:
        if self.importer.busy:
            return
        self.app_state.close_project()

    def fill_recent_menu(self, menu: QMenu) -> None:
        """Rebuild Open Recent (called just before it shows)."""
        menu.clear()
        paths = self.recent.paths()
        for i, p in enumerate(paths):
            act = menu.addAction(f"&{(i + 1) % 10} {p.replace('&', '&&')}")
            act.triggered.connect(lambda _=False, p=p: self.open_project(p))
        if paths:
            menu.addSeparator()
            menu.addAction("Clear list").triggered.connect(self.recent.clear)
        else:
            menu.addAction("(no recent projects)").setEnabled(False)

    # -- imports and exports --------------------------------------------------------------
    def import_paths(self, paths: list[Path], mode: str = "auto") -> bool:
        """Import files/folders in the background (drops and the File menu)."""
        if self.app_state.project is None:
            return False
        if self.importer.busy:
            self.message.emit("An import is already running")
            return False
        job = ImportJob(tuple(paths), mode=mode, copy=self.action_table["copy_images"].isChecked())
        return self.importer.start(job)

    def import_images(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(
            self.window, "Import images", self._start_dir(), IMAGE_FILTER
        )
        if files:
            self.import_paths([Path(f) for f in files], mode="images")

    def import_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(
            self.window, "Import every image in a folder", self._start_dir()
        )
        if folder:
            self.import_paths([Path(folder)], mode="images")

    def import_labels(self) -> None:
        if self.app_state.project is None:
            return
        dlg = LabelImportDialog(self.window, self._start_dir())
        dlg.copy.setChecked(self.action_table["copy_images"].isChecked())
        if dlg.exec() == QDialog.DialogCode.Accepted and (job := dlg.job()) is not None:
            self.importer.start(job)

    def export_labels(self) -> None:
        project = self.app_state.project
        if project is None:
            return
        dlg = ExportDialog([t.name for t in project.templates()], self.window, self._start_dir())
        if dlg.exec() != QDialog.DialogCode.Accepted or (choice := dlg.choice()) is None:
            return
        self.export(*choice)

    def export(self, fmt: str, kind: str | None, template: str | None, out: Path) -> None:
        """Export in the background with the worker's own project connection."""
        from tlstudio.core.formats import export_labels

        project = self.app_state.project
        if project is None:  # closed meanwhile: nothing to export
            return
        root = project.root

        def work() -> tuple[Path, list[str]]:
            warnings: list[str] = []
            with Project.open(root) as project:
                path = export_labels(project, fmt, out, kind=kind, template=template,
                                     warnings=warnings)  # fmt: skip
            return path, warnings

        def done(result: tuple[Path, list[str]]) -> None:
            path, warnings = result
            text = f"Exported {fmt}{f' ({kind})' if kind else ''} to {path}"
            self.message.emit(text)
            if warnings:
                shown = "\n".join(warnings[:20])
                more = f"\n… and {len(warnings) - 20} more" if len(warnings) > 20 else ""
                _show_message(self.window, "Export finished with warnings",
                              f"{text}\n\n{shown}{more}", QMessageBox.Icon.Information)  # fmt: skip

        self.message.emit(f"Exporting {fmt} to {out}…")
        start_job(
            lambda _token, _progress: work(),
            context=self,
            succeeded=done,
            failed=lambda _kind, message: self._error("Export failed", message),
        )
