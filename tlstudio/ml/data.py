"""Datasets over a project, following the batch contract of :mod:`tlstudio.ml.tasks.base`.

Every image is read with :func:`tlstudio.core.imageio.read_image`, turned into uint8 RGB
through its display window (:func:`tlstudio.core.windowing.to_display`; grey, 16-bit and
DICOM data become 3 equal channels, alpha is dropped), resized to ``input_size`` ×
``input_size`` (plain resize, aspect ratio not kept; cv2 area averaging when shrinking,
bilinear when enlarging), optionally augmented (:mod:`tlstudio.ml.transforms`) and
normalised with the backbone's mean/std for [0, 1] inputs.

Annotations are read from SQLite once, in the constructor, and kept as plain numpy
arrays already scaled to the input frame, so a dataset pickles into DataLoader workers
without touching the database.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from tlstudio.core.errors import TlsError
from tlstudio.core.project import Project
from tlstudio.ml.augment_config import AugmentConfig
from tlstudio.ml.tasks.base import TASKS
from tlstudio.ml.tasks.registry import unavailable_reasons
from tlstudio.runtime.images import (  # noqa: F401 (re-exported: ml reads images through data)
    ImageReadError,
    read_rgb,
    resize_square,
    to_rgb_uint8,
)

#: Bump when the way pixels reach the network changes (invalidates cached features).
PREPROCESS_VERSION = 1


class DatasetError(TlsError):
    """A dataset cannot be built for the task (no labelled images, unknown template, ...)."""


# --------------------------------------------------------------------------- availability


def available_tasks(project: Project) -> dict[str, str | None]:
    """For each task in :data:`TASKS`: None if the project can train it, else why not."""
    stats = project.stats()
    tagged = sum(1 for usage in stats["classes"].values() if usage["tags"] > 0)
    return unavailable_reasons(
        images=stats["images"],
        labelled=stats["kinds"],
        tagged_classes=tagged,
        multi_label=project.multi_label,
    )


def content_key(project: Project, image_id: int) -> str:
    """The image file's SHA-256 (hex), the key of the feature cache."""
    return project.image(image_id).sha256


def choose_template(project: Project, image_ids: Sequence[int]) -> int | None:
    """The landmark template used by the most of ``image_ids`` (lowest id on ties), or None."""
    counts: Counter[int] = Counter()
    for image_id in image_ids:
        counts.update({s.template_id for s in project.landmark_sets(image_id)})
    if not counts:
        return None
    return min(counts, key=lambda t: (-counts[t], t))


# --------------------------------------------------------------------------- pixels


