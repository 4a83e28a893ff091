"""The main window: a composition root only. It builds the canvas, docks, menus and
toolbar and connects them; what they do lives in :mod:`tlstudio.gui.actions`,
:mod:`tlstudio.gui.panels` and :mod:`tlstudio.gui.workers`."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings, QSize, Qt, QTimer
from PySide6.QtGui import (
    QActionGroup,
    QCloseEvent,
    QDragEnterEvent,
    QDragMoveEvent,
    QDropEvent,
    QKeySequence,
    QShortcut,
    QShowEvent,
)
from PySide6.QtWidgets import (
    QDockWidget,
    QMainWindow,
    QMessageBox,
    QTabWidget,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from tlstudio import __version__
from tlstudio.core.store import DB_NAME
from tlstudio.gui.actions import Actions, ProjectActions
from tlstudio.gui.inspect.panel import InspectPanel
from tlstudio.gui.panels.browser import BROWSER_KEYS, BrowserPanel
from tlstudio.gui.panels.canvas_host import create_canvas, tool_shortcuts
from tlstudio.gui.panels.classes import ClassPanel, NewAnnotationClassLabel
from tlstudio.gui.panels.dialogs import ImportResultDialog, show_message
from tlstudio.gui.panels.display import DisplayPanel
from tlstudio.gui.panels.missing import MissingFilesBanner
from tlstudio.gui.panels.predictions import ACCEPT_SHORTCUT, PredictionsPanel
from tlstudio.gui.panels.readout import CanvasReadout
from tlstudio.gui.panels.shortcuts import ShortcutsDialog
from tlstudio.gui.state import AppState
from tlstudio.gui.training.train_dock import TrainDock
from tlstudio.gui.widgets.project_banners import ReadOnlyBanner, RefusedEditBar
from tlstudio.gui.window_layout import ModeLayouts, PageScroll
from tlstudio.gui.workers.importer import ImportController, ImportResult
from tlstudio.gui.workers.jobs import wait_for_jobs

APP_TITLE = "tlstudio"
MODES = ("mode_label", "mode_train", "mode_inspect")  # actions of the tabs, in tab order


class MainWindow(QMainWindow):
    """Canvas in the centre, image browser left, classes and display right."""

    def __init__(self, app_state: AppState | None = None, settings: QSettings | None = None):
        super().__init__()
        self.setObjectName("mainWindow")
        self.app_state = app_state or AppState(self)
        self.settings = settings if settings is not None else QSettings()
        self.action_table = Actions(self)  # not "actions": that hides QWidget.actions()
        self.shortcuts_dialog: ShortcutsDialog | None = None
        self.import_result_dialog: ImportResultDialog | None = None
        self.threads_dialog: QWidget | None = None

        self.canvas = create_canvas(self.app_state)
        self.banner = MissingFilesBanner(self.app_state)
        central = QWidget()
        lay = QVBoxLayout(central)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(2)
        lay.addWidget(self.banner)
        self.read_only_banner = ReadOnlyBanner(self.app_state)
        self.refused_bar = RefusedEditBar(self.app_state)
        lay.addWidget(self.read_only_banner)
        lay.addWidget(self.refused_bar)
        lay.addWidget(self.canvas, 1)
        self.train_panel = TrainDock(self.app_state)
        self.inspect_panel = InspectPanel(self.app_state)
        self.modes = QTabWidget()  # Label | Train | Inspect: the workspaces share the docks
        self.modes.setDocumentMode(True)
        self.modes.addTab(central, "Label")
        self.modes.addTab(PageScroll(self.train_panel, "trainPage"), "Train")
        self.modes.addTab(PageScroll(self.inspect_panel, "inspectPage"), "Inspect")
        self.setCentralWidget(self.modes)

        self.browser = BrowserPanel(self.app_state)
        self.classes = ClassPanel(self.app_state)
        self.display = DisplayPanel(self.app_state, self.canvas, self.action_table["show_mask"])
        left, right = Qt.DockWidgetArea.LeftDockWidgetArea, Qt.DockWidgetArea.RightDockWidgetArea
        self.browser_dock = self._dock("Images", "browserDock", self.browser, left)
        self.classes_dock = self._dock("Classes", "classesDock", self.classes, right)
        self.display_dock = self._dock("Display", "displayDock", self.display, right)
        self.predictions = PredictionsPanel(
            self.app_state, self.canvas, selected_ids=self.browser.selected_ids
        )
        self.predictions_dock = self._dock(
            "Predictions", "predictionsDock", self.predictions, right
        )
        self.layouts = ModeLayouts(
            self, self.settings, (self.classes_dock, self.display_dock, self.predictions_dock)
        )

        self.importer = ImportController(self.app_state, self)
        self.project_actions = ProjectActions(
            self, self.app_state, self.settings, self.importer, self.action_table
        )
        self._build_menus()
        self._build_toolbar()
        self._wire()
        self.setAcceptDrops(True)
        for w in (self.canvas, getattr(self.canvas, "viewport", lambda: None)()):
            if w is not None:  # drops over the canvas reach the window (a scene accepts them)
                w.setAcceptDrops(False)
        self.new_class_label = NewAnnotationClassLabel(self.app_state)
        self.statusBar().addPermanentWidget(self.new_class_label)
        self.readout = CanvasReadout(self.canvas)
        self.statusBar().addPermanentWidget(self.readout)
        self.statusBar().showMessage("Ready")
        self._restore()
        self._update_title()

    # -- building ---------------------------------------------------------------------------
    def _dock(self, title: str, name: str, widget: QWidget, area) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(name)  # restoreState finds docks by name
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        return dock

    def _build_menus(self) -> None:
        a, bar = self.action_table, self.menuBar()
        file = bar.addMenu("&File")
        file.addActions([a["new_project"], a["open_project"]])
        self.recent_menu = file.addMenu("Open &Recent")
        self.recent_menu.aboutToShow.connect(
            lambda: self.project_actions.fill_recent_menu(self.recent_menu)
        )
        file.addSeparator()
        file.addActions([a["import_images"], a["import_folder"], a["import_labels"]])
        file.addActions([a["export_labels"], a["copy_images"]])
        file.addSeparator()
        file.addActions([a["close_project"], a["quit"]])
        self.edit_menu = bar.addMenu("&Edit")
        self.edit_menu.addActions([a["undo"], a["redo"]])
        self.edit_menu.addSeparator()
        self.edit_menu.addAction(a["tag_image"])
        self.edit_menu.addSeparator()
        self.edit_menu.addAction(a["cpu_threads"])
        bar.addMenu("&Go").addActions(a.section("Go"))
        view = bar.addMenu("&View")
        view.addActions([a["mode_label"], a["mode_train"], a["mode_inspect"]])
        view.addSeparator()
        view.addActions([a["fit"], a["zoom_1to1"], a["show_mask"], a["grid"]])
        view.addMenu(self.display.preset_menu)  # window/level presets (Alt+digit keys)
        view.addSeparator()
        for dock in (self.browser_dock, self.classes_dock, self.display_dock,
                     self.predictions_dock):  # fmt: skip
            view.addAction(dock.toggleViewAction())
        bar.addMenu("&Tools").addActions(a.section("Tools"))
        bar.addMenu("&Help").addActions(a.section("Help"))

    def _build_toolbar(self) -> None:
        self.tool_bar = QToolBar("Tools", self)
        self.tool_bar.setObjectName("toolsToolBar")
        self.tool_bar.setIconSize(QSize(20, 20))
        self.tool_bar.addActions(self.action_table.section("Tools"))
        self.tool_bar.addSeparator()
        self.tool_bar.addActions([self.action_table["fit"], self.action_table["zoom_1to1"]])
        self.addToolBar(Qt.ToolBarArea.TopToolBarArea, self.tool_bar)

    def _wire(self) -> None:
        a, s, status = self.action_table, self.app_state, self.statusBar()
        a.bind(s)
        modes = QActionGroup(self)
        for i, name in enumerate(MODES):
            modes.addAction(a[name])
            a[name].triggered.connect(lambda _=False, i=i: self.modes.setCurrentIndex(i))
        a["mode_label"].setChecked(True)
        self.modes.currentChanged.connect(self._mode_changed)
        a["fit"].triggered.connect(self.canvas.fit_to_window)
        a["zoom_1to1"].triggered.connect(self.canvas.zoom_1to1)
        a["grid"].toggled.connect(self.browser.set_grid)
        self.browser.grid_button.toggled.connect(a["grid"].setChecked)
        a["next_image"].triggered.connect(self.browser.next_image)
        a["previous_image"].triggered.connect(self.browser.previous_image)
        a["next_unlabelled"].triggered.connect(self._next_unlabelled)
        a["tag_image"].triggered.connect(self.classes.tag_current_image)
        a["quit"].triggered.connect(self.close)
        a["shortcuts"].triggered.connect(self.show_shortcuts)
        a["about"].triggered.connect(self.show_about)
        a["cpu_threads"].triggered.connect(self.show_threads_dialog)
        # 1–9 tag the image with the n-th class wherever the focus is in Label mode (a
        # focused text or number field keeps its digits); the canvas handles them itself
        # while it has the focus
        self.class_keys: list[QShortcut] = []
        for n in range(1, 10):
            key = QShortcut(QKeySequence(str(n)), self)
            key.setContext(Qt.ShortcutContext.WindowShortcut)
            key.activated.connect(lambda n=n: self._tag_with_class(n))
            self.class_keys.append(key)
        self.importer.finished.connect(self._import_finished)
        self.inspect_panel.open_image.connect(self.show_image)
        self.train_panel.open_image.connect(self.show_image)
        for source in (self.browser, self.classes, self.project_actions, self.canvas,
                       self.inspect_panel, self.predictions, self.train_panel):  # fmt: skip
            source.message.connect(lambda text: status.showMessage(text, 8000))
        s.project_opened.connect(lambda _p: self._update_title())
        s.project_closed.connect(self._update_title)

    # -- behaviour that only joins parts ------------------------------------------------------
    def open_project(self, path: str | Path) -> bool:
        return self.project_actions.open_project(path)

    def show_image(self, image_id: int) -> None:
        """Show an image in the Label canvas (from the Inspect views)."""
        self.app_state.set_image(image_id)
        self.modes.setCurrentIndex(0)

    def _update_title(self) -> None:
        project = self.app_state.project
        name = project and project.root.name + (" (read-only)" if project.read_only else "")
        self.setWindowTitle(f"{name} — {APP_TITLE}" if project else APP_TITLE)

    def _next_unlabelled(self) -> None:
        if not self.browser.next_unlabelled():
            self.statusBar().showMessage("No unlabelled image left", 5000)

    def _tag_with_class(self, n: int) -> None:
        edits = getattr(self.canvas, "edits", self.canvas)  # the canvas's label edits
        tag = getattr(edits, "tag_with_class", None)
        if tag is not None and self.modes.currentIndex() == 0:
            tag(n)

    def _import_finished(self, result: ImportResult) -> None:
        self.browser.reload()
        self.classes.refresh()
        self.statusBar().showMessage(f"Import: {result.summary()}", 10000)
        if result.failed or result.warnings or result.notes:
            if self.import_result_dialog is not None:
                self.import_result_dialog.close()
            self.import_result_dialog = ImportResultDialog(result, self)
            self.import_result_dialog.show()

    def shortcut_entries(self) -> list[tuple[str, str, str]]:
        """Every key: menu actions, the canvas tools and the browser."""
        entries = self.action_table.shortcut_entries()
        entries += [("Canvas tools", k, d) for k, d in tool_shortcuts()]
        entries += [("Image browser", k, d) for k, d in BROWSER_KEYS]
        entries += [("Predictions", ACCEPT_SHORTCUT, self.predictions.accept_action.text())]
        return entries

    def show_shortcuts(self) -> ShortcutsDialog:
        self.shortcuts_dialog = ShortcutsDialog(self.shortcut_entries(), self)
        self.shortcuts_dialog.show()
        return self.shortcuts_dialog

    def show_threads_dialog(self) -> QWidget:
        """Edit → CPU threads…: the thread setting (tlstudio.gui.thread_setting)."""
        from tlstudio.gui.thread_setting import ThreadsDialog

        if self.threads_dialog is not None:
            self.threads_dialog.deleteLater()
        self.threads_dialog = ThreadsDialog(self.settings, self)
        self.threads_dialog.open()
        return self.threads_dialog

    def show_about(self) -> None:
        show_message(
            self, "About tlstudio",
            f"tlstudio {__version__} — Transfer Learning Studio\n\nLabel images, train on "
            "pretrained backbones and look inside the model, offline.",
            QMessageBox.Icon.Information,
        )  # fmt: skip

    # -- drag and drop ------------------------------------------------------------------------
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        urls = event.mimeData().urls()
        if urls and all(u.isLocalFile() for u in urls):
            event.acceptProposedAction()

    def dragMoveEvent(self, event: QDragMoveEvent) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        paths = [Path(u.toLocalFile()) for u in event.mimeData().urls() if u.isLocalFile()]
        if not paths:
            return
        event.acceptProposedAction()
        if len(paths) == 1 and (paths[0] / DB_NAME).is_file():  # a project folder: open it
            self.open_project(paths[0])
        elif self.app_state.project is None:
            self.statusBar().showMessage("Open or create a project first, then drop images", 8000)
        else:
            self.project_actions.import_paths(paths)

    # -- persistence ------------------------------------------------------------------------------
    def _restore(self) -> None:
        geometry = self.settings.value("window/geometry")
        if isinstance(geometry, QByteArray) and not geometry.isEmpty():
            self.restoreGeometry(geometry)
        else:
            self.resize(1280, 800)
        self._fit_docks_on_show = not self.layouts.restore()

    def _mode_changed(self, index: int) -> None:
        """Each mode keeps its own dock layout (Train and Inspect start without the
        labelling docks, to make room for their panels)."""
        self.action_table[MODES[index]].setChecked(True)
        self.layouts.switch(index)
        for key in self.class_keys:
            key.setEnabled(index == 0)
        if index == 1:
            # ML modules load in the background, for Train only: Inspect's jobs import what
            # they need themselves, through the same lock (gui/workers/ml_imports.py)
            self.train_panel.config.preload()

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        if self._fit_docks_on_show:  # no saved layout: docks need their shown sizes
            self._fit_docks_on_show = False
            QTimer.singleShot(0, self.layouts.fit_docks)

    def closeEvent(self, event: QCloseEvent) -> None:
        if not self.train_panel.confirm_close():
            event.ignore()
            return
        self.settings.setValue("window/geometry", self.saveGeometry())
        self.layouts.save()
        self.settings.sync()
        self.setUpdatesEnabled(False)  # no painting while the panels tear down
        try:
            self.importer.shutdown()
            self.browser.shutdown()
            self.inspect_panel.shutdown()
            self.predictions.shutdown()
            self.app_state.close_project()
            wait_for_jobs(5000)  # missing-file checks and exports hold their own connection
        finally:
            self.setUpdatesEnabled(True)
        super().closeEvent(event)
