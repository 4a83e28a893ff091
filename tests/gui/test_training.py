"""The Train panel: runs started from the dock's widgets train in a background job, the monitor
follows them, Cancel/Pause work, failures show in the monitor and are recorded, and the
history lists, overlays, reuses and deletes runs.

Runs are tiny: 12 demo images of 64 px (6 train, 3 val), either the fast path
(EfficientNet-Lite0's bundled weights frozen, only the head trains on cached features)
or a ResNet-18 without pretrained weights at 32–64 px with 3 of its stages frozen.
"""

from __future__ import annotations

import math
import sqlite3
import time
from pathlib import Path

import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtWidgets import QMessageBox, QPushButton

from tlstudio.core.runs import RunStore

TIMEOUT_MS = 120_000


@pytest.fixture
def state(qtbot, tmp_path: Path):
    from tlstudio.core.demo import create_demo_project
    from tlstudio.gui.state import AppState

    project = create_demo_project(tmp_path / "p", n_images=12, size=64)
    s = AppState()
    s.open_project(project)
    yield s
    s.close_project()


@pytest.fixture
def dock(qtbot, state):
    from tlstudio.gui.training.train_dock import TrainDock
    from tlstudio.gui.workers.jobs import wait_for_jobs

    d = TrainDock(state)
    qtbot.addWidget(d)
    d.resize(1300, 560)
    d.show()
    qtbot.waitExposed(d)
    yield d
    assert d.shutdown(60_000)  # no test may leave a training thread behind
    assert wait_for_jobs(60_000), "background jobs still running after 60 s"


def tiny_spec(**train):
    """ResNet-18 without pretrained weights on 32 px inputs, 3 of its stages frozen."""
    from tlstudio.ml.runner import RunSpec
    from tlstudio.ml.trainer import TrainConfig

    cfg = {"epochs": 3, "batch_size": 4, "freeze": 3, "lr": 1e-3}
    cfg.update(train)
    return RunSpec(
        task="classify",
        backbone="resnet18",
        weights=cfg.pop("weights", "none"),
        input_size=cfg.pop("input_size", 32),
        train=TrainConfig(**cfg),
    )


def fast_spec():
    """The fast path: EfficientNet-Lite0's bundled weights, frozen; only the head trains
    on cached features."""
    from tlstudio.ml.runner import RunSpec
    from tlstudio.ml.trainer import TrainConfig

    return RunSpec(
        task="classify",
        backbone="efficientnet_lite0",
        weights="bundled",
        input_size=96,
        train=TrainConfig(epochs=3, batch_size=4, lr=3e-3),
    )


def train_button(config) -> QPushButton:
    button = getattr(config, "train_button", None)
    if isinstance(button, QPushButton):
        return button
    for b in config.findChildren(QPushButton):
        if b.text().replace("&", "").strip().lower().startswith(("train", "start")):
            return b
    raise AssertionError("the configuration panel has no Train button")


def click(qtbot, button: QPushButton) -> None:
    assert button.isEnabled(), button.text()
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def start_from_widgets(qtbot, dock, spec) -> None:
    """Set ``spec`` in the configuration panel and press its Train button."""
    dock.config.set_spec(spec)
    button = train_button(dock.config)
    qtbot.waitUntil(button.isEnabled, timeout=30_000)  # the panel checks the project's labels
    got = dock.config.spec()
    assert (got.task, got.backbone, got.weights, got.input_size) == (
        spec.task,
        spec.backbone,
        spec.weights,
        spec.input_size,
    )
    assert got.train.to_dict() == spec.train.to_dict()
    with qtbot.waitSignal(dock.controller.started, timeout=5000):
        click(qtbot, button)
    assert dock.controller.is_running


def job_ended(controller) -> bool:
    """The controller's last job delivered its outcome and its pool runs nothing."""
    return controller.job.is_finished and controller.pool.activeThreadCount() == 0