def load_input_image(path: str | Path, size: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Read ``path`` as size × size × 3 uint8 RGB; also return the stored (height, width).

    Raises :class:`ImageReadError` naming the file on any read failure."""
    rgb = read_rgb(path)
    return resize_square(rgb, size), (int(rgb.shape[0]), int(rgb.shape[1]))


# --------------------------------------------------------------------------- dataset


class _ItemBase(TypedDict):
    """The fields of :class:`_Item` every task fills."""

    image_id: int
    path: str
    sha256: str
    orig_size: tuple[int, int]


@dataclass(frozen=True)
class _Item:
    """One sample's plain data; coordinates already in the input frame."""

    image_id: int
    path: str
    sha256: str
    orig_size: tuple[int, int]  # (height, width) of the stored image
    label: int | None = None  # classify, single-label: 0..C-1
    labels: tuple[int, ...] = ()  # classify, multi-label: indices 0..C-1
    boxes: np.ndarray | None = None  # detect: K×4 float32 xyxy
    box_labels: np.ndarray | None = None  # detect: K int64, 1..C
    keypoints: np.ndarray | None = None  # landmarks: P×3 float32 (x, y, visibility)
    mask: np.ndarray | None = None  # segment: S×S uint8/uint16, 0 = background, 1..C, 255 ignored
    objects: np.ndarray | None = None  # instances: S×S uint16, 0 = none, k = object k (1-based)
    object_labels: np.ndarray | None = None  # instances: K int64, 1..C
    ignore: np.ndarray | None = None  # instances: S×S bool, left out of the metrics


class ProjectDataset(Dataset):
    """Samples of one task from a project: ``(image, target)`` per the batch contract.

    ``image`` is float32 3×S×S (S = ``input_size``), normalised as ``(x / 255 - mean) /
    std``. Coordinates in ``target`` are input-frame pixels. Images that carry no label
    for the task are left out (see :attr:`excluded`): classify needs a tag, detect a box,
    landmarks a set of the chosen template, segment a mask, instances an object (crowd
    objects are left out: like ignore regions, their pixels are not scored); autoencode
    takes all.
    ``transform`` (from :func:`tlstudio.ml.transforms.build_train_transform`) runs on the
    uint8 input-size image before normalisation.
    """

    def __init__(
        self,
        project: Project,
        task: str,
        image_ids: Sequence[int],
        input_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        transform: Any = None,
        template_id: int | None = None,
        multi_label: bool = False,
    ):
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; use one of {', '.join(TASKS)}")
        self.task = task
        self.input_size = int(input_size)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.transform = transform
        self.multi_label = bool(multi_label)
        classes = project.classes()
        self.class_names: list[str] = [c.name for c in classes]
        self._index = {c.id: i for i, c in enumerate(classes)}
        self.template = None
        if task == "landmarks":
            template_id = (
                template_id if template_id is not None else choose_template(project, image_ids)
            )
            if template_id is None:
                raise DatasetError(
                    "no landmark sets on these images; nothing to train landmarks on"
                )
            self.template = project.template(template_id)
        self.template_id = template_id if task == "landmarks" else None
        self.items: list[_Item] = []
        self.excluded: list[int] = []
        for image_id in image_ids:
            item = self._item(project, int(image_id))
            if item is None:
                self.excluded.append(int(image_id))
            else:
                self.items.append(item)
        self._mean_t = torch.tensor(self.mean, dtype=torch.float32).view(3, 1, 1)
        self._std_t = torch.tensor(self.std, dtype=torch.float32).view(3, 1, 1)

    # -- construction ------------------------------------------------------------
    def _item(self, project: Project, image_id: int) -> _Item | None:
        rec = project.image(image_id)
        base: _ItemBase = {
            "image_id": image_id,
            "path": str(project.image_path(rec)),
            "sha256": rec.sha256,
            "orig_size": (rec.height, rec.width),
        }
        s = self.input_size
        sx, sy = s / rec.width, s / rec.height
        if self.task == "autoencode":
            return _Item(**base)
        if self.task == "classify":
            idx = [self._index[c] for c in project.tags(image_id) if c in self._index]
            if not idx:
                return None
            if self.multi_label:
                return _Item(**base, labels=tuple(sorted(set(idx))))
            return _Item(**base, label=idx[0])
        if self.task == "detect":
            boxes = [b for b in project.boxes(image_id) if b.class_id in self._index]
            if not boxes:
                return None
            xyxy = np.array([b.xyxy for b in boxes], dtype=np.float32) * [sx, sy, sx, sy]
            labels = np.array([self._index[b.class_id] + 1 for b in boxes], dtype=np.int64)
            return _Item(**base, boxes=xyxy.astype(np.float32), box_labels=labels)
        if self.task == "landmarks":
            sets = [
                ls for ls in project.landmark_sets(image_id) if ls.template_id == self.template_id
            ]
            if not sets:
                return None
            pts = np.array([(p.x * sx, p.y * sy, p.visibility) for p in sets[0].points], np.float32)
            pts[pts[:, 2] == 0, :2] = 0.0
            return _Item(**base, keypoints=pts)
        if self.task == "instances":
            return self._instances_item(project, image_id, base)
        # segment
        mask = project.mask(image_id)
        if mask is None:
            return None
        lut = np.zeros(int(mask.max()) + 1, dtype=np.int64)
        for cid, i in self._index.items():
            if cid < len(lut):
                lut[cid] = i + 1
        mapped = lut[mask].astype(np.uint8 if len(self._index) < 256 else np.uint16)
        ignore = project.instances.ignore(image_id)
        if ignore is not None:  # ignore regions: left out of the loss and the metrics
            from tlstudio.ml.tasks.segment import IGNORE_INDEX

            if len(self._index) >= IGNORE_INDEX:
                raise DatasetError(
                    f"ignore regions need fewer than {IGNORE_INDEX} classes; "
                    f"the project has {len(self._index)}"
                )
            mapped[ignore] = IGNORE_INDEX
        small = cv2.resize(mapped, (s, s), interpolation=cv2.INTER_NEAREST_EXACT)
        return _Item(**base, mask=small)

    def _instances_item(self, project: Project, image_id: int, base: _ItemBase) -> _Item | None:
        layer = project.instances.layer(image_id)
        if layer is None:
            return None
        left_out = project.instances.ignore(image_id)
        kept = [o for o in layer.objects if o.class_id in self._index and not o.iscrowd]
        crowd = [o.number for o in layer.objects if o.iscrowd]
        if crowd:  # a crowd region counts like an ignore region (COCO's rule)
            in_crowd = np.isin(layer.map, crowd)
            left_out = in_crowd if left_out is None else (left_out | in_crowd)
        if not kept:
            return None
        lut = np.zeros(int(layer.map.max()) + 1, np.uint16)
        for k, o in enumerate(kept, start=1):
            lut[o.number] = k
        numbers = lut[layer.map]
        s = self.input_size
        ignore = None
        if left_out is not None:
            numbers[left_out] = 0
            small_ignore = cv2.resize(
                left_out.astype(np.uint8), (s, s), interpolation=cv2.INTER_NEAREST_EXACT
            )
            ignore = small_ignore.astype(bool) if small_ignore.any() else None
        small = cv2.resize(numbers, (s, s), interpolation=cv2.INTER_NEAREST_EXACT)
        labels = np.array([self._index[o.class_id] + 1 for o in kept], np.int64)
        return _Item(**base, objects=small, object_labels=labels, ignore=ignore)

    # -- facts ---------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        """Number of project classes C (not counting background)."""
        return len(self.class_names)

    @property
    def image_ids(self) -> list[int]:
        """Ids of the images in the dataset, in sample order."""
        return [it.image_id for it in self.items]

    @property
    def flip_perm(self) -> list[int] | None:
        """Left/right swap of the landmark template (None for other tasks)."""
        return self.template.flip_permutation() if self.template is not None else None

    def content_key(self, index: int) -> str:
        """SHA-256 of sample ``index``'s image file."""
        return self.items[index].sha256

    def class_labels(self) -> np.ndarray:
        """Classification targets: N int64 (single-label) or N×C float32 multi-hot."""
        if self.task != "classify":
            raise ValueError(f"class labels exist for classification, not {self.task}")
        if self.multi_label:
            y = np.zeros((len(self.items), self.num_classes), np.float32)
            for i, it in enumerate(self.items):
                y[i, list(it.labels)] = 1.0
            return y
        return np.array([it.label for it in self.items], dtype=np.int64)

    def preprocess_signature(self) -> dict[str, Any]:
        """What decides the network input for an unaugmented image (for feature caching)."""
        return {
            "input_size": self.input_size,
            "mean": list(self.mean),
            "std": list(self.std),
            "window": "image-default",  # imageio's window per image (DICOM tags, data range)
            "resize": "cv2-area-or-linear-square",
            "version": PREPROCESS_VERSION,
        }

    # -- samples ---------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.items)

    def load_uint8(self, index: int) -> np.ndarray:
        """Sample ``index``'s image as S×S×3 uint8 RGB, unaugmented."""
        return load_input_image(self.items[index].path, self.input_size)[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, Any]]:
        it = self.items[index]
        image, sample = self._input_and_sample(index)
        target: dict[str, Any] = {"image_id": it.image_id, "orig_size": it.orig_size}
        self._fill_target(self.task, it, sample, target)
        return image, target

    def _input_and_sample(self, index: int) -> tuple[torch.Tensor, dict[str, Any]]:
        """Sample ``index``'s normalised image 3×S×S and its (augmented) sample dict."""
        it = self.items[index]
        rgb = self.load_uint8(index)
        img = torch.from_numpy(rgb).permute(2, 0, 1).contiguous()
        sample = self._sample(it, img)
        if self.transform is not None:
            # augmentation only: torchvision loads slowly; it ships no stubs or py.typed
            from torchvision import tv_tensors  # type: ignore[import-untyped]

            s = self.input_size
            sample["image"] = tv_tensors.Image(sample["image"])
            if "boxes" in sample:
                sample["boxes"] = tv_tensors.BoundingBoxes(
                    sample["boxes"], format="XYXY", canvas_size=(s, s)
                )
            if "keypoints" in sample:
                sample["keypoints"] = tv_tensors.KeyPoints(sample["keypoints"], canvas_size=(s, s))
            for key in ("mask", "masks", "ignore"):
                if key in sample:
                    sample[key] = tv_tensors.Mask(sample[key])
            sample = self.transform(sample)
        image = sample["image"].as_subclass(torch.Tensor).float().div_(255.0)
        return (image - self._mean_t) / self._std_t, sample

    def _fill_target(
        self, task: str, it: _Item, sample: dict[str, Any], target: dict[str, Any]
    ) -> None:
        """Add ``task``'s target keys (see :mod:`tlstudio.ml.tasks.base`) from ``sample``."""
        if task == "classify":
            if self.multi_label:
                y = torch.zeros(self.num_classes, dtype=torch.float32)
                y[list(it.labels)] = 1.0
                target["labels"] = y
            else:
                target["label"] = torch.tensor(it.label, dtype=torch.int64)
        elif task == "detect":
            target["boxes"] = sample["boxes"].as_subclass(torch.Tensor).float().reshape(-1, 4)
            target["labels"] = sample["labels"].long()
        elif task == "landmarks":
            kp = sample["keypoints"].as_subclass(torch.Tensor).float()
            target["keypoints"] = torch.cat([kp, sample["visibility"].float()[:, None]], dim=1)
        elif task == "segment":
            target["mask"] = sample["mask"].as_subclass(torch.Tensor).long()
        elif task == "instances":
            masks = sample["masks"].as_subclass(torch.Tensor).to(torch.uint8)
            keep = masks.flatten(1).bool().any(1)  # objects a crop or a turn moved out of view
            target["masks"] = masks[keep]
            target["labels"] = sample["labels"][keep].long()
            target["boxes"] = boxes_from_masks(target["masks"])
            if "ignore" in sample:
                target["ignore"] = sample["ignore"].as_subclass(torch.Tensor)[0].bool()

    @staticmethod
    def _sample(it: _Item, img: torch.Tensor) -> dict[str, Any]:
        sample: dict[str, Any] = {"image": img}
        if it.boxes is not None and it.box_labels is not None:  # set together
            sample["boxes"] = torch.from_numpy(it.boxes.copy())
            sample["labels"] = torch.from_numpy(it.box_labels.copy())
        if it.keypoints is not None:
            sample["keypoints"] = torch.from_numpy(it.keypoints[:, :2].copy())
            sample["visibility"] = torch.from_numpy(it.keypoints[:, 2].astype(np.int64))
        if it.mask is not None:
            sample["mask"] = torch.from_numpy(it.mask.astype(np.int64))
        if it.objects is not None and it.object_labels is not None:
            numbers = torch.from_numpy(it.objects.astype(np.int64))
            k = torch.arange(1, len(it.object_labels) + 1)
            sample["masks"] = (numbers[None] == k[:, None, None]).to(torch.uint8)
            sample["labels"] = torch.from_numpy(it.object_labels.copy())
            if it.ignore is not None:
                sample["ignore"] = torch.from_numpy(it.ignore[None].astype(np.uint8))
        return sample


