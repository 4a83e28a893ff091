"""Interchange formats: round trips, all-or-nothing imports, exact error messages, and
hand-written documents as the original tools write them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from tlstudio.core.annotations import OCCLUDED, SKIPPED, VISIBLE, Box, LandmarkSet, Point
from tlstudio.core.errors import FormatError
from tlstudio.core.formats import (
    FORMATS,
    detect_format,
    export_labels,
    import_labels,
)
from tlstudio.core.formats import coco as coco_mod
from tlstudio.core.formats._common import mask_polygons, rasterize_polygon
from tlstudio.core.labelset import LandmarkTemplate
from tlstudio.core.project import Project

W, H = 64, 48
FACE = LandmarkTemplate(
    "face",
    ("left_eye", "right_eye", "nose", "left_mouth", "right_mouth"),
    skeleton=((0, 1), (0, 2), (1, 2), (3, 4)),
    flip_pairs=((0, 1), (3, 4)),
)


def write_image(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), array)
    return path


def make_images(
    folder: Path, n: int, size: tuple[int, int] = (W, H), *, start: int = 0
) -> list[Path]:
    """``n`` distinct random PNGs ``img<i>.png`` of ``size`` = (width, height)."""
    rng = np.random.default_rng(start)
    return [
        write_image(
            folder / f"img{i:03d}.png", rng.integers(0, 256, (size[1], size[0], 3), np.uint8)
        )
        for i in range(start, start + n)
    ]


def dump(project: Project) -> str:
    return "\n".join(project.store.conn.iterdump())


def disc(cx: float, cy: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[0:H, 0:W]
    return (xx + 0.5 - cx) ** 2 + (yy + 0.5 - cy) ** 2 <= r * r


def rect(x1: int, y1: int, x2: int, y2: int) -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[y1:y2, x1:x2] = True
    return m


@pytest.fixture
def source(tmp_path: Path) -> Project:
    """A single-label project with every kind of label on 64×48 PNGs.

    Every landmark set lies inside a box of its own class (so YOLO pose, which turns
    each line into a box and a landmark set, round-trips exactly)."""
    files = make_images(tmp_path / "src", 5, (W, H))
    p = Project.create(tmp_path / "source")
    p.add_images(files)
    cat, dog, bird = (p.add_class(n).id for n in ("cat", "dog", "bird"))
    face = p.add_template(FACE)
    ids = p.image_ids()
    p.set_tags(ids[0], [cat])
    p.add_box(ids[0], Box(cat, 10.5, 5.25, 40.0, 30.75))
    p.add_box(ids[0], Box(dog, 0.0, 0.0, 64.0, 48.0))
    pts = (Point(15.25, 10.5), Point(30.0, 10.5), Point(22.0, 18.0, OCCLUDED),
           Point(16.0, 25.0), Point(0.0, 0.0, SKIPPED))  # fmt: skip
    p.add_landmark_set(ids[0], LandmarkSet(face.id, pts, cat))
    mask = np.zeros((H, W), np.uint16)
    mask[rect(5, 10, 25, 20)] = bird
    mask[disc(45.0, 30.0, 9.0)] = dog
    p.set_mask(ids[0], mask)

    p.set_tags(ids[1], [dog])
    p.add_box(ids[1], Box(bird, 3.0, 4.0, 20.0, 22.0))
    p.add_box(ids[1], Box(dog, 30.0, 2.0, 60.0, 40.0))
    pts = (Point(35.0, 10.0), Point(50.0, 10.0), Point(42.5, 20.0), Point(38.0, 30.0),
           Point(47.0, 30.0, OCCLUDED))  # fmt: skip
    p.add_landmark_set(ids[1], LandmarkSet(face.id, pts, dog))

    p.set_tags(ids[2], [bird])
    mask = np.zeros((H, W), np.uint16)
    mask[rect(0, 0, 64, 12)] = cat  # touches the image border
    mask[disc(20.0, 30.0, 10.0)] = bird
    p.set_mask(ids[2], mask)

    # ids[3]: no labels at all
    p.set_tags(ids[4], [cat])
    p.add_box(ids[4], Box(cat, 0.0, 40.0, 64.0, 48.0))
    p.set_splits({ids[0]: "train", ids[1]: "val", ids[2]: "train", ids[4]: "test"})
    yield p
    p.close()


def snapshot(project: Project) -> dict[str, dict]:
    """Labels per image file name, with classes and templates by name."""
    names = {c.id: c.name for c in project.classes()}
    out = {}
    for rec, a in project.iter_annotations():
        lms = []
        for s in a.landmarks:
            t = project.template(s.template_id)
            lms.append((t.name, t.points, t.skeleton, t.flip_pairs, names.get(s.class_id),
                        tuple((p.x, p.y, p.visibility) for p in s.points)))  # fmt: skip
        masks = {}
        if a.mask is not None:
            masks = {names[c]: a.mask == c for c in np.unique(a.mask) if c}
        out[rec.name] = {
            "tags": sorted(names[t] for t in a.tags),
            "boxes": sorted((names[b.class_id], b.x1, b.y1, b.x2, b.y2) for b in a.boxes),
            "landmarks": sorted(lms, key=repr),
            "masks": masks,
        }
    return out


def assert_same(got: dict, want: dict, kinds: set[str], *, exact_masks: bool = True) -> None:
    assert set(got) == set(want)
    for name in want:
        g, w = got[name], want[name]
        if "tags" in kinds:
            assert g["tags"] == w["tags"], name
        if "boxes" in kinds:
            assert len(g["boxes"]) == len(w["boxes"]), name
            for bg, bw in zip(g["boxes"], w["boxes"], strict=True):
                assert bg[0] == bw[0]
                assert np.allclose(bg[1:], bw[1:], atol=1e-3), (name, bg, bw)
        if "landmarks" in kinds:
            assert len(g["landmarks"]) == len(w["landmarks"]), name
            for lg, lw in zip(g["landmarks"], w["landmarks"], strict=True):
                assert lg[:5] == lw[:5], name
                for pg, pw in zip(lg[5], lw[5], strict=True):
                    assert pg[2] == pw[2]
                    assert np.allclose(pg[:2], pw[:2], atol=1e-3), (name, pg, pw)
        if "masks" in kinds:
            assert set(g["masks"]) == set(w["masks"]), name
            for cls, mw in w["masks"].items():
                mg = g["masks"][cls]
                if exact_masks:
                    assert np.array_equal(mg, mw), (name, cls)
                else:
                    iou = (mg & mw).sum() / (mg | mw).sum()
                    assert iou > 0.95, (name, cls, iou)


def fresh(tmp_path: Path, name: str = "dest", multi: bool = False) -> Project:
    return Project.create(tmp_path / name, multi_label=multi)


# -- round trips -----------------------------------------------------------------------------

ROUND_TRIPS = [
    # format, kind, kinds compared, exact masks
    ("coco", None, {"tags", "boxes", "landmarks", "masks"}, True),
    ("yolo", "detect", {"boxes"}, True),
    ("yolo", "pose", {"boxes", "landmarks"}, True),
    ("yolo", "segment", {"masks"}, False),
    ("voc", None, {"boxes"}, True),
    ("labelme", None, {"tags", "boxes", "landmarks", "masks"}, False),
    ("folders", None, {"tags"}, True),
    ("csv", None, {"tags"}, True),
]


@pytest.mark.parametrize(("fmt", "kind", "kinds", "exact"), ROUND_TRIPS)
def test_export_then_import_gives_the_same_labels(source, tmp_path, fmt, kind, kinds, exact):
    out = export_labels(source, fmt, tmp_path / "out", kind=kind)
    assert detect_format(out) == fmt
    assert detect_format(tmp_path / "out") == fmt
    dest = fresh(tmp_path)
    report = import_labels(dest, out, fmt)
    want = snapshot(source)
    if fmt == "folders":  # only images with exactly one tag are exported
        want = {k: v for k, v in want.items() if len(v["tags"]) == 1}
    assert report.images_added == len(want)
    assert report.images_matched == 0
    assert_same(snapshot(dest), want, kinds, exact_masks=exact)
    if "masks" in kinds:
        assert report.annotations["masks"] == 2
    if "boxes" in kinds:
        assert report.annotations["boxes"] == 5
    dest.close()


def test_every_format_is_round_tripped():
    # DeepLabCut and SLEAP hold landmark sets only: their round trips are in
    # test_peer_formats.py (test_deeplabcut_round_trip_*, test_sleap_export_round_trip_*)
    assert {f for f, *_ in ROUND_TRIPS} | {"dlc", "sleap"} == set(FORMATS)


def test_reimport_into_the_source_matches_images_and_adds_labels(source, tmp_path):
    """Importing a project's own export matches every image (by content: the export
    holds hard links or copies) and adds the boxes again; single-label tags are replaced."""
    before = snapshot(source)
    out = export_labels(source, "coco", tmp_path / "out")
    report = import_labels(source, out)
    assert report.images_added == 0 and report.images_matched == 5
    after = snapshot(source)
    for name, labels in before.items():
        assert after[name]["tags"] == labels["tags"]
        assert sorted(after[name]["boxes"]) == sorted(labels["boxes"] * 2)
        assert len(after[name]["landmarks"]) == 2 * len(labels["landmarks"])
        assert after[name]["masks"].keys() == labels["masks"].keys()
    assert source.image_count() == 5


def test_coco_in_place_export_references_the_original_files(source, tmp_path):
    out = export_labels(source, "coco", tmp_path / "labels" / "ann.json")
    doc = json.loads(out.read_text())
    assert doc["images"][0]["file_name"] == "../src/img000.png"
    report = import_labels(source, out)
    assert report.images_matched == 5 and report.images_added == 0  # matched by path


def test_csv_in_place_export_and_multi_label(tmp_path):
    files = make_images(tmp_path / "src", 3, (W, H))
    p = Project.create(tmp_path / "p", multi_label=True)
    p.add_images(files)
    a, b = p.add_class("a").id, p.add_class("b").id
    ids = p.image_ids()
    p.set_tags(ids[0], [a, b])
    p.set_tags(ids[1], [b])
    out = export_labels(p, "csv", tmp_path / "labels.csv")
    assert out.read_text().splitlines() == [
        "image,label", "src/img000.png,a;b", "src/img001.png,b", "src/img002.png,",
    ]  # fmt: skip
    dest = fresh(tmp_path, multi=True)
    import_labels(dest, out)
    assert_same(snapshot(dest), snapshot(p), {"tags"})


def test_coco_keeps_class_less_landmarks_and_two_templates_per_class(tmp_path):
    files = make_images(tmp_path / "src", 1, (W, H))
    p = Project.create(tmp_path / "p")
    p.add_images(files)
    cat = p.add_class("cat").id
    face = p.add_template(FACE)
    pair = p.add_template(LandmarkTemplate("pair", ("a", "b")))
    (img,) = p.image_ids()
    pts5 = tuple(Point(10 + i, 12 + i) for i in range(5))
    p.add_landmark_set(img, LandmarkSet(face.id, pts5, None))  # no class, no box
    p.add_landmark_set(img, LandmarkSet(face.id, pts5, cat))  # class, no enclosing box
    p.add_landmark_set(img, LandmarkSet(pair.id, (Point(1, 1), Point(5, 5, OCCLUDED)), cat))
    p.add_box(img, Box(cat, 30, 30, 40, 40))
    out = export_labels(p, "coco", tmp_path / "out")
    doc = json.loads(out.read_text())
    assert sorted(c["name"] for c in doc["categories"]) == ["cat", "cat/face", "cat/pair", "face"]
    dest = fresh(tmp_path)
    import_labels(dest, out)
    assert [c.name for c in dest.classes()] == ["cat"]  # extension categories made no class
    assert_same(snapshot(dest), snapshot(p), {"boxes", "landmarks"})


def test_yolo_pose_derives_boxes_for_landmarks_without_one(tmp_path):
    files = make_images(tmp_path / "src", 1, (W, H))
    p = Project.create(tmp_path / "p")
    p.add_images(files)
    face = p.add_template(FACE)
    (img,) = p.image_ids()
    pts = (Point(10, 10), Point(20, 10), Point(15, 15), Point(12, 20), Point(0, 0, SKIPPED))
    p.add_landmark_set(img, LandmarkSet(face.id, pts, None))
    out = export_labels(p, "yolo", tmp_path / "out", kind="pose")
    line = (tmp_path / "out" / "labels" / "img000.txt").read_text().split()
    assert line[0] == "0" and len(line) == 5 + 15
    assert np.allclose([float(v) for v in line[1:5]], [15 / W, 15 / H, 10 / W, 10 / H])
    dest = fresh(tmp_path)
    import_labels(dest, out)
    assert [c.name for c in dest.classes()] == ["face"]  # the template's name stands in
    (rec, ann), *_ = dest.iter_annotations()
    # the box was written for YOLO only: data.yaml marks it, so it makes no detection box
    assert ann.boxes == ()
    assert "pose_box" in (tmp_path / "out" / "data.yaml").read_text()
    assert [(q.x, q.y, q.visibility) for q in ann.landmarks[0].points] == [
        pytest.approx((q.x, q.y, q.visibility)) for q in pts
    ]
    t = dest.template(ann.landmarks[0].template_id)
    assert (t.name, t.points, t.flip_pairs, t.skeleton) == (
        FACE.name,
        FACE.points,
        FACE.flip_pairs,
        FACE.skeleton,
    )


def test_yolo_pose_export_needs_one_template(source, tmp_path):
    source.add_template(LandmarkTemplate("pair", ("a", "b")))
    img = source.image_ids()[3]
    source.add_landmark_set(
        img, LandmarkSet(source.template_by_name("pair").id, (Point(1, 1), Point(2, 2)))
    )
    with pytest.raises(ValueError, match="choose a template"):
        export_labels(source, "yolo", tmp_path / "out", kind="pose")
    warnings: list[str] = []
    export_labels(source, "yolo", tmp_path / "out", kind="pose", template="face", warnings=warnings)
    assert any("another template" in w for w in warnings)


def test_yolo_export_writes_split_folders(source, tmp_path):
    yaml_path = export_labels(source, "yolo", tmp_path / "out")
    root = yaml_path.parent
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*.txt")) == [
        "labels/test/img004.txt", "labels/train/img000.txt", "labels/train/img002.txt",
        "labels/train/img003.txt", "labels/val/img001.txt",
    ]  # fmt: skip
    import yaml

    data = yaml.safe_load(yaml_path.read_text())
    assert data["train"] == "images/train" and data["val"] == "images/val"
    assert data["names"] == {0: "cat", 1: "dog", 2: "bird"}


def test_export_warnings_name_what_the_format_cannot_hold(source, tmp_path):
    warnings: list[str] = []
    export_labels(source, "voc", tmp_path / "voc", warnings=warnings)
    assert any("landmarks not exported" in w for w in warnings)
    assert not any("masks not exported" in w for w in warnings)  # SegmentationClass PNGs
    warnings.clear()
    source.multi_label = True
    source.set_tags(
        source.image_ids()[1], [source.class_by_name("dog").id, source.class_by_name("cat").id]
    )
    export_labels(source, "folders", tmp_path / "folders", warnings=warnings)
    assert any("1 unlabelled images (no class tag) were not exported" in w for w in warnings)
    assert any("1 images with several class tags were not exported" in w for w in warnings)
    assert sorted(p.name for p in (tmp_path / "folders").iterdir()) == ["bird", "cat"]


def test_export_names_avoid_stem_collisions(tmp_path):
    a = write_image(tmp_path / "x" / "a.png", np.zeros((H, W, 3), np.uint8))
    b = write_image(tmp_path / "y" / "a.png", np.full((H, W, 3), 9, np.uint8))
    c = write_image(tmp_path / "y" / "a.bmp", np.full((H, W, 3), 99, np.uint8))
    p = Project.create(tmp_path / "p")
    p.add_images([a, b, c])
    cls = p.add_class("k").id
    for i in p.image_ids():
        p.add_box(i, Box(cls, 1, 1, 2 + i, 2 + i))
    out = export_labels(p, "yolo", tmp_path / "out")
    assert len(list((out.parent / "labels").glob("*.txt"))) == 3
    dest = fresh(tmp_path)
    import_labels(dest, out)
    assert dest.image_count() == 3
    assert sorted(b.x2 for _, a in dest.iter_annotations() for b in a.boxes) == pytest.approx(
        sorted(2 + i for i in p.image_ids())
    )


# -- all or nothing ------------------------------------------------------------------------------


def _corrupt_labelme(root: Path) -> Path:
    f = sorted(root.glob("*.json"))[2]
    doc = json.loads(f.read_text())
    doc["shapes"].append({"label": "cat", "points": [[1, 2], [3]], "shape_type": "rectangle"})
    f.write_text(json.dumps(doc))
    return f


def _corrupt_yolo(root: Path) -> Path:
    f = sorted((root / "labels").rglob("*.txt"))[2]
    f.write_text(f.read_text() + "7 0.5 0.5 0.1 0.1\n")
    return f


def _corrupt_voc(root: Path) -> Path:
    f = sorted((root / "Annotations").glob("*.xml"))[2]
    f.write_text(
        f.read_text().replace("</annotation>", "<object><name>x</name></object></annotation>")
    )
    return f


def _corrupt_coco(root: Path) -> Path:
    f = root / "annotations.json"
    doc = json.loads(f.read_text())
    doc["annotations"][len(doc["annotations"]) // 2]["bbox"] = [1, 2, 3]
    f.write_text(json.dumps(doc))
    return f


def _corrupt_csv(root: Path) -> Path:
    f = root / "labels.csv"
    lines = f.read_text().splitlines()
    lines.insert(3, "images/nope.png,cat")
    f.write_text("\n".join(lines) + "\n")
    return f


def _corrupt_folders(root: Path) -> Path:
    f = root / "cat" / "broken.png"
    f.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return f


CORRUPTIONS = {
    "labelme": (None, _corrupt_labelme, "points"),
    "yolo": ("detect", _corrupt_yolo, "line"),
    "voc": (None, _corrupt_voc, "bndbox"),
    "coco": (None, _corrupt_coco, "bbox"),
    "csv": (None, _corrupt_csv, "line 4"),
    "folders": (None, _corrupt_folders, ""),
}


@pytest.mark.parametrize("fmt", sorted(CORRUPTIONS))
def test_a_bad_file_in_the_middle_leaves_the_project_unchanged(source, tmp_path, fmt):
    kind, corrupt, where = CORRUPTIONS[fmt]
    out = export_labels(source, fmt, tmp_path / "out", kind=kind)
    bad = corrupt(tmp_path / "out")
    dest = fresh(tmp_path)
    dest.add_class("existing")
    make_images(tmp_path / "other", 1, (W, H), start=50)
    dest.add_images([tmp_path / "other"])
    before = dump(dest)
    with pytest.raises(FormatError) as err:
        import_labels(dest, out)
    assert err.value.path.name == bad.name or bad.name in str(err.value)
    assert where in err.value.where or where in str(err.value)
    assert dump(dest) == before
    # and it still works afterwards: the cache of templates was not left stale
    shutil.rmtree(tmp_path / "out")
    import_labels(dest, export_labels(source, fmt, tmp_path / "out", kind=kind))


def test_failed_import_removes_images_it_copied_in(source, tmp_path):
    out = export_labels(source, "labelme", tmp_path / "out")
    _corrupt_labelme(out)
    dest = fresh(tmp_path)
    with pytest.raises(FormatError):
        import_labels(dest, out, copy_images=True)
    assert not (dest.root / "images").exists() or not any((dest.root / "images").iterdir())
    report = import_labels(dest, export_labels(source, "coco", tmp_path / "ok"), copy_images=True)
    assert report.images_added == 5
    assert len(list((dest.root / "images").iterdir())) == 5


# -- exact error messages ---------------------------------------------------------------------------


def test_coco_error_names_the_record(source, tmp_path):
    out = export_labels(source, "coco", tmp_path / "out")
    doc = json.loads(out.read_text())
    doc["annotations"][7]["bbox"] = [1, 2, 3]
    out.write_text(json.dumps(doc))
    with pytest.raises(FormatError) as err:
        import_labels(fresh(tmp_path), out)
    assert str(err.value) == f"{out} (annotations[7].bbox): expected 4 numbers, got 3"


def test_yolo_error_names_the_line(source, tmp_path):
    out = export_labels(source, "yolo", tmp_path / "out")
    lbl = tmp_path / "out" / "labels" / "train" / "img003.txt"
    lbl.write_text("0 0.5 0.5 0.1 0.1\n" * 3 + "7 0.5 0.5 0.1 0.1\n")
    with pytest.raises(FormatError) as err:
        import_labels(fresh(tmp_path), out)
    assert str(err.value) == f"{lbl} (line 4): class index 7 out of range 0..2"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("0 0.5 0.5 0.2", r"expected 4 numbers \(box\) or an even number ≥ 6 \(polygon\)"),
        ("0 0.5 0.5 -0.2 0.1", "negative box size"),
        ("0 0.5 0.5 nan 0.1", "not a finite number"),
        ("0 1.5 0.5 0.2 0.1", "lies outside the image"),
        ("x 0.5 0.5 0.2 0.1", "class index: 'x' is not a number"),
        ("0 0.1 0.1 0.9 0.1 0.5", "expected 4 numbers"),
        ("0 0.1 0.1 0.9 0.1 1.9 0.9", "lies outside the image"),
    ],
)
def test_yolo_bad_lines(source, tmp_path, line, message):
    out = export_labels(source, "yolo", tmp_path / "out")
    (tmp_path / "out" / "labels" / "train" / "img003.txt").write_text(line + "\n")
    with pytest.raises(FormatError, match=message):
        import_labels(fresh(tmp_path), out)


def test_points_a_few_pixels_outside_are_clipped_with_a_warning_far_ones_refused(tmp_path):
    files = make_images(tmp_path / "imgs", 1, (W, H))
    doc = {
        "images": [{"id": 1, "file_name": files[0].name, "width": W, "height": H}],
        "categories": [{"id": 1, "name": "a"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [-2.5, 10, 66.5, 38.3]}],
    }
    f = tmp_path / "imgs" / "c.json"
    f.write_text(json.dumps(doc))
    p = fresh(tmp_path)
    report = import_labels(p, f)
    (_, ann), *_ = p.iter_annotations()
    assert ann.boxes[0].xyxy == (0.0, 10.0, 64.0, 48.0)
    assert report.warnings == [f"{f}: 2 points up to 2.5 px outside the image moved onto its edge"]
    doc["annotations"][0]["bbox"] = [-4, 10, 20, 20]
    f.write_text(json.dumps(doc))
    with pytest.raises(FormatError) as err:
        import_labels(p, f)
    assert str(err.value) == (
        f"{f} (annotations[0].bbox): x -4 lies outside the image (0..64 px) by more than the "
        "3 px tolerated"
    )


def test_missing_image_is_named(tmp_path):
    make_images(tmp_path / "d", 1, (W, H))
    (tmp_path / "d" / "l.csv").write_text("image,label\nimg000.png,a\nghost.png,b\n")
    p = fresh(tmp_path)
    with pytest.raises(FormatError, match=r"l\.csv \(line 3\): image 'ghost.png' not found"):
        import_labels(p, tmp_path / "d" / "l.csv")
    assert p.image_count() == 0 and p.classes() == []


def test_unreadable_image_is_named(tmp_path):
    make_images(tmp_path / "d", 1, (W, H))
    (tmp_path / "d" / "bad.png").write_bytes(b"not a png at all")
    (tmp_path / "d" / "l.csv").write_text("image,label\nimg000.png,a\nbad.png,b\n")
    with pytest.raises(FormatError, match=r"line 3.*bad\.png"):
        import_labels(fresh(tmp_path), tmp_path / "d" / "l.csv")


def test_single_label_conflict_is_an_error_but_replacing_is_not(tmp_path):
    make_images(tmp_path / "d", 2, (W, H))
    p = fresh(tmp_path)
    (tmp_path / "d" / "a.csv").write_text("image,label\nimg000.png,a\nimg001.png,b\n")
    import_labels(p, tmp_path / "d" / "a.csv")
    (tmp_path / "d" / "a.csv").write_text("filename,class\nimg000.png,b\n")
    import_labels(p, tmp_path / "d" / "a.csv")
    assert {r.name: [p.class_info(t).name for t in a.tags] for r, a in p.iter_annotations()} == {
        "img000.png": ["b"], "img001.png": ["b"],
    }  # fmt: skip
    (tmp_path / "d" / "a.csv").write_text("image,label\nimg001.png,a;b\n")
    with pytest.raises(FormatError, match="second class tag 'b'.*single-label"):
        import_labels(p, tmp_path / "d" / "a.csv")


def test_detect_format_refuses_unknown_things(tmp_path):
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(FormatError, match="cannot tell"):
        detect_format(tmp_path / "x.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FormatError, match="cannot tell"):
        detect_format(tmp_path / "empty")
    with pytest.raises(FormatError, match="no such"):
        detect_format(tmp_path / "nothing")
    with pytest.raises(ValueError, match="unknown format"):
        import_labels(fresh(tmp_path), tmp_path, "tiff")


# -- COCO RLE ------------------------------------------------------------------------------------

# A compressed RLE of a 50×70 mask as pycocotools writes it (from the README of
# armengot/COCOtoolsFORK, a port of the COCO API).
COCO_RLE_50x70 = (
    "0g05b08J4M2N2NA^O1`0OCO=0E090H080IO68DH;>@C>a0_O_O`0j0OWOF<:CM72I24NL43JM92FN;1ENKO72L0"
    "LO91J0MO92INO0NO122OO0M031O000NO31OO11MO40N011MO41MO21L06OL021L06OL021L06OL021L060J040L0"
    "60J040L060J040L060J040L060J040L060J040L060KO31L060KO31L06OL021L06OL021L06OL021MO41MO21MO"
    "40N100NO310O00M0310O00NO1220NO92IONO91KOMO72M0<1EO:2GN63KM34OLM73JF<;=1G_O_Ob0=AC`07EH=1"
    "IO71H090F0:1DO>1_O1b0>2N2N3L6H]O"
)


def test_rle_string_codec_reads_pycocotools_output():
    counts = coco_mod.string_to_counts(COCO_RLE_50x70)
    assert sum(counts) == 50 * 70 and min(counts) >= 0
    assert coco_mod.counts_to_string(counts) == COCO_RLE_50x70
    m = coco_mod.rle_decode(counts, 50, 70)
    assert 0 < m.sum() < 50 * 70
    assert coco_mod.rle_encode(m) == counts


@pytest.mark.parametrize("seed", range(5))
def test_rle_round_trip_random_masks(seed):
    rng = np.random.default_rng(seed)
    h, w = rng.integers(1, 40, 2)
    m = rng.random((h, w)) < rng.random()
    counts = coco_mod.rle_encode(m)
    assert sum(counts) == h * w
    assert np.array_equal(coco_mod.rle_decode(counts, h, w), m)
    assert coco_mod.string_to_counts(coco_mod.counts_to_string(counts)) == counts


def test_rle_counts_are_column_major_starting_with_zeros():
    m = np.array([[0, 1], [1, 1]], bool)  # column-major: 0 1 1 1
    assert coco_mod.rle_encode(m) == [1, 3]
    assert coco_mod.rle_encode(~m) == [0, 1, 3]
    big = np.zeros((300, 300), bool)
    big[:, 150:] = True
    s = coco_mod.counts_to_string(coco_mod.rle_encode(big))
    assert coco_mod.string_to_counts(s) == [45000, 45000]


def test_polygon_rasterisation_uses_pixel_centres():
    square = np.array([[2.0, 1.0], [6.0, 1.0], [6.0, 4.0], [2.0, 4.0]])  # pixel edges
    m = rasterize_polygon(square, 8, 8)
    want = np.zeros((8, 8), bool)
    want[1:4, 2:6] = True
    assert np.array_equal(m, want)
    line = rect(3, 5, 30, 6) | rect(29, 5, 30, 40)  # one pixel wide, bent
    for region in (want, disc(30, 20, 7), rect(0, 0, 1, 1), line, rect(0, 0, W, H)):
        polys = mask_polygons(region)
        back = np.zeros_like(region)
        for poly in polys:
            back |= rasterize_polygon(poly, *region.shape)
        assert np.array_equal(back, region)


# -- documents as the original tools write them -------------------------------------------------------


def test_real_coco_instances_and_keypoints(tmp_path):
    make_images(tmp_path / "images", 2, (W, H))
    doc = """{
 "info": {"year": 2017, "version": "1.0"},
 "licenses": [{"id": 1, "name": "CC"}],
 "images": [
  {"license": 1, "file_name": "img000.png", "height": 48, "width": 64, "id": 397133},
  {"license": 1, "file_name": "img001.png", "height": 48, "width": 64, "id": 37777}],
 "annotations": [
  {"segmentation": [[10.0, 10.0, 30.0, 10.0, 30.0, 20.0, 10.0, 20.0]], "area": 200.0,
   "iscrowd": 0, "image_id": 397133, "bbox": [10.0, 10.0, 20.0, 10.0], "category_id": 1, "id": 1},
  {"segmentation": {"counts": [100, 20, 28, 20, 2904], "size": [48, 64]}, "area": 40,
   "iscrowd": 1, "image_id": 37777, "bbox": [2.0, 4.0, 2.0, 20.0], "category_id": 2, "id": 2},
  {"num_keypoints": 2, "area": 300.0, "iscrowd": 0, "image_id": 37777, "category_id": 1,
   "keypoints": [20, 12, 2, 0, 0, 0, 25.5, 30, 1], "bbox": [15.0, 5.0, 20.0, 30.0],
   "segmentation": [], "id": 3},
  {"num_keypoints": 0, "area": 50.0, "iscrowd": 0, "image_id": 37777, "category_id": 1,
   "keypoints": [0, 0, 0, 0, 0, 0, 0, 0, 0], "bbox": [40.0, 40.0, 5.0, 5.0], "id": 4},
  {"id": 5, "image_id": 397133, "category_id": 2}],
 "categories": [
  {"supercategory": "person", "id": 1, "name": "person",
   "keypoints": ["nose", "left_eye", "right_eye"], "skeleton": [[1, 2], [1, 3]]},
  {"supercategory": "animal", "id": 2, "name": "dog"}]
}"""
    (tmp_path / "annotations").mkdir()
    f = tmp_path / "annotations" / "person_keypoints_val2017.json"
    f.write_text(doc)
    assert detect_format(tmp_path) == "coco"
    p = fresh(tmp_path)
    report = import_labels(p, tmp_path)
    assert report.annotations == {
        "tags": 1, "boxes": 4, "landmarks": 1, "masks": 2, "objects": 2, "ignore": 0
    }  # fmt: skip
    person, dog = p.class_by_name("person").id, p.class_by_name("dog").id
    t = p.template_by_name("person")
    assert t.points == ("nose", "left_eye", "right_eye")
    assert t.skeleton == ((0, 1), (0, 2)) and t.flip_pairs == ((1, 2),)
    a0 = p.annotations(p.image_by_path(tmp_path / "images" / "img000.png").id)
    assert a0.tags == (dog,)
    assert a0.boxes[0].xyxy == (10.0, 10.0, 30.0, 20.0)
    assert np.array_equal(a0.mask == person, rect(10, 10, 30, 20))
    a1 = p.annotations(p.image_by_path(tmp_path / "images" / "img001.png").id)
    assert [b.xyxy for b in a1.boxes] == [
        (2.0, 4.0, 4.0, 24.0),
        (15.0, 5.0, 35.0, 35.0),
        (40, 40, 45, 45),
    ]
    assert a1.landmarks[0].points == (
        Point(20, 12, VISIBLE),
        Point(0, 0, SKIPPED),
        Point(25.5, 30, OCCLUDED),
    )
    assert a1.landmarks[0].class_id == person
    assert np.array_equal(a1.mask == dog, rect(2, 4, 4, 24))  # column-major runs


def test_real_yolo_dataset_roboflow_layout(tmp_path):
    root = tmp_path / "ds"
    make_images(root / "train" / "images", 2, (W, H))
    make_images(root / "valid" / "images", 1, (W, H), start=5)
    (root / "data.yaml").write_text(
        "train: ../train/images\nval: ../valid/images\ntest: ../test/images\n\n"
        "nc: 3\nnames: ['cat', 'dog', 'person']\n\n"
        "roboflow:\n  workspace: x\n  project: y\n  version: 1\n"
    )
    (root / "train" / "labels").mkdir()
    (root / "train" / "labels" / "img000.txt").write_text(
        "0 0.5 0.5 0.25 0.5\n2 0.1 0.1 0.9 0.1 0.9 0.9 0.1 0.9\n"
    )
    (root / "train" / "labels" / "img001.txt").write_text("")
    (root / "valid" / "labels").mkdir()
    (root / "valid" / "labels" / "img005.txt").write_text("1 0.25 0.75 0.5 0.5\n")
    assert detect_format(root) == "yolo"
    p = fresh(tmp_path)
    report = import_labels(p, root / "data.yaml")
    assert report.images_added == 3
    assert [c.name for c in p.classes()] == ["cat", "dog", "person"]
    a = p.annotations(p.image_by_path(root / "train" / "images" / "img000.png").id)
    assert a.boxes[0].xyxy == pytest.approx((24.0, 12.0, 40.0, 36.0))
    person = p.class_by_name("person").id
    assert (a.mask == person).sum() == pytest.approx(0.8 * W * 0.8 * H, rel=0.1)
    a = p.annotations(p.image_by_path(root / "valid" / "images" / "img005.png").id)
    assert a.boxes[0].xyxy == pytest.approx((0.0, 24.0, 32.0, 48.0))


def test_real_yolo_pose_with_two_dimensional_keypoints(tmp_path):
    root = tmp_path / "pose"
    make_images(root / "images" / "train", 1, (W, H))
    (root / "data.yaml").write_text(
        "path: /somewhere/else\ntrain: images/train\nval: images/train\n"
        "kpt_shape: [3, 2]\nflip_idx: [0, 2, 1]\nnames:\n  0: person\n"
    )
    (root / "labels" / "train").mkdir(parents=True)
    (root / "labels" / "train" / "img000.txt").write_text(
        "0 0.5 0.5 0.5 0.5 0.5 0.25 0.4 0.5 0 0\n"
    )
    p = fresh(tmp_path)
    import_labels(p, root)
    t = p.template_by_name("yolo pose")
    assert t.points == ("p0", "p1", "p2") and t.flip_pairs == ((1, 2),)
    (_, a), *_ = p.iter_annotations()
    assert a.landmarks[0].points == (Point(32, 12), Point(25.6, 24), Point(0, 0, SKIPPED))


def test_yolo_label_without_image_is_an_error(tmp_path):
    root = tmp_path / "ds"
    make_images(root / "images", 1, (W, H))
    (root / "labels").mkdir()
    (root / "labels" / "img000.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    (root / "labels" / "orphan.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    (root / "data.yaml").write_text("names: [a]\n")
    with pytest.raises(FormatError, match="orphan.txt: no image for this label file"):
        import_labels(fresh(tmp_path), root)


def test_real_voc_from_labelimg(tmp_path):
    make_images(tmp_path / "JPEGImages", 1, (W, H))
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "Annotations" / "img000.xml").write_text("""<annotation>
	<folder>JPEGImages</folder>
	<filename>img000.png</filename>
	<path>C:\\Users\\me\\data\\JPEGImages\\img000.png</path>
	<source>
		<database>Unknown</database>
	</source>
	<size>
		<width>64</width>
		<height>48</height>
		<depth>3</depth>
	</size>
	<segmented>0</segmented>
	<object>
		<name>dog</name>
		<pose>Unspecified</pose>
		<truncated>0</truncated>
		<difficult>0</difficult>
		<bndbox>
			<xmin>11</xmin>
			<ymin>1</ymin>
			<xmax>40</xmax>
			<ymax>48</ymax>
		</bndbox>
	</object>
	<object>
		<name>cat</name>
		<bndbox><xmin>0</xmin><ymin>5.5</ymin><xmax>64</xmax><ymax>20.25</ymax></bndbox>
	</object>
