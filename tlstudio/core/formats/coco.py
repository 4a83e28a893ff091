"""COCO JSON: boxes, objects (instance segmentation), keypoints and image-level tags.

Coordinates are COCO's and tlstudio's alike: image pixels with the origin at the
top-left corner of the image (``bbox`` = [x, y, width, height]; polygons and
keypoints are x, y pairs in the same frame; keypoint visibility 0/1/2).

Conventions of this module:

* An annotation with a ``segmentation`` (polygons, or RLE with an uncompressed
  ``counts`` list or a compressed string) is one **object** of its category's class,
  ``iscrowd`` kept; a pixel belongs to a polygon when its centre lies inside or on it.
  Its ``bbox`` also gives a detection box, linked to the object as its box, unless the
  annotation is marked ``"tlstudio": {"box": false}`` (a box derived on export).
  Objects of one image do not overlap in tlstudio: where COCO objects overlap, the later
  one gets the pixels (a warning counts them).
* An annotation with only a ``bbox`` is a box; one with ``keypoints`` a landmark set
  (with a bbox also a box, as for a COCO person); one with none of the three an
  image-level tag (as older tlstudio exports wrote them).
* ``images[i].tlstudio.tags`` (category ids) are the image's tags, and
  ``images[i].tlstudio.ignore`` (an RLE) its ignore region: the export writes tags and
  ignore regions there, because COCO has neither and its tools expect a ``bbox`` on
  every annotation.
* ``images[i].domain`` (a string) is the image's domain (site, scanner, batch), read and
  written as a plain image field, as other tools that keep domains do.
* Categories named ``_background_`` (labelme2coco's category 0) and ``__ignore__``
  become no class: their regions paint background and ignore regions.
* Keypoint categories become a :class:`LandmarkTemplate` named after the
  category; ``skeleton`` is 1-based in COCO and 0-based in tlstudio; left/right
  pairs come from ``left_``/``right_`` name prefixes. Points with v = 0 are
  stored as (0, 0, 0); annotations whose points all have v = 0 give no landmark set.
* Optional extension on categories, written on export so that a round trip is
  exact: ``"tlstudio": {"class": name | null, "template": name,
  "flip_pairs": [[i, j], ...]}`` (0-based pairs; ``class`` null = landmark
  sets without a class; ``class`` given = the category is not itself a class).
* Export writes one annotation per object: ``bbox`` (its linked box, else its pixels'
  bounding box, then flagged ``box: false``), ``segmentation`` (the polygons it was
  imported from while they still give exactly its pixels, else compressed RLE),
  ``area`` (its pixel count) and ``iscrowd``. Boxes that are no object's box are
  box-only annotations; a landmark set and the first box of its class enclosing its
  labelled points share one annotation (bbox + keypoints), other landmark sets get a
  derived bbox flagged as above. Labelled pixels of no object (painted with the class
  brush) become one RLE annotation per class and image, flagged
  ``"tlstudio": {"box": false, "stuff": true}`` (read back as such).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..annotations import SKIPPED, Box, LandmarkSet, OutlinePart
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
    bbox_of_mask,
    export_names,
    find_file,
    flip_pairs_from_names,
    import_session,
    label_role,
    note,
    num,
    outline_is_intact,
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
    role: str | None = None  # "ignore" or "background" (see label_role)


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
        _image_ext(s, src, f"images[{i}].tlstudio", im.get("tlstudio"), rec, categories)
        s.set_domain(rec, im.get("domain"), src, f"images[{i}].domain")

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


def _image_ext(s: ImportSession, src: Path, where: str, ext: object, rec: ImageRecord,
               categories: dict[int | str, _Category]) -> None:  # fmt: skip
    """``images[i].tlstudio``: ``tags`` (category ids) and ``ignore`` (an RLE)."""
    if ext is None:
        return
    ext = as_dict(ext, src, where)
    for j, cid in enumerate(as_list(ext.get("tags") or [], src, f"{where}.tags")):
        tw = f"{where}.tags[{j}]"
        cat = categories.get(_key(cid, src, tw, "category id"))
        if cat is None or cat.class_id is None:
            raise FormatError(src, tw, f"no category with id {cid} and a class")
        s.tag(rec, cat.class_id, src, tw)
    if ext.get("ignore") is not None:
        region = _segmentation(s, src, f"{where}.ignore", ext["ignore"], rec)[0]
        s.ignore(rec, region, src, f"{where}.ignore")


def _category(s: ImportSession, src: Path, where: str, c: dict[str, Any]) -> _Category:
    name = as_str(c.get("name"), src, f"{where}.name", "name").strip()
    if not name:
        raise FormatError(src, f"{where}.name", "empty category name")
    ext = as_dict(c.get("tlstudio", {}), src, f"{where}.tlstudio")
    role = label_role(name)
    if role is not None and "class" not in ext and c.get("keypoints") in (None, []):
        return _Category(name, None, None, role)
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


def _flag(ext: dict[str, Any], key: str, default: bool, src: Path, where: str) -> bool:
    value = ext.get(key, default)
    if not isinstance(value, bool):
        raise FormatError(
            src, f"{where}.tlstudio.{key}", f"expected true or false, got {type_name(value)}"
        )
    return value


def _annotation(
    s: ImportSession, src: Path, where: str, a: dict[str, Any], rec: ImageRecord, cat: _Category
) -> None:
    ext = as_dict(a.get("tlstudio", {}), src, f"{where}.tlstudio")
    box_flag = _flag(ext, "box", True, src, where)
    stuff = _flag(ext, "stuff", False, src, where)
    bbox, seg, kps = a.get("bbox"), a.get("segmentation"), a.get("keypoints")
    iscrowd = a.get("iscrowd", 0)
    if iscrowd not in (0, 1) or isinstance(iscrowd, bool):
        raise FormatError(src, f"{where}.iscrowd", f"expected 0 or 1, got {iscrowd!r}")
    if not (_present(bbox) or _present(seg) or _present(kps)):
        if cat.class_id is None:
            raise FormatError(
                src, where, f"image-level annotation of category {cat.name!r}, which has no class"
            )
        s.tag(rec, cat.class_id, src, where)
        return
    if cat.role is not None:  # __ignore__ / _background_: a region, never a box or class
        if _present(seg):
            region = _segmentation(s, src, f"{where}.segmentation", seg, rec)[0]
        elif _present(bbox):
            region = _bbox_region(s, src, f"{where}.bbox", bbox, rec)
        else:
            raise FormatError(src, where, f"keypoints of category {cat.name!r}, which has no class")
        s.region(rec, cat.name, region, src, where)
        return
    box: Box | None = None
    if _present(bbox):
        bw = f"{where}.bbox"
        x, y, w, h = _bbox(src, bw, bbox)
        if box_flag:
            if cat.class_id is None:
                raise FormatError(src, bw, f"box of category {cat.name!r}, which has no class")
            box = s.box(rec, cat.class_id, (x, y, x + w, y + h), src, bw)
    if _present(seg):
        sw = f"{where}.segmentation"
        if cat.class_id is None:
            raise FormatError(src, sw, f"category {cat.name!r} has no class")
        region, outline = _segmentation(s, src, sw, seg, rec)
        if stuff:
            s.paint(rec, cat.class_id, region, src, sw)
        else:
            s.instance(rec, cat.class_id, region, src, sw, iscrowd=bool(iscrowd),
                       box_id=None if box is None else box.id, outline=outline)  # fmt: skip
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


def _bbox(src: Path, where: str, bbox: object) -> tuple[float, float, float, float]:
    bbox = as_list(bbox, src, where, "bbox")
    if len(bbox) != 4:
        raise FormatError(src, where, f"expected 4 numbers, got {len(bbox)}")
    x, y, w, h = (num(v, src, where, "bbox") for v in bbox)
    if w < 0 or h < 0:
        raise FormatError(src, where, f"negative width or height ({w:g}, {h:g})")
    return x, y, w, h


def _bbox_region(
    s: ImportSession, src: Path, where: str, bbox: object, rec: ImageRecord
) -> np.ndarray:
    x, y, w, h = _bbox(src, where, bbox)
    corners = np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h]], np.float64)
    return rasterize_polygon(s.clip_points(rec, corners, src, where), rec.height, rec.width)


def _segmentation(
    s: ImportSession, src: Path, where: str, seg: object, rec: ImageRecord
) -> tuple[np.ndarray, list[OutlinePart] | None]:
    """The pixels of a segmentation and, for polygons, the outline they come from."""
    h, w = rec.height, rec.width
    if isinstance(seg, list):
        region = np.zeros((h, w), bool)
        outline = []
        for j, poly in enumerate(seg):
            pw = f"{where}[{j}]"
            poly = as_list(poly, src, pw, "polygon")
            if len(poly) < 6 or len(poly) % 2:
                raise FormatError(
                    src, pw, f"a polygon needs an even number ≥ 6 of coordinates, got {len(poly)}"
                )
            pts = np.array([num(v, src, pw, "coordinate") for v in poly]).reshape(-1, 2)
            pts = s.clip_points(rec, pts, src, pw)
            region |= rasterize_polygon(pts, h, w)
            outline.append(OutlinePart("polygon", tuple(float(v) for v in pts.ravel())))
        return region, outline
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
    return rle_decode(counts, h, w), None


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
    n_tags = n_stuff = n_ignore = 0

    def add(ann: dict[str, Any]) -> None:
        anns.append({"id": len(anns) + 1, **ann})

    for n_img, rec in enumerate(records, 1):
        image: dict[str, Any] = {
            "id": n_img, "file_name": names[rec.id], "width": rec.width, "height": rec.height
        }  # fmt: skip
        if rec.domain is not None:
            image["domain"] = rec.domain
        images.append(image)
        a = project.annotations(rec.id)
        image_ext: dict[str, Any] = {}
        if a.tags:
            image_ext["tags"] = [class_cat[cid] for cid in a.tags]
            n_tags += len(a.tags)
        if a.ignore is not None:
            image_ext["ignore"] = _rle(a.ignore)
            n_ignore += 1
        if image_ext:
            image["tlstudio"] = image_ext
        boxes = list(a.boxes)
        objects = [] if a.instances is None else list(a.instances.objects)
        linked = {o.box_id for o in objects if o.box_id is not None}
        box_by_id = {b.id: b for b in boxes}
        free = [b for b in boxes if b.id not in linked]
        kp_anns = []
        for lms in a.landmarks:
            kp_anns.append(_keypoint_ann(n_img, lms, kp_cat[(lms.class_id, lms.template_id)], free))
        for b in free:
            add({"image_id": n_img, "category_id": class_cat[b.class_id], **_bbox_fields(b)})
        for ann in kp_anns:
            add(ann)
        for o in objects:
            assert a.instances is not None
            region = a.instances.region(o.number)
            fields: dict[str, Any] = {"image_id": n_img, "category_id": class_cat[o.class_id]}
            if (
                o.outline is not None
                and all(part.kind == "polygon" for part in o.outline)
                and outline_is_intact(o.outline, region)
            ):
                fields["segmentation"] = [list(part.coords) for part in o.outline]
            else:
                fields["segmentation"] = _rle(region)
            fields["area"] = int(region.sum())
            box = box_by_id.get(o.box_id) if o.box_id is not None else None
            if box is not None:
                fields["bbox"] = _bbox_fields(box)["bbox"]
            else:
                x1, y1, x2, y2 = bbox_of_mask(region)
                fields["bbox"] = [x1, y1, x2 - x1, y2 - y1]
            fields["iscrowd"] = int(o.iscrowd)
            if box is None:
                fields["tlstudio"] = {"box": False}
            add(fields)
        stuff = a.mask
        if stuff is not None and a.instances is not None:
            stuff = np.where(a.instances.map > 0, 0, stuff)
        if stuff is not None and stuff.any():
            for cid in sorted(set(np.unique(stuff).tolist()) - {0}):
                region = stuff == cid
                x1, y1, x2, y2 = bbox_of_mask(region)
                add({
                    "image_id": n_img, "category_id": class_cat[cid], "segmentation": _rle(region),
                    "area": int(region.sum()), "bbox": [x1, y1, x2 - x1, y2 - y1], "iscrowd": 0,
                    "tlstudio": {"box": False, "stuff": True},
                })  # fmt: skip
                n_stuff += 1

    doc = {
        "info": {"description": "exported by tlstudio", "version": "1.0"},
        "licenses": [],
        "images": images,
        "annotations": anns,
        "categories": categories,
    }
    write_text_atomic(json_path, json.dumps(doc, indent=1))
    if n_tags:
        note(warnings, f"COCO: {n_tags} image-level tags written as images[].tlstudio.tags, a "
             "tlstudio extension (COCO has no image-level labels; other COCO tools ignore it)")  # fmt: skip
    if n_ignore:
        note(warnings, f"COCO: ignore regions of {n_ignore} images written as "
             "images[].tlstudio.ignore, a tlstudio extension other COCO tools ignore")  # fmt: skip
    if n_stuff:
        note(warnings, f"COCO: {n_stuff} label-map regions without objects written as one "
             "annotation per class and image (tlstudio reads them back as such; other tools "
             "see each as one object)")  # fmt: skip
    return json_path


def _rle(region: np.ndarray) -> dict[str, Any]:
    return {"size": [int(region.shape[0]), int(region.shape[1])],
            "counts": counts_to_string(rle_encode(region))}  # fmt: skip


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
