"""COCO JSON: boxes, keypoints, polygon/RLE segmentation and image-level tags.

Coordinates are COCO's and tlstudio's alike: image pixels with the origin at the
top-left corner of the image (``bbox`` = [x, y, width, height]; polygons and
keypoints are x, y pairs in the same frame; keypoint visibility 0/1/2).

Conventions of this module:

* **Image-level tags** are annotations with a ``category_id`` and no ``bbox``,
  ``segmentation`` or ``keypoints`` (``{"id", "image_id", "category_id"}``).
* A ``bbox`` becomes a box; an annotation may carry a bbox *and* keypoints
  and/or a segmentation (a COCO person), giving a box, a landmark set and mask
  pixels. A bbox marked ``"tlstudio": {"box": false}`` was derived on export
  (from keypoints or a mask) and is not imported as a box.
* Keypoint categories become a :class:`LandmarkTemplate` named after the
  category; ``skeleton`` is 1-based in COCO and 0-based in tlstudio; left/right
  pairs come from ``left_``/``right_`` name prefixes. Points with v = 0 are
  stored as (0, 0, 0); annotations whose points all have v = 0 give no landmark set.
* Segmentation polygons and RLE (uncompressed ``counts`` list or compressed
  string) are rasterised into the image's label map with the category's class;
  a pixel belongs to a polygon when its centre lies inside or on it.
* Optional extension on categories, written on export so that a round trip is
  exact: ``"tlstudio": {"class": name | null, "template": name,
  "flip_pairs": [[i, j], ...]}`` (0-based pairs; ``class`` null = landmark
  sets without a class; ``class`` given = the category is not itself a class).
* Export: a landmark set and the first box of its class enclosing its labelled
  points share one annotation (bbox + keypoints); other landmark sets get a
  derived bbox flagged as above. Masks become one annotation per class per
  image: compressed RLE, ``iscrowd`` 0, derived bbox.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..annotations import SKIPPED, Box, LandmarkSet
from ..atomic import write_text_atomic
from ..errors import FormatError, ValidationError
from ..labelset import LandmarkTemplate
from ..project import ImageRecord, Project
from ._common import (
    CLIP_TOLERANCE,
    ImportSession,
    as_dict,
    as_int,
    as_list,
    as_str,
    bbox_of_mask,
    export_names,
    find_file,
    flip_pairs_from_names,
    import_session,
    num,
    place_image,
    rasterize_polygon,
    read_json,
    relative_ref,
    type_name,
)
from .report import LabelImportReport

# -- RLE codec (pycocotools' maskApi.c, re-implemented) ----------------------------------


def rle_encode(region: np.ndarray) -> list[int]:
    """Uncompressed COCO RLE counts of a boolean H×W mask: column-major runs, starting
    with a (possibly empty) run of zeros."""
    flat = np.asarray(region, bool).ravel(order="F")
    if flat.size == 0:
        return []
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate(([0], change, [flat.size]))
    runs = np.diff(bounds).tolist()
    return [0, *runs] if flat[0] else runs


def rle_decode(counts: Sequence[int], height: int, width: int) -> np.ndarray:
    """Boolean H×W mask from uncompressed RLE counts (which must sum to H·W)."""
    vals = np.zeros(len(counts), bool)
    vals[1::2] = True
    flat = np.repeat(vals, np.asarray(counts, np.int64))
    return flat.reshape(width, height).T


def counts_to_string(counts: Sequence[int]) -> str:
    """COCO's compressed counts string (LEB128-like, 5 bits per char from '0', deltas
    against the count two places back from the fourth count on)."""
    out = []
    for i, c in enumerate(counts):
        x = int(c) - (int(counts[i - 2]) if i > 2 else 0)
        more = True
        while more:
            ch = x & 0x1F
            x >>= 5
            more = x != -1 if ch & 0x10 else x != 0
            if more:
                ch |= 0x20
            out.append(chr(ch + 48))
    return "".join(out)


def string_to_counts(s: str) -> list[int]:
    """Inverse of :func:`counts_to_string`; ValueError on malformed text."""
    counts: list[int] = []
    p, n = 0, len(s)
    while p < n:
        x = k = 0
        more = True
        while more:
            if p >= n:
                raise ValueError("counts string ends inside a number")
            c = ord(s[p]) - 48
            if not 0 <= c < 64:
                raise ValueError(f"invalid character {s[p]!r} at {p}")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if k > 12:
                raise ValueError(f"run length too large at {p}")
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        if x < 0:
            raise ValueError(f"negative run length at {p}")
        counts.append(x)
    return counts


# -- import -------------------------------------------------------------------------------


@dataclass
class _Category:
    name: str
    class_id: int | None
    template: LandmarkTemplate | None


def find_coco_file(path: Path) -> Path:
    """The COCO JSON for ``path``: the file itself, or the one COCO JSON in the folder
    (or its ``annotations/`` subfolder)."""
    if not path.is_dir():
        return path
    found = []
    for folder in (path, path / "annotations"):
        if folder.is_dir():
            found += [p for p in sorted(folder.glob("*.json")) if looks_like_coco(p)]
    if not found:
        raise FormatError(path, "", "no COCO JSON file here (nor in annotations/)")
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise FormatError(path, "", f"several COCO JSON files ({names}); choose one")
    return found[0]


def looks_like_coco(path: Path) -> bool:
    """Cheap check: a JSON object with ``images`` and ``annotations`` or ``categories``."""
    try:
        with open(path, "rb") as f:
            head = f.read(1 << 20)
    except OSError:
        return False
    text = head.decode("utf-8", "replace").lstrip("\ufeff").lstrip()
    if not text.startswith("{") or '"images"' not in text:
        return False
    if '"annotations"' in text or '"categories"' in text:
        return True
    try:
        data = json.loads(path.read_text("utf-8-sig"))
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(data, dict) and "images" in data and "shapes" not in data


def import_(project: Project, path: str | Path, copy_images: bool = False) -> LabelImportReport:
    """Import a COCO JSON file (or a folder holding exactly one). ``file_name`` resolves
    against the JSON's folder, then its ``images/`` subfolder, then a sibling ``images/``."""
    src = find_coco_file(Path(path))
    data = read_json(src)
    with import_session(project, copy_images) as session:
        _import(session, src, data)
    return session.report