def integrity_ok(root: Path) -> bool:
    conn = sqlite3.connect(root / "project.sqlite")
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()


# ------------------------------------------------------------------------------ runs


def test_train_button_runs_records_and_plots(qtbot, dock, state):
    fits, progress = [], []
    dock.controller.fit_started.connect(fits.append)
    dock.controller.extraction_progress.connect(lambda *a: progress.append(a))
    start_from_widgets(qtbot, dock, fast_spec())
    assert not train_button(dock.config).isEnabled()  # one run at a time
    with qtbot.waitSignal(dock.controller.finished, timeout=TIMEOUT_MS) as blocker:
        pass
    run_id = blocker.args[0]
    assert job_ended(dock.controller)
    assert not dock.controller.is_running
    assert train_button(dock.config).isEnabled()

    runs = RunStore(state.project)
    run = runs.get(run_id)
    assert run.status == "finished" and run.error is None
    assert state.run_id == run_id  # the new model is the one the Predictions/Inspect views show
    assert run.config["backbone"] == "efficientnet_lite0" and run.config["train"]["freeze"] == "all"
    losses = [m["train_loss"] for _, m in runs.epochs(run_id)]
    assert len(losses) == 3
    assert losses[0] > losses[1] > losses[2], losses

    from tlstudio.runtime.threads import plan

    # no thread setting: the window's default budget, one core left for the GUI
    assert dock.controller.last_used_threads == plan(None, gui=True).threads
    assert fits and fits[0].run_id == run_id and fits[0].feature_cache
    assert ("features train", 6, 6) in progress and ("features val", 3, 3) in progress

    m = dock.monitor
    m.redraw()
    assert m.epoch_x == [1, 2, 3]
    assert m.train_loss_epoch == pytest.approx(losses)
    x, y = (m.curves["train_epoch"].xData, m.curves["train_epoch"].yData)
    assert list(x) == [1, 2, 3] and list(y) == pytest.approx(losses)
    assert len(m.curves["val"].xData) == 3
    assert len(m.curves["metric"].xData) == 3 and m.metric_name == "accuracy"
    assert len(m.batch_x) == 3 * 2  # 6 train images, batches of 4: every batch arrived
    assert m.epoch_markers == [1, 2, 3]
    assert "Finished after 3 epochs" in m.status_label.text()
    assert m.progress.value() == 1000
    assert m.fast_path_label.isVisible()
    assert m.fast_path_label.text() == "Features cached: training only the head"
    assert "epoch 3/3" in m.progress.text()
    assert "train loss" in m.readout(2.0) and "accuracy" in m.readout(2.0)
    ids = [int(dock.history.table.item(r, 0).text()) for r in range(dock.history.table.rowCount())]
    assert ids == [run_id]


def test_cancel_after_first_batch(qtbot, dock, state):
    start_from_widgets(qtbot, dock, tiny_spec(batch_size=2, epochs=20, input_size=64))
    with qtbot.waitSignal(dock.controller.batch_ended, timeout=TIMEOUT_MS):
        pass
    t0 = time.monotonic()
    with qtbot.waitSignal(dock.controller.finished, timeout=TIMEOUT_MS) as blocker:
        click(qtbot, dock.monitor.cancel_button)
    reaction_s = time.monotonic() - t0
    assert job_ended(dock.controller)
    assert reaction_s < 10, reaction_s  # one batch plus saving; generous for a busy machine

    run = RunStore(state.project).get(blocker.args[0])
    assert run.status == "cancelled"
    assert len(RunStore(state.project).epochs(run.id)) < 20
    assert "Cancelled" in dock.monitor.status_label.text()
    assert not dock.monitor.cancel_button.isEnabled()

    from tlstudio.core.project import Project

    with Project.open(state.project.root) as again:
        assert RunStore(again).get(run.id).status == "cancelled"
    assert integrity_ok(state.project.root)


