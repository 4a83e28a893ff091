"""The Explain view: a real trained run, driven through its combos, buttons and slider."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PySide6.QtCore import Qt

from tlstudio.core.project import Project
from tlstudio.core.runs import RunStore
from tlstudio.gui.inspect.explain_view import ExplainView
from tlstudio.gui.state import AppState

WAIT_MS = 30_000


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def trained_root(tmp_path_factory):
    """A demo project (12 images, 128 px) with one EfficientNet-Lite0 classifier run."""
    from tlstudio.core.demo import create_demo_project
    from tlstudio.ml import runner
    from tlstudio.ml.runner import RunSpec
    from tlstudio.ml.trainer import TrainConfig

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("explain_gui") / "demo"
    project = create_demo_project(root, n_images=12, size=128)
    spec = RunSpec(
        task="classify", backbone="efficientnet_lite0", weights="bundled", input_size=96,
        train=TrainConfig(epochs=5, lr=3e-3, batch_size=8, freeze="all", device="cpu"),
    )  # fmt: skip
    run_id = runner.train(project, spec).run_id
    project.close()
    return root, run_id


def _shown_view(qtbot, root, run_id: int) -> ExplainView:
    """An ExplainView over the project at ``root``, shown, with run ``run_id`` explained."""
    state = AppState()
    state.open_project(Project.open(root))
    v = ExplainView(state)
    qtbot.addWidget(v)
    v.resize(1000, 700)
    v.show()
    qtbot.waitExposed(v)
    with qtbot.waitSignal(v.explained, timeout=WAIT_MS):
        state.set_run(run_id)
    return v


@pytest.fixture
def view(qtbot, trained_root):
    v = _shown_view(qtbot, *trained_root)
    yield v
    v.shutdown()
    v.app_state.close_project()


def _choose(qtbot, view, combo, index: int) -> None:
    """Move a combo to ``index`` with the arrow keys, as a user would, and wait for the map."""
    combo.setFocus()
    with qtbot.waitSignal(view.explained, timeout=WAIT_MS):
        key = Qt.Key.Key_Down if index > combo.currentIndex() else Qt.Key.Key_Up
        while combo.currentIndex() != index:
            qtbot.keyClick(combo, key)


def test_heatmap_is_shown_over_the_image_and_follows_method_and_target(qtbot, view):
    state = view.app_state
    first = state.project.image_ids()[0]
    image = state.project.image(first)
    result = view.result
    hm = result["heatmap"]
    assert result["request"].image_id == first and hm.method == "gradcam"
    assert hm.values.shape == (image.height, image.width)
    pix = view.view.heat_item.pixmap()
    assert not pix.isNull() and (pix.width(), pix.height()) == (image.width, image.height)
    predicted = state.project.classes()[hm.target].name
    assert f"predicted: {predicted} · logit" in view.score_label.text()

    _choose(qtbot, view, view.method_combo, 1)
    assert view.result["heatmap"].method == "gradcam++"
    assert "Grad-CAM++ at stage4" in view.score_label.text()

    maps = {}
    for index in (1, 2):  # the first two classes, by name
        _choose(qtbot, view, view.target_combo, index)
        hm = view.result["heatmap"]
        assert hm.target == index - 1
        assert state.project.classes()[index - 1].name in view.score_label.text()
        maps[index] = hm.values
    assert np.abs(maps[1] - maps[2]).mean() > 0.01  # another class, another heatmap

    model = view._cache.get(state.project.root, state.run_id)[0].model
    assert not any(m._forward_hooks or m._backward_hooks for m in model.modules())


def test_step_layers_activations_opacity_and_open(qtbot, view):
    state = view.app_state
    ids = state.project.image_ids()
    with qtbot.waitSignal(view.explained, timeout=WAIT_MS):
        for _ in range(3):  # quick clicks: older requests are superseded
            qtbot.mouseClick(view.next_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: view.result["request"].image_id == ids[3], timeout=WAIT_MS)
    assert state.image_id == ids[3]
    assert view.image_label.text().endswith(f"(4/{len(ids)})")

    layers = [view.layer_combo.itemText(i) for i in range(view.layer_combo.count())]
    assert layers == ["stem", "stage1", "stage2", "stage3", "stage4"]
    _choose(qtbot, view, view.layer_combo, 2)
    assert view.result["heatmap"].layer == "stage2"

    qtbot.mouseClick(view.tabs.tabBar(), Qt.MouseButton.LeftButton,
                     pos=view.tabs.tabBar().tabRect(1).center())  # fmt: skip
    assert view.tabs.currentIndex() == 1
    assert view.result["n_maps"] == 32 and not view.activation_label.pixmap().isNull()
    assert "stage2: the 32 feature maps" in view.activation_title.text()
    assert not view.filters_label.pixmap().isNull()
    assert "32 RGB filters" in view.filters_title.text()

    view.opacity_slider.setFocus()
    qtbot.keyClick(view.opacity_slider, Qt.Key.Key_End)
    assert view.view.heat_item.opacity() == pytest.approx(1.0)

    view.tabs.setCurrentIndex(0)
    with qtbot.waitSignal(view.open_image, timeout=2000) as opened:
        qtbot.mouseDClick(view.view.viewport(), Qt.MouseButton.LeftButton)
    assert opened.args == [ids[3]]


def test_a_run_without_its_model_file_says_so_and_detection_offers_eigencam_only(
    qtbot, view, trained_root
):
    state = view.app_state
    runs = RunStore(state.project)
    bad = runs.start("detect", "resnet18", {"task": "detect", "backbone": "resnet18"})
    runs.update(bad, status="finished", checkpoint=f"runs/{bad}/model.pt")
    with qtbot.waitSignal(view.message, timeout=WAIT_MS) as said:
        state.set_run(bad)
    assert f"run {bad}" in said.args[0] and "is missing" in said.args[0]
    assert "is missing" in view.status_label.text()
    items = view.method_combo.model()
    assert [items.item(i).isEnabled() for i in range(4)] == [False, False, True, False]
    assert view.method_combo.currentData() == "eigencam"
    assert not view.target_combo.isEnabled()

    with qtbot.waitSignal(view.explained, timeout=WAIT_MS):
        state.set_run(trained_root[1])
    assert all(items.item(i).isEnabled() for i in range(4))


def test_nothing_is_computed_while_hidden(qtbot, view):
    state = view.app_state
    shown = view.result
    view.hide()
    state.set_image(state.project.image_ids()[5])
    qtbot.wait(200)
    assert view.result is shown and not view._busy
    with qtbot.waitSignal(view.explained, timeout=WAIT_MS):
        view.show()
    assert view.result["request"].image_id == state.project.image_ids()[5]


def test_the_inspect_panel_builds_the_explain_tab_for_the_picked_run(qtbot, trained_root):
    from tlstudio.gui.inspect import panel as inspect_panel

    root, run_id = trained_root
    state = AppState()
    state.open_project(Project.open(root))
    explain = [v for v in inspect_panel.VIEWS if v[0] == "Explain"]
    host = inspect_panel.InspectPanel(state, views=tuple(explain))
    qtbot.addWidget(host)
    state.set_run(run_id)  # other tests of this file may have added runs
    assert host.run_combo.currentData() == run_id
    host.show()
    view = host.view("Explain")
    assert isinstance(view, ExplainView)
    qtbot.waitUntil(lambda: view.result is not None, timeout=WAIT_MS)
    assert view.result["request"].run_id == run_id
    host.shutdown()
    state.close_project()


def test_the_view_stays_usable_while_score_cam_computes(qtbot, view):
    combo = view.method_combo
    combo.setFocus()
    while combo.currentIndex() != 3:  # Score-CAM: 64 masked forward passes, in the worker
        qtbot.keyClick(combo, Qt.Key.Key_Down)
    assert view._busy and view.status_label.text() == "Computing…"
    view.opacity_slider.setFocus()
    qtbot.keyClick(view.opacity_slider, Qt.Key.Key_Home)  # handled at once, mid-computation
    assert view.view.heat_item.opacity() == 0.0 and view._busy
    qtbot.waitUntil(lambda: view.result["heatmap"].method == "scorecam", timeout=WAIT_MS)
    assert "Score-CAM at stage4" in view.score_label.text()


@pytest.fixture(scope="module")
def ensemble_root(tmp_path_factory):
    """A demo project (12 images, 64 px): two few-shot EfficientNet-Lite0 classifiers and
    the ensemble of both (members, ensemble run id)."""
    from tlstudio.core.demo import create_demo_project
    from tlstudio.ml import experiments
    from tlstudio.ml.ensemble import create_ensemble

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("explain_ens") / "demo"
    project = create_demo_project(root, n_images=12, size=64)
    members = [experiments.fit_sklearn_run(project, "efficientnet_lite0", "bundled", kind, 64,
                                           device="cpu")[0]
               for kind in ("logreg", "prototype")]  # fmt: skip
    run_id = create_ensemble(project, members)
    project.close()
    return root, members, run_id


def test_an_ensemble_shows_its_members_mean_heatmap_and_points_to_them_for_activations(
    qtbot, ensemble_root
):
    from tlstudio.ml.explain import load_explainer

    root, members, run_id = ensemble_root
    view = _shown_view(qtbot, root, run_id)
    state = view.app_state
    hm = view.result["heatmap"]
    predicted = state.project.classes()[hm.target].name
    assert f"Grad-CAM at stage4 · mean of 2 members · predicted: {predicted}" in (
        view.score_label.text()
    )
    assert not view.view.heat_item.pixmap().isNull()

    _choose(qtbot, view, view.layer_combo, 3)  # one backbone: its stages are offered
    hm = view.result["heatmap"]
    assert hm.layer == "stage3"
    rgb = view.result["rgb"]
    own = [load_explainer(state.project, m).heatmap(rgb, "gradcam", hm.target, "stage3")
           for m in members]  # fmt: skip
    np.testing.assert_allclose(hm.values, (own[0].values + own[1].values) / 2, atol=1e-6)

    qtbot.mouseClick(view.tabs.tabBar(), Qt.MouseButton.LeftButton,
                     pos=view.tabs.tabBar().tabRect(1).center())  # fmt: skip
    note = view.activation_title.text()
    assert f"ensemble of runs #{members[0]}, #{members[1]}" in note and "Pick one" in note
    assert view.activation_label.pixmap().isNull() and view.filters_label.pixmap().isNull()

    with qtbot.waitSignal(view.explained, timeout=WAIT_MS):
        state.set_run(members[0])  # a member has its own maps and filters again
    assert "feature maps with the highest mean activation" in view.activation_title.text()
    assert not view.activation_label.pixmap().isNull()
    view.shutdown()
    state.close_project()
