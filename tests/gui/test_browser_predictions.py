"""The browser's prediction filters and "most uncertain first" order, on hand-written
classification predictions (no training): right/wrong follow the tags, also after
an edit through the undo stack."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt

from tlstudio.core.annotations import ImageAnnotations
from tlstudio.core.commands import CommandGroup, SetAnnotations, SetTags
from tlstudio.core.runs import RunStore
from tlstudio.gui.panels.browser import NO_RUN_TIP, BrowserPanel
from tlstudio.gui.workers.jobs import wait_for_jobs


@pytest.fixture
def browser(qtbot, app_state):
    panel = BrowserPanel(app_state)
    panel.synchronous_thumbnails = True
    qtbot.addWidget(panel)
    panel.resize(500, 700)
    panel.show()
    yield panel
    panel.shutdown()
    assert wait_for_jobs(60_000), "background jobs still running after 60 s"


@pytest.fixture
def predicted_run(app_state):
    """A classify run predicting images 0..4 of the demo (image 5 not predicted):
    images 1 and 3 get the wrong class. Returns (run id, {image id: uncertainty})."""
    project = app_state.project
    classes = [c.id for c in project.classes()]
    ids = project.image_ids()
    runs = RunStore(project)
    run = runs.start("classify", "resnet18", {"task": "classify"})
    top = [0.9, 0.55, 0.7, 0.45, 0.8]  # probability of the predicted class
    uncertainty = {}
    for k, image_id in enumerate(ids[:5]):
        truth = project.tags(image_id)[0]
        predicted = truth if k not in (1, 3) else next(c for c in classes if c != truth)
        rest = [c for c in classes if c != predicted]
        second = (1 - top[k]) * 0.6
        probs = {predicted: top[k], rest[0]: second, rest[1]: 1 - top[k] - second}
        payload = {"probs": {str(c): p for c, p in probs.items()}, "class_id": predicted}
        runs.set_prediction(run, image_id, payload, score=top[k])
        uncertainty[image_id] = 1 - (top[k] - second)
    app_state.predictions_changed.emit()
    return run, uncertainty


def _wrong_ids(project, run):
    """Images whose stored prediction is not among their tags, from the store."""
    runs = RunStore(project)
    return [
        i
        for i, _score in sorted(runs.predicted_images(run))
        if runs.prediction(run, i).payload["class_id"] not in project.tags(i)
    ]


def _text(browser, row):
    return browser.model.data(browser.model.index(row), Qt.ItemDataRole.DisplayRole)


def test_prediction_filters_are_disabled_until_a_run_is_chosen(
    qtbot, browser, app_state, predicted_run
):
    run, uncertainty = predicted_run
    first = app_state.project.image_ids()[0]
    assert not browser.prediction.isEnabled() and not browser.order.isEnabled()
    assert browser.prediction.toolTip() == NO_RUN_TIP
    assert "✓" not in _text(browser, 0) and "✗" not in _text(browser, 0)
    app_state.set_run(run)
    assert browser.prediction.isEnabled() and browser.order.isEnabled()
    assert f"run {run}" in browser.prediction.toolTip()
    # the rows get a right/wrong mark and the uncertainty once the statuses arrive
    mark = f"✓ {uncertainty[first]:.2f}"
    qtbot.waitUntil(lambda: mark in _text(browser, 0), timeout=5000)
    assert "✗" in _text(browser, 1)
    assert _text(browser, 5).split("\n")[2].startswith("not predicted · ")
    tip = browser.model.data(browser.model.index(1), Qt.ItemDataRole.ToolTipRole)
    assert "prediction: wrong (predicted" in tip


def test_wrong_filter_lists_exactly_the_disagreeing_images_and_follows_edits(
    qtbot, browser, app_state, predicted_run
):
    project = app_state.project
    run, _ = predicted_run
    app_state.set_run(run)
    wrong = _wrong_ids(project, run)
    assert len(wrong) == 2
    browser.prediction.setFocus()
    qtbot.keyClick(browser.prediction, Qt.Key.Key_Down)  # "any" -> "wrong"
    assert browser.prediction.currentData() == "wrong"
    qtbot.waitUntil(lambda: browser.model.ids() == wrong, timeout=5000)
    assert browser.count_label.text().startswith("2 of 6 images")

    # tagging the first wrong image with the predicted class makes it right
    fixed = wrong[0]
    predicted = RunStore(project).prediction(run, fixed).payload["class_id"]
    app_state.push(SetTags(fixed, [predicted]))
    qtbot.waitUntil(lambda: browser.model.ids() == wrong[1:], timeout=5000)
    app_state.undo_stack.undo()
    qtbot.waitUntil(lambda: browser.model.ids() == wrong, timeout=5000)

    browser.prediction.setCurrentIndex(browser.prediction.findData("right"))
    qtbot.waitUntil(
        lambda: browser.model.ids() == [i for i in project.image_ids()[:5] if i not in wrong],
        timeout=5000,
    )
    browser.prediction.setCurrentIndex(browser.prediction.findData("unpredicted"))
    assert browser.model.ids() == [project.image_ids()[5]]


def test_most_uncertain_first_and_low_confidence(qtbot, browser, app_state, predicted_run):
    project = app_state.project
    run, uncertainty = predicted_run
    app_state.set_run(run)
    browser.order.setCurrentIndex(browser.order.findData("uncertainty"))
    expected = sorted(uncertainty, key=lambda i: -uncertainty[i]) + [project.image_ids()[5]]
    qtbot.waitUntil(lambda: browser.model.ids() == expected, timeout=5000)
    # the browser's keys walk that order
    browser.go_to_row(0)
    assert app_state.image_id == expected[0]
    browser.next_image()
    assert app_state.image_id == expected[1]
    assert browser.view.currentIndex().row() == 1

    browser.prediction.setCurrentIndex(browser.prediction.findData("uncertain"))
    assert browser.model.ids() == [i for i in expected if uncertainty.get(i, 0) >= 0.5]
    assert len(browser.model.ids()) == 2

    # choosing no run resets the prediction filter and order and shows every image again
    app_state.set_run(None)
    assert browser.prediction.currentData() == "any" and browser.order.currentData() == "id"
    assert browser.model.ids() == project.image_ids()
    assert not browser.prediction.isEnabled()


def test_new_predictions_replace_the_statuses(qtbot, browser, app_state, predicted_run):
    project = app_state.project
    run, _ = predicted_run
    app_state.set_run(run)
    browser.prediction.setCurrentIndex(browser.prediction.findData("unpredicted"))
    last = project.image_ids()[5]
    qtbot.waitUntil(lambda: browser.model.ids() == [last], timeout=5000)
    truth = project.tags(last)[0]
    payload = {"probs": {str(truth): 1.0}, "class_id": truth}
    RunStore(project).set_prediction(run, last, payload, score=1.0)
    app_state.predictions_changed.emit()
    qtbot.waitUntil(lambda: browser.model.ids() == [], timeout=5000)
    assert browser.count_label.text().startswith("0 of 6 images")


def test_next_unlabelled_follows_the_uncertainty_order(qtbot, browser, app_state, predicted_run):
    """Unlabelled + most uncertain first = the active-learning queue, walked by Ctrl+U."""
    project = app_state.project
    run, uncertainty = predicted_run
    ids = project.image_ids()
    for i in (ids[0], ids[2], ids[4]):  # predicted, now unlabelled
        app_state.push(CommandGroup([SetAnnotations(ImageAnnotations(i))], "Clear"))
    app_state.set_run(run)
    browser.order.setCurrentIndex(browser.order.findData("uncertainty"))
    queue = sorted((ids[0], ids[2], ids[4]), key=lambda i: -uncertainty[i])
    qtbot.waitUntil(lambda: browser.model.ids()[0] == max(uncertainty, key=uncertainty.get))
    app_state.set_image(browser.model.id_at(0))
    visited = []
    for _ in range(4):
        assert browser.next_unlabelled()
        visited.append(app_state.image_id)
    assert visited == [*queue, queue[0]]  # wraps round
