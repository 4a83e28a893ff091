"""The torch-free runtime decodes and preprocesses exactly as the torch code it replaced:
same raw outputs in, bit-identical predictions out (detect, landmarks, segment), and the
same normalised input as the training pipeline's torch arithmetic.

The reference is the decoding ``tlstudio.ml.export.ExportedModel._decode`` did before the
runtime existed: :func:`tlstudio.ml.tasks.base.to_image_frame` on torch tensors, the
function the project's own stored predictions go through.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tlstudio.ml.tasks.base import to_image_frame
from tlstudio.runtime.decode import decode_prediction
from tlstudio.runtime.images import normalise
from tlstudio.runtime.sidecar import parse_sidecar

#: (input size S, image height, image width): up- and down-scaling, odd ratios, equal size;
#: 16 → 41, 49 are sizes where float64 index arithmetic would pick other rows than PyTorch
SIZES = [(64, 64, 64), (64, 480, 640), (224, 37, 1001), (96, 97, 95), (40, 1, 3), (16, 41, 49)]
NAMES = ["circle", "square", "triangle"]


def _sidecar(task: str, size: int):
    info = {
        "format": "tlstudio-exported-model",
        "format_version": 1,
        "task": task,
        "classes": [{"name": n, "id": 5 + i} for i, n in enumerate(NAMES)],
        "template": {"points": ["a", "b", "c", "d"]} if task == "landmarks" else None,
        "preprocessing": {"input_size": size, "mean": [0.5] * 3, "std": [0.25] * 3},
    }
    return parse_sidecar(info, Path("test.json"))


def _old_decode(task: str, raw: dict, k: int, size: int, orig: tuple[int, int]) -> dict:
    """ExportedModel._decode as it was, torch arithmetic and all (detect/landmarks/segment)."""
    s = (size, size)
    ids = [5, 6, 7]
    if task == "detect":
        pred = to_image_frame({"boxes": torch.from_numpy(raw["boxes"].reshape(-1, 4))}, s, orig)
        boxes = [
            {
                "class": NAMES[int(lbl)],
                "class_id": ids[int(lbl)],
                "score": float(sc),
                "xyxy": [float(v) for v in b],
            }  # fmt: skip
            for b, sc, lbl in zip(
                pred["boxes"].tolist(), raw["scores"].tolist(), raw["labels"].tolist(), strict=True
            )  # fmt: skip
        ]
        return {"boxes": boxes, "score": max((b["score"] for b in boxes), default=0.0)}
    if task == "landmarks":
        kp = torch.from_numpy(np.ascontiguousarray(raw["keypoints"][k]))
        pts = to_image_frame({"keypoints": kp}, s, orig)["keypoints"].tolist()
        pts = [[float(x), float(y), float(c)] for x, y, c in pts]
        return {"points": pts, "names": ["a", "b", "c", "d"],
                "score": float(np.mean([p[2] for p in pts])) if pts else None}  # fmt: skip
    mask = torch.from_numpy(raw["probs"][k].argmax(0))
    full = to_image_frame({"mask": mask}, s, orig)["mask"].numpy().astype(np.uint16)
    present = sorted(int(v) for v in np.unique(full) if v)
    return {"classes": [NAMES[v - 1] for v in present], "mask": full, "score": None}


def _raw(task: str, size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    if task == "detect":
        k = int(rng.integers(0, 6))
        xy = rng.uniform(0, size, (k, 2, 2)).astype(np.float32)
        boxes = np.concatenate([xy.min(axis=1), xy.max(axis=1)], axis=1)
        scores = np.sort(rng.uniform(0, 1, k).astype(np.float32))[::-1].copy()
        return {"boxes": boxes, "scores": scores, "labels": rng.integers(0, 3, k)}
    if task == "landmarks":
        kp = rng.uniform(-2, size + 2, (2, 4, 3)).astype(np.float32)
        kp[..., 2] = rng.uniform(0, 1, (2, 4))
        return {"heatmaps": np.zeros((2, 4, 1, 1), np.float32), "keypoints": kp}
    probs = rng.uniform(0, 1, (2, 4, size, size)).astype(np.float32)
    probs[:, :, : size // 3] *= np.array([4, 0, 0, 0], np.float32)[:, None, None]  # background
    return {"probs": probs}


@pytest.mark.parametrize("task", ["detect", "landmarks", "segment"])
@pytest.mark.parametrize(("size", "height", "width"), SIZES)
def test_runtime_decoding_equals_the_torch_decoding(task, size, height, width):
    rng = np.random.default_rng(size * 1000 + height + width)
    side = _sidecar(task, size)
    for _ in range(3):
        raw = _raw(task, size, rng)
        for k in range(1 if task == "detect" else 2):
            got = decode_prediction(side, raw, k, (height, width))
            want = _old_decode(task, raw, k, size, (height, width))
            if task == "segment":
                assert got["mask"].dtype == want["mask"].dtype == np.uint16
                assert got["mask"].shape == (height, width)
                np.testing.assert_array_equal(got.pop("mask"), want.pop("mask"))
            assert got == want  # floats compared exactly


def test_runtime_normalisation_equals_the_training_arithmetic():
    rng = np.random.default_rng(3)
    images = [rng.integers(0, 256, (37, 37, 3), dtype=np.uint8) for _ in range(4)]
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    m = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
    want = torch.stack(
        [(torch.from_numpy(a).permute(2, 0, 1).float().div_(255.0) - m) / s for a in images]
    )
    got = normalise(images, mean, std)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, want.numpy())
