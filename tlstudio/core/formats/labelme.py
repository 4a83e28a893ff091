"""labelme JSON: one file per image with ``imagePath``, ``imageWidth``/``imageHeight``,
``flags`` and ``shapes``; points are [x, y] in image pixels (pixel-edge frame).

* ``rectangle`` (two opposite corners) → a box of class ``label``.
* ``polygon`` (≥ 3 points), ``circle`` (centre, point on the rim) and ``mask`` (labelme
  ≥ 5.3: a base64 PNG over the pixels of its two points' box, inclusive) → an
  **object** of class ``label`` (a pixel is in when its centre is inside or on the
  outline). As in labelme2coco, the shapes with the same ``label`` and ``group_id``
  form one object; a shape without ``group_id`` is an object of its own. Later shapes
  win where they overlap earlier ones (as in labelme2voc).
* ``__ignore__`` regions become the image's ignore region (left out of losses and
  metrics) and ``_background_`` regions paint background; neither becomes a class, nor
  do those flags.
* ``line`` and ``linestrip`` are skipped with a warning.
* ``point`` shapes are landmarks, grouped into one landmark set per
  ``group_id`` per file (points without a ``group_id`` form one set; a label may
  then appear only once). The point's ``label`` is the landmark name; the sets
  use a template ``labelme points`` whose points are every point label of the
  import in order of first appearance (an existing template of that name is
  reused when it holds all of them, otherwise the name gets a number). Points a
  set lacks are unlabelled (v = 0); a shape flag ``occluded: true`` gives v = 1.
* ``flags`` with value ``true`` → image tags.
* ``imagePath`` resolves against the JSON's folder; when it names no readable image
  (missing, or not an image: labelme's tutorial points it at the JSON itself) and
  ``imageData`` is embedded, that image is written into the project's ``images/``
  folder (once: the same content already in the project is matched instead).

Export writes ``<stem>.json`` next to a hard link (or copy) of each image: boxes as
rectangles, landmark sets as points (``group_id`` = set number, unlabelled points
left out), each object as the polygons and circles it was imported from while they
still give exactly its pixels (else its outer contours, traced and simplified to
within 1 % of its pixels; holes are lost and counted in a warning), sharing a
``group_id`` when there are several; pixels of no object as one polygon per contour
and class; the ignore region as ``__ignore__`` polygons; every class as a flag. A
top-level ``tlstudio`` key (kept by labelme) records what labelme cannot say, so that
tlstudio reads its own export back exactly: ``{"templates": {name: {points, skeleton,
flip_pairs}}, "groups": {"<group_id>": {"template": name, "class": name | null}},
"objects": [{"shapes": [i, ...], "box": i | null, "iscrowd": bool}], "semantic": [i,
...]}`` (shape indices: the shapes of each object, the rectangle that is its box, and
the polygons of pixels without an object).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..annotations import OCCLUDED, SKIPPED, VISIBLE, OutlinePart, Point
from ..atomic import write_text_atomic
from ..errors import FormatError, ImageError, ValidationError
from ..labelset import LandmarkTemplate
from ..project import ImageRecord, Project
from ._common import (
    IGNORE_NAMES,
    ImportSession,
    as_dict,
    as_int,
    as_list,
    as_str,
    count_holes,
    export_names,
    find_file,
    import_session,
    label_role,
    mask_polygons,
    note,
    num,
    outline_is_intact,
    place_image,
    rasterize_circle,
    rasterize_polygon,
    read_json,
    type_name,
)
from .report import LabelImportReport

TEMPLATE = "labelme points"


def json_files(path: Path) -> list[tuple[Path, dict[str, Any]]]:
    """The labelme documents of an import: the file itself (it must be one), or every
    ``*.json`` below the folder that is a labelme document (others are ignored)."""
    if path.is_file():
        data = read_json(path)
        if not isinstance(data, dict) or "shapes" not in data:
            raise FormatError(path, "", "not a labelme file (no 'shapes')")
        return [(path, data)]
    if not path.is_dir():
        raise FormatError(path, "", "no such file or folder")
    out = []
    for p in sorted(path.rglob("*.json")):
        if not p.is_file():
            continue
        data = read_json(p)
        if isinstance(data, dict) and ("shapes" in data or "imagePath" in data):
            out.append((p, data))
    if not out:
        raise FormatError(path, "", "no labelme .json files here")
    return out


def import_(project: Project, path: str | Path, copy_images: bool = False) -> LabelImportReport:
    """Import a labelme JSON file or a folder of them. ``imagePath`` resolves against the
    JSON's folder; when the file is missing but ``imageData`` is embedded, the image is
    written into the project's ``images/`` folder."""
    docs = json_files(Path(path))
    with import_session(project, copy_images) as s:
        refs = [(_image_path(s, src, data), src, "imagePath") for src, data in docs]
        records = s.images(refs)
        parsed = [_parse(s, src, data, rec) for (src, data), rec in zip(docs, records, strict=True)]
        labels: list[str] = []
        for doc in parsed:
            for group in doc["groups"].values():
                if group["ext"] is None:
                    labels += [lbl for lbl in group["points"] if lbl not in labels]
        default = None
        if labels:
            default = _default_template(s, labels, parsed)
        for doc in parsed:
            _apply(s, doc, default)
    return s.report