def test_pause_stops_batches_until_resume(qtbot, dock, state):
    points = []
    dock.controller.batch_points.connect(lambda p: points.extend(p))
    start_from_widgets(qtbot, dock, tiny_spec(batch_size=1, epochs=1, input_size=64))
    with qtbot.waitSignal(dock.controller.batch_ended, timeout=TIMEOUT_MS):
        pass
    pause = dock.monitor.pause_button
    with qtbot.waitSignal(
        dock.controller.pause_changed, timeout=10_000, check_params_cb=lambda p: p is True
    ):
        click(qtbot, pause)
    assert pause.text() == "Resume" and "Paused" in dock.monitor.status_label.text()
    seen = len(points)
    qtbot.wait(600)
    assert len(points) == seen, "batches trained while paused"
    assert dock.controller.is_running and dock.controller.is_paused
    with qtbot.waitSignal(dock.controller.finished, timeout=TIMEOUT_MS) as blocker:
        click(qtbot, pause)
    assert pause.text() == "Pause"
    assert RunStore(state.project).get(blocker.args[0]).status == "finished"
    assert len(points) == 6 > seen  # nothing lost to the throttle, none repeated
    assert dock.monitor.batch_x == [p[0] for p in points]


def request_start(qtbot, dock, spec) -> None:
    """Send ``spec`` through the configuration panel's start_requested signal (for specs
    its widgets refuse to express or start, like lr 1e12 or weights that are missing)."""
    with qtbot.waitSignal(dock.controller.started, timeout=5000):
        dock.config.start_requested.emit(spec)


def test_nan_loss_shows_error_and_records_failure(qtbot, dock, state):
    # The panel's learning-rate box stops at 10, which this model survives.
    failures = []
    dock.controller.failed.connect(lambda *a: failures.append(a))
    request_start(qtbot, dock, tiny_spec(lr=1e12, optimizer="sgd", freeze=0))
    with qtbot.waitSignal(dock.controller.finished, timeout=TIMEOUT_MS) as blocker:
        pass
    assert [kind for kind, _ in failures] == ["nan_loss"]
    label = dock.monitor.status_label
    assert "Loss became NaN" in label.text() and "loss became nan" in label.text()
    assert "c62828" in label.styleSheet()  # red
    run = RunStore(state.project).get(blocker.args[0])
    assert run.status == "failed" and "nan" in run.error
    assert job_ended(dock.controller)


def test_missing_weights_fail_cleanly_and_are_recorded(qtbot, dock, state, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))  # no cached weights
    # The configuration panel keeps Train disabled without the weights; they can still
    # vanish between the check and the run.
    request_start(qtbot, dock, tiny_spec(weights="cached"))
    with qtbot.waitSignal(dock.controller.finished, timeout=TIMEOUT_MS) as blocker:
        pass
    assert dock.monitor.error_kind == "missing_weights"
    assert "Missing weights" in dock.monitor.status_label.text()
    run = RunStore(state.project).get(blocker.args[0])
    assert run.status == "failed" and "resnet18" in run.error
    assert dock.history.table.rowCount() == 1
    assert "failed" in dock.history.table.item(0, 9).text()


def test_a_device_that_is_not_there_fails_as_a_device_problem(qtbot, dock, state):
    request_start(qtbot, dock, tiny_spec(device="cuda:7"))  # no such GPU on any test machine
    with qtbot.waitSignal(dock.controller.finished, timeout=TIMEOUT_MS) as blocker:
        pass
    assert dock.monitor.error_kind == "device"
    assert "Device not available" in dock.monitor.status_label.text()
    assert "cuda:7" in dock.monitor.status_label.text()
    run = RunStore(state.project).get(blocker.args[0])
    assert run.status == "failed" and "cuda:7" in run.error