</annotation>
""")
    assert detect_format(tmp_path) == "voc"
    p = fresh(tmp_path)
    import_labels(p, tmp_path)
    (_, a), *_ = p.iter_annotations()
    # 1-based inclusive pixel indices: xmin 11 = pixel column 10, whose left edge is x = 10
    assert a.boxes[0].xyxy == (10.0, 0.0, 40.0, 48.0)
    assert a.boxes[1].xyxy == (0.0, 4.5, 64.0, 20.25)  # xmin 0 (0-based tools) clipped
    out = export_labels(p, "voc", tmp_path / "out")
    text = (out / "Annotations" / "img000.xml").read_text()
    assert "<xmin>11</xmin>" in text and "<ymin>1</ymin>" in text and "<xmax>40</xmax>" in text


def test_voc_refuses_entities(tmp_path):
    make_images(tmp_path, 1, (W, H))
    (tmp_path / "a.xml").write_text(
        '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">]>'
        "<annotation><filename>img000.png</filename></annotation>"
    )
    with pytest.raises(FormatError, match="DTD"):
        import_labels(fresh(tmp_path), tmp_path / "a.xml")


def test_real_labelme_files(tmp_path):
    make_images(tmp_path, 2, (W, H))
    (tmp_path / "img000.json").write_text("""{
  "version": "5.2.1",
  "flags": {"indoor": true, "outdoor": false},
  "shapes": [
    {"label": "person", "points": [[40.0, 30.0], [10.5, 5.0]], "group_id": null,
     "description": "", "shape_type": "rectangle", "flags": {}},
    {"label": "nose", "points": [[20.0, 10.0]], "group_id": 1, "description": "",
     "shape_type": "point", "flags": {}},
    {"label": "left_eye", "points": [[18.0, 8.0]], "group_id": 1, "description": "",
     "shape_type": "point", "flags": {}},
    {"label": "nose", "points": [[50.0, 10.0]], "group_id": 2, "description": "",
     "shape_type": "point", "flags": {}},
    {"label": "road", "points": [[0, 40], [64, 40], [64, 48], [0, 48]], "group_id": null,
     "description": "", "shape_type": "polygon", "flags": {}},
    {"label": "ball", "points": [[10, 40], [13, 40]], "group_id": null,
     "shape_type": "circle", "flags": {}},
    {"label": "edge", "points": [[0, 0], [10, 10]], "group_id": null,
     "shape_type": "line", "flags": {}}
  ],
  "imagePath": "img000.png",
  "imageData": null,
  "imageHeight": 48,
  "imageWidth": 64
}""")
    (tmp_path / "img001.json").write_text(json.dumps({
        "version": "4.5.6", "flags": {}, "imagePath": "..\\" + tmp_path.name + "\\img001.png",
        "imageData": None, "imageHeight": 48, "imageWidth": 64,
        "shapes": [{"label": "right_eye", "points": [[5, 5]], "group_id": None,
                    "shape_type": "point", "flags": {}}],
    }))  # fmt: skip
    assert detect_format(tmp_path) == "labelme"
    p = fresh(tmp_path)
    report = import_labels(p, tmp_path)
    assert report.annotations == {
        "tags": 1, "boxes": 1, "landmarks": 3, "masks": 1, "objects": 2, "ignore": 0
    }  # fmt: skip
    assert any("line shapes are not imported" in w for w in report.warnings)
    t = p.template_by_name("labelme points")
    assert t.points == ("nose", "left_eye", "right_eye")  # order of first appearance
    a0 = p.annotations(p.image_by_path(tmp_path / "img000.png").id)
    assert [p.class_info(c).name for c in a0.tags] == ["indoor"]
    assert a0.boxes[0].xyxy == (10.5, 5.0, 40.0, 30.0)
    assert sorted((s.points for s in a0.landmarks), key=repr) == sorted([
        (Point(20, 10), Point(18, 8), Point(0, 0, SKIPPED)),
        (Point(50, 10), Point(0, 0, SKIPPED), Point(0, 0, SKIPPED)),
    ], key=repr)  # fmt: skip
    road, ball = p.class_by_name("road").id, p.class_by_name("ball").id
    assert np.array_equal(a0.mask == road, rect(0, 40, 64, 48) & ~disc(10, 40, 3))
    assert (a0.mask == ball).sum() == disc(10, 40, 3).sum()


def test_labelme_embedded_image_data(tmp_path):
    img = np.zeros((H, W, 3), np.uint8)
    img[5:10, 5:10] = 200
    ok, buf = cv2.imencode(".png", img)
    import base64

    (tmp_path / "gone.json").write_text(json.dumps({
        "flags": {"x": True}, "shapes": [], "imagePath": "gone.png",
        "imageData": base64.b64encode(buf.tobytes()).decode(), "imageHeight": H, "imageWidth": W,
    }))  # fmt: skip
    p = fresh(tmp_path)
    import_labels(p, tmp_path / "gone.json")
    (rec, a), *_ = p.iter_annotations()
    assert rec.path == "images/gone.png" and a.tags == (p.class_by_name("x").id,)


def test_folders_with_split_level(tmp_path):
    make_images(tmp_path / "ds" / "train" / "cat", 2, (W, H))
    make_images(tmp_path / "ds" / "val" / "dog", 1, (W, H), start=10)
    make_images(tmp_path / "ds" / "train" / "dog" / "nested", 1, (W, H), start=20)
    (tmp_path / "ds" / "train" / "cat" / "notes.txt").write_text("x")
    assert detect_format(tmp_path / "ds") == "folders"
    p = fresh(tmp_path)
    report = import_labels(p, tmp_path / "ds")
    assert report.images_added == 4 and report.annotations["tags"] == 4
    assert any("not images" in w for w in report.warnings)
    counts = {c.name: p.class_usage(c.id)["tags"] for c in p.classes()}
    assert counts == {"cat": 2, "dog": 2}


def test_image_matched_by_content_is_not_duplicated(tmp_path):
    (f,) = make_images(tmp_path / "a", 1, (W, H))
    shutil.copy(f, tmp_path / "copy.png")
    p = fresh(tmp_path)
    p.add_images([f])
    (tmp_path / "l.csv").write_text("image,label\ncopy.png,a\n")
    report = import_labels(p, tmp_path / "l.csv")
    assert (report.images_added, report.images_matched) == (0, 1)
    assert p.image_count() == 1 and p.stats()["kinds"]["tags"] == 1


def test_rolled_back_templates_do_not_linger(tmp_path):
    """A failed import rolls back a new template; the next import reusing its id must see
    the new template, not a cached copy of the rolled-back one."""
    make_images(tmp_path, 1)
    doc = {
        "images": [{"id": 1, "file_name": "img000.png"}],
        "categories": [{"id": 1, "name": "a", "keypoints": ["p", "q"]}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "keypoints": [1, 1, 2, 2, 2, 2]},
            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [1, 1]},
        ],
    }
    (tmp_path / "bad.json").write_text(json.dumps(doc))
    p = fresh(tmp_path)
    with pytest.raises(FormatError, match=r"annotations\[1\]\.bbox"):
        import_labels(p, tmp_path / "bad.json")
    doc["categories"][0] = {"id": 1, "name": "b", "keypoints": ["x", "y", "z"]}
    doc["annotations"] = [
        {"id": 1, "image_id": 1, "category_id": 1, "keypoints": [1, 1, 2, 2, 2, 2, 3, 3, 1]}
    ]
    (tmp_path / "good.json").write_text(json.dumps(doc))
    import_labels(p, tmp_path / "good.json")
    (_, a), *_ = p.iter_annotations()
    assert p.template(a.landmarks[0].template_id).points == ("x", "y", "z")


@pytest.mark.parametrize(
    ("name", "text", "fmt"),
    [
        ("a.json", '{"images": [], "annotations": []}', "coco"),
        ("a.json", '{"version": "5.0", "flags": {}, "shapes": []}', "labelme"),
        ("data.yaml", "names: [a]", "yolo"),
        ("a.xml", "<annotation/>", "voc"),
        ("a.csv", "image,label\n", "csv"),
    ],
)
def test_detect_format_of_single_files(tmp_path, name, text, fmt):
    (tmp_path / name).write_text(text)
    assert detect_format(tmp_path / name) == fmt
    assert detect_format(tmp_path) == fmt


def test_labelme_mask_shape(tmp_path):
    import base64

    make_images(tmp_path, 1)
    patch = np.array([[1, 0, 1], [1, 1, 0]], np.uint8)
    ok, buf = cv2.imencode(".png", patch * 255)
    shape = {"label": "blob", "points": [[4.0, 7.0], [6.0, 8.0]], "group_id": None,
             "shape_type": "mask", "flags": {}, "mask": base64.b64encode(buf.tobytes()).decode()}  # fmt: skip
    doc = {"shapes": [shape], "imagePath": "img000.png", "imageHeight": H, "imageWidth": W}
    (tmp_path / "img000.json").write_text(json.dumps(doc))
    p = fresh(tmp_path)
    import_labels(p, tmp_path / "img000.json")
    (_, a), *_ = p.iter_annotations()
    want = np.zeros((H, W), bool)
    want[7:9, 4:7] = patch.astype(bool)
    assert np.array_equal(a.mask > 0, want)
    shape["points"] = [[4.0, 7.0], [7.0, 8.0]]
    (tmp_path / "img000.json").write_text(json.dumps(doc))
    with pytest.raises(FormatError, match=r"shapes\[0\]\.mask\): mask is 3×2 px, its box 4×2 px"):
        import_labels(p, tmp_path / "img000.json")


def test_yolo_labelimg_flat_layout(tmp_path):
    """labelImg writes classes.txt and the label files beside the images; an ``images``
    folder above the dataset does not count."""
    root = tmp_path / "images" / "set"
    make_images(root, 2)
    (root / "classes.txt").write_text("cat\ndog\n")
    (root / "img001.txt").write_text("1 0.5 0.5 0.5 0.5\n")
    assert detect_format(root) == "yolo"
    p = fresh(tmp_path)
    report = import_labels(p, root)
    assert report.images_added == 2 and report.annotations["boxes"] == 1
    a = p.annotations(p.image_by_path(root / "img001.png").id)
    assert a.boxes[0].xyxy == pytest.approx((16, 12, 48, 36))
    assert a.boxes[0].class_id == p.class_by_name("dog").id
