"""Live augmentation preview: a 3×3 grid of augmented versions of one image, with its
boxes, landmarks and mask drawn on each, so the user sees the labels follow the image.

Tiles are made by a :class:`~tlstudio.gui.workers.jobs.BackgroundJob` in the preview's
one-thread pool (never on the GUI thread): the job opens its own connection to the
project (SQLite connections belong to one thread), builds a
:class:`~tlstudio.ml.data.ProjectDataset` for the image with the training transform,
draws each sample un-normalised into a :class:`QImage` (painting on QImage is allowed
off the GUI thread; QPixmap is not) and hands the images back.
Requests that arrive while one renders are coalesced: only the newest runs next.

The global torch RNG is seeded per tile inside ``torch.random.fork_rng``, so a seed
always gives the same tiles and the caller's RNG state is left as it was. Mix-up and
CutMix mix whole batches, so they do not show here.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QImage, QPainter, QPen, QPixmap
from PySide6.QtWidgets import QGridLayout, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from tlstudio.gui.workers.jobs import BackgroundJob, job_pool

TILES = 9
DEBOUNCE_MS = 200
_POINT_COLORS = ("#e15759", "#f28e2b", "#edc948", "#59a14f", "#76b7b2", "#4e79a7", "#b07aa1",
                 "#ff9da7", "#9c755f", "#bab0ac")  # fmt: skip


@dataclass(frozen=True)
class PreviewRequest:
    """What to preview. ``image_ids``: candidates in order of preference; the first one
    with labels for ``task`` is shown (else the first one, unlabelled)."""

    root: str  # project folder
    task: str
    image_ids: tuple[int, ...]
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    augment: Any = None  # AugmentConfig or None (off)
    template_id: int | None = None
    multi_label: bool = False
    tile: int = 104  # tile edge in device pixels: samples are made at min(input_size, tile)


@dataclass
class PreviewResult:
    images: list[QImage]
    # per tile: "boxes" K×4 xyxy + "labels" (1..C), "keypoints" P×3 (x, y, visibility) in
    # input-frame pixels, "tags" (class indices 0..C-1) for classification
    samples: list[dict[str, np.ndarray]]
    image_id: int
    image_name: str
    task: str  # the task whose labels are drawn ("autoencode" = image only)
    seed: int
    input_size: int  # the training input size
    frame_size: int  # the size the samples were made at (the tile's): coordinates' frame
    note: str = ""
    request: PreviewRequest | None = field(default=None, repr=False)


def render_preview(req: PreviewRequest, seed: int, count: int = TILES) -> PreviewResult:
    """Make ``count`` augmented tiles of the request's image. Runs in a worker thread."""
    import torch

    from tlstudio.core.project import Project
    from tlstudio.ml.data import DatasetError, ProjectDataset
    from tlstudio.ml.transforms import build_train_transform

    # Geometric and colour augmentations are relative (angles, zoom factors, crop area
    # fractions), so samples made at the tile's size look as they would at the input size
    # once shrunk to a tile; and tensors under torch's grain size (32768 elements) stay
    # on this thread instead of waking the OpenMP pool a training run may need.
    size = min(int(req.input_size), int(req.tile))
    project = Project.open(req.root)
    try:
        classes = project.classes()
        colors = [QColor(c.color) for c in classes]
        names = [c.name for c in classes]
        ds = None
        used = req.task
        tasks = (req.task,) if req.task == "autoencode" else (req.task, "autoencode")
        for task in tasks:
            for image_id in req.image_ids:
                try:
                    candidate = ProjectDataset(
                        project, task, [image_id], size, req.mean, req.std,
                        template_id=req.template_id if task == "landmarks" else None,
                        multi_label=req.multi_label,
                    )  # fmt: skip
                except DatasetError:
                    continue
                if len(candidate):
                    ds, used = candidate, task
                    break
            if ds is not None:
                break
        if ds is None:
            raise ValueError("no image to preview")
        image_id = ds.image_ids[0]
        name = project.image(image_id).name
    finally:
        project.close()
    ds.transform = build_train_transform(used, req.augment, size, ds.flip_perm)
    skeleton = tuple(ds.template.skeleton) if ds.template is not None else ()
    mean = torch.tensor(req.mean).view(3, 1, 1)
    std = torch.tensor(req.std).view(3, 1, 1)
    images, samples = [], []
    with torch.random.fork_rng(devices=[]):
        for k in range(count):
            torch.manual_seed(seed * 1009 + k)
            image, target = ds[0]
            rgb = ((image * std + mean) * 255.0).round().clamp(0, 255).to(torch.uint8)
            rgb_np = rgb.permute(1, 2, 0).contiguous().numpy()
            sample: dict[str, np.ndarray] = {
                key: target[key].numpy().copy()
                for key in ("boxes", "labels", "keypoints", "mask", "label") if key in target
            }  # fmt: skip
            if "masks" in target:  # objects: their classes as a label map, each outlined
                masks = target["masks"].numpy().astype(np.int64)
                sample["mask"] = (masks * sample["labels"][:, None, None]).max(0, initial=0)
            if used == "classify" and "labels" in sample:  # multi-hot: the tags' indices
                sample["tags"] = np.flatnonzero(sample.pop("labels") > 0.5)
            elif "label" in sample:
                sample["tags"] = np.atleast_1d(sample.pop("label"))
            images.append(_draw_tile(rgb_np, sample, colors, names, skeleton, req.tile))
            sample.pop("mask", None)
            samples.append(sample)
    note = ""
    if used != req.task:
        note = f"this image has no {req.task} labels: showing the image only"
    elif req.augment is None or req.augment.is_off:
        note = "augmentation off: every epoch sees the image as shown"
    return PreviewResult(
        images, samples, image_id, name, used, seed, req.input_size, size, note, req
    )


