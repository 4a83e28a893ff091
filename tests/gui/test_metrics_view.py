"""Inspect → Metrics: evaluate a tiny classifier, click the confusion matrix, open images,
copy and export, cancel."""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path

import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtWidgets import QApplication, QFileDialog

torch = pytest.importorskip("torch")


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, int]:
    """(project folder, run id) of a 2-epoch ResNet-18 classifier on 24 demo images."""
    from tlstudio.core.demo import create_demo_project
    from tlstudio.ml import runner
    from tlstudio.ml.runner import RunSpec
    from tlstudio.ml.trainer import TrainConfig

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("metrics_gui") / "demo"
    project = create_demo_project(root, n_images=24, size=64)
    spec = RunSpec(
        task="classify", backbone="resnet18", weights="none", input_size=64,
        train=TrainConfig(epochs=2, batch_size=8, lr=2e-3),
    )  # fmt: skip
    run_id = runner.train(project, spec).run_id
    project.close()
    return root, run_id


@pytest.fixture
def view(qtbot, trained):
    from tlstudio.core.project import Project
    from tlstudio.gui.inspect.metrics_view import MetricsView
    from tlstudio.gui.state import AppState

    root, run_id = trained
    state = AppState()
    state.open_project(Project.open(root))
    state.set_run(run_id)
    widget = MetricsView(state)
    qtbot.addWidget(widget)
    widget.resize(1200, 800)
    widget.show()
    qtbot.waitExposed(widget)
    yield widget
    widget.shutdown()
    state.close_project()


def _evaluate(qtbot, view, split: str):
    view.set_split(split)
    with qtbot.waitSignal(view.evaluated, timeout=120_000):
        qtbot.mouseClick(view.evaluate_button, Qt.MouseButton.LeftButton)
    assert not view.is_busy() and view.evaluate_button.isEnabled()
    return view.evaluation


def _truth_and_prediction(view) -> dict[int, tuple[str, str]]:
    """image id -> (tagged class, predicted class), read from the project after
    runner.predict stored the run's predictions (independent of the view)."""
    from tlstudio.core.runs import RunStore
    from tlstudio.ml import runner

    project, run_id = view.app_state.project, view.app_state.run_id
    ids = [r.id for r in project.images_in_split("train")]
    runner.predict(project, run_id, ids, device="cpu")
    names = {c.id: c.name for c in project.classes()}
    store = RunStore(project)
    return {
        i: (names[project.tags(i)[0]], names[store.prediction(run_id, i).payload["class_id"]])
        for i in ids
    }


