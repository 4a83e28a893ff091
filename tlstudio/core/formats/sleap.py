"""SLEAP labels (``.slp``, HDF5, read and written with h5py as SLEAP's own
``LabelsV1Adaptor`` and sleap-io lay it out).

Layout: the ``metadata`` group's ``json`` attribute holds the skeletons (networkx
node-link graphs whose node ids index the global ``nodes`` list; link type 1 = edge,
2 = symmetry) and ``format_id``; ``videos_json`` one JSON per video; ``frames``,
``instances`` and ``points`` (``pred_points`` for predictions) are structured arrays
chained by index ranges.

Coordinates: from ``format_id`` 1.1 on, SLEAP puts pixel centres on integers (the image
spans [−0.5, W − 0.5]); tlstudio's frame is pixel edges, so x_tlstudio = x + 0.5
(files before 1.1 used pixel edges already).

Import: each skeleton becomes a landmark template (its name; edges = skeleton,
symmetries = left/right pairs); each user instance of a labelled frame a landmark set
(NaN points unlabelled, ``visible`` false = occluded). Predicted instances are not
labels and are skipped (a warning counts them); tracks (identities across frames) are
not kept. Frames come from the videos: single images (``filenames``; a path that does
not exist is looked for by name beside the ``.slp``, as SLEAP does), frames embedded in
the file (``.pkg.slp``) or a video file (read with OpenCV), the last two written into
the project's ``images/`` folder as PNG.

Export: ``out/labels.slp`` (format 1.2) with one single-image video per labelled image
(absolute path of its hard link or copy beside the file, as SLEAP stores them), one
skeleton per template and the landmark sets as user instances; classes, tags, boxes and
masks are not written (a warning counts them).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..annotations import OCCLUDED, SKIPPED, VISIBLE, Point
from ..errors import FormatError, ValidationError
from ..labelset import LandmarkTemplate
from ..project import Project
from ._common import (
    ImportSession,
    export_names,
    import_session,
    is_file,
    note,
    place_image,
    skipped_kinds,
)
from .report import LabelImportReport

FORMAT_ID = 1.2
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
EDGE, SYMMETRY = 1, 2
EXPORT_NAME = "labels.slp"

POINT_DTYPE = np.dtype([("x", "<f8"), ("y", "<f8"), ("visible", "?"), ("complete", "?")])
PRED_POINT_DTYPE = np.dtype(
    [("x", "<f8"), ("y", "<f8"), ("visible", "?"), ("complete", "?"), ("score", "<f8")]
)
INSTANCE_DTYPE = np.dtype([
    ("instance_id", "<i8"), ("instance_type", "u1"), ("frame_id", "<u8"), ("skeleton", "<u4"),
    ("track", "<i4"), ("from_predicted", "<i8"), ("score", "<f4"), ("point_id_start", "<u8"),
    ("point_id_end", "<u8"), ("tracking_score", "<f4"),
])  # fmt: skip
FRAME_DTYPE = np.dtype([
    ("frame_id", "<u8"), ("video", "<u4"), ("frame_idx", "<u8"),
    ("instance_id_start", "<u8"), ("instance_id_end", "<u8"),
])  # fmt: skip


def looks_like_slp(path: Path) -> bool:
    """True for an HDF5 file (by its signature)."""
    try:
        with open(path, "rb") as f:
            return f.read(8) == HDF5_SIGNATURE
    except OSError:
        return False


def find_slp(path: Path) -> Path:
    """The ``.slp`` file itself, or the only one in the folder."""
    if path.is_file():
        return path
    found = sorted(p for p in path.glob("*.slp") if p.is_file()) if path.is_dir() else []
    if len(found) != 1:
        raise FormatError(path, "", f"expected one .slp file here, found {len(found)}")
    return found[0]


# -- reading --------------------------------------------------------------------------------


@dataclass
class _Skeleton:
    name: str
    nodes: list[str]
    edges: list[tuple[int, int]]
    symmetries: list[tuple[int, int]]


def _skeletons(src: Path, meta: dict[str, Any]) -> list[_Skeleton]:
    node_names = [str(n["name"]) for n in meta.get("nodes", [])]
    out = []
    for k, skel in enumerate(meta.get("skeletons", [])):
        where = f"metadata.skeletons[{k}]"
        ids = [int(n["id"]["py/id"] - 1 if isinstance(n["id"], dict) else n["id"])
               for n in skel["nodes"]]  # fmt: skip
        try:
            names = [node_names[i] for i in ids]
        except IndexError:
            raise FormatError(src, where, "a node id is not in the nodes list") from None
        registry: dict[int, int] = {}  # jsonpickle object id -> edge type
        edges: list[tuple[int, int]] = []
        syms: list[tuple[int, int]] = []
        for link in skel.get("links", []):
            t = link.get("type", {})
            if "py/reduce" in t:
                kind = int(t["py/reduce"][1]["py/tuple"][0])
                registry[len(registry) + 1] = kind
            else:
                ref = int(t.get("py/id", EDGE))
                kind = registry.get(ref, ref)
            try:
                a, b = ids.index(int(link["source"])), ids.index(int(link["target"]))
            except ValueError:
                raise FormatError(src, where, "a link names a node not in the skeleton") from None
            (edges if kind == EDGE else syms).append((a, b))
        graph = skel.get("graph", {})
        name = str(graph.get("name") or f"Skeleton-{k}")
        out.append(_Skeleton(name, names, edges, syms))
    return out


def _template(s: ImportSession, src: Path, sk: _Skeleton) -> LandmarkTemplate:
    edges = tuple(dict.fromkeys((a, b) for a, b in sk.edges if a != b))
    flips = []
    seen: set[int] = set()
    for a, b in sk.symmetries:  # SLEAP stores each symmetry once (sometimes both ways)
        if a != b and a not in seen and b not in seen:
            flips.append((a, b))
            seen |= {a, b}
    try:
        t = LandmarkTemplate(sk.name, tuple(sk.nodes), edges, tuple(flips))
    except ValidationError as exc:
        raise FormatError(src, "metadata.skeletons", str(exc)) from None
    return s.template(t, src, f"skeleton {sk.name!r}", rename=True)


def import_(project: Project, path: str | Path, copy_images: bool = False) -> LabelImportReport:
    """Import a SLEAP ``.slp`` file (or the only one in a folder)."""
    import h5py  # only here: an optional, heavy import

    src = find_slp(Path(path))
    try:
        f = h5py.File(src, "r")
    except OSError as exc:
        raise FormatError(src, "", f"cannot read HDF5 file ({exc})") from None
    with f, import_session(project, copy_images) as s:
        try:
            _import(s, src, f)
        except (KeyError, ValueError, TypeError, IndexError) as exc:
            raise FormatError(src, "", f"not a SLEAP labels file as expected ({exc!r})") from None
    return s.report


def _import(s: ImportSession, src: Path, f: Any) -> None:
    if "metadata" not in f or "json" not in f["metadata"].attrs:
        raise FormatError(src, "metadata", "no metadata: not a SLEAP labels file")
    meta_raw = f["metadata"].attrs["json"]
    meta = json.loads(meta_raw.decode() if isinstance(meta_raw, bytes) else str(meta_raw))
    format_id = float(f["metadata"].attrs.get("format_id", 1.0))
    shift = 0.5 if format_id >= 1.1 else 0.0
    skeletons = [_template(s, src, sk) for sk in _skeletons(src, meta)]
    videos = [json.loads(v) for v in f["videos_json"][()]] if "videos_json" in f else []
    frames = f["frames"][()]
    instances = f["instances"][()]
    points = f["points"][()]
    predicted = 0
    refs = []
    for i, fr in enumerate(frames):
        v = int(fr["video"])
        if v >= len(videos):
            raise FormatError(src, f"frames[{i}]", f"video {v} is not in videos_json")
        refs.append((_frame_image(s, src, f, videos[v], v, int(fr["frame_idx"])), src,
                     f"frames[{i}] (video {v}, frame {int(fr['frame_idx'])})"))  # fmt: skip
    records = s.images(refs)
    for i, (fr, rec) in enumerate(zip(frames, records, strict=True)):
        where = refs[i][2]
        for inst in instances[int(fr["instance_id_start"]) : int(fr["instance_id_end"])]:
            if int(inst["instance_type"]) != 0:
                predicted += 1
                continue
            k = int(inst["skeleton"])
            if k >= len(skeletons):
                raise FormatError(src, where, f"skeleton {k} is not in the metadata")
            tpl = skeletons[k]
            pts = points[int(inst["point_id_start"]) : int(inst["point_id_end"])]
            if len(pts) != len(tpl.points):
                raise FormatError(src, where, f"{len(pts)} points for skeleton "
                                  f"{tpl.name!r} of {len(tpl.points)} nodes")  # fmt: skip
            out = []
            for p in pts:
                x, y = float(p["x"]), float(p["y"])
                if math.isnan(x) or math.isnan(y):
                    out.append(Point(0.0, 0.0, SKIPPED))
                    continue
                v = VISIBLE if bool(p["visible"]) else OCCLUDED
                out.append(s.point(rec, x + shift, y + shift, v, src, where))
            if any(p.visibility != SKIPPED for p in out):
                s.landmarks(rec, tpl, out, None, src, where)
    if predicted:
        s.warn(src, "", f"{predicted} predicted instances skipped (predictions are not labels)")


def _frame_image(s: ImportSession, src: Path, f: Any, video: dict[str, Any], v: int,
                 frame_idx: int) -> Path:  # fmt: skip
    backend = video.get("backend", video)
    filenames = backend.get("filenames")
    if filenames:
        if frame_idx >= len(filenames):
            raise FormatError(src, f"videos_json[{v}]", f"no file for frame {frame_idx}")
        return _resolve(src, str(filenames[frame_idx]), v)
    filename = str(backend.get("filename", ""))
    dataset = backend.get("dataset") or ""
    if filename == "." or (dataset and dataset in f):
        return _embedded_frame(s, src, f, str(dataset), v, frame_idx)
    return _video_frame(s, src, _resolve(src, filename, v), v, frame_idx)


def _resolve(src: Path, name: str, v: int) -> Path:
    """A file named in the .slp: as written (relative to the .slp's folder), else by its
    name beside the .slp (SLEAP's rule)."""
    posix = name.replace("\\", "/")
    for cand in (Path(posix), src.parent / posix, src.parent / posix.rsplit("/", 1)[-1]):
        if is_file(cand):
            return cand
    raise FormatError(src, f"videos_json[{v}]", f"{name} not found (nor beside the .slp)")


def _embedded_frame(s: ImportSession, src: Path, f: Any, dataset: str, v: int,
                    frame_idx: int) -> Path:  # fmt: skip
    format_id = float(f["metadata"].attrs.get("format_id", 1.0))
    if dataset not in f:
        raise FormatError(src, f"videos_json[{v}]", f"embedded dataset {dataset!r} is missing")
    ds = f[dataset]
    base = dataset.rsplit("/", 1)[0]
    numbers = list(f[f"{base}/frame_numbers"][()]) if f"{base}/frame_numbers" in f else []
    row = numbers.index(frame_idx) if frame_idx in numbers else frame_idx
    if row >= len(ds):
        raise FormatError(src, dataset, f"frame {frame_idx} is not embedded")
    fmt = _attr_text(ds.attrs.get("format", "png"))
    if fmt == "hdf5":  # raw RGB pixels
        img: np.ndarray = np.asarray(ds[row])
        swap = True
    else:
        raw = np.asarray(ds[row]).astype(np.uint8).tobytes()
        decoded = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_UNCHANGED)
        if decoded is None:
            raise FormatError(src, dataset, f"embedded frame {frame_idx} cannot be decoded")
        img = decoded
        # "channel_order" (sleap-io, format 1.4) says how the frame was encoded: "RGB" as it
        # is; "BGR" (and every file before 1.4): SLEAP handed its RGB frames to OpenCV's
        # encoder, so the file holds red and blue swapped
        order = ds.attrs.get("channel_order")
        swap = _attr_text(order) == "BGR" if order is not None else format_id < 1.4
    if swap and img.ndim == 3 and img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", img)  # also drops the padding of fixed-length rows
    data = buf.tobytes()
    if not ok:  # pragma: no cover - cv2 encodes every decoded image
        raise FormatError(src, dataset, f"embedded frame {frame_idx} cannot be stored")
    return s.write_image(f"{src.stem.split('.')[0]}_video{v}_{frame_idx:06d}.png", data)


def _attr_text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _video_frame(s: ImportSession, src: Path, video: Path, v: int, frame_idx: int) -> Path:
    cap = cv2.VideoCapture(str(video))
    try:
        if not cap.isOpened():
            raise FormatError(src, f"videos_json[{v}]", f"cannot open video {video}")
        cap.set(cv2.CAP_PROP_POS_FRAMES, frame_idx)
        ok, img = cap.read()
    finally:
        cap.release()
    if not ok or img is None:
        raise FormatError(src, f"videos_json[{v}]", f"cannot read frame {frame_idx} of {video}")
    ok, buf = cv2.imencode(".png", img)
    return s.write_image(f"{video.stem}_{frame_idx:06d}.png", buf.tobytes())


# -- export ----------------------------------------------------------------------------------


def export(project: Project, out: str | Path, *, warnings: list[str] | None = None) -> Path:
    """Write ``out/labels.slp`` and the labelled images beside it; returns the .slp path."""
    import h5py  # only here: an optional, heavy import

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    slp = out / EXPORT_NAME
    templates = [t for t in project.templates() if _used(project, t)]
    skel_index = {t.id: k for k, t in enumerate(templates)}
    node_names: list[str] = []
    skeletons = []
    for t in templates:
        ids = []
        for name in t.points:
            if name not in node_names:
                node_names.append(name)
            ids.append(node_names.index(name))
        # jsonpickle numbers the EdgeType objects of one skeleton in order of appearance
        refs: dict[int, int] = {}
        links = [_link(ids[a], ids[b], EDGE, refs, i) for i, (a, b) in enumerate(t.skeleton)]
        links += [_link(ids[a], ids[b], SYMMETRY, refs, None) for a, b in t.flip_pairs]
        skeletons.append({
            "directed": True, "graph": {"name": t.name, "num_edges_inserted": len(t.skeleton)},
            "links": links, "multigraph": True, "nodes": [{"id": i} for i in ids],
        })  # fmt: skip
    records = project.images()
    names = export_names(records)
    videos: list[bytes] = []
    frames: list[tuple[int, ...]] = []
    instances: list[tuple[Any, ...]] = []
    points: list[tuple[float, float, bool, bool]] = []
    classed = 0
    for rec in records:
        sets = project.landmark_sets(rec.id)
        if not sets:
            continue
        dest = out / names[rec.id]
        place_image(project, rec, dest)
        path = dest.resolve().as_posix()
        videos.append(json.dumps({"backend": {
            "type": "ImageVideo", "filename": path, "filenames": [path],
            "height_": rec.height, "width_": rec.width, "channels_": rec.channels,
            "shape": [1, rec.height, rec.width, rec.channels], "grayscale": rec.channels == 1,
        }}, separators=(",", ":")).encode())  # fmt: skip
        start = len(instances)
        for ls in sets:
            classed += ls.class_id is not None
            p0 = len(points)
            for p in ls.points:
                if p.visibility == SKIPPED:
                    points.append((math.nan, math.nan, False, False))
                else:
                    points.append(
                        (float(p.x) - 0.5, float(p.y) - 0.5, p.visibility == VISIBLE, True)
                    )
            instances.append((len(instances), 0, len(frames), skel_index[ls.template_id], -1, -1,
                              math.nan, p0, len(points), 0.0))  # fmt: skip
        frames.append((len(frames), len(videos) - 1, 0, start, len(instances)))
    meta = {"version": "2.0.0", "skeletons": skeletons,
            "nodes": [{"name": n, "weight": 1.0} for n in node_names], "videos": [],
            "tracks": [], "suggestions": [], "negative_anchors": {},
            "provenance": {"written_by": "tlstudio"}}  # fmt: skip
    tmp = slp.with_name(slp.name + ".tmp")
    with h5py.File(tmp, "w") as f:
        grp = f.require_group("metadata")
        grp.attrs["format_id"] = FORMAT_ID
        grp.attrs["json"] = np.bytes_(json.dumps(meta, separators=(",", ":")))
        f.create_dataset("videos_json", data=np.array(videos, dtype=None if videos else "S1"),
                         maxshape=(None,))  # fmt: skip
        f.create_dataset("tracks_json", data=np.zeros(0), maxshape=(None,))
        f.create_dataset("suggestions_json", data=np.zeros(0), maxshape=(None,))
        f.create_dataset("frames", data=np.array(frames, FRAME_DTYPE), maxshape=(None,))
        f.create_dataset("instances", data=np.array(instances, INSTANCE_DTYPE), maxshape=(None,))
        f.create_dataset("points", data=np.array(points, POINT_DTYPE), maxshape=(None,))
        f.create_dataset("pred_points", data=np.zeros(0, PRED_POINT_DTYPE), maxshape=(None,))
    tmp.replace(slp)
    if classed:
        note(warnings, f"SLEAP: the classes of {classed} landmark sets were not written")
    skipped_kinds(project, ("tags", "boxes", "masks"), "SLEAP", warnings)
    return slp


def _used(project: Project, t: LandmarkTemplate) -> bool:
    row = project.store.conn.execute(
        "SELECT 1 FROM landmark_sets WHERE template_id = ? LIMIT 1", (t.id,)
    ).fetchone()
    return row is not None


def _link(a: int, b: int, kind: int, refs: dict[int, int], index: int | None) -> dict[str, Any]:
    """A networkx link as SLEAP pickles it: the first link of a type carries the EdgeType
    object (py/reduce), later ones refer to it by its jsonpickle number (``refs``: edge
    type -> number, filled here)."""
    if kind not in refs:
        refs[kind] = len(refs) + 1
        t: dict[str, Any] = {"py/reduce": [{"py/type": "sleap.skeleton.EdgeType"},
                                           {"py/tuple": [kind]}]}  # fmt: skip
    else:
        t = {"py/id": refs[kind]}
    link: dict[str, Any] = {"key": 0, "source": a, "target": b, "type": t}
    if index is not None:
        link["edge_insert_idx"] = index
    return link
