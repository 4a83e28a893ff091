"""Edit → CPU threads… sets how many threads the window's model work uses (issue 12 §2)."""

from __future__ import annotations

import shutil

import pytest
from PySide6.QtCore import QSettings, Qt, QTimer
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QMenu

from tlstudio.gui.thread_setting import THREADS_KEY, ThreadsDialog
from tlstudio.runtime import threads

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture
def window(qtbot, trained_demo_dir, tmp_path, qsettings):
    from tlstudio.gui.app import create_application, create_main_window

    root = tmp_path / "demo"
    shutil.copytree(trained_demo_dir, root)
    create_application()
    window = create_main_window(root, qsettings)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    yield window
    window.predictions.shutdown()
    window.close()
    threads.clear()  # the setting made the process's budget: back to library use


def _click_menu_item(text: str) -> None:
    menu = QApplication.activePopupWidget()
    assert isinstance(menu, QMenu), "the Edit menu is open"
    action = next(a for a in menu.actions() if a.text().replace("&", "").startswith(text))
    QTest.mouseClick(menu, Qt.MouseButton.LeftButton, pos=menu.actionGeometry(action).center())


def _open_dialog(qtbot, window) -> ThreadsDialog:
    bar = window.menuBar()
    edit = next(a for a in bar.actions() if a.text() == "&Edit")
    before = window.threads_dialog
    QTimer.singleShot(300, lambda: _click_menu_item("CPU threads"))
    qtbot.mouseClick(bar, Qt.MouseButton.LeftButton, pos=bar.actionGeometry(edit).center())
    qtbot.waitUntil(lambda: window.threads_dialog is not before
                    and window.threads_dialog.isVisible())  # fmt: skip
    assert isinstance(window.threads_dialog, ThreadsDialog)
    return window.threads_dialog


def test_thread_setting_is_kept_and_predictions_run_with_it(qtbot, window, monkeypatch):
    import torch

    from tlstudio.ml import runner

    seen: list[int] = []
    real = runner.predict

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())  # in the prediction's own thread
        return real(*args, **kwargs)

    monkeypatch.setattr(runner, "predict", spy)
    dialog = _open_dialog(qtbot, window)
    assert dialog.spin.value() == 0 and dialog.spin.text().startswith("Automatic")
    dialog.spin.setFocus()
    qtbot.keyClick(dialog.spin, Qt.Key.Key_A, Qt.KeyboardModifier.ControlModifier)
    qtbot.keyClicks(dialog.spin, "3")
    qtbot.keyClick(dialog.spin, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: not dialog.isVisible())
    assert int(window.settings.value(THREADS_KEY)) == 3
    assert threads.configured() is not None and threads.configured().total == 3

    panel = window.predictions
    run_id = panel.run_combo.itemData(panel.run_combo.count() - 1)
    panel.run_combo.setCurrentIndex(panel.run_combo.findData(run_id))
    panel.target_combo.setCurrentIndex(panel.target_combo.findData("all"))
    with qtbot.waitSignal(panel.controller.finished, timeout=120_000):
        qtbot.mouseClick(panel.predict_button, Qt.MouseButton.LeftButton)
    assert panel.controller.last_error is None
    assert seen == [3]

    again = _open_dialog(qtbot, window)  # the dialog shows what is stored
    assert again.spin.value() == 3
    qtbot.keyClick(again.spin, Qt.Key.Key_Escape)


def test_the_setting_survives_a_restart(qtbot, tmp_path):
    settings = QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat)
    settings.setValue(THREADS_KEY, 2)
    from tlstudio.gui.thread_setting import apply_thread_setting

    try:
        budget = apply_thread_setting(settings)
        assert (budget.total, budget.source) == (2, "set by the user")
        settings.setValue(THREADS_KEY, "not a number")  # a hand-edited file: automatic
        assert apply_thread_setting(settings).total == threads.default_threads(gui=True)
    finally:
        threads.clear()


def test_a_changed_setting_holds_for_model_work_started_afterwards(qtbot, window):
    """Grad-CAM, the latent map and the anomaly ranking run torch in job threads of
    their own that apply no budget: they start with torch's current thread count."""
    import threading

    import torch

    assert torch.get_num_threads() == 1  # torch is loaded and runs 1 thread (fixture)
    dialog = _open_dialog(qtbot, window)
    dialog.spin.setFocus()
    qtbot.keyClick(dialog.spin, Qt.Key.Key_A, Qt.KeyboardModifier.ControlModifier)
    qtbot.keyClicks(dialog.spin, "3")
    qtbot.keyClick(dialog.spin, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: not dialog.isVisible())

    seen: list[int] = []
    job = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    job.start()
    job.join(timeout=60)
    assert not job.is_alive()
    assert seen == [3]
