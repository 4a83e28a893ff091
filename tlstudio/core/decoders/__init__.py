"""Image decoders, one module per container format, each one ``open_*`` function
(:data:`~.base.Opener`): header facts first, with the pixel count checked against
``max_pixels`` before any pixel is decoded; pixels on ``Source.decode()``.

:func:`open_image` picks the decoder from the file's first bytes, never from its name.
Callers go through :mod:`tlstudio.core.imageio`, which turns every failure into an
:class:`~tlstudio.core.errors.ImageError` naming the file.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ..errors import CorruptImageError, ImageError, UnsupportedFormatError
from . import dicom
from .base import ImageData, ImageInfo, Opener, Source, check_memory
from .dicom import open_dicom
from .pil import open_pil
from .png import open_png
from .sniff import describe, sniff
from .tiff import open_tiff

__all__ = [
    "DECODERS", "ImageData", "ImageInfo", "Opener", "Source", "file_kind", "open_image",
    "read_head",
]  # fmt: skip

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


def open_image(path: Path, max_pixels: int, max_bytes: int | None = None) -> Source:
    """Read the header of ``path`` with the decoder its content calls for.

    ``max_bytes`` limits the decoded size of the image (None: a quarter of the memory
    available now); like ``max_pixels`` it is checked before any pixel is decoded.
    Raises ImageError for something that is not a regular file (a FIFO would block the
    read), CorruptImageError for an empty file, UnsupportedFormatError for content no
    decoder takes, the decoder's ImageError subclasses (ImageTooLargeError above a
    limit), and OSError (not turned into an ImageError here) when the file cannot be read."""
    head = read_head(path, HEAD_BYTES)
    if not head:
        raise CorruptImageError(path, "empty file")
    fmt = sniff(head)
    if fmt is None and path.suffix.lower() in dicom.SUFFIXES:
        fmt = "DICOM"  # DICOM without the 128-byte preamble; pydicom decides below
    if fmt is None:
        raise UnsupportedFormatError(path, f"not a supported image format ({describe(head)})")
    src = DECODERS[fmt](path, fmt, head, max_pixels)
    check_memory(path, src.info, max_bytes)
    return src


def read_head(path: Path, n: int) -> bytes:
    """The first ``n`` bytes of ``path``. The file is opened without blocking and must be a
    regular file: a FIFO, socket or device is refused with an ImageError instead of
    hanging the caller. OSError when it cannot be opened."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise ImageError(path, f"not a regular file ({file_kind(mode)}); skipped")
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read(n)
    finally:
        os.close(fd)


def file_kind(mode: int) -> str:
    """``a folder``, ``a FIFO (named pipe)``…: what a non-regular file is, in words."""
    for test, name in (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if test(mode):
            return name
    return "an unusual kind of file"
