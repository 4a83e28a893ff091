"""Objects, label-map pixels of no object and ignore regions through each format that
holds pixels: what comes back exactly, what approximately, what is said to be lost."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from tlstudio.core.annotations import Box
from tlstudio.core.formats import export_labels, import_labels
from tlstudio.core.project import Project

W, H = 64, 48


def rect(x1: int, y1: int, x2: int, y2: int) -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[y1:y2, x1:x2] = True
    return m


def ring() -> np.ndarray:
    yy, xx = np.mgrid[0:H, 0:W]
    d2 = (xx + 0.5 - 45) ** 2 + (yy + 0.5 - 30) ** 2
    return (d2 <= 10**2) & (d2 > 4**2)


@pytest.fixture
def source(tmp_path: Path) -> Project:
    """Two touching cells (one with its box), a crowd of nuclei with a hole, brush pixels
    of no object and an ignore region; a second image with brush pixels only."""
    rng = np.random.default_rng(1)
    files = []
    for i in range(2):
        path = tmp_path / "src" / f"im{i}.png"
        path.parent.mkdir(exist_ok=True)
        cv2.imwrite(str(path), rng.integers(0, 256, (H, W, 3), np.uint8))
        files.append(path)
    p = Project.create(tmp_path / "source")
    a, b = p.add_images(files).added
    cell, nuc = p.add_class("cell").id, p.add_class("nucleus").id
    box = p.add_box(a, Box(cell, 2, 2, 12, 12))
    p.instances.add(a, cell, rect(2, 2, 12, 12), box_id=box.id)
    p.instances.add(a, cell, rect(12, 2, 20, 12))
    p.instances.add(a, nuc, ring(), iscrowd=True)
    mask = p.mask(a)
    mask[rect(2, 30, 14, 40)] = nuc  # brush pixels, no object
    p.set_mask(a, mask)
    p.instances.set_ignore(a, rect(50, 0, 64, 8))
    m1 = np.zeros((H, W), np.uint16)
    m1[rect(10, 10, 30, 30)] = cell
    p.set_mask(b, m1)
    yield p
    p.close()


def state(p: Project) -> dict[str, dict]:
    names = {c.id: c.name for c in p.classes()}
    out = {}
    for rec, ann in p.iter_annotations():
        boxes = {b.id: (names[b.class_id], *b.xyxy) for b in ann.boxes}
        objs = []
        if ann.instances is not None:
            for o in ann.instances.objects:
                objs.append((names[o.class_id], o.iscrowd, boxes.get(o.box_id),
                             ann.instances.region(o.number)))  # fmt: skip
        stuff = {}
        if ann.mask is not None:
            free = (
                ann.mask if ann.instances is None else np.where(ann.instances.map > 0, 0, ann.mask)
            )
            stuff = {names[c]: free == c for c in np.unique(free) if c}
        out[rec.name] = {"boxes": sorted(boxes.values()), "objects": objs, "stuff": stuff,
                         "ignore": ann.ignore}  # fmt: skip
    return out


def reimport(
    p: Project, tmp_path: Path, fmt: str, kind: str | None = None
) -> tuple[dict, list[str]]:
    warnings: list[str] = []
    out = export_labels(p, fmt, tmp_path / f"out_{fmt}", kind=kind, warnings=warnings)
    q = Project.create(tmp_path / f"back_{fmt}")
    import_labels(q, out, fmt)
    got = state(q)
    q.close()
    return got, warnings


def test_coco_keeps_objects_boxes_crowds_holes_brush_pixels_and_ignore_exactly(source, tmp_path):
    got, warnings = reimport(source, tmp_path, "coco")
    want = state(source)
    for name in want:
        g, w = got[name], want[name]
        assert g["boxes"] == w["boxes"]  # the object without a box gets none
        assert [o[:3] for o in g["objects"]] == [o[:3] for o in w["objects"]]
        assert all(
            np.array_equal(a[3], b[3]) for a, b in zip(g["objects"], w["objects"], strict=True)
        )
        assert g["stuff"].keys() == w["stuff"].keys()
        assert all(np.array_equal(g["stuff"][c], w["stuff"][c]) for c in w["stuff"])
        assert (g["ignore"] is None) == (w["ignore"] is None)
    assert np.array_equal(got["im0.png"]["ignore"], want["im0.png"]["ignore"])
    doc = json.loads((tmp_path / "out_coco" / "annotations.json").read_text())
    assert len(doc["annotations"]) == 3 + 2  # three objects, one brush region per image
    assert any("label-map regions without objects" in w for w in warnings)


def test_voc_keeps_objects_their_boxes_brush_pixels_and_ignore_exactly(source, tmp_path):
    got, _ = reimport(source, tmp_path, "voc")
    want = state(source)
    for name in want:
        g, w = got[name], want[name]
        assert g["boxes"] == w["boxes"]  # derived bndboxes are marked, not read as boxes
        # VOC has no crowd flag
        assert [(c, b) for c, _, b, _ in g["objects"]] == [(c, b) for c, _, b, _ in w["objects"]]
        assert all(
            np.array_equal(a[3], b[3]) for a, b in zip(g["objects"], w["objects"], strict=True)
        )
        assert all(np.array_equal(g["stuff"][c], w["stuff"][c]) for c in w["stuff"])
    assert np.array_equal(got["im0.png"]["ignore"], want["im0.png"]["ignore"])


def test_labelme_keeps_crowd_and_box_and_fills_holes_with_a_warning(source, tmp_path):
    got, warnings = reimport(source, tmp_path, "labelme")
    want = state(source)
    g, w = got["im0.png"], want["im0.png"]
    assert [o[:3] for o in g["objects"]] == [o[:3] for o in w["objects"]]
    for (_, _, _, a), (_, _, _, b) in zip(g["objects"][:2], w["objects"][:2], strict=True):
        assert np.array_equal(a, b)  # rectangles trace exactly
    crowd_got, crowd_want = g["objects"][2][3], w["objects"][2][3]
    assert crowd_got.sum() > crowd_want.sum()  # the hole is filled ...
    assert any("1 holes in masks were filled" in m for m in warnings)  # ... and said
    assert g["stuff"].keys() == w["stuff"].keys()
    assert np.array_equal(g["stuff"]["nucleus"], w["stuff"]["nucleus"])


def test_yolo_segment_writes_one_line_per_object(source, tmp_path):
    got, _ = reimport(source, tmp_path, "yolo", "segment")
    lines = (tmp_path / "out_yolo" / "labels" / "im0.txt").read_text().splitlines()
    assert len(lines) == 3 + 1  # three objects, one brush region
    want = state(source)
    g, w = got["im0.png"], want["im0.png"]
    assert [o[0] for o in g["objects"]] == [o[0] for o in w["objects"]]
    for (_, _, _, a), (_, _, _, b) in zip(g["objects"][:2], w["objects"][:2], strict=True):
        assert np.array_equal(a, b)
    assert g["stuff"].keys() == w["stuff"].keys() and g["ignore"] is None


def test_overlapping_coco_objects_are_split_with_a_warning(tmp_path):
    img = tmp_path / "a.png"
    cv2.imwrite(str(img), np.zeros((H, W, 3), np.uint8))
    square = [10, 10, 30, 10, 30, 30, 10, 30]
    later = [20, 10, 40, 10, 40, 30, 20, 30]
    doc = {
        "images": [{"id": 1, "file_name": "a.png", "width": W, "height": H}],
        "categories": [{"id": 1, "name": "person"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "segmentation": [square], "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 1, "segmentation": [later], "iscrowd": 0},
        ],
    }
    f = tmp_path / "c.json"
    f.write_text(json.dumps(doc))
    p = Project.create(tmp_path / "p")
    report = import_labels(p, f)
    assert report.annotations["objects"] == 2
    assert report.warnings == [
        f"{f}: 1 object overlaps earlier ones (200 px); tlstudio's objects do not overlap: "
        "those pixels belong to the later object"
    ]
    (rec,) = p.images()
    first, second = (p.instances.region(o.id) for o in p.instances.of_image(rec.id))
    assert np.array_equal(second, rect(20, 10, 40, 30))
    assert np.array_equal(first, rect(10, 10, 20, 30))


def test_an_import_that_comes_back_to_an_image_after_many_others_keeps_everything(
    tmp_path, monkeypatch
):
    """Pending pixel layers are stored once many images are open (bounded memory); a
    later object of an image already stored joins it."""
    from tlstudio.core.formats import _common

    monkeypatch.setattr(_common, "MAX_PENDING_IMAGES", 2)
    images, anns = [], []
    for i in range(4):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((H, W, 3), i, np.uint8))
        images.append({"id": i + 1, "file_name": f"{i}.png", "width": W, "height": H})
    for k, (img, x) in enumerate([(1, 0), (2, 0), (3, 0), (4, 0), (1, 30), (2, 30)]):
        poly = [x, 0, x + 10, 0, x + 10, 10, x, 10]
        anns.append({"id": k + 1, "image_id": img, "category_id": 1, "segmentation": [poly]})
    f = tmp_path / "c.json"
    f.write_text(json.dumps({"images": images, "annotations": anns,
                             "categories": [{"id": 1, "name": "cell"}]}))  # fmt: skip
    p = Project.create(tmp_path / "p")
    report = import_labels(p, f)
    assert report.annotations["objects"] == 6 and report.annotations["masks"] == 4
    counts = [len(p.instances.of_image(rec.id)) for rec in p.images()]
    assert counts == [2, 2, 1, 1]
    first = p.images()[0]
    assert int((p.mask(first.id) > 0).sum()) == 200
