"""Property-based robustness of the importers: random and broken documents either import
or raise FormatError (never another exception), and a FormatError leaves the project's
database exactly as it was."""

from __future__ import annotations

import copy
import json
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tlstudio.core.annotations import OCCLUDED, Box, LandmarkSet, Point
from tlstudio.core.errors import FormatError
from tlstudio.core.formats import export_labels, import_labels
from tlstudio.core.labelset import LandmarkTemplate
from tlstudio.core.project import Project

W, H = 40, 30
FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


class World:
    """Images on disk, a project to import into and valid exports to mutate."""

    def __init__(self, root: Path):
        self.root = root
        rng = np.random.default_rng(0)
        self.images = root / "imgs"
        self.images.mkdir()
        for i in range(3):
            cv2.imwrite(
                str(self.images / f"img{i:03d}.png"), rng.integers(0, 255, (H, W, 3), np.uint8)
            )
        src = Project.create(root / "src")
        src.add_images([self.images])
        cat, dog = src.add_class("cat").id, src.add_class("dog").id
        face = src.add_template(
            LandmarkTemplate("face", ("left_eye", "right_eye", "nose"), ((0, 2),))
        )
        a, b, _ = src.image_ids()
        src.set_tags(a, [cat])
        src.add_box(a, Box(cat, 2, 3, 30, 25))
        src.add_box(b, Box(dog, 0, 0, 40, 30))
        src.add_landmark_set(
            a, LandmarkSet(face.id, (Point(5, 5), Point(20, 5), Point(12, 12, OCCLUDED)), cat)
        )
        mask = np.zeros((H, W), np.uint16)
        mask[5:15, 10:30] = dog
        src.set_mask(b, mask)
        self.valid: dict[str, Path] = {}
        for fmt, kind in (("coco", None), ("labelme", None), ("voc", None), ("csv", None)):
            self.valid[fmt] = export_labels(src, fmt, root / "valid" / fmt, kind=kind)
        self.valid["yolo"] = export_labels(src, "yolo", root / "valid" / "yolo", kind="pose")
        src.close()
        self.project = Project.create(root / "dest")
        self.project.add_class("existing")
        self.n = 0

    def case_dir(self, fmt: str) -> Path:
        """A fresh copy of the valid export of ``fmt`` to break."""
        self.n += 1
        d = self.root / "cases" / f"{fmt}{self.n}"
        shutil.copytree(
            self.valid[fmt].parent if fmt in ("coco", "yolo", "csv") else self.valid[fmt], d
        )
        return d

    def check(self, path: Path, fmt: str) -> None:
        before = "\n".join(self.project.store.conn.iterdump())
        try:
            import_labels(self.project, path, fmt)
        except FormatError as exc:
            assert str(exc)
            assert "\n".join(self.project.store.conn.iterdump()) == before
        finally:
            shutil.rmtree(path if path.is_dir() else path.parent, ignore_errors=True)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[World]:
    w = World(tmp_path_factory.mktemp("fuzz"))
    yield w
    w.project.close()


# -- strategies -----------------------------------------------------------------------------------

NUMBERS = st.sampled_from(
    [
        0,
        1,
        2,
        3,
        -1,
        0.5,
        -0.0,
        1e-9,
        39.9,
        40.4,
        41,
        1e30,
        2**64,
        10**400,
        1e308,
        float("nan"),
        float("inf"),
    ]
)
scalars = (
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | NUMBERS
    | st.text(max_size=8) | st.sampled_from(["img000.png", "cat", "\ud800", "a\x00b", "../x", "/"])
)  # fmt: skip
json_values = st.recursive(
    scalars,
    lambda ch: st.lists(ch, max_size=5) | st.dictionaries(st.text(max_size=6), ch, max_size=5),
    max_leaves=25,
)


def _paths(node: object, prefix: tuple = ()) -> Iterator[tuple]:
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, (*prefix, i))


@st.composite
def mutated(draw: st.DrawFn, doc: object) -> object:
    """``doc`` with 1-4 random edits: delete a key or item, or replace a node with a random
    value, an extreme number, a string or (numbers) its negative."""
    doc = copy.deepcopy(doc)
    for _ in range(draw(st.integers(1, 4))):
        paths = list(_paths(doc))[1:]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = doc
        for k in path[:-1]:
            parent = parent[k]
        key = path[-1]
        op = draw(st.sampled_from(["delete", "replace", "number", "string", "negate"]))
        if op == "delete":
            del parent[key]
        elif op == "replace":
            parent[key] = draw(json_values)
        elif op == "number":
            parent[key] = draw(NUMBERS)
        elif op == "string":
            parent[key] = draw(st.text(max_size=6))
        elif isinstance(parent[key], (int, float)) and not isinstance(parent[key], bool):
            parent[key] = -parent[key]
    return doc


def _dumps(doc: object) -> str:
    return json.dumps(doc, allow_nan=True, ensure_ascii=True)


# -- COCO -------------------------------------------------------------------------------------------


