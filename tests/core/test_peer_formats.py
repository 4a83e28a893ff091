"""Label files written by other tools (tests/data/peers, see its README): labelme's own
example folders and what labelme2voc / labelme2coco made of them, DeepLabCut's example
project, SLEAP's test files. Each is imported as a user would, with the counts it
holds, then exported in every format and imported again."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from tlstudio.core.annotations import OCCLUDED, SKIPPED, VISIBLE, Box, LandmarkSet, Point
from tlstudio.core.errors import FormatError
from tlstudio.core.formats import detect_format, export_labels, import_labels
from tlstudio.core.formats._common import rasterize_outline, rasterize_polygon
from tlstudio.core.formats.dlc import read_csv_table, read_h5_table
from tlstudio.core.project import Project

PEERS = Path(__file__).resolve().parents[1] / "data" / "peers"
LABELME = PEERS / "labelme"


def peer_example(name: str, dest: Path) -> Path:
    """labelme's example folder ``name`` rebuilt under ``dest`` exactly as labelme ships
    it (label files from ``examples/``, images from ``blobs/`` by ``images.json``)."""
    src = LABELME / "examples" / name
    shutil.copytree(src, dest / name)
    for rel, blob in json.loads((LABELME / "images.json").read_text()).items():
        if rel.startswith(name + "/"):
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(LABELME / "blobs" / blob, target)
    return dest / name


def new_project(tmp_path: Path, name: str = "p", multi: bool = True) -> Project:
    return Project.create(tmp_path / name, multi_label=multi)


def class_names(p: Project) -> dict[int, str]:
    return {c.id: c.name for c in p.classes()}


def objects(p: Project) -> dict[str, list[tuple[str, np.ndarray]]]:
    """Per image file stem: (class name, region) of each object, in order."""
    names = class_names(p)
    out = {}
    for rec, ann in p.iter_annotations():
        stem = rec.name.rsplit(".", 1)[0]
        layer = ann.instances
        out[stem] = [] if layer is None else [
            (names[o.class_id], layer.region(o.number)) for o in layer.objects
        ]  # fmt: skip
    return out


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


# -- labelme's example folders, imported ------------------------------------------------------


# folder, sub-folder, format recognised, images, per-kind counts (those not named are 0)
LABELME_IMPORTS = [
    ("bbox_detection", "data_annotated", "labelme", 3, {"boxes": 9}),
    ("bbox_detection", "data_dataset_voc", "voc", 3, {"boxes": 9}),
    ("classification", "data_annotated", "labelme", 2, {"tags": 2}),
    ("instance_segmentation", "data_annotated", "labelme", 3,
     {"masks": 3, "objects": 12, "ignore": 2}),
    ("instance_segmentation", "data_dataset_coco", "coco", 3,
     {"masks": 3, "objects": 12, "boxes": 12}),
    ("instance_segmentation", "data_dataset_voc", "voc", 3,
     {"masks": 3, "objects": 12, "ignore": 2}),
    ("semantic_segmentation", "data_annotated", "labelme", 3,
     {"masks": 3, "objects": 16, "ignore": 2}),
    ("semantic_segmentation", "data_dataset_voc", "voc", 3, {"masks": 3, "ignore": 2}),
    ("video_annotation", "data_annotated", "labelme", 5, {"masks": 5, "objects": 15}),
    ("video_annotation", "data_dataset_voc", "voc", 5, {"masks": 5}),
    ("primitives", "", "labelme", 1, {"boxes": 2, "landmarks": 1, "masks": 1, "objects": 3}),
    ("tutorial", "", "labelme", 1, {"masks": 1, "objects": 4}),
]  # fmt: skip


@pytest.mark.parametrize(("folder", "sub", "fmt", "n_images", "counts"), LABELME_IMPORTS)
def test_each_labelme_example_folder_imports_with_its_counts(
    tmp_path, folder, sub, fmt, n_images, counts
):
    example = peer_example(folder, tmp_path / "src")
    path = example / sub if sub else example
    assert detect_format(path) == fmt
    p = new_project(tmp_path)
    report = import_labels(p, path)
    want = {
        k: counts.get(k, 0) for k in ("tags", "boxes", "landmarks", "masks", "objects", "ignore")
    }
    assert report.annotations == want
    assert report.images_added == p.image_count() == n_images
    # labelme's two conventions are no classes
    assert not {"__ignore__", "_background_"} & {c.name for c in p.classes()}
    p.close()


def test_the_three_instance_segmentation_sources_give_the_same_objects(tmp_path):
    """labelme's JSON (group_id), labelme2coco's COCO and labelme2voc's SegmentationObject
    PNGs of the same example give the same 12 objects (classes in the same order per
    image; pixels equal up to how each tool fills a polygon's border)."""
    example = peer_example("instance_segmentation", tmp_path / "src")
    got = {}
    for sub in ("data_annotated", "data_dataset_coco", "data_dataset_voc"):
        p = new_project(tmp_path, sub)
        import_labels(p, example / sub)
        got[sub] = objects(p)
        p.close()
    ref = got["data_annotated"]
    assert sum(len(v) for v in ref.values()) == 12
    # the person in 2011_000003 drawn as two polygons with group_id 0 is one object
    assert [c for c, _ in ref["2011_000003"]] == ["person", "person", "bottle"]
    # the sofa of 2011_000006: four polygons with group_id 0, one object
    assert [c for c, _ in ref["2011_000006"]].count("sofa") == 1
    for sub in ("data_dataset_coco", "data_dataset_voc"):
        for stem, objs in ref.items():
            other = got[sub][stem]
            assert [c for c, _ in other] == [c for c, _ in objs], (sub, stem)
            for (_, a), (_, b) in zip(objs, other, strict=True):
                assert iou(a, b) > 0.9, (sub, stem)


def test_semantic_example_points_slightly_outside_are_clipped_with_a_warning(tmp_path):
    """2011_000006.json has y = 375.77 on a 375 px image: clipped and counted, not refused."""
    example = peer_example("semantic_segmentation", tmp_path / "src")
    p = new_project(tmp_path)
    report = import_labels(p, example / "data_annotated" / "2011_000006.json")
    assert report.annotations["objects"] == 9
    src = example / "data_annotated" / "2011_000006.json"
    assert f"{src}: 1 point up to 0.769 px outside the image moved onto its edge" in report.warnings


def test_tutorial_image_comes_from_image_data(tmp_path):
    """tutorial/apc2016_obj3.json names itself as imagePath; the image is imageData."""
    example = peer_example("tutorial", tmp_path / "src")
    p = new_project(tmp_path)
    import_labels(p, example / "apc2016_obj3.json")
    (rec,) = p.images()
    assert (rec.width, rec.height, rec.format) == (1210, 907, "JPEG")
    assert p.image_path(rec).parent == p.root / "images"
    assert rec.name == "apc2016_obj3.jpg"
    # importing again matches the image by content instead of writing a second copy
    import_labels(p, example / "apc2016_obj3.json")
    assert p.image_count() == 1 and len(list((p.root / "images").iterdir())) == 1


def test_ignore_and_background_regions(tmp_path):
    """``__ignore__`` polygons are the ignore region (no class, pixels unlabelled);
    ``_background_`` (labelme2coco's category 0) is no class either."""
    example = peer_example("instance_segmentation", tmp_path / "src")
    p = new_project(tmp_path)
    import_labels(p, example / "data_annotated" / "2011_000003.json")
    (rec,) = p.images()
    ann = p.annotations(rec.id)
    doc = json.loads((example / "data_annotated" / "2011_000003.json").read_text())
    (shape,) = [s for s in doc["shapes"] if s["label"] == "__ignore__"]
    region = rasterize_polygon(np.array(shape["points"]), rec.height, rec.width)
    assert ann.ignore is not None and np.array_equal(ann.ignore, region)
    assert ann.mask is not None and not ann.mask[region].any()
    q = new_project(tmp_path, "coco")
    import_labels(q, example / "data_dataset_coco")
    assert q.class_by_name("_background_") is None and q.class_by_name("person") is not None


def test_labelme2voc_boxes_are_read_zero_based_and_match_labelme(tmp_path):
    """labelme2voc writes labelme's raw corners: read as 0-based they are labelme's boxes."""
    example = peer_example("bbox_detection", tmp_path / "src")
    boxes = {}
    for sub in ("data_annotated", "data_dataset_voc"):
        p = new_project(tmp_path, sub)
        report = import_labels(p, example / sub)
        names = class_names(p)
        boxes[sub] = {
            rec.name.rsplit(".", 1)[0]: sorted((names[b.class_id], *b.xyxy) for b in ann.boxes)
            for rec, ann in p.iter_annotations()
        }
        if sub == "data_dataset_voc":
            assert any("labelme2voc" in w for w in report.warnings)
        p.close()
    assert boxes["data_annotated"] == boxes["data_dataset_voc"]


def test_voc_zero_based_option_and_one_based_default(tmp_path):
    from tlstudio.cli import main

    img = tmp_path / "JPEGImages" / "a.png"
    img.parent.mkdir()
    cv2.imwrite(str(img), np.zeros((20, 30, 3), np.uint8))
    xml = tmp_path / "Annotations" / "a.xml"
    xml.parent.mkdir()
    xml.write_text(
        "<annotation><filename>a.png</filename><source><database>mine</database></source>"
        "<object><name>x</name><bndbox><xmin>1</xmin><ymin>2</ymin><xmax>10</xmax>"
        "<ymax>12</ymax></bndbox></object></annotation>"
    )
    p = new_project(tmp_path, "one")
    import_labels(p, tmp_path / "Annotations")
    assert [b.xyxy for b in p.boxes(p.image_ids()[0])] == [(0.0, 1.0, 10.0, 12.0)]
    p.close()
    Project.create(tmp_path / "zero").close()
    assert main(["import", str(tmp_path / "zero"), str(tmp_path / "Annotations"),
                 "--format", "voc", "--voc-zero-based"]) == 0  # fmt: skip
    with Project.open(tmp_path / "zero") as z:
        assert [b.xyxy for b in z.boxes(z.image_ids()[0])] == [(1.0, 2.0, 10.0, 12.0)]
        out = export_labels(z, "voc", tmp_path / "out0", options={"zero_based": True})
    text = (out / "Annotations" / "a.xml").read_text()
    assert "<xmin>1</xmin>" in text and "<ymin>2</ymin>" in text
    with pytest.raises(ValueError, match="--voc-zero-based does not apply to a COCO import"):
        import_labels(new_project(tmp_path, "c"), out, "coco", options={"zero_based": True})


# -- polygons written back ---------------------------------------------------------------------


def _polygon_shapes(doc: dict) -> dict[str, list[list[list[float]]]]:
    out: dict[str, list] = {}
    for s in doc["shapes"]:
        if s["shape_type"] in ("polygon", "circle"):
            out.setdefault(s["label"], []).append(s["points"])
    return out


def test_unedited_objects_keep_their_labelme_polygons_and_circles(tmp_path):
    example = peer_example("primitives", tmp_path / "src")
    p = new_project(tmp_path)
    import_labels(p, example)
    out = export_labels(p, "labelme", tmp_path / "out")
    doc = json.loads((out / "primitives.json").read_text())
    src = json.loads((example / "primitives.json").read_text())
    want = {
        s["label"]: s["points"] for s in src["shapes"] if s["shape_type"] in ("polygon", "circle")
    }
    got = {s["label"]: (s["shape_type"], s["points"]) for s in doc["shapes"] if s["label"] in want}
    assert got == {"circle": ("circle", want["circle"]), "polygon": ("polygon", want["polygon"])}


def test_edited_objects_are_traced_with_few_vertices_within_one_percent(tmp_path):
    """An object whose pixels changed is traced again: Douglas–Peucker keeps the vertex
    count near labelme's original while the refilled pixels differ by under 1 %."""
    example = peer_example("instance_segmentation", tmp_path / "src")
    p = new_project(tmp_path)
    import_labels(p, example / "data_annotated" / "2011_000003.json")
    (rec,) = p.images()
    layer = p.instances.layer(rec.id)
    assert layer is not None
    person = layer.objects[0]  # the person of 41 vertices
    assert person.outline is not None and len(person.outline[0].coords) == 2 * 41
    region = layer.region(person.number)
    nick = np.zeros_like(region)
    ys, xs = np.nonzero(region)
    nick[ys[0], xs[0]] = True  # an edit: one pixel erased
    p.instances.remove_region(person.id, nick)
    edited = region & ~nick
    out = export_labels(p, "labelme", tmp_path / "out")
    doc = json.loads((out / "2011_000003.json").read_text())
    obj = doc["tlstudio"]["objects"][0]
    (shape,) = [doc["shapes"][i] for i in obj["shapes"]]
    assert len(shape["points"]) <= 60  # the staircase outline had 470
    refilled = rasterize_polygon(np.array(shape["points"]), rec.height, rec.width)
    assert (refilled ^ edited).sum() < 0.01 * edited.sum()
    # the circle of the primitives example: a handful of vertices, not 134
    q = new_project(tmp_path, "q")
    import_labels(q, peer_example("primitives", tmp_path / "src2"))
    (r2,) = q.images()
    circle = next(
        o for o in q.instances.of_image(r2.id) if q.class_info(o.class_id).name == "circle"
    )
    q.instances.add_region(
        circle.id, np.zeros((r2.height, r2.width), bool)
    )  # edited: outline dropped
    data_yaml = export_labels(q, "yolo", tmp_path / "out2", kind="segment")
    lines = (tmp_path / "out2" / "labels" / "primitives.txt").read_text().splitlines()
    names = yaml.safe_load(data_yaml.read_text())["names"]
    circle_idx = next(int(k) for k, v in names.items() if v == "circle")
    (line,) = [ln for ln in lines if ln.split()[0] == str(circle_idx)]
    assert (len(line.split()) - 1) // 2 <= 40


# -- every example, exported in every format and imported again ------------------------------

EXPORTS = [("coco", None), ("labelme", None), ("voc", None), ("yolo", "detect"),
           ("yolo", "segment"), ("yolo", "pose"), ("csv", None), ("folders", None),
           ("dlc", None), ("sleap", None)]  # fmt: skip


def snapshot(p: Project) -> dict[str, dict]:
    names = class_names(p)
    out = {}
    for rec, ann in p.iter_annotations():
        lms = []
        for s in ann.landmarks:
            t = p.template(s.template_id)
            lms.append((t.points, tuple((q.x, q.y, q.visibility) for q in s.points)))
        objs = [] if ann.instances is None else [
            (names[o.class_id], o.iscrowd, ann.instances.region(o.number))
            for o in ann.instances.objects
        ]  # fmt: skip
        stuff = None
        if ann.mask is not None:
            stuff = (
                ann.mask if ann.instances is None else np.where(ann.instances.map > 0, 0, ann.mask)
            )
            stuff = {names[c]: stuff == c for c in np.unique(stuff) if c}
        out[rec.name.rsplit(".", 1)[0]] = {
            "tags": sorted(names[t] for t in ann.tags),
            "boxes": sorted((names[b.class_id], *b.xyxy) for b in ann.boxes),
            "landmarks": sorted(lms, key=repr),
            "objects": objs,
            "stuff": stuff or {},
            "ignore": ann.ignore,
        }
    return out


EXAMPLES = [("bbox_detection", "data_annotated"), ("classification", "data_annotated"),
            ("instance_segmentation", "data_annotated"), ("instance_segmentation", "data_dataset_coco"),
            ("semantic_segmentation", "data_dataset_voc"), ("primitives", "")]  # fmt: skip


def _survives(fmt: str, kind: str | None) -> set[str]:
    """What the format keeps exactly (see the closing table in the README)."""
    return {
        ("coco", None): {"tags", "boxes", "landmarks", "objects", "stuff", "ignore"},
        ("labelme", None): {"tags", "boxes", "landmarks", "objects~", "stuff~", "ignore~"},
        ("voc", None): {"boxes", "objects", "stuff", "ignore"},
        ("yolo", "detect"): {"boxes"},
        ("yolo", "segment"): {"objects~", "stuff~"},
        ("yolo", "pose"): {"boxes", "landmarks"},
        ("csv", None): {"tags"},
        ("folders", None): {"tags"},
        ("dlc", None): {"landmarks"},
        ("sleap", None): {"landmarks"},
    }[(fmt, kind)]


@pytest.mark.parametrize(("folder", "sub"), EXAMPLES)
def test_examples_exported_in_every_format_come_back(tmp_path, folder, sub):
    example = peer_example(folder, tmp_path / "src")
    p = new_project(tmp_path)
    import_labels(p, example / sub if sub else example)
    want = snapshot(p)
    has_landmarks = any(v["landmarks"] for v in want.values())
    for fmt, kind in EXPORTS:
        if fmt in ("dlc", "sleap") and not has_landmarks:
            with (
                pytest.raises(ValueError, match="needs landmark sets")
                if fmt == "dlc"
                else _nothing()
            ):
                export_labels(p, fmt, tmp_path / f"out_{fmt}", kind=kind)
            continue
        if kind == "pose" and not has_landmarks:
            continue
        warnings: list[str] = []
        out = export_labels(p, fmt, tmp_path / f"out_{fmt}_{kind}", kind=kind, warnings=warnings)
        q = new_project(tmp_path, f"back_{fmt}_{kind}")
        keep = _survives(fmt, kind)
        exported = {k for k, v in want.items() if fmt != "folders" or len(v["tags"]) == 1}
        if fmt in ("dlc", "sleap"):
            exported = {k for k in exported if want[k]["landmarks"]}
        if not exported:  # e.g. class folders of a project without tags: an empty folder
            with pytest.raises(FormatError):
                import_labels(q, out, fmt)
            q.close()
            continue
        import_labels(q, out, fmt)
        got = snapshot(q)
        assert set(got) == exported, (fmt, kind)
        for stem in exported:
            w, g = want[stem], got[stem]
            if "tags" in keep:
                assert g["tags"] == w["tags"], (fmt, kind, stem)
            if "boxes" in keep:
                assert _same_boxes(g["boxes"], w["boxes"]), (fmt, kind, stem)
            if "landmarks" in keep:
                assert _same_landmarks(g["landmarks"], w["landmarks"]), (fmt, kind, stem)
            if "objects" in keep or "objects~" in keep:
                assert [(c, z) for c, z, _ in g["objects"]] == [
                    (c, z if fmt == "coco" else False) for c, z, _ in w["objects"]
                ], (fmt, kind, stem)
                for (_, _, a), (_, _, b) in zip(w["objects"], g["objects"], strict=True):
                    if "objects" in keep:
                        assert np.array_equal(a, b), (fmt, kind, stem)
                    else:
                        assert iou(a, b) > 0.97, (fmt, kind, stem)
            if "stuff" in keep or "stuff~" in keep:
                assert set(g["stuff"]) == set(w["stuff"]), (fmt, kind, stem)
                for cls, a in w["stuff"].items():
                    b = g["stuff"][cls]
                    assert np.array_equal(a, b) if "stuff" in keep else iou(a, b) > 0.95
            if "ignore" in keep or "ignore~" in keep:
                a, b = w["ignore"], g["ignore"]
                assert (a is None) == (b is None), (fmt, kind, stem)
                if a is not None:
                    assert np.array_equal(a, b) if "ignore" in keep else iou(a, b) > 0.95
        q.close()
    p.close()


def _same_boxes(got: list[tuple], want: list[tuple]) -> bool:
    """Same classes, coordinates equal to 1e-6 px (YOLO writes 10 significant digits)."""
    return len(got) == len(want) and all(
        g[0] == w[0] and np.allclose(g[1:], w[1:], rtol=0, atol=1e-6)
        for g, w in zip(got, want, strict=True)
    )


def _same_landmarks(got: list[tuple], want: list[tuple]) -> bool:
    return len(got) == len(want) and all(
        gp == wp
        and [v for *_, v in gs] == [v for *_, v in ws]
        and np.allclose([xy for *xy, _ in gs], [xy for *xy, _ in ws], rtol=0, atol=1e-6)
        for (gp, gs), (wp, ws) in zip(got, want, strict=True)
    )


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return False


def test_coco_export_writes_one_annotation_per_object_every_one_with_a_bbox(tmp_path):
    """The labelme2coco example: 12 objects → 12 annotations, each with bbox,
    segmentation and area (no box-only duplicates, no per-class masks)."""
    example = peer_example("instance_segmentation", tmp_path / "src")
    p = new_project(tmp_path)
    import_labels(p, example / "data_dataset_coco")
    out = export_labels(p, "coco", tmp_path / "out")
    doc = json.loads(out.read_text())
    anns = doc["annotations"]
    assert len(anns) == 12
    assert all({"bbox", "segmentation", "area", "iscrowd"} <= set(a) for a in anns)
    assert not any("tlstudio" in a for a in anns)  # every bbox is the file's own box
    src = json.loads((example / "data_dataset_coco" / "annotations.json").read_text())
    assert sorted(a["bbox"] for a in anns) == sorted(a["bbox"] for a in src["annotations"])


def test_classification_coco_export_is_valid_for_coco_tools(tmp_path):
    """Image-level labels are no annotations (COCO tools expect a bbox on every one):
    they go to images[].tlstudio.tags, the warning says so, and they come back."""
    example = peer_example("classification", tmp_path / "src")
    p = new_project(tmp_path)
    import_labels(p, example / "data_annotated")
    warnings: list[str] = []
    out = export_labels(p, "coco", tmp_path / "out", warnings=warnings)
    doc = json.loads(out.read_text())
    assert doc["annotations"] == []
    cats = {c["id"]: c["name"] for c in doc["categories"]}
    assert sorted(cats[t] for im in doc["images"] for t in im["tlstudio"]["tags"]) == ["cat", "dog"]
    assert any("tlstudio extension" in w and "2 image-level tags" in w for w in warnings)
    q = new_project(tmp_path, "q")
    import_labels(q, out)
    assert snapshot(q) == snapshot(p)


def test_primitives_as_yolo_pose_come_back_with_two_boxes(tmp_path):
    """The point gets a box for YOLO only; marked in data.yaml, it makes no third box."""
    example = peer_example("primitives", tmp_path / "src")
    p = new_project(tmp_path)
    import_labels(p, example)
    out = export_labels(p, "yolo", tmp_path / "out", kind="pose")
    assert len((tmp_path / "out" / "labels" / "primitives.txt").read_text().splitlines()) == 3
    q = new_project(tmp_path, "q")
    import_labels(q, out)
    (rec,) = q.images()
    assert len(q.boxes(rec.id)) == 2 and len(q.landmark_sets(rec.id)) == 1


def test_folders_export_says_which_unlabelled_images_it_skipped(tmp_path):
    example = peer_example("bbox_detection", tmp_path / "src")
    p = new_project(tmp_path)
    import_labels(p, example / "data_annotated")
    warnings: list[str] = []
    export_labels(p, "folders", tmp_path / "out", warnings=warnings)
    assert any(
        w.startswith("class folders: 3 unlabelled images (no class tag) were not exported")
        for w in warnings
    ), warnings


# -- DeepLabCut --------------------------------------------------------------------------------


def _stand_in_frames(root: Path, frames: list[str], size: tuple[int, int]) -> None:
    """Distinct noise PNGs under the frame paths (the peers' own frames are left out)."""
    rng = np.random.default_rng(0)
    for frame in frames:
        path = root / frame
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), rng.integers(0, 256, (size[1], size[0], 3), np.uint8))