def boxes_from_masks(masks: torch.Tensor) -> torch.Tensor:
    """K×4 float xyxy boxes on pixel edges (x2 = last column + 1) of K×H×W object masks,
    each with at least one pixel."""
    if not len(masks):
        return torch.zeros((0, 4), dtype=torch.float32)
    rows, cols = masks.bool().any(2), masks.bool().any(1)  # K×H, K×W
    h, w = masks.shape[-2:]
    ar_h, ar_w = torch.arange(h), torch.arange(w)
    y1 = torch.where(rows, ar_h, h).min(1).values
    y2 = torch.where(rows, ar_h, -1).max(1).values + 1
    x1 = torch.where(cols, ar_w, w).min(1).values
    x2 = torch.where(cols, ar_w, -1).max(1).values + 1
    return torch.stack([x1, y1, x2, y2], 1).float()


# --------------------------------------------------------------------------- splits


def train_val_ids(
    project: Project, *, seed: int = 0, val_fraction: float = 0.2
) -> tuple[list[int], list[int]]:
    """Image ids of the stored train and val splits.

    When no image is in train or val, a seeded stratified split of the images without a
    split (``val_fraction`` to val) is computed in memory and not written."""
    train = [r.id for r in project.images_in_split("train")]
    val = [r.id for r in project.images_in_split("val")]
    if train or val:
        return train, val
    from tlstudio.core.splits import random_split

    assignment = random_split(
        project, (1.0 - val_fraction, val_fraction, 0.0), seed=seed, only_unassigned=True
    )
    train = sorted(i for i, s in assignment.items() if s == "train")
    val = sorted(i for i, s in assignment.items() if s == "val")
    return train, val