def _failure_cases() -> list[tuple[BaseException, str]]:
    import torch

    from tlstudio.core import errors
    from tlstudio.ml.devices import DeviceError
    from tlstudio.ml.runner import RunError
    from tlstudio.ml.train_config import TrainConfigError
    from tlstudio.ml.weights import WeightsError

    class WeightsMismatch(WeightsError):  # a subclass: its class name is not "WeightsError"
        pass

    class DriverGone(errors.TlsError):  # any tlstudio error of kind "device"
        kind = errors.DEVICE

    return [
        (WeightsError("resnet18: no weights in the cache"), "missing_weights"),
        (WeightsMismatch("resnet18: the file holds another architecture"), "missing_weights"),
        (DeviceError("cuda:7 does not exist"), "device"),
        (DriverGone("the CUDA driver stopped"), "device"),
        (TrainConfigError("lr must be > 0"), "config"),
        (RunError("no images in the train split"), "config"),
        (errors.CorruptImageError("a.png", "empty file"), "bad_image"),
        (errors.MissingCodecError("a.dcm", "needs the JPEG 2000 codec"), "bad_image"),
        (
            torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"),
            "out_of_memory",
        ),
        (MemoryError(), "out_of_memory"),
        (FileNotFoundError("cache/features.npy"), "error"),  # not the user's weights
        (ValueError("a bug"), "error"),
    ]


def test_failure_kinds_follow_the_error_kinds():
    from tlstudio.gui.training.monitor import ERROR_TITLES
    from tlstudio.gui.training.worker import FAILURE_KINDS, failure_kind

    for exc, expected in _failure_cases():
        assert failure_kind(exc) == expected, exc
    assert set(FAILURE_KINDS) == set(ERROR_TITLES)  # every kind has its words in the monitor


def test_confirm_close_asks_and_stops_the_run(qtbot, dock, state, monkeypatch):
    start_from_widgets(qtbot, dock, tiny_spec(batch_size=2, epochs=20, input_size=64))
    with qtbot.waitSignal(dock.controller.batch_ended, timeout=TIMEOUT_MS):
        pass
    asked = []

    def answer(reply):
        def question(parent, title, text, *args):
            asked.append(text)
            return reply

        return question

    monkeypatch.setattr(QMessageBox, "question", answer(QMessageBox.StandardButton.No))
    assert dock.confirm_close() is False
    assert dock.controller.is_running and asked == ["Training is running. Stop it and close?"]
    monkeypatch.setattr(QMessageBox, "question", answer(QMessageBox.StandardButton.Yes))
    assert dock.confirm_close() is True
    assert not dock.controller.is_running and job_ended(dock.controller)
    assert RunStore(state.project).get(dock.controller.last_run_id).status == "cancelled"
    assert dock.confirm_close() is True and len(asked) == 2  # nothing running: no question


# ------------------------------------------------------------------------------ pieces


def test_monitor_redraws_on_timer_not_per_batch(qtbot):
    from tlstudio.gui.training.monitor import TrainingMonitor
    from tlstudio.ml.events import BatchEnded, EpochEnded, FitStarted

    m = TrainingMonitor()
    qtbot.addWidget(m)
    m.show()
    qtbot.waitExposed(m)
    m.set_running(True)
    m.reset()
    m.on_main_metric_named("accuracy")
    m.on_fit_started(FitStarted(1, 2, 500, 1000, 100, "cpu", 10, 20, feature_cache=True))
    qtbot.waitUntil(lambda: not m._dirty, timeout=2000)
    before = m.redraws
    for epoch in range(2):
        for step in range(500):
            x = epoch + (step + 1) / 500
            m.on_batch_points([(x, 2.0 - x / 2, 1e-3)])
            m.on_batch_ended(BatchEnded(epoch, step, 500, 2.0 - x / 2, 1e-3, 85.0, 42.0))
        m.on_epoch_ended(
            EpochEnded(epoch, 2, 1.5 - epoch / 2, 1.6 - epoch / 2, {"accuracy": 0.5 + epoch / 4})
        )
    assert m.redraws == before  # 1000 batches, no redraw yet
    qtbot.waitUntil(lambda: m.redraws == before + 1, timeout=2000)
    qtbot.wait(600)
    assert m.redraws == before + 1  # nothing changed since: no more redraws
    assert len(m.curves["smooth"].xData) == 1000
    assert m.epoch_markers == [1, 2]
    assert m.progress.text() == "epoch 2/2 · step 500/500 · 85 img/s · ETA 0:42"
    assert m.fast_path_label.isVisible()
    assert m.batch_smooth[-1] == pytest.approx(1.0, abs=0.01)
    m.show_readout(1.8)
    assert "epoch 1.80" in m.hover_label.text() and "accuracy 0.75" in m.hover_label.text()
    m.on_failed("out_of_memory", "CUDA out of memory at batch size 1")
    assert "Out of memory" in m.status_label.text() and "c62828" in m.status_label.styleSheet()


