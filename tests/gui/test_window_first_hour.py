"""The first hour on a laptop (issue 10), tried with mouse and keys: nothing leaks from the
previous project, New project proposes a fresh folder, 1–9 tag wherever the focus is,
the wheel never edits a setting it passes over, the status bar names the class a new
annotation gets, import reasons can be read whole, Explain never shows a stale heatmap
under a new name, and the template box shows the template in use."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PySide6.QtCore import QPoint, QPointF, QRect, Qt, QTimer
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import (
    QApplication,
    QDialogButtonBox,
    QFileDialog,
    QScrollArea,
    QWidget,
)

from tlstudio.core.project import Project
from tlstudio.core.runs import RunStore
from tlstudio.gui.app import create_main_window

LEFT = Qt.MouseButton.LeftButton


def _show(qtbot, root: Path, settings):
    window = create_main_window(root, settings)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    window.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is window)
    return window


def _click_tab(qtbot, tabs, title: str) -> QWidget:
    i = next(i for i in range(tabs.count()) if tabs.tabText(i) == title)
    bar = tabs.tabBar()
    qtbot.mouseClick(bar, LEFT, pos=bar.tabRect(i).center())
    return tabs.currentWidget()


def _wheel(widget: QWidget, notches: int = -3) -> None:
    """A mouse-wheel turn over the middle of ``widget`` (negative: towards the user)."""
    pos = QPointF(widget.rect().center())
    event = QWheelEvent(
        pos, QPointF(widget.mapToGlobal(pos.toPoint())), QPoint(0, 0), QPoint(0, 120 * notches),
        Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase,
        False,
    )  # fmt: skip
    QApplication.sendEvent(widget, event)


def _click_class(qtbot, window, name: str) -> None:
    lst = window.classes.list
    item = next(lst.item(i) for i in range(lst.count()) if lst.item(i).text().startswith(name))
    qtbot.mouseClick(lst.viewport(), LEFT, pos=lst.visualItemRect(item).center())


# -- 5: nothing project-specific survives opening another project ------------------------------


def _runs_finished_then_cancelled(root: Path) -> tuple[int, int]:
    """Two runs with a saved model: a finished one, then a newer cancelled one."""
    with Project.open(root) as project:
        store = RunStore(project)
        finished = store.start("classify", "resnet18", {"task": "classify"})
        store.update(finished, status="finished", checkpoint=f"runs/{finished}/model.pt",
                     metric_name="accuracy", best_metric=0.75)  # fmt: skip
        cancelled = store.start("classify", "resnet18", {"task": "classify"})
        store.update(cancelled, status="cancelled", checkpoint=f"runs/{cancelled}/model.pt")
    return finished, cancelled


@pytest.mark.usefixtures("torch_one_thread")
def test_another_project_shows_no_report_of_the_previous_one(
    qtbot, trained_demo_dir, demo_dir, qsettings, tmp_path, monkeypatch
):
    root = tmp_path / "trained"
    shutil.copytree(trained_demo_dir, root)
    window = _show(qtbot, root, qsettings)
    qtbot.keyClick(window, Qt.Key.Key_F4)
    export = _click_tab(qtbot, window.inspect_panel.tabs, "Export")
    report = tmp_path / "report.html"
    monkeypatch.setattr(
        QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(report), ""))
    )
    export.samples_spin.setValue(0)
    box = export.heatmaps_box
    qtbot.mouseClick(box, LEFT, pos=QPoint(8, box.height() // 2))
    with qtbot.waitSignal(export.report_finished, timeout=60_000):
        qtbot.mouseClick(export.report_button, LEFT)
    assert export.open_report_button.isEnabled() and str(report) in export.report_result.text()

    shutil.rmtree(root / "runs")  # nothing of the first project may show for the second
    other = tmp_path / "other"
    shutil.copytree(trained_demo_dir, other)
    assert window.project_actions.open_project(other)
    assert window.app_state.run_id is not None
    assert not export.open_report_button.isEnabled()
    assert export.report_result.text() == "" and export.export_result.text() == ""
    assert not export.show_folder_button.isVisible()
    window.close()


def test_another_project_preselects_its_newest_finished_run(qtbot, main_window, tmp_path):
    from tlstudio.core.demo import create_demo_project

    other = tmp_path / "other"
    create_demo_project(other, n_images=4, size=64).close()
    finished, cancelled = _runs_finished_then_cancelled(other)
    assert cancelled > finished
    assert main_window.project_actions.open_project(other)
    assert main_window.app_state.run_id == finished  # not the newer, cancelled one
    assert main_window.inspect_panel.run_combo.currentData() == finished
    assert main_window.predictions.run_combo.currentData() == finished


# -- 6: New project proposes a fresh folder next to the open one -------------------------------


def _accept_new_project_dialog(qtbot, seen: list[str]) -> QTimer:
    """Click OK in the New project dialog as soon as it shows (it runs its own loop)."""
    timer = QTimer()
    timer.setInterval(20)

    def accept() -> None:
        dialog = QApplication.activeModalWidget()
        if dialog is None:
            return
        timer.stop()
        seen.append(dialog.folder.text())
        ok = dialog.findChild(QDialogButtonBox).button(QDialogButtonBox.StandardButton.Ok)
        qtbot.mouseClick(ok, LEFT)

    timer.timeout.connect(accept)
    timer.start()
    return timer


def test_new_project_is_prefilled_with_a_fresh_folder_next_to_the_open_one(
    qtbot, main_window, demo_dir
):
    seen: list[str] = []
    for expected in ("new-project", "new-project-2"):
        main_window.activateWindow()
        qtbot.waitUntil(lambda: QApplication.activeWindow() is main_window)
        timer = _accept_new_project_dialog(qtbot, seen)
        qtbot.keyClick(main_window, Qt.Key.Key_N, Qt.KeyboardModifier.ControlModifier)
        timer.stop()
        project = main_window.app_state.project
        assert project.root == (demo_dir.parent / expected).resolve(), seen
        assert main_window.windowTitle() == f"{expected} — tlstudio"
        assert main_window.project_actions.last_error is None
    assert seen == [str(demo_dir.parent / "new-project"), str(demo_dir.parent / "new-project-2")]


# -- 7: 1–9 tag the image wherever the focus is in Label mode ----------------------------------


def test_digit_keys_tag_the_image_after_clicking_a_thumbnail(qtbot, main_window):
    state = main_window.app_state
    project = state.project
    classes = project.classes()
    view = main_window.browser.view
    qtbot.mouseClick(view.viewport(), LEFT, pos=view.visualRect(view.model().index(2, 0)).center())
    image = state.image_id
    assert image == main_window.browser.model.id_at(2) and view.hasFocus()
    for n in (2, 3, 1):
        qtbot.keyClick(view, getattr(Qt.Key, f"Key_{n}"))
        assert project.tags(image) == (classes[n - 1].id,)

    _click_class(qtbot, main_window, classes[0].name)  # the focus moves to the class list
    qtbot.keyClick(main_window.classes.list, Qt.Key.Key_3)
    assert project.tags(image) == (classes[2].id,)

    search = main_window.browser.search  # a text field keeps its digits
    qtbot.mouseClick(search, LEFT)
    qtbot.keyClick(search, Qt.Key.Key_2)
    assert search.text() == "2" and project.tags(image) == (classes[2].id,)


# -- 9: the wheel scrolls the docks and panels; it never edits a setting it passes over --------


def test_wheel_over_the_predictions_dock_scrolls_it_and_keeps_the_threshold(qtbot, main_window):
    window, panel = main_window, main_window.predictions
    window.resizeDocks([window.predictions_dock], [90], Qt.Orientation.Vertical)
    slider, bar = panel.threshold_slider, panel.findChild(QScrollArea).verticalScrollBar()
    qtbot.waitUntil(lambda: bar.maximum() > 0)
    assert not slider.hasFocus() and slider.value() == 50
    _wheel(slider)
    assert slider.value() == 50 and panel.score_threshold == 0.5
    assert bar.value() > 0  # the dock scrolled instead
    _wheel(panel.mode_combo)
    assert panel.mode_combo.currentIndex() == 0


def test_wheel_over_inspect_settings_changes_nothing(qtbot, main_window):
    qtbot.keyClick(main_window, Qt.Key.Key_F4)
    export = _click_tab(qtbot, main_window.inspect_panel.tabs, "Export")
    spin, split = export.samples_spin, export.split_combo
    _wheel(spin)
    _wheel(split, 1)
    assert spin.value() == 8 and split.currentData() == "val"


# -- 10: the status bar names the class a new annotation gets; landmarks follow the template ---


def test_new_landmark_sets_take_the_templates_class_and_the_status_bar_says_so(
    qtbot, demo_dir, qsettings
):
    from tlstudio.core.annotations import VISIBLE, LandmarkSet, Point
    from tlstudio.core.labelset import LandmarkTemplate

    with Project.open(demo_dir) as project:  # the eyes of every face are tagged "triangle"
        eyes = project.add_template(LandmarkTemplate("Eyes", ("left", "right")))
        triangle = project.class_by_name("triangle").id
        first = project.image_ids()[0]
        project.add_landmark_set(
            first, LandmarkSet(eyes.id, (Point(10, 10, VISIBLE), Point(30, 10, VISIBLE)), triangle)
        )
    window = _show(qtbot, demo_dir, qsettings)
    state, project, canvas = window.app_state, window.app_state.project, window.canvas
    label = window.new_class_label
    assert not label.isVisible()  # the select tool makes nothing

    _click_class(qtbot, window, "circle")
    canvas.setFocus()
    qtbot.keyClick(canvas, Qt.Key.Key_B)
    assert label.isVisible() and label.text() == "New box: class 'circle'"
    combo = window.classes.template
    combo.setCurrentIndex(combo.findData(eyes.id))
    assert combo.currentText().startswith("Eyes (2 points, 1 set)")
    qtbot.keyClick(canvas, Qt.Key.Key_L)
    assert label.text() == "New landmark set (Eyes): class 'triangle', as the template's other sets"

    canvas.wait_for_image()
    image = state.image_id
    before = len(project.landmark_sets(image))
    for x, y in ((20, 20), (40, 20)):
        qtbot.mouseClick(canvas.viewport(), LEFT, pos=canvas.mapFromScene(QPointF(x, y)))
    added = project.landmark_sets(image)[before:]
    assert [s.class_id for s in added] == [triangle]

    _click_class(qtbot, window, "square")  # picked while placing landmarks: it wins
    square = project.class_by_name("square").id
    assert label.text() == "New landmark set (Eyes): class 'square'"
    assert state.landmark_class_id == square
    qtbot.keyClick(canvas, Qt.Key.Key_M)
    assert label.text() == "New mask paint: class 'square'"


# -- 11: an import reason is shown whole, with a Copy button ------------------------------------


def test_import_reason_with_the_codec_hint_is_shown_whole_and_copied(qtbot, main_window, tmp_path):
    pytest.importorskip("pydicom")
    from pydicom.data import get_testdata_file

    source = get_testdata_file("MR_small_jpeg_ls_lossless.dcm")
    if source is None:
        pytest.skip("pydicom's JPEG-LS test file is not available")
    scan = tmp_path / "incoming" / "scan_with_a_rather_long_name_0001.dcm"
    scan.parent.mkdir()
    shutil.copy(source, scan)
    main_window.resize(1024, 700)
    with qtbot.waitSignal(main_window.importer.finished, timeout=20_000) as done:
        main_window.project_actions.import_paths([scan], mode="images")
    if not done.args[0].failed:
        pytest.skip("a JPEG-LS decoder is installed: the file imports")
    (dialog,) = [
        w for w in QApplication.topLevelWidgets()
        if w.windowTitle() == "Import finished" and w.isVisible()
    ]  # fmt: skip
    ((file, reason),) = dialog.rows()
    assert file == str(scan) and "pip install" in reason and reason.endswith(")")
    table = dialog.table
    item = table.item(0, 1)
    assert reason in item.toolTip()
    column = table.columnWidth(1) - 8  # the cell's text margins
    needed = table.fontMetrics().boundingRect(
        QRect(0, 0, column, 10_000), Qt.TextFlag.TextWordWrap, reason
    )
    assert table.rowHeight(0) >= needed.height() > table.fontMetrics().height()  # wrapped
    assert table.visualItemRect(item).right() <= table.viewport().width()
    QApplication.clipboard().clear()
    qtbot.mouseClick(dialog.copy_button, LEFT)
    assert f"{scan}\t{reason}" in QApplication.clipboard().text()
    assert dialog is main_window.import_result_dialog  # the window shows it, not the importer
    dialog.close()


# -- 14: Explain never shows a heatmap under another image's name -------------------------------


@pytest.mark.usefixtures("torch_one_thread")
def test_explain_clears_the_previous_heatmap_while_the_next_image_computes(
    qtbot, trained_demo_dir, qsettings, tmp_path
):
    root = tmp_path / "trained"
    shutil.copytree(trained_demo_dir, root)
    window = _show(qtbot, root, qsettings)
    qtbot.keyClick(window, Qt.Key.Key_F4)
    explain = _click_tab(qtbot, window.inspect_panel.tabs, "Explain")
    qtbot.waitUntil(lambda: explain.result is not None, timeout=60_000)
    first = explain.result["request"].image_id
    assert explain.score_label.text() and not explain.view.heat_item.pixmap().isNull()

    with qtbot.waitSignal(explain.explained, timeout=60_000):
        qtbot.mouseClick(explain.next_button, LEFT)
        second = window.app_state.image_id
        assert second != first
        name = window.app_state.project.image(second).path
        assert explain.image_label.text().startswith(name)
        # until the new result arrives: no heatmap, image or score of the previous image
        assert explain.result is None
        assert explain.view.heat_item.pixmap().isNull()
        assert explain.view.image_item.pixmap().isNull()
        assert explain.score_label.text() == ""
    assert explain.result["request"].image_id == second
    assert explain.score_label.isEnabled() and explain.score_label.text()
    window.close()


# -- 16: the template box shows the template the project's landmark sets use -----------------


def test_template_box_shows_the_template_in_use(main_window):
    project = main_window.app_state.project
    shape = project.template_by_name("Shape 5")
    assert project.templates()[0].id != shape.id  # the first template is another one
    assert main_window.app_state.template_id == shape.id
    assert main_window.classes.template.currentText().startswith("Shape 5 (5 points, ")
