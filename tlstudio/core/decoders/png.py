"""PNG: the header from the IHDR chunk; 16-bit files through OpenCV (which keeps all 16
bits, where Pillow reduces colour to 8), 1–8-bit files through Pillow."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from ..errors import CorruptImageError
from .base import ImageData, ImageInfo, Source, check_size, finish
from .pil import open_pil


def open_png(path: Path, fmt: str, head: bytes, max_pixels: int) -> Source:
    """The decoder of PNG (see :data:`~.base.Opener`)."""
    width, height, bit_depth, color_type = _png_header(path, head)
    check_size(path, width, height, max_pixels)
    if bit_depth <= 8:
        # Pillow keeps palette/transparency semantics for 1..8-bit files
        return open_pil(path, fmt, head, max_pixels)
    channels = {0: 1, 2: 3, 4: 4, 6: 4}[color_type]
    info = ImageInfo(width, height, 16, channels, fmt)

    def decode() -> ImageData:
        import cv2

        # Pillow reduces 16-bit colour PNG to 8 bits; OpenCV keeps 16 (as BGR[A]).
        buf = np.fromfile(path, dtype=np.uint8)
        arr = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
        if arr is None or arr.shape[:2] != (height, width):
            raise CorruptImageError(path, "PNG pixel data is truncated or corrupt")
        if arr.ndim == 3:
            if channels == 1:  # grey with a tRNS colour: transparency ignored, as Pillow does
                arr = arr[..., 0]
            elif channels == 3:
                arr = cv2.cvtColor(arr[..., :3], cv2.COLOR_BGR2RGB)
            elif arr.shape[2] == 4:
                arr = cv2.cvtColor(arr, cv2.COLOR_BGRA2RGBA)
        return finish(path, arr, info)

    return Source(info, decode)


def _png_header(path: Path, head: bytes) -> tuple[int, int, int, int]:
    """(width, height, bit depth, colour type) from the IHDR chunk."""
    if len(head) < 33 or head[12:16] != b"IHDR":
        raise CorruptImageError(path, "PNG without a valid IHDR header (truncated?)")
    width, height, bit_depth, color_type = struct.unpack(">IIBB", head[16:26])
    if bit_depth not in (1, 2, 4, 8, 16) or color_type not in (0, 2, 3, 4, 6):
        raise CorruptImageError(
            path, f"PNG header has invalid bit depth {bit_depth} / colour type {color_type}"
        )
    return width, height, bit_depth, color_type
