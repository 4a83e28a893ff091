"""The pipeline behind :func:`tlstudio.ml.runner.predict`: images in, stored predictions out.

Three things keep the model busy:

- **reading overlaps computing**: a reader thread (:class:`BatchReader`) decodes, resizes
  and normalises the next batches while torch runs the current one (OpenCV, PIL and
  numpy release the GIL while they work); with a thread budget of 4 or more it reads with
  two threads;
- **postprocessing per batch**: each output becomes numpy once per batch, not once per
  image (classification and autoencoder outputs; boxes, points and masks are scaled to
  image pixels per image);
- **one transaction**: rows are stored together when the run ends, also when it is
  cancelled or fails (what was predicted is kept), or earlier when ``MAX_BUFFER_BYTES``
  of rows wait (long segmentation runs), instead of one commit and disk sync per batch.

The network input is exactly the training pipeline's (:class:`tlstudio.ml.data.ProjectDataset`):
uint8 RGB through the display window, the same resize, then ``(x / 255 - mean) / std`` in
float32 per channel, here through a 256-entry table per channel computed with those
float32 operations (the same numbers, without a pass over every pixel for each).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tlstudio.core.project import Project
from tlstudio.core.runs import PredictionRow, RunStore, prediction_row
from tlstudio.runtime.images import read_rgb, resize_square

from .tasks.base import to_image_frame

MAX_BUFFER_BYTES = 64 << 20
"""Rows waiting to be stored are written once they hold this many bytes."""


def normalise_table(mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """3×256 float32: ``(v / 255 - mean[c]) / std[c]`` for every uint8 value ``v``, in the
    float32 operations the training pipeline applies per pixel."""
    v = np.arange(256, dtype=np.float32) / np.float32(255.0)
    m = np.asarray(mean, dtype=np.float32)[:, None]
    s = np.asarray(std, dtype=np.float32)[:, None]
    return (v[None, :] - m) / s


def input_batch(images: Sequence[np.ndarray], table: np.ndarray) -> np.ndarray:
    """S×S×3 uint8 RGB images → N×3×S×S float32 network input (see :func:`normalise_table`)."""
    n = len(images)
    h, w = images[0].shape[:2]
    out = np.empty((n, 3, h, w), np.float32)
    for i, rgb in enumerate(images):
        for c in range(3):
            np.take(table[c], rgb[..., c], out=out[i, c])
    return out


@dataclass
class Batch:
    """One batch read: its position in the list, the input and each stored (height, width)."""

    start: int
    inputs: np.ndarray  # N×3×S×S float32
    orig_sizes: list[tuple[int, int]]


class BatchReader:
    """Reads ``paths`` in batches of ``batch_size`` in a background thread, up to ``ahead``
    batches before they are used; ``threads`` threads decode the images of a batch.

    Iterate over it for :class:`Batch` es in order; an unreadable image raises its
    :class:`~tlstudio.runtime.images.ImageReadError` when its batch is reached (the
    batches before it are delivered first). :meth:`close` (or leaving a ``with`` block)
    stops the thread."""

    _END = object()

    def __init__(
        self,
        paths: Sequence[Path],
        size: int,
        mean: Sequence[float],
        std: Sequence[float],
        batch_size: int,
        *,
        threads: int = 1,
        ahead: int = 2,
    ):
        self.paths = list(paths)
        self.size = int(size)
        self.table = normalise_table(mean, std)
        self.batch_size = max(1, int(batch_size))
        self.threads = max(1, int(threads))
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max(1, ahead))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tlstudio-predict-reader")
        self._thread.daemon = True
        self._thread.start()

    def _load(self, path: Path) -> tuple[np.ndarray, tuple[int, int]]:
        rgb = read_rgb(path)
        return resize_square(rgb, self.size), (int(rgb.shape[0]), int(rgb.shape[1]))

    def _run(self) -> None:
        pool = ThreadPoolExecutor(self.threads - 1) if self.threads > 1 else None
        try:
            for start in range(0, len(self.paths), self.batch_size):
                if self._stop.is_set():
                    return
                chunk = self.paths[start : start + self.batch_size]
                loaded = list(pool.map(self._load, chunk) if pool else map(self._load, chunk))
                item: Any = Batch(
                    start, input_batch([a for a, _ in loaded], self.table), [s for _, s in loaded]
                )
                if not self._put(item):
                    return
        except BaseException as exc:  # delivered to the consumer at this batch
            self._put(exc)
            return
        finally:
            if pool is not None:
                pool.shutdown(wait=True)
        self._put(self._END)

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Iterator[Batch]:
        while True:
            item = self._queue.get()
            if item is self._END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self._stop.set()
        self._thread.join()

    def __enter__(self) -> BatchReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PredictionWriter:
    """Collects a run's prediction rows and stores them in one transaction (see the
    module's docstring); :meth:`flush` writes what is waiting."""

    def __init__(self, project: Project, run_id: int, max_bytes: int = MAX_BUFFER_BYTES):
        self.runs = RunStore(project)
        self.run_id = run_id
        self.max_bytes = max_bytes
        self.rows: list[PredictionRow] = []
        self._bytes = 0
        self.stored = 0

    def add(self, row: PredictionRow) -> None:
        self.rows.append(row)
        self._bytes += row.size_bytes
        if self._bytes >= self.max_bytes:
            self.flush()

    def flush(self) -> None:
        if self.rows:
            self.runs.set_predictions(self.run_id, self.rows)
            self.stored += len(self.rows)
        self.rows, self._bytes = [], 0


#: outputs without coordinates, per task: what the stored payload reads
_FLAT_KEYS = {"classify": ("probs",), "autoencode": ("latent", "error")}
_FLAT_EXTRAS = ("spread",)  # an ensemble's per-class spread between its members

PayloadFn = Callable[[str, dict[str, Any], Any], tuple[dict, np.ndarray | None, float | None]]


def batch_rows(
    task: str,
    preds: list[dict[str, Any]],
    image_ids: Sequence[int],
    orig_sizes: Sequence[tuple[int, int]],
    size: int,
    classes: Any,
    payload: PayloadFn,
) -> list[PredictionRow]:
    """Rows to store for one batch of ``model.predict_step`` outputs (network-input frame).
    Outputs without coordinates become numpy once for the batch; boxes, points and masks
    are scaled to each image's pixels. ``payload`` turns one prediction into (payload,
    mask, score) (:func:`tlstudio.ml.runner._payload`)."""
    if task in _FLAT_KEYS:
        keys = [*_FLAT_KEYS[task], *(k for k in _FLAT_EXTRAS if preds and k in preds[0])]
        per_key = {k: _numpy_rows([p[k] for p in preds]) for k in keys}
        per_image = [{k: v[i] for k, v in per_key.items()} for i in range(len(preds))]
    else:
        per_image = [
            to_image_frame({k: _cpu(v) for k, v in p.items()}, (size, size), orig)
            for p, orig in zip(preds, orig_sizes, strict=True)
        ]
    rows = []
    for image_id, pred in zip(image_ids, per_image, strict=True):
        body, mask, score = payload(task, pred, classes)
        rows.append(prediction_row(image_id, body, mask, score))
    return rows


def _numpy_rows(values: list[Any]) -> np.ndarray:
    """Per-image outputs of one key as one numpy array (first axis: images)."""
    if isinstance(values[0], torch.Tensor):
        return torch.stack([v.detach() for v in values]).cpu().numpy()
    return np.asarray(values)


def _cpu(v: Any) -> Any:
    return v.detach().cpu() if isinstance(v, torch.Tensor) else v