def openfield(tmp_path: Path) -> Path:
    root = tmp_path / "openfield-Pranav-2018-10-30"
    shutil.copytree(PEERS / "deeplabcut" / "openfield-Pranav-2018-10-30", root)
    table = read_csv_table(root / "labeled-data" / "m4s1" / "CollectedData_Pranav.csv")
    _stand_in_frames(root, table.frames, (640, 480))
    return root


def test_deeplabcut_csv_and_both_h5_layouts_hold_the_same_table():
    folder = PEERS / "deeplabcut"
    csv = read_csv_table(
        folder / "openfield-Pranav-2018-10-30/labeled-data/m4s1/CollectedData_Pranav.csv"
    )
    table = read_h5_table(
        folder / "openfield-Pranav-2018-10-30/labeled-data/m4s1/CollectedData_Pranav.h5"
    )
    fixed = read_h5_table(folder / "convertcsv2h5/CollectedData_Pranav.h5")
    assert len(csv.frames) == 116 and csv.columns[:2] == [
        (None, "snout", "x"),
        (None, "snout", "y"),
    ]
    for other in (table, fixed):
        assert other.frames == csv.frames and other.columns == csv.columns
        assert np.array_equal(np.isnan(other.values), np.isnan(csv.values))
        assert np.allclose(other.values, csv.values, equal_nan=True)
    multi = read_h5_table(folder / "convertcsv2h5/CollectedData_madlc.h5")
    mcsv = read_csv_table(PEERS / "sleap/dlc/labeled-data/video/madlc_testdata.csv")
    assert multi.columns == mcsv.columns and multi.frames == mcsv.frames
    assert np.allclose(multi.values, mcsv.values, equal_nan=True)


