"""The training configuration panel, driven through its widgets; assertions on spec()."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog, QMessageBox, QPushButton

sys.path.insert(0, str(Path(__file__).parent))
from combo_support import choose_by_data  # noqa: E402

sys.path.pop(0)


@pytest.fixture
def demo_state(qtbot, tmp_path):
    from tlstudio.core.demo import create_demo_project
    from tlstudio.gui.state import AppState

    state = AppState()
    state.open_project(create_demo_project(tmp_path / "p", n_images=12, size=64))
    yield state
    state.close_project()


def _open_panel(qtbot, state, qsettings):
    from tlstudio.gui.training.config_panel import TrainConfigPanel

    panel = TrainConfigPanel(state, settings=qsettings)
    qtbot.addWidget(panel)
    panel.resize(900, 800)
    panel.show()
    qtbot.waitExposed(panel)
    panel.wait_ready()
    qtbot.waitUntil(panel.has_facts, timeout=10000)
    qtbot.mouseClick(panel.view_button, Qt.MouseButton.LeftButton)  # the full view
    assert not panel.is_quick_view()
    return panel


@pytest.fixture
def panel(qtbot, demo_state, qsettings, torch_home):
    p = _open_panel(qtbot, demo_state, qsettings)
    yield p
    p.wait_idle()


def _select_backbone(qtbot, panel, name: str) -> None:
    table = panel.backbone_table.table
    row = [table.item(r, 0).text() for r in range(table.rowCount())].index(name)
    table.scrollToItem(table.item(row, 0))
    rect = table.visualItemRect(table.item(row, 0))
    qtbot.mouseClick(table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert panel.backbone_table.backbone() == name


def _select_task(qtbot, panel, task: str) -> None:
    choose_by_data(qtbot, panel.task_combo, task)


# --------------------------------------------------------------------------- start-up


def test_importing_the_panel_does_not_import_torch():
    code = (
        "import sys, tlstudio.gui.training.config_panel, tlstudio.gui.training.backbone_table, "
        "tlstudio.gui.training.freeze_strip, tlstudio.gui.training.augment_preview\n"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --------------------------------------------------------------------------- presets


def test_presets_fill_the_settings_and_an_edit_makes_custom(qtbot, panel):
    from tlstudio.ml.transforms import AugmentConfig

    assert panel.preset() == "feature_extraction"
    s = panel.spec()
    assert (s.train.freeze, s.train.lr, s.train.epochs, s.augment) == ("all", 3e-3, 30, None)
    combo = panel.preset_combo
    combo.setFocus()
    qtbot.keyClick(combo, Qt.Key.Key_Down)
    assert panel.preset() == "fine_tune_top"
    s = panel.spec()
    n = len(panel.freeze_strip.stage_states())
    assert s.train.freeze == n - 2 and s.train.lr == 1e-3 and s.train.stage_lr_decay == 0.5
    assert s.augment == AugmentConfig()
    qtbot.keyClick(combo, Qt.Key.Key_Down)
    s = panel.spec()
    assert panel.preset() == "full"
    assert (s.train.freeze, s.train.lr, s.train.stage_lr_decay) == (0, 3e-4, 1.0)
    assert s.augment == AugmentConfig()
    qtbot.keyClick(combo, Qt.Key.Key_Down)
    s = panel.spec()
    assert panel.preset() == "progressive"
    assert (s.train.freeze, s.train.progressive_every, s.train.head_warmup_epochs) == ("all", 3, 2)

    # open the advanced settings and step the learning rate up: the strategy is now Custom
    qtbot.mouseClick(panel.advanced_button, Qt.MouseButton.LeftButton)
    lr_spin = panel.options_editor.widget("lr")
    assert lr_spin.isVisible()
    lr_spin.setFocus()
    qtbot.keyClick(lr_spin, Qt.Key.Key_Up)
    assert panel.preset() == "custom"
    assert panel.spec().train.lr == pytest.approx(2e-3)
    assert panel.spec().train.progressive_every == 3  # the rest stays as the preset left it
    # choosing a strategy again overwrites the edit
    combo.setFocus()
    qtbot.keyClick(combo, Qt.Key.Key_Home)
    assert panel.preset() == "feature_extraction" and panel.spec().train.lr == 3e-3


def test_fine_tune_preset_follows_the_backbones_stage_count(qtbot, panel):
    combo = panel.preset_combo
    combo.setFocus()
    qtbot.keyClick(combo, Qt.Key.Key_Down)  # fine-tune top stages: all but the top two
    _select_backbone(qtbot, panel, "convnext_tiny")  # 4 stages instead of 5
    assert panel.spec().train.freeze == 2
    assert panel.preset() == "fine_tune_top"


# --------------------------------------------------------------------------- freeze strip


def test_slider_sets_freeze_depth_and_greys_stages(qtbot, panel):
    strip = panel.freeze_strip
    qtbot.waitUntil(lambda: strip.stage_counts() is not None, timeout=10000)
    counts = strip.stage_counts()
    assert sum(counts) == panel.backbone_table.spec().num_params
    assert strip.stage_states() == ["frozen"] * 5
    assert strip.trainable_text() == "trainable parameters: 0 of 3.4 M"

    strip.slider.setFocus()
    qtbot.keyClick(strip.slider, Qt.Key.Key_Left)
    assert panel.spec().train.freeze == 4
    assert strip.stage_states() == ["frozen"] * 4 + ["trainable"]
    assert strip.trainable_text() == f"trainable parameters: {counts[4] / 1e6:.1f} M of 3.4 M"
    assert panel.preset() == "custom"

    qtbot.keyClick(strip.slider, Qt.Key.Key_Home)
    assert panel.spec().train.freeze == 0
    assert strip.stage_states() == ["trainable"] * 5
    assert strip.trainable_text() == "trainable parameters: 3.4 M of 3.4 M"

    # clicking a trainable stage box freezes up to and including it
    row = strip.row
    rects = row._rects()
    qtbot.mouseClick(row, Qt.MouseButton.LeftButton, pos=rects[1].center().toPoint())
    assert panel.spec().train.freeze == 2
    assert strip.stage_states() == ["frozen", "frozen", "trainable", "trainable", "trainable"]
    qtbot.keyClick(strip.slider, Qt.Key.Key_End)
    assert panel.spec().train.freeze == "all"


# --------------------------------------------------------------------------- tasks


def _tags_only_project(root: Path):
    import cv2

    from tlstudio.core.project import Project

    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(6):
        cv2.imwrite(str(root / f"img{i}.png"), rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))
    project = Project.create(root)
    project.add_images([root])
    a, b = project.add_class("cat"), project.add_class("dog")
    for i, image_id in enumerate(project.image_ids()):
        project.set_tags(image_id, [a.id if i % 2 else b.id])
    return project


def test_tasks_without_labels_are_disabled_with_the_reason(qtbot, tmp_path, qsettings, torch_home):
    from tlstudio.core.annotations import Box
    from tlstudio.core.commands import AddBox
    from tlstudio.gui.state import AppState

    state = AppState()
    state.open_project(_tags_only_project(tmp_path / "tags"))
    try:
        panel = _open_panel(qtbot, state, qsettings)
        model = panel.task_combo.model()
        index = {panel.task_combo.itemData(i): i for i in range(panel.task_combo.count())}
        detect = model.item(index["detect"])
        assert not detect.isEnabled()
        assert "no boxes labelled" in detect.text()
        assert "no boxes labelled" in detect.toolTip()
        assert not model.item(index["segment"]).isEnabled()
        assert model.item(index["classify"]).isEnabled()
        assert panel.task() == "classify"
        assert panel.train_button.isEnabled()

        # the keyboard skips the disabled tasks
        panel.task_combo.setFocus()
        qtbot.keyClick(panel.task_combo, Qt.Key.Key_Down)
        assert panel.task() == "autoencode"

        # a previous run's detection config can be shown, but not trained
        spec = panel.spec()
        spec.task = "detect"
        panel.set_spec(spec)
        assert not panel.train_button.isEnabled()
        assert "no boxes labelled" in panel.train_button.toolTip()
        assert "no boxes labelled" in panel.problem_label.text()

        # labelling a box enables detection (data_changed, debounced, in the background)
        state.push(AddBox(state.project.image_ids()[0], Box(panel_class(state), 2, 2, 20, 20)))
        qtbot.waitUntil(lambda: model.item(index["detect"]).isEnabled(), timeout=10000)
        assert model.item(index["detect"]).text() == "Detection"
        qtbot.waitUntil(panel.train_button.isEnabled, timeout=5000)
        panel.wait_idle()
    finally:
        state.close_project()


def panel_class(state) -> int:
    return state.project.classes()[0].id


# --------------------------------------------------------------------------- fast path


def test_fast_path_note_shows_exactly_for_frozen_backbone_without_augmentation(qtbot, panel):
    from tlstudio.ml.runner import uses_feature_cache

    note = panel.fast_path_label

    def check(expected: bool) -> None:
        assert uses_feature_cache(panel.spec()) is expected
        assert note.isVisible() is expected

    check(True)  # classification, feature extraction, augmentation off
    qtbot.mouseClick(panel.augment_switch, Qt.MouseButton.LeftButton)
    assert panel.spec().augment is not None
    check(False)
    qtbot.mouseClick(panel.augment_switch, Qt.MouseButton.LeftButton)
    check(True)
    panel.freeze_strip.slider.setFocus()
    qtbot.keyClick(panel.freeze_strip.slider, Qt.Key.Key_Left)
    check(False)
    qtbot.keyClick(panel.freeze_strip.slider, Qt.Key.Key_End)
    check(True)
    _select_task(qtbot, panel, "detect")  # only classification heads train on cached features
    check(False)


# --------------------------------------------------------------------------- weights


def test_import_of_a_mismatched_weights_file_names_the_file(
    qtbot, panel, tmp_path, monkeypatch, torch_home
):
    import torch

    bad = tmp_path / "not_resnet.pth"
    torch.save({"fc.weight": torch.zeros(3, 3)}, bad)
    _select_backbone(qtbot, panel, "resnet18")
    asked, shown = [], []
    monkeypatch.setattr(
        QFileDialog, "getOpenFileName", lambda *a, **k: (asked.append(a), (str(bad), ""))[1]
    )
    monkeypatch.setattr(QMessageBox, "critical", lambda parent, title, text, *a: shown.append(text))
    qtbot.mouseClick(panel.backbone_table.import_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: bool(shown), timeout=10000)
    assert asked
    assert "not_resnet.pth" in shown[0]
    assert "resnet18" in shown[0]
    assert "missing key" in shown[0] and "shape mismatch" in shown[0]
    assert not (torch_home / "hub").exists() or not any((torch_home / "hub").rglob("*.pth"))
    assert panel.backbone_table.status("resnet18").cached is False


def test_import_of_a_good_weights_file_makes_cached_available(
    qtbot, panel, tmp_path, monkeypatch, torch_home
):
    from tlstudio.ml.backbones import build_architecture

    good = tmp_path / "mnv3s.pth"
    import torch

    torch.save(build_architecture("mobilenet_v3_small").state_dict(), good)
    _select_backbone(qtbot, panel, "mobilenet_v3_small")
    assert not panel.train_button.isEnabled()  # auto: no weights on this computer
    assert "no pretrained weights" in panel.train_button.toolTip()
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(good), ""))
    monkeypatch.setattr(QMessageBox, "critical", lambda *a: pytest.fail(f"error shown: {a[2]}"))
    table = panel.backbone_table
    with qtbot.waitSignal(table.status_refreshed, timeout=15000):
        qtbot.mouseClick(table.import_button, Qt.MouseButton.LeftButton)
    assert table.status("mobilenet_v3_small").cached
    row = [table.table.item(r, 0).text() for r in range(table.table.rowCount())].index(
        "mobilenet_v3_small"
    )
    assert table.table.item(row, 5).text() == "cached"
    assert panel.train_button.isEnabled()


def test_download_failure_offline_is_explained(qtbot, panel, monkeypatch):
    from tlstudio.ml import weights as W

    def offline(name, progress=None, **kw):
        raise W.WeightsError(
            f"{name}: download from https://download.pytorch.org/x.pth failed "
            "(<urlopen error [Errno -3] Temporary failure in name resolution>)"
        )

    monkeypatch.setattr(W, "download_weights", offline)
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Yes)
    shown = []
    monkeypatch.setattr(QMessageBox, "critical", lambda parent, title, text, *a: shown.append(text))
    _select_backbone(qtbot, panel, "resnet18")
    button = panel.backbone_table.download_button
    assert button.isEnabled()
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: bool(shown), timeout=10000)
    assert "offline" in shown[0] and "Import weights file" in shown[0]
    assert "Temporary failure in name resolution" in shown[0]
    assert button.isEnabled()


def test_download_can_be_cancelled(qtbot, panel, monkeypatch):
    import time

    from tlstudio.ml import weights as W

    def slow(name, progress=None, **kw):
        for i in range(500):
            progress(i, 500)  # raises once the user cancels
            time.sleep(0.01)
        raise AssertionError("not cancelled")

    monkeypatch.setattr(W, "download_weights", slow)
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Yes)
    monkeypatch.setattr(QMessageBox, "critical", lambda *a: pytest.fail(f"error shown: {a[2]}"))
    table = panel.backbone_table
    _select_backbone(qtbot, panel, "resnet18")
    qtbot.mouseClick(table.download_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: table._progress is not None and table._progress.value() > 0)
    cancel = table._progress.findChild(QPushButton)
    qtbot.mouseClick(cancel, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: table._download is None, timeout=5000)
    assert "cancelled" in table.status_label.text()


def test_none_weights_enable_training_a_backbone_without_weights(qtbot, panel):
    _select_backbone(qtbot, panel, "resnet18")
    assert not panel.train_button.isEnabled()
    combo = panel.backbone_table.weights_combo
    combo.setCurrentIndex(combo.findData("none"))
    assert panel.train_button.isEnabled()
    assert panel.spec().weights == "none"


# --------------------------------------------------------------------------- round trip, Train


def test_set_spec_round_trip(qtbot, panel):
    from tlstudio.ml.runner import RunSpec
    from tlstudio.ml.trainer import TrainConfig
    from tlstudio.ml.transforms import AugmentConfig

    spec = RunSpec(
        task="classify",
        backbone="mobilenet_v3_large",
        weights="none",
        train=TrainConfig(
            epochs=7, batch_size=5, lr=2e-4, optimizer="sgd", momentum=0.8, weight_decay=5e-5,
            schedule="onecycle", step_size=3, gamma=0.3, freeze=2, stage_lr_decay=0.7,
            head_warmup_epochs=1, progressive_every=4, early_stopping_patience=6,
            monitor="val_loss", grad_clip=1.5, seed=42, device="cpu", amp=False, num_workers=1,
        ),
        augment=AugmentConfig(
            hflip=0.3, vflip=0.2, rotate_deg=25, scale=(0.8, 1.25), random_resized_crop=False,
            crop_scale=(0.5, 0.9), color_jitter=0.1, random_erasing=0.25, mixup_alpha=0.2,
            cutmix_alpha=1.0,
        ),
        model_options={"label_smoothing": 0.1, "head": "mlp"},
        input_size=192,
        use_feature_cache=False,
    )  # fmt: skip
    panel.set_spec(spec)
    assert panel.spec() == spec
    assert panel.preset() == "custom"
    assert panel.backbone_table.backbone() == "mobilenet_v3_large"
    assert panel.freeze_strip.stage_states() == ["frozen"] * 2 + ["trainable"] * 3

    off = RunSpec(task="detect", train=TrainConfig(epochs=30, lr=3e-3), augment=None)
    panel.set_spec(off)
    assert panel.spec() == off
    assert panel.preset() == "feature_extraction"

    lm = RunSpec(task="landmarks", template_id=demo_template(panel), augment=None)
    panel.set_spec(lm)
    assert panel.spec() == lm
    assert panel.template_combo.isVisible()


def demo_template(panel) -> int:
    return panel.app_state.project.templates()[0].id


def test_train_button_emits_the_spec_and_running_locks_the_panel(qtbot, panel):
    assert panel.train_button.isEnabled()
    with qtbot.waitSignal(panel.start_requested) as blocker:
        qtbot.mouseClick(panel.train_button, Qt.MouseButton.LeftButton)
    assert blocker.args[0] == panel.spec()
    panel.set_running(True)
    for w in (panel.train_button, panel.task_combo, panel.preset_combo, panel.freeze_strip,
              panel.backbone_table.table, panel.augment_switch, panel.preview.shuffle_button):  # fmt: skip
        assert not w.isEnabled()
    with qtbot.assertNotEmitted(panel.start_requested):
        qtbot.mouseClick(panel.train_button, Qt.MouseButton.LeftButton)
    panel.set_running(False)
    assert panel.train_button.isEnabled() and panel.freeze_strip.isEnabled()


# --------------------------------------------------------------------------- split summary


def test_split_summary_counts_images_per_class_and_warns(qtbot, panel):
    project = panel.app_state.project
    table = panel.split_table
    names = [table.verticalHeaderItem(r).text() for r in range(table.rowCount())]
    assert names == [c.name for c in project.classes()]
    for r, cls in enumerate(project.classes()):
        for c, split in enumerate(("train", "val", "test")):
            expected = sum(
                1 for rec in project.images_in_split(split) if cls.id in project.tags(rec.id)
            )
            assert table.item(r, c).text() == str(expected)
    assert any("training images" in w for w in panel.split_warnings())  # 12 images, 3 classes

    # move every val image of the first class to train: it is now missing from val
    from tlstudio.core.commands import SetSplits

    first = project.classes()[0]
    moved = {rec.id: "train" for rec in project.images_in_split("val") if first.id in project.tags(rec.id)}  # fmt: skip
    panel.app_state.push(SetSplits(moved))
    qtbot.waitUntil(
        lambda: any(
            f"{first.name}: missing from the validation" in w for w in panel.split_warnings()
        ),
        timeout=10000,
    )


# --------------------------------------------------------------------------- preview


def _wait_preview(qtbot, panel):
    qtbot.waitUntil(lambda: panel.preview.result() is not None and not panel.preview.is_busy(), timeout=20000)  # fmt: skip
    return panel.preview.result()


def test_preview_shows_nine_tiles_that_change_with_the_seed(qtbot, panel):
    qtbot.mouseClick(panel.augment_switch, Qt.MouseButton.LeftButton)
    first = _wait_preview(qtbot, panel)
    assert len(first.images) == 9 and all(not img.isNull() for img in first.images)
    assert all(label.pixmap() is not None and not label.pixmap().isNull() for label in panel.preview.tiles)  # fmt: skip
    panel.preview.shuffle(seed=1)
    qtbot.waitUntil(lambda: panel.preview.result().seed == 1, timeout=20000)
    a = panel.preview.images()
    panel.preview.shuffle(seed=2)
    qtbot.waitUntil(lambda: panel.preview.result().seed == 2, timeout=20000)
    b = panel.preview.images()
    assert any(x != y for x, y in zip(a, b, strict=True))
    panel.preview.shuffle(seed=1)
    qtbot.waitUntil(lambda: panel.preview.result().seed == 1, timeout=20000)
    assert panel.preview.images() == a  # a seed always gives the same tiles
    # the Shuffle button draws new ones
    qtbot.mouseClick(panel.preview.shuffle_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: panel.preview.result().seed != 1, timeout=20000)


def _mirror_only(panel) -> None:
    """Augmentation on, every option off except a certain left-right flip."""
    form = panel.augment_editor.form
    for name in ("rotate_deg", "color_jitter", "random_erasing"):
        form.widget(name).setValue(0)
    form.widget("scale").low.setValue(1.0)
    form.widget("scale").high.setValue(1.0)
    form.widget("random_resized_crop").setChecked(False)
    form.widget("hflip").setValue(1.0)


def test_preview_boxes_and_landmarks_follow_the_flip(qtbot, panel):
    _select_task(qtbot, panel, "detect")
    plain = _wait_preview(qtbot, panel)
    assert plain.task == "detect" and len(plain.samples[0]["boxes"])
    size = plain.frame_size
    assert plain.input_size == 224
    qtbot.mouseClick(panel.augment_switch, Qt.MouseButton.LeftButton)
    _mirror_only(panel)
    qtbot.waitUntil(lambda: panel.preview.result().request.augment is not None
                    and panel.preview.result().request.augment.hflip == 1.0, timeout=20000)  # fmt: skip
    flipped = _wait_preview(qtbot, panel)
    assert flipped.image_id == plain.image_id
    b0, b1 = plain.samples[0]["boxes"], flipped.samples[0]["boxes"]
    np.testing.assert_allclose(b1[:, 0], size - b0[:, 2], atol=1e-3)
    np.testing.assert_allclose(b1[:, 2], size - b0[:, 0], atol=1e-3)
    np.testing.assert_allclose(b1[:, 1::2], b0[:, 1::2], atol=1e-3)
    # the drawn tile is the mirror image of the unaugmented one (image and boxes together)
    a = _rgb(plain.images[0])
    b = _rgb(flipped.images[0])
    assert np.abs(a[:, ::-1].astype(int) - b.astype(int)).mean() < 6
    assert np.abs(a.astype(int) - b.astype(int)).mean() > 10

    # landmarks: points mirror and the left/right pair (right=1, left=3) swaps
    _select_task(qtbot, panel, "landmarks")
    qtbot.waitUntil(lambda: panel.preview.result().task == "landmarks", timeout=20000)
    flipped = _wait_preview(qtbot, panel)
    qtbot.mouseClick(panel.augment_switch, Qt.MouseButton.LeftButton)  # off
    qtbot.waitUntil(lambda: panel.preview.result().request.augment is None, timeout=20000)
    plain = _wait_preview(qtbot, panel)
    k0, k1 = plain.samples[0]["keypoints"], flipped.samples[0]["keypoints"]
    np.testing.assert_allclose(k1[1, 0], size - k0[3, 0], atol=1e-3)
    np.testing.assert_allclose(k1[3, 0], size - k0[1, 0], atol=1e-3)
    np.testing.assert_allclose(k1[0, 0], size - k0[0, 0], atol=1e-3)


def _rgb(image) -> np.ndarray:
    from PySide6.QtGui import QImage

    img = image.convertToFormat(QImage.Format.Format_RGB888)
    w, h = img.width(), img.height()
    buf = np.frombuffer(img.constBits(), np.uint8, count=img.bytesPerLine() * h)
    return buf.reshape(h, img.bytesPerLine())[:, : 3 * w].reshape(h, w, 3).copy()


def test_preview_uses_the_current_image(qtbot, panel):
    project = panel.app_state.project
    target = project.images_in_split("test")[0].id
    panel.app_state.set_image(target)
    qtbot.waitUntil(lambda: panel.preview.result() is not None
                    and panel.preview.result().image_id == target, timeout=20000)  # fmt: skip
    assert project.image(target).name in panel.preview.caption.text()


# --------------------------------------------------------------------------- speed, screenshots


def test_measured_speed_replaces_the_estimate_and_is_kept(qtbot, panel, qsettings, monkeypatch):
    from tlstudio.gui.training import backbone_table as bt

    monkeypatch.setattr(bt, "measure_cpu_ms_per_image", lambda name, size, **kw: 13.0)
    table = panel.backbone_table
    row = [table.table.item(r, 0).text() for r in range(table.table.rowCount())].index(
        "efficientnet_lite0"
    )
    assert table.table.item(row, 3).text() == "≈1.0×"
    qtbot.mouseClick(table.measure_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: table.table.item(row, 3).text() == "13 ms", timeout=10000)
    assert float(qsettings.value("train/cpu_ms_per_image/efficientnet_lite0")) == 13.0
    assert table.measured_ms("efficientnet_lite0") == 13.0


def test_cpu_timing_of_a_small_backbone():
    from tlstudio.gui.training.backbone_table import measure_cpu_ms_per_image

    assert measure_cpu_ms_per_image("mobilenet_v3_small", 64, batch=2, repeats=1) > 0


def test_screenshot_script_runs(qtbot, tmp_path, torch_home, screenshot_script):
    script = screenshot_script("make_screenshots_train")
    paths = script.make_screenshots(tmp_path / "shots", n_images=12)
    assert [p.name for p in paths] == [
        "train_quick.png",
        "train_config.png",
        "train_config_advanced.png",
    ]
    assert all(p.stat().st_size > 10_000 for p in paths)