def _key(v: object, src: Path, where: str, what: str) -> int | str:
    if isinstance(v, str):
        return v
    return as_int(v, src, where, what)


def _import(s: ImportSession, src: Path, data: object) -> None:
    top = as_dict(data, src, "", "document")
    if "images" not in top:
        raise FormatError(src, "", "no 'images' list: not a COCO file")
    images = as_list(top["images"], src, "images")
    anns = as_list(top.get("annotations", []), src, "annotations")
    cats = as_list(top.get("categories", []), src, "categories")

    ids: list[int | str] = []
    seen: set[int | str] = set()
    refs: list[tuple[Path, Path, str]] = []
    bases = [src.parent, src.parent / "images", src.parent.parent / "images"]
    for i, im in enumerate(images):
        where = f"images[{i}]"
        im = as_dict(im, src, where)
        iid = _key(im.get("id"), src, f"{where}.id", "id")
        if iid in seen:
            raise FormatError(src, f"{where}.id", f"duplicate image id {iid}")
        seen.add(iid)
        ids.append(iid)
        name = as_str(im.get("file_name"), src, f"{where}.file_name", "file_name")
        refs.append((find_file(name, bases, src, f"{where}.file_name"), src, f"{where}.file_name"))
    # images first: they are checked and copied before the transaction begins
    by_id = dict(zip(ids, s.images(refs), strict=True))
    categories: dict[int | str, _Category] = {}
    for i, c in enumerate(cats):
        where = f"categories[{i}]"
        c = as_dict(c, src, where)
        cid = _key(c.get("id"), src, f"{where}.id", "id")
        if cid in categories:
            raise FormatError(src, f"{where}.id", f"duplicate category id {cid}")
        categories[cid] = _category(s, src, where, c)
    for i, (im, rec) in enumerate(zip(images, by_id.values(), strict=True)):
        for key, actual in (("width", rec.width), ("height", rec.height)):
            if im.get(key) is not None:
                given = as_int(im[key], src, f"images[{i}].{key}", key)
                if given != actual:
                    raise FormatError(
                        src,
                        f"images[{i}].{key}",
                        f"{key} {given} differs from the file's {actual} px",
                    )

    for k, a in enumerate(anns):
        where = f"annotations[{k}]"
        a = as_dict(a, src, where)
        iid = _key(a.get("image_id"), src, f"{where}.image_id", "image_id")
        found = by_id.get(iid)
        if found is None:
            raise FormatError(src, f"{where}.image_id", f"no image with id {iid}")
        rec = found
        cid = _key(a.get("category_id"), src, f"{where}.category_id", "category_id")
        cat = categories.get(cid)
        if cat is None:
            raise FormatError(src, f"{where}.category_id", f"no category with id {cid}")
        _annotation(s, src, where, a, rec, cat)