def test_bridge_throttles_batches_but_keeps_every_point(qtbot):
    from tlstudio.gui.training.worker import TrainingWorker, _SignalBridge
    from tlstudio.ml.events import BatchEnded, EpochEnded

    w = TrainingWorker(".", tiny_spec(), batch_interval_s=0.1)
    sent, points = [], []
    w.batch_ended.connect(sent.append)
    w.batch_points.connect(points.extend)
    bridge = _SignalBridge(w, feature_cache=False)
    t0 = time.monotonic()
    for step in range(300):
        bridge.on_batch_end(None, BatchEnded(0, step, 300, 1.0, 1e-3, 1.0, 1.0))
    elapsed = time.monotonic() - t0
    assert len(sent) <= 2 + elapsed / 0.1
    assert sent[-1].step < 299  # the newest is held back...
    bridge.on_epoch_end(None, EpochEnded(0, 1, 1.0, None))
    assert sent[-1].step == 299  # ...and delivered before the epoch ends
    assert len(points) == 300 and points[-1][0] == pytest.approx(1.0)


def _fake_runs(project, n: int = 3) -> list[int]:
    runs = RunStore(project)
    ids = []
    for k in range(n):
        spec = tiny_spec(freeze=k).to_dict()
        run_id = runs.start("classify", "resnet18", spec, "cpu")
        for e in range(4):
            runs.log_epoch(run_id, e, {"train_loss": 1 / (e + 1), "val_loss": 1.1 / (e + 1) + k,
                                       "accuracy": 0.4 + 0.1 * e})  # fmt: skip
        runs.update(run_id, status="finished", metric_name="accuracy", best_metric=0.7,
                    duration_s=61.0)  # fmt: skip
        (runs.run_dir(run_id) / "model.pt").write_bytes(b"x")
        ids.append(run_id)
    return ids


def _row_click(qtbot, table, row: int, modifier=Qt.KeyboardModifier.NoModifier) -> None:
    rect = table.visualRect(table.model().index(row, 2))
    qtbot.mouseClick(table.viewport(), Qt.MouseButton.LeftButton, modifier, rect.center())