@pytest.mark.parametrize("source", ["folder", "csv", "h5"])
def test_deeplabcut_example_project_imports(tmp_path, source):
    root = openfield(tmp_path)
    path = {"folder": root,
            "csv": root / "labeled-data/m4s1/CollectedData_Pranav.csv",
            "h5": root / "labeled-data/m4s1/CollectedData_Pranav.h5"}[source]  # fmt: skip
    assert detect_format(path) == "dlc"
    if source == "h5":
        (root / "labeled-data/m4s1/CollectedData_Pranav.csv").unlink()
    p = new_project(tmp_path)
    report = import_labels(p, path)
    assert report.annotations["landmarks"] == 116 and p.image_count() == 116
    (t,) = p.templates()
    assert (t.name, t.points) == ("openfield", ("snout", "leftear", "rightear", "tailbase"))
    first = p.image_by_path(root / "labeled-data/m4s1/img0000.png")
    assert first is not None
    (lms,) = p.landmark_sets(first.id)
    # DeepLabCut's pixel centres sit on integers: +0.5 in tlstudio's pixel-edge frame
    assert lms.points[0] == Point(21.521 + 0.5, 265.428 + 0.5, VISIBLE)


def test_deeplabcut_multi_animal_with_unique_bodyparts_and_config_skeleton(tmp_path):
    """SLEAP's maDLC test data with the DeepLabCut 2.3 config it ships: individuals become
    several landmark sets per image, the unique body parts a second template, the
    config's skeleton the template's edges."""
    root = tmp_path / "dlc"
    shutil.copytree(PEERS / "sleap" / "dlc", root)
    shutil.copy(root / "madlc_230_config.yaml", root / "config.yaml")
    csv = root / "labeled-data/video/maudlc_testdata.csv"
    # SLEAP's four frames are one 30×30 picture; its points reach x 35: larger stand-ins
    _stand_in_frames(root, read_csv_table(csv).frames, (64, 64))
    p = new_project(tmp_path)
    report = import_labels(p, csv)
    animals = p.template_by_name("maudlc_2.3.0")
    unique = p.template_by_name("maudlc_2.3.0 unique")
    assert animals is not None and unique is not None
    assert (animals.points, animals.skeleton) == (("A", "B", "C"), ((0, 1), (1, 2), (0, 2)))
    assert unique.points == ("D", "E")
    per_image = {rec.name: [(s.template_id, [q.visibility for q in s.points])
                            for s in p.landmark_sets(rec.id)] for rec in p.images()}  # fmt: skip
    assert per_image == {
        "img000.png": [(animals.id, [2, 2, 2]), (animals.id, [2, 2, 2])],
        "img001.png": [(animals.id, [2, 0, 2]), (animals.id, [2, 0, 2]), (unique.id, [2, 2])],
        "img002.png": [],
        "img003.png": [(animals.id, [2, 2, 2]), (unique.id, [2, 2])],
    }
    assert report.annotations["landmarks"] == 7
    # exported and imported again: the same sets, the same coordinates
    out = export_labels(p, "dlc", tmp_path / "out", template="maudlc_2.3.0")
    q = new_project(tmp_path, "q")
    import_labels(q, out)
    # img002 has no labelled point: DeepLabCut's export leaves it out
    assert snapshot(q) == {k: v for k, v in snapshot(p).items() if k != "img002"}


