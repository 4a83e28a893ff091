"""The class dock: classes with colour swatches and counts, their edits, and the
landmark template picker. Every change is a core command pushed through
``app_state`` (one undo step each); merge and delete say first how many
annotations they change."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSize, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QIcon, QPixmap
from PySide6.QtWidgets import (
    QColorDialog,
    QComboBox,
    QFileDialog,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QMessageBox,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from tlstudio.core.commands import (
    AddClass,
    AddTemplate,
    Command,
    DeleteClass,
    MergeClasses,
    RenameClass,
    SetClassColor,
    SetTags,
)
from tlstudio.core.errors import TlsError
from tlstudio.core.labelset import ClassInfo, builtin_templates, load_template_file
from tlstudio.gui.panels.image_query import (
    class_counts,
    template_class,
    template_counts,
    usage_text,
)
from tlstudio.gui.state import AppState
from tlstudio.gui.widgets.wheel_guard import guard_wheel

#: what each drawing tool makes, for "New box: circle" in the status bar
TOOL_MAKES = {"box": "box", "landmarks": "landmark set", "mask": "mask paint",
              "objects": "object"}  # fmt: skip
MIN_NOTE_WIDTH = 80  # px: the status-bar note may be cut down to this


def swatch(color: str, size: int = 14) -> QIcon:
    pm = QPixmap(size, size)
    pm.fill(QColor(color))
    return QIcon(pm)


class ClassPanel(QWidget):
    """Lists the project's classes; the selected one is ``app_state.class_id``."""

    message = Signal(str)  # errors and confirmations, for the status bar

    def __init__(self, app_state: AppState, parent: QWidget | None = None):
        super().__init__(parent)
        self.app_state = app_state
        self._selecting = False  # the list follows app_state (not a user's pick)
        self.list = QListWidget()
        self.list.setObjectName("classList")
        self.list.currentItemChanged.connect(self._current_changed)
        self.list.itemClicked.connect(lambda item: self._current_changed(item, None))
        self.list.itemDoubleClicked.connect(lambda _item: self.rename_selected())

        self.add_button = QPushButton("Add…")
        self.rename_button = QPushButton("Rename…")
        self.color_button = QPushButton("Colour…")
        self.merge_button = QPushButton("Merge…")
        self.delete_button = QPushButton("Delete…")
        self.tag_button = QPushButton("Tag image")
        self.tag_button.setToolTip("Give the current image this class tag (toggles in multi-label)")
        self.add_button.clicked.connect(self.add_class)
        self.rename_button.clicked.connect(self.rename_selected)
        self.color_button.clicked.connect(self.recolor_selected)
        self.merge_button.clicked.connect(self.merge_selected)
        self.delete_button.clicked.connect(self.delete_selected)
        self.tag_button.clicked.connect(self.tag_current_image)
        buttons = QGridLayout()
        for i, b in enumerate(
            (self.add_button, self.rename_button, self.color_button,
             self.merge_button, self.delete_button, self.tag_button)
        ):  # fmt: skip
            buttons.addWidget(b, i // 3, i % 3)

        self.template = QComboBox()
        self.template.setObjectName("templateCombo")
        self.template.setToolTip(
            "Template of new landmark sets (with how many landmark sets use each)"
        )
        self.template.currentIndexChanged.connect(self._template_chosen)
        self.builtin_button = QToolButton()
        self.builtin_button.setText("Add built-in")
        self.builtin_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.builtin_menu = QMenu(self.builtin_button)
        self.builtin_menu.aboutToShow.connect(self._fill_builtin_menu)
        self.builtin_button.setMenu(self.builtin_menu)
        self.load_button = QToolButton()
        self.load_button.setText("Load file…")
        self.load_button.clicked.connect(self.load_template_file)
        tgroup = QGroupBox("Landmark template")
        tlay = QVBoxLayout(tgroup)
        tlay.addWidget(self.template)
        trow = QHBoxLayout()
        trow.addWidget(self.builtin_button)
        trow.addWidget(self.load_button)
        trow.addStretch(1)
        tlay.addLayout(trow)

        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addWidget(self.list, 1)
        lay.addLayout(buttons)
        lay.addWidget(tgroup)

        self._refresh_timer = QTimer(self, singleShot=True, interval=30)
        self._refresh_timer.timeout.connect(self.refresh)
        app_state.project_opened.connect(self._project_opened)
        app_state.project_closed.connect(self.refresh)
        app_state.data_changed.connect(self._data_changed)
        app_state.class_changed.connect(self._select_class)
        app_state.template_changed.connect(self._template_changed)
        self.refresh()
        guard_wheel(self)  # the wheel over the template box scrolls, it does not switch

    def _project_opened(self, project) -> None:
        """Show the template the project's landmark sets use most (not the first one)."""
        counts = template_counts(project)
        if counts and max(counts.values()) > 0:
            self.app_state.set_template(max(counts, key=lambda tid: counts[tid]))
        self.refresh()

    # -- showing -----------------------------------------------------------------------
    def _data_changed(self) -> None:
        project = self.app_state.project
        if project is None:
            return
        # the selection must never name a deleted class or template, not even briefly
        ids = [c.id for c in project.classes()]
        if self.app_state.class_id not in ids:
            self.app_state.set_class(ids[0] if ids else None)
        tids = [t.id for t in project.templates()]
        if self.app_state.template_id not in tids:
            self.app_state.set_template(tids[0] if tids else None)
        if not self._refresh_timer.isActive():  # counts: once per burst (a brush stroke)
            self._refresh_timer.start()

    def refresh(self) -> None:
        """Rebuild the class list and template combo from the store."""
        self._refresh_timer.stop()
        project = self.app_state.project
        classes = project.classes() if project else []
        counts = class_counts(project) if project else {}
        self.list.blockSignals(True)
        self.list.clear()
        for c in classes:
            usage = counts.get(c.id, {})
            item = QListWidgetItem(swatch(c.color), f"{c.name}  ({sum(usage.values())})")
            item.setData(Qt.ItemDataRole.UserRole, c.id)
            item.setToolTip(f"{c.name}: {usage_text(usage)}")
            self.list.addItem(item)
        self.list.blockSignals(False)
        ids = [c.id for c in classes]
        if self.app_state.class_id not in ids:  # deleted, merged or undone away
            self.app_state.set_class(ids[0] if ids else None)
        self._select_class(self.app_state.class_id)
        self._refresh_templates()
        enabled = project is not None
        for w in (self.add_button, self.builtin_button, self.load_button):
            w.setEnabled(enabled)
        for w in (self.rename_button, self.color_button, self.delete_button, self.tag_button):
            w.setEnabled(bool(ids))
        self.merge_button.setEnabled(len(ids) > 1)

    def _refresh_templates(self) -> None:
        project = self.app_state.project
        templates = project.templates() if project else []
        counts = template_counts(project) if project else {}
        self.template.blockSignals(True)
        self.template.clear()
        for t in templates:
            n = counts.get(t.id, 0) if t.id is not None else 0
            used = f"{n} set{'s' if n != 1 else ''}" if n else "no sets yet"
            self.template.addItem(f"{t.name} ({len(t.points)} points, {used})", t.id)
        self.template.blockSignals(False)
        ids = [t.id for t in templates]
        if self.app_state.template_id not in ids:
            self.app_state.set_template(ids[0] if ids else None)
        self._template_changed(self.app_state.template_id)

    def _template_changed(self, template_id: int | None) -> None:
        self._select_template(template_id)
        project = self.app_state.project
        self.app_state.set_template_class(
            template_class(project, template_id) if project is not None else None
        )

    def _select_class(self, class_id: int | None) -> None:
        for i in range(self.list.count()):
            item = self.list.item(i)
            if item.data(Qt.ItemDataRole.UserRole) == class_id:
                if self.list.currentItem() is not item:
                    self._selecting = True
                    try:
                        self.list.setCurrentItem(item)
                    finally:
                        self._selecting = False
                return

    def _select_template(self, template_id: int | None) -> None:
        i = self.template.findData(template_id)
        if i >= 0 and i != self.template.currentIndex():
            self.template.setCurrentIndex(i)

    def _current_changed(self, item: QListWidgetItem | None, _prev) -> None:
        if item is not None and not self._selecting:  # clicked or keyed by the user
            self.app_state.pick_class(item.data(Qt.ItemDataRole.UserRole))

    def _template_chosen(self, index: int) -> None:
        if index >= 0:
            self.app_state.set_template(self.template.itemData(index))

    def selected_class(self) -> ClassInfo | None:
        project, cid = self.app_state.project, self.app_state.class_id
        if project is None or cid is None:
            return None
        try:
            return project.class_info(cid)
        except TlsError:
            return None

    # -- editing -------------------------------------------------------------------------
    def _push(self, command: Command) -> bool:
        try:
            self.app_state.push(command)
        except TlsError as exc:
            QMessageBox.warning(self, "tlstudio", str(exc))
            return False
        return True

    def add_class(self) -> None:
        if self.app_state.project is None:
            return
        name, ok = QInputDialog.getText(self, "Add class", "Name of the new class:")
        if ok and name.strip():
            cmd = AddClass(name.strip())
            if self._push(cmd):
                self.refresh()
                if cmd.info is not None:  # set by the push
                    self.app_state.set_class(cmd.info.id)

    def rename_selected(self) -> None:
        info = self.selected_class()
        if info is None:
            return
        name, ok = QInputDialog.getText(self, "Rename class", "New name:", text=info.name)
        if ok and name.strip() and name.strip() != info.name:
            self._push(RenameClass(info.id, name.strip()))

    def recolor_selected(self) -> None:
        info = self.selected_class()
        if info is None:
            return
        color = QColorDialog.getColor(QColor(info.color), self, f"Colour of {info.name}")
        if color.isValid() and color.name() != info.color:
            self._push(SetClassColor(info.id, color.name()))

    def merge_selected(self) -> None:
        info = self.selected_class()
        project = self.app_state.project
        if info is None or project is None:
            return
        others = [c for c in project.classes() if c.id != info.id]
        if not others:
            return
        name, ok = QInputDialog.getItem(
            self, "Merge class", f"Merge {info.name!r} into:", [c.name for c in others], 0, False
        )
        target = next((c for c in others if c.name == name), None)
        if not ok or target is None:
            return
        usage = usage_text(project.class_usage(info.id))
        answer = QMessageBox.question(
            self,
            "Merge classes",
            f"Merge {info.name!r} into {target.name!r}?\n\n{usage} will change to "
            f"{target.name!r} and the class {info.name!r} is removed. (Undo with Ctrl+Z.)",
        )
        if answer == QMessageBox.StandardButton.Yes and self._push(
            MergeClasses(info.id, target.id)
        ):
            self.app_state.set_class(target.id)
            self.message.emit(f"Merged {info.name!r} into {target.name!r}: {usage} changed")

    def delete_selected(self) -> None:
        info = self.selected_class()
        project = self.app_state.project
        if info is None or project is None:
            return
        usage = usage_text(project.class_usage(info.id))
        answer = QMessageBox.question(
            self,
            "Delete class",
            f"Delete the class {info.name!r}?\n\n{usage} will be deleted with it. "
            "(Undo with Ctrl+Z.)",
        )
        if answer == QMessageBox.StandardButton.Yes and self._push(DeleteClass(info.id)):
            self.message.emit(f"Deleted {info.name!r}: {usage} removed")

    def tag_current_image(self) -> None:
        """Set the current image's tag to the selected class (toggle it if multi-label)."""
        project, image_id, info = self.app_state.project, self.app_state.image_id, None
        info = self.selected_class()
        if project is None or image_id is None or info is None:
            return
        tags = project.tags(image_id)
        if project.multi_label:
            new = tuple(t for t in tags if t != info.id) if info.id in tags else (*tags, info.id)
        else:
            new = () if tags == (info.id,) else (info.id,)
        self._push(SetTags(image_id, new, text=f"Tag image {info.name!r}"))

    # -- templates ------------------------------------------------------------------------
    def _fill_builtin_menu(self) -> None:
        self.builtin_menu.clear()
        project = self.app_state.project
        have = {t.name for t in project.templates()} if project else set()
        for t in builtin_templates():
            act = self.builtin_menu.addAction(f"{t.name} ({len(t.points)} points)")
            act.setEnabled(t.name not in have)
            act.triggered.connect(lambda _=False, t=t: self.add_template(t))

    def add_template(self, template) -> None:
        cmd = AddTemplate(template)
        if self._push(cmd):
            self.app_state.set_template(cmd.template.id)

    def load_template_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Landmark template", "", "Template (*.json);;All files (*)"
        )
        if path:
            try:
                template = load_template_file(Path(path))
            except TlsError as exc:
                QMessageBox.warning(self, "tlstudio", str(exc))
                return
            self.add_template(template)


