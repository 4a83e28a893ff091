"""Turning a list of dataset samples into a batch (the DataLoader ``collate_fn``).

Samples follow the batch contract of :mod:`tlstudio.ml.tasks.base`: ``(image, target)``
with ``image`` a 3×H×W float tensor and ``target`` a dict whose contents differ per task
(boxes, keypoints, masks of varying sizes), so targets are not stacked.
"""

from __future__ import annotations

from typing import Any

import torch


def collate(
    batch: list[tuple[torch.Tensor, dict[str, Any]]],
) -> tuple[torch.Tensor, list[dict[str, Any]]]:
    """Stack images to N×3×H×W; keep targets as a list of dicts."""
    images = torch.stack([b[0] for b in batch])
    return images, [b[1] for b in batch]
