"""Layout checks for "does the window fit a laptop": which controls a user cannot reach.

A control is reachable when it lies inside the window, or inside a scroll area whose
viewport lies inside the window (the user scrolls to it), and when it is not squeezed
below its own minimum size hint (a button showing "Tra" for "Train"). Rectangles are in
window coordinates (pixels). Use with a window resized to the size under test.
"""

from __future__ import annotations

from collections.abc import Iterator

from PySide6.QtCore import QRect
from PySide6.QtWidgets import (
    QAbstractButton,
    QAbstractItemView,
    QAbstractScrollArea,
    QAbstractSlider,
    QAbstractSpinBox,
    QComboBox,
    QLineEdit,
    QScrollArea,
    QScrollBar,
    QTabBar,
    QWidget,
)

CONTROL_TYPES: tuple[type[QWidget], ...] = (
    QAbstractButton,
    QAbstractSpinBox,
    QComboBox,
    QLineEdit,
    QAbstractSlider,
    QAbstractItemView,
)
SLACK_PX = 2  # rounding of fractional layouts


def visible_controls(window: QWidget) -> Iterator[QWidget]:
    """Controls the user can see right now (visible, with every parent visible)."""
    for w in window.findChildren(QWidget):
        if not isinstance(w, CONTROL_TYPES) or isinstance(w, QScrollBar):
            continue
        if isinstance(w.parentWidget(), (QAbstractSpinBox, QComboBox, QTabBar)):
            continue  # a spin box's arrows, a combo's line edit, a tab bar's scroll buttons
        if w.objectName().startswith("qt_"):
            continue  # Qt's own internals (a table's corner button)
        if w.isVisibleTo(window) and w.window() is window:
            yield w


def _describe(w: QWidget) -> str:
    text = getattr(w, "text", None)
    label = text() if callable(text) else ""
    name = w.objectName() or type(w).__name__
    return f"{name}{f' {label!r}' if label else ''}"


def _rect_in_window(w: QWidget, window: QWidget) -> QRect:
    top_left = w.mapTo(window, w.rect().topLeft())
    return QRect(top_left, w.size())


def _enclosing_scroll_area(w: QWidget) -> QScrollArea | None:
    parent = w.parentWidget()
    while parent is not None:
        if isinstance(parent, QScrollArea) and parent.widget() is not None:
            return parent
        parent = parent.parentWidget()
    return None


def _inside(inner: QRect, outer: QRect) -> bool:
    return outer.adjusted(-SLACK_PX, -SLACK_PX, SLACK_PX, SLACK_PX).contains(inner)


def controls_out_of_reach(window: QWidget, *, horizontal_scroll_ok: bool = False) -> list[str]:
    """Descriptions of the visible controls a user cannot reach or read in ``window``.

    ``horizontal_scroll_ok``: whether reaching a control by scrolling sideways counts
    (allowed at 1024×700, not at 1280×800)."""
    problems: list[str] = []
    frame = window.rect()
    for w in visible_controls(window):
        area = _enclosing_scroll_area(w)
        if area is None:
            if not _inside(_rect_in_window(w, window), frame):
                problems.append(f"{_describe(w)} lies outside the window")
        else:
            viewport = _rect_in_window(area.viewport(), window)
            if not _inside(viewport, frame):
                problems.append(f"{_describe(w)}: its scroll area lies outside the window")
            content = area.widget()
            if not _inside(_rect_in_window(w, content), content.rect()):
                problems.append(f"{_describe(w)} lies outside its scroll area's content")
            if not horizontal_scroll_ok and content.width() > area.viewport().width() + SLACK_PX:
                problems.append(f"{_describe(w)} needs horizontal scrolling")
        hint = w.minimumSizeHint()
        if isinstance(w, QAbstractButton) and w.width() + SLACK_PX < hint.width():
            problems.append(f"{_describe(w)} is squeezed to {w.width()} px (needs {hint.width()})")
    return sorted(set(problems))


def narrowest(widgets: list[QWidget]) -> int:
    """The smallest width in pixels among ``widgets`` (for "charts at least 300 px")."""
    return min(w.width() for w in widgets)


def scroll_areas_needing_horizontal_scroll(window: QWidget) -> list[QAbstractScrollArea]:
    """Visible scroll areas whose content is wider than their viewport."""
    return [
        a
        for a in window.findChildren(QScrollArea)
        if a.isVisibleTo(window)
        and a.widget() is not None
        and a.widget().width() > a.viewport().width() + SLACK_PX
    ]
