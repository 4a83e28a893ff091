"""Annotation records. All coordinates are image pixels: x right, y down,
origin at the top-left corner of the top-left pixel (so a W×H image spans
[0, W] × [0, H])."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from .errors import ValidationError

# Landmark visibility, as in COCO: 0 = not labelled / skipped, 1 = labelled but
# occluded (not visible), 2 = labelled and visible.
SKIPPED, OCCLUDED, VISIBLE = 0, 1, 2


@dataclass(frozen=True)
class Box:
    """Axis-aligned box in image pixels, x1 < x2 and y1 < y2."""

    class_id: int
    x1: float
    y1: float
    x2: float
    y2: float
    id: int | None = None

    @property
    def xyxy(self) -> tuple[float, float, float, float]:
        return (self.x1, self.y1, self.x2, self.y2)


@dataclass(frozen=True)
class Point:
    """One landmark: (x, y) in image pixels and COCO visibility (0, 1 or 2)."""

    x: float
    y: float
    visibility: int = VISIBLE


@dataclass(frozen=True)
class LandmarkSet:
    """Points of one template instance, in the template's order."""

    template_id: int
    points: tuple[Point, ...]
    class_id: int | None = None
    id: int | None = None

    def points_json(self) -> str:
        # float()/int(): one stored form whatever the caller passed (int, numpy scalar)
        return json.dumps([[float(p.x), float(p.y), int(p.visibility)] for p in self.points])

    @staticmethod
    def points_from_json(text: str) -> tuple[Point, ...]:
        return tuple(Point(float(x), float(y), int(v)) for x, y, v in json.loads(text))


Outline = tuple["OutlinePart", ...]
"""The shapes an instance's pixels were rasterised from (see :class:`Instance`)."""


@dataclass(frozen=True)
class OutlinePart:
    """One shape of an instance outline, in image pixels: ``kind`` ``"polygon"`` with
    ``coords`` x1, y1, x2, y2, … (≥ 3 points), or ``"circle"`` with ``coords`` cx, cy, ex,
    ey (centre and a point on the rim). A pixel is inside when its centre is inside or on
    the shape (:func:`tlstudio.core.formats._common.rasterize_outline`)."""

    kind: str
    coords: tuple[float, ...]

    def to_json(self) -> list[Any]:
        return [self.kind, [float(v) for v in self.coords]]

    @staticmethod
    def from_json(data: Any) -> OutlinePart:
        kind, coords = data
        return OutlinePart(str(kind), tuple(float(v) for v in coords))


@dataclass(frozen=True)
class Instance:
    """One object of an image's instance layer (a cell, a person): the pixels whose value
    in :attr:`InstanceLayer.map` is ``number`` (1..65535, unique per image), all of class
    ``class_id`` in the image's semantic label map.

    ``iscrowd``: COCO's crowd flag (one region covering several objects). ``box_id``: the
    detection box that is this object's box (a COCO annotation with a ``bbox`` and a
    ``segmentation`` gives a box and an instance linked this way), or None. ``outline``:
    the shapes the pixels were rasterised from when they were imported from polygons or
    circles, else None; exports write it instead of a traced contour while it still
    rasterises to exactly the object's pixels (so an edited object is traced again).
    ``id``: the store's id (None before it is added)."""

    number: int
    class_id: int
    iscrowd: bool = False
    box_id: int | None = None
    outline: Outline | None = None
    id: int | None = None

    def outline_json(self) -> str | None:
        return None if self.outline is None else json.dumps([p.to_json() for p in self.outline])

    @staticmethod
    def outline_from_json(text: str | None) -> Outline | None:
        if text is None:
            return None
        return tuple(OutlinePart.from_json(p) for p in json.loads(text))


@dataclass(eq=False)
class InstanceLayer:
    """The objects of one image: ``map`` is H×W uint16, pixel = the number of the object
    it belongs to (0 = none); ``objects`` lists them (each number at most once). Pixels
    of the semantic label map outside every object are labelled without an object
    ("stuff", or painted with the class brush)."""

    map: np.ndarray = field(repr=False)
    objects: tuple[Instance, ...] = ()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, InstanceLayer):
            return NotImplemented
        return self.objects == other.objects and np.array_equal(self.map, other.map)

    def by_number(self) -> dict[int, Instance]:
        return {o.number: o for o in self.objects}

    def region(self, number: int) -> np.ndarray:
        """Boolean H×W pixels of object ``number``."""
        region: np.ndarray = self.map == number
        return region

    def semantic(self) -> np.ndarray:
        """The label map the objects alone give (pixel = class id, 0 elsewhere)."""
        if not self.objects:
            return np.zeros(self.map.shape, np.uint16)
        lut = np.zeros(max(o.number for o in self.objects) + 1, np.uint16)
        for o in self.objects:
            lut[o.number] = o.class_id
        valid = self.map < len(lut)
        out: np.ndarray = np.where(valid, lut[np.where(valid, self.map, 0)], 0).astype(np.uint16)
        return out


def _arrays_equal(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and np.array_equal(a, b))


@dataclass
class ImageAnnotations:
    """Everything labelled on one image. ``mask`` is an H×W uint16 label map
    (pixel value = class id, 0 = background) or None; ``instances`` splits some of its
    labelled pixels into objects (see :class:`InstanceLayer`; None: no objects);
    ``ignore`` is an H×W bool map of pixels left out of losses and metrics, or None."""

    image_id: int
    tags: tuple[int, ...] = ()
    boxes: tuple[Box, ...] = ()
    landmarks: tuple[LandmarkSet, ...] = ()
    mask: np.ndarray | None = field(default=None, repr=False)
    instances: InstanceLayer | None = field(default=None, repr=False)
    ignore: np.ndarray | None = field(default=None, repr=False)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ImageAnnotations):
            return NotImplemented
        return (
            self.image_id == other.image_id
            and self.tags == other.tags
            and self.boxes == other.boxes
            and self.landmarks == other.landmarks
            and _arrays_equal(self.mask, other.mask)
            and self.instances == other.instances
            and _arrays_equal(self.ignore, other.ignore)
        )

    @property
    def is_empty(self) -> bool:
        return not (
            self.tags or self.boxes or self.landmarks or self.mask is not None
            or self.ignore is not None
        )  # fmt: skip


def mask_class_ids(mask: np.ndarray) -> list[int]:
    """Sorted non-zero values (class ids) of a label map."""
    if mask.size and (mask.min() < 0 or mask.max() > 65535):
        raise ValidationError("mask values must be class ids in 0..65535")
    return [int(v) for v in np.unique(mask) if v != 0]


def encode_mask(mask: np.ndarray, present: list[int] | None = None) -> tuple[bytes, list[int]]:
    """Compress a label map to PNG bytes (8-bit when ids < 256, else 16-bit).

    Returns the bytes and the sorted class ids present (0 excluded); pass
    ``present`` when already known to skip recounting."""
    if mask.ndim != 2:
        raise ValidationError(f"mask must be a 2-D label map, got shape {mask.shape}")
    if present is None:
        present = mask_class_ids(mask)
    dtype = np.uint8 if (not present or present[-1] < 256) else np.uint16
    ok, buf = cv2.imencode(".png", mask.astype(dtype), [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:  # pragma: no cover - cv2 only fails on invalid input checked above
        raise ValidationError("mask could not be encoded")
    return buf.tobytes(), present


def decode_mask(png: bytes) -> np.ndarray:
    """Inverse of :func:`encode_mask`: an H×W uint16 label map."""
    arr = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise ValidationError("stored mask is not a valid PNG")
    return arr.astype(np.uint16)
