"""Annotation records. All coordinates are image pixels: x right, y down,
origin at the top-left corner of the top-left pixel (so a W×H image spans
[0, W] × [0, H])."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

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


@dataclass
class ImageAnnotations:
    """Everything labelled on one image. ``mask`` is an H×W uint16 label map
    (pixel value = class id, 0 = background) or None."""

    image_id: int
    tags: tuple[int, ...] = ()
    boxes: tuple[Box, ...] = ()
    landmarks: tuple[LandmarkSet, ...] = ()
    mask: np.ndarray | None = field(default=None, repr=False)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ImageAnnotations):
            return NotImplemented
        masks_equal = (self.mask is None and other.mask is None) or (
            self.mask is not None
            and other.mask is not None
            and np.array_equal(self.mask, other.mask)
        )
        return (
            self.image_id == other.image_id
            and self.tags == other.tags
            and self.boxes == other.boxes
            and self.landmarks == other.landmarks
            and masks_equal
        )

    @property
    def is_empty(self) -> bool:
        return not (self.tags or self.boxes or self.landmarks or self.mask is not None)


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