def make_datasets(
    project: Project,
    task: str,
    input_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    augment: AugmentConfig | None,
    *,
    template_id: int | None = None,
    multi_label: bool | None = None,
    seed: int = 0,
    val_fraction: float = 0.2,
    image_ids: tuple[Sequence[int], Sequence[int]] | None = None,
) -> tuple[ProjectDataset, ProjectDataset]:
    """(train, val) datasets from the stored splits (see :func:`train_val_ids`), or from
    ``image_ids`` = (train ids, val ids) when given (cross-validation folds, learning-curve
    subsets; the stored splits are then not read).

    Only the training set is augmented. ``multi_label`` defaults to the project's
    setting; for landmarks the template defaults to the one most used in train + val."""
    if image_ids is not None:
        train_ids, val_ids = [int(i) for i in image_ids[0]], [int(i) for i in image_ids[1]]
    else:
        train_ids, val_ids = train_val_ids(project, seed=seed, val_fraction=val_fraction)
    if multi_label is None:
        multi_label = project.multi_label
    flip_perm = None
    if "landmarks" in task.split(","):  # also a multi-task run with landmarks
        if template_id is None:
            template_id = choose_template(project, train_ids + val_ids)
        if template_id is None:
            raise DatasetError("no landmark sets on the train/val images")
        flip_perm = project.template(template_id).flip_permutation()
    transform = None
    if augment is not None and augment.changes(task):
        from tlstudio.ml.transforms import build_train_transform

        transform = build_train_transform(task, augment, input_size, flip_perm)
    train = project_dataset(
        project, task, train_ids, input_size, mean, std, transform,
        template_id=template_id, multi_label=multi_label,
    )  # fmt: skip
    val = project_dataset(
        project, task, val_ids, input_size, mean, std, None,
        template_id=template_id, multi_label=multi_label,
    )  # fmt: skip
    return train, val


def project_dataset(
    project: Project,
    task: str,
    image_ids: Sequence[int],
    input_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    transform: Any = None,
    *,
    template_id: int | None = None,
    multi_label: bool = False,
) -> ProjectDataset:
    """A :class:`ProjectDataset` for ``task``, or for a multi-task run's ``task``
    ("classify,landmarks") a :class:`~tlstudio.ml.multitask.MultiTaskDataset`."""
    if "," in task:
        from tlstudio.ml.multitask import MultiTaskDataset

        return MultiTaskDataset(
            project, task, image_ids, input_size, mean, std, transform,
            template_id=template_id, multi_label=multi_label,
        )  # fmt: skip
    return ProjectDataset(
        project, task, image_ids, input_size, mean, std, transform,
        template_id=template_id, multi_label=multi_label,
    )  # fmt: skip