def _category(s: ImportSession, src: Path, where: str, c: dict[str, Any]) -> _Category:
    name = as_str(c.get("name"), src, f"{where}.name", "name").strip()
    if not name:
        raise FormatError(src, f"{where}.name", "empty category name")
    ext = as_dict(c.get("tlstudio", {}), src, f"{where}.tlstudio")
    if "class" in ext:
        cls = ext["class"]
        class_id = None if cls is None else s.class_id(cls, src, f"{where}.tlstudio.class")
    else:
        class_id = s.class_id(name, src, f"{where}.name")
    kps = c.get("keypoints")
    if kps in (None, []):
        return _Category(name, class_id, None)
    kps = as_list(kps, src, f"{where}.keypoints")
    points = tuple(
        as_str(p, src, f"{where}.keypoints[{j}]", "keypoint name") for j, p in enumerate(kps)
    )
    skeleton = []
    for j, edge in enumerate(as_list(c.get("skeleton", []) or [], src, f"{where}.skeleton")):
        ew = f"{where}.skeleton[{j}]"
        edge = as_list(edge, src, ew)
        if len(edge) != 2:
            raise FormatError(src, ew, f"expected 2 point numbers, got {len(edge)}")
        a, b = (as_int(e, src, ew, "point number") for e in edge)
        if not (1 <= a <= len(points) and 1 <= b <= len(points)):
            raise FormatError(
                src, ew, f"point numbers must be in 1..{len(points)} (COCO is 1-based)"
            )
        skeleton.append((a - 1, b - 1))
    if "flip_pairs" in ext:
        flips = []
        for j, pair in enumerate(as_list(ext["flip_pairs"], src, f"{where}.tlstudio.flip_pairs")):
            pw = f"{where}.tlstudio.flip_pairs[{j}]"
            pair = as_list(pair, src, pw)
            if len(pair) != 2:
                raise FormatError(src, pw, f"expected 2 point indices, got {len(pair)}")
            left, right = (as_int(e, src, pw, "point index") for e in pair)
            flips.append((left, right))
    else:
        flips = list(flip_pairs_from_names(points))
    tname = ext.get("template", name)
    tname = as_str(tname, src, f"{where}.tlstudio.template", "template")
    try:
        template = LandmarkTemplate(tname, points, tuple(skeleton), tuple(flips))
    except ValidationError as exc:
        raise FormatError(src, where, str(exc)) from None
    return _Category(name, class_id, s.template(template, src, where))


def _present(v: object) -> bool:
    return v not in (None, [], {})


