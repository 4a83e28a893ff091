"""A demo project of synthetic scenes with exact ground truth for every label kind.

Each image is an RGB PNG of ``size``×``size`` px: a noisy, textured background
with one or two flat-coloured shapes (circle, square, triangle) that never
touch. Every shape is rasterised once into a boolean mask (``cv2.circle`` /
``cv2.fillPoly``, 8-connected, no anti-aliasing); that same mask paints the
pixels and the label map, so image and annotations agree to the pixel:

- tag: the class of the shape with the most pixels (single-label project);
- box per shape: the tight pixel rectangle, ``(xmin, ymin, xmax + 1, ymax + 1)``;
- landmark set per shape on the "Shape 5" template: top, right, bottom, left
  (extreme pixels of the shape) and centre (pixel nearest the centroid), each
  at the pixel centre ``(col + 0.5, row + 0.5)``;
- mask: label map, pixel value = class id of the shape covering it;
- object per shape (``project.instances``): its pixels and class.

Images get a stratified 70/15/15 train/val/test split. Everything depends
only on ``seed``.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .annotations import VISIBLE, Box, Instance, InstanceLayer, LandmarkSet, Point
from .errors import ProjectError
from .labelset import LandmarkTemplate, builtin_templates
from .project import Project
from .splits import random_split

SHAPES = ("circle", "square", "triangle")
CLASS_COLORS = {"circle": "#e15759", "square": "#4e79a7", "triangle": "#59a14f"}
SHAPE_TEMPLATE = LandmarkTemplate(
    name="Shape 5",
    points=("top", "right", "bottom", "left", "centre"),
    skeleton=((0, 1), (1, 2), (2, 3), (3, 0)),
    flip_pairs=((1, 3),),
)
GAP = 6  # minimum empty pixels between the bounding boxes of two shapes


@dataclass(frozen=True)
class DemoShape:
    """One rasterised shape: its class name, RGB colour and boolean pixel mask."""

    kind: str
    color: tuple[int, int, int]
    mask: np.ndarray  # H×W bool

    def box(self) -> tuple[float, float, float, float]:
        """Tight box in image pixels: (xmin, ymin, xmax + 1, ymax + 1)."""
        ys, xs = np.nonzero(self.mask)
        return float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)

    def landmarks(self) -> tuple[tuple[float, float], ...]:
        """Top, right, bottom, left and centre, as pixel centres (col + 0.5, row + 0.5)."""
        ys, xs = np.nonzero(self.mask)

        def middle(values: np.ndarray) -> int:
            return int(np.sort(values)[len(values) // 2])

        top = (middle(xs[ys == ys.min()]), int(ys.min()))
        bottom = (middle(xs[ys == ys.max()]), int(ys.max()))
        left = (int(xs.min()), middle(ys[xs == xs.min()]))
        right = (int(xs.max()), middle(ys[xs == xs.max()]))
        # the shapes are convex, so the centroid's pixel is almost always inside;
        # otherwise take the shape pixel nearest to it
        mx, my = xs.mean(), ys.mean()
        k = int(np.argmin((xs - mx) ** 2 + (ys - my) ** 2))
        centre = (int(xs[k]), int(ys[k]))
        return tuple((c + 0.5, r + 0.5) for c, r in (top, right, bottom, left, centre))


def render_scene(
    rng: np.random.Generator, size: int, primary: str
) -> tuple[np.ndarray, list[DemoShape]]:
    """One RGB uint8 image and its shapes; ``primary`` is the class of the largest shape."""
    image = _background(rng, size)
    shapes: list[DemoShape] = []
    taken: list[tuple[int, int, int, int]] = []
    plans = [(primary, rng.uniform(0.06, 0.13))]
    if rng.random() < 0.5:
        plans.append((SHAPES[int(rng.integers(len(SHAPES)))], rng.uniform(0.015, 0.035)))
    for kind, area_fraction in plans:
        for _ in range(60):
            mask = _place(rng, kind, area_fraction * size * size, size, taken)
            if mask is not None:
                break
        else:
            continue  # no room left for a second shape: keep the scene with one
        ys, xs = np.nonzero(mask)
        taken.append((int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())))
        color = _shape_color(rng)
        image[mask] = color
        shapes.append(DemoShape(kind, color, mask))
    assert shapes, "the largest shape always fits an empty canvas"
    return image, shapes


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    base = rng.uniform(40, 130, 3)
    coarse = rng.normal(0, 28, (max(2, size // 12), max(2, size // 12), 3)).astype(np.float32)
    texture = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
    ramp = np.linspace(-1, 1, size, dtype=np.float32)
    angle = rng.uniform(0, 2 * math.pi)
    gradient = 25 * (np.cos(angle) * ramp[None, :] + np.sin(angle) * ramp[:, None])
    noise = rng.normal(0, 12, (size, size, 3))
    img = base + texture + gradient[..., None] + noise
    out: np.ndarray = np.clip(img, 0, 255).astype(np.uint8)
    return out


def _shape_color(rng: np.random.Generator) -> tuple[int, int, int]:
    hsv = np.array(
        [[[rng.integers(0, 180), rng.integers(150, 256), rng.integers(180, 256)]]], np.uint8
    )
    r, g, b = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0]
    return int(r), int(g), int(b)


def _outline(rng: np.random.Generator, kind: str, area: float) -> np.ndarray | float:
    """Polygon vertices around (0, 0) (float N×2), or a circle's radius."""
    angle = rng.uniform(0, 2 * math.pi)
    if kind == "circle":
        return math.sqrt(area / math.pi)
    if kind == "square":
        half = math.sqrt(area) / 2
        corners = np.array([[-half, -half], [half, -half], [half, half], [-half, half]])
    else:  # equilateral triangle
        radius = math.sqrt(4 * area / math.sqrt(3)) / math.sqrt(3)
        a = np.array([0, 2 * math.pi / 3, 4 * math.pi / 3])
        corners = radius * np.stack([np.cos(a), np.sin(a)], axis=1)
    c, s = math.cos(angle), math.sin(angle)
    turned: np.ndarray = corners @ np.array([[c, s], [-s, c]])
    return turned


