"""Reading images: PNG, JPEG, BMP, TIFF and DICOM at full bit depth.

Arrays are row-major ``H×W`` (grey) or ``H×W×C`` (RGB or RGBA channel order),
index ``[y, x]`` with the origin at the top-left pixel of the image *as it is
meant to be viewed* (EXIF/TIFF orientation already applied). 16-bit data stays
16-bit; display goes through a linear window ``(center, width)`` in array units
(:func:`tlstudio.core.windowing.to_display`).

The format is taken from the file's content (magic bytes), never from its
name. Every failure on a bad file is an :class:`~tlstudio.core.errors.ImageError`
subclass naming the file and the reason. Before any pixel is decoded, the header's
size is checked against two limits: ``max_pixels`` (width × height) and ``max_bytes``,
the decoded size, by default a quarter of the memory available at that moment, so an
image that fits on a workstation may be refused on a small laptop, with both figures
in the message. The decoders live in :mod:`tlstudio.core.decoders`, one module per
format.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from .decoders import ImageData, ImageInfo, open_image
from .decoders.base import memory_budget
from .errors import CorruptImageError, ImageError, ImageTooLargeError

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_SUFFIXES",
    "ImageData",
    "ImageInfo",
    "PathLike",
    "file_sha256",
    "is_image_file",
    "memory_budget",
    "probe_image",
    "read_image",
    "verify_image",
]

DEFAULT_MAX_PIXELS = 30_000 * 30_000
"""Images with more pixels (width × height of one page/frame) are refused, whatever the
memory (see ``max_bytes`` for the limit that follows the machine)."""

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


def probe_image(
    path: PathLike, *, max_pixels: int = DEFAULT_MAX_PIXELS, max_bytes: int | None = None
) -> ImageInfo:
    """Header facts of ``path`` without decoding pixels.

    Raises ImageTooLargeError above ``max_pixels`` (width × height) or when decoding would
    take more than ``max_bytes`` (None: a quarter of the memory available now),
    CorruptImageError for empty/broken files, UnsupportedFormatError for other content,
    ImageError when the file cannot be opened or is not a regular file."""
    p = Path(path)
    return _guard(p, lambda: open_image(p, max_pixels, max_bytes).info)


def verify_image(
    path: PathLike, *, max_pixels: int = DEFAULT_MAX_PIXELS, max_bytes: int | None = None
) -> ImageInfo:
    """Check that the whole file decodes (nothing truncated or corrupt) and return its
    header facts, without holding the decoded image where the format allows it: PNG is
    inflated in pieces, JPEG decoded at 1/8 scale, uncompressed BMP and TIFF checked by
    size; other files are decoded and dropped. Raises the errors of :func:`read_image`."""
    p = Path(path)

    def run() -> ImageInfo:
        src = open_image(p, max_pixels, max_bytes)
        if src.verify is not None:
            src.verify()
        else:
            src.decode()
        return src.info

    return _guard(p, run)


def read_image(
    path: PathLike,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int | None = None,
    reduce_to: int | None = None,
) -> ImageData:
    """Decode the first page/frame of ``path`` at full depth (see :class:`ImageData`).

    The limits of :func:`probe_image` are checked from the header before decoding.
    ``reduce_to``: the caller needs a longest side of only this many pixels, so a JPEG is
    decoded at 1/2, 1/4 or 1/8 scale (never below ``reduce_to``); other formats decode at
    full size. Raises the errors of :func:`probe_image`, plus MissingCodecError for a
    compressed DICOM/TIFF whose codec is not installed."""
    p = Path(path)

    def run() -> ImageData:
        src = open_image(p, max_pixels, max_bytes)
        if reduce_to is not None and src.decode_reduced is not None:
            return src.decode_reduced(reduce_to)
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