def test_deeplabcut_23_three_column_index(tmp_path):
    root = tmp_path / "dlc"
    shutil.copytree(PEERS / "sleap" / "dlc", root)
    csv = root / "labeled-data/video/CollectedData_LM.csv"
    table = read_csv_table(csv)
    assert table.frames[0] == "labeled-data/video/img000.png"
    _stand_in_frames(root, table.frames, (64, 64))
    p = new_project(tmp_path)
    assert import_labels(p, csv).annotations["landmarks"] == 7


def test_deeplabcut_round_trip_of_a_project_is_exact(tmp_path):
    root = openfield(tmp_path)
    p = new_project(tmp_path)
    import_labels(p, root)
    out = export_labels(p, "dlc", tmp_path / "out")
    text = (out / "labeled-data" / "images" / "CollectedData_tlstudio.csv").read_text()
    assert text.splitlines()[1].startswith("bodyparts,snout,snout,leftear")
    assert "multianimalproject: false" in (out / "config.yaml").read_text()
    q = new_project(tmp_path, "q")
    import_labels(q, out)
    assert snapshot(q) == snapshot(p)


# -- SLEAP -------------------------------------------------------------------------------------


def test_sleap_file_over_single_images_imports(tmp_path):
    """small_robot_siv.slp (SLEAP 1.2, absolute Windows paths) finds its images beside it."""
    shutil.copytree(PEERS / "sleap" / "slp", tmp_path / "slp")
    slp = tmp_path / "slp" / "small_robot_siv.slp"
    assert detect_format(slp) == "sleap"
    p = new_project(tmp_path)
    report = import_labels(p, slp)
    assert report.annotations["landmarks"] == 3 and p.image_count() == 3
    (t,) = p.templates()
    assert (t.name, t.points) == ("Skeleton-5", ("1",))
    pts = {rec.name: p.landmark_sets(rec.id)[0].points[0] for rec in p.images()}
    # SLEAP's (0, 0), (1, 0), (0, 1) are pixel centres: +0.5 in tlstudio's frame
    assert pts == {"robot0.jpg": Point(0.5, 0.5), "robot1.jpg": Point(1.5, 0.5),
                   "robot2.jpg": Point(0.5, 1.5)}  # fmt: skip


