"""YOLO (Ultralytics) datasets: detect, pose and segment.

Layout: ``data.yaml`` (``names`` as a list or an {index: name} mapping; for pose
``kpt_shape: [K, 2|3]`` and ``flip_idx``), ``images/`` and ``labels/`` with
optional ``train/``, ``val/``, ``test/`` subfolders; the label file of
``.../images/<sub>/x.jpg`` is ``.../labels/<sub>/x.txt`` (last ``images``
component replaced). A folder with ``classes.txt`` and label files next to the
images (labelImg) is read too.

Label lines, all coordinates normalised by the image width/height (0..1, origin
at the top-left corner of the image, so x_px = x · W):

* detect: ``cls cx cy w h``
* pose: ``cls cx cy w h x1 y1 [v1] ... xK yK [vK]`` (v = 0/1/2; with
  ``kpt_shape [K, 2]`` a point at (0, 0) is unlabelled, others visible). Each
  line gives a box and, unless all its points have v = 0, a landmark set of
  that class. The template is named ``yolo pose`` with points ``p0..pK-1``
  unless ``kpt_names`` or the ``tlstudio`` extension key (``template``,
  ``points``, ``skeleton``) name them; ``flip_idx`` gives the left/right pairs.
* segment: ``cls x1 y1 x2 y2 ...`` (≥ 3 points): one object per line. Classes named
  ``__ignore__`` / ``_background_`` give ignore regions / background, not classes.

Export ``kind`` = ``detect`` | ``pose`` | ``segment``. Segment export writes one line
per object: the polygon it was imported from while it still gives exactly its pixels,
else its outer contour traced and simplified to within 1 % of its pixels (the parts of
an object in several pieces joined by zero-width bridges, as Ultralytics' converters
do; holes are lost and counted in a warning); pixels of no object one line per contour
and class. Pose export writes a box for a landmark set without one (the box around its
points). The ``tlstudio`` key of ``data.yaml`` marks the lines tlstudio must read
differently from other tools: ``lines: {<label file relative to the dataset>:
{pose_box: [n, ...], no_object: [n, ...]}}`` (1-based line numbers): the box of a
``pose_box`` line is only its landmark set's box (no detection box is made), the
polygon of a ``no_object`` line is label-map pixels of no object. Splits become
``images/<split>/`` folders (images without a split go to ``train``); import does not
read splits.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ..annotations import SKIPPED, Box, InstanceLayer, LandmarkSet, OutlinePart, Point
from ..atomic import write_text_atomic
from ..errors import FormatError, ValidationError
from ..labelset import LandmarkTemplate
from ..project import ImageRecord, Project
from . import label_format
from ._common import (
    ImportSession,
    as_int,
    as_list,
    as_str,
    count_holes,
    export_names,
    export_template,
    import_session,
    is_file,
    label_role,
    mask_polygons,
    note,
    outline_is_intact,
    parse_float,
    place_image,
    rasterize_polygon,
    read_text,
    skipped_kinds,
    type_name,
)
from .report import LabelImportReport

KINDS = label_format("yolo").export_kinds
DEFAULT_TEMPLATE = "yolo pose"
_YAML_NAMES = ("data.yaml", "dataset.yaml", "data.yml", "dataset.yml")


# -- configuration ----------------------------------------------------------------------


class _Config:
    def __init__(self) -> None:
        self.root: Path = Path()
        self.source: Path = Path()  # the yaml (or classes.txt)
        self.data: dict[str, Any] = {}
        self.names: dict[int, str] = {}
        self.kpt: tuple[int, int] | None = None
        self.flip_idx: list[int] | None = None


def find_config(path: Path) -> Path | None:
    """The dataset yaml (or labelImg ``classes.txt``) for a file or folder, if any."""
    if path.is_file():
        return path
    for name in _YAML_NAMES:
        if is_file(path / name):
            return path / name
    for p in sorted(path.glob("*.y*ml")):
        try:
            data = yaml.safe_load(p.read_text("utf-8"))
        except (OSError, ValueError, yaml.YAMLError, RecursionError):
            continue
        if isinstance(data, dict) and "names" in data:
            return p
    for p in (path / "classes.txt", path / "labels" / "classes.txt"):
        if is_file(p):
            return p
    return None


def _load_config(path: Path) -> _Config:
    cfg = _Config()
    source = find_config(path)
    if source is None:
        raise FormatError(path, "", "no data.yaml (nor classes.txt): not a YOLO dataset")
    cfg.source = source
    cfg.root = source.parent
    if source.name == "classes.txt":
        if cfg.root.name == "labels":
            cfg.root = cfg.root.parent
        lines = [ln.strip() for ln in read_text(source).splitlines()]
        cfg.names = {i: n for i, n in enumerate(ln for ln in lines if ln)}
        return cfg
    try:
        data = yaml.safe_load(read_text(source))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else ""
        raise FormatError(
            source, where, f"not valid YAML: {getattr(exc, 'problem', exc)}"
        ) from None
    except (ValueError, RecursionError) as exc:
        raise FormatError(source, "", f"not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise FormatError(source, "", f"expected a mapping, got {type_name(data)}")
    cfg.data = data
    names = data.get("names")
    if isinstance(names, list):
        cfg.names = {i: _name(n, source, f"names[{i}]") for i, n in enumerate(names)}
    elif isinstance(names, dict):
        for k, n in names.items():
            try:
                i = int(k)
            except (TypeError, ValueError, OverflowError):
                raise FormatError(source, "names", f"class index {k!r} is not an integer") from None
            if i < 0:
                raise FormatError(source, "names", f"class index {i} is negative")
            cfg.names[i] = _name(n, source, f"names[{i}]")
    elif names is None and "nc" in data:
        nc = as_int(data["nc"], source, "nc", "nc")
        if not 0 <= nc <= 100000:
            raise FormatError(source, "nc", f"{nc} classes is not a plausible count")
        cfg.names = {i: str(i) for i in range(nc)}
    else:
        raise FormatError(
            source, "names", f"expected a list or mapping of class names, got {type_name(names)}"
        )
    if "nc" in data and data["nc"] is not None:
        nc = as_int(data["nc"], source, "nc", "nc")
        if nc != len(cfg.names):
            raise FormatError(source, "nc", f"nc is {nc} but {len(cfg.names)} names are given")
    if data.get("kpt_shape") is not None:
        shape = as_list(data["kpt_shape"], source, "kpt_shape")
        if len(shape) != 2:
            raise FormatError(
                source, "kpt_shape", f"expected [points, 2 or 3], got {len(shape)} numbers"
            )
        k, dim = (as_int(v, source, "kpt_shape") for v in shape)
        if not 1 <= k <= 10000 or dim not in (2, 3):
            raise FormatError(source, "kpt_shape", f"[{k}, {dim}] is not [points ≥ 1, 2 or 3]")
        cfg.kpt = (k, dim)
        if data.get("flip_idx") is not None:
            flip = [
                as_int(v, source, "flip_idx") for v in as_list(data["flip_idx"], source, "flip_idx")
            ]
            if (
                len(flip) != k
                or sorted(flip) != list(range(k))
                or any(flip[flip[i]] != i for i in range(k))
            ):
                raise FormatError(
                    source,
                    "flip_idx",
                    f"must swap pairs among the {k} points (a self-inverse permutation)",
                )
            cfg.flip_idx = flip
    return cfg


def _name(n: object, src: Path, where: str) -> str:
    if isinstance(n, bool) or not isinstance(n, (str, int, float)):
        raise FormatError(src, where, f"class name: expected a string, got {type_name(n)}")
    return str(n)


def _template(s: ImportSession, cfg: _Config) -> LandmarkTemplate:
    assert cfg.kpt is not None
    k = cfg.kpt[0]
    src, data = cfg.source, cfg.data
    ext = data.get("tlstudio") or {}
    if not isinstance(ext, dict):
        raise FormatError(src, "tlstudio", f"expected a mapping, got {type_name(ext)}")
    points: list[str] = [f"p{i}" for i in range(k)]
    kpt_names = data.get("kpt_names")
    if isinstance(kpt_names, dict):
        kpt_names = next(iter(kpt_names.values()), None)
    if kpt_names is not None:
        lst = as_list(kpt_names, src, "kpt_names")
        if len(lst) == k:
            points = [_name(n, src, "kpt_names") for n in lst]
    if ext.get("points") is not None:
        lst = as_list(ext["points"], src, "tlstudio.points")
        if len(lst) != k:
            raise FormatError(src, "tlstudio.points", f"expected {k} point names, got {len(lst)}")
        points = [as_str(n, src, "tlstudio.points", "point name") for n in lst]
    skeleton = []
    for j, e in enumerate(as_list(ext.get("skeleton") or [], src, "tlstudio.skeleton")):
        e = as_list(e, src, f"tlstudio.skeleton[{j}]")
        if len(e) != 2:
            raise FormatError(src, f"tlstudio.skeleton[{j}]", "expected 2 point indices")
        a, b = (as_int(v, src, f"tlstudio.skeleton[{j}]") for v in e)
        skeleton.append((a, b))
    flips = tuple((i, j) for i, j in enumerate(cfg.flip_idx or []) if i < j)
    name = ext.get("template", DEFAULT_TEMPLATE)
    name = as_str(name, src, "tlstudio.template", "template")
    try:
        t = LandmarkTemplate(name, tuple(points), tuple(skeleton), flips)
    except ValidationError as exc:
        raise FormatError(src, "tlstudio", str(exc)) from None
    return s.template(t, src, "kpt_shape", rename="template" not in ext)


def _image_dirs(cfg: _Config) -> list[Path]:
    base = cfg.root
    given = cfg.data.get("path")
    if isinstance(given, str) and given:
        p = Path(given)
        p = p if p.is_absolute() else cfg.root / p
        if p.is_dir():
            base = p
    dirs: list[Path] = []
    root = cfg.root.resolve()
    for key in ("train", "val", "test"):
        v = cfg.data.get(key)
        for entry in v if isinstance(v, list) else [v]:
            if isinstance(entry, str) and entry and "\x00" not in entry:
                p = Path(entry)
                for cand in [p] if p.is_absolute() else [base / p, cfg.root / p]:
                    # only folders inside the dataset: a yaml must not send us across the disk
                    if cand.is_dir() and cand.resolve().is_relative_to(root):
                        dirs.append(cand.resolve())
                        break
    if not dirs:
        dirs = [p.resolve() for p in sorted(cfg.root.rglob("images")) if p.is_dir()]
    if not dirs and cfg.source.name == "classes.txt":
        dirs = [cfg.root.resolve()]
    # drop duplicates and folders nested in another
    unique: list[Path] = []
    for d in sorted(set(dirs)):
        if not any(d.is_relative_to(u) for u in unique):
            unique.append(d)
    if not unique:
        raise FormatError(cfg.root, "", "no images/ folder found")
    return unique


def label_path(image: Path, root: Path | None = None) -> Path:
    """The label file of an image: last ``images`` folder (below ``root``, if given) →
    ``labels``, suffix ``.txt``; without such a folder the ``.txt`` beside the image."""
    parts = list(image.parts)
    first = len(root.parts) if root is not None and image.is_relative_to(root) else 0
    for i in range(len(parts) - 2, first - 1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            return Path(*parts).with_suffix(".txt")
    return image.with_suffix(".txt")


# -- import -------------------------------------------------------------------------------


def import_(project: Project, path: str | Path, copy_images: bool = False) -> LabelImportReport:
    """Import a YOLO dataset (its folder or its data.yaml). Every image under the image
    folders is added (images without a label file are background); a label file without
    an image is an error."""
    from .. import imageio

    cfg = _load_config(Path(path))
    dirs = _image_dirs(cfg)
    with import_session(project, copy_images) as s:
        marks = _line_marks(cfg)
        files = []
        for d in dirs:
            files += sorted(p for p in d.rglob("*") if p.is_file() and imageio.is_image_file(p))
        files = list(dict.fromkeys(files))
        # images first: they are checked and copied before the transaction begins
        records = s.images([(f, f, "") for f in files])
        class_ids: dict[int, int | None] = {
            i: None if label_role(n) else s.class_id(n, cfg.source, f"names[{i}]")
            for i, n in sorted(cfg.names.items())
        }
        template = _template(s, cfg) if cfg.kpt else None
        used_labels: set[Path] = set()
        root = cfg.root.resolve()
        for img, rec in zip(files, records, strict=True):
            lbl = label_path(img, root)
            if lbl in used_labels:
                raise FormatError(lbl, "", f"label file shared by two images ({img.name})")
            if is_file(lbl):
                used_labels.add(lbl)
                rel = _relative(lbl, root)
                _read_labels(s, lbl, rec, cfg, class_ids, template, marks.get(rel, {}))
        for d in dirs:
            ld = label_path(d / "x", root).parent
            if ld == d or not ld.is_dir():
                continue
            for lbl in sorted(ld.rglob("*.txt")):
                if lbl.name != "classes.txt" and lbl not in used_labels:
                    raise FormatError(lbl, "", f"no image for this label file in {d}")
    return s.report


def _relative(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def _line_marks(cfg: _Config) -> dict[str, dict[str, set[int]]]:
    """``tlstudio.lines`` of data.yaml: label file -> {mark: 1-based line numbers}."""
    ext = cfg.data.get("tlstudio") or {}
    lines = ext.get("lines") if isinstance(ext, dict) else None
    if lines is None:
        return {}
    if not isinstance(lines, dict):
        raise FormatError(
            cfg.source, "tlstudio.lines", f"expected a mapping, got {type_name(lines)}"
        )
    out: dict[str, dict[str, set[int]]] = {}
    for rel, marks in lines.items():
        where = f"tlstudio.lines.{rel}"
        if not isinstance(marks, dict):
            raise FormatError(cfg.source, where, f"expected a mapping, got {type_name(marks)}")
        out[str(rel)] = {
            str(k): {
                as_int(n, cfg.source, where, "line number") for n in as_list(v, cfg.source, where)
            }
            for k, v in marks.items()
        }
    return out


def _read_labels(s: ImportSession, lbl: Path, rec: ImageRecord, cfg: _Config,
                 class_ids: dict[int, int | None], template: LandmarkTemplate | None,
                 marks: dict[str, set[int]]) -> None:  # fmt: skip
    w, h = rec.width, rec.height
    hi = max(class_ids, default=-1)
    pose_box, no_object = marks.get("pose_box", set()), marks.get("no_object", set())
    for ln, line in enumerate(read_text(lbl).splitlines(), 1):
        tokens = line.split()
        if not tokens:
            continue
        where = f"line {ln}"
        c = parse_float(tokens[0], lbl, where, "class index")
        if c != int(c):
            raise FormatError(lbl, where, f"class index {tokens[0][:20]} is not an integer")
        if int(c) not in class_ids:
            rng = f"0..{hi}" if hi >= 0 else "(no classes)"
            raise FormatError(lbl, where, f"class index {tokens[0][:20]} out of range {rng}")
        name = cfg.names[int(c)]
        cid = class_ids[int(c)]
        vals = [parse_float(t, lbl, where, "coordinate") for t in tokens[1:]]
        if cid is None:  # __ignore__ / _background_: a region
            if len(vals) == 4 or (cfg.kpt is not None and len(vals) > 4):
                x1, y1, x2, y2 = _xyxy(vals[:4], rec)
                pts = np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], np.float64)
            elif len(vals) >= 6 and len(vals) % 2 == 0:
                pts = np.array(vals, np.float64).reshape(-1, 2) * (w, h)
            else:
                raise FormatError(lbl, where, f"{name} needs a box or a polygon")
            pts = s.clip_points(rec, pts, lbl, where, scale=(w, h))
            s.region(rec, name, rasterize_polygon(pts, h, w), lbl, where)
            continue
        if cfg.kpt is not None:
            k, dim = cfg.kpt
            if len(vals) != 4 + k * dim:
                raise FormatError(
                    lbl, where,
                    f"expected {4 + k * dim} numbers after the class index (box + {k} points × {dim}), got {len(vals)}",
                )  # fmt: skip
            if ln not in pose_box:
                _box(s, lbl, where, rec, cid, vals[:4])
            points = []
            for j in range(k):
                x, y = vals[4 + j * dim], vals[5 + j * dim]
                if dim == 3:
                    v = vals[6 + j * dim]
                    if v not in (0, 1, 2):
                        raise FormatError(
                            lbl, where, f"point {j}: visibility {v:g} must be 0, 1 or 2"
                        )
                    v = int(v)
                else:
                    v = 0 if x == 0 and y == 0 else 2
                points.append(s.point(rec, x * w, y * h, v, lbl, f"{where}, point {j}"))
            if template is not None and any(p.visibility != SKIPPED for p in points):
                s.landmarks(rec, template, points, cid, lbl, where)
        elif len(vals) == 4:
            _box(s, lbl, where, rec, cid, vals)
        elif len(vals) >= 6 and len(vals) % 2 == 0:
            pts = np.array(vals, np.float64).reshape(-1, 2) * (w, h)
            pts = s.clip_points(rec, pts, lbl, where, scale=(w, h))
            region = rasterize_polygon(pts, h, w)
            if ln in no_object:
                s.paint(rec, cid, region, lbl, where)
            else:
                outline = [OutlinePart("polygon", tuple(float(v) for v in pts.ravel()))]
                s.instance(rec, cid, region, lbl, where, outline=outline)
        else:
            raise FormatError(
                lbl, where,
                f"expected 4 numbers (box) or an even number ≥ 6 (polygon) after the class index, got {len(vals)}",
            )  # fmt: skip


def _xyxy(vals: list[float], rec: ImageRecord) -> tuple[float, float, float, float]:
    cx, cy, bw, bh = vals
    w, h = rec.width, rec.height
    return (cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h


def _box(
    s: ImportSession, lbl: Path, where: str, rec: ImageRecord, cid: int, vals: list[float]
) -> None:
    if vals[2] < 0 or vals[3] < 0:
        raise FormatError(lbl, where, f"negative box size ({vals[2]:g}, {vals[3]:g})")
    s.box(rec, cid, _xyxy(vals, rec), lbl, where)


# -- export -------------------------------------------------------------------------------


def _f(v: float) -> str:
    return f"{v:.10g}"


def export(project: Project, out: str | Path, *, kind: str = "detect", template: str | None = None,
           warnings: list[str] | None = None) -> Path:  # fmt: skip
    """Write a YOLO dataset into folder ``out`` (images hard-linked or copied into
    ``images/``, labels in ``labels/``, ``data.yaml``); returns the data.yaml path.

    ``kind``: ``detect`` (boxes), ``pose`` (landmark sets of one template — ``template``
    names it when the project uses several — each with the enclosing box of its class,
    else the box around its labelled points; boxes without landmarks get unlabelled
    points) or ``segment`` (mask contours)."""
    if kind not in KINDS:
        raise ValueError(f"YOLO kind must be one of {', '.join(KINDS)}, got {kind!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    classes = project.classes()
    index = {c.id: i for i, c in enumerate(classes)}
    names = [c.name for c in classes]
    tpl: LandmarkTemplate | None = None
    if kind == "pose":
        tpl = export_template(project, template, "YOLO pose")
    records = project.images()
    file_names = export_names(records)
    split_dirs = any(r.split for r in records)
    used_splits: set[str] = set()
    marks: dict[str, dict[str, list[int]]] = {}
    holes = [0]
    for rec in records:
        sub = (rec.split or "train") if split_dirs else ""
        used_splits.add(sub)
        img_dest = out / "images" / sub / file_names[rec.id]
        place_image(project, rec, img_dest)
        ann = project.annotations(rec.id)
        mark: dict[str, list[int]] = {}
        if kind == "detect":
            lines = [_box_line(index[b.class_id], b, rec) for b in ann.boxes]
        elif kind == "segment":
            lines = _segment_lines(ann.mask, ann.instances, index, rec, mark, holes)
        else:
            assert tpl is not None
            lines = _pose_lines(ann.boxes, ann.landmarks, tpl, index, names, rec, warnings, mark)
        lbl = label_path(img_dest)
        lbl.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(lbl, "".join(line + "\n" for line in lines), sync=False)
        if mark:
            marks[lbl.relative_to(out).as_posix()] = mark

    data: dict[str, Any] = {}
    if split_dirs:
        for key in ("train", "val", "test"):
            if key in used_splits:
                data[key] = f"images/{key}"
        data.setdefault("val", data.get("train", "images/train"))
        data.setdefault("train", data["val"])
    else:
        data["train"] = data["val"] = "images"
    data["nc"] = len(names)
    data["names"] = dict(enumerate(names))
    if tpl is not None:
        data["kpt_shape"] = [len(tpl.points), 3]
        data["flip_idx"] = tpl.flip_permutation()
        data["kpt_names"] = {0: list(tpl.points)}
        data["tlstudio"] = {"template": tpl.name, "points": list(tpl.points),
                            "skeleton": [list(e) for e in tpl.skeleton]}  # fmt: skip
    if marks:
        data.setdefault("tlstudio", {})["lines"] = marks
    yaml_path = out / "data.yaml"
    write_text_atomic(
        yaml_path,
        "# YOLO dataset exported by tlstudio\n"
        + yaml.safe_dump(data, sort_keys=False, allow_unicode=True),
    )
    skipped = {"detect": ("tags", "landmarks", "masks"), "segment": ("tags", "boxes", "landmarks"),
               "pose": ("tags", "masks")}[kind]  # fmt: skip
    skipped_kinds(project, skipped, f"YOLO {kind}", warnings)
    if holes[0]:
        note(
            warnings,
            f"YOLO segment: {holes[0]} holes in masks were filled (polygons cannot hold them)",
        )
    return yaml_path


def _box_line(cls: int, b: Box, rec: ImageRecord) -> str:
    w, h = rec.width, rec.height
    cx, cy = (b.x1 + b.x2) / 2 / w, (b.y1 + b.y2) / 2 / h
    return f"{cls} {_f(cx)} {_f(cy)} {_f((b.x2 - b.x1) / w)} {_f((b.y2 - b.y1) / h)}"


def _segment_lines(mask: np.ndarray | None, layer: InstanceLayer | None, index: dict[int, int],
                   rec: ImageRecord, mark: dict[str, list[int]], holes: list[int]) -> list[str]:  # fmt: skip
    """One line per object, then one per contour and class of the pixels of no object
    (marked ``no_object``)."""
    if mask is None:
        return []

    def line(cid: int, poly: np.ndarray) -> str:
        coords = " ".join(f"{_f(x / rec.width)} {_f(y / rec.height)}" for x, y in poly)
        return f"{index[cid]} {coords}"

    lines = []
    stuff = mask
    if layer is not None:
        stuff = np.where(layer.map > 0, 0, mask)
        for obj in layer.objects:
            region = layer.region(obj.number)
            if (
                obj.outline is not None
                and len(obj.outline) == 1
                and obj.outline[0].kind == "polygon"
                and outline_is_intact(obj.outline, region)
            ):
                poly = np.asarray(obj.outline[0].coords, np.float64).reshape(-1, 2)
            else:
                holes[0] += count_holes(region)
                poly = join_polygons(mask_polygons(region))
            lines.append(line(obj.class_id, poly))
    for cid in sorted(set(np.unique(stuff).tolist()) - {0}):
        region = stuff == cid
        holes[0] += count_holes(region)
        for poly in mask_polygons(region):
            lines.append(line(cid, poly))
            mark.setdefault("no_object", []).append(len(lines))
    return lines


def join_polygons(polys: list[np.ndarray]) -> np.ndarray:
    """One polygon covering several: each next polygon is joined by a zero-width bridge
    from its vertex nearest to the polygon so far (filled with the even-odd rule, the
    bridges cover nothing)."""
    out = polys[0]
    for nxt in polys[1:]:
        d = ((out[:, None, :] - nxt[None, :, :]) ** 2).sum(axis=2)
        i, j = np.unravel_index(int(np.argmin(d)), d.shape)
        out = np.concatenate([out[: i + 1], nxt[j:], nxt[: j + 1], out[i:]])
    return out


def _pose_lines(boxes: tuple[Box, ...], sets: tuple[LandmarkSet, ...], tpl: LandmarkTemplate,
                index: dict[int, int], names: list[str], rec: ImageRecord,
                warnings: list[str] | None, mark: dict[str, list[int]]) -> list[str]:  # fmt: skip
    """One line per landmark set (with the box of its class enclosing its points, else
    the box around its points, marked ``pose_box``), then one per remaining box."""
    free = list(boxes)
    lines: list[str] = []
    k = len(tpl.points)
    for lms in sets:
        if lms.template_id != tpl.id:
            note(warnings, f"YOLO pose: {rec.path}: a landmark set of another template was skipped")
            continue
        labelled = [p for p in lms.points if p.visibility != SKIPPED]
        box = None
        for i, b in enumerate(free):
            if (lms.class_id is None or b.class_id == lms.class_id) and all(
                b.x1 <= p.x <= b.x2 and b.y1 <= p.y <= b.y2 for p in labelled
            ):
                box = free.pop(i)
                break
        cls_id = lms.class_id if lms.class_id is not None else (box.class_id if box else None)
        if cls_id is None:
            if tpl.name not in names:
                names.append(tpl.name)
            cls = names.index(tpl.name)
        else:
            cls = index[cls_id]
        if box is None:
            if not labelled:
                continue
            box = _points_box(labelled, rec, cls_id or 0)
            mark.setdefault("pose_box", []).append(len(lines) + 1)
        lines.append(_box_line(cls, box, rec) + _kp_text(lms.points, rec))
    zeros = " 0 0 0" * k
    lines += [_box_line(index[b.class_id], b, rec) + zeros for b in free]
    return lines


def _points_box(points: list[Point], rec: ImageRecord, cls: int) -> Box:
    """Box around points, at least 1 px wide and high (kept inside the image)."""
    xs, ys = [p.x for p in points], [p.y for p in points]
    x1, x2 = _widen(min(xs), max(xs), rec.width)
    y1, y2 = _widen(min(ys), max(ys), rec.height)
    return Box(cls, x1, y1, x2, y2)


def _widen(lo: float, hi: float, size: int) -> tuple[float, float]:
    if hi - lo >= 1:
        return lo, hi
    c = min(max((lo + hi) / 2, 0.5), size - 0.5)
    return max(0.0, min(lo, c - 0.5)), min(float(size), max(hi, c + 0.5))


def _kp_text(points: tuple[Point, ...], rec: ImageRecord) -> str:
    parts = []
    for p in points:
        if p.visibility == SKIPPED:
            parts.append(" 0 0 0")
        else:
            parts.append(f" {_f(p.x / rec.width)} {_f(p.y / rec.height)} {p.visibility}")
    return "".join(parts)
