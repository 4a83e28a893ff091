"""JPEG, BMP and PNG of 1–8 bits through Pillow (EXIF orientation applied to JPEG; PNG
passes the orientation of its eXIf chunk in)."""

from __future__ import annotations

import os
import struct
from collections.abc import Container
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import CorruptImageError
from .base import ImageData, ImageInfo, Source, check_size, finish, orient, oriented_size

if TYPE_CHECKING:
    from PIL.Image import Image

_STRIP_BYTES = 16 << 20
"""Rows are copied out of Pillow in strips of about this size, so a decoded image is
never held twice in full (Pillow's buffer + the array) plus a third bytes copy."""


def open_pil(
    path: Path, fmt: str, head: bytes, max_pixels: int, *, orientation: int | None = None
) -> Source:
    """The decoder of JPEG, BMP and PNG ≤ 8 bit (see :data:`~.base.Opener`).

    ``orientation`` (1..8) overrides the one read from the file (JPEG: its EXIF; others:
    none)."""
    im = _pil_open(path, fmt)
    try:
        check_size(path, im.width, im.height, max_pixels)
        if orientation is None:
            orientation = _exif_orientation(im) if fmt == "JPEG" else 1
        target, channels, bits = pil_target(im.mode, im.info)
        width, height = oriented_size(im.width, im.height, orientation)
        info = ImageInfo(width, height, bits, channels, fmt)
        raw_end = _raw_data_end(im)
    except BaseException:
        im.close()
        raise
    im.close()
    turn = orientation

    def decode_at(side: int | None) -> ImageData:
        im2 = _pil_open(path, fmt)
        try:
            if side is not None and fmt == "JPEG":
                # libjpeg decodes at 1/2, 1/4 or 1/8 scale directly: a fraction of the memory
                w, h = im2.size
                scale = max(1, max(w, h) // max(1, side))
                im2.draft(im2.mode, (max(1, w // scale), max(1, h // scale)))
            im2.load()
            if target is not None:
                converted = im2.convert(target)
                im2.close()
                im2 = converted
            arr = _to_array(im2)
        finally:
            im2.close()
        return finish(path, orient(arr, turn), info)

    def verify() -> None:
        if raw_end is not None:  # uncompressed rows: all there if the file is long enough
            size = os.stat(path).st_size
            if size < raw_end:
                raise CorruptImageError(
                    path, f"{fmt} is truncated: pixel data needs {raw_end} bytes, file has {size}"
                )
            return
        im2 = _pil_open(path, fmt)
        try:
            if fmt == "JPEG":  # every byte is still decoded, into 1/64 of the pixels
                im2.draft(im2.mode, (1, 1))
            im2.load()
        finally:
            im2.close()

    return Source(
        info,
        lambda: decode_at(None),
        verify=verify,
        decode_reduced=decode_at if fmt == "JPEG" else None,
    )


def _pil_open(path: Path, fmt: str) -> Image:
    """The file opened by Pillow's plugin for ``fmt`` directly: ``Image.open`` would apply
    Pillow's own decompression-bomb limit and message, and ours is the one that applies
    (checked by the caller on the header's size)."""
    from PIL import Image

    Image.init()
    try:
        factory, _accept = Image.OPEN[fmt]
    except KeyError:  # pragma: no cover - Pillow always has JPEG, BMP and PNG
        raise CorruptImageError(path, f"no {fmt} support in Pillow") from None
    try:
        return factory(str(path), str(path))  # type: ignore[arg-type]
    except (SyntaxError, IndexError, TypeError, ValueError, EOFError, struct.error) as exc:
        raise CorruptImageError(path, "the header cannot be parsed") from exc


def _raw_data_end(im: Image) -> int | None:
    """Where the pixel data of an uncompressed image (one ``raw`` tile: BMP) ends in the
    file, in bytes; None for compressed data (which must be decoded to be checked)."""
    tile = getattr(im, "tile", None) or []
    if len(tile) != 1 or tile[0][0] != "raw":
        return None
    _, extents, offset, args = tile[0]
    if not isinstance(args, tuple) or len(args) < 2 or not isinstance(args[1], int):
        return None
    rows = int(extents[3]) - int(extents[1])
    return int(offset) + int(args[1]) * rows


def _to_array(im: Image) -> np.ndarray:
    """The pixels of a loaded Pillow image as an array, copied in strips of rows."""
    w, h = im.size
    first = np.asarray(im.crop((0, 0, w, 1)))
    row_bytes = max(1, first.nbytes)
    step = max(1, _STRIP_BYTES // row_bytes)
    out = np.empty((h, *first.shape[1:]), dtype=first.dtype)
    for y in range(0, h, step):
        out[y : y + step] = np.asarray(im.crop((0, y, w, min(h, y + step))))
    return out


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


def exif_orientation(data: bytes) -> int:
    """The Orientation (1..8) of a raw EXIF block (TIFF-structured, with or without the
    ``Exif\\0\\0`` prefix); 1 when it has none or cannot be read."""
    from PIL import Image

    try:
        exif = Image.Exif()
        exif.load(data)
        value = int(exif.get(0x0112, 1))
    except Exception:  # a broken EXIF block must not make the image unreadable
        return 1
    return value if value in range(1, 9) else 1
