"""Image decoders, one module per container format, each one ``open_*`` function
(:data:`~.base.Opener`): header facts first, with the pixel count checked against
``max_pixels`` before any pixel is decoded; pixels on ``Source.decode()``.

:func:`open_image` picks the decoder from the file's first bytes, never from its name.
Callers go through :mod:`tlstudio.core.imageio`, which turns every failure into an
:class:`~tlstudio.core.errors.ImageError` naming the file.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import CorruptImageError, UnsupportedFormatError
from . import dicom
from .base import ImageData, ImageInfo, Opener, Source
from .dicom import open_dicom
from .pil import open_pil
from .png import open_png
from .sniff import describe, sniff
from .tiff import open_tiff

__all__ = ["DECODERS", "ImageData", "ImageInfo", "Opener", "Source", "open_image"]

HEAD_BYTES = 512
"""How much of a file :func:`sniff` looks at."""

DECODERS: dict[str, Opener] = {
    "PNG": open_png,
    "JPEG": open_pil,
    "BMP": open_pil,
    "TIFF": open_tiff,
    "DICOM": open_dicom,
}
"""The decoder of each format name :func:`~.sniff.sniff` returns."""


def open_image(path: Path, max_pixels: int) -> Source:
    """Read the header of ``path`` with the decoder its content calls for.

    Raises CorruptImageError for an empty file, UnsupportedFormatError for content no
    decoder takes, the decoder's ImageError subclasses, and OSError (not turned into an
    ImageError here) when the file cannot be read."""
    with open(path, "rb") as f:
        head = f.read(HEAD_BYTES)
    if not head:
        raise CorruptImageError(path, "empty file")
    fmt = sniff(head)
    if fmt is None and path.suffix.lower() in dicom.SUFFIXES:
        fmt = "DICOM"  # DICOM without the 128-byte preamble; pydicom decides below
    if fmt is None:
        raise UnsupportedFormatError(path, f"not a supported image format ({describe(head)})")
    return DECODERS[fmt](path, fmt, head, max_pixels)
