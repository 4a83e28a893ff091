"""The Train panel in the whole window, as a first hour on a laptop goes: it fits
1280×800 and 1024×700 before and during a run, starts in a Quick view that edits the
same configuration as the full one, forgets the previous project's curves and task,
counts epochs one way everywhere and asks before training without a split.

Runs are tiny: the demo project's 6 images of 128 px, a ResNet-18 without pretrained
weights on 32 px inputs (64 px for batches of one image) with 3 of its stages frozen.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from PySide6.QtCore import QPoint, QSize, Qt
from PySide6.QtWidgets import QMessageBox, QPushButton, QRadioButton, QTabBar

sys.path.insert(0, str(Path(__file__).parent))
from layout_support import controls_out_of_reach, narrowest  # noqa: E402

sys.path.pop(0)

TIMEOUT_MS = 120_000
LABEL_KEY = Qt.Key.Key_F2


@pytest.fixture(autouse=True)
def _closing_stops_a_run(monkeypatch):
    """A test that fails during a run leaves it running; pytest-qt then closes the window,
    which asks "Stop it and close?": answer yes instead of waiting forever."""
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Yes)


def tiny_spec(epochs: int = 3, batch_size: int = 2, input_size: int = 32):
    from tlstudio.ml.runner import RunSpec
    from tlstudio.ml.trainer import TrainConfig

    return RunSpec(task="classify", backbone="resnet18", weights="none", input_size=input_size,
                   train=TrainConfig(epochs=epochs, batch_size=batch_size, freeze=3))  # fmt: skip


def open_train(qtbot, window):
    """F3, then wait until the configuration is built and has read the project."""
    qtbot.keyClick(window, Qt.Key.Key_F3)
    assert window.modes.currentIndex() == 1  # the Train page
    config = window.train_panel.config
    config.wait_ready()
    qtbot.waitUntil(config.has_facts, timeout=20_000)
    return window.train_panel


def click(qtbot, widget) -> None:
    assert widget.isEnabled() and widget.isVisible(), widget
    if isinstance(widget, QRadioButton):  # on its circle: the row is wider than its text
        pos = QPoint(8, widget.height() // 2)
        qtbot.mouseClick(widget, Qt.MouseButton.LeftButton, pos=pos)
    else:
        qtbot.mouseClick(widget, Qt.MouseButton.LeftButton)


def click_tab(qtbot, tabs, widget) -> None:
    bar: QTabBar = tabs.tabBar()
    rect = bar.tabRect(tabs.indexOf(widget))
    qtbot.mouseClick(bar, Qt.MouseButton.LeftButton, pos=rect.center())
    assert tabs.currentWidget() is widget


def show_settings(qtbot, dock) -> None:
    """Click the Settings tab (on a narrow panel the configuration is a tab)."""
    if dock.tabs.indexOf(dock.config) >= 0:
        click_tab(qtbot, dock.tabs, dock.config)


def start_with_train_button(qtbot, dock, spec) -> None:
    dock.config.set_spec(spec)
    button = dock.config.train_button
    qtbot.waitUntil(button.isEnabled, timeout=30_000)
    show_settings(qtbot, dock)
    with qtbot.waitSignal(dock.controller.started, timeout=5000):
        click(qtbot, button)


def pause(qtbot, dock) -> None:
    with qtbot.waitSignal(dock.controller.pause_changed, timeout=30_000,
                          check_params_cb=lambda paused: paused is True):  # fmt: skip
        click(qtbot, dock.monitor.pause_button)


def resume(qtbot, dock) -> None:
    with qtbot.waitSignal(dock.controller.pause_changed, timeout=30_000,
                          check_params_cb=lambda paused: paused is False):  # fmt: skip
        click(qtbot, dock.monitor.pause_button)


# ------------------------------------------------------------------------------ item 2


@pytest.mark.parametrize("size", [(1280, 800), (1024, 700)])
def test_train_panel_fits_a_laptop_before_and_during_a_run(qtbot, main_window, size):
    window = main_window
    dock = open_train(qtbot, window)
    config, monitor = dock.config, dock.monitor
    window.resize(*size)
    qtbot.waitUntil(lambda: window.size() == QSize(*size), timeout=2000)
    sideways_ok = size[0] < 1280  # at 1024×700 sideways scrolling is allowed, not at 1280

    def check(where: str) -> None:
        qtbot.wait(30)  # layouts settle
        assert window.size() == QSize(*size), f"{where}: the window grew to {window.size()}"
        assert controls_out_of_reach(window, horizontal_scroll_ok=sideways_ok) == [], where

    def visit_everything(when: str) -> None:
        for page in [dock.tabs.widget(i) for i in range(dock.tabs.count())]:
            click_tab(qtbot, dock.tabs, page)
            check(f"{when}, {dock.tabs.tabText(dock.tabs.indexOf(page))} tab")
        if dock.tabs.indexOf(config) >= 0:  # the settings are a tab (narrow panel)
            click_tab(qtbot, dock.tabs, config)
        if config.is_quick_view():
            check(f"{when}, Quick view")
            click(qtbot, config.view_button)
        assert not config.is_quick_view()
        check(f"{when}, all settings")
        if not config.advanced_button.isChecked():
            config.full_scroll.ensureWidgetVisible(config.advanced_button)
            click(qtbot, config.advanced_button)
        check(f"{when}, all settings with the advanced options open")
        click(qtbot, config.view_button)
        assert config.is_quick_view()
        check(f"{when}, back in the Quick view")

    check("Train mode")
    visit_everything("before a run")
    if size == (1280, 800):  # Label mode fits too: switching modes never resizes
        qtbot.keyClick(window, LABEL_KEY)
        assert window.modes.currentIndex() == 0
        check("Label mode")
        qtbot.keyClick(window, Qt.Key.Key_F3)
        check("Label, then Train again")

    start_with_train_button(qtbot, dock, tiny_spec(epochs=200))
    with qtbot.waitSignal(dock.controller.batch_ended, timeout=TIMEOUT_MS):
        pass
    pause(qtbot, dock)  # still running, held still while we look
    assert dock.controller.is_running and not config.train_button.isEnabled()
    visit_everything("during a run")
    click_tab(qtbot, dock.tabs, monitor)
    check("during a run, Monitor")
    plots = monitor.plot_widgets()
    assert len(plots) == 3 and all(p.isVisible() for p in plots)
    if size == (1280, 800):
        assert narrowest(plots) >= 300, [p.width() for p in plots]
    with qtbot.waitSignal(dock.controller.finished, timeout=TIMEOUT_MS):
        click(qtbot, monitor.cancel_button)
    check("after the run")


# ------------------------------------------------------------------------------ item 18


def test_quick_view_is_the_default_and_edits_the_same_configuration(qtbot, main_window):
    from tlstudio.ml.transforms import AugmentConfig

    dock = open_train(qtbot, main_window)
    config = dock.config
    assert config.is_quick_view() and config.quick_view.isVisible()  # a new project
    quick = config.quick_view
    assert quick.radios["feature_extraction"].isChecked()
    assert config.task_combo.isVisible() and config.train_button.isVisible()
    estimate = quick.estimate_label.text()
    assert "estimate" in estimate and "30 epochs" in estimate and "3 training" in estimate
    assert "6 images for classification: 3 training, 3 validation" in quick.data_label.text()

    # an answer picks a strategy: top stages train, with augmentation, 20 epochs
    click(qtbot, quick.radios["fine_tune_top"])
    assert config.preset() == "fine_tune_top"
    spec = config.spec()
    n = config.freeze_strip.num_stages()
    assert spec.train.freeze == n - 2 and spec.augment == AugmentConfig()
    assert "20 epochs" in quick.estimate_label.text()

    # the full view shows what the Quick view chose; edit there
    click(qtbot, config.view_button)
    assert not config.is_quick_view() and config.preset_combo.isVisible()
    assert config.preset_combo.currentData() == "fine_tune_top"
    assert config.freeze_strip.depth() == n - 2
    config.freeze_strip.slider.setFocus()
    qtbot.keyClick(config.freeze_strip.slider, Qt.Key.Key_Home)  # full fine-tuning by hand
    config.full_scroll.ensureWidgetVisible(config.advanced_button)
    click(qtbot, config.advanced_button)
    epochs = config.options_editor.widget("epochs")
    epochs.setFocus()
    qtbot.keyClick(epochs, Qt.Key.Key_Up)
    rotate = config.augment_editor.form.widget("rotate_deg")
    rotate.setFocus()
    qtbot.keyClick(rotate, Qt.Key.Key_Up)
    edited = config.spec()
    assert (edited.train.freeze, edited.train.epochs) == (0, 21)
    assert edited.augment.rotate_deg == 15 and config.preset() == "custom"

    # switching views, back and forth, never loses a setting
    for _ in range(2):
        click(qtbot, config.view_button)
        assert config.is_quick_view()
        assert config.spec() == edited
        assert quick.chosen() is None and quick.custom_note.isVisible()
        click(qtbot, config.view_button)
        assert config.spec() == edited

    # an answer in the Quick view replaces the hand-made settings, in the full view too
    click(qtbot, config.view_button)
    click(qtbot, quick.radios["feature_extraction"])
    spec = config.spec()
    assert (spec.train.freeze, spec.train.epochs, spec.augment) == ("all", 30, None)
    click(qtbot, config.view_button)
    assert config.preset_combo.currentData() == "feature_extraction"
    assert config.freeze_strip.depth() == n and not config.augment_editor.switch.isChecked()
    assert config.spec() == spec


def test_quick_view_says_why_a_task_cannot_train(qtbot, main_window, tmp_path, make_images):
    from tlstudio.core.annotations import Box
    from tlstudio.core.project import Project

    root = tmp_path / "boxes_only"
    with Project.create(root) as project:
        project.add_images(make_images(root, 4, (32, 32)))
        spot = project.add_class("spot")
        project.add_box(project.image_ids()[0], Box(spot.id, 2, 2, 20, 20))
    assert main_window.open_project(root)
    dock = open_train(qtbot, main_window)
    config = dock.config
    qtbot.waitUntil(lambda: config.task() == "detect", timeout=10_000)  # what it has labels for
    assert config.is_quick_view()
    model = config.task_combo.model()
    classify = model.item(config.task_combo.findData("classify"))
    assert not classify.isEnabled() and "no class tags labelled" in classify.text()
    assert "no class tags labelled" in classify.toolTip()


# ------------------------------------------------------------------------------ item 5


def test_another_project_starts_with_an_empty_monitor_and_its_own_task(
    qtbot, main_window, tmp_path
):
    from tlstudio.core.demo import create_demo_project

    dock = open_train(qtbot, main_window)
    config, monitor = dock.config, dock.monitor
    start_with_train_button(qtbot, dock, tiny_spec(epochs=2))
    with qtbot.waitSignal(dock.controller.finished, timeout=TIMEOUT_MS):
        pass
    monitor.redraw()
    assert monitor.epoch_x == [1, 2] and len(monitor.curves["train_epoch"].xData) == 2
    show_settings(qtbot, dock)
    config.task_combo.setFocus()
    qtbot.keyClick(config.task_combo, Qt.Key.Key_End)  # the user picks the autoencoder
    assert config.task() == "autoencode"

    other = tmp_path / "other"
    create_demo_project(other, n_images=4, size=64).close()
    assert main_window.open_project(other)
    qtbot.waitUntil(config.has_facts, timeout=20_000)  # the new project's, read afresh
    assert config.task() == "classify"  # the default for the new project's labels
    if dock.tabs.indexOf(monitor) >= 0:
        click_tab(qtbot, dock.tabs, monitor)
    monitor.redraw()
    assert monitor.epoch_x == [] and monitor.batch_x == []
    for curve in monitor.curves.values():
        assert curve.xData is None or len(curve.xData) == 0
    assert monitor.epoch_markers == []
    assert monitor.progress.text() == "No run yet"
    assert "epoch" not in monitor.status_label.text()


# ------------------------------------------------------------------------------ item 12


def test_a_cancelled_run_counts_epochs_one_way_in_bar_text_and_report(qtbot, main_window, tmp_path):
    from tlstudio.core.runs import RunStore
    from tlstudio.ml.report import write_report

    dock = open_train(qtbot, main_window)
    monitor = dock.monitor
    epochs = []
    dock.controller.epoch_ended.connect(epochs.append)
    start_with_train_button(qtbot, dock, tiny_spec(epochs=20, batch_size=1, input_size=64))
    qtbot.waitUntil(lambda: len(epochs) >= 2, timeout=TIMEOUT_MS)
    pause(qtbot, dock)
    for _ in range(20):  # hold it in the middle of an epoch, not between two
        batch = monitor.last_batch
        if batch.step < batch.steps_per_epoch - 1:
            break
        resume(qtbot, dock)
        pause(qtbot, dock)
    assert monitor.last_batch.step < monitor.last_batch.steps_per_epoch - 1
    with qtbot.waitSignal(dock.controller.finished, timeout=TIMEOUT_MS) as blocker:
        click(qtbot, monitor.cancel_button)
    run_id = blocker.args[0]
    stored = RunStore(main_window.app_state.project).epochs(run_id)

    status = monitor.status_label.text()
    bar = monitor.progress.text()
    in_text = int(re.search(r"Cancelled after (\d+) epoch", status).group(1))
    in_bar = int(re.search(r"(\d+)/20", bar).group(1))
    assert in_bar == in_text == len(stored) == len(epochs), (bar, status)
    best = int(re.search(r"at epoch (\d+)", status).group(1))
    assert 1 <= best <= in_text

    report = write_report(main_window.app_state.project, run_id, tmp_path / "r.html",
                          samples=1, heatmaps=False)  # fmt: skip
    assert f"marks the best epoch ({best})" in report.read_text(encoding="utf-8")


# ------------------------------------------------------------------------------ item 13


def _split_question(qtbot, config) -> QMessageBox:
    """The question Train asks about the split (fails when none is asked)."""

    def asked() -> bool:
        box = getattr(config, "split_question", None)
        return box is not None and box.isVisible()

    qtbot.waitUntil(asked, timeout=5000)
    return config.split_question


def test_training_without_a_split_offers_to_make_one(qtbot, main_window):
    from tlstudio.core.commands import SetSplits

    state = main_window.app_state
    project = state.project
    state.push(SetSplits(dict.fromkeys(project.image_ids()), "no splits"))
    dock = open_train(qtbot, main_window)
    config = dock.config
    config.set_spec(tiny_spec(epochs=3))
    qtbot.waitUntil(config.train_button.isEnabled, timeout=30_000)
    with qtbot.assertNotEmitted(dock.controller.started, wait=200):
        click(qtbot, config.train_button)
        box = _split_question(qtbot, config)
    assert "No image is assigned to the training or validation split" in box.text()
    assert "70 % training, 15 % validation and 15 % test" in box.text()
    with qtbot.waitSignal(dock.controller.started, timeout=5000):
        click(qtbot, box.findChild(QPushButton, "makeSplitButton"))
    splits = {s: len(project.images_in_split(s)) for s in ("train", "val", "test")}
    assert splits["train"] and splits["val"] and sum(splits.values()) == 6
    note = dock.monitor.note_label
    assert note.isVisible()
    assert note.text() == (
        f"Split made before this run: {splits['train']} training, {splits['val']} validation, "
        f"{splits['test']} test images (Edit ▸ Undo takes it back)."
    )
    assert dock.shutdown(60_000)
    undo = main_window.action_table["undo"]
    assert undo.text() == "&Undo Split for training"
    undo.trigger()  # Edit ▸ Undo: one step
    assert all(r.split is None for r in project.images())


def test_training_without_validation_images_warns_first(qtbot, main_window):
    from tlstudio.core.commands import SetSplits

    state = main_window.app_state
    project = state.project
    state.push(SetSplits(dict.fromkeys(project.image_ids(), "train"), "all train"))
    dock = open_train(qtbot, main_window)
    config = dock.config
    config.set_spec(tiny_spec(epochs=3))
    qtbot.waitUntil(config.train_button.isEnabled, timeout=30_000)
    click(qtbot, config.train_button)
    box = _split_question(qtbot, config)
    assert "none of them is in the validation split" in box.text()
    assert not dock.controller.is_running
    with qtbot.waitSignal(dock.controller.fit_started, timeout=TIMEOUT_MS):
        click(qtbot, box.findChild(QPushButton, "trainAnywayButton"))
    assert "No validation images for classification" in dock.monitor.note_label.text()
    assert "6 training images, no validation images" in dock.monitor.status_label.text()
    assert all(r.split == "train" for r in project.images())  # nothing was changed
    assert dock.shutdown(60_000)

    # Cancel starts nothing
    qtbot.waitUntil(lambda: not dock.controller.is_running, timeout=10_000)
    show_settings(qtbot, dock)
    qtbot.waitUntil(config.train_button.isEnabled, timeout=10_000)
    with qtbot.assertNotEmitted(dock.controller.started, wait=200):
        click(qtbot, config.train_button)
        box = _split_question(qtbot, config)
        box.button(QMessageBox.StandardButton.Cancel).click()


# ------------------------------------------------------------------------------ issue 11 §10


def test_a_run_says_which_missing_image_files_it_left_out(qtbot, main_window):
    """An image file deleted outside the app: the run trains without it and the monitor
    names the file while the run goes (not only the CLI and the run's record)."""
    project = main_window.app_state.project
    train_image = next(r for r in project.images() if r.split == "train")
    gone = project.root / train_image.path
    gone.unlink()
    dock = open_train(qtbot, main_window)
    with qtbot.waitSignal(dock.controller.finished, timeout=TIMEOUT_MS):
        start_with_train_button(qtbot, dock, tiny_spec(epochs=1))
    note = dock.monitor.note_label
    assert note.isVisible()
    assert "1 image file is missing and left out of this run" in note.text()
    assert train_image.path in note.text()