class NewAnnotationClassLabel(QLabel):
    """Status-bar note of the class the next annotation gets, while a drawing tool is
    active: "New landmark set (Face): class 'face', as the template's other sets"."""

    def __init__(self, app_state: AppState, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("newAnnotationClass")
        self.app_state = app_state
        for signal in (app_state.new_class_changed, app_state.data_changed,
                       app_state.project_closed):  # fmt: skip
            signal.connect(self.update_text)
        app_state.project_opened.connect(lambda _p: self.update_text())
        self.update_text()

    def minimumSizeHint(self) -> QSize:
        # a long class or template name is cut (whole in the tooltip), never widens the
        # status bar and with it the window
        return QSize(MIN_NOTE_WIDTH, super().minimumSizeHint().height())

    def update_text(self) -> None:
        state, project = self.app_state, self.app_state.project
        makes = TOOL_MAKES.get(state.tool)
        if project is None or makes is None:
            self.setText("")
            self.setVisible(False)
            return
        class_id = state.new_annotation_class()
        try:
            name = f"class {project.class_info(class_id).name!r}" if class_id else "no class"
        except TlsError:  # deleted a moment ago; the class panel picks another
            name = "no class"
        what, why = makes, ""
        if state.tool == "landmarks" and state.template_id is not None:
            try:
                what = f"{makes} ({project.template(state.template_id).name})"
            except TlsError:
                pass
            if class_id is not None and class_id == state.template_class_id:
                why = ", as the template's other sets"
        self.setText(f"New {what}: {name}{why}")
        self.setToolTip(
            f"{self.text()}.\nThe class the next annotation gets. Landmark sets take the "
            "class their template's sets share; pick a class in Classes while placing "
            "landmarks to use another."
        )
        self.setVisible(True)
