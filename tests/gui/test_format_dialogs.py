"""The File menu's label dialogs offer exactly the formats of the format registry."""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QApplication, QComboBox, QDialog

from tlstudio.core.formats import LABEL_FORMATS, label_format


def _open_modal(qtbot, window, key: Qt.Key, modifiers: Qt.KeyboardModifier) -> dict:
    """Press the shortcut of a modal dialog; read its combo boxes and close it with Escape."""
    seen: dict = {}

    def read_and_close() -> None:
        dialog = QApplication.activeModalWidget()
        if not isinstance(dialog, QDialog):
            return  # no dialog came up: the asserts below say so
        combos = dialog.findChildren(QComboBox)
        seen["title"] = dialog.windowTitle()
        seen["combos"] = [
            [(c.itemText(i), c.itemData(i)) for i in range(c.count())] for c in combos
        ]
        seen["enabled"] = [c.isEnabled() for c in combos]
        qtbot.keyClick(dialog, Qt.Key.Key_Escape)

    QTimer.singleShot(0, read_and_close)
    qtbot.keyClick(window, key, modifiers)  # returns when the dialog's exec() does
    return seen


def test_export_dialog_offers_the_registered_formats_and_kinds(qtbot, main_window) -> None:
    seen = _open_modal(qtbot, main_window, Qt.Key.Key_E, Qt.KeyboardModifier.ControlModifier)
    assert seen.get("title") == "Export labels"
    formats, kinds, templates = seen["combos"]
    assert formats == [(f"{f.name} — {f.description}", f.name) for f in LABEL_FORMATS]
    assert [text for text, _ in kinds] == list(label_format("yolo").export_kinds)
    assert [text for text, _ in templates]  # the demo project's landmark template
    assert seen["enabled"][1] == bool(LABEL_FORMATS[0].export_kinds)  # the first is selected


def test_label_import_dialog_offers_detection_and_the_registered_formats(qtbot, main_window):
    seen = _open_modal(
        qtbot,
        main_window,
        Qt.Key.Key_O,
        Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier,
    )
    assert seen.get("title") == "Import labels"
    (formats,) = seen["combos"]
    assert formats[0] == ("Detect from the content", None)
    assert formats[1:] == [(f"{f.name} — {f.description}", f.name) for f in LABEL_FORMATS]
