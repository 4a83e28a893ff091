"""Wheel over an unfocused input scrolls the page instead of changing a setting.

Spin boxes, combo boxes and sliders in scrollable docks and panels change their value
when the mouse wheel passes over them, so a user scrolling the panel silently edits
settings. :func:`guard_wheel` gives such inputs ``Qt.StrongFocus`` (the wheel no longer
focuses them) and an event filter: while the input has no focus, the wheel event goes to
the nearest enclosing scroll area's scroll bar (or is dropped when there is none).
"""

from __future__ import annotations

from PySide6.QtCore import QCoreApplication, QEvent, QObject, Qt
from PySide6.QtWidgets import (
    QAbstractScrollArea,
    QAbstractSlider,
    QAbstractSpinBox,
    QComboBox,
    QScrollBar,
    QWidget,
)

GUARDED_TYPES: tuple[type[QWidget], ...] = (QAbstractSpinBox, QComboBox, QAbstractSlider)


class WheelGuard(QObject):
    """Event filter: wheel events over an unfocused input scroll the enclosing area."""

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        if event.type() != QEvent.Type.Wheel or not isinstance(obj, QWidget) or obj.hasFocus():
            return False
        bar = _enclosing_scroll_bar(obj)
        if bar is not None:
            QCoreApplication.sendEvent(bar, event)
        return True  # never reaches the input itself


def _enclosing_scroll_bar(widget: QWidget) -> QScrollBar | None:
    parent = widget.parentWidget()
    while parent is not None:
        if isinstance(parent, QAbstractScrollArea) and not isinstance(parent, QAbstractSpinBox):
            bar = parent.verticalScrollBar()
            if bar is not None and bar.maximum() > bar.minimum():
                return bar
        parent = parent.parentWidget()
    return None


def guard_wheel(root: QWidget, *extra: QWidget) -> WheelGuard:
    """Guard every spin box, combo box and slider under ``root`` (and ``extra`` widgets
    that are not children of it). Call again after adding inputs; guarding twice is
    harmless. Returns the filter (owned by ``root``)."""
    guard = root.findChild(WheelGuard, "wheelGuard", Qt.FindChildOption.FindDirectChildrenOnly)
    if guard is None:
        guard = WheelGuard(root)
        guard.setObjectName("wheelGuard")
    inputs = [w for t in GUARDED_TYPES for w in root.findChildren(t)]
    inputs += [w for w in extra if isinstance(w, GUARDED_TYPES)]
    for w in inputs:
        if isinstance(w, QScrollBar):
            continue  # a scroll bar is the page's own wheel target
        w.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        w.removeEventFilter(guard)
        w.installEventFilter(guard)
    return guard
