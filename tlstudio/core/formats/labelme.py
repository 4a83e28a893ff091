"""labelme JSON: one file per image with ``imagePath``, ``imageWidth``/``imageHeight``,
``flags`` and ``shapes``; points are [x, y] in image pixels (pixel-edge frame).

* ``rectangle`` (two opposite corners) → a box of class ``label``.
* ``polygon`` (≥ 3 points) and ``circle`` (centre, point on the rim) → mask
  pixels of class ``label`` (a pixel is in when its centre is inside or on the
  outline); ``mask`` (labelme ≥ 5.3: a base64 PNG over the pixels of its two
  points' box, inclusive) → those mask pixels. ``line`` and ``linestrip`` are
  skipped with a warning.
* ``point`` shapes are landmarks, grouped into one landmark set per
  ``group_id`` per file (points without a ``group_id`` form one set; a label may
  then appear only once). The point's ``label`` is the landmark name; the sets
  use a template ``labelme points`` whose points are every point label of the
  import in order of first appearance (an existing template of that name is
  reused when it holds all of them, otherwise the name gets a number). Points a
  set lacks are unlabelled (v = 0); a shape flag ``occluded: true`` gives v = 1.
* ``flags`` with value ``true`` → image tags.

Export writes ``<stem>.json`` next to a hard link (or copy) of each image, boxes as
rectangles, landmark sets as points (``group_id`` = set number, unlabelled points
left out), masks as polygons traced from the outer contours of each class (holes
are lost, so masks round-trip approximately) and every class as a flag. A
top-level ``tlstudio`` key (kept by labelme) records each group's template and
class so that tlstudio reads its own landmarks back exactly:
``{"templates": {name: {points, skeleton, flip_pairs}}, "groups": {"<group_id>":
{"template": name, "class": name | null}}}``.
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

from ..annotations import OCCLUDED, SKIPPED, VISIBLE, Point
from ..atomic import write_text_atomic
from ..errors import FormatError, ValidationError
from ..labelset import LandmarkTemplate
from ..project import ImageRecord, Project
from ._common import (
    ImportSession,
    as_dict,
    as_int,
    as_list,
    as_str,
    clip,
    export_names,
    find_file,
    import_session,
    mask_polygons,
    num,
    place_image,
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
    """Validate one document and add its tags, boxes and mask regions; points are
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
        if value:
            s.tag(rec, s.class_id(name, src, f"flags.{name}"), src, f"flags.{name}")
    ext = as_dict(data.get("tlstudio") or {}, src, "tlstudio")
    ext_groups = as_dict(ext.get("groups") or {}, src, "tlstudio.groups")
    ext_templates = as_dict(ext.get("templates") or {}, src, "tlstudio.templates")
    groups: dict[object, dict[str, Any]] = {}
    for i, shape in enumerate(as_list(data["shapes"], src, "shapes")):
        where = f"shapes[{i}]"
        shape = as_dict(shape, src, where)
        kind = shape.get("shape_type") or "polygon"
        kind = as_str(kind, src, f"{where}.shape_type", "shape_type")
        label = as_str(shape.get("label"), src, f"{where}.label", "label").strip()
        if not label:
            raise FormatError(src, f"{where}.label", "empty label")
        pts = as_list(shape.get("points"), src, f"{where}.points", "points")
        xy = []
        for j, p in enumerate(pts):
            p = as_list(p, src, f"{where}.points[{j}]", "point")
            if len(p) != 2:
                raise FormatError(
                    src, f"{where}.points[{j}]", f"expected [x, y], got {len(p)} numbers"
                )
            xy.append(
                (
                    num(p[0], src, f"{where}.points[{j}]", "x"),
                    num(p[1], src, f"{where}.points[{j}]", "y"),
                )
            )
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
            cid = s.class_id(label, src, f"{where}.label")
            s.box(rec, cid, (min(xa, xb), min(ya, yb), max(xa, xb), max(ya, yb)), src, where)
        elif kind in ("polygon", "circle"):
            region = _region(src, where, kind, xy, rec)
            s.paint(rec, s.class_id(label, src, f"{where}.label"), region, src, where)
        elif kind == "mask":
            region = _mask_shape(src, where, xy, shape.get("mask"), rec)
            s.paint(rec, s.class_id(label, src, f"{where}.label"), region, src, where)
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


def _image_path(s: ImportSession, src: Path, data: dict[str, Any]) -> Path:
    name = as_str(data.get("imagePath"), src, "imagePath", "imagePath")
    try:
        return find_file(name, [src.parent], src, "imagePath")
    except FormatError:
        blob = data.get("imageData")
        if not blob:
            raise
        return _write_embedded(s, src, name, blob)


def _write_embedded(s: ImportSession, src: Path, name: str, blob: object) -> Path:
    """Decode ``imageData`` into the project's images/ folder (removed again if the
    import fails, like every file an import copies in)."""
    raw = _b64(blob, src, "imageData")
    folder = s.project.root / "images"
    folder.mkdir(exist_ok=True)
    base = re.sub(r"[^\w.\- ]", "_", name.replace("\\", "/").rsplit("/", 1)[-1]).strip(". ")
    base = base or f"{src.stem}.png"
    dest, n = folder / base, 1
    while dest.exists():
        dest = folder / f"{Path(base).stem}_{n}{Path(base).suffix}"
        n += 1
    dest.write_bytes(raw)
    s.created_files.append(dest)
    return dest


def _region(
    src: Path, where: str, kind: str, xy: list[tuple[float, float]], rec: ImageRecord
) -> np.ndarray:
    w, h = rec.width, rec.height
    pts = [(clip(x, w, src, where, "x"), clip(y, h, src, where, "y")) for x, y in xy]
    if kind == "circle":
        if len(pts) != 2:
            raise FormatError(src, f"{where}.points", f"a circle needs 2 points, got {len(pts)}")
        (cx, cy), (px, py) = pts
        r = float(np.hypot(px - cx, py - cy))
        yy, xx = np.mgrid[0:h, 0:w]
        inside: np.ndarray = (xx + 0.5 - cx) ** 2 + (yy + 0.5 - cy) ** 2 <= r * r
        return inside
    if len(pts) < 3:
        raise FormatError(
            src, f"{where}.points", f"a polygon needs at least 3 points, got {len(pts)}"
        )
    return rasterize_polygon(np.array(pts), h, w)


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
    for rec in records:
        name = names[rec.id]
        place_image(project, rec, out / name)
        ann = project.annotations(rec.id)
        shapes: list[dict[str, Any]] = []
        for b in ann.boxes:
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
        if ann.mask is not None:
            for cid in sorted(set(np.unique(ann.mask).tolist()) - {0}):
                for poly in mask_polygons(ann.mask == cid):
                    shapes.append(_shape(class_name[cid], poly.tolist(), "polygon"))
        doc: dict[str, Any] = {
            "version": "5.4.1",
            "flags": {c.name: c.id in ann.tags for c in classes},
            "shapes": shapes,
            "imagePath": name,
            "imageData": None,
            "imageHeight": rec.height,
            "imageWidth": rec.width,
        }
        if groups:
            doc["tlstudio"] = {"templates": templates, "groups": groups}
        stem = name.rsplit(".", 1)[0]
        write_text_atomic(
            out / f"{stem}.json", json.dumps(doc, indent=2, ensure_ascii=False), sync=False
        )
    return out


def _shape(
    label: str,
    points: list[Any],
    kind: str,
    group_id: int | None = None,
    flags: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {"label": label, "points": points, "group_id": group_id, "description": "",
            "shape_type": kind, "flags": flags or {}, "mask": None}  # fmt: skip
