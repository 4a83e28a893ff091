"""The window's layout per mode (which docks are open, their sizes) and the pages of the
mode tabs.

Label, Train and Inspect each keep their own dock layout: switching modes saves the
layout of the mode left and restores the one of the mode entered, and closing the
window saves all three, so a close in any mode restores what the user had in each.
Train and Inspect start with the labelling docks (classes, display, predictions)
hidden to make room for their panels.
"""

from __future__ import annotations

from PySide6.QtCore import QByteArray, QEvent, QObject, QSettings, QSize, Qt
from PySide6.QtGui import QResizeEvent
from PySide6.QtWidgets import QDockWidget, QFrame, QMainWindow, QScrollArea, QWidget

#: QSettings key of each mode's ``QMainWindow.saveState`` (index = mode tab). New keys
#: (the single "window/state" before them was saved with the labelling docks hidden
#: whenever the window closed in Train or Inspect mode, and so is not read any more).
LAYOUT_KEYS = ("window/layout/label", "window/layout/train", "window/layout/inspect")
LAYOUT_VERSION = 1  # the saveState version: a layout of another version is not restored


class PageScroll(QScrollArea):
    """A mode page that never imposes its minimum size on the window (so a mode switch
    cannot grow the window): the page fills the area, and scrolls where the area is
    smaller than the page's minimum size.

    The page is sized here rather than by ``setWidgetResizable(True)``, which gives a
    page with word-wrapped text its *preferred* height for the width, so the page
    would scroll at any window height."""

    def __init__(self, page: QWidget, name: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName(name)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setWidget(page)
        page.installEventFilter(self)

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        if obj is self.widget() and event.type() == QEvent.Type.LayoutRequest:
            self.fit_page()  # the page's minimum size may have changed
        return super().eventFilter(obj, event)

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self.fit_page()

    def fit_page(self) -> None:
        """Size the page: the viewport's size, at least the page's minimum size (the
        scroll bars that this needs take their room from the viewport)."""
        page = self.widget()
        if page is None:  # no page set yet
            return
        need = page.minimumSizeHint().expandedTo(page.minimumSize())
        room = self.maximumViewportSize()
        bar_w = self.verticalScrollBar().sizeHint().width()
        bar_h = self.horizontalScrollBar().sizeHint().height()
        width, height = room.width(), room.height()
        if need.width() > width:
            height -= bar_h
        if need.height() > height:
            width -= bar_w
            if need.width() > width and need.width() <= room.width():
                height -= bar_h  # the vertical bar made the page too narrow after all
        page.resize(QSize(max(need.width(), width), max(need.height(), height)))


class ModeLayouts:
    """Saves and restores ``window``'s dock layout per mode (see the module text)."""

    def __init__(self, window: QMainWindow, settings: QSettings,
                 labelling_docks: tuple[QDockWidget, ...]):  # fmt: skip
        self.window = window
        self.settings = settings
        self.labelling_docks = labelling_docks
        self.mode = 0
        self.layouts: dict[int, QByteArray] = {}

    def restore(self) -> bool:
        """Read the saved layouts and apply Label mode's (the window opens in Label
        mode); False when there was none (then call :meth:`fit_docks` once shown)."""
        for mode, key in enumerate(LAYOUT_KEYS):
            value = self.settings.value(key)
            if isinstance(value, QByteArray) and not value.isEmpty():
                self.layouts[mode] = value
        label = self.layouts.get(0)
        return label is not None and self.window.restoreState(label, LAYOUT_VERSION)

    def fit_docks(self) -> None:
        """The default heights of the labelling docks: all but the last as small as
        their content allows, the last (with the buttons that must show without
        scrolling) as tall as its content asks, when the window is tall enough."""
        docks = [d for d in self.labelling_docks if d.isVisible()]
        if not docks:
            return
        heights = [d.minimumSizeHint().height() for d in docks[:-1]]
        heights.append(docks[-1].widget().sizeHint().height())
        self.window.resizeDocks(docks, heights, Qt.Orientation.Vertical)

    def switch(self, mode: int) -> None:
        """Keep the layout of the mode left; show the one of ``mode`` (or its default)."""
        if mode == self.mode:
            return
        self.layouts[self.mode] = self.window.saveState(LAYOUT_VERSION)
        self.mode = mode
        saved = self.layouts.get(mode)
        if saved is None or not self.window.restoreState(saved, LAYOUT_VERSION):
            self._default(mode)

    def _default(self, mode: int) -> None:
        for dock in self.labelling_docks:
            dock.setVisible(mode == 0)

    def save(self) -> None:
        """Write every mode's layout (the current one as it is now) to the settings."""
        self.layouts[self.mode] = self.window.saveState(LAYOUT_VERSION)
        for mode, key in enumerate(LAYOUT_KEYS):
            if mode in self.layouts:
                self.settings.setValue(key, self.layouts[mode])