def _parse(s: ImportSession, src: Path, data: dict[str, Any], rec: ImageRecord) -> dict[str, Any]:
    """Validate one document and add its tags, boxes, objects and regions; points are
    returned grouped for :func:`_apply` (the template needs every file's labels)."""
    if "shapes" not in data:
        raise FormatError(src, "", "not a labelme file (no 'shapes')")
    for key, actual in (("imageWidth", rec.width), ("imageHeight", rec.height)):
        if data.get(key) is not None:
            given = as_int(data[key], src, key, key)
            if given != actual:
                raise FormatError(src, key, f"{given} differs from the file's {actual} px")
    flags = as_dict(data.get("flags") or {}, src, "flags")
    for name, value in flags.items():
        if not isinstance(value, bool):
            raise FormatError(
                src, f"flags.{name}", f"expected true or false, got {type_name(value)}"
            )
        if value and label_role(name) is None:
            s.tag(rec, s.class_id(name, src, f"flags.{name}"), src, f"flags.{name}")
        elif value:
            s.warn(src, f"flags.{name}", f"{name} is not a class; the flag is not imported")
    ext = as_dict(data.get("tlstudio") or {}, src, "tlstudio")
    ext_groups = as_dict(ext.get("groups") or {}, src, "tlstudio.groups")
    ext_templates = as_dict(ext.get("templates") or {}, src, "tlstudio.templates")
    shapes = as_list(data["shapes"], src, "shapes")
    ext_objects, semantic = _object_ext(src, ext, len(shapes))
    groups: dict[object, dict[str, Any]] = {}
    objects: dict[tuple[str, object], int] = {}  # object key -> its number in the image
    boxes: dict[int, int] = {}  # rectangle shape index -> box id
    for i, shape in enumerate(shapes):
        where = f"shapes[{i}]"
        shape = as_dict(shape, src, where)
        kind = shape.get("shape_type") or "polygon"
        kind = as_str(kind, src, f"{where}.shape_type", "shape_type")
        label = as_str(shape.get("label"), src, f"{where}.label", "label").strip()
        if not label:
            raise FormatError(src, f"{where}.label", "empty label")
        xy = _points(src, where, shape.get("points"))
        gid = shape.get("group_id")
        if gid is not None and (isinstance(gid, bool) or not isinstance(gid, (int, str))):
            raise FormatError(
                src, f"{where}.group_id", f"expected an integer or null, got {type_name(gid)}"
            )
        sflags = as_dict(shape.get("flags") or {}, src, f"{where}.flags")
        if kind == "rectangle":
            if len(xy) != 2:
                raise FormatError(
                    src, f"{where}.points", f"a rectangle needs 2 points, got {len(xy)}"
                )
            (xa, ya), (xb, yb) = xy
            xyxy = (min(xa, xb), min(ya, yb), max(xa, xb), max(ya, yb))
            if label_role(label) is None:
                cid = s.class_id(label, src, f"{where}.label")
                boxes[i] = _known_id(s.box(rec, cid, xyxy, src, where).id)
            else:  # an ignore or background rectangle is a region, not a box
                x1, y1, x2, y2 = xyxy
                corners = np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], np.float64)
                pts = s.clip_points(rec, corners, src, where)
                s.region(rec, label, rasterize_polygon(pts, rec.height, rec.width), src, where)
        elif kind in ("polygon", "circle", "mask"):
            if kind == "mask":
                region, part = _mask_shape(src, where, xy, shape.get("mask"), rec), None
            else:
                region, part = _region(s, src, where, kind, xy, rec)
            if i in semantic:
                s.region(rec, label, region, src, where, instance=False)
                continue
            okey: tuple[str, object]
            if i in ext_objects:
                okey = ("tlstudio", ext_objects[i]["index"])
            elif gid is not None:
                okey = (label, str(gid))
            else:
                okey = ("shape", i)
            number = objects.get(okey)
            if number is None:
                info = ext_objects.get(i, {})
                box_id = boxes.get(info["box"]) if info.get("box") is not None else None
                objects[okey] = s.region(
                    rec, label, region, src, where, outline=None if part is None else [part],
                    iscrowd=bool(info.get("iscrowd", False)), box_id=box_id,
                )  # fmt: skip
            else:
                s.extend_instance(rec, number, region, src, where, part)
        elif kind == "point":
            if len(xy) != 1:
                raise FormatError(src, f"{where}.points", f"a point needs 1 point, got {len(xy)}")
            group_key = None if gid is None else str(gid)
            group = groups.setdefault(group_key, {"points": {}, "where": where, "ext": None})
            if label in group["points"]:
                raise FormatError(src, where, f"point {label!r} appears twice in group {gid}")
            x, y = xy[0]
            v = OCCLUDED if sflags.get("occluded") is True else VISIBLE
            group["points"][label] = s.point(rec, x, y, v, src, where)
            if group_key is not None and group_key in ext_groups:
                group["ext"] = _group_ext(
                    s, src, f"tlstudio.groups.{group_key}", ext_groups[group_key], ext_templates
                )
        elif kind in ("line", "linestrip"):
            s.warn(src, where, f"{kind} shapes are not imported")
        else:
            raise FormatError(src, f"{where}.shape_type", f"unknown shape_type {kind!r}")
    return {"src": src, "rec": rec, "groups": groups}


