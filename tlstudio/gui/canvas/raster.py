"""Painting into a label map (Qt-free, numpy only).

Coordinates are image pixels as in :mod:`tlstudio.core.annotations`: pixel
``(col, row)`` covers ``[col, col + 1) × [row, row + 1)`` and its centre is
``(col + 0.5, row + 0.5)``. A pixel is painted when its *centre* is covered, so
a polygon whose corners lie on pixel edges fills exactly the pixels it encloses.

Every function returns the dirty rectangle ``(x0, y0, x1, y1)`` (column/row
ranges, end exclusive, clipped to the map) or None when nothing was touched.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Rect = tuple[int, int, int, int]


def _clip(label: np.ndarray, x0: float, y0: float, x1: float, y1: float) -> Rect | None:
    h, w = label.shape[:2]
    cx0, cy0 = max(0, int(np.floor(x0))), max(0, int(np.floor(y0)))
    cx1, cy1 = min(w, int(np.ceil(x1))), min(h, int(np.ceil(y1)))
    if cx0 >= cx1 or cy0 >= cy1:
        return None
    return cx0, cy0, cx1, cy1


def paint_segment(
    label: np.ndarray,
    p0: tuple[float, float],
    p1: tuple[float, float],
    radius: float,
    value: int,
) -> Rect | None:
    """Set every pixel whose centre lies within ``radius`` px of the segment p0–p1.

    A round brush dragged from ``p0`` to ``p1`` (both in image pixels); ``p0 == p1``
    paints one disc. ``radius`` is at least 0.71 px so a click always hits a pixel."""
    radius = max(float(radius), 0.71)
    (ax, ay), (bx, by) = (float(p0[0]), float(p0[1])), (float(p1[0]), float(p1[1]))
    rect = _clip(
        label,
        min(ax, bx) - radius - 1,
        min(ay, by) - radius - 1,
        max(ax, bx) + radius + 1,
        max(ay, by) + radius + 1,
    )
    if rect is None:
        return None
    x0, y0, x1, y1 = rect
    px = np.arange(x0, x1, dtype=np.float64)[None, :] + 0.5
    py = np.arange(y0, y1, dtype=np.float64)[:, None] + 0.5
    vx, vy = bx - ax, by - ay
    length2 = vx * vx + vy * vy
    if length2 > 0:
        t = np.clip(((px - ax) * vx + (py - ay) * vy) / length2, 0.0, 1.0)
    else:
        t = np.zeros((1, 1))
    dx = px - (ax + t * vx)
    dy = py - (ay + t * vy)
    hit = dx * dx + dy * dy <= radius * radius
    if not hit.any():
        return None
    label[y0:y1, x0:x1][hit] = value
    return rect


def fill_polygon(
    label: np.ndarray, vertices: Sequence[tuple[float, float]], value: int
) -> Rect | None:
    """Set every pixel whose centre lies inside the polygon (even-odd rule).

    ``vertices`` in image pixels, at least 3, the closing edge implied."""
    pts = np.asarray(vertices, dtype=np.float64).reshape(-1, 2)
    if len(pts) < 3:
        return None
    rect = _clip(label, pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max())
    if rect is None:
        return None
    x0, y0, x1, y1 = rect
    ax, ay = pts[:, 0], pts[:, 1]
    bx, by = np.roll(ax, -1), np.roll(ay, -1)
    cy = np.arange(y0, y1, dtype=np.float64)[:, None] + 0.5  # row centres, rows × 1
    # an edge crosses the row centre when one end is above and the other at or below it
    crosses = (ay[None, :] <= cy) != (by[None, :] <= cy)
    with np.errstate(divide="ignore", invalid="ignore"):
        xs = ax[None, :] + (cy - ay[None, :]) * (bx - ax)[None, :] / (by - ay)[None, :]
    xs = np.where(crosses, xs, np.inf)
    xs.sort(axis=1)
    cx = np.arange(x0, x1, dtype=np.float64) + 0.5
    inside = np.zeros((y1 - y0, x1 - x0), dtype=bool)
    for k in range(0, xs.shape[1] - 1, 2):
        left, right = xs[:, k : k + 1], xs[:, k + 1 : k + 2]
        inside |= (cx[None, :] >= left) & (cx[None, :] < right)
    if not inside.any():
        return None
    label[y0:y1, x0:x1][inside] = value
    return rect
