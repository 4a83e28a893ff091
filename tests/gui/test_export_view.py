"""The Inspect mode's Export view: export a run's model and write its report through the
real buttons (file dialogs patched), in the background, with clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import QFileDialog

from tlstudio.core.demo import create_demo_project
from tlstudio.core.project import Project
from tlstudio.gui.inspect.export_view import ExportView
from tlstudio.gui.state import AppState

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def trained_dir(tmp_path_factory) -> tuple[Path, int]:
    """A closed 8-image demo project with one tiny trained classifier run."""
    from tlstudio.ml import runner
    from tlstudio.ml.runner import RunSpec
    from tlstudio.ml.trainer import TrainConfig

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("export_view") / "demo"
    with create_demo_project(root, n_images=8, size=64) as project:
        spec = RunSpec(task="classify", backbone="resnet18", weights="none",
                       train=TrainConfig(epochs=1, batch_size=8), input_size=64)  # fmt: skip
        run_id = runner.train(project, spec).run_id
    return root, run_id


@pytest.fixture
def view(qtbot, trained_dir):
    root, run_id = trained_dir
    state = AppState()
    state.open_project(Project.open(root))
    state.set_run(run_id)
    w = ExportView(state)
    qtbot.addWidget(w)
    w.resize(900, 600)
    w.show()
    yield w
    w.shutdown()
    state.close_project()


def _save_as(monkeypatch, path: Path, calls: list | None = None) -> None:
    def fake(parent, caption, suggested, filt):
        if calls is not None:
            calls.append((caption, suggested, filt))
        return str(path), filt

    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(fake))


def test_export_torchscript_in_background_shows_check_and_sidecar(
    qtbot, view, trained_dir, tmp_path, monkeypatch
):
    from tlstudio.ml.export import torchscript_runner
    from tlstudio.runtime import ExportedModel

    run_id = trained_dir[1]
    assert view.run_label.text().startswith(f"Run #{run_id}: classify · resnet18")
    calls: list = []
    _save_as(monkeypatch, tmp_path / "shapes", calls)  # no suffix: the view adds it
    qtbot.mouseClick(view.format_buttons["torchscript"], Qt.MouseButton.LeftButton)
    assert view.format == "torchscript"
    with qtbot.waitSignal(view.export_finished, timeout=60_000) as done:
        qtbot.mouseClick(view.export_button, Qt.MouseButton.LeftButton)
        assert not view.export_button.isEnabled()  # busy while the worker runs
    assert calls[0][1].endswith(f"run{run_id}_classify_resnet18.pt")
    res = done.args[0]
    out = tmp_path / "shapes.pt"
    assert res["path"] == str(out) and out.is_file()
    sidecar = json.loads((tmp_path / "shapes.pt.json").read_text())
    assert sidecar["run"]["id"] == run_id and sidecar["model_format"] == "torchscript"
    text = view.export_result.text()
    assert "shapes.pt.json" in text and "Check: max |TorchScript − PyTorch|" in text
    assert "probs" in text  # the output is described
    assert res["max_abs_diff"] is not None and res["max_abs_diff"] <= 1e-4
    assert view.export_button.isEnabled() and not view.error_label.isVisible()
    root, _ = trained_dir
    loaded = ExportedModel.load(out, torchscript=torchscript_runner)  # our own export: trusted
    (pred,) = loaded.predict_files([root / "images" / "demo_000.png"])
    assert pred["class"] in ("circle", "square", "triangle")


def test_report_is_written_in_background_and_opened_on_request(qtbot, view, tmp_path, monkeypatch):
    _save_as(monkeypatch, tmp_path / "run report.html")
    view.samples_spin.setValue(2)
    box = view.heatmaps_box  # off: keeps the test fast; click its indicator at the left
    qtbot.mouseClick(box, Qt.MouseButton.LeftButton, pos=QPoint(8, box.height() // 2))
    assert not view.heatmaps_box.isChecked()
    assert not view.open_report_button.isEnabled()
    with qtbot.waitSignal(view.report_finished, timeout=60_000):
        qtbot.mouseClick(view.report_button, Qt.MouseButton.LeftButton)
    page = (tmp_path / "run report.html").read_text()
    assert "<h2>Training curves</h2>" in page and "data:image/png;base64," in page
    assert "Class-activation heatmaps" not in page
    opened: list = []
    monkeypatch.setattr(QDesktopServices, "openUrl", staticmethod(opened.append))
    qtbot.mouseClick(view.open_report_button, Qt.MouseButton.LeftButton)
    assert [u.toLocalFile() for u in opened] == [str(tmp_path / "run report.html")]


def test_export_into_a_missing_folder_shows_the_reason(qtbot, view, tmp_path, monkeypatch):
    _save_as(monkeypatch, tmp_path / "nowhere" / "model.onnx")
    with qtbot.waitSignal(view.failed, timeout=60_000):
        qtbot.mouseClick(view.export_button, Qt.MouseButton.LeftButton)
    assert view.error_label.isVisible()
    assert (
        "Export failed" in view.error_label.text() and "no such folder" in view.error_label.text()
    )
    assert view.export_button.isEnabled()
    assert not (tmp_path / "nowhere").exists()


def test_without_a_run_both_actions_are_disabled(qtbot, view):
    view.app_state.set_run(None)
    assert not view.export_button.isEnabled() and not view.report_button.isEnabled()
    assert "No run selected" in view.run_label.text()