def _known_id(box_id: int | None) -> int:
    assert box_id is not None, "the store gives every box an id"
    return box_id


def _points(src: Path, where: str, value: object) -> list[tuple[float, float]]:
    pts = as_list(value, src, f"{where}.points", "points")
    xy = []
    for j, p in enumerate(pts):
        p = as_list(p, src, f"{where}.points[{j}]", "point")
        if len(p) != 2:
            raise FormatError(src, f"{where}.points[{j}]", f"expected [x, y], got {len(p)} numbers")
        xy.append((num(p[0], src, f"{where}.points[{j}]", "x"),
                   num(p[1], src, f"{where}.points[{j}]", "y")))  # fmt: skip
    return xy


def _object_ext(
    src: Path, ext: dict[str, Any], n_shapes: int
) -> tuple[dict[int, dict[str, Any]], set[int]]:
    """The ``tlstudio`` key's objects (shape index -> {index, box, iscrowd}) and the
    indices of the shapes that are pixels of no object."""

    def index(v: object, where: str) -> int:
        i = as_int(v, src, where, "shape index")
        if not 0 <= i < n_shapes:
            raise FormatError(src, where, f"shape index {i} is not in 0..{n_shapes - 1}")
        return i

    by_shape: dict[int, dict[str, Any]] = {}
    for k, obj in enumerate(as_list(ext.get("objects") or [], src, "tlstudio.objects")):
        where = f"tlstudio.objects[{k}]"
        obj = as_dict(obj, src, where)
        box = obj.get("box")
        info = {"index": k, "iscrowd": obj.get("iscrowd") is True,
                "box": None if box is None else index(box, f"{where}.box")}  # fmt: skip
        for j, i in enumerate(as_list(obj.get("shapes") or [], src, f"{where}.shapes")):
            by_shape[index(i, f"{where}.shapes[{j}]")] = info
    semantic = {
        index(i, f"tlstudio.semantic[{j}]")
        for j, i in enumerate(as_list(ext.get("semantic") or [], src, "tlstudio.semantic"))
    }
    return by_shape, semantic