def test_history_overlays_reuses_and_deletes(qtbot, dock, state, monkeypatch):
    ids = _fake_runs(state.project)
    h = dock.history
    dock.tabs.setCurrentWidget(h)
    h.refresh()
    table = h.table
    assert table.rowCount() == 3
    assert [int(table.item(r, 0).text()) for r in range(3)] == ids[::-1]  # newest first
    assert table.item(2, 4).text() == "0" and table.item(2, 7).text() == "1:01"
    assert table.item(0, 5).text() == "accuracy" and table.item(0, 6).text() == "0.7"

    _row_click(qtbot, table, 0)
    _row_click(qtbot, table, 2, Qt.KeyboardModifier.ControlModifier)
    assert sorted(h.overlaid_runs()) == sorted([ids[0], ids[2]])
    assert len(h.loss_plot.listDataItems()) == 2 and len(h.metric_plot.listDataItems()) == 2
    assert len(h.loss_plot.legend.items) == 2
    xs, ys = (h.loss_plot.listDataItems()[0].xData, h.loss_plot.listDataItems()[0].yData)
    assert list(xs) == [1, 2, 3, 4] and not any(math.isnan(y) for y in ys)
    assert not h.reuse_button.isEnabled()  # two runs selected

    _row_click(qtbot, table, 1)  # ids[1]: freeze 1
    assert h.selected_run_ids() == [ids[1]]
    with qtbot.waitSignal(h.reuse_requested, timeout=30_000) as blocker:
        click(qtbot, h.reuse_button)
    spec = blocker.args[0]
    assert spec.train.freeze == 1 and spec.backbone == "resnet18" and spec.input_size == 32
    assert dock.config.spec().task == "classify"

    monkeypatch.setattr(QMessageBox, "question", lambda *a: QMessageBox.StandardButton.No)
    click(qtbot, h.delete_button)
    assert len(RunStore(state.project).list()) == 3
    folder = state.project.root / "runs" / str(ids[1])
    assert folder.is_dir()
    monkeypatch.setattr(QMessageBox, "question", lambda *a: QMessageBox.StandardButton.Yes)
    with qtbot.waitSignal(h.run_deleted, timeout=2000):
        click(qtbot, h.delete_button)
    assert not folder.exists()
    assert [r.id for r in RunStore(state.project).list()] == [ids[0], ids[2]]
    assert table.rowCount() == 2


def test_hover_over_plot_shows_values(qtbot):
    from tlstudio.gui.training.monitor import TrainingMonitor
    from tlstudio.ml.events import EpochEnded

    m = TrainingMonitor()
    qtbot.addWidget(m)
    m.resize(900, 400)
    m.show()
    qtbot.waitExposed(m)
    m.on_batch_points([(0.5, 2.0, 1e-3), (1.0, 1.0, 1e-3), (1.5, 0.5, 1e-3), (2.0, 0.4, 1e-3)])
    m.on_epoch_ended(EpochEnded(0, 2, 1.5, 1.4, {}))
    m.on_epoch_ended(EpochEnded(1, 2, 0.45, 0.6, {}))
    m.redraw()
    vb = m.loss_plot.getViewBox()
    vb.setRange(xRange=(0, 2), yRange=(0, 2), padding=0)
    qtbot.wait(100)  # let the view box apply the range before mapping into it
    view = m.loss_plot.getViewWidget()  # the loss plot has a widget of its own
    target = view.mapFromScene(vb.mapViewToScene(QPointF(1.0, 1.0)))
    qtbot.mouseMove(view.viewport(), target - QPoint(5, 0))
    qtbot.mouseMove(view.viewport(), target)
    qtbot.waitUntil(lambda: "batch loss" in m.hover_label.text(), timeout=2000)
    text = m.hover_label.text()
    assert text.startswith("epoch 1.0") or text.startswith("epoch 0.9"), text
    assert "batch loss 1 " in text and "epoch 1: train loss 1.5, val loss 1.4" in text


def test_unreadable_image_fails_cleanly(qtbot, dock, state):
    train_ids = [r.id for r in state.project.images_in_split("train")]
    state.project.image_path(train_ids[0]).write_bytes(b"not an image")
    failures = []
    dock.controller.failed.connect(lambda *a: failures.append(a))
    request_start(qtbot, dock, tiny_spec())
    with qtbot.waitSignal(dock.controller.finished, timeout=TIMEOUT_MS) as blocker:
        pass
    assert [kind for kind, _ in failures] == ["bad_image"]
    assert "Unreadable image" in dock.monitor.status_label.text()
    run = RunStore(state.project).get(blocker.args[0])
    assert run.status == "failed" and run.error
    assert job_ended(dock.controller)
