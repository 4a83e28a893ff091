"""TIFF through tifffile (8/16/32-bit, grey, RGB(A), palette, CMYK; orientation tag
applied), with Pillow as the fallback for compressions tifffile needs imagecodecs for."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np

from ..errors import CorruptImageError, ImageError, MissingCodecError
from .base import (
    ImageData,
    ImageInfo,
    Source,
    check_size,
    container_bits,
    finish,
    orient,
    oriented_size,
)
from .pil import pil_target

if TYPE_CHECKING:
    from tifffile import TiffPage


def open_tiff(path: Path, fmt: str, head: bytes, max_pixels: int) -> Source:
    """The decoder of TIFF (see :data:`~.base.Opener`); only the first page is read."""
    import tifffile

    try:
        tif = tifffile.TiffFile(path)
    except tifffile.TiffFileError as exc:
        raise CorruptImageError(path, f"TIFF header cannot be parsed ({exc})") from exc
    with tif:
        pages = len(tif.pages)
        if pages == 0:
            raise CorruptImageError(path, "TIFF without any image page")
        page = cast("TiffPage", tif.pages[0])  # the first page is never a TiffFrame
        width, height = int(page.imagewidth), int(page.imagelength)
        check_size(path, width, height, max_pixels)
        orientation = _tiff_orientation(page)
        channels, bits = _tiff_layout(page)
        w, h = oriented_size(width, height, orientation)
        info = ImageInfo(w, h, bits, channels, fmt, pages)
        _check_tiff_extent(path, page)
        uncompressed = int(page.compression) == 1

    notes = [f"multi-page TIFF: {pages} pages, showing the first"] if pages > 1 else []

    def decode() -> ImageData:
        try:
            arr = _tiff_decode(path)
        except ImageError:
            raise
        except Exception as exc:
            # tifffile needs imagecodecs for LZW/JPEG/PackBits...; Pillow (libtiff) has
            # them for 8-bit and 16-bit grey data, so try it before giving up.
            arr = _tiff_fallback_pil(path, exc)
        arr = orient(arr, orientation)
        return finish(path, arr, info, notes=notes)

    # uncompressed strips/tiles cannot fail to decode once they are all inside the file,
    # which _check_tiff_extent has made sure of
    return Source(info, decode, verify=(lambda: None) if uncompressed else None)


def _tiff_layout(page: TiffPage) -> tuple[int, int]:
    """(channels, bit depth) that the decoded first page will have."""
    from tifffile import PHOTOMETRIC

    spp = int(page.samplesperpixel)
    photometric = page.photometric
    if photometric == PHOTOMETRIC.PALETTE:
        return 3, 8 if _palette_is_8bit(page) else 16
    if photometric in (PHOTOMETRIC.SEPARATED, PHOTOMETRIC.YCBCR, PHOTOMETRIC.CIELAB):
        channels = 3
    elif spp == 1:
        channels = 1
    elif spp == 2 or spp >= 4:
        channels = 4 if spp in (2, 4) else 3
    else:
        channels = 3
    bits = container_bits(int(page.bitspersample))
    if photometric in (PHOTOMETRIC.SEPARATED, PHOTOMETRIC.YCBCR, PHOTOMETRIC.CIELAB):
        bits = 8
    return channels, bits


def _palette_is_8bit(page: TiffPage) -> bool:
    cmap = page.colormap
    return cmap is not None and bool(np.all(np.asarray(cmap) % 257 == 0))


def _tiff_orientation(page: TiffPage) -> int:
    tag = page.tags.get(274)
    try:
        value = int(tag.value) if tag is not None else 1
    except (TypeError, ValueError):
        return 1
    return value if value in range(1, 9) else 1


def _check_tiff_extent(path: Path, page: TiffPage) -> None:
    size = path.stat().st_size
    offsets = page.dataoffsets or ()
    counts = page.databytecounts or ()
    for off, cnt in zip(offsets, counts, strict=False):
        if off + cnt > size:
            raise CorruptImageError(
                path, f"TIFF is truncated: pixel data needs {off + cnt} bytes, file has {size}"
            )


def _tiff_decode(path: Path) -> np.ndarray:
    import tifffile
    from tifffile import PHOTOMETRIC

    with tifffile.TiffFile(path) as tif:
        page = cast("TiffPage", tif.pages[0])  # the first page is never a TiffFrame
        arr = page.asarray()
        photometric = page.photometric
        spp = int(page.samplesperpixel)
        height, width = int(page.imagelength), int(page.imagewidth)
        cmap = page.colormap
        palette8 = _palette_is_8bit(page)
        if spp > 1 and int(page.planarconfig) == 2 and arr.ndim >= 3 and arr.shape[0] == spp:
            arr = np.moveaxis(arr, 0, -1)  # planar (S, Y, X) -> (Y, X, S)
    # volumetric tiles or other leading axes: keep the first plane
    while arr.ndim > (3 if spp > 1 else 2):
        arr = arr[0]
    if arr.shape[:2] != (height, width):
        raise CorruptImageError(
            path, f"TIFF decoded to shape {arr.shape}, header says {height}×{width}"
        )
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * np.uint8(255)
        if photometric == PHOTOMETRIC.MINISWHITE:
            arr = 255 - arr
    elif photometric == PHOTOMETRIC.MINISWHITE and arr.dtype.kind == "u":
        arr = np.iinfo(arr.dtype).max - arr
    if photometric == PHOTOMETRIC.PALETTE and cmap is not None:
        cmap = np.asarray(cmap)
        lut = (cmap // 257).astype(np.uint8) if palette8 else cmap.astype(np.uint16)
        idx = arr if arr.ndim == 2 else arr[..., 0]
        return np.stack([lut[0][idx], lut[1][idx], lut[2][idx]], axis=-1)
    if photometric == PHOTOMETRIC.SEPARATED and arr.ndim == 3 and arr.shape[2] >= 4:
        top = float(np.iinfo(arr.dtype).max) if arr.dtype.kind == "u" else 1.0
        c, m, y, k = (arr[..., i].astype(np.float32) / top for i in range(4))
        rgb = np.stack([(1 - c) * (1 - k), (1 - m) * (1 - k), (1 - y) * (1 - k)], axis=-1)
        return np.rint(rgb * 255.0).astype(np.uint8)
    if arr.ndim == 3:
        n = arr.shape[2]
        if n == 2:  # grey + alpha -> RGBA
            arr = np.concatenate([arr[..., :1]] * 3 + [arr[..., 1:2]], axis=2)
        elif n > 4:
            arr = arr[..., :3]
    return arr


def _tiff_fallback_pil(path: Path, exc: Exception) -> np.ndarray:
    msg = str(exc)
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
            target, _, _ = pil_target(im.mode, im.info)
            arr = np.array(im.convert(target) if target else im)
    except Exception as pil_exc:
        if "imagecodecs" in msg:
            raise MissingCodecError(
                path,
                f"TIFF compression not supported without a codec ({msg.strip(chr(34))}); "
                "install it with: pip install imagecodecs",
            ) from exc
        raise CorruptImageError(
            path, f"TIFF cannot be decoded ({type(exc).__name__}: {exc}; Pillow: {pil_exc})"
        ) from exc
    return arr