_SUFFIX = {"PNG": ".png", "JPEG": ".jpg", "BMP": ".bmp", "TIFF": ".tif", "DICOM": ".dcm"}


def _image_path(s: ImportSession, src: Path, data: dict[str, Any]) -> Path:
    from .. import imageio

    name = as_str(data.get("imagePath"), src, "imagePath", "imagePath")
    blob = data.get("imageData")
    try:
        path = find_file(name, [src.parent], src, "imagePath")
    except FormatError:
        if not blob:
            raise
        return _write_embedded(s, src, name, blob)
    if blob:  # imagePath may name a file that is no image (the JSON itself): check it
        try:
            if path.resolve() == src.resolve():
                raise ImageError(path, "is the label file itself")
            imageio.probe_image(path)
        except (ImageError, OSError):
            return _write_embedded(s, src, name, blob)
    return path


def _write_embedded(s: ImportSession, src: Path, name: str, blob: object) -> Path:
    """Decode ``imageData`` into the project's images/ folder (removed again if the
    import fails, like every file an import copies in). An image with the same content
    already in the project is used instead of writing a copy."""
    from .. import imageio
    from ..decoders.sniff import sniff

    raw = _b64(blob, src, "imageData")
    fmt = sniff(raw[:512])
    if fmt is None:
        raise FormatError(src, "imageData", "the embedded data is not a supported image")
    base = re.sub(r"[^\w.\- ]", "_", name.replace("\\", "/").rsplit("/", 1)[-1]).strip(". ")
    if not imageio.is_image_file(base):  # e.g. imagePath names the JSON itself
        base = f"{Path(base).stem or src.stem}{_SUFFIX[fmt]}"
    return s.write_image(base, raw)


def _region(s: ImportSession, src: Path, where: str, kind: str, xy: list[tuple[float, float]],
            rec: ImageRecord) -> tuple[np.ndarray, OutlinePart]:  # fmt: skip
    """The pixels of a polygon or circle shape and the outline part they come from (the
    points clipped into the image; a circle's rim point may lie outside)."""
    w, h = rec.width, rec.height
    if kind == "circle":
        if len(xy) != 2:
            raise FormatError(src, f"{where}.points", f"a circle needs 2 points, got {len(xy)}")
        (cx, cy), (ex, ey) = xy
        cx, cy = s.clip(cx, w, src, where, "x"), s.clip(cy, h, src, where, "y")
        return rasterize_circle(cx, cy, ex, ey, h, w), OutlinePart("circle", (cx, cy, ex, ey))
    if len(xy) < 3:
        raise FormatError(
            src, f"{where}.points", f"a polygon needs at least 3 points, got {len(xy)}"
        )
    pts = s.clip_points(rec, np.array(xy, np.float64), src, where)
    part = OutlinePart("polygon", tuple(float(v) for v in pts.ravel()))
    return rasterize_polygon(pts, h, w), part


