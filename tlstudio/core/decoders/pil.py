"""JPEG, BMP and PNG of 1–8 bits through Pillow (EXIF orientation applied to JPEG)."""

from __future__ import annotations

import warnings
from collections.abc import Container
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import CorruptImageError, ImageTooLargeError
from .base import ImageData, ImageInfo, Source, check_size, finish, orient, oriented_size

if TYPE_CHECKING:
    from PIL.Image import Image


def open_pil(path: Path, fmt: str, head: bytes, max_pixels: int) -> Source:
    """The decoder of JPEG, BMP and PNG ≤ 8 bit (see :data:`~.base.Opener`)."""
    im = _pil_open(path, max_pixels)
    try:
        check_size(path, im.width, im.height, max_pixels)
        orientation = _exif_orientation(im) if fmt == "JPEG" else 1
        target, channels, bits = pil_target(im.mode, im.info)
        width, height = oriented_size(im.width, im.height, orientation)
        info = ImageInfo(width, height, bits, channels, fmt)
    except BaseException:
        im.close()
        raise
    im.close()

    def decode() -> ImageData:
        with _pil_open(path, max_pixels) as im2:
            im2.load()
            if target is not None:
                im3 = im2.convert(target)
            else:
                im3 = im2
            arr = np.array(im3)
        return finish(path, orient(arr, orientation), info)

    return Source(info, decode)


def _pil_open(path: Path, max_pixels: int) -> Image:
    from PIL import Image, UnidentifiedImageError

    # Pillow refuses "decompression bombs" above its own, lower limit; ours is the
    # one that applies, so lift Pillow's up to it (never down).
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and limit < max_pixels:
        Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(path)
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(path, str(exc)) from exc
    except UnidentifiedImageError as exc:
        raise CorruptImageError(path, "the header cannot be parsed") from exc


def pil_target(mode: str, info: Container[object]) -> tuple[str | None, int, int]:
    """Pillow mode (and its ``info`` keys) -> (mode to convert to or None, channels, bit
    depth)."""
    if mode in ("1", "L"):
        return ("L" if mode == "1" else None, 1, 8)
    if mode == "P":
        return ("RGBA", 4, 8) if "transparency" in info else ("RGB", 3, 8)
    if mode in ("LA", "La", "PA", "RGBa"):
        return ("RGBA", 4, 8)
    if mode == "RGBA":
        return (None, 4, 8)
    if mode == "RGB":
        return (None, 3, 8)
    if mode.startswith("I;16"):
        return (None, 1, 16)
    if mode in ("I", "F"):
        return (None, 1, 32)
    return ("RGB", 3, 8)  # CMYK, YCbCr, LAB, HSV


def _exif_orientation(im: Image) -> int:
    try:
        value = im.getexif().get(0x0112, 1)
        return int(value) if int(value) in range(1, 9) else 1
    except Exception:  # a broken EXIF block must not make the image unreadable
        return 1
