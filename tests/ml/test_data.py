"""Datasets over a project: targets per task in the network-input frame, windowing,
splits, bad files and task availability."""

from __future__ import annotations

import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from tlstudio.core import imageio
from tlstudio.core.annotations import OCCLUDED, SKIPPED, VISIBLE, Box, LandmarkSet, Point
from tlstudio.core.errors import ImageError
from tlstudio.core.labelset import LandmarkTemplate
from tlstudio.core.project import Project
from tlstudio.core.windowing import to_display
from tlstudio.ml.collate import collate
from tlstudio.ml.data import (
    ProjectDataset,
    available_tasks,
    content_key,
    make_datasets,
    train_val_ids,
)
from tlstudio.ml.transforms import AugmentConfig

W, H = 128, 96  # stored image size
S = 64  # network input size
RAW = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))  # mean, std that leave x / 255 unchanged


def _write_rgb(path: Path, rgb: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


def _scene(i: int) -> np.ndarray:
    """W×H RGB: dark background, a bright rectangle at x 32..96, y 24..72 (the box)."""
    rgb = np.full((H, W, 3), 20 + i, np.uint8)
    rgb[24:72, 32:96] = (250, 200, 100)
    return rgb


TEMPLATE = LandmarkTemplate("tri", ("left", "right", "top"), flip_pairs=((0, 1),))


def _project(tmp_path: Path, n: int = 5) -> tuple[Project, list[int], dict[str, int]]:
    files = [_write_rgb(tmp_path / "src" / f"im{i}.png", _scene(i)) for i in range(n)]
    proj = Project.create(tmp_path / "proj")
    ids = proj.add_images(files).added
    assert len(ids) == n
    # class ids differ from positions: "b" is created first but ordered second
    b = proj.add_class("b")
    a = proj.add_class("a")
    proj.reorder_classes([a.id, b.id])
    return proj, ids, {"a": a.id, "b": b.id}


# -- availability ------------------------------------------------------------------------


def test_available_tasks_says_what_is_missing(tmp_path: Path) -> None:
    with Project.create(tmp_path / "empty") as empty:
        assert set(available_tasks(empty).values()) == {"no images in the project"}
    proj, ids, cls = _project(tmp_path)
    with proj:
        av = available_tasks(proj)
        assert av["autoencode"] is None
        assert av["classify"] == "no class tags labelled"
        assert av["detect"] == "no boxes labelled"
        assert "no landmarks" in av["landmarks"]
        assert av["segment"] == "no masks painted"
        assert av["instances"] == "no objects labelled (paint them with the Objects tool)"
        proj.set_tags(ids[0], [cls["a"]])
        assert "only one class" in available_tasks(proj)["classify"]
        proj.set_tags(ids[1], [cls["b"]])
        proj.add_box(ids[0], Box(cls["a"], 1, 1, 10, 10))
        t = proj.add_template(TEMPLATE)
        proj.add_landmark_set(ids[0], LandmarkSet(t.id, (Point(1, 1), Point(2, 2), Point(3, 3))))
        m = np.zeros((H, W), np.uint16)
        m[:5, :5] = cls["b"]
        proj.set_mask(ids[0], m)
        assert available_tasks(proj)["instances"] is not None  # a mask has no objects
        proj.instances.add(ids[1], cls["a"], m > 0)
        assert available_tasks(proj) == dict.fromkeys(
            ("classify", "detect", "landmarks", "segment", "instances", "autoencode")
        )


# -- per-task targets --------------------------------------------------------------------


def test_detect_boxes_are_scaled_into_the_input_frame(tmp_path: Path) -> None:
    proj, ids, cls = _project(tmp_path)
    with proj:
        proj.add_box(ids[1], Box(cls["b"], 32, 24, 96, 72))
        proj.add_box(ids[1], Box(cls["a"], 0, 0, 16, 12))
        ds = ProjectDataset(proj, "detect", ids, S, *RAW)
        assert ds.image_ids == [ids[1]] and ds.excluded == [ids[0], *ids[2:]]
        image, target = ds[0]
    assert image.shape == (3, S, S) and image.dtype == torch.float32
    # x scales by 64/128, y by 64/96
    torch.testing.assert_close(
        target["boxes"], torch.tensor([[16.0, 16.0, 48.0, 48.0], [0, 0, 8, 8]])
    )
    assert target["labels"].tolist() == [2, 1]  # class index + 1, in Project.classes() order
    assert target["labels"].dtype == torch.int64
    assert target["image_id"] == ids[1] and target["orig_size"] == (H, W)
    # the pixels moved the same way: the bright rectangle fills the scaled box
    red = image[0]
    assert red[17:47, 17:47].min() > 0.95 and red[:15].max() < 0.2 and red[:, 49:].max() < 0.2


def test_classify_labels_follow_class_order_and_skip_untagged(tmp_path: Path) -> None:
    proj, ids, cls = _project(tmp_path)
    with proj:
        proj.set_tags(ids[0], [cls["b"]])
        proj.set_tags(ids[2], [cls["a"]])
        ds = ProjectDataset(proj, "classify", ids, S, *RAW)
        assert ds.image_ids == [ids[0], ids[2]]
        assert [ds[i][1]["label"].item() for i in range(2)] == [1, 0]
        assert ds.class_labels().tolist() == [1, 0] and ds.class_names == ["a", "b"]
        proj.multi_label = True
        proj.set_tags(ids[3], [cls["a"], cls["b"]])
        multi = ProjectDataset(proj, "classify", ids, S, *RAW, multi_label=True)
        _, t = multi[2]
        assert t["labels"].dtype == torch.float32 and t["labels"].tolist() == [1.0, 1.0]
        assert multi.class_labels().tolist() == [[0, 1], [1, 0], [1, 1]]


def test_landmarks_take_the_templates_first_set_in_input_pixels(tmp_path: Path) -> None:
    proj, ids, cls = _project(tmp_path)
    with proj:
        t = proj.add_template(TEMPLATE)
        other = proj.add_template(LandmarkTemplate("one", ("p",)))
        pts = (Point(32, 24), Point(96, 48, OCCLUDED), Point(5, 5, SKIPPED))
        proj.add_landmark_set(ids[0], LandmarkSet(other.id, (Point(1, 1),)))
        proj.add_landmark_set(ids[0], LandmarkSet(t.id, pts))
        proj.add_landmark_set(ids[0], LandmarkSet(t.id, (Point(0, 0), Point(0, 0), Point(0, 0))))
        proj.add_landmark_set(ids[3], LandmarkSet(t.id, pts))
        ds = ProjectDataset(proj, "landmarks", ids, S, *RAW)  # template: the most used
        assert ds.template_id == t.id and ds.image_ids == [ids[0], ids[3]]
        assert ds.flip_perm == [1, 0, 2]
        _, target = ds[0]
    expected = torch.tensor([[16.0, 16.0, VISIBLE], [48.0, 32.0, OCCLUDED], [0.0, 0.0, SKIPPED]])
    torch.testing.assert_close(target["keypoints"], expected)


def test_segment_mask_maps_class_ids_to_indices_plus_one(tmp_path: Path) -> None:
    proj, ids, cls = _project(tmp_path)
    with proj:
        m = np.zeros((H, W), np.uint16)
        m[24:72, 32:96] = cls["b"]
        m[0:12, 0:16] = cls["a"]
        proj.set_mask(ids[2], m)
        ds = ProjectDataset(proj, "segment", ids, S, *RAW)
        assert ds.image_ids == [ids[2]]
        image, target = ds[0]
    mask = target["mask"]
    assert mask.shape == (S, S) and mask.dtype == torch.int64
    assert set(mask.unique().tolist()) == {0, 1, 2}
    assert (mask[16:48, 16:48] == 2).all() and (mask[:8, :8] == 1).all()
    assert (mask == 2).sum() == 32 * 32 and (mask == 1).sum() == 8 * 8
    # the mask sits on the bright object
    assert image[0][mask == 2].min() > 0.95


def test_autoencode_takes_every_image(tmp_path: Path) -> None:
    proj, ids, _ = _project(tmp_path)
    with proj:
        ds = ProjectDataset(proj, "autoencode", ids, S, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
        images, targets = collate([ds[i] for i in range(len(ds))])
    assert images.shape == (len(ids), 3, S, S)
    assert set(targets[0]) == {"image_id", "orig_size"}
    # normalisation: background 20 / 255 -> (0.078 - 0.5) / 0.25
    assert images[0, 0, 0, 0].item() == pytest.approx((20 / 255 - 0.5) / 0.25, abs=1e-5)


# -- pixels ------------------------------------------------------------------------------


def test_16_bit_grey_goes_through_the_window_to_three_channels(tmp_path: Path) -> None:
    # three bands, all above 255: clipping to 8 bits before windowing would make them equal
    grey = np.full((H, W), 1000, np.uint16)
    grey[:, 43:86] = 2000
    grey[:, 86:] = 3000
    path = tmp_path / "src" / "g16.png"
    path.parent.mkdir()
    assert cv2.imwrite(str(path), grey)
    with Project.create(tmp_path / "proj") as proj:
        (image_id,) = proj.add_images([path]).added
        data = proj.read_image(image_id)
        ds = ProjectDataset(proj, "autoencode", [image_id], S, *RAW)
        image, _ = ds[0]
    assert data.array.dtype == np.uint16 and data.array.max() == 3000
    bands = np.array([[1000, 2000, 3000]], np.uint16)
    expected = np.asarray(to_display(bands, data.window)).reshape(-1) / 255.0
    assert expected[0] < expected[1] < expected[2] and 0.3 < expected[1] < 0.7
    torch.testing.assert_close(image[0], image[1])
    torch.testing.assert_close(image[0], image[2])
    # input columns 10, 32, 54 cover stored columns 20-21, 64-65, 108-109
    got = [image[0, 30, x].item() for x in (10, 32, 54)]
    assert got == pytest.approx(expected.tolist(), abs=1e-6)


def test_grey_and_rgba_8_bit_become_rgb(tmp_path: Path) -> None:
    grey = np.full((H, W), 60, np.uint8)
    rgba = np.zeros((H, W, 4), np.uint8)
    rgba[..., 2], rgba[..., 3] = 200, 10  # BGRA for cv2: blue 200, nearly transparent
    (tmp_path / "src").mkdir()
    assert cv2.imwrite(str(tmp_path / "src" / "grey.png"), grey)
    assert cv2.imwrite(str(tmp_path / "src" / "rgba.png"), rgba)
    with Project.create(tmp_path / "proj") as proj:
        ids = proj.add_images([tmp_path / "src"]).added
        ds = ProjectDataset(proj, "autoencode", ids, S, *RAW)
        by_name = {proj.image(i).name: ds[k][0] for k, i in enumerate(ds.image_ids)}
    assert torch.allclose(by_name["grey.png"], torch.full((3, S, S), 60 / 255))
    rgb = by_name["rgba.png"][:, 0, 0]
    torch.testing.assert_close(rgb, torch.tensor([200 / 255, 0.0, 0.0]))  # red, alpha dropped


def test_bad_image_file_raises_image_error_naming_it(tmp_path: Path) -> None:
    proj, ids, _ = _project(tmp_path)
    with proj:
        ds = ProjectDataset(proj, "autoencode", ids, S, *RAW)
        path = proj.image_path(ids[1])
    path.write_bytes(b"not a png at all")
    ds[0]  # others still load
    with pytest.raises(ImageError, match="im1.png"):
        ds[1]
    path.unlink()
    with pytest.raises(ImageError, match="im1.png"):
        ds[1]


def test_image_error_can_cross_from_a_dataloader_worker(tmp_path: Path) -> None:
    proj, ids, _ = _project(tmp_path, n=2)
    with proj:
        ds = ProjectDataset(proj, "autoencode", ids, S, *RAW)
        proj.image_path(ids[1]).write_bytes(b"garbage")
    with pytest.raises(ImageError) as info:
        ds[1]
    err = info.value
    # torch's DataLoader re-raises a worker's error as type(err)(message)
    rebuilt = type(err)(f"Caught {type(err).__name__} in DataLoader worker process 0.\n{err}")
    assert isinstance(rebuilt, ImageError) and "im1.png" in str(rebuilt)
    again = pickle.loads(pickle.dumps(err))
    assert (again.path, again.reason) == (err.path, err.reason)


# -- splits and factories ----------------------------------------------------------------


def test_make_datasets_uses_stored_splits(tmp_path: Path) -> None:
    proj, ids, cls = _project(tmp_path)
    with proj:
        for i in ids:
            proj.set_tags(i, [cls["a"] if i % 2 else cls["b"]])
        proj.set_splits({ids[0]: "train", ids[1]: "train", ids[2]: "val", ids[3]: "test"})
        train, val = make_datasets(proj, "classify", S, *RAW, AugmentConfig())
        assert train.image_ids == [ids[0], ids[1]] and val.image_ids == [ids[2]]
        assert train.transform is not None and val.transform is None
        image, _ = train[0]
        assert image.shape == (3, S, S)
        plain, _ = make_datasets(proj, "classify", S, *RAW, AugmentConfig.none())
        assert plain.transform is None


def test_without_splits_a_seeded_80_20_split_is_made_in_memory(tmp_path: Path) -> None:
    proj, ids, cls = _project(tmp_path, n=10)
    with proj:
        for k, i in enumerate(ids):
            proj.set_tags(i, [cls["a"] if k < 5 else cls["b"]])
        train, val = train_val_ids(proj, seed=3)
        assert (len(train), len(val)) == (8, 2)
        assert sorted(train + val) == ids
        assert train_val_ids(proj, seed=3) == (train, val)  # seeded
        assert {proj.image(i).split for i in ids} == {None}  # nothing written
        # stratified: one image of each class in val
        assert sorted(proj.tags(i)[0] for i in val) == sorted([cls["a"], cls["b"]])
        tr, va = make_datasets(proj, "classify", S, *RAW, None, seed=3)
        assert tr.image_ids == train and va.image_ids == val


def test_content_key_is_the_files_sha256(tmp_path: Path) -> None:
    proj, ids, _ = _project(tmp_path, n=2)
    with proj:
        key = content_key(proj, ids[0])
        assert key == imageio.file_sha256(proj.image_path(ids[0]))
        assert ProjectDataset(proj, "autoencode", ids, S, *RAW).content_key(0) == key


def test_demo_project_gives_every_task(tmp_path: Path) -> None:
    demo = pytest.importorskip("tlstudio.core.demo")
    proj = demo.create_demo_project(tmp_path / "demo", n_images=12, size=64, seed=0)
    with proj:
        av = available_tasks(proj)
        for task, reason in av.items():
            assert reason is None, (task, reason)
            train, val = make_datasets(proj, task, 32, *RAW, AugmentConfig())
            assert len(train) > 0
            images, targets = collate([train[i] for i in range(min(3, len(train)))])
            assert images.shape[1:] == (3, 32, 32)
            assert all("image_id" in t and "orig_size" in t for t in targets)