@FUZZ
@given(data=st.data())
def test_coco_mutations(world: World, data: st.DataObject) -> None:
    d = world.case_dir("coco")
    f = d / "annotations.json"
    f.write_text(_dumps(data.draw(mutated(json.loads(f.read_text())))))
    world.check(f, "coco")


coco_like = st.fixed_dictionaries(
    {
        "images": st.lists(
            st.fixed_dictionaries(
                {"id": st.integers(0, 3) | json_values, "file_name": st.sampled_from(["img000.png", "nope.png"]) | json_values},
                optional={"width": st.just(W) | json_values, "height": st.just(H) | json_values},
            ),
            max_size=3,
        ),
        "annotations": st.lists(
            st.fixed_dictionaries(
                {"image_id": st.integers(0, 3) | json_values, "category_id": st.integers(0, 2) | json_values},
                optional={
                    "bbox": st.lists(NUMBERS | st.floats(-5, 45), max_size=5) | json_values,
                    "segmentation": st.lists(st.lists(NUMBERS | st.floats(-5, 45), max_size=8), max_size=2)
                    | st.fixed_dictionaries({"size": st.just([H, W]) | json_values,
                                             "counts": st.text(max_size=12) | st.lists(st.integers(-2, 1300), max_size=5)})
                    | json_values,
                    "keypoints": st.lists(NUMBERS | st.integers(0, 2), max_size=10) | json_values,
                    "tlstudio": json_values,
                },
            ),
            max_size=4,
        ),
        "categories": st.lists(
            st.fixed_dictionaries(
                {"id": st.integers(0, 2) | json_values, "name": st.sampled_from(["cat", "dog", ""]) | json_values},
                optional={
                    "keypoints": st.lists(st.sampled_from(["a", "b", "left_x", "right_x"]), max_size=3) | json_values,
                    "skeleton": st.lists(st.lists(st.integers(-1, 4), max_size=3), max_size=3) | json_values,
                    "tlstudio": json_values,
                },
            ),
            max_size=3,
        ),
    }
)  # fmt: skip


@FUZZ
@given(doc=coco_like | json_values)
def test_coco_random_documents(world: World, doc: object) -> None:
    d = world.root / "cases" / f"c{world.n}"
    world.n += 1
    d.mkdir(parents=True)
    shutil.copy(world.images / "img000.png", d)
    (d / "a.json").write_text(_dumps(doc))
    world.check(d / "a.json", "coco")


@FUZZ
@given(raw=st.binary(max_size=200))
def test_coco_and_labelme_raw_bytes(world: World, raw: bytes) -> None:
    for fmt in ("coco", "labelme"):
        d = world.root / "cases" / f"b{world.n}"
        world.n += 1
        d.mkdir(parents=True)
        (d / "a.json").write_bytes(raw)
        world.check(d / "a.json", fmt)


# -- labelme ----------------------------------------------------------------------------------------


@FUZZ
@given(data=st.data())
def test_labelme_mutations(world: World, data: st.DataObject) -> None:
    d = world.case_dir("labelme")
    files = sorted(d.glob("*.json"))
    f = files[data.draw(st.integers(0, len(files) - 1))]
    f.write_text(_dumps(data.draw(mutated(json.loads(f.read_text())))))
    world.check(d, "labelme")


shape = st.fixed_dictionaries(
    {"label": st.sampled_from(["cat", "nose", " "]) | json_values,
     "points": st.lists(st.lists(NUMBERS | st.floats(-3, 45), min_size=1, max_size=3), max_size=4) | json_values},
    optional={"shape_type": st.sampled_from(["rectangle", "point", "polygon", "circle", "line", "mask", "?"]) | json_values,
              "group_id": st.integers(0, 2) | json_values, "flags": json_values},
)  # fmt: skip


@FUZZ
@given(
    shapes=st.lists(shape, max_size=5) | json_values,
    extra=st.dictionaries(
        st.sampled_from(["flags", "imageWidth", "imageHeight", "imageData", "tlstudio", "imagePath"]),
        json_values, max_size=3,
    ),
)  # fmt: skip
def test_labelme_random_documents(world: World, shapes: object, extra: dict) -> None:
    d = world.root / "cases" / f"l{world.n}"
    world.n += 1
    d.mkdir(parents=True)
    shutil.copy(world.images / "img001.png", d)
    doc = {"shapes": shapes, "imagePath": "img001.png", "imageWidth": W, "imageHeight": H, **extra}
    (d / "img001.json").write_text(_dumps(doc))
    world.check(d, "labelme")


# -- YOLO -------------------------------------------------------------------------------------------

TOKENS = st.sampled_from(
    [
        "0",
        "1",
        "2",
        "7",
        "-1",
        "0.5",
        "0.25",
        "0.9",
        "1.2",
        "-0.3",
        "1e309",
        "nan",
        "inf",
        "x",
        "2.0",
        "1e-320",
        "٣",
    ]
)
yolo_lines = st.lists(
    st.lists(TOKENS | st.floats().map(repr), max_size=16).map(" ".join) | st.text(max_size=20),
    max_size=6,
).map("\n".join)


