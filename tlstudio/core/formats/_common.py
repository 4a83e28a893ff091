"""Shared machinery of the importers and exporters.

Coordinates follow :mod:`tlstudio.core.annotations`: image pixels, x right,
y down, a W×H image spans [0, W] × [0, H] (pixel (i, j) covers
[j, j+1] × [i, i+1], its centre is (j + 0.5, i + 0.5)).
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from contextvars import ContextVar
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..annotations import SKIPPED, Box, Instance, InstanceLayer, LandmarkSet, OutlinePart, Point
from ..atomic import replacing
from ..errors import FormatError, TlsError, ValidationError, shown_path
from ..files import walk_files
from ..labelset import LandmarkTemplate
from ..project import ImageRecord, Project, check_domain
from .report import LabelImportReport

log = logging.getLogger("tlstudio.core.formats")

# Coordinates up to this far outside the image are moved onto its edge (with a warning
# counting them): annotation tools let points land a little outside (labelme's own
# example has y = 375.77 on a 375 px image). The tolerance is the larger of a few pixels
# and a fraction of a percent of the image side; further out is refused as wrong data.
CLIP_TOLERANCE = 3.0
CLIP_FRACTION = 0.005

# Images whose painted pixel layers an import keeps in memory; older ones are stored
# (within the import's transaction) and read back if a later region needs them.
MAX_PENDING_IMAGES = 32

# Names other tools give regions that are not a class: labelme's ``__ignore__`` (left
# out of training and metrics; labelme2voc writes it as 255) and ``_background_`` (the
# background, value 0 in labelme2voc's maps and category 0 of its labelme2coco output).
IGNORE_NAMES = frozenset({"__ignore__"})
BACKGROUND_NAMES = frozenset({"_background_"})


def label_role(name: object) -> str | None:
    """``"ignore"`` or ``"background"`` for the region names of those conventions, else None."""
    if not isinstance(name, str):
        return None
    key = name.strip()
    if key in IGNORE_NAMES:
        return "ignore"
    if key in BACKGROUND_NAMES:
        return "background"
    return None


# JSON/text numbers larger than this are refused (no image is that large; it also
# keeps int32 rasterisation and SQLite integers safe).
MAX_COORD = 1e7


# -- value checks ---------------------------------------------------------------------


def type_name(v: object) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, (int, float)):
        return "a number"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, list):
        return "a list"
    if isinstance(v, dict):
        return "an object"
    return type(v).__name__


def num(v: object, src: Path, where: str, what: str = "value") -> float:
    """A finite JSON number (bools and strings are refused)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise FormatError(src, where, f"{what}: expected a number, got {type_name(v)}")
    try:
        f = float(v)
    except OverflowError:
        raise FormatError(src, where, f"{what}: number too large") from None
    if not math.isfinite(f):
        raise FormatError(src, where, f"{what}: {f} is not a finite number")
    if abs(f) > MAX_COORD:
        raise FormatError(src, where, f"{what}: {f:g} is out of range")
    return f


def parse_float(token: str, src: Path, where: str, what: str = "value") -> float:
    """A finite number written as text."""
    try:
        f = float(token)
    except (ValueError, OverflowError):
        raise FormatError(src, where, f"{what}: {token[:40]!r} is not a number") from None
    if not math.isfinite(f):
        raise FormatError(src, where, f"{what}: {token[:40]!r} is not a finite number")
    if abs(f) > MAX_COORD:
        raise FormatError(src, where, f"{what}: {f:g} is out of range")
    return f


def as_int(v: object, src: Path, where: str, what: str = "value") -> int:
    """An integer (JSON int, or a float with an integral value)."""
    f = num(v, src, where, what)
    if f != int(f):
        raise FormatError(src, where, f"{what}: expected an integer, got {f:g}")
    return int(f)


def as_str(v: object, src: Path, where: str, what: str = "value") -> str:
    if not isinstance(v, str):
        raise FormatError(src, where, f"{what}: expected a string, got {type_name(v)}")
    return check_text(v, src, where, what)


def check_text(v: str, src: Path, where: str, what: str = "value") -> str:
    """``v`` if it can be stored (UTF-8 encodable, no NUL), else FormatError."""
    try:
        v.encode("utf-8")
    except UnicodeEncodeError:
        raise FormatError(src, where, f"{what}: invalid text (lone surrogate)") from None
    if "\x00" in v:
        raise FormatError(src, where, f"{what}: invalid text (NUL character)")
    return v


def as_list(v: object, src: Path, where: str, what: str = "value") -> list[Any]:
    if not isinstance(v, list):
        raise FormatError(src, where, f"{what}: expected a list, got {type_name(v)}")
    return v


def as_dict(v: object, src: Path, where: str, what: str = "value") -> dict[str, Any]:
    if not isinstance(v, dict):
        raise FormatError(src, where, f"{what}: expected an object, got {type_name(v)}")
    return v


def clip_tolerance(size: float) -> float:
    """How far (px) outside an image side of ``size`` px a coordinate may lie and be clipped."""
    return max(CLIP_TOLERANCE, CLIP_FRACTION * float(size))


def outside_message(what: str, v: float, hi: float) -> str:
    return (
        f"{what} {v:g} lies outside the image (0..{hi:g} px) by more than the "
        f"{clip_tolerance(hi):g} px tolerated"
    )


