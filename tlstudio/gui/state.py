"""Shared GUI state: the open project, its undo stack and the current selection.

Panels, tools and the canvas read and change the selection only through this
object and listen to its signals, so they never need references to each other.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal

from tlstudio.core.commands import Command, UndoStack
from tlstudio.core.errors import ProjectBusyError
from tlstudio.core.project import Project


class AppState(QObject):
    """Current project, image, class, template and tool, with change signals."""

    project_opened = Signal(object)  # Project
    project_closed = Signal()
    image_changed = Signal(object)  # image id (int) or None
    class_changed = Signal(object)  # class id (int) or None
    template_changed = Signal(object)  # template id (int) or None
    tool_changed = Signal(str)  # tool name, e.g. "select", "box", "landmarks", "mask"
    run_changed = Signal(object)  # run id (int) whose predictions are shown, or None
    new_class_changed = Signal()  # the class new annotations get may have changed
    predictions_changed = Signal()  # predictions of some run were added or replaced
    edit_refused = Signal(object, str)  # (Command, message): another program held the lock
    data_changed = (
        Signal()
    )  # after any push, undo or redo: annotations, classes, templates or splits changed

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.project: Project | None = None
        self.undo_stack: UndoStack | None = None
        self.image_id: int | None = None
        self.class_id: int | None = None
        self.template_id: int | None = None
        # the class every landmark set of the current template has (None: no such class);
        # new landmark sets take it unless the user picks a class while placing landmarks
        self.template_class_id: int | None = None
        self._landmark_class_picked = False
        self.tool: str = "select"
        self.run_id: int | None = None  # the run being inspected (predictions, metrics)

    # -- project -----------------------------------------------------------
    def open_project(self, project: Project) -> None:
        self.close_project()
        self.project = project
        self.undo_stack = UndoStack(project)
        self.undo_stack.add_listener(self.data_changed.emit)
        classes = project.classes()
        self.class_id = classes[0].id if classes else None
        templates = project.templates()
        self.template_id = templates[0].id if templates else None
        self.image_id = None
        self.run_id = None
        self.template_class_id = None
        self._landmark_class_picked = False
        self.project_opened.emit(project)
        self.class_changed.emit(self.class_id)
        self.template_changed.emit(self.template_id)

    def close_project(self) -> None:
        if self.project is None:
            return
        self.set_image(None)
        self.set_run(None)
        project, self.project, self.undo_stack = self.project, None, None
        # Views drop their rows while the store is still open: a listener that repaints
        # synchronously (a progress bar's setValue) makes the whole window paint, and a
        # list view not yet told would read its rows from a closed database (seen as a
        # segfault in the browser's delegate while the window closed).
        self.project_closed.emit()
        project.close()

    def push(self, command: Command) -> None:
        """Do a command through the undo stack (one transaction, one undo step)."""
        if self.undo_stack is None:
            raise RuntimeError("no project is open")
        try:
            self.undo_stack.push(command)
        except ProjectBusyError as exc:  # nothing was stored: the edit is kept for a retry
            self.edit_refused.emit(command, str(exc))
            raise

    # -- selection -----------------------------------------------------------
    def set_image(self, image_id: int | None) -> None:
        if image_id != self.image_id:
            self.image_id = image_id
            self.image_changed.emit(image_id)

    def set_class(self, class_id: int | None) -> None:
        if class_id != self.class_id:
            self.class_id = class_id
            self.class_changed.emit(class_id)
            self.new_class_changed.emit()

    def pick_class(self, class_id: int | None) -> None:
        """The user picked ``class_id`` (a click in the class list). Picked while the
        landmark tool is active, new landmark sets take it instead of the template's
        class (until the template changes); picked with another tool, they do not."""
        picked = self.tool == "landmarks"
        if picked != self._landmark_class_picked:
            self._landmark_class_picked = picked
            self.new_class_changed.emit()
        self.set_class(class_id)

    def set_template(self, template_id: int | None) -> None:
        if template_id != self.template_id:
            self.template_id = template_id
            self._landmark_class_picked = False
            self.template_changed.emit(template_id)
            self.new_class_changed.emit()

    def set_template_class(self, class_id: int | None) -> None:
        """The class every landmark set of the current template has (None: none such)."""
        if class_id != self.template_class_id:
            self.template_class_id = class_id
            self.new_class_changed.emit()

    @property
    def landmark_class_id(self) -> int | None:
        """The class a new landmark set gets: the template's class when its sets share
        one (and the user did not pick another while placing landmarks), else the
        selected class."""
        if self.template_class_id is not None and not self._landmark_class_picked:
            return self.template_class_id
        return self.class_id

    def new_annotation_class(self, tool: str | None = None) -> int | None:
        """The class a new annotation of ``tool`` (default: the active tool) gets."""
        return self.landmark_class_id if (tool or self.tool) == "landmarks" else self.class_id

    def set_run(self, run_id: int | None) -> None:
        if run_id != self.run_id:
            self.run_id = run_id
            self.run_changed.emit(run_id)

    def set_tool(self, name: str) -> None:
        if name != self.tool:
            self.tool = name
            self.tool_changed.emit(name)
            self.new_class_changed.emit()