def _annotation(
    s: ImportSession, src: Path, where: str, a: dict[str, Any], rec: ImageRecord, cat: _Category
) -> None:
    ext = as_dict(a.get("tlstudio", {}), src, f"{where}.tlstudio")
    box_flag = ext.get("box", True)
    if not isinstance(box_flag, bool):
        raise FormatError(
            src, f"{where}.tlstudio.box", f"expected true or false, got {type_name(box_flag)}"
        )
    bbox, seg, kps = a.get("bbox"), a.get("segmentation"), a.get("keypoints")
    if not (_present(bbox) or _present(seg) or _present(kps)):
        if cat.class_id is None:
            raise FormatError(
                src, where, f"image-level annotation of category {cat.name!r}, which has no class"
            )
        s.tag(rec, cat.class_id, src, where)
        return
    if _present(bbox):
        bw = f"{where}.bbox"
        bbox = as_list(bbox, src, bw, "bbox")
        if len(bbox) != 4:
            raise FormatError(src, bw, f"expected 4 numbers, got {len(bbox)}")
        x, y, w, h = (num(v, src, bw, "bbox") for v in bbox)
        if w < 0 or h < 0:
            raise FormatError(src, bw, f"negative width or height ({w:g}, {h:g})")
        if box_flag:
            if cat.class_id is None:
                raise FormatError(src, bw, f"box of category {cat.name!r}, which has no class")
            s.box(rec, cat.class_id, (x, y, x + w, y + h), src, bw)
    if _present(seg):
        if cat.class_id is None:
            raise FormatError(src, f"{where}.segmentation", f"category {cat.name!r} has no class")
        region = _segmentation(src, f"{where}.segmentation", seg, rec)
        s.paint(rec, cat.class_id, region, src, f"{where}.segmentation")
    if _present(kps):
        kw = f"{where}.keypoints"
        if cat.template is None:
            raise FormatError(src, kw, f"category {cat.name!r} defines no keypoints")
        kps = as_list(kps, src, kw)
        n = len(cat.template.points)
        if len(kps) != 3 * n:
            raise FormatError(src, kw, f"expected {3 * n} numbers ({n} points × 3), got {len(kps)}")
        points = []
        for j in range(n):
            pw = f"{kw}[{3 * j}]"
            x, y = num(kps[3 * j], src, pw, "x"), num(kps[3 * j + 1], src, pw, "y")
            v = as_int(kps[3 * j + 2], src, pw, "visibility")
            points.append(s.point(rec, x, y, v, src, pw))
        if any(p.visibility != SKIPPED for p in points):
            s.landmarks(rec, cat.template, points, cat.class_id, src, kw)


def _segmentation(src: Path, where: str, seg: object, rec: ImageRecord) -> np.ndarray:
    h, w = rec.height, rec.width
    if isinstance(seg, list):
        region = np.zeros((h, w), bool)
        for j, poly in enumerate(seg):
            pw = f"{where}[{j}]"
            poly = as_list(poly, src, pw, "polygon")
            if len(poly) < 6 or len(poly) % 2:
                raise FormatError(
                    src, pw, f"a polygon needs an even number ≥ 6 of coordinates, got {len(poly)}"
                )
            pts = np.array([num(v, src, pw, "coordinate") for v in poly]).reshape(-1, 2)
            _check_inside(pts, w, h, src, pw)
            region |= rasterize_polygon(pts, h, w)
        return region
    seg = as_dict(seg, src, where, "segmentation")
    size = as_list(seg.get("size"), src, f"{where}.size", "size")
    if len(size) != 2:
        raise FormatError(
            src, f"{where}.size", f"expected [height, width], got {len(size)} numbers"
        )
    sh, sw = (as_int(v, src, f"{where}.size", "size") for v in size)
    if (sh, sw) != (h, w):
        raise FormatError(src, f"{where}.size", f"RLE is {sw}×{sh} px, image is {w}×{h} px")
    counts = seg.get("counts")
    if isinstance(counts, str):
        try:
            counts = string_to_counts(counts)
        except ValueError as exc:
            raise FormatError(src, f"{where}.counts", f"bad compressed RLE: {exc}") from None
    else:
        counts = as_list(counts, src, f"{where}.counts", "counts")
        counts = [as_int(c, src, f"{where}.counts", "count") for c in counts]
        if any(c < 0 for c in counts):
            raise FormatError(src, f"{where}.counts", "negative run length")
    total = sum(counts)
    if total != h * w:
        raise FormatError(src, f"{where}.counts", f"runs cover {total} pixels, image has {h * w}")
    return rle_decode(counts, h, w)


