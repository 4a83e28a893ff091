"""Train panel → "Train elsewhere…" writes a job folder; its run.sh trains with torchrun
(2 CPU processes, gloo); History → "Import finished run…" brings the run back; Inspect
evaluates it like a run trained here."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from job_processes import run_job_processes
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog, QMessageBox

from tlstudio.core.runs import RunStore

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _tiny_spec():
    from tlstudio.ml.runner import RunSpec
    from tlstudio.ml.trainer import TrainConfig

    return RunSpec(task="classify", backbone="resnet18", weights="none", input_size=32,
                   train=TrainConfig(epochs=2, batch_size=2, freeze=3, device="cpu"))  # fmt: skip


def _write_job(qtbot, window, folder: Path):
    """F3, the tiny spec, "Train elsewhere…", a folder typed in, "Write job folder"."""
    qtbot.keyClick(window, Qt.Key.Key_F3)
    dock = window.train_panel
    dock.config.wait_ready()
    dock.config.set_spec(_tiny_spec())
    qtbot.waitUntil(dock.config.train_button.isEnabled, timeout=30_000)
    dock.show_settings()
    qtbot.mouseClick(dock.config.elsewhere_button, Qt.MouseButton.LeftButton)
    dialog = dock.elsewhere_dialog
    assert dialog is not None and dialog.isVisible()
    edit = dialog.folder_edit
    edit.selectAll()
    qtbot.keyClicks(edit, str(folder))
    with qtbot.waitSignal(dialog.written, timeout=60_000):
        qtbot.mouseClick(dialog.write_button, Qt.MouseButton.LeftButton)
    return dock, dialog


def _import(qtbot, window, dock, folder: Path, monkeypatch) -> None:
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(folder))
    dock.tabs.setCurrentWidget(dock.history)
    qtbot.mouseClick(dock.history.import_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: dock.import_job is not None and dock.import_job.is_finished,
                    timeout=30_000)  # fmt: skip


@pytest.mark.slow
def test_train_elsewhere_then_import_and_inspect(qtbot, main_window, tmp_path, monkeypatch):
    job_dir = tmp_path / "job"
    dock, dialog = _write_job(qtbot, main_window, job_dir)
    text = dialog.commands.toPlainText()
    assert f"bash {job_dir}/run.sh" in text and "sbatch run.sh" in text
    assert "Import finished run" in text
    assert (job_dir / "run.sh").is_file() and (job_dir / "job.json").is_file()
    dialog.reject()

    # on the "server": the job's run.sh, 2 processes on the CPU (gloo)
    env = dict(os.environ, PYTHONPATH=str(REPO), NPROC="2", DEVICE="cpu",
               PYTHON=sys.executable, OMP_NUM_THREADS="1", TLSTUDIO_DIST_TIMEOUT_S="60")  # fmt: skip
    proc = run_job_processes(["bash", str(job_dir / "run.sh")], env=env, timeout=240)
    assert proc.returncode == 0, proc.stdout
    assert proc.stdout.count("run 1 (finished, 2 epochs)") == 1, proc.stdout  # rank 0 reports

    _import(qtbot, main_window, dock, job_dir, monkeypatch)
    state = main_window.app_state
    runs = RunStore(state.project).list()
    assert len(runs) == 1
    run = runs[0]
    assert run.status == "finished" and run.device == "cpu ×2 (gloo)"
    assert dock.history.selected_run_ids() == [run.id] and state.run_id == run.id
    row = [dock.history.table.item(0, c).text() for c in range(dock.history.table.columnCount())]
    assert "cpu ×2 (gloo)" in row and "finished" in row
    assert RunStore(state.project).predicted_images(run.id)  # predictions came back too

    main_window.activateWindow()  # the dialog had the focus
    qtbot.waitUntil(main_window.isActiveWindow)
    qtbot.keyClick(main_window, Qt.Key.Key_F4)
    inspect = main_window.inspect_panel
    assert inspect.run_combo.currentData() == run.id
    inspect.tabs.setCurrentIndex(0)
    qtbot.waitUntil(lambda: "Metrics" in inspect.views and inspect.views["Metrics"].isVisible())
    metrics = inspect.views["Metrics"]
    with qtbot.waitSignal(metrics.evaluated, timeout=120_000):
        qtbot.mouseClick(metrics.evaluate_button, Qt.MouseButton.LeftButton)
    assert metrics.evaluation is not None and metrics.cards["accuracy"][0].text()


def test_import_asks_before_taking_a_run_of_other_labels(qtbot, main_window, tmp_path, monkeypatch):
    """A job whose labels changed meanwhile: the import asks; No keeps the project as it
    was, Yes imports the run (marked as forced)."""
    from tlstudio.core.project import Project

    job_dir = tmp_path / "job"
    dock, dialog = _write_job(qtbot, main_window, job_dir)
    dialog.reject()
    with Project.open(job_dir / "project") as done:  # a finished run, as run.sh leaves it
        store = RunStore(done)
        rid = store.start("classify", "resnet18", _tiny_spec().to_dict(), "cuda ×4 (nccl)")
        (store.run_dir(rid) / "model.pt").write_bytes(b"weights")
        store.log_epoch(rid, 0, {"train_loss": 1.0, "val_loss": 1.2, "accuracy": 0.5})
        store.update(rid, status="finished", checkpoint=f"runs/{rid}/model.pt",
                     metric_name="accuracy", best_metric=0.5)  # fmt: skip
    project = main_window.app_state.project
    image = next(r.id for r in project.images_in_split("train"))
    other = next(c.id for c in project.classes() if c.id not in project.tags(image))
    project.set_tags(image, [other])

    answers, asked = iter([QMessageBox.StandardButton.No, QMessageBox.StandardButton.Yes]), []
    monkeypatch.setattr(QMessageBox, "question",
                        lambda _p, _t, text, *a: (asked.append(text), next(answers))[1])  # fmt: skip
    _import(qtbot, main_window, dock, job_dir, monkeypatch)
    assert "labels" in asked[0] and "anyway" in asked[0]
    assert RunStore(project).list() == [] and dock.history.info_label.text() == "Not imported."
    _import(qtbot, main_window, dock, job_dir, monkeypatch)
    qtbot.waitUntil(lambda: bool(RunStore(project).list()), timeout=30_000)
    (run,) = RunStore(project).list()
    assert run.config["imported_from"]["forced"] is True and run.device == "cuda ×4 (nccl)"
    assert (project.root / run.checkpoint).read_bytes() == b"weights"
