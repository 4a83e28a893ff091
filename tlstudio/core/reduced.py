"""A quick reduced-resolution decode for a first look at a big image.

JPEG can be decoded at 1/2, 1/4 or 1/8 of its size straight from the DCT
coefficients (Pillow's ``draft``), several times faster than a full decode.
Other formats have no such shortcut, so :func:`read_reduced` returns None for them.
"""

from __future__ import annotations

import os

import numpy as np

__all__ = ["read_reduced"]


def read_reduced(path: str | os.PathLike[str], factor: int = 4) -> np.ndarray | None:
    """``path`` decoded at about 1/``factor`` of its width and height, or None.

    A uint8 ``H'×W'`` (grey) or ``H'×W'×3`` (RGB) array, EXIF orientation applied
    as :func:`tlstudio.core.imageio.read_image` applies it, so the preview covers
    the same image as the full decode (pixel (x, y) of the preview is about
    (x·W/W', y·H/H') of the full image). None when the file is not a JPEG, is
    already small, or cannot be read quickly (the full decode reports errors)."""
    try:
        from PIL import Image, ImageOps

        with Image.open(path) as im:
            if im.format != "JPEG" or min(im.size) < 2 * factor:
                return None
            mode = "L" if im.mode in ("1", "L") else "RGB"
            full = im.size
            im.draft(mode, (im.width // factor, im.height // factor))
            if im.size == full:  # no reduction possible: no faster than the full decode
                return None
            im.load()
            out = im.convert(mode) if im.mode != mode else im
            out = ImageOps.exif_transpose(out)
            return np.ascontiguousarray(np.asarray(out))
    except Exception:  # a preview is optional: the full decode names any problem
        return None
