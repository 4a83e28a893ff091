"""Choosing in a combo box with the keyboard, as a person would (Home, then Down)."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QComboBox


def choose_by_data(qtbot: Any, combo: QComboBox, data: object) -> None:
    """Focus ``combo`` and press Home, then Down until the current item holds ``data``;
    fails when Down stops moving first (the item is missing or disabled)."""
    combo.setFocus()
    qtbot.keyClick(combo, Qt.Key.Key_Home)
    while combo.currentData() != data:
        before = combo.currentIndex()
        qtbot.keyClick(combo, Qt.Key.Key_Down)
        assert combo.currentIndex() != before, f"{data!r} cannot be reached (disabled?)"
