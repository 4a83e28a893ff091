"""An exported model file and its sidecar, ready to predict on images without a project."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .decode import decode_prediction
from .errors import ExportError, SidecarError
from .images import normalise, read_rgb, resize_square
from .loader import Runner, TorchScriptLoader, check_output_shapes, open_runner
from .sidecar import ONE_IMAGE_TASKS, Sidecar, read_sidecar, sidecar_path


class ExportedModel:
    """An exported model file and its sidecar, ready to predict on RGB images.

    :meth:`predict` returns the payloads ``runner.predict`` stores, in image pixels, with
    class *names* (``"class"``) beside the database ids (``"class_id"``) of the project the
    model came from; class-keyed dicts use names:

    - classify:   {"class", "class_id", "score", "probs": {name: p}}
    - detect:     {"boxes": [{"class", "class_id", "score", "xyxy": [x1, y1, x2, y2]}],
      "score"} (score = best box score, 0 without boxes); a detector ensemble's boxes
      are its members' merged and also carry "agreement" (fraction of the members)
    - landmarks:  {"points": [[x, y, confidence], ...] in template order, "names": point
      names, "score"} (score = mean confidence)
    - segment:    {"classes": [names present], "mask": H×W uint16, "score": None}; mask
      value 0 = background, k = ``classes[k - 1]`` (1-based position in the sidecar's
      class list, not a database id)
    - instances:  {"objects": [{"number", "class", "class_id", "score", "xyxy"}], "mask":
      H×W uint16 object map (pixel = an object's number, 0 = none; where objects overlap
      the better-scoring one), "score"} (score = best object score, 0 without objects;
      objects with no pixel are left out), as ``runner.predict`` stores them
    - autoencode: {"latent": [...], "error": float, "score"} (score = error)
    """

    def __init__(self, path: Path, side: Sidecar, run: Runner, format: str):
        self.path = path
        self.sidecar = side
        self.info: dict[str, Any] = side.info
        self._run = run
        self.task: str = side.task
        self.format: str = format
        self.input_size: int = side.input_size
        self.classes: list[dict[str, Any]] = list(side.info.get("classes") or [])
        self.class_names: list[str] = list(side.class_names)
        self.outputs: list[str] = side.output_names

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        threads: int | None = None,
        torchscript: TorchScriptLoader | None = None,
    ) -> ExportedModel:
        """Open ``path`` and its sidecar ``<path>.json`` (checked as untrusted input).

        The loader follows the file's content: ONNX runs in onnxruntime on the CPU
        (``threads``: its intra-op threads, default its own choice). A TorchScript archive
        is a program; it is loaded only through ``torchscript``, which the caller passes to
        say it trusts the file, else :class:`~tlstudio.runtime.UntrustedModelError`."""
        path = Path(path)
        if not path.is_file():
            raise ExportError(f"{path}: no such model file")
        side = sidecar_path(path)
        if not side.is_file():
            raise ExportError(
                f"{side}: the model's sidecar is missing; keep the .json written next to the "
                "model file by tlstudio export-model"
            )
        info = read_sidecar(side)
        fmt, run = open_runner(path, info, threads=threads, torchscript=torchscript)
        return cls(path, info, run, fmt)

    # -- running -------------------------------------------------------------
    def preprocess(self, rgb_images: Sequence[np.ndarray]) -> np.ndarray:
        """H×W×3 uint8 RGB images (any size; H×W grey is repeated into 3 channels) →
        the model input N×3×S×S float32, resized and normalised as the sidecar says."""
        resized = []
        for i, a in enumerate(rgb_images):
            a = np.asarray(a)
            if a.ndim == 2:
                a = np.repeat(a[..., None], 3, axis=2)
            if a.ndim != 3 or a.shape[2] not in (3, 4) or a.dtype != np.uint8:
                raise ExportError(
                    f"image {i}: expected H×W×3 uint8 RGB, got {a.dtype} {tuple(a.shape)}"
                )
            resized.append(resize_square(np.ascontiguousarray(a[..., :3]), self.input_size))
        if not resized:
            return np.zeros((0, 3, self.input_size, self.input_size), np.float32)
        return normalise(resized, self.sidecar.mean, self.sidecar.std)

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Raw outputs (name → array) for a preprocessed batch N×3×S×S (N = 1 for detect
        and instances).
        Outputs whose shapes or class indices do not fit the sidecar raise
        :class:`~tlstudio.runtime.SidecarError`."""
        one_image = self.task in ONE_IMAGE_TASKS
        if one_image and len(batch) != 1:
            raise ExportError(f"an exported {self.task} model takes one image at a time (N = 1)")
        got = [np.asarray(o) for o in self._run(batch)]
        n = None if one_image else len(batch)
        check_output_shapes(self.path, self.sidecar, [o.shape for o in got], batch=n)
        raw = dict(zip(self.outputs, got, strict=True))
        label_sets = [v for k, v in raw.items() if k.split("_")[0] == "labels"] if one_image else []
        for labels in (lab for lab in label_sets if lab.size):  # an ensemble: one per member
            lo, hi = int(labels.min()), int(labels.max())
            if lo < 0 or hi >= len(self.class_names):
                raise SidecarError(
                    self.sidecar.path, "classes",
                    f"{len(self.class_names)} classes, but {self.path.name} returns class "
                    f"index {hi if hi >= len(self.class_names) else lo}",
                )  # fmt: skip
        return raw

    def predict(
        self, rgb_images: Sequence[np.ndarray], *, batch_size: int = 16
    ) -> list[dict[str, Any]]:
        """Decoded predictions per image, coordinates in each image's own pixels (see the
        class docstring for the keys)."""
        images = list(rgb_images)
        out: list[dict[str, Any]] = []
        step = 1 if self.task in ONE_IMAGE_TASKS else max(1, int(batch_size))
        for start in range(0, len(images), step):
            chunk = images[start : start + step]
            raw = self.run(self.preprocess(chunk))
            for k, img in enumerate(chunk):
                orig = (int(np.asarray(img).shape[0]), int(np.asarray(img).shape[1]))
                out.append(decode_prediction(self.sidecar, raw, k, orig))
        return out

    def predict_files(self, paths: Sequence[str | Path], *, batch_size: int = 16) -> list[dict]:
        """:meth:`predict` on image files, read as training reads them (see :func:`read_rgb`)."""
        return self.predict([read_rgb(p) for p in paths], batch_size=batch_size)