def read_json(path: Path) -> object:
    """Parse a UTF-8 JSON file (NaN/Infinity literals are refused)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise FormatError(path, "", f"cannot read file ({exc.strerror or exc})") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise FormatError(path, f"byte {exc.start}", "not UTF-8 text") from None

    def _bad_constant(name: str) -> None:
        raise ValueError(f"{name} is not valid JSON")

    try:
        return json.loads(text, parse_constant=_bad_constant)
    except json.JSONDecodeError as exc:
        raise FormatError(path, f"line {exc.lineno}", f"not valid JSON: {exc.msg}") from None
    except (ValueError, RecursionError) as exc:
        raise FormatError(path, "", f"not valid JSON: {exc}") from None


def read_text(path: Path) -> str:
    """A UTF-8 text file (a leading BOM is dropped)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise FormatError(path, "", f"cannot read file ({exc.strerror or exc})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise FormatError(path, f"line {line}", "not UTF-8 text") from None


def is_file(p: Path) -> bool:
    try:
        return p.is_file()
    except (OSError, ValueError):
        return False


def files_under(folder: Path, session: ImportSession) -> list[Path]:
    """Regular files in ``folder`` and below, sorted; each folder that cannot be read is
    skipped with a warning in the session's report."""

    def unreadable(where: Path, reason: str) -> None:
        session.warn(where, "", f"folder cannot be read ({reason}); skipped")

    return walk_files(folder, unreadable)


def find_file(name: str, bases: Sequence[Path], src: Path, where: str) -> Path:
    """The first existing file ``base / name``; ``name`` may be absolute or use ``\\``."""
    if not name or "\x00" in name:
        raise FormatError(src, where, f"invalid image file name {name!r}")
    variants = [name]
    if "\\" in name:
        variants.append(name.replace("\\", "/"))
    tried = []
    for variant in variants:
        p = Path(variant)
        candidates = [p] if p.is_absolute() else [b / p for b in bases]
        if p.is_absolute():
            candidates += [b / p.name for b in bases]
        for c in candidates:
            if is_file(c):
                return c
            tried.append(c)
    shown = ", ".join(str(t) for t in dict.fromkeys(tried))
    raise FormatError(src, where, f"image {name!r} not found (looked for {shown})")


def flip_pairs_from_names(points: Sequence[str]) -> tuple[tuple[int, int], ...]:
    """Left/right pairs inferred from ``left_``/``right_`` name prefixes (also ``-`` or space,
    any case): ``left_eye`` pairs with ``right_eye``."""
    index = {p: i for i, p in enumerate(points)}
    pairs = []
    for i, name in enumerate(points):
        low = name.lower()
        if low.startswith("left") and len(name) > 5 and name[4] in "_- ":
            twin_prefix = {"left": "right", "Left": "Right", "LEFT": "RIGHT"}.get(name[:4], "right")
            j = index.get(twin_prefix + name[4:])
            if j is None:
                j = next((k for p, k in index.items() if p.lower() == "right" + low[4:]), None)
            if j is not None and j != i:
                pairs.append((i, j))
    return tuple(pairs)


# -- rasterisation ------------------------------------------------------------------------

_EPS = 1e-7  # float noise allowed when testing "pixel centre on the outline"


def rasterize_polygon(points: np.ndarray, height: int, width: int) -> np.ndarray:
    """Boolean H×W mask of the pixels whose centre (j + 0.5, i + 0.5) lies inside the
    polygon (even-odd rule) or on its outline.

    ``points`` is N×2 (x, y) in image pixels (pixel-edge frame), so a polygon along pixel
    edges, e.g. (2, 1) (6, 1) (6, 4) (2, 4), covers exactly the pixels it encloses."""
    out = np.zeros((height, width), bool)
    pts = np.asarray(points, np.float64).reshape(-1, 2)
    if len(pts) == 0 or height <= 0 or width <= 0:
        return out
    x0, y0 = pts[:, 0], pts[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    r0 = max(0, int(np.ceil(y0.min() - 0.5 - _EPS)))
    r1 = min(height - 1, int(np.floor(y0.max() - 0.5 + _EPS)))
    if r1 < r0:
        return out
    sloped = y0 != y1
    sx0, sy0, sx1, sy1 = x0[sloped], y0[sloped], x1[sloped], y1[sloped]
    lo, hi = np.minimum(sy0, sy1), np.maximum(sy0, sy1)
    dy = np.where(sloped[sloped], sy1 - sy0, 1.0)
    chunk = max(1, 1_000_000 // max(1, len(sx0)))
    for start in range(r0, r1 + 1, chunk):
        rows = np.arange(start, min(r1 + 1, start + chunk))
        yc = rows[:, None] + 0.5
        xs = sx0 + (yc - sy0) / dy * (sx1 - sx0)
        # interior: pair up crossings (half-open in y so vertices count once)
        cross = (yc >= lo) & (yc < hi)
        xc = np.sort(np.where(cross, xs, np.inf), axis=1)
        a, b = xc[:, 0::2], xc[:, 1::2]
        if b.shape[1] < a.shape[1]:
            a = a[:, : b.shape[1]]
        ok = np.isfinite(a) & np.isfinite(b)
        ri = np.broadcast_to(np.arange(len(rows))[:, None], a.shape)[ok]
        js = np.clip(np.ceil(a[ok] - 0.5 - _EPS), 0, width).astype(np.int64)
        je = np.clip(np.floor(b[ok] - 0.5 + _EPS) + 1, 0, width).astype(np.int64)
        diff = np.zeros((len(rows), width + 1), np.int32)
        np.add.at(diff, (ri, js), 1)
        np.add.at(diff, (ri, je), -1)
        block = np.cumsum(diff, axis=1)[:, :width] > 0
        # outline: centres exactly on a sloped edge (its end rows included)
        on = (yc >= lo - _EPS) & (yc <= hi + _EPS)
        j = xs - 0.5
        on &= np.abs(j - np.round(j)) < _EPS
        jr = np.round(j).astype(np.int64)
        on &= (jr >= 0) & (jr < width)
        rr, cc = np.nonzero(on)
        block[rr, jr[rr, cc]] = True
        out[rows] |= block
    # outline: horizontal edges through a row of centres
    for xa, xb, y in zip(x0[~sloped], x1[~sloped], y0[~sloped], strict=True):
        r = y - 0.5
        if abs(r - round(r)) < _EPS and 0 <= round(r) < height:
            lo_x, hi_x = min(xa, xb), max(xa, xb)
            c0 = max(0, int(np.ceil(lo_x - 0.5 - _EPS)))
            c1 = min(width - 1, int(np.floor(hi_x - 0.5 + _EPS)))
            if c0 <= c1:
                out[round(r), c0 : c1 + 1] = True
    return out


def rasterize_circle(cx: float, cy: float, ex: float, ey: float, height: int,
                     width: int) -> np.ndarray:  # fmt: skip
    """Boolean H×W mask of the pixels whose centre lies inside or on the circle with centre
    (cx, cy) through (ex, ey) (labelme's circle shape), image pixels."""
    r2 = (ex - cx) ** 2 + (ey - cy) ** 2
    yy, xx = np.mgrid[0:height, 0:width]
    inside: np.ndarray = (xx + 0.5 - cx) ** 2 + (yy + 0.5 - cy) ** 2 <= r2
    return inside


def rasterize_outline(parts: Sequence[OutlinePart], height: int, width: int) -> np.ndarray:
    """Union of the outline's polygons and circles (see :class:`OutlinePart`)."""
    out = np.zeros((height, width), bool)
    for part in parts:
        c = part.coords
        if part.kind == "circle" and len(c) == 4:
            out |= rasterize_circle(c[0], c[1], c[2], c[3], height, width)
        elif part.kind == "polygon" and len(c) >= 6:
            out |= rasterize_polygon(np.asarray(c, np.float64).reshape(-1, 2), height, width)
    return out


def outline_is_intact(parts: Sequence[OutlinePart] | None, region: np.ndarray) -> bool:
    """True when ``parts`` rasterise to exactly ``region`` (the object was not edited since
    it was imported from them)."""
    if not parts:
        return False
    return bool(np.array_equal(rasterize_outline(parts, *region.shape), region))


# A traced contour is simplified (Douglas–Peucker) with the largest of these tolerances
# (px) whose polygons, filled again, differ from the region in under MAX_POLYGON_ERROR of
# its pixels; the unsimplified contour (every corner of the pixel staircase) is the last
# resort. The contour is traced on the region upsampled TRACE_SCALE times, so it runs
# just inside the pixels' outer edges rather than through the boundary pixels' centres
# (a chord through centres cuts off the pixels it passes outside of).
SIMPLIFY_TOLERANCES = (1.5, 1.2, 1.0, 0.85, 0.7, 0.6, 0.5, 0.4, 0.3)
MAX_POLYGON_ERROR = 0.01
TRACE_SCALE = 4


def mask_polygons(region: np.ndarray) -> list[np.ndarray]:
    """Outer contours of a boolean mask as N×2 float polygons (N ≥ 3), image pixels,
    simplified (see :data:`SIMPLIFY_TOLERANCES`) so that :func:`rasterize_polygon` refills
    them to within 1 % of the region's pixels (holes filled). Holes are not represented
    (:func:`count_holes` tells how many are lost)."""
    ys, xs = np.nonzero(region)
    if len(xs) == 0:
        return []
    h, w = region.shape
    # work on the bounding box (plus a margin) only: objects are small, images are not
    x0, y0 = max(int(xs.min()) - 1, 0), max(int(ys.min()) - 1, 0)
    x1, y1 = min(int(xs.max()) + 2, w), min(int(ys.max()) + 2, h)
    crop = region[y0:y1, x0:x1].astype(np.uint8)
    k = TRACE_SCALE
    up = cv2.resize(crop, None, fx=k, fy=k, interpolation=cv2.INTER_NEAREST)
    contours, _ = cv2.findContours(up, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    dense = [(c.reshape(-1, 2).astype(np.float64) + 0.5) / k + (x0, y0) for c in contours]
    filled = np.zeros(crop.shape, np.uint8)
    outer, _ = cv2.findContours(crop, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(filled, outer, -1, 1, thickness=cv2.FILLED)
    target = filled.astype(bool)  # holes are not drawn: compare with the region filled
    budget = MAX_POLYGON_ERROR * max(1, int(target.sum()))
    ch, cw = crop.shape
    for eps in SIMPLIFY_TOLERANCES:
        polys = [_simplified(d, eps) for d in dense]
        refilled = np.zeros(crop.shape, bool)
        for poly in polys:
            refilled |= rasterize_polygon(poly - (x0, y0), ch, cw)
        if int((refilled ^ target).sum()) < budget:
            return polys
    simple, _ = cv2.findContours(crop, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return [_at_least_3(c.reshape(-1, 2).astype(np.float64) + 0.5 + (x0, y0)) for c in simple]


def _simplified(dense: np.ndarray, eps: float) -> np.ndarray:
    pts = cv2.approxPolyDP(dense.astype(np.float32).reshape(-1, 1, 2), eps, True)
    return _at_least_3(pts.reshape(-1, 2).astype(np.float64))


def _at_least_3(pts: np.ndarray) -> np.ndarray:
    if len(pts) == 1:
        return np.repeat(pts, 3, axis=0)
    if len(pts) == 2:
        return pts[[0, 1, 0]]
    return pts


def count_holes(region: np.ndarray) -> int:
    """Number of holes (background enclosed by the region)."""
    contours, hierarchy = cv2.findContours(
        region.astype(np.uint8), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE
    )
    if hierarchy is None:
        return 0
    return int((hierarchy[0][:, 3] >= 0).sum())


def bbox_of_mask(region: np.ndarray) -> tuple[int, int, int, int]:
    """(x1, y1, x2, y2) pixel-edge box around the True pixels."""
    ys, xs = np.nonzero(region)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


# -- import session -------------------------------------------------------------------------


class ImportSession:
    """Collects one import: resolves images, classes and templates, adds annotations and
    translates the project's ValidationError into FormatError naming the file and record.

    Tags and pixel labels are applied in :meth:`finish` (tags: added to the image's tags
    in a multi-label project, replacing them in a single-label one; regions: painted over
    the image's existing label map, objects and ignore region in the order they come,
    later regions win).

    Coordinates slightly outside the image are clipped onto its edge (see
    :func:`clip_tolerance`); :meth:`finish` adds one warning per label file counting
    them.

    The session's one transaction begins at its first write, so images resolved before
    any class or template is created are checked, hashed and copied while other programs
    can still write (a format resolves its images first where it can)."""

    def __init__(self, project: Project, copy_images: bool, stack: ExitStack | None = None):
        self.project = project
        self.copy_images = copy_images
        self._stack = stack
        self._begun = stack is None
        self.report = LabelImportReport()
        self._by_path: dict[Path, ImageRecord] = {}
        self._matched: set[int] = set()
        self._added: set[int] = set()
        self._classes: dict[str, int] = {}
        self._tags: dict[int, list[int]] = {}
        self._pixels: dict[int, _Pixels] = {}  # pending, least recently painted first
        self._painted_images: set[int] = set()
        self._lost_objects = 0
        self._clipped: dict[Path, list[float]] = {}  # label file -> [count, largest distance]
        self._overlaps: dict[Path, list[int]] = {}  # label file -> [objects, pixels]
        self._multi = project.multi_label
        self._domains: dict[int, str | None] = {}  # domains the label files name
        self.new_image_domain = NEW_IMAGE_DOMAIN.get()
        self.created_files: list[Path] = []  # written by the import; removed if it fails

    def begin(self) -> None:
        """Open the session's transaction (if it is not open yet): call before a write."""
        if not self._begun:
            assert self._stack is not None
            self._stack.enter_context(self.project.transaction())
            self._begun = True

    def warn(self, src: Path | None, where: str, message: str) -> None:
        loc = f" ({where})" if where else ""
        self.report.warnings.append(f"{src}{loc}: {message}" if src else message)

    # coordinates ------------------------------------------------------------------
    def clip(self, v: float, hi: float, src: Path, where: str, what: str) -> float:
        """``v`` moved into [0, hi] if it lies at most :func:`clip_tolerance` px outside
        (counted for the warning); FormatError if further."""
        if 0.0 <= v <= hi:
            return v
        dist = -v if v < 0 else v - hi
        if dist > clip_tolerance(hi):
            raise FormatError(src, where, outside_message(what, v, hi))
        self._count_clipped(src, 1, dist)
        return min(max(v, 0.0), float(hi))

    def clip_points(self, rec: ImageRecord, pts: np.ndarray, src: Path, where: str,
                    scale: tuple[float, float] = (1.0, 1.0)) -> np.ndarray:  # fmt: skip
        """N×2 (x, y) points clipped into the image (see :meth:`clip`). ``scale`` only
        changes how a refused point is quoted (YOLO quotes normalised values)."""
        pts = np.asarray(pts, np.float64).reshape(-1, 2)
        size = np.array([rec.width, rec.height], np.float64)
        below, above = -pts, pts - size
        dist = np.maximum(np.maximum(below, above), 0.0)
        far = dist > np.array([clip_tolerance(rec.width), clip_tolerance(rec.height)])
        if far.any():
            i, j = np.argwhere(far)[0]
            v, hi = pts[i, j] / scale[j], size[j] / scale[j]
            what = "xy"[j]
            if scale != (1.0, 1.0):
                raise FormatError(
                    src, where, f"point ({pts[i, 0] / scale[0]:g}, {pts[i, 1] / scale[1]:g}) lies "
                    f"outside the image (0..1) by more than the tolerated {CLIP_FRACTION:.1%}"
                    f" or {CLIP_TOLERANCE:g} px",
                )  # fmt: skip
            raise FormatError(src, where, outside_message(what, v, hi))
        moved = (dist > 0).any(axis=1)
        if moved.any():
            self._count_clipped(src, int(moved.sum()), float(dist.max()))
            pts = np.clip(pts, 0.0, size)
        return pts

    def _count_clipped(self, src: Path, n: int, dist: float) -> None:
        entry = self._clipped.setdefault(src, [0, 0.0])
        entry[0] += n
        entry[1] = max(entry[1], dist)

    # images ---------------------------------------------------------------------
    def image(self, path: Path, src: Path, where: str) -> ImageRecord:
        """The project image for file ``path``: matched by path or content, else added."""
        return self.images([(path, src, where)])[0]

    def images(self, refs: Sequence[tuple[Path, Path, str]]) -> list[ImageRecord]:
        """Records for several ``(image path, label file, where)`` references at once (one
        ``add_images`` call for all new files); the first missing or unreadable image
        raises FormatError naming the label file and record that refers to it."""
        project = self.project
        resolved: list[Path] = []
        todo: dict[Path, tuple[Path, str]] = {}
        for path, src, where in refs:
            try:
                path = path.resolve()
            except (OSError, RuntimeError, ValueError) as exc:
                raise FormatError(src, where, f"bad image path {str(path)!r}: {exc}") from None
            resolved.append(path)
            if path in self._by_path or path in todo:
                continue
            if not is_file(path):
                raise FormatError(src, where, f"image {path} not found")
            rec = project.image_by_path(path)
            if rec is None:
                todo[path] = (src, where)
            else:
                self._remember(path, rec)
        if todo:
            # checked (and copied) before the transaction begins where it has not yet
            batch = project.check_images(
                list(todo), copy=self.copy_images, recursive=False, domain=self.new_image_domain
            )
            bad = dict(batch.report.failed + batch.report.skipped)
            if bad:
                batch.discard()
                path = next(p for p in todo if p in bad)
                src, where = todo[path]
                raise FormatError(src, where, f"image {shown_path(path)}: {bad[path]}")
            try:
                self.begin()
                added = batch.insert()
            except BaseException:
                batch.discard()
                raise
            duplicates = set(added.duplicates)
            new_paths = [p for p in todo if p not in duplicates]
            for path, image_id in zip(new_paths, added.added, strict=True):
                self._added.add(image_id)
                self._remember(path, project.image(image_id))
            for path in todo:
                if path in duplicates:  # same content already in the project
                    self._remember(path, self._by_content(path, *todo[path]))
        return [self._by_path[p] for p in resolved]

    def _by_content(self, path: Path, src: Path, where: str) -> ImageRecord:
        from .. import imageio

        try:
            digest = imageio.file_sha256(path)
        except (TlsError, OSError) as exc:
            raise FormatError(src, where, f"image {path}: {exc}") from None
        row = self.project.store.conn.execute(
            "SELECT id FROM images WHERE sha256 = ?", (digest,)
        ).fetchone()
        if row is None:  # pragma: no cover - add_images reported it as a duplicate
            raise FormatError(src, where, f"image {path} could not be added")
        return self.project.image(row[0])

    def write_image(self, name: str, data: bytes) -> Path:
        """An image file that exists only inside a label file (labelme's ``imageData``,
        SLEAP's embedded frames, a video frame): written into the project's ``images/``
        folder under ``name`` (numbered if taken) and removed again if the import fails;
        the path of the project's image with the same content when there is one."""
        import hashlib

        digest = hashlib.sha256(data).hexdigest()
        row = self.project.store.conn.execute(
            "SELECT id FROM images WHERE sha256 = ?", (digest,)
        ).fetchone()
        if row is not None:
            return self.project.image_path(row[0])
        folder = self.project.root / "images"
        folder.mkdir(exist_ok=True)
        dest, n = folder / name, 1
        while dest.exists():
            dest = folder / f"{Path(name).stem}_{n}{Path(name).suffix}"
            n += 1
        dest.write_bytes(data)
        self.created_files.append(dest)
        return dest

    def set_domain(self, rec: ImageRecord, name: object, src: Path, where: str) -> None:
        """Give ``rec`` the domain a label file names for it (stored at :meth:`finish`)."""
        if name is None:
            return
        if isinstance(name, bool) or not isinstance(name, (str, int, float)):
            raise FormatError(src, where, f"domain: expected a string, got {type_name(name)}")
        try:
            self._domains[rec.id] = check_domain(str(name))
        except ValidationError as exc:
            raise FormatError(src, where, str(exc)) from None

    def _remember(self, path: Path, rec: ImageRecord) -> None:
        if rec.id not in self._added:
            self._matched.add(rec.id)
        self._by_path[path] = rec

    # label set --------------------------------------------------------------------
    def class_id(self, name: object, src: Path, where: str) -> int:
        if isinstance(name, bool) or not isinstance(name, (str, int, float)):
            raise FormatError(src, where, f"class name: expected a string, got {type_name(name)}")
        key = str(name).strip()
        cid = self._classes.get(key)
        if cid is None:
            if not key:
                raise FormatError(src, where, "empty class name")
            check_text(key, src, where, "class name")
            self.begin()
            try:
                cid = self.project.ensure_class(key).id
            except ValidationError as exc:
                raise FormatError(src, where, str(exc)) from None
            self._classes[key] = cid
        return cid

    def template(
        self, template: LandmarkTemplate, src: Path, where: str, *, rename: bool = False
    ) -> LandmarkTemplate:
        """The stored template equal to ``template`` (added if absent). A different template
        with the same name is an error, or with ``rename`` the name gets a numeric suffix."""
        project = self.project
        for name in (template.name, *template.points):
            check_text(name, src, where, "template")
        base, n = template.name, 1
        while True:
            existing = project.template_by_name(template.name)
            same = existing is not None and (existing.points, existing.skeleton, existing.flip_pairs) == (
                template.points, template.skeleton, template.flip_pairs,
            )  # fmt: skip
            if existing is None or same or not rename:
                break
            n += 1
            template = LandmarkTemplate(
                f"{base} {n}", template.points, template.skeleton, template.flip_pairs
            )
        self.begin()
        try:
            return project.ensure_template(template)
        except ValidationError as exc:
            raise FormatError(src, where, str(exc)) from None

    # annotations --------------------------------------------------------------------
    def tag(self, rec: ImageRecord, class_id: int, src: Path, where: str) -> None:
        tags = self._tags.setdefault(rec.id, [])
        if class_id in tags:
            return
        if tags and not self._multi:
            first = self.project.class_info(tags[0]).name
            second = self.project.class_info(class_id).name
            raise FormatError(
                src, where,
                f"image {rec.path} gets a second class tag {second!r} (already {first!r}) "
                "in a single-label project",
            )  # fmt: skip
        tags.append(class_id)

    def box(self, rec: ImageRecord, class_id: int, xyxy: Iterable[float], src: Path,
            where: str) -> Box:  # fmt: skip
        """Add a box given as (x1, y1, x2, y2) image pixels, clipped into the image;
        returns it with its id."""
        x1, y1, x2, y2 = xyxy
        x1 = self.clip(x1, rec.width, src, where, "x")
        x2 = self.clip(x2, rec.width, src, where, "x")
        y1 = self.clip(y1, rec.height, src, where, "y")
        y2 = self.clip(y2, rec.height, src, where, "y")
        if not (x1 < x2 and y1 < y2):
            raise FormatError(src, where, f"empty box ({x1:g}, {y1:g}, {x2:g}, {y2:g})")
        self.begin()
        try:
            box = self.project.add_box(rec.id, Box(class_id, x1, y1, x2, y2))
        except ValidationError as exc:
            raise FormatError(src, where, str(exc)) from None
        self.report.annotations["boxes"] += 1
        return box

    def point(self, rec: ImageRecord, x: float, y: float, v: int, src: Path, where: str) -> Point:
        """A landmark point, clipped into the image; visibility 0 points become (0, 0, 0)."""
        if v not in (0, 1, 2):
            raise FormatError(src, where, f"visibility {v} must be 0, 1 or 2")
        if v == SKIPPED:
            return Point(0.0, 0.0, SKIPPED)
        x = self.clip(x, rec.width, src, where, "x")
        return Point(x, self.clip(y, rec.height, src, where, "y"), v)

    def landmarks(self, rec: ImageRecord, template: LandmarkTemplate, points: Sequence[Point],
                  class_id: int | None, src: Path, where: str) -> None:  # fmt: skip
        assert template.id is not None
        self.begin()
        try:
            self.project.add_landmark_set(rec.id, LandmarkSet(template.id, tuple(points), class_id))
        except ValidationError as exc:
            raise FormatError(src, where, str(exc)) from None
        self.report.annotations["landmarks"] += 1

    # pixel labels ------------------------------------------------------------------
    def _layers(
        self, rec: ImageRecord, region: np.ndarray, src: Path, where: str
    ) -> _Pixels | None:
        """The image's pending pixel layers (read from the project on first use); None
        (with a warning) when ``region`` covers no pixel."""
        if region.shape != (rec.height, rec.width):
            raise FormatError(
                src, where,
                f"mask is {region.shape[1]}×{region.shape[0]} px, image is {rec.width}×{rec.height} px",
            )  # fmt: skip
        if not region.any():
            self.warn(src, where, "region covers no pixel centre; skipped")
            return None
        px = self._pixels.pop(rec.id, None)
        if px is None:
            if len(self._pixels) >= MAX_PENDING_IMAGES:  # bound the memory: store the oldest
                oldest = next(iter(self._pixels))
                self._store_pixels(oldest, self._pixels.pop(oldest))
            px = _Pixels.read(self.project, rec)
        self._pixels[rec.id] = px  # (again) the most recent
        px.where = (src, where)
        return px

    def _store_pixels(self, image_id: int, px: _Pixels) -> None:
        """Write an image's pending layers (inside the import's transaction: a later region
        of the same image reads them back from the project)."""
        try:
            self._lost_objects += px.write(self.project, image_id)
        except ValidationError as exc:  # pragma: no cover - shapes checked in _layers()
            src, where = px.where
            raise FormatError(src, where, str(exc)) from None
        if px.painted or px.objects:
            self._painted_images.add(image_id)

    def paint(
        self, rec: ImageRecord, class_id: int, region: np.ndarray, src: Path, where: str
    ) -> None:
        """Paint a boolean H×W region with ``class_id`` into the image's label map, as
        pixels of no object (semantic segmentation)."""
        px = self._layers(rec, region, src, where)
        if px is not None:
            px.set(region, class_id, 0)
            px.painted = True

    def ignore(self, rec: ImageRecord, region: np.ndarray, src: Path, where: str) -> None:
        """Mark a region as ignored (left out of losses and metrics; it loses its labels)."""
        px = self._layers(rec, region, src, where)
        if px is not None:
            px.set(region, 0, 0)
            px.ignore |= region
            self.report.annotations["ignore"] += 1

    def background(self, rec: ImageRecord, region: np.ndarray, src: Path, where: str) -> None:
        """Paint a region as background (labels and objects under it are cleared)."""
        px = self._layers(rec, region, src, where)
        if px is not None:
            px.set(region, 0, 0)
            px.painted = True

    def instance(self, rec: ImageRecord, class_id: int, region: np.ndarray, src: Path,
                 where: str, *, iscrowd: bool = False, box_id: int | None = None,
                 outline: Sequence[OutlinePart] | None = None) -> int:  # fmt: skip
        """Add an object of ``class_id`` over ``region`` (its pixels leave earlier objects:
        counted for a warning). Returns its number in the image (0: the region covers no
        pixel), for :meth:`extend_instance`."""
        px = self._layers(rec, region, src, where)
        if px is None:
            return 0
        overlap = int((region & (px.map > 0)).sum())
        if overlap:
            entry = self._overlaps.setdefault(src, [0, 0])
            entry[0] += 1
            entry[1] += overlap
        number = px.next_number()
        if number == 0:
            raise FormatError(src, where, f"image {rec.path}: more than 65535 objects")
        px.objects[number] = Instance(
            number, class_id, iscrowd, box_id, None if outline is None else tuple(outline)
        )
        px.set(region, class_id, number)
        self.report.annotations["objects"] += 1
        return number

    def extend_instance(self, rec: ImageRecord, number: int, region: np.ndarray, src: Path,
                        where: str, part: OutlinePart | None = None) -> None:  # fmt: skip
        """Add ``region`` (and its outline ``part``) to object ``number`` of :meth:`instance`."""
        px = self._layers(rec, region, src, where)
        if px is None or number == 0:
            return
        inst = px.objects[number]
        outline = None
        if inst.outline is not None and part is not None:
            outline = (*inst.outline, part)
        px.objects[number] = replace(inst, outline=outline)
        px.set(region, inst.class_id, number)

    def region(self, rec: ImageRecord, name: object, region: np.ndarray, src: Path, where: str,
               *, instance: bool = True, outline: Sequence[OutlinePart] | None = None,
               iscrowd: bool = False, box_id: int | None = None) -> int:  # fmt: skip
        """A region labelled ``name``: an ignore region or background for the names of
        :func:`label_role`, else an object (``instance``) or semantic pixels of that
        class. Returns the object's number (0 when it made none)."""
        role = label_role(name)
        if role == "ignore":
            self.ignore(rec, region, src, where)
        elif role == "background":
            self.background(rec, region, src, where)
        elif instance:
            cid = self.class_id(name, src, where)
            return self.instance(
                rec, cid, region, src, where, iscrowd=iscrowd, box_id=box_id, outline=outline
            )
        else:
            self.paint(rec, self.class_id(name, src, where), region, src, where)
        return 0

    def finish(self) -> LabelImportReport:
        project = self.project
        self.begin()
        for image_id, tags in self._tags.items():
            current = [] if not self._multi else list(project.tags(image_id))
            new = list(dict.fromkeys(current + tags))
            try:
                project.set_tags(image_id, new)
            except ValidationError as exc:  # pragma: no cover - checked in tag()
                raise FormatError("", "", str(exc)) from None
            self.report.annotations["tags"] += len(tags)
        named = {i: d for i, d in self._domains.items() if d is not None}
        if named:
            project.set_domains(named)
        for image_id, px in self._pixels.items():
            self._store_pixels(image_id, px)
        self._pixels.clear()
        self.report.annotations["masks"] += len(self._painted_images)
        lost = self._lost_objects
        for src, (n, dist) in self._clipped.items():
            self.warn(
                src, "", f"{n} point{'s' if n != 1 else ''} up to {dist:.3g} px outside the "
                "image moved onto its edge",
            )  # fmt: skip
        for src, (n, pixels) in self._overlaps.items():
            self.warn(
                src, "", f"{n} object{'s overlap' if n != 1 else ' overlaps'} earlier ones ({pixels} px); "
                "tlstudio's objects do not overlap: those pixels belong to the later object",
            )  # fmt: skip
        if lost:
            self.report.annotations["objects"] -= lost
            self.warn(
                None, "", f"{lost} object{'s' if lost != 1 else ''} entirely covered by later "
                "regions were dropped",
            )  # fmt: skip
        self.report.images_added = len(self._added)
        self.report.images_matched = len(self._matched)
        return self.report


class _Pixels:
    """One image's pixel layers while an import paints them: label map, object map with
    its objects (by number), ignore flags."""

    def __init__(self, semantic: np.ndarray, instance_map: np.ndarray,
                 objects: dict[int, Instance], ignore: np.ndarray):  # fmt: skip
        self.semantic, self.map, self.objects, self.ignore = semantic, instance_map, objects, ignore
        self.painted = False  # semantic pixels were painted (not only objects or ignore)
        self.where: tuple[Path, str] = (Path(), "")
        self._last = max(objects, default=0)

    @classmethod
    def read(cls, project: Project, rec: ImageRecord) -> _Pixels:
        shape = (rec.height, rec.width)
        mask = project.mask(rec.id)
        layer = project.instances.layer(rec.id)
        ignore = project.instances.ignore(rec.id)
        return cls(
            np.zeros(shape, np.uint16) if mask is None else mask.copy(),
            np.zeros(shape, np.uint16) if layer is None else layer.map.copy(),
            {} if layer is None else {o.number: o for o in layer.objects},
            np.zeros(shape, bool) if ignore is None else ignore.copy(),
        )

    def next_number(self) -> int:
        if self._last < 65535:
            self._last += 1
            return self._last
        used = set(self.objects)
        return next((n for n in range(1, 65536) if n not in used), 0)

    def set(self, region: np.ndarray, class_id: int, number: int) -> None:
        self.semantic[region] = class_id
        self.map[region] = number
        self.ignore[region] = False

    def write(self, project: Project, image_id: int) -> int:
        """Store the layers; returns how many objects of this import lost every pixel."""
        present = set(np.unique(self.map).tolist()) - {0}
        objects = tuple(o for n, o in sorted(self.objects.items()) if n in present)
        project.set_mask(image_id, self.semantic)
        layer = InstanceLayer(self.map, objects) if objects else None
        project.instances.write_raw(image_id, layer)
        project.instances.set_ignore(image_id, self.ignore)
        return len(self.objects) - len(objects)


NEW_IMAGE_DOMAIN: ContextVar[str | None] = ContextVar("NEW_IMAGE_DOMAIN", default=None)
"""The domain given to images a label import adds (set by ``import_labels(domain=)``);
a domain the label file names for an image wins."""


@contextmanager
def import_session(project: Project, copy_images: bool) -> Iterator[ImportSession]:
    """One all-or-nothing import: a single transaction, opened at the session's first
    write (:meth:`ImportSession.begin`); on any error the database rolls back, image
    copies staged by this import are deleted, and files it wrote (``created_files``) are
    removed."""
    stack = ExitStack()
    session = ImportSession(project, copy_images, stack)
    try:
        with stack:
            yield session
            session.finish()
    except BaseException:
        for p in session.created_files:
            try:
                p.unlink()
            except OSError:  # pragma: no cover - best effort
                pass
        raise


# -- export helpers ----------------------------------------------------------------------------


def export_names(records: Iterable[ImageRecord]) -> dict[int, str]:
    """A file name per image, unique by stem (case-insensitive), so label files named after
    the stem never collide: ``a.png`` and ``a.jpg`` become ``a.png`` and ``a_<id>.jpg``."""
    out: dict[int, str] = {}
    used: set[str] = set()
    for rec in records:
        name = rec.name
        stem, dot, suffix = name.rpartition(".")
        if not dot:
            stem, suffix = name, ""
        candidate = name
        if candidate.rsplit(".", 1)[0].lower() in used:
            candidate = f"{stem}_{rec.id}{dot}{suffix}"
            k = 1
            while candidate.rsplit(".", 1)[0].lower() in used:
                candidate = f"{stem}_{rec.id}_{k}{dot}{suffix}"
                k += 1
        used.add(candidate.rsplit(".", 1)[0].lower() if dot else candidate.lower())
        out[rec.id] = candidate
    return out


def place_image(project: Project, rec: ImageRecord, dest: Path) -> None:
    """Hard-link the image file to ``dest`` (copy where linking is impossible)."""
    src = project.image_path(rec)
    if not is_file(src):
        raise FormatError(src, "", f"image {rec.path} is missing; relink it before exporting")
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists() or dest.is_symlink():
        try:
            if dest.samefile(src):
                return
        except OSError:
            pass
        dest.unlink()
    try:
        os.link(src, dest)
    except OSError:
        with replacing(dest, sync=False) as tmp:  # never half an image at ``dest``
            shutil.copy2(src, tmp)


def relative_ref(target: Path, base: Path) -> str:
    """``target`` relative to folder ``base`` as a POSIX path (absolute across drives)."""
    try:
        return Path(os.path.relpath(target, base)).as_posix()
    except ValueError:
        return target.as_posix()


def note(warnings: list[str] | None, message: str) -> None:
    """Record an export warning (also logged)."""
    log.info(message)
    if warnings is not None:
        warnings.append(message)


def skipped_kinds(
    project: Project, kinds: Sequence[str], fmt: str, warnings: list[str] | None
) -> None:
    """Warn about annotation kinds the format cannot hold."""
    tables = {"tags": "tags", "boxes": "boxes", "landmarks": "landmark_sets", "masks": "masks"}
    for kind in kinds:
        n = project.store.conn.execute(f"SELECT COUNT(*) FROM {tables[kind]}").fetchone()[0]
        if n:
            note(warnings, f"{fmt}: {n} {kind} not exported (the format cannot hold them)")


def export_template(project: Project, name: str | None, fmt: str, *,
                    skip_suffix: str | None = None) -> LandmarkTemplate:  # fmt: skip
    """The one landmark template an export of ``fmt`` writes: ``name``'s, else the only
    template in use (templates whose name ends with ``skip_suffix`` aside); ValueError
    naming the choices otherwise."""
    if name is not None:
        t = project.template_by_name(name)
        if t is None:
            raise ValueError(f"no landmark template called {name!r}")
        return t
    used = [
        project.template(r[0])
        for r in project.store.conn.execute("SELECT DISTINCT template_id FROM landmark_sets")
    ]
    if not used:
        raise ValueError(f"{fmt} export needs landmark sets; the project has none")
    main = [t for t in used if not (skip_suffix and t.name.endswith(skip_suffix))] or used
    if len(main) > 1:
        names = ", ".join(sorted(t.name for t in main))
        raise ValueError(f"{fmt} holds one keypoint layout; choose a template ({names})")
    return main[0]


def fmt_num(v: float) -> str:
    """Shortest text that reads back as the same float (integers without ``.0``)."""
    if float(v).is_integer():
        return str(int(v))
    return repr(float(v))