@FUZZ
@given(text=yolo_lines, raw=st.none() | st.binary(max_size=60), which=st.integers(0, 2))
def test_yolo_random_label_lines(world: World, text: str, raw: bytes | None, which: int) -> None:
    d = world.case_dir("yolo")
    f = sorted((d / "labels").rglob("*.txt"))[which]
    if raw is None:
        f.write_text(text, encoding="utf-8", errors="surrogatepass")
    else:
        f.write_bytes(raw)
    world.check(d, "yolo")


@FUZZ
@given(data=st.data(), text=st.none() | st.text(max_size=60))
def test_yolo_broken_data_yaml(world: World, data: st.DataObject, text: str | None) -> None:
    d = world.case_dir("yolo")
    f = d / "data.yaml"
    if text is None:
        doc = data.draw(mutated(yaml.safe_load(f.read_text())))
        text = yaml.safe_dump(doc, allow_unicode=False)
    f.write_text(text, encoding="utf-8", errors="surrogatepass")
    world.check(d, "yolo")


# -- VOC --------------------------------------------------------------------------------------------

TAGS = ["annotation", "filename", "path", "size", "width", "height", "object", "name", "bndbox",
        "xmin", "ymin", "xmax", "ymax"]  # fmt: skip
texts = st.none() | st.sampled_from(
    ["img000.png", "cat", "1", "0", "40", "31", "-5", "nan", "1e400", " 7 "]
)


@st.composite
def elements(draw: st.DrawFn, depth: int = 0) -> ET.Element:
    el = ET.Element(draw(st.sampled_from(TAGS)))
    el.text = draw(
        texts
        | st.text(
            alphabet=st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]), max_size=5
        )
    )
    if depth < 3:
        for child in draw(st.lists(elements(depth + 1), max_size=4)):
            el.append(child)
    return el


@FUZZ
@given(root=elements(), raw=st.none() | st.binary(max_size=80) | st.text(max_size=40))
def test_voc_random_xml(world: World, root: ET.Element, raw: bytes | str | None) -> None:
    d = world.root / "cases" / f"v{world.n}"
    world.n += 1
    d.mkdir(parents=True)
    shutil.copy(world.images / "img000.png", d)
    f = d / "a.xml"
    if raw is None:
        ET.ElementTree(root).write(f, encoding="utf-8")
    elif isinstance(raw, bytes):
        f.write_bytes(raw)
    else:
        f.write_text(raw, encoding="utf-8", errors="surrogatepass")
    world.check(f, "voc")


@FUZZ
@given(data=st.data())
def test_voc_mutated_values(world: World, data: st.DataObject) -> None:
    d = world.case_dir("voc")
    f = sorted((d / "Annotations").glob("*.xml"))[data.draw(st.integers(0, 2))]
    root = ET.parse(f).getroot()
    nodes = list(root.iter())
    for _ in range(data.draw(st.integers(1, 3))):
        node = data.draw(st.sampled_from(nodes))
        if data.draw(st.booleans()):
            node.text = data.draw(texts | st.sampled_from(["", "1.5", "100000", "-1"]))
        else:
            for child in list(node)[:1]:
                node.remove(child)
    ET.ElementTree(root).write(f, encoding="utf-8")
    world.check(d, "voc")


# -- CSV --------------------------------------------------------------------------------------------

csv_cells = st.sampled_from(
    [
        "img000.png",
        "img001.png",
        "nope.png",
        "",
        "cat",
        "cat;dog",
        '"a,b"',
        "image",
        "label",
        "/",
        "\x00",
    ]
)


@FUZZ
@given(
    header=st.sampled_from(["image,label", "filename,class", "Image , Label,extra", "x,y", ""]) | st.text(max_size=15),
    rows=st.lists(st.lists(csv_cells | st.text(max_size=6), max_size=4).map(",".join), max_size=6),
    raw=st.none() | st.binary(max_size=60),
)  # fmt: skip
def test_csv_random_rows(world: World, header: str, rows: list[str], raw: bytes | None) -> None:
    d = world.root / "cases" / f"s{world.n}"
    world.n += 1
    d.mkdir(parents=True)
    for name in ("img000.png", "img001.png"):
        shutil.copy(world.images / name, d)
    f = d / "l.csv"
    if raw is None:
        f.write_text("\n".join([header, *rows]), encoding="utf-8", errors="surrogatepass")
    else:
        f.write_bytes(raw)
    world.check(f, "csv")


# -- class folders ----------------------------------------------------------------------------------


@settings(max_examples=20, deadline=None)
@given(raw=st.binary(max_size=40), name=st.sampled_from(["a.png", "b.jpg", "c.txt"]))
def test_folders_with_broken_images(world: World, raw: bytes, name: str) -> None:
    d = world.root / "cases" / f"f{world.n}"
    world.n += 1
    (d / "cat").mkdir(parents=True)
    shutil.copy(world.images / "img002.png", d / "cat")
    (d / "dog").mkdir()
    (d / "dog" / name).write_bytes(raw)
    world.check(d, "folders")