def _draw_tile(
    rgb: np.ndarray,
    sample: dict[str, np.ndarray],
    colors: list[QColor],
    names: list[str],
    skeleton: tuple[tuple[int, int], ...],
    tile: int,
) -> QImage:
    """The sample's image scaled to ``tile`` px with its mask, boxes and points drawn."""
    rgb = np.ascontiguousarray(rgb)
    h, w = rgb.shape[:2]
    mask = sample.get("mask")
    if mask is not None and mask.any():
        lut = np.zeros((len(colors) + 1, 3), np.float32)
        for i, c in enumerate(colors):
            lut[i + 1] = (c.red(), c.green(), c.blue())
        m = np.clip(mask.astype(np.int64), 0, len(colors))
        on = m > 0
        blended = 0.55 * rgb[on].astype(np.float32) + 0.45 * lut[m[on]]
        rgb = rgb.copy()
        rgb[on] = blended.astype(np.uint8)
        # outline each region in its full class colour so it reads on any background
        edge = np.zeros_like(on)
        edge[:, 1:] |= m[:, 1:] != m[:, :-1]
        edge[:, :-1] |= m[:, 1:] != m[:, :-1]
        edge[1:, :] |= m[1:, :] != m[:-1, :]
        edge[:-1, :] |= m[1:, :] != m[:-1, :]
        edge &= on
        rgb[edge] = lut[m[edge]].astype(np.uint8)
    img = QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()
    img = img.scaled(
        tile, tile, Qt.AspectRatioMode.IgnoreAspectRatio, Qt.TransformationMode.SmoothTransformation
    ).convertToFormat(QImage.Format.Format_ARGB32_Premultiplied)
    sx, sy = tile / w, tile / h
    p = QPainter(img)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    boxes = sample.get("boxes")
    if boxes is not None:
        for (x1, y1, x2, y2), label in zip(boxes.tolist(), sample["labels"].tolist(), strict=True):
            color = colors[label - 1] if 0 < label <= len(colors) else QColor("yellow")
            p.setPen(QPen(color, 2))
            p.setBrush(Qt.BrushStyle.NoBrush)
            p.drawRect(QRectF(x1 * sx, y1 * sy, (x2 - x1) * sx, (y2 - y1) * sy))
    kps = sample.get("keypoints")
    if kps is not None:
        pts = [(QPointF(x * sx, y * sy), v > 0) for x, y, v in kps.tolist()]
        p.setPen(QPen(QColor(255, 255, 255, 200), 1.2))
        for a, b in skeleton:
            if a < len(pts) and b < len(pts) and pts[a][1] and pts[b][1]:
                p.drawLine(pts[a][0], pts[b][0])
        p.setPen(QPen(QColor("black"), 1))
        for i, (pt, visible) in enumerate(pts):
            if visible:
                p.setBrush(QColor(_POINT_COLORS[i % len(_POINT_COLORS)]))
                p.drawEllipse(pt, 3.2, 3.2)
    tags = sample.get("tags")
    if tags is not None:  # classification: the class tag(s) as badges in the corner
        font = p.font()
        font.setPixelSize(max(9, tile // 10))
        p.setFont(font)
        x = 3.0
        for index in tags.tolist():
            if not 0 <= index < len(names):
                continue
            text = names[index]
            width = p.fontMetrics().horizontalAdvance(text) + 8
            rect = QRectF(x, 3, width, font.pixelSize() + 5)
            p.setPen(Qt.PenStyle.NoPen)
            p.setBrush(colors[index])
            p.drawRoundedRect(rect, 3, 3)
            p.setPen(QColor("white"))
            p.drawText(rect, Qt.AlignmentFlag.AlignCenter, text)
            x += width + 3
    p.end()
    return img


class AugmentPreview(QWidget):
    """The grid, a Shuffle button and a caption. Call :meth:`set_request` on every change
    (it debounces); :meth:`shuffle` draws new random augmentations."""

    updated = Signal()  # new tiles are shown
    failed = Signal(str)

    def __init__(self, tile: int = 104, parent: QWidget | None = None):
        super().__init__(parent)
        self.tile = tile
        # one render at a time: they share torch's global RNG
        self._pool = job_pool(self, 1, "augment-preview")
        self._request: PreviewRequest | None = None
        self._pending = False
        self._busy = False
        self._active = True
        self._seed = random.randrange(1 << 30)
        self._result: PreviewResult | None = None
        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(DEBOUNCE_MS)
        self._debounce.timeout.connect(self._start)

        grid = QGridLayout()
        grid.setSpacing(3)
        self.tiles: list[QLabel] = []
        for i in range(TILES):
            label = QLabel()
            label.setFixedSize(tile, tile)
            label.setAlignment(Qt.AlignmentFlag.AlignCenter)
            label.setStyleSheet("background: palette(dark); border-radius: 2px;")
            grid.addWidget(label, i // 3, i % 3)
            self.tiles.append(label)
        self.shuffle_button = QPushButton("Shuffle")
        self.shuffle_button.setObjectName("shuffleButton")
        self.shuffle_button.setToolTip("Draw nine new random augmentations of the image")
        self.shuffle_button.clicked.connect(self.shuffle)
        self.caption = QLabel("")
        self.caption.setObjectName("previewCaption")
        self.caption.setWordWrap(True)
        self.caption.setStyleSheet("color: palette(mid);")
        self.caption.setMaximumWidth(3 * tile + 6)
        top = QHBoxLayout()
        top.addWidget(QLabel("<b>Preview</b>"))
        top.addStretch(1)
        top.addWidget(self.shuffle_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        layout.addLayout(top)
        layout.addLayout(grid)
        layout.addWidget(self.caption)
        layout.addStretch(1)

    # -- requests -------------------------------------------------------------------
    def tile_pixels(self) -> int:
        """Tile edge in device pixels (twice :attr:`tile` on a 2× screen)."""
        return max(16, round(self.tile * self.devicePixelRatioF()))

    @property
    def seed(self) -> int:
        return self._seed

    def request(self) -> PreviewRequest | None:
        return self._request

    def set_request(self, request: PreviewRequest | None, immediate: bool = False) -> None:
        """Preview ``request`` (None clears the grid) after a short pause, keeping the seed
        so that the change of options is what the user sees."""
        self._request = request
        if request is None:
            self._debounce.stop()
            self._result = None
            for label in self.tiles:
                label.clear()
            self.caption.setText("")
            return
        if immediate:
            self._debounce.stop()
            self._start()
        else:
            self._debounce.start()

    def shuffle(self, seed: int | None = None) -> None:
        """New random augmentations now (``seed`` for a known draw)."""
        self._seed = random.randrange(1 << 30) if seed is None else int(seed)
        self._debounce.stop()
        self._start()

    def set_active(self, active: bool) -> None:
        """Inactive (while a run trains): no renders, the Shuffle button is disabled."""
        self._active = active
        self.shuffle_button.setEnabled(active)
        if active and self._pending:
            self._start()

    def _start(self) -> None:
        if self._request is None:
            return
        if self._busy or not self._active:
            self._pending = True
            return
        self._pending = False
        self._busy = True
        req, seed = self._request, self._seed
        job = BackgroundJob(
            lambda _token, _progress: render_preview(req, seed), context=self, needs_ml=True
        )
        job.succeeded.connect(self._rendered)
        job.failed.connect(lambda _kind, message: self._render_failed(message))
        job.start(self._pool)
        if self._result is None:
            self.caption.setText("Preparing preview…")

    def _rendered(self, result: PreviewResult) -> None:
        self._busy = False
        if self._pending:
            self._start()  # something changed meanwhile: that render supersedes this one
            if result.request != self._request or result.seed != self._seed:
                return
        self._result = result
        dpr = self.devicePixelRatioF()
        for label, image in zip(self.tiles, result.images, strict=False):
            pixmap = QPixmap.fromImage(image)
            pixmap.setDevicePixelRatio(image.width() / self.tile if image.width() else dpr)
            label.setPixmap(pixmap)
        text = f"{result.image_name} at {result.input_size} px"
        if result.note:
            text += f" — {result.note}"
        self.caption.setText(text)
        self.updated.emit()

    def _render_failed(self, message: str) -> None:
        self._busy = False
        self.caption.setText(f"No preview: {message}")
        self.failed.emit(message)
        if self._pending:
            self._start()

    # -- results (tests, screenshots) ------------------------------------------------
    def result(self) -> PreviewResult | None:
        return self._result

    def images(self) -> list[QImage]:
        return [] if self._result is None else list(self._result.images)

    def is_busy(self) -> bool:
        return self._busy or self._pending or self._debounce.isActive()

    def wait(self, msecs: int = -1) -> bool:
        """Wait for the render pool (tests, shutdown); results arrive via the event loop."""
        return self._pool.waitForDone(msecs)