def _check_inside(pts: np.ndarray, w: int, h: int, src: Path, where: str) -> None:
    bad = (pts[:, 0] < -CLIP_TOLERANCE) | (pts[:, 0] > w + CLIP_TOLERANCE)
    bad |= (pts[:, 1] < -CLIP_TOLERANCE) | (pts[:, 1] > h + CLIP_TOLERANCE)
    if bad.any():
        x, y = pts[np.argmax(bad)]
        raise FormatError(src, where, f"point ({x:g}, {y:g}) lies outside the image ({w}×{h} px)")
    np.clip(pts[:, 0], 0, w, out=pts[:, 0])
    np.clip(pts[:, 1], 0, h, out=pts[:, 1])


# -- export -------------------------------------------------------------------------------


def export(project: Project, out: str | Path, *, warnings: list[str] | None = None) -> Path:
    """Write COCO JSON. ``out`` ending in ``.json``: that file, ``file_name`` = image paths
    relative to it (images stay where they are). Otherwise ``out`` is a folder:
    ``out/annotations.json`` and the images hard-linked (or copied) into ``out/images/``.
    Returns the JSON path."""
    out = Path(out)
    records = project.images()
    if out.suffix.lower() == ".json":
        json_path = out
        json_path.parent.mkdir(parents=True, exist_ok=True)
        names = {
            r.id: relative_ref(project.image_path(r).resolve(), json_path.parent.resolve())
            for r in records
        }
    else:
        out.mkdir(parents=True, exist_ok=True)
        json_path = out / "annotations.json"
        names = export_names(records)
        for r in records:
            place_image(project, r, out / "images" / names[r.id])

    classes = project.classes()
    class_cat = {c.id: i + 1 for i, c in enumerate(classes)}
    categories: list[dict[str, Any]] = [
        {"id": class_cat[c.id], "name": c.name, "supercategory": ""} for c in classes
    ]
    class_name = {c.id: c.name for c in classes}

    # which (class, template) pairs carry keypoints
    combos: dict[int | None, set[int]] = {}
    for cls_id, tpl_id in project.store.conn.execute(
        "SELECT DISTINCT class_id, template_id FROM landmark_sets"
    ):
        combos.setdefault(cls_id, set()).add(tpl_id)
    kp_cat: dict[tuple[int | None, int], int] = {}
    used_names = {c.name for c in classes}

    def keypoint_fields(t: LandmarkTemplate) -> dict[str, Any]:
        return {
            "keypoints": list(t.points),
            "skeleton": [[a + 1, b + 1] for a, b in t.skeleton],
        }

    for cls_id, tpls in sorted(combos.items(), key=lambda kv: (kv[0] is None, kv[0] or 0)):
        for tpl_id in sorted(tpls):
            t = project.template(tpl_id)
            ext = {"template": t.name, "flip_pairs": [list(p) for p in t.flip_pairs]}
            if cls_id is not None and len(tpls) == 1:
                cat = categories[class_cat[cls_id] - 1]
                cat.update(keypoint_fields(t))
                cat["tlstudio"] = ext
                kp_cat[(cls_id, tpl_id)] = cat["id"]
                continue
            base = t.name if cls_id is None else f"{class_name[cls_id]}/{t.name}"
            name, n = base, 1
            while name in used_names:
                n += 1
                name = f"{base} {n}"
            used_names.add(name)
            cat = {"id": len(categories) + 1, "name": name, "supercategory": "", **keypoint_fields(t),
                   "tlstudio": {"class": None if cls_id is None else class_name[cls_id], **ext}}  # fmt: skip
            categories.append(cat)
            kp_cat[(cls_id, tpl_id)] = cat["id"]

    images: list[dict[str, Any]] = []
    anns: list[dict[str, Any]] = []

    def add(ann: dict[str, Any]) -> None:
        anns.append({"id": len(anns) + 1, **ann})

    for n_img, rec in enumerate(records, 1):
        images.append(
            {"id": n_img, "file_name": names[rec.id], "width": rec.width, "height": rec.height}
        )
        a = project.annotations(rec.id)
        for cid in a.tags:
            add({"image_id": n_img, "category_id": class_cat[cid]})
        boxes = list(a.boxes)
        kp_anns = []
        for lms in a.landmarks:
            kp_anns.append(
                _keypoint_ann(n_img, lms, kp_cat[(lms.class_id, lms.template_id)], boxes)
            )
        for b in boxes:
            add({"image_id": n_img, "category_id": class_cat[b.class_id], **_bbox_fields(b)})
        for ann in kp_anns:
            add(ann)
        if a.mask is not None:
            for cid in sorted(set(np.unique(a.mask).tolist()) - {0}):
                region = a.mask == cid
                x1, y1, x2, y2 = bbox_of_mask(region)
                add({
                    "image_id": n_img, "category_id": class_cat[cid],
                    "segmentation": {"size": [rec.height, rec.width],
                                     "counts": counts_to_string(rle_encode(region))},
                    "area": int(region.sum()), "bbox": [x1, y1, x2 - x1, y2 - y1], "iscrowd": 0,
                    "tlstudio": {"box": False},
                })  # fmt: skip

    doc = {
        "info": {"description": "exported by tlstudio", "version": "1.0"},
        "licenses": [],
        "images": images,
        "annotations": anns,
        "categories": categories,
    }
    write_text_atomic(json_path, json.dumps(doc, indent=1))
    return json_path


