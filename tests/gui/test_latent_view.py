"""The Latent space and Anomalies views of Inspect mode, driven with real mouse events."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PySide6.QtCore import QPoint, QPointF, Qt

from tlstudio.core.demo import create_demo_project
from tlstudio.core.project import Project
from tlstudio.core.runs import RunStore

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, int, int]:
    """(project folder, classify run, autoencoder run) on a 24-image demo project."""
    from tlstudio.ml import runner
    from tlstudio.ml.runner import RunSpec
    from tlstudio.ml.trainer import TrainConfig

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("latent") / "demo"
    project = create_demo_project(root, n_images=24, size=64)
    clf = runner.train(
        project,
        RunSpec(task="classify", backbone="efficientnet_lite0", weights="bundled",
                input_size=96, train=TrainConfig(epochs=3, lr=3e-3, batch_size=8)),
    ).run_id  # fmt: skip
    ae = runner.train(
        project,
        RunSpec(task="autoencode", backbone="resnet18", weights="none", input_size=64,
                model_options={"encoder": "small", "latent_dim": 8},
                train=TrainConfig(epochs=1, lr=1e-3, batch_size=8)),
    ).run_id  # fmt: skip
    project.close()
    return root, clf, ae


@pytest.fixture
def state(qtbot, trained):
    from tlstudio.gui.state import AppState

    s = AppState()
    s.open_project(Project.open(trained[0]))
    yield s
    s.close_project()


@pytest.fixture
def latent(qtbot, state, trained):
    from tlstudio.gui.inspect.latent_view import LatentView

    state.set_run(trained[1])
    view = LatentView(state)
    qtbot.addWidget(view)
    view.resize(900, 600)
    view.show()
    qtbot.waitExposed(view)
    with qtbot.waitSignal(view.computed, timeout=120_000):
        qtbot.mouseClick(view.compute_button, Qt.MouseButton.LeftButton)
    yield view
    view.shutdown()


def viewport_pos(view, x: float, y: float) -> QPoint:
    """Viewport pixel of data point (x, y) of the latent plot."""
    scene = view.viewbox.mapViewToScene(QPointF(float(x), float(y)))
    return view.plot.mapFromScene(scene)


def drag(qtbot, view, corners, modifier=Qt.KeyboardModifier.NoModifier) -> None:
    """Press at the first data point of ``corners``, move through the others, release."""
    vp = view.plot.viewport()
    pts = [viewport_pos(view, *c) for c in corners]
    qtbot.mousePress(vp, Qt.MouseButton.LeftButton, modifier, pts[0])
    for a, b in zip(pts, pts[1:], strict=False):
        for t in np.linspace(0.1, 1.0, 6):
            qtbot.mouseMove(vp, a + (b - a) * float(t))
            qtbot.wait(12)  # pyqtgraph drops moves closer than 10 ms (mouseRateLimit)
    qtbot.mouseRelease(vp, Qt.MouseButton.LeftButton, modifier, pts[-1])


def test_clicking_a_point_opens_that_image_and_empty_space_opens_nothing(qtbot, latent):
    ids, xy = latent.image_ids, latent.coordinates
    assert sorted(ids) == latent.app_state.project.image_ids()
    assert xy.shape == (24, 2)
    # the most isolated point, so the click cannot hit a neighbour
    d = np.linalg.norm((xy[:, None] - xy[None]) / np.ptp(xy, axis=0), axis=2)
    np.fill_diagonal(d, np.inf)
    k = int(np.argmax(d.min(axis=1)))
    pos = viewport_pos(latent, *xy[k])
    with qtbot.waitSignal(latent.open_image, timeout=2000) as blocker:
        qtbot.mouseClick(latent.plot.viewport(), Qt.MouseButton.LeftButton, pos=pos)
    assert blocker.args == [ids[k]]
    corner = latent.plot.viewport().rect().topLeft() + QPoint(3, 3)
    with qtbot.assertNotEmitted(latent.open_image, wait=100):
        qtbot.mouseClick(latent.plot.viewport(), Qt.MouseButton.LeftButton, pos=corner)


def test_hovering_a_point_shows_its_thumbnail_popup(qtbot, latent):
    xy = latent.coordinates
    k = int(np.argmax(xy[:, 1]))
    qtbot.mouseMove(latent.plot.viewport(), viewport_pos(latent, *xy[k]))
    qtbot.waitUntil(lambda: latent.popup.isVisible(), timeout=2000)
    name = latent.app_state.project.image(latent.image_ids[k]).name
    assert name in latent.popup_text.text()
    qtbot.waitUntil(lambda: not latent.popup_image.pixmap().isNull(), timeout=5000)


def test_lasso_then_label_selection_tags_exactly_those_images_in_one_undo_step(qtbot, latent):
    state = latent.app_state
    project = state.project
    ids, xy = latent.image_ids, latent.coordinates
    before = {i: project.tags(i) for i in ids}
    # a rectangle lasso over the left part of the points, its right edge in the widest
    # gap between two neighbouring x positions near the middle (a pixel from a point, a
    # rounding would decide)
    xs = np.sort(xy[:, 0])
    split = 8 + int(np.argmax(np.diff(xs)[8:16]))  # the gap between xs[split] and xs[split+1]
    thr = float((xs[split] + xs[split + 1]) / 2)
    n = split + 1
    span = np.ptp(xy, axis=0)
    lo, hi = xy.min(axis=0) - 0.02 * span, xy.max(axis=0) + 0.02 * span
    corners = [(lo[0], lo[1]), (thr, lo[1]), (thr, hi[1]), (lo[0], hi[1])]
    expected = sorted(i for i, x in zip(ids, xy[:, 0], strict=True) if x < thr)
    assert len(expected) == n

    qtbot.mouseClick(latent.lasso_button, Qt.MouseButton.LeftButton)
    assert latent.lasso_button.isChecked()
    drag(qtbot, latent, corners)
    assert sorted(latent.selected_ids) == expected
    assert latent.selected_label.text() == f"{n} selected"

    circle = project.class_by_name("circle").id
    latent.class_combo.setCurrentIndex(latent.class_combo.findData(circle))
    qtbot.mouseClick(latent.label_button, Qt.MouseButton.LeftButton)
    for i in ids:
        assert project.tags(i) == ((circle,) if i in expected else before[i]), i
    state.undo_stack.undo()
    assert {i: project.tags(i) for i in ids} == before


def test_shift_drag_draws_a_lasso_and_a_plain_drag_pans(qtbot, latent):
    xy = latent.coordinates
    (x0, y0), (x1, y1) = xy.min(axis=0), xy.max(axis=0)
    pad = 0.02 * np.ptp(xy, axis=0)
    everything = [(x0 - pad[0], y0 - pad[1]), (x1 + pad[0], y0 - pad[1]),
                  (x1 + pad[0], y1 + pad[1]), (x0 - pad[0], y1 + pad[1])]  # fmt: skip
    assert not latent.lasso_button.isChecked()
    drag(qtbot, latent, everything, Qt.KeyboardModifier.ShiftModifier)
    assert latent.selected_label.text() == "24 selected"
    qtbot.keyClick(latent, Qt.Key.Key_Escape)
    assert latent.selected_label.text() == "0 selected"
    before = latent.viewbox.viewRange()
    drag(qtbot, latent, everything[:2])
    assert latent.selected_label.text() == "0 selected"
    assert latent.viewbox.viewRange()[0] != before[0]  # the view moved instead


def test_colour_by_prediction_follows_new_predictions(qtbot, latent, trained):
    from tlstudio.ml import runner

    latent.colour_combo.setCurrentIndex(latent.colour_combo.findData("prediction"))
    assert "no prediction" in latent.legend_label.text()
    runner.predict(latent.app_state.project, trained[1], device="cpu")
    latent.app_state.predictions_changed.emit()
    qtbot.waitUntil(lambda: "no prediction" not in latent.legend_label.text(), timeout=10_000)
    assert "circle" in latent.legend_label.text()


def test_anomaly_view_ranks_by_error_shows_reconstruction_and_opens_on_double_click(
    qtbot, state, trained
):
    from tlstudio.gui.inspect.anomaly_view import AnomalyView

    state.set_run(trained[2])
    view = AnomalyView(state)
    qtbot.addWidget(view)
    view.resize(900, 600)
    with qtbot.waitSignal(view.ranked, timeout=60_000):
        view.show()
    ranking = view.ranking()
    assert len(ranking) == 24
    errors = [e for _, e in ranking]
    assert errors == sorted(errors, reverse=True)
    stored = RunStore(state.project).prediction(trained[2], ranking[0][0])
    assert stored.payload["error"] == pytest.approx(errors[0])

    index = view.model.index(0)
    rect = view.list_view.visualRect(index)
    with qtbot.waitSignal(view.reconstruction_shown_for, timeout=30_000) as shown:
        qtbot.mouseClick(view.list_view.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert shown.args == [ranking[0][0]]
    assert not view.recon_label.pixmap().isNull()
    assert f"{errors[0]:.4g}" in view.error_label.text()
    with qtbot.waitSignal(view.open_image, timeout=2000) as opened:
        qtbot.mouseDClick(view.list_view.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert opened.args == [ranking[0][0]]
    view.shutdown()


def test_anomaly_view_explains_it_needs_an_autoencoder(qtbot, state, trained):
    from tlstudio.gui.inspect.anomaly_view import AnomalyView

    state.set_run(trained[1])
    view = AnomalyView(state)
    qtbot.addWidget(view)
    view.show()
    assert "needs an autoencoder run" in view.info_label.text()
    assert "classify" in view.info_label.text()
    assert not view.list_view.isVisible()
    view.shutdown()


def test_scatter_category_path_draws_the_same_pixels_as_plain_set_data(qtbot):
    """The fast path writes pyqtgraph's per-point records itself; it must draw exactly
    what ``setData(brush=[...])`` draws (guards against pyqtgraph internals changing)."""
    import pyqtgraph as pg

    from tlstudio.gui.inspect.latent_scatter import AtlasScatter as _Scatter

    rng = np.random.default_rng(0)
    xy = rng.normal(size=(300, 2))
    cats = rng.integers(0, 3, 300)
    brushes = [pg.mkBrush(c) for c in ("#e15759", "#4e79a7", "#59a14f")]
    images = []
    for fast in (True, False):
        plot = pg.PlotWidget(background="w")
        qtbot.addWidget(plot)
        plot.resize(300, 300)
        item = _Scatter(pxMode=True, useCache=True, size=8, pen=pg.mkPen(0, 0, 0, 70))
        plot.addItem(item)
        if fast:
            item.set_points(xy[:, 0], xy[:, 1], np.zeros(300, np.int64), brushes)
            item.set_categories(cats, brushes)
        else:
            item.setData(x=xy[:, 0], y=xy[:, 1], brush=[brushes[c] for c in cats])
        plot.getViewBox().setRange(xRange=(-3, 3), yRange=(-3, 3), padding=0)
        images.append(plot.grab().toImage())
    assert images[0] == images[1]
    red = sum(
        images[0].pixelColor(x, y).name() == "#e15759"
        for x in range(0, 300, 2)
        for y in range(0, 300, 2)
    )
    assert red > 50  # points were drawn at all
