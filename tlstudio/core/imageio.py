"""Reading images: PNG, JPEG, BMP, TIFF and DICOM at full bit depth.

Arrays are row-major ``H×W`` (grey) or ``H×W×C`` (RGB or RGBA channel order),
index ``[y, x]`` with the origin at the top-left pixel of the image *as it is
meant to be viewed* (EXIF/TIFF orientation already applied). 16-bit data stays
16-bit; display goes through a linear window ``(center, width)`` in array units
(:func:`tlstudio.core.windowing.to_display`).

The format is taken from the file's content (magic bytes), never from its
name. Every failure on a bad file is an :class:`~tlstudio.core.errors.ImageError`
subclass naming the file and the reason; the pixel count is checked against
``max_pixels`` from the header before any pixel is decoded. The decoders live in
:mod:`tlstudio.core.decoders`, one module per format.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from .decoders import ImageData, ImageInfo, open_image
from .errors import CorruptImageError, ImageError, ImageTooLargeError

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_SUFFIXES",
    "ImageData",
    "ImageInfo",
    "PathLike",
    "file_sha256",
    "is_image_file",
    "probe_image",
    "read_image",
]

DEFAULT_MAX_PIXELS = 30_000 * 30_000
"""Images with more pixels (width × height of one page/frame) are refused."""

IMAGE_SUFFIXES: frozenset[str] = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".dcm", ".dicom"}
)
"""Lower-case file suffixes (with the dot) that :func:`is_image_file` accepts."""

PathLike = str | os.PathLike[str]

_T = TypeVar("_T")


def is_image_file(path: PathLike) -> bool:
    """True if the file name has one of :data:`IMAGE_SUFFIXES` (content not checked)."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def file_sha256(path: PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of the file's bytes, read in ``chunk_size`` pieces. Raises OSError."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            h.update(chunk)
    return h.hexdigest()


def probe_image(path: PathLike, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageInfo:
    """Header facts of ``path`` without decoding pixels.

    Raises ImageTooLargeError above ``max_pixels`` (width × height), CorruptImageError
    for empty/broken files, UnsupportedFormatError for other content, ImageError
    when the file cannot be opened."""
    p = Path(path)
    return _guard(p, lambda: open_image(p, max_pixels).info)


def read_image(path: PathLike, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageData:
    """Decode the first page/frame of ``path`` at full depth (see :class:`ImageData`).

    The pixel count is checked from the header before decoding. Raises the errors
    of :func:`probe_image`, plus MissingCodecError for a compressed DICOM/TIFF
    whose codec is not installed."""
    p = Path(path)

    def run() -> ImageData:
        src = open_image(p, max_pixels)
        return src.decode()

    return _guard(p, run)


def _guard(path: Path, fn: Callable[[], _T]) -> _T:
    """Runs ``fn`` and turns every failure into an ImageError naming ``path``."""
    try:
        return fn()
    except ImageError:
        raise
    except MemoryError as exc:
        raise ImageTooLargeError(path, f"not enough memory to decode ({exc})") from exc
    except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        raise ImageError(path, f"cannot open file ({exc.strerror or exc})") from exc
    except Exception as exc:  # a bad file must never escape as a library's own exception
        raise CorruptImageError(path, f"cannot decode: {type(exc).__name__}: {exc}") from exc