def _place(
    rng: np.random.Generator,
    kind: str,
    area: float,
    size: int,
    taken: list[tuple[int, int, int, int]],
) -> np.ndarray | None:
    """Rasterise ``kind`` at a random spot clear of ``taken`` boxes, or None if it does not fit."""
    outline = _outline(rng, kind, area)
    if isinstance(outline, float):
        r = max(2, round(outline))
        lo, hi = np.array([-r, -r]), np.array([r, r])
    else:
        lo, hi = np.floor(outline.min(0)) - 1, np.ceil(outline.max(0)) + 1
    # keep one pixel of background at the border so every shape is fully in view
    low = np.ceil(1 - lo).astype(int)
    high = np.floor(size - 2 - hi).astype(int)
    if (high < low).any():
        return None
    cx, cy = int(rng.integers(low[0], high[0] + 1)), int(rng.integers(low[1], high[1] + 1))
    x0, y0, x1, y1 = cx + int(lo[0]), cy + int(lo[1]), cx + int(hi[0]), cy + int(hi[1])
    for a0, b0, a1, b1 in taken:
        if x0 <= a1 + GAP and a0 <= x1 + GAP and y0 <= b1 + GAP and b0 <= y1 + GAP:
            return None
    mask = np.zeros((size, size), np.uint8)
    if isinstance(outline, float):
        cv2.circle(mask, (cx, cy), r, 1, thickness=-1, lineType=cv2.LINE_8)
    else:
        pts = np.round(outline + (cx, cy)).astype(np.int32)
        cv2.fillPoly(mask, [pts], 1, lineType=cv2.LINE_8)
    return mask.astype(bool)


def create_demo_project(
    root: str | Path, n_images: int = 48, size: int = 128, seed: int = 0
) -> Project:
    """Create a project at ``root`` (new or empty folder) with ``n_images`` synthetic scenes.

    Images are written to ``root/images/demo_NNN.png``; see the module docstring
    for the labels. Returns the open project (the caller closes it)."""
    root = Path(root)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise ProjectError(f"{root}: the demo needs a new or empty folder")
    if n_images < 1 or size < 32:
        raise ProjectError(
            f"demo needs at least 1 image of at least 32 px (got {n_images}, {size})"
        )
    existed = root.exists()
    project = Project.create(root)
    try:
        _fill(project, n_images, size, seed)
    except BaseException:
        project.close()
        # the folder was new or empty: leave it as it was
        for child in project.root.iterdir():
            if child.is_dir():
                shutil.rmtree(child)
            else:
                child.unlink()
        if not existed:
            project.root.rmdir()
        raise
    return project


def _fill(project: Project, n_images: int, size: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    folder = project.root / "images"
    folder.mkdir()
    primaries = [SHAPES[i % len(SHAPES)] for i in range(n_images)]
    rng.shuffle(primaries)
    scenes = []
    for i, primary in enumerate(primaries):
        image, shapes = render_scene(rng, size, primary)
        path = folder / f"demo_{i:03d}.png"
        if not cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
            raise ProjectError(f"{path}: could not write the demo image")
        scenes.append((path, shapes))

    report = project.add_images([p for p, _ in scenes])
    if report.failed or len(report.added) != n_images:
        raise ProjectError(f"{folder}: demo images could not be added ({report.failed[:3]})")
    with project.transaction():
        class_ids = {k: project.add_class(k, CLASS_COLORS[k]).id for k in SHAPES}
        for template in builtin_templates():
            project.ensure_template(template)
        shape_template = project.ensure_template(SHAPE_TEMPLATE)
        assert shape_template.id is not None  # a stored template
        for path, shapes in scenes:
            rec = project.image_by_path(path)
            assert rec is not None  # just added
            label = np.zeros((size, size), np.uint16)
            numbers = np.zeros((size, size), np.uint16)
            objects = []
            largest = max(shapes, key=lambda s: int(s.mask.sum()))
            project.set_tags(rec.id, [class_ids[largest.kind]])
            for number, shape in enumerate(shapes, start=1):
                cid = class_ids[shape.kind]
                label[shape.mask] = cid
                numbers[shape.mask] = number
                objects.append(Instance(number, cid))
                project.add_box(rec.id, Box(cid, *shape.box()))
                points = tuple(Point(x, y, VISIBLE) for x, y in shape.landmarks())
                project.add_landmark_set(rec.id, LandmarkSet(shape_template.id, points, cid))
            project.set_mask(rec.id, label)
            project.instances.write_raw(rec.id, InstanceLayer(numbers, tuple(objects)))
        project.set_splits(random_split(project, (0.7, 0.15, 0.15), seed=seed))
