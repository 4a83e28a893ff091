"""Objects (instances) predicted by an instance-segmentation model, in numpy (no torch).

Mask R-CNN predicts per object a box and an M×M grid of probabilities over it: cell
(i, j) covers the box's [x1 + j·w/M, x1 + (j + 1)·w/M) × [y1 + i·h/M, y1 + (i + 1)·h/M)
(w, h: the box's size; continuous pixel frame, origin at the top-left corner of the
top-left pixel). :func:`paste_object` turns it into the object's pixels in an image of
any size: the grid is sampled bilinearly at each pixel's centre (zero beyond the grid,
as torchvision pads it by one cell) and pixels above 0.5 belong to the object. The
training code (``tlstudio.ml``), the stored predictions and the exported-model runtime
all paste with this one function, so their pixels agree.

An :class:`ObjectMask` keeps only the object's bounding crop, so a hundred objects on a
4000×3000 image cost their own area, not a hundred full-size masks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

#: probability above which a pixel belongs to the object (torchvision's and COCO's rule)
MASK_THRESHOLD = 0.5


@dataclass(frozen=True, eq=False)
class ObjectMask:
    """The pixels of one object of an H×W image: ``crop`` (bool h×w) whose top-left
    pixel is image pixel (``x0``, ``y0``) (column, row). An empty object has a 0×0 crop."""

    x0: int
    y0: int
    crop: np.ndarray

    @property
    def area(self) -> int:
        """Number of pixels."""
        return int(np.count_nonzero(self.crop))

    @property
    def box(self) -> tuple[float, float, float, float] | None:
        """The tight box (x1, y1, x2, y2) of the pixels, on pixel edges; None if empty."""
        if not self.crop.size or not self.crop.any():
            return None
        rows, cols = np.flatnonzero(self.crop.any(1)), np.flatnonzero(self.crop.any(0))
        return (
            float(self.x0 + cols[0]), float(self.y0 + rows[0]),
            float(self.x0 + cols[-1] + 1), float(self.y0 + rows[-1] + 1),
        )  # fmt: skip

    def full(self, image_hw: tuple[int, int]) -> np.ndarray:
        """The object as a bool H×W mask."""
        out = np.zeros(image_hw, bool)
        h, w = self.crop.shape
        if h and w:
            out[self.y0 : self.y0 + h, self.x0 : self.x0 + w] = self.crop
        return out

    @staticmethod
    def from_mask(mask: np.ndarray) -> ObjectMask:
        """The object of a bool H×W mask (its pixels cropped to their bounding box)."""
        mask = np.asarray(mask, bool)
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        if not len(rows):
            return ObjectMask(0, 0, np.zeros((0, 0), bool))
        y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
        return ObjectMask(x0, y0, mask[y0:y1, x0:x1].copy())


def _tight(x0: int, y0: int, crop: np.ndarray) -> ObjectMask:
    rows, cols = np.flatnonzero(crop.any(1)), np.flatnonzero(crop.any(0))
    if not len(rows):
        return ObjectMask(0, 0, np.zeros((0, 0), bool))
    r0, r1, c0, c1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    return ObjectMask(x0 + c0, y0 + r0, np.ascontiguousarray(crop[r0:r1, c0:c1]))


def paste_object(
    probs: np.ndarray,
    box: Sequence[float] | np.ndarray,
    image_hw: tuple[int, int],
    grid_offset: tuple[float, float] = (0.0, 0.0),
    threshold: float = MASK_THRESHOLD,
) -> ObjectMask:
    """The pixels of an object of an ``image_hw`` (height, width) image from its M×N
    probability grid ``probs`` over ``box`` (x1, y1, x2, y2, image pixels); see the
    module doc. ``grid_offset`` (dx, dy): the grid lies that many pixels right and down
    of the box (see :func:`grid_offset`). Pixels outside the image are cut off."""
    grid = np.ascontiguousarray(np.asarray(probs, np.float32).reshape(np.shape(probs)[-2:]))
    gh, gw = grid.shape
    x1, y1, x2, y2 = (float(v) for v in box)
    x1, x2 = x1 + grid_offset[0], x2 + grid_offset[0]
    y1, y2 = y1 + grid_offset[1], y2 + grid_offset[1]
    height, width = int(image_hw[0]), int(image_hw[1])
    cw, ch = max(x2 - x1, 1e-3) / gw, max(y2 - y1, 1e-3) / gh  # cell size, px
    # pixel centres within half a cell beyond the grid still see the padding's slope
    c0 = max(0, math.floor(x1 - 0.5 * cw - 0.5))
    c1 = min(width, math.ceil(x2 + 0.5 * cw - 0.5) + 1)
    r0 = max(0, math.floor(y1 - 0.5 * ch - 0.5))
    r1 = min(height, math.ceil(y2 + 0.5 * ch - 0.5) + 1)
    if c0 >= c1 or r0 >= r1 or not gh or not gw:
        return ObjectMask(0, 0, np.zeros((0, 0), bool))
    # destination pixel (c, r) of the crop samples grid position (u, v), cell centres at
    # integers: u = (c0 + c + 0.5 - x1) / cw - 0.5
    affine = np.array(
        [[1 / cw, 0.0, (c0 + 0.5 - x1) / cw - 0.5], [0.0, 1 / ch, (r0 + 0.5 - y1) / ch - 0.5]],
        np.float64,
    )
    sampled = cv2.warpAffine(
        grid, affine, (c1 - c0, r1 - r0),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT, borderValue=0.0,
    )  # fmt: skip
    return _tight(c0, r0, sampled > threshold)


def grid_offset(input_hw: tuple[int, int], image_hw: tuple[int, int]) -> tuple[float, float]:
    """(dx, dy) in image pixels between a Mask R-CNN box and its mask grid, for a model
    whose ``input_hw`` input was resized from an ``image_hw`` image (height, width).

    torchvision's RoIAlign (without pixel alignment) samples the training masks half an
    input pixel right of and below the box's own frame, so the grid it learns is there."""
    return 0.5 * image_hw[1] / input_hw[1], 0.5 * image_hw[0] / input_hw[0]


def paste_objects(
    probs: np.ndarray,
    boxes: np.ndarray,
    image_hw: tuple[int, int],
    grid_offset: tuple[float, float] = (0.0, 0.0),
) -> list[ObjectMask]:
    """:func:`paste_object` for K grids (K×M×M or K×1×M×M) over K boxes (K×4)."""
    probs = np.asarray(probs, np.float32)
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    grids: np.ndarray | list[np.ndarray] = (
        probs.reshape(len(boxes), *probs.shape[-2:]) if len(boxes) else []
    )
    return [paste_object(g, b, image_hw, grid_offset) for g, b in zip(grids, boxes, strict=True)]


def instance_map(objects: Sequence[ObjectMask], image_hw: tuple[int, int]) -> np.ndarray:
    """H×W uint16 map of the objects: pixel = k + 1 for ``objects[k]``, 0 = none. Where
    objects overlap, the one earlier in the list wins (pass them best score first)."""
    if len(objects) > 65535:
        raise ValueError(f"{len(objects)} objects do not fit a 16-bit object map")
    out = np.zeros(image_hw, np.uint16)
    for k in range(len(objects) - 1, -1, -1):
        o = objects[k]
        h, w = o.crop.shape
        if h and w:
            out[o.y0 : o.y0 + h, o.x0 : o.x0 + w][o.crop] = k + 1
    return out