def test_sleap_file_over_a_video_reads_the_frame(tmp_path):
    """minimal_instance.slp labels frame 0 of centered_pair_low_quality.mp4 (a stand-in
    video here) with two instances of a two-node skeleton with one edge."""
    shutil.copytree(PEERS / "sleap" / "slp", tmp_path / "slp")
    writer = cv2.VideoWriter(str(tmp_path / "slp" / "centered_pair_low_quality.mp4"),
                             cv2.VideoWriter_fourcc(*"mp4v"), 10, (384, 384))  # fmt: skip
    for i in range(3):
        writer.write(np.full((384, 384, 3), 60 * i, np.uint8))
    writer.release()
    p = new_project(tmp_path)
    report = import_labels(p, tmp_path / "slp" / "minimal_instance.slp")
    assert report.annotations["landmarks"] == 2
    (t,) = p.templates()
    assert (t.points, t.skeleton) == (("A", "B"), ((0, 1),))
    (rec,) = p.images()
    assert (rec.width, rec.height) == (384, 384) and rec.path.startswith("images/")
    first = p.landmark_sets(rec.id)[0].points[0]
    assert (first.x, first.y) == pytest.approx((92.65220773 + 0.5, 202.72597774 + 0.5))


def test_sleap_package_with_embedded_frames(tmp_path):
    """minimal.pkg.slp, written by sleap-io (SLEAP's I/O library) with its two frames
    embedded: the frames become project images with the colours of the originals."""
    shutil.copytree(PEERS / "sleap" / "pkg", tmp_path / "pkg")
    p = new_project(tmp_path)
    report = import_labels(p, tmp_path / "pkg" / "minimal.pkg.slp")
    assert report.annotations["landmarks"] == 2 and p.image_count() == 2
    (t,) = p.templates()
    assert (t.name, t.points, t.skeleton) == ("worm", ("head", "tail"), ((0, 1),))
    for i, rec in enumerate(p.images()):
        assert p.image_path(rec).parent == p.root / "images"
        got = cv2.imread(str(p.image_path(rec)))
        want = cv2.imread(str(tmp_path / "pkg" / f"frame{i}.png"))
        assert np.array_equal(got, want)
    first = p.landmark_sets(p.images()[0].id)[0].points
    assert first == (Point(3.5, 4.5), Point(15.5, 9.5))