def test_clicking_a_confusion_cell_lists_its_images_and_opens_one(qtbot, view):
    ev = _evaluate(qtbot, view, "train")
    truth = _truth_and_prediction(view)
    names = ev.class_names
    assert int(ev.confusion.sum()) == len(truth)
    assert view.cards["accuracy"][0].text() == f"{ev.summary['accuracy']:.3f}"
    assert view.confusion_model.rowCount() == 3
    table = view.confusion_table
    cells = [(i, j) for i in range(3) for j in range(3) if ev.confusion[i, j]]
    # an off-diagonal cell if the model confuses anything, else the fullest one
    i, j = next(((i, j) for i, j in cells if i != j), cells[0])
    rect = table.visualRect(view.confusion_model.index(i, j))
    qtbot.mouseClick(table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    expected = sorted(k for k, (t, p) in truth.items() if (t, p) == (names[i], names[j]))
    assert sorted(view.listed_image_ids()) == expected
    assert view.confusion_model.index(i, j).data() == str(len(expected))
    assert f"({len(expected)})" in view.images_title.text()

    first = view.image_list.item(0)
    rect = view.image_list.visualItemRect(first)
    viewport = view.image_list.viewport()
    opened = []
    view.open_image.connect(opened.append)
    # a real double-click: press/release, then the double-click event
    qtbot.mouseClick(viewport, Qt.MouseButton.LeftButton, pos=rect.center())
    assert opened == []  # a single click only selects
    qtbot.mouseDClick(viewport, Qt.MouseButton.LeftButton, pos=rect.center())
    assert opened == [view.listed_image_ids()[0]]

    # an empty cell lists nothing
    empty = [(a, b) for a in range(3) for b in range(3) if not ev.confusion[a, b]]
    if empty:
        a, b = empty[0]
        rect = table.visualRect(view.confusion_model.index(a, b))
        qtbot.mouseClick(table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
        assert view.listed_image_ids() == []


def test_enter_on_a_listed_image_opens_it_and_results_are_cached(qtbot, view):
    ev = _evaluate(qtbot, view, "val")
    i, j = next((i, j) for i in range(3) for j in range(3) if ev.confusion[i, j])
    rect = view.confusion_table.visualRect(view.confusion_model.index(i, j))
    qtbot.mouseClick(view.confusion_table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    ids = view.listed_image_ids()
    assert ids == ev.cell_images(i, j) and len(ids) == ev.confusion[i, j] > 0
    view.image_list.setFocus()
    view.image_list.setCurrentRow(len(ids) - 1)
    opened = []
    view.open_image.connect(opened.append)
    qtbot.keyClick(view.image_list, Qt.Key.Key_Return)
    assert opened == [ids[-1]]

    # leaving and coming back to the run shows the cached result without a new job
    run_id = view.app_state.run_id
    view.app_state.set_run(None)
    assert view.evaluation is None and view.confusion_model.rowCount() == 0
    view.app_state.set_run(run_id)
    assert view.evaluation is ev and not view.is_busy()
    # a label edit makes it stale
    view.app_state.data_changed.emit()
    view.app_state.set_run(None)
    view.app_state.set_run(run_id)
    assert view.evaluation is None
    assert "press Evaluate" in view.status_label.text()


def test_copy_export_and_sorting(qtbot, view, tmp_path, monkeypatch):
    ev = _evaluate(qtbot, view, "train")
    header = view.class_table.horizontalHeader()
    recall_col = ev.per_class_columns.index("recall")
    # sort by recall, descending: click the header twice (ascending, then descending)
    for _ in range(2):
        x = header.sectionViewportPosition(recall_col) + header.sectionSize(recall_col) // 2
        qtbot.mouseClick(header.viewport(), Qt.MouseButton.LeftButton, pos=QPoint(x, 5))
    shown = [float(view.class_model.item(r, recall_col).text()) for r in range(3)]
    assert shown == sorted(shown, reverse=True)

    qtbot.mouseClick(view.copy_button, Qt.MouseButton.LeftButton)
    lines = QApplication.clipboard().text().strip().split("\n")
    assert lines[0].split("\t")[0] == "Class" and len(lines) == 1 + len(ev.class_names)
    assert [float(line.split("\t")[recall_col]) for line in lines[1:]] == shown

    target = tmp_path / "metrics.csv"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(target), "CSV"))
    qtbot.mouseClick(view.export_button, Qt.MouseButton.LeftButton)
    rows = list(csv.reader(io.StringIO(target.read_text(encoding="utf-8"))))
    summary = dict(r for r in rows[1:] if len(r) == 2)
    assert float(summary["accuracy"]) == pytest.approx(ev.summary["accuracy"], abs=1e-5)
    assert ["true \\ predicted", *ev.class_names] in rows


def test_cancel_returns_to_idle_with_a_message(qtbot, view, monkeypatch):
    """A slow evaluation shows the busy bar and Cancel; Cancel stops it via the token."""
    from tlstudio.ml import evaluation

    started = []

    def slow(project, run_id, split, *, progress=None, token=None, **kw):
        started.append(run_id)
        progress(0, 10)
        deadline = time.monotonic() + 30
        while not token.is_cancelled and time.monotonic() < deadline:
            time.sleep(0.01)
        raise evaluation.EvaluationCancelled("cancelled")

    monkeypatch.setattr(evaluation, "evaluate_run", slow)
    qtbot.mouseClick(view.evaluate_button, Qt.MouseButton.LeftButton)
    assert view.is_busy() and not view.evaluate_button.isEnabled()
    assert view.progress.isVisible() and view.cancel_button.isVisible()
    qtbot.waitUntil(lambda: bool(started), timeout=5000)
    qtbot.mouseClick(view.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not view.is_busy(), timeout=5000)
    assert "cancelled" in view.status_label.text().lower()
    assert view.evaluate_button.isEnabled() and not view.progress.isVisible()
    assert view.evaluation is None


def test_a_failed_evaluation_names_the_problem(qtbot, view, monkeypatch):
    from tlstudio.ml import evaluation

    def broken(project, run_id, split, **kw):
        raise evaluation.EvaluationError(f"the {split!r} split is empty; assign images to it")

    monkeypatch.setattr(evaluation, "evaluate_run", broken)
    view.set_split("test")
    with qtbot.waitSignal(view.message, timeout=5000, check_params_cb=lambda m: "failed" in m):
        qtbot.mouseClick(view.evaluate_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not view.is_busy(), timeout=5000)
    assert "'test' split is empty" in view.status_label.text()
    assert view.evaluate_button.isEnabled() and view.evaluation is None