def _bbox_fields(b: Box) -> dict[str, Any]:
    w, h = b.x2 - b.x1, b.y2 - b.y1
    return {"bbox": [b.x1, b.y1, w, h], "area": w * h, "iscrowd": 0}


def _keypoint_ann(image_no: int, lms: LandmarkSet, cat_id: int, boxes: list[Box]) -> dict[str, Any]:
    """A keypoint annotation; it takes over the first box of the same class enclosing all
    labelled points (removed from ``boxes``), else gets a derived bbox flagged as such."""
    flat: list[float] = []
    labelled = [p for p in lms.points if p.visibility != SKIPPED]
    for p in lms.points:
        flat += [0, 0, 0] if p.visibility == SKIPPED else [p.x, p.y, p.visibility]
    ann: dict[str, Any] = {"image_id": image_no, "category_id": cat_id, "keypoints": flat,
                 "num_keypoints": len(labelled), "iscrowd": 0}  # fmt: skip
    if lms.class_id is not None:
        for i, b in enumerate(boxes):
            if b.class_id == lms.class_id and all(
                b.x1 <= p.x <= b.x2 and b.y1 <= p.y <= b.y2 for p in labelled
            ):
                ann.update(_bbox_fields(boxes.pop(i)))
                return ann
    if labelled:
        xs, ys = [p.x for p in labelled], [p.y for p in labelled]
        ann.update({"bbox": [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)],
                    "area": (max(xs) - min(xs)) * (max(ys) - min(ys)), "tlstudio": {"box": False}})  # fmt: skip
    return ann
