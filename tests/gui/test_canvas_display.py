"""Window/level presets on real DICOM files, in the whole MainWindow: CT windows in HU
on Alt+1…5, the DICOM header's windows (multi-valued, named), default and full range,
the Display panel's preset combo, and the window each image keeps across sessions.

The DICOM files are pydicom's own test files (installed with pydicom): CT_small.dcm
(CT, rescaled to HU, no header window) and MR_small.dcm (MR, one header window)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from PySide6.QtCore import QEvent, QPoint, QPointF, Qt
from PySide6.QtGui import QAction, QMouseEvent
from PySide6.QtWidgets import QApplication

from tlstudio.core.project import Project
from tlstudio.gui.canvas.window_level import CT_PRESET_ITEMS

ALT = Qt.KeyboardModifier.AltModifier
R = Qt.MouseButton.RightButton


@pytest.fixture
def demo_dir(tmp_path: Path, write_image) -> Path:
    """(Overrides conftest's: ``main_window`` opens this project.) A CT (HU, no header
    window), the same CT with two named header windows, an MR (one header window) and
    an 8-bit PNG, in that order."""
    src = tmp_path / "src"
    src.mkdir()
    ct = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ct.save_as(src / "a_ct.dcm")
    ct.WindowCenter = [40, -600]
    ct.WindowWidth = [80, 1500]
    ct.WindowCenterWidthExplanation = ["BRAIN", "LUNG"]
    ct.save_as(src / "b_ct_windows.dcm")
    pydicom.dcmread(get_testdata_file("MR_small.dcm")).save_as(src / "c_mr.dcm")
    write_image(src / "d_photo.png", np.full((20, 30, 3), 90, np.uint8))
    root = tmp_path / "p"
    with Project.create(root) as p:
        report = p.add_images(sorted(src.iterdir()))
        assert len(report.added) == 4, report.failed
    return root


def _show(qtbot, window, index: int):
    state, canvas = window.app_state, window.canvas
    state.set_image(state.project.image_ids()[index])
    qtbot.waitUntil(lambda: canvas.image_ready, timeout=5000)
    return canvas


def _menu_actions(window) -> dict[str, QAction]:
    return {a.text(): a for a in window.display.preset_menu.actions() if a.text()}


def _active(qtbot, window):
    qtbot.waitUntil(window.isActiveWindow)  # window shortcuts need an active window
    return window


def test_ct_presets_on_alt_keys_and_in_the_combo(qtbot, main_window):
    window = _active(qtbot, main_window)
    canvas = _show(qtbot, window, 0)
    combo = window.display.preset
    assert canvas.window_level.in_hu()
    canvas.setFocus()
    expected = {"Alt+1": (40, 80), "Alt+2": (40, 400), "Alt+3": (-600, 1500),
                "Alt+4": (400, 1800), "Alt+5": (60, 150)}  # fmt: skip
    for n, key in enumerate(expected, start=1):
        qtbot.keyClick(canvas, getattr(Qt.Key, f"Key_{n}"), ALT)
        assert canvas.display_window() == expected[key]
        assert combo.currentText() == CT_PRESET_ITEMS[n - 1].label
    assert combo.currentText() == "Liver (60 / 150)"
    # the display really is the HU array through that window: below 60 - 150/2 HU is black
    hu, shown = canvas.image_data.array, canvas.display_pixmap().toImage()
    assert hu[0, 0] < -15 and shown.pixelColor(0, 0).red() == 0
    y, x = np.unravel_index(np.argmax(hu), hu.shape)
    assert hu[y, x] > 135 and shown.pixelColor(int(x), int(y)).red() == 255
    # Alt+9 full range, Alt+0 the default; the digits alone still tag the image
    qtbot.keyClick(canvas, Qt.Key.Key_9, ALT)
    lo, hi = canvas.window_level.data_range()
    assert canvas.display_window() == ((lo + hi) / 2, hi - lo)
    qtbot.keyClick(canvas, Qt.Key.Key_0, ALT)
    assert canvas.display_window() == canvas.window_level.default_window()

    # the combo: keyboard down from the default entry picks "Full range"
    combo.setFocus()
    qtbot.keyClick(combo, Qt.Key.Key_Up)  # the entry above the default: the last CT one
    assert canvas.display_window() == (60, 150)
    labels = [combo.itemText(i) for i in range(combo.count())]
    assert labels[1:] == [p.label for p in CT_PRESET_ITEMS] + ["Default window", "Full range"]


def test_header_windows_are_listed_and_ct_presets_only_apply_to_hu(qtbot, main_window):
    window = _active(qtbot, main_window)
    canvas = _show(qtbot, window, 1)  # CT with two named header windows
    combo = window.display.preset
    labels = [combo.itemText(i) for i in range(combo.count())]
    assert "BRAIN (40 / 80)" in labels and "LUNG (-600 / 1500)" in labels
    assert canvas.window_level.default_window() == (40, 80)  # the header's first window
    canvas.setFocus()
    qtbot.keyClick(canvas, Qt.Key.Key_7, ALT)  # the header's second window
    assert canvas.display_window() == (-600, 1500)
    assert combo.currentText() in ("Lung (-600 / 1500)", "LUNG (-600 / 1500)")

    canvas = _show(qtbot, window, 2)  # MR: values are not HU
    assert not canvas.window_level.in_hu()
    labels = [combo.itemText(i) for i in range(1, combo.count())]
    assert labels == ["Header window 1 (600 / 1600)", "Default window", "Full range"]
    actions = _menu_actions(window)
    assert not actions["Lung (-600 / 1500)"].isEnabled()  # listed, but not for this image
    assert actions["Header window 1 (600 / 1600)"].isEnabled()
    before = canvas.display_window()
    canvas.setFocus()
    qtbot.keyClick(canvas, Qt.Key.Key_3, ALT)
    assert canvas.display_window() == before

    canvas = _show(qtbot, window, 3)  # 8-bit photo: nothing to window
    assert not combo.isEnabled() and not any(
        a.isEnabled() for a in window.display.preset_menu.actions() if not a.isSeparator()
    )


def test_each_image_keeps_its_window_across_sessions(qtbot, main_window, demo_dir):
    window = _active(qtbot, main_window)
    canvas = _show(qtbot, window, 0)
    canvas.setFocus()
    qtbot.keyClick(canvas, Qt.Key.Key_3, ALT)  # lung
    ct, mr = window.app_state.project.image_ids()[:3:2]
    canvas = _show(qtbot, window, 2)
    window.display.width_.setValue(900.0)  # typed into the panel
    mr_window = canvas.display_window()
    assert mr_window[1] == 900.0
    # a right-button drag on the canvas ends on a window the image keeps, too
    canvas = _show(qtbot, window, 1)
    start, end = canvas.mapFromScene(60, 60), canvas.mapFromScene(60, 60) + QPoint(40, 0)
    qtbot.mousePress(canvas.viewport(), R, pos=start)
    move = QMouseEvent(QEvent.Type.MouseMove, QPointF(end), QPointF(end), Qt.MouseButton.NoButton,
                       R, Qt.KeyboardModifier.NoModifier)  # fmt: skip
    QApplication.sendEvent(canvas.viewport(), move)
    qtbot.mouseRelease(canvas.viewport(), R, pos=end)
    dragged = canvas.display_window()
    assert dragged != canvas.window_level.default_window()
    window.close()  # the project is closed

    with Project.open(demo_dir) as p:
        ids = p.image_ids()
        assert p.display_window(ct) == (-600.0, 1500.0)
        assert p.display_window(mr) == mr_window
        assert p.display_window(ids[1]) == dragged

    window.show()  # a new session: the project opened again
    assert window.open_project(demo_dir)
    canvas = _show(qtbot, _active(qtbot, window), 0)
    assert canvas.display_window() == (-600, 1500)
    assert window.display.preset.currentText() == "Lung (-600 / 1500)"
    canvas.setFocus()
    qtbot.keyClick(canvas, Qt.Key.Key_R)  # back to the default: forgotten
    assert window.app_state.project.display_window(ct) is None
    canvas = _show(qtbot, window, 2)
    assert canvas.display_window() == mr_window


def test_ct_screenshot_script_shows_the_presets(qtbot, tmp_path, screenshot_script):
    import cv2

    (path,) = screenshot_script("make_screenshots_ct").make_screenshots(tmp_path)
    img = cv2.imread(str(path))
    assert img is not None and img.shape[0] == 800 and img.shape[1] >= 1280 and img.std() > 5
