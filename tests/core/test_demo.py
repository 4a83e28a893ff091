"""The demo project: synthetic scenes whose labels agree with the pixels exactly."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from tlstudio.core.demo import create_demo_project
from tlstudio.core.errors import ProjectError
from tlstudio.core.project import SPLITS, Project


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Project:
    project = create_demo_project(tmp_path_factory.mktemp("demo") / "proj")
    yield project
    project.close()


def _components(region: np.ndarray) -> list[tuple[np.ndarray, tuple[int, int, int, int]]]:
    """8-connected regions of a boolean mask: (region mask, (x1, y1, x2, y2) pixel-edge box)."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(region.astype(np.uint8), connectivity=8)
    out = []
    for k in range(1, n):
        x, y, w, h = stats[k, :4]
        out.append((labels == k, (int(x), int(y), int(x + w), int(y + h))))
    return out


def _scenes(project: Project):
    """(record, annotations, RGB pixels) of every image, read back from the PNG files."""
    for rec, ann in project.iter_annotations():
        bgr = cv2.imread(str(project.image_path(rec)), cv2.IMREAD_UNCHANGED)
        assert bgr is not None and bgr.shape == (rec.height, rec.width, 3)
        yield rec, ann, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def test_layout_classes_and_templates(demo: Project) -> None:
    assert demo.image_count() == 48
    assert not demo.multi_label
    assert [c.name for c in demo.classes()] == ["circle", "square", "triangle"]
    assert len({c.color for c in demo.classes()}) == 3
    names = {t.name for t in demo.templates()}
    assert {"COCO body 17", "Face 5", "Shape 5"} <= names
    shape = demo.template_by_name("Shape 5")
    assert shape.points == ("top", "right", "bottom", "left", "centre")
    assert shape.flip_pairs == ((1, 3),)
    for rec in demo.images():
        assert rec.path.startswith("images/") and rec.path.endswith(".png")
        assert (rec.width, rec.height, rec.channels) == (128, 128, 3)
        assert demo.image_path(rec).is_file()


def test_shape_pixels_have_one_colour_that_stops_at_the_mask_edge(demo: Project) -> None:
    n_shapes = 0
    for rec, ann, rgb in _scenes(demo):
        assert ann.mask is not None
        for cid in np.unique(ann.mask[ann.mask > 0]):
            for region, _ in _components(ann.mask == cid):
                colours = np.unique(rgb[region], axis=0)
                assert len(colours) == 1, (
                    f"{rec.path}: shape of class {cid} has {len(colours)} colours"
                )
                # a mask one pixel too small would leave shape-coloured pixels just outside it
                ring = cv2.dilate(region.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
                ring &= ~region
                same = np.all(rgb[ring] == colours[0], axis=1)
                assert same.mean() < 0.05, f"{rec.path}: colour of class {cid} leaks past its mask"
                n_shapes += 1
        # and the background is textured, not flat
        assert len(np.unique(rgb[ann.mask == 0], axis=0)) > 100
    assert n_shapes > 48  # some images have two shapes


def test_boxes_are_the_bounding_rectangles_of_the_mask_regions(demo: Project) -> None:
    for rec, ann, _ in _scenes(demo):
        assert ann.boxes
        for cid in {b.class_id for b in ann.boxes} | set(
            np.unique(ann.mask[ann.mask > 0]).tolist()
        ):
            regions = [box for _, box in _components(ann.mask == cid)]
            boxes = sorted(b.xyxy for b in ann.boxes if b.class_id == cid)
            assert len(boxes) == len(regions), f"{rec.path}: class {cid}"
            for expected, got in zip(sorted(regions), boxes, strict=True):
                assert np.allclose(expected, got, atol=1), (
                    f"{rec.path}: box {got} vs mask {expected}"
                )


def test_landmarks_lie_on_their_shape(demo: Project) -> None:
    template = demo.template_by_name("Shape 5")
    for rec, ann, _ in _scenes(demo):
        assert len(ann.landmarks) == len(ann.boxes)
        for lms in ann.landmarks:
            assert lms.template_id == template.id
            region = ann.mask == lms.class_id
            for p in lms.points:
                assert region[int(p.y), int(p.x)], f"{rec.path}: point {p} outside its shape"
            top, right, bottom, left, centre = lms.points
            box = next(
                b for b in ann.boxes
                if b.class_id == lms.class_id and b.x1 <= centre.x <= b.x2 and b.y1 <= centre.y <= b.y2
            )  # fmt: skip
            # extreme points are the shape's outermost pixel centres
            assert top.y == box.y1 + 0.5 and bottom.y == box.y2 - 0.5
            assert left.x == box.x1 + 0.5 and right.x == box.x2 - 0.5
            assert box.x1 < centre.x < box.x2 and box.y1 < centre.y < box.y2


def test_tag_is_the_class_of_the_largest_shape(demo: Project) -> None:
    seen = set()
    for rec, ann, _ in _scenes(demo):
        sizes = []
        for cid in np.unique(ann.mask[ann.mask > 0]):
            sizes += [(int(r.sum()), int(cid)) for r, _ in _components(ann.mask == cid)]
        assert ann.tags == (max(sizes)[1],), rec.path
        seen.add(ann.tags[0])
    assert len(seen) == 3


def test_splits_cover_every_image(demo: Project) -> None:
    counts = {s: len(demo.images_in_split(s)) for s in SPLITS}
    assert demo.images_in_split(None) == []
    assert sum(counts.values()) == 48
    assert counts["train"] > counts["val"] > 0 and counts["test"] > 0
    # stratified: every class reaches the training split
    train_tags = {demo.tags(r.id)[0] for r in demo.images_in_split("train")}
    assert len(train_tags) == 3


def _snapshot(root: Path) -> tuple[dict[str, bytes], list]:
    with Project.open(root) as p:
        files = {r.path: p.image_path(r).read_bytes() for r in p.images()}
        anns = [(r.path, r.split, a) for r, a in p.iter_annotations()]
    return files, anns


def test_same_seed_same_project_other_seed_differs(tmp_path: Path) -> None:
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        create_demo_project(tmp_path / name, n_images=6, size=64, seed=seed).close()
    a, b, c = (_snapshot(tmp_path / n) for n in "abc")
    assert a == b
    assert a[0] != c[0]


def test_refuses_a_folder_with_files(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "notes.txt").write_text("mine")
    with pytest.raises(ProjectError, match="empty folder"):
        create_demo_project(tmp_path / "x")
    assert sorted(p.name for p in (tmp_path / "x").iterdir()) == ["notes.txt"]


def test_a_failed_demo_leaves_no_half_project(tmp_path: Path, monkeypatch) -> None:
    import tlstudio.core.demo as demo_module

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(demo_module, "random_split", broken)
    with pytest.raises(OSError, match="disk full"):
        create_demo_project(tmp_path / "new", n_images=3, size=32)
    assert not (tmp_path / "new").exists()
    (tmp_path / "empty").mkdir()
    with pytest.raises(OSError):
        create_demo_project(tmp_path / "empty", n_images=3, size=32)
    assert list((tmp_path / "empty").iterdir()) == []
