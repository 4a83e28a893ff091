"""Instance segmentation: Mask R-CNN over the backbone's feature pyramid, targets from the
project's objects, mask AP (COCO segm) beside box AP, object grids pasted at any image
size, predictions stored per object, and the ONNX export decoded without torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_detect import tiny_backbone

from tlstudio.core.project import Project
from tlstudio.ml.data import ProjectDataset
from tlstudio.ml.metrics import instance_metrics, metrics_fn_for
from tlstudio.ml.tasks.factory import TaskConfigError, build_task_model
from tlstudio.ml.tasks.instances import InstanceModel
from tlstudio.ml.transforms import AugmentConfig, build_train_transform
from tlstudio.runtime.objects import ObjectMask, grid_offset, instance_map, paste_object

S = 64


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def square(x1: int, y1: int, x2: int, y2: int, size: int = S) -> np.ndarray:
    m = np.zeros((size, size), bool)
    m[y1:y2, x1:x2] = True
    return m


def disc(cx: float, cy: float, r: float, size: int = S) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size] + 0.5
    return (xx - cx) ** 2 + (yy - cy) ** 2 < r * r


# --------------------------------------------------------------------------- pasting


def test_a_grid_pastes_into_its_box_at_any_image_size():
    ones = np.ones((28, 28), np.float32)
    obj = paste_object(ones, (10, 20, 40, 50), (100, 100))
    assert obj.box == (10.0, 20.0, 40.0, 50.0) and obj.area == 900
    # cut at the image's edge; a half-ones grid keeps the half over its left columns
    cut = paste_object(ones, (-10.3, 20, 40.6, 50.2), (45, 60))
    assert cut.box == (0.0, 20.0, 41.0, 45.0)
    half = np.zeros((28, 28), np.float32)
    half[:, :14] = 1
    left = paste_object(half, (0, 0, 80, 40), (40, 100))
    assert left.box == (0.0, 0.0, 40.0, 40.0)
    # the grid shift of torchvision's RoIAlign: half an input pixel, in image pixels
    assert grid_offset((64, 64), (640, 320)) == (2.5, 5.0)
    moved = paste_object(ones, (10, 20, 40, 50), (100, 100), grid_offset=(3, 0))
    assert moved.box == (13.0, 20.0, 43.0, 50.0)


def test_earlier_objects_win_where_objects_overlap():
    a, b = ObjectMask.from_mask(square(0, 0, 10, 10)), ObjectMask.from_mask(square(5, 5, 20, 20))
    numbers = instance_map([a, b], (S, S))
    assert (numbers[square(0, 0, 10, 10)] == 1).all()
    assert (numbers[square(5, 5, 20, 20) & ~square(0, 0, 10, 10)] == 2).all()
    assert np.array_equal(b.full((S, S)), square(5, 5, 20, 20))


# --------------------------------------------------------------------------- mask AP


def _target(masks: list[np.ndarray], labels: list[int], ignore=None) -> dict:
    t = {"masks": np.stack(masks), "labels": np.array(labels),
         "boxes": np.array([ObjectMask.from_mask(m).box for m in masks])}  # fmt: skip
    if ignore is not None:
        t["ignore"] = ignore
    return t


def _pred(masks: list[np.ndarray], labels: list[int], scores: list[float]) -> dict:
    objects = [ObjectMask.from_mask(m) for m in masks]
    return {"objects": objects, "labels": np.array(labels), "scores": np.array(scores),
            "boxes": np.array([o.box for o in objects]).reshape(-1, 4)}  # fmt: skip


def test_mask_ap_scores_pixels_where_box_ap_scores_boxes():
    a, b = square(4, 4, 24, 24), disc(44, 40, 12)
    target = _target([a, b], [1, 2])
    perfect = instance_metrics([_pred([a, b], [0, 1], [0.9, 0.8])], [target], 2)
    assert (perfect["segm_map"], perfect["map"]) == pytest.approx((1.0, 1.0))
    # the right box around a ring: box AP 1, mask AP 0 (IoU of the pixels 0.36)
    ring = a & ~square(6, 6, 22, 22)
    hollow = instance_metrics([_pred([ring, b], [0, 1], [0.9, 0.8])], [target], 2)
    assert (hollow["map50"], hollow["segm_map50"]) == pytest.approx((1.0, 0.5))  # 1 class of 2
    row = hollow["per_class"][0]
    assert (row["segm_ap50"], row["ap50"], row["num_gt"]) == pytest.approx((0.0, 1.0, 1))
    # IoU 0.8: counts at .5 and .75, not at .85 and above
    shifted = square(4, 4, 24, 20)
    r = instance_metrics([_pred([shifted], [0], [0.9])], [_target([a], [1])], 1)
    assert (r["segm_map50"], r["segm_map75"], r["segm_map"]) == pytest.approx((1.0, 1.0, 0.7))


def test_ignore_regions_and_their_detections_are_not_scored():
    a = square(4, 4, 24, 24)
    ignore = square(40, 40, 64, 64)
    spurious = square(42, 42, 60, 60)  # scores best, lies in the ignore region
    preds = [_pred([spurious, a], [0, 0], [0.95, 0.9])]
    assert instance_metrics(preds, [_target([a], [1])], 1)["segm_map50"] == pytest.approx(0.5)
    assert instance_metrics(preds, [_target([a], [1], ignore)], 1)["segm_map50"] == pytest.approx(1)
    # ignored pixels of a labelled object count for neither side
    grown = a | square(40, 40, 50, 50)
    r = instance_metrics([_pred([a], [0], [0.9])], [_target([grown], [1], ignore)], 1)
    assert r["segm_map"] == pytest.approx(1.0)


def test_training_metrics_paste_the_model_grids_in_the_input_frame():
    fn = metrics_fn_for("instances", 1)
    a = square(8, 12, 36, 40)
    box = np.array([[8.0, 12.0, 36.0, 40.0]])
    pred = {"boxes": torch.tensor(box), "scores": torch.tensor([0.9]),
            "labels": torch.tensor([0]), "mask_probs": torch.ones(1, 28, 28)}  # fmt: skip
    out = fn([pred], [{"masks": torch.from_numpy(a[None]), "labels": torch.tensor([1]),
                       "boxes": torch.tensor(box)}])  # fmt: skip
    assert set(out) == {"segm_map50", "segm_map", "segm_map75", "map50", "map"}
    assert (out["segm_map50"], out["map"]) == pytest.approx((1.0, 1.0))


# --------------------------------------------------------------------------- dataset


@pytest.fixture
def objects_project(tmp_path, make_images):
    p = Project.create(tmp_path / "p")
    p.add_images(make_images(tmp_path / "src", 2, (S, S)))
    cell, nucleus = p.add_class("cell").id, p.add_class("nucleus").id
    iid = p.image_ids()[0]
    p.instances.add(iid, cell, square(2, 2, 20, 20))
    p.instances.add(iid, nucleus, square(20, 2, 30, 20))  # touches the cell
    p.instances.add(iid, cell, square(40, 40, 60, 60), iscrowd=True)
    p.instances.set_ignore(iid, square(0, 50, 10, 64))
    p.instances.add(iid, cell, square(2, 52, 20, 60))  # half in the ignore region
    yield p
    p.close()


def test_dataset_targets_are_the_objects_without_crowds_and_ignored_pixels(objects_project):
    p = objects_project
    ds = ProjectDataset(p, "instances", p.image_ids(), S, (0.5,) * 3, (0.25,) * 3)
    assert ds.excluded == [p.image_ids()[1]]  # no object
    _image, t = ds[0]
    assert t["labels"].tolist() == [1, 2, 1]  # cell, nucleus, cell; the crowd is left out
    masks = t["masks"].numpy().astype(bool)
    assert np.array_equal(masks[0], square(2, 2, 20, 20))
    assert np.array_equal(masks[1], square(20, 2, 30, 20))
    assert np.array_equal(masks[2], square(10, 52, 20, 60))  # ignored pixels are no object's
    assert t["boxes"].tolist() == [[2, 2, 20, 20], [20, 2, 30, 20], [10, 52, 20, 60]]
    assert np.array_equal(t["ignore"].numpy(), square(0, 50, 10, 64) | square(40, 40, 60, 60))


def test_augmentation_moves_the_object_masks_and_their_boxes(objects_project):
    p = objects_project
    cfg = AugmentConfig.none()
    cfg.hflip = 1.0
    ds = ProjectDataset(p, "instances", p.image_ids(), S, (0.5,) * 3, (0.25,) * 3,
                        transform=build_train_transform("instances", cfg, S))  # fmt: skip
    _image, t = ds[0]
    masks = t["masks"].numpy().astype(bool)
    assert np.array_equal(masks[0], square(S - 20, 2, S - 2, 20))
    assert t["boxes"][0].tolist() == [S - 20, 2, S - 2, 20]
    assert np.array_equal(
        t["ignore"].numpy()[:, ::-1], square(0, 50, 10, 64) | square(40, 40, 60, 60)
    )


# --------------------------------------------------------------------------- the model


def test_instance_model_from_the_factory_over_a_registry_backbone():
    from tlstudio.ml.backbones import build_backbone

    bb = build_backbone("mobilenet_v3_small", "none")
    model = build_task_model("instances", bb, num_classes=2, input_size=S, fpn_channels=32)
    assert isinstance(model, InstanceModel)
    assert (model.main_metric, model.higher_is_better) == ("segm_map50", True)
    keys = list(model.state_dict())
    assert sum(k.startswith("backbone.") for k in keys) == len(bb.state_dict())
    with pytest.raises(TaskConfigError, match="arch"):
        build_task_model("instances", bb, num_classes=2, arch="fcos")
    with pytest.raises(TaskConfigError, match="at least 1"):
        build_task_model("instances", bb, num_classes=0)
    (pred,) = model.predict_step(torch.zeros(1, 3, S, S))
    k = len(pred["boxes"])
    assert pred["mask_probs"].shape == (k, 28, 28) and pred["labels"].shape == (k,)


def _scenes(n: int) -> tuple[torch.Tensor, list[dict]]:
    """``n`` normalised images, each with a grey square (class 1) and a red disc (class 2)
    at different places."""
    rng = np.random.default_rng(1)
    images = torch.full((n, 3, S, S), -1.0)
    targets = []
    for i in range(n):
        x, y = int(rng.integers(2, 14)), int(rng.integers(2, 30))
        sq = square(x, y, x + 20, y + 20)
        d = disc(float(rng.integers(44, 52)), float(rng.integers(14, 50)), 10)
        images[i][:, torch.from_numpy(sq)] = 1.0
        images[i][0, torch.from_numpy(d)] = 1.5
        images[i][1:, torch.from_numpy(d)] = -0.5
        masks = np.stack([sq, d])
        targets.append({
            "masks": torch.from_numpy(masks.astype(np.uint8)), "labels": torch.tensor([1, 2]),
            "boxes": torch.tensor([ObjectMask.from_mask(m).box for m in masks]),
        })  # fmt: skip
    return images, targets


@pytest.mark.slow
def test_mask_rcnn_learns_two_objects_on_a_few_images():
    images, targets = _scenes(2)
    model = InstanceModel(tiny_backbone(), 2, input_size=S, fpn_channels=64)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    first = None
    for _ in range(50):
        loss = model.training_step(images, targets)
        opt.zero_grad()
        loss["loss"].backward()
        opt.step()
        first = first or {k: float(v.detach()) for k, v in loss.items()}
    assert float(loss["loss_mask"]) < 0.3 * first["loss_mask"]
    preds = model.predict_step(images)
    assert model.training  # mode restored
    scores = metrics_fn_for("instances", 2)(preds, targets)
    assert scores["segm_map50"] == pytest.approx(1.0), scores
    assert scores["segm_map"] > 0.6, scores
