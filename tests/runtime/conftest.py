"""Fixtures: tiny ONNX models with sidecars, and an image file (see model_files.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from model_files import onnx_model, sidecar, write_sidecar


@pytest.fixture
def make_model(tmp_path) -> Callable[..., Path]:
    """``make_model(task, name="model.onnx", sidecar_fields={...}, n_classes=3, **kw)``: an
    ONNX model file and its sidecar in ``tmp_path/models``; returns the model path."""

    def make(
        task: str = "classify",
        name: str = "model.onnx",
        *,
        n_classes: int = 3,
        info: dict | None = None,
        weight_location: str | None = None,
    ) -> Path:
        folder = tmp_path / "models"
        folder.mkdir(exist_ok=True)
        path = folder / name
        path.write_bytes(onnx_model(task, n_classes, weight_location=weight_location))
        write_sidecar(path, info if info is not None else sidecar(task))
        return path

    return make


@pytest.fixture
def image_file(tmp_path) -> Path:
    """A 40×30 px RGB PNG."""
    import cv2

    path = tmp_path / "images" / "photo.png"
    path.parent.mkdir(exist_ok=True)
    rng = np.random.default_rng(1)
    cv2.imwrite(str(path), rng.integers(0, 256, (30, 40, 3), dtype=np.uint8))
    return path
