"""Image files → network input, the way training reads them: uint8 RGB through the display
window, plain resize to S × S, then ``(x / 255 - mean) / std`` per channel.

numpy and OpenCV only (no torch): :mod:`tlstudio.ml.data` and the exported-model runtime
share these functions, so an exported model sees the pixels its run was trained on.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from tlstudio.core import imageio
from tlstudio.core.errors import ImageError, TlsError
from tlstudio.core.windowing import to_display


class ImageReadError(ImageError):
    """An image could not be read for training. ``path`` names the file, ``reason`` says why.

    Unlike :class:`ImageError` it can be rebuilt from its message alone, which is how
    torch's DataLoader re-raises a worker's exception in the main process."""

    def __init__(self, path: str | Path, reason: str | None = None):
        if reason is None:  # rebuilt from a message (DataLoader worker)
            TlsError.__init__(self, str(path))
            self.path, self.reason = Path(), str(path)
        else:
            super().__init__(path, reason)

    def __reduce__(self):
        return (type(self), (self.path, self.reason))


def to_rgb_uint8(data: imageio.ImageData) -> np.ndarray:
    """H×W×3 uint8 RGB of an image as displayed through its window (alpha dropped)."""
    disp = np.asarray(to_display(data.array, data.window))
    if disp.dtype != np.uint8:
        raise ValueError(f"to_display returned {disp.dtype}, expected uint8")
    if disp.ndim == 3 and disp.shape[2] in (1, 2):  # grey or grey + alpha
        disp = disp[..., 0]
    if disp.ndim == 2:
        return np.repeat(disp[..., None], 3, axis=2)
    if disp.ndim == 3 and disp.shape[2] >= 3:
        return np.ascontiguousarray(disp[..., :3])
    raise ValueError(f"unexpected display array shape {disp.shape}")


def resize_square(rgb: np.ndarray, size: int) -> np.ndarray:
    """Plain resize to size × size (area averaging when shrinking, bilinear otherwise)."""
    h, w = rgb.shape[:2]
    if (h, w) == (size, size):
        return rgb
    interp = cv2.INTER_AREA if size <= h and size <= w else cv2.INTER_LINEAR
    return cv2.resize(np.ascontiguousarray(rgb), (size, size), interpolation=interp)


def read_rgb(path: str | Path) -> np.ndarray:
    """The image at ``path`` as stored, H×W×3 uint8 RGB, the way training reads it (grey,
    16-bit and DICOM data through their display window; alpha dropped).

    Raises :class:`ImageReadError` naming the file on any read failure."""
    try:
        return to_rgb_uint8(imageio.read_image(Path(path)))
    except ImageError as exc:
        raise ImageReadError(exc.path, exc.reason) from exc
    except (OSError, ValueError, cv2.error) as exc:
        raise ImageReadError(path, f"cannot read image ({exc})") from exc


def normalise(
    images: Sequence[np.ndarray], mean: Sequence[float], std: Sequence[float]
) -> np.ndarray:
    """S×S×3 uint8 RGB images → float32 N×3×S×S, ``(x / 255 - mean) / std`` per channel
    (float32 arithmetic, the same operations as the training pipeline)."""
    m = np.asarray(mean, dtype=np.float32).reshape(3, 1, 1)
    s = np.asarray(std, dtype=np.float32).reshape(3, 1, 1)
    out = np.stack([np.asarray(a).transpose(2, 0, 1) for a in images]).astype(np.float32)
    out /= np.float32(255.0)
    out -= m
    out /= s
    return out
