"""The Inspect mode's host: run picker, lazily built views, opening an image from a view."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QWidget

from tlstudio.core.runs import RunStore
from tlstudio.gui.inspect.panel import InspectPanel


class _FakeView(QWidget):
    message = Signal(str)
    open_image = Signal(int)
    built = 0

    def __init__(self, app_state):
        super().__init__()
        type(self).built += 1
        self.runs_seen = []
        app_state.run_changed.connect(self.runs_seen.append)
        self.stopped = False

    def shutdown(self):
        self.stopped = True


def _runs(project, n=2):
    store = RunStore(project)
    ids = []
    for i in range(n):
        rid = store.start("classify", "resnet18", {"task": "classify"})
        store.update(rid, status="finished", checkpoint=f"runs/{rid}/model.pt",
                     metric_name="accuracy", best_metric=0.5 + i / 10)  # fmt: skip
        ids.append(rid)
    failed = store.start("detect", "resnet18", {})
    store.update(failed, status="failed", error="boom")
    return ids


def test_picker_lists_runs_with_a_model_newest_first_and_sets_the_run(qtbot, app_state):
    first, second = _runs(app_state.project)
    _FakeView.built = 0
    panel = InspectPanel(app_state, views=(("A", _FakeView), ("B", _FakeView)))
    qtbot.addWidget(panel)
    combo = panel.run_combo
    assert [combo.itemData(i) for i in range(combo.count())] == [second, first]
    assert combo.itemText(0).startswith(f"#{second} classify · resnet18 · accuracy 0.600")
    assert app_state.run_id == second
    assert _FakeView.built == 0  # views are built when first shown
    panel.show()
    qtbot.waitExposed(panel)
    assert _FakeView.built == 1
    combo.setCurrentIndex(1)
    assert app_state.run_id == first
    assert panel.views["A"].runs_seen == [first]
    panel.tabs.setCurrentIndex(1)
    assert _FakeView.built == 2 and panel.tabs.currentWidget() is panel.views["B"]
    panel.shutdown()
    assert all(v.stopped for v in panel.views.values())


def test_empty_project_says_how_to_get_a_run(qtbot, app_state):
    panel = InspectPanel(app_state, views=(("A", _FakeView),))
    qtbot.addWidget(panel)
    panel.show()
    assert panel.run_combo.count() == 0 and app_state.run_id is None
    assert panel.empty_label.isVisible() and "Train" in panel.empty_label.text()
    (rid,) = _runs(app_state.project, 1)
    qtbot.mouseClick(panel.refresh_button, Qt.MouseButton.LeftButton)
    assert app_state.run_id == rid and not panel.empty_label.isVisible()


def test_f4_opens_inspect_and_a_view_can_open_an_image_in_the_label_canvas(qtbot, main_window):
    qtbot.keyClick(main_window, Qt.Key.Key_F4)
    assert main_window.modes.currentIndex() == 2 and main_window.inspect_panel.isVisible()
    assert main_window.action_table["mode_inspect"].isChecked()
    assert not main_window.classes_dock.isVisible()
    image_id = main_window.app_state.project.image_ids()[2]
    main_window.inspect_panel.open_image.emit(image_id)
    assert (
        main_window.modes.currentIndex() == 0 and main_window.action_table["mode_label"].isChecked()
    )
    assert main_window.app_state.image_id == image_id
    assert main_window.classes_dock.isVisible()


def test_predict_on_the_images_selected_in_the_browser(qtbot, main_window):
    from tlstudio.ml import runner
    from tlstudio.ml.runner import RunSpec
    from tlstudio.ml.trainer import TrainConfig

    state = main_window.app_state
    spec = RunSpec(task="classify", backbone="resnet18", weights="none", input_size=32,
                   train=TrainConfig(epochs=1, batch_size=4, freeze=3))  # fmt: skip
    run_id = runner.train(state.project, spec).run_id
    state.set_run(run_id)  # as the Train tab does when a run finishes
    panel = main_window.predictions
    assert panel.run_combo.currentData() == run_id

    browser = main_window.browser
    view = browser.view
    ids = [browser.model.id_at(r) for r in (1, 3)]
    for row, modifier in ((1, Qt.KeyboardModifier.NoModifier),
                          (3, Qt.KeyboardModifier.ControlModifier)):  # fmt: skip
        rect = view.visualRect(browser.model.index(row, 0))
        qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, modifier, rect.center())
    assert sorted(browser.selected_ids()) == sorted(ids)

    panel.target_combo.setCurrentIndex(panel.target_combo.findData("selected"))
    with qtbot.waitSignal(panel.controller.finished, timeout=120_000):
        qtbot.mouseClick(panel.predict_button, Qt.MouseButton.LeftButton)
    predicted = [i for i, _score in RunStore(state.project).predicted_images(run_id)]
    assert sorted(predicted) == sorted(ids)