def _mask_shape(
    src: Path, where: str, xy: list[tuple[float, float]], blob: object, rec: ImageRecord
) -> np.ndarray:
    """labelme's ``mask`` shape: a base64 PNG covering pixel columns x1..x2 and rows y1..y2
    (inclusive, the two points truncated to integers)."""
    if len(xy) != 2:
        raise FormatError(src, f"{where}.points", f"a mask needs 2 points, got {len(xy)}")
    (xa, ya), (xb, yb) = xy
    x1, y1, x2, y2 = int(xa), int(ya), int(xb), int(yb)
    if not (0 <= x1 <= x2 < rec.width and 0 <= y1 <= y2 < rec.height):
        raise FormatError(
            src, f"{where}.points", f"mask pixels {x1},{y1}..{x2},{y2} lie outside the image"
        )
    raw = _b64(blob, src, f"{where}.mask")
    # read the PNG header first: never decode a picture larger than the box
    if raw[:8] != b"\x89PNG\r\n\x1a\n" or len(raw) < 24:
        raise FormatError(src, f"{where}.mask", "not a PNG image")
    w, h = int.from_bytes(raw[16:20], "big"), int.from_bytes(raw[20:24], "big")
    if (h, w) != (y2 - y1 + 1, x2 - x1 + 1):
        raise FormatError(
            src, f"{where}.mask", f"mask is {w}×{h} px, its box {x2 - x1 + 1}×{y2 - y1 + 1} px"
        )
    arr = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None or arr.shape[:2] != (h, w):
        raise FormatError(src, f"{where}.mask", "PNG cannot be decoded")
    region = np.zeros((rec.height, rec.width), bool)
    region[y1 : y2 + 1, x1 : x2 + 1] = arr.reshape(h, w, -1).any(axis=2)
    return region


def _b64(blob: object, src: Path, where: str) -> bytes:
    blob = as_str(blob, src, where, "base64 data")
    try:
        return base64.b64decode(blob, validate=True)
    except (binascii.Error, ValueError):
        raise FormatError(src, where, "not valid base64") from None


def _group_ext(
    s: ImportSession, src: Path, where: str, g: object, templates: dict[str, Any]
) -> dict[str, Any]:
    g = as_dict(g, src, where)
    tname = as_str(g.get("template"), src, f"{where}.template", "template")
    tdef = templates.get(tname)
    if tdef is None:
        raise FormatError(
            src, f"{where}.template", f"template {tname!r} is not in tlstudio.templates"
        )
    tdef = as_dict(tdef, src, f"tlstudio.templates.{tname}")
    try:
        template = LandmarkTemplate.from_json({**tdef, "name": tname})
    except ValidationError as exc:
        raise FormatError(src, f"tlstudio.templates.{tname}", str(exc)) from None
    cls = g.get("class")
    class_id = None if cls is None else s.class_id(cls, src, f"{where}.class")
    return {
        "template": s.template(template, src, f"tlstudio.templates.{tname}"),
        "class_id": class_id,
    }


def _default_template(
    s: ImportSession, labels: list[str], parsed: list[dict[str, Any]]
) -> LandmarkTemplate:
    existing = s.project.template_by_name(TEMPLATE)
    if existing is not None and set(labels) <= set(existing.points):
        return existing
    first = next(d for d in parsed if any(g["ext"] is None for g in d["groups"].values()))
    try:
        template = LandmarkTemplate(TEMPLATE, tuple(labels))
    except ValidationError as exc:
        raise FormatError(first["src"], "shapes", str(exc)) from None
    return s.template(template, first["src"], "shapes", rename=True)


def _apply(s: ImportSession, doc: dict[str, Any], default: LandmarkTemplate | None) -> None:
    src, rec = doc["src"], doc["rec"]
    for group in doc["groups"].values():
        ext = group["ext"]
        template = default if ext is None else ext["template"]
        class_id = None if ext is None else ext["class_id"]
        assert template is not None
        unknown = set(group["points"]) - set(template.points)
        if unknown:
            raise FormatError(
                src,
                group["where"],
                f"point {sorted(unknown)[0]!r} is not in template {template.name!r}",
            )
        points = [group["points"].get(name, Point(0.0, 0.0, SKIPPED)) for name in template.points]
        s.landmarks(rec, template, points, class_id, src, group["where"])


# -- export -------------------------------------------------------------------------------