def test_sleap_export_round_trip_keeps_templates_points_and_visibility(tmp_path, make_images):
    files = make_images(tmp_path / "imgs", 2, (40, 30))
    p = new_project(tmp_path)
    p.add_images(files)
    from tlstudio.core.labelset import LandmarkTemplate

    face = p.add_template(LandmarkTemplate("face", ("left_eye", "right_eye", "nose"),
                                           ((0, 2), (1, 2)), ((0, 1),)))  # fmt: skip
    pair = p.add_template(LandmarkTemplate("pair", ("a", "b")))
    a, b = p.image_ids()
    p.add_landmark_set(a, LandmarkSet(face.id, (Point(3.25, 4.5), Point(10, 4, OCCLUDED),
                                                Point(0, 0, SKIPPED))))  # fmt: skip
    p.add_landmark_set(a, LandmarkSet(face.id, (Point(20, 5), Point(25, 5), Point(22, 9))))
    p.add_landmark_set(b, LandmarkSet(pair.id, (Point(1, 1), Point(39.5, 29.5))))
    p.add_box(b, Box(p.add_class("c").id, 0, 0, 5, 5))
    warnings: list[str] = []
    out = export_labels(p, "sleap", tmp_path / "out", warnings=warnings)
    assert out.suffix == ".slp" and any("1 boxes not exported" in w for w in warnings)
    q = new_project(tmp_path, "q")
    import_labels(q, out)
    assert {t.name: (t.points, t.skeleton, t.flip_pairs) for t in q.templates()} == {
        t.name: (t.points, t.skeleton, t.flip_pairs) for t in p.templates()
    }
    want = {k: v["landmarks"] for k, v in snapshot(p).items()}
    assert {k: v["landmarks"] for k, v in snapshot(q).items()} == want


def test_a_bad_sleap_file_is_refused_naming_it(tmp_path):
    bad = tmp_path / "x.slp"
    bad.write_bytes(b"\x89HDF\r\n\x1a\nnot really")
    with pytest.raises(FormatError, match="x.slp"):
        import_labels(new_project(tmp_path), bad, "sleap")


def test_outline_rasterisation_matches_import():
    from tlstudio.core.annotations import OutlinePart

    square = OutlinePart("polygon", (2.0, 1.0, 6.0, 1.0, 6.0, 4.0, 2.0, 4.0))
    got = rasterize_outline([square], 6, 8)
    assert got.sum() == 12 and got[1:4, 2:6].all()