def export(project: Project, out: str | Path, *, warnings: list[str] | None = None) -> Path:
    """Write ``out/<stem>.json`` beside a hard link (or copy) of each image; returns ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    records = project.images()
    names = export_names(records)
    classes = project.classes()
    class_name = {c.id: c.name for c in classes}
    ignore_label = next(iter(IGNORE_NAMES))
    holes = 0
    for rec in records:
        name = names[rec.id]
        place_image(project, rec, out / name)
        ann = project.annotations(rec.id)
        shapes: list[dict[str, Any]] = []
        box_shape: dict[int, int] = {}
        for b in ann.boxes:
            assert b.id is not None
            box_shape[b.id] = len(shapes)
            shapes.append(_shape(class_name[b.class_id], [[b.x1, b.y1], [b.x2, b.y2]], "rectangle"))
        groups, templates = {}, {}
        for n, lms in enumerate(ann.landmarks, 1):
            t = project.template(lms.template_id)
            templates[t.name] = {k: v for k, v in t.to_json().items() if k != "name"}
            groups[str(n)] = {"template": t.name,
                              "class": None if lms.class_id is None else class_name[lms.class_id]}  # fmt: skip
            for pname, p in zip(t.points, lms.points, strict=True):
                if p.visibility == SKIPPED:
                    continue
                flags = {"occluded": True} if p.visibility == OCCLUDED else {}
                shapes.append(_shape(pname, [[p.x, p.y]], "point", group_id=n, flags=flags))
        next_group = len(ann.landmarks) + 1
        objects: list[dict[str, Any]] = []
        semantic: list[int] = []
        stuff = ann.mask
        if ann.instances is not None:
            stuff = None if ann.mask is None else np.where(ann.instances.map > 0, 0, ann.mask)
            for obj in ann.instances.objects:
                region = ann.instances.region(obj.number)
                if outline_is_intact(obj.outline, region):
                    assert obj.outline is not None
                    parts = [_outline_shape(part) for part in obj.outline]
                else:
                    holes += count_holes(region)
                    parts = [(poly.tolist(), "polygon") for poly in mask_polygons(region)]
                gid = None
                if len(parts) > 1:
                    gid, next_group = next_group, next_group + 1
                first = len(shapes)
                for points, kind in parts:
                    shapes.append(_shape(class_name[obj.class_id], points, kind, group_id=gid))
                objects.append({
                    "shapes": list(range(first, len(shapes))),
                    "box": None if obj.box_id is None else box_shape.get(obj.box_id),
                    "iscrowd": obj.iscrowd,
                })  # fmt: skip
        if stuff is not None and stuff.any():
            for cid in sorted(set(np.unique(stuff).tolist()) - {0}):
                region = stuff == cid
                holes += count_holes(region)
                for poly in mask_polygons(region):
                    semantic.append(len(shapes))
                    shapes.append(_shape(class_name[cid], poly.tolist(), "polygon"))
        if ann.ignore is not None:
            for poly in mask_polygons(ann.ignore):
                shapes.append(_shape(ignore_label, poly.tolist(), "polygon"))
        doc: dict[str, Any] = {
            "version": "5.4.1",
            "flags": {c.name: c.id in ann.tags for c in classes},
            "shapes": shapes,
            "imagePath": name,
            "imageData": None,
            "imageHeight": rec.height,
            "imageWidth": rec.width,
        }
        ext: dict[str, Any] = {}
        if groups:
            ext.update(templates=templates, groups=groups)
        if objects:
            ext["objects"] = objects
        if semantic:
            ext["semantic"] = semantic
        if ext:
            doc["tlstudio"] = ext
        stem = name.rsplit(".", 1)[0]
        write_text_atomic(
            out / f"{stem}.json", json.dumps(doc, indent=2, ensure_ascii=False), sync=False
        )
    if holes:
        note(warnings, f"labelme: {holes} holes in masks were filled (polygons cannot hold them)")
    return out


def _outline_shape(part: OutlinePart) -> tuple[list[list[float]], str]:
    c = list(part.coords)
    if part.kind == "circle":
        return [c[0:2], c[2:4]], "circle"
    return [c[i : i + 2] for i in range(0, len(c), 2)], "polygon"


def _shape(
    label: str,
    points: list[Any],
    kind: str,
    group_id: int | None = None,
    flags: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {"label": label, "points": points, "group_id": group_id, "description": "",
            "shape_type": kind, "flags": flags or {}, "mask": None}  # fmt: skip
