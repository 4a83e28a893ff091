"""Reading images: PNG, JPEG, BMP, TIFF and DICOM at full bit depth.

Arrays are row-major ``H×W`` (grey) or ``H×W×C`` (RGB or RGBA channel order),
index ``[y, x]`` with the origin at the top-left pixel of the image *as it is
meant to be viewed* (EXIF/TIFF orientation already applied). 16-bit data stays
16-bit; display goes through a linear window ``(center, width)`` in array units
(:func:`to_display`).

The format is taken from the file's content (magic bytes), never from its
name. Every failure on a bad file is an :class:`~tlstudio.core.errors.ImageError`
subclass naming the file and the reason; the pixel count is checked against
``max_pixels`` from the header before any pixel is decoded.
"""

from __future__ import annotations

import hashlib
import os
import struct
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import (
    CorruptImageError,
    ImageError,
    ImageTooLargeError,
    MissingCodecError,
    UnsupportedFormatError,
)

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_SUFFIXES",
    "ImageData",
    "ImageInfo",
    "ThumbnailCache",
    "default_window",
    "file_sha256",
    "is_image_file",
    "probe_image",
    "read_image",
    "to_display",
]

DEFAULT_MAX_PIXELS = 30_000 * 30_000
"""Images with more pixels (width × height of one page/frame) are refused."""

IMAGE_SUFFIXES: frozenset[str] = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".dcm", ".dicom"}
)
"""Lower-case file suffixes (with the dot) that :func:`is_image_file` accepts."""

_DICOM_SUFFIXES = frozenset({".dcm", ".dicom"})
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_HEAD_BYTES = 512

PathLike = str | os.PathLike


@dataclass(frozen=True)
class ImageInfo:
    """Header facts of an image file (no pixels decoded).

    ``width``/``height`` are in pixels *after* orientation is applied.
    ``bit_depth`` is the bits per sample of the decoded container before any
    DICOM rescale: 8 for files with 1–8 bits, 16 for 9–16, 32 for 32-bit data
    (DICOM: ``BitsAllocated`` rounded up to 8/16/32/64).
    ``channels`` is 1 (grey), 3 (RGB) or 4 (RGBA) as :func:`read_image` returns it.
    ``pages`` counts TIFF pages or DICOM frames; only the first is read.
    """

    width: int
    height: int
    bit_depth: int
    channels: int
    format: str  # "PNG", "JPEG", "BMP", "TIFF" or "DICOM"
    pages: int = 1


@dataclass
class ImageData:
    """A decoded image.

    ``array``: ``H×W`` or ``H×W×C`` (RGB/RGBA), orientation applied; dtype uint8 or
    uint16 for ordinary files, DICOM after rescale slope/intercept may be int16,
    int32 or float32 (values in modality units, e.g. HU), MONOCHROME1 inverted so
    high = bright. ``info`` describes ``array`` (width/height after orientation).
    ``window``: default display ``(center, width)`` in array units.
    ``warnings``: human-readable notes (e.g. pages skipped).
    """

    array: np.ndarray
    info: ImageInfo
    window: tuple[float, float]
    warnings: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- small public helpers


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


def default_window(array: np.ndarray) -> tuple[float, float]:
    """A display window ``(center, width)`` in array units for ``array``.

    uint8 (and bool): the full range, ``(128, 256)``. Anything else: the 0.5 and
    99.5 percentiles of the colour samples (alpha excluded, NaN ignored, at most
    ~1M samples looked at), falling back to min..max when those coincide."""
    a = np.asarray(array)
    if a.dtype == np.uint8:
        return (128.0, 256.0)
    if a.dtype == np.bool_:
        return (0.5, 1.0)
    return _robust_window(a)


def _robust_window(a: np.ndarray) -> tuple[float, float]:
    """(center, width) spanning the 0.5..99.5 percentiles of the colour samples of ``a``."""
    if a.ndim == 3 and a.shape[2] == 4:
        a = a[..., :3]
    if a.size == 0:
        return (0.5, 1.0)
    # a regular grid of about 1M pixels: big images are summarised without a full copy
    step = max(1, int(np.ceil(np.sqrt(a.shape[0] * a.shape[1] / 1_000_000))))
    sample = a[::step, ::step].reshape(-1).astype(np.float64)
    if sample.dtype.kind == "f":
        sample = sample[np.isfinite(sample)]
        if sample.size == 0:
            return (0.5, 1.0)
    lo, hi = np.percentile(sample, [0.5, 99.5])
    if hi <= lo:
        lo, hi = float(sample.min()), float(sample.max())
    if hi <= lo:  # constant image
        return (float(lo), 1.0)
    return (float(lo + hi) / 2.0, float(hi - lo))


def to_display(array: np.ndarray, window: tuple[float, float] | None = None) -> np.ndarray:
    """uint8 ``H×W``, ``H×W×3`` or ``H×W×4`` for display through a linear window.

    ``window = (center, width)`` in array units; ``lo = center - width/2`` and
    ``hi = center + width/2``. The range ``[lo, hi)`` is split into 256 equal bins
    (value ``v`` -> ``floor((v - lo) * 256 / width)``, clipped to 0..255), so
    ``(128, 256)`` is the identity on uint8. ``width <= 0`` thresholds at ``center``.
    ``None`` uses :func:`default_window`; uint8 input with ``window=None`` is
    returned unchanged. Alpha (4th channel) is not windowed, only scaled to 8 bits.
    ``H×W×2`` (grey + alpha) becomes ``H×W×4``.
    """
    a = np.asarray(array)
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (1, 2, 3, 4)):
        raise ValueError(f"expected H×W or H×W×{{1,2,3,4}} array, got shape {a.shape}")
    if a.dtype == np.uint8 and window is None:
        return a
    if a.dtype == np.bool_:
        a = a.astype(np.uint8) * np.uint8(255)
        if window is None:
            return a
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim == 3 and a.shape[2] == 2:
        a = np.concatenate([a[..., :1]] * 3 + [a[..., 1:2]], axis=2)
    if window is None:
        window = default_window(a)
    if a.ndim == 3 and a.shape[2] == 4:
        out = np.empty(a.shape, np.uint8)
        out[..., :3] = _apply_window(a[..., :3], window)
        out[..., 3] = _alpha_to_uint8(a[..., 3])
        return out
    return _apply_window(a, window)


def _window_values(values: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    center, width = float(window[0]), float(window[1])
    v = values.astype(np.float64, copy=False)
    if not width > 0:
        return np.where(v >= center, 255, 0).astype(np.uint8)
    lo = center - width / 2.0
    with np.errstate(invalid="ignore"):
        y = np.floor((v - lo) * (256.0 / width))
    y = np.nan_to_num(y, nan=0.0, posinf=255.0, neginf=0.0)
    return np.clip(y, 0, 255).astype(np.uint8)


def _apply_window(a: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    # 8/16-bit integers go through a lookup table: one small computation, then an index.
    if a.dtype in (np.uint8, np.uint16):
        lut = _window_values(np.arange(np.iinfo(a.dtype).max + 1), window)
        return lut[a]
    if a.dtype == np.int16:
        lut = _window_values(np.arange(65536, dtype=np.uint16).view(np.int16), window)
        return lut[a.view(np.uint16)]
    if a.dtype == np.int8:
        lut = _window_values(np.arange(256, dtype=np.uint8).view(np.int8), window)
        return lut[a.view(np.uint8)]
    center, width = float(window[0]), float(window[1])
    v = a.astype(np.float32, copy=False)
    if not width > 0:
        return np.where(v >= center, 255, 0).astype(np.uint8)
    with np.errstate(invalid="ignore", over="ignore"):
        y = np.floor((v - np.float32(center - width / 2.0)) * np.float32(256.0 / width))
        y = np.nan_to_num(y, nan=0.0, posinf=255.0, neginf=0.0)
    return np.clip(y, 0, 255).astype(np.uint8)


def _alpha_to_uint8(alpha: np.ndarray) -> np.ndarray:
    if alpha.dtype == np.uint8:
        return alpha
    if alpha.dtype.kind in "ui":
        top = float(np.iinfo(alpha.dtype).max)
    else:
        top = 1.0  # float alpha is 0..1
    return np.clip(np.rint(alpha.astype(np.float64) * (255.0 / top)), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- entry points


def probe_image(path: PathLike, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageInfo:
    """Header facts of ``path`` without decoding pixels.

    Raises ImageTooLargeError above ``max_pixels`` (width × height), CorruptImageError
    for empty/broken files, UnsupportedFormatError for other content, ImageError
    when the file cannot be opened."""
    p = Path(path)
    return _guard(p, lambda: _open(p, max_pixels).info)


def read_image(path: PathLike, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageData:
    """Decode the first page/frame of ``path`` at full depth (see :class:`ImageData`).

    The pixel count is checked from the header before decoding. Raises the errors
    of :func:`probe_image`, plus MissingCodecError for a compressed DICOM/TIFF
    whose codec is not installed."""
    p = Path(path)

    def run() -> ImageData:
        src = _open(p, max_pixels)
        return src.decode()

    return _guard(p, run)


def _guard(path: Path, fn: Callable[[], Any]) -> Any:
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


@dataclass
class _Source:
    """A file whose header was read; ``decode`` reads the pixels."""

    info: ImageInfo
    decode: Callable[[], ImageData]


def _open(path: Path, max_pixels: int) -> _Source:
    with open(path, "rb") as f:
        head = f.read(_HEAD_BYTES)
    if not head:
        raise CorruptImageError(path, "empty file")
    fmt = _sniff(head)
    if fmt is None and path.suffix.lower() in _DICOM_SUFFIXES:
        fmt = "DICOM"  # DICOM without the 128-byte preamble; pydicom decides below
    if fmt is None:
        raise UnsupportedFormatError(path, f"not a supported image format ({_describe(head)})")
    opener = {
        "PNG": _open_png,
        "JPEG": _open_pil,
        "BMP": _open_pil,
        "TIFF": _open_tiff,
        "DICOM": _open_dicom,
    }[fmt]
    return opener(path, fmt, head, max_pixels)


def _sniff(head: bytes) -> str | None:
    # first: the 128-byte DICOM preamble may itself hold a TIFF header (dual-format files)
    if head[128:132] == b"DICM":
        return "DICOM"
    if head.startswith(_PNG_MAGIC):
        return "PNG"
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"BM") and len(head) >= 26:
        return "BMP"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "TIFF"
    return None


_KNOWN_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive (or an Office document)"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "a JPEG 2000 image"),
    (b"\xff\x4f\xff\x51", "a JPEG 2000 codestream"),
    (b"\x00\x00\x01\x00", "a Windows icon"),
    (b"8BPS", "a Photoshop document"),
    (b"\x93NUMPY", "a NumPy array file"),
    (b"\x89HDF", "an HDF5 file"),
    (b"SQLite format 3", "an SQLite database"),
    (b"\x7fELF", "an executable"),
)


def _describe(head: bytes) -> str:
    """A guess at what ``head`` (the file's first bytes) is, for error messages."""
    for magic, what in _KNOWN_MAGIC:
        if head.startswith(magic):
            return f"content looks like {what}"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "content looks like a WebP image"
    if head[4:8] == b"ftyp":
        brand = head[8:12].decode("ascii", "replace")
        if brand in ("heic", "heix", "mif1", "msf1", "avif"):
            return "content looks like a HEIF/AVIF image"
        return "content looks like an MP4/QuickTime file"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        # a multi-byte character may be cut at the end of the sample
        try:
            text = head[:-3].decode("utf-8")
        except UnicodeDecodeError:
            text = None
    if text is not None and all(c.isprintable() or c in "\t\r\n\f" for c in text):
        stripped = text.lstrip().lower()
        if stripped.startswith(("<!doctype html", "<html")):
            return "content looks like an HTML page"
        if stripped.startswith("<?xml") or stripped.startswith("<svg"):
            return "content looks like XML/SVG text"
        if stripped.startswith(("{", "[")):
            return "content looks like JSON text"
        return "content looks like a text file"
    return f"unknown content starting with {head[:8].hex(' ')}"


def _check_size(path: Path, width: int, height: int, max_pixels: int) -> None:
    if width <= 0 or height <= 0:
        raise CorruptImageError(path, f"header gives an impossible size {width}×{height}")
    if width * height > max_pixels:
        raise ImageTooLargeError(
            path,
            f"{width}×{height} = {width * height:,} pixels exceeds the limit of {max_pixels:,}",
        )


def _container_bits(bits: int) -> int:
    for b in (8, 16, 32, 64):
        if bits <= b:
            return b
    return int(bits)


# --------------------------------------------------------------------------- orientation

# EXIF/TIFF Orientation tag (0x0112): how to turn the stored array into the viewed one.
_ORIENT: dict[int, Callable[[np.ndarray], np.ndarray]] = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1, :],
    5: lambda a: a.swapaxes(0, 1),
    6: lambda a: np.rot90(a, -1),  # rotate 90° clockwise
    7: lambda a: a.swapaxes(0, 1)[::-1, ::-1],
    8: lambda a: np.rot90(a, 1),  # rotate 90° counter-clockwise
}


def _orient(a: np.ndarray, orientation: int) -> np.ndarray:
    fn = _ORIENT.get(orientation)
    return a if fn is None else np.ascontiguousarray(fn(a))


def _oriented_size(width: int, height: int, orientation: int) -> tuple[int, int]:
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


# --------------------------------------------------------------------------- Pillow (JPEG, BMP, PNG ≤ 8 bit)


def _pil_image_module():
    from PIL import Image

    return Image


def _pil_open(path: Path, max_pixels: int):
    Image = _pil_image_module()
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
    except Image.UnidentifiedImageError as exc:
        raise CorruptImageError(path, "the header cannot be parsed") from exc


def _pil_target(mode: str, info: dict) -> tuple[str | None, int, int]:
    """Pillow mode -> (mode to convert to or None, channels, bit depth)."""
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


def _exif_orientation(im) -> int:
    try:
        value = im.getexif().get(0x0112, 1)
        return int(value) if int(value) in range(1, 9) else 1
    except Exception:  # a broken EXIF block must not make the image unreadable
        return 1


def _open_pil(path: Path, fmt: str, head: bytes, max_pixels: int) -> _Source:
    im = _pil_open(path, max_pixels)
    try:
        _check_size(path, im.width, im.height, max_pixels)
        orientation = _exif_orientation(im) if fmt == "JPEG" else 1
        target, channels, bits = _pil_target(im.mode, im.info)
        width, height = _oriented_size(im.width, im.height, orientation)
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
        return _finish(path, _orient(arr, orientation), info)

    return _Source(info, decode)


def _finish(
    path: Path,
    arr: np.ndarray,
    info: ImageInfo,
    window: tuple[float, float] | None = None,
    notes: list[str] | None = None,
) -> ImageData:
    """Wraps a decoded array; ``info`` gets the array's real size and channels."""
    arr = np.ascontiguousarray(arr)
    if arr.dtype.byteorder not in ("=", "|"):
        arr = arr.astype(arr.dtype.newbyteorder("="))
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise CorruptImageError(path, f"decoded to an unexpected shape {arr.shape}")
    channels = 1 if arr.ndim == 2 else int(arr.shape[2])
    h, w = int(arr.shape[0]), int(arr.shape[1])
    if (w, h, channels) != (info.width, info.height, info.channels):
        info = ImageInfo(w, h, info.bit_depth, channels, info.format, info.pages)
    if window is None:
        window = default_window(arr)
    return ImageData(arr, info, (float(window[0]), float(window[1])), list(notes or []))


# --------------------------------------------------------------------------- PNG


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


def _open_png(path: Path, fmt: str, head: bytes, max_pixels: int) -> _Source:
    width, height, bit_depth, color_type = _png_header(path, head)
    _check_size(path, width, height, max_pixels)
    if bit_depth <= 8:
        # Pillow keeps palette/transparency semantics for 1..8-bit files
        return _open_pil(path, fmt, head, max_pixels)
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
        return _finish(path, arr, info)

    return _Source(info, decode)


# --------------------------------------------------------------------------- TIFF


def _tiff_layout(page) -> tuple[int, int]:
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
    bits = _container_bits(int(page.bitspersample))
    if photometric in (PHOTOMETRIC.SEPARATED, PHOTOMETRIC.YCBCR, PHOTOMETRIC.CIELAB):
        bits = 8
    return channels, bits


def _palette_is_8bit(page) -> bool:
    cmap = page.colormap
    return cmap is not None and bool(np.all(np.asarray(cmap) % 257 == 0))


def _tiff_orientation(page) -> int:
    tag = page.tags.get(274)
    try:
        value = int(tag.value) if tag is not None else 1
    except (TypeError, ValueError):
        return 1
    return value if value in range(1, 9) else 1


def _open_tiff(path: Path, fmt: str, head: bytes, max_pixels: int) -> _Source:
    import tifffile

    try:
        tif = tifffile.TiffFile(path)
    except tifffile.TiffFileError as exc:
        raise CorruptImageError(path, f"TIFF header cannot be parsed ({exc})") from exc
    with tif:
        pages = len(tif.pages)
        if pages == 0:
            raise CorruptImageError(path, "TIFF without any image page")
        page = tif.pages[0]
        width, height = int(page.imagewidth), int(page.imagelength)
        _check_size(path, width, height, max_pixels)
        orientation = _tiff_orientation(page)
        channels, bits = _tiff_layout(page)
        w, h = _oriented_size(width, height, orientation)
        info = ImageInfo(w, h, bits, channels, fmt, pages)
        _check_tiff_extent(path, page)

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
        arr = _orient(arr, orientation)
        return _finish(path, arr, info, notes=notes)

    return _Source(info, decode)


def _check_tiff_extent(path: Path, page) -> None:
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
        page = tif.pages[0]
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
    Image = _pil_image_module()
    try:
        with Image.open(path) as im:
            im.load()
            target, _, _ = _pil_target(im.mode, im.info)
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


# --------------------------------------------------------------------------- DICOM

_TS_PACKAGES = {
    "JPEG-LS": "pip install pyjpegls  (or: pip install pylibjpeg pylibjpeg-libjpeg)",
    "JPEG 2000": "pip install pylibjpeg pylibjpeg-openjpeg",
    "High-Throughput JPEG 2000": "pip install pylibjpeg pylibjpeg-openjpeg",
    "JPEG": "pip install pylibjpeg pylibjpeg-libjpeg",
}


def _codec_hint(ts_name: str) -> str:
    for key in ("High-Throughput JPEG 2000", "JPEG-LS", "JPEG 2000", "JPEG"):
        if key in ts_name:
            return _TS_PACKAGES[key]
    return "pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg  (or python-gdcm)"


def _first(value: Any) -> float | None:
    """First number of a possibly multi-valued DICOM element, or None."""
    if value is None:
        return None
    try:
        if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
            value = value[0] if len(value) else None
        return None if value is None or value == "" else float(value)
    except (TypeError, ValueError, IndexError):
        return None


def _functional(ds, seq: str, attr: str) -> Any:
    """``attr`` from Shared or first Per-Frame Functional Groups (enhanced multi-frame)."""
    for groups in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        try:
            item = getattr(ds, groups)[0]
            value = getattr(getattr(item, seq)[0], attr)
        except (AttributeError, IndexError, KeyError, TypeError):
            continue
        if value is not None:
            return value
    return None


def _dicom_attr(ds, attr: str, seq: str) -> Any:
    value = ds.get(attr)
    if value is None or value == "":
        value = _functional(ds, seq, attr)
    return value


def _open_dicom(path: Path, fmt: str, head: bytes, max_pixels: int) -> _Source:
    import pydicom
    from pydicom.errors import InvalidDicomError

    force = head[128:132] != b"DICM"
    try:
        # defer_size: large values (PixelData) are read from the file only when used
        ds = pydicom.dcmread(path, defer_size=1024, force=force)
        has_pixels = any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"))
    except Exception as exc:
        if force:  # only the suffix said DICOM
            raise UnsupportedFormatError(path, f"not a DICOM image ({_describe(head)})") from exc
        if isinstance(exc, (InvalidDicomError, EOFError, ValueError, KeyError)):
            raise CorruptImageError(path, f"DICOM header cannot be parsed ({exc})") from exc
        raise
    if not has_pixels:
        if force and not any(k in ds for k in ("SOPClassUID", "Modality", "StudyInstanceUID")):
            raise UnsupportedFormatError(path, f"not a DICOM image ({_describe(head)})")
        modality = ds.get("Modality")
        what = "DICOM file without pixel data" + (f" (modality {modality})" if modality else "")
        raise UnsupportedFormatError(path, what)
    rows, cols = ds.get("Rows"), ds.get("Columns")
    if rows is None or cols is None:
        raise CorruptImageError(path, "DICOM without Rows/Columns")
    width, height = int(cols), int(rows)
    _check_size(path, width, height, max_pixels)
    frames = int(_first(ds.get("NumberOfFrames")) or 1)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    spp = int(ds.get("SamplesPerPixel", 1) or 1)
    channels = 3 if (spp >= 3 or photometric == "PALETTE COLOR") else 1
    bits = _container_bits(int(ds.get("BitsAllocated", 16) or 16))
    info = ImageInfo(width, height, bits, channels, fmt, max(frames, 1))

    def decode() -> ImageData:
        return _decode_dicom(path, ds, info, photometric, frames)

    return _Source(info, decode)


def _ensure_transfer_syntax(ds) -> None:
    """Files without File Meta (read with force=True) get the syntax they were read with."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    meta = getattr(ds, "file_meta", None)
    if meta is not None and "TransferSyntaxUID" in meta:
        return
    encoding = getattr(ds, "original_encoding", None)
    if encoding is not None and encoding[0] is not None:
        implicit, little = encoding
    else:
        implicit = getattr(ds, "is_implicit_VR", True)
        little = getattr(ds, "is_little_endian", True)
    if meta is None:
        ds.file_meta = meta = FileMetaDataset()
    if implicit:
        meta.TransferSyntaxUID = ImplicitVRLittleEndian
    else:
        meta.TransferSyntaxUID = ExplicitVRLittleEndian if little else ExplicitVRBigEndian


def _dicom_pixels(path: Path, ds) -> np.ndarray:
    _ensure_transfer_syntax(ds)
    ts = ds.file_meta.TransferSyntaxUID
    try:
        try:
            from pydicom.pixels import pixel_array
        except ImportError:  # pydicom 2.x: decodes every frame
            arr = ds.pixel_array
            frames = int(_first(ds.get("NumberOfFrames")) or 1)
            return arr[0] if frames > 1 else arr
        return pixel_array(ds, index=0)
    except (RuntimeError, NotImplementedError) as exc:
        msg = str(exc)
        compressed = bool(getattr(ts, "is_compressed", False))
        low = msg.lower()
        # pydicom: "... all plugins are missing dependencies", "no pixel data decoders",
        # pydicom 2: "... handlers ...", Pillow: "does not support ... 12-bit precision"
        missing = any(
            s in low
            for s in ("missing", "no pixel data decoders", "handler", "not support", "unsupported")
        )
        if compressed and (missing or isinstance(exc, NotImplementedError)):
            raise MissingCodecError(
                path,
                f"DICOM pixel data is compressed with '{ts.name}' ({ts}) and no installed "
                f"decoder handles it; install one with: {_codec_hint(ts.name)}",
            ) from exc
        raise CorruptImageError(path, f"DICOM pixel data cannot be decoded ({msg})") from exc
    except (ValueError, EOFError, OSError, KeyError, AttributeError, IndexError) as exc:
        raise CorruptImageError(path, f"DICOM pixel data cannot be decoded ({exc})") from exc


def _stored_range(ds) -> tuple[float, float] | None:
    bits = ds.get("BitsStored") or ds.get("BitsAllocated")
    if not bits:
        return None
    bits = int(bits)
    if int(ds.get("PixelRepresentation", 0) or 0) == 1:
        return (-(2.0 ** (bits - 1)), 2.0 ** (bits - 1) - 1)
    return (0.0, 2.0**bits - 1)


def _narrow_int(values: np.ndarray) -> np.ndarray:
    """int64 values -> the smallest of int16/uint16/int32 holding them (else float32)."""
    if values.size == 0:
        return values.astype(np.int16)
    lo, hi = int(values.min()), int(values.max())
    for dt in (np.int16, np.uint16, np.int32):
        info = np.iinfo(dt)
        if info.min <= lo and hi <= info.max:
            return values.astype(dt)
    return values.astype(np.float32)


def _decode_dicom(path: Path, ds, info: ImageInfo, photometric: str, frames: int) -> ImageData:
    arr = _dicom_pixels(path, ds)
    notes: list[str] = []
    if frames > 1:
        notes.append(f"multi-frame DICOM: {frames} frames, showing the first")
    if arr.ndim == 3 and arr.shape[-1] not in (3, 4) and arr.shape[0] == frames:
        arr = arr[0]  # a decoder that ignored ``index``

    if photometric == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        arr = apply_color_lut(arr, ds)
        if arr.dtype == np.uint16:  # LUT entries are 16-bit; colours need 8
            arr = (arr >> 8).astype(np.uint8)
        return _finish(path, arr, info, window=(128.0, 256.0), notes=notes)
    if arr.ndim == 3:  # colour: no modality LUT or window in the standard
        return _finish(path, arr, info, window=default_window(arr), notes=notes)

    slope = _first(_dicom_attr(ds, "RescaleSlope", "PixelValueTransformationSequence"))
    intercept = _first(_dicom_attr(ds, "RescaleIntercept", "PixelValueTransformationSequence"))
    srange = _stored_range(ds)
    if slope is not None or intercept is not None:
        s = 1.0 if slope is None else slope
        b = 0.0 if intercept is None else intercept
        if (s, b) != (1.0, 0.0):
            if float(s).is_integer() and float(b).is_integer():
                arr = _narrow_int(arr.astype(np.int64) * int(s) + int(b))
            else:
                arr = (arr.astype(np.float64) * s + b).astype(np.float32)
            if srange is not None:
                srange = tuple(sorted((srange[0] * s + b, srange[1] * s + b)))
    elif "ModalityLUTSequence" in ds:
        from pydicom.pixels import apply_modality_lut

        arr = np.asarray(apply_modality_lut(arr, ds))
        srange = None

    center = _first(_dicom_attr(ds, "WindowCenter", "FrameVOILUTSequence"))
    width = _first(_dicom_attr(ds, "WindowWidth", "FrameVOILUTSequence"))
    window = (center, width) if center is not None and width is not None and width > 0 else None

    if photometric == "MONOCHROME1":
        # MONOCHROME1: low values are bright. Mirror the values inside the stored range
        # so that high = bright everywhere downstream; the window mirrors with them.
        lo, hi = srange if srange is not None else (float(arr.min()), float(arr.max()))
        total = lo + hi
        if arr.dtype.kind in "ui" and float(total).is_integer():
            arr = _narrow_int(int(total) - arr.astype(np.int64))
        else:
            arr = (total - arr.astype(np.float64)).astype(np.float32)
        if window is not None:
            window = (total - window[0], window[1])
    if window is None:  # the data's range, whatever the dtype (1-bit data arrives as uint8)
        window = _robust_window(arr)
    return _finish(path, arr, info, window=window, notes=notes)


# --------------------------------------------------------------------------- thumbnails


class ThumbnailCache:
    """PNG thumbnails on disk, keyed by image content hash.

    Files live at ``cache_dir/thumbs/<key[:2]>/<key>_<size>.png``; the longest side
    is ``size`` pixels (aspect kept), pixels are the image through its default
    window (:func:`to_display`), grey stays grey, RGBA keeps alpha."""

    def __init__(self, cache_dir: Path, size: int = 256):
        if size < 1:
            raise ValueError(f"thumbnail size must be >= 1, got {size}")
        self.cache_dir = Path(cache_dir)
        self.size = int(size)

    def path_for(self, key: str) -> Path:
        """Where the thumbnail of content hash ``key`` lives (it may not exist yet)."""
        if not key or any(c in key for c in "/\\") or key.startswith("."):
            raise ValueError(f"invalid thumbnail key {key!r}")
        return self.cache_dir / "thumbs" / key[:2] / f"{key}_{self.size}.png"

    def get(self, path: PathLike, key: str) -> Path:
        """Path of the thumbnail of image ``path`` (content hash ``key``), made on first use.

        Raises the ImageError subclasses of :func:`read_image` for a bad image."""
        out = self.path_for(key)
        if out.is_file():
            return out
        data = read_image(path)
        thumb = self.render(data)
        out.parent.mkdir(parents=True, exist_ok=True)
        _write_png_atomic(out, thumb)
        return out

    def render(self, data: ImageData) -> np.ndarray:
        """The thumbnail pixels (uint8) of a decoded image."""
        import cv2

        disp = to_display(data.array, data.window)
        h, w = disp.shape[:2]
        scale = self.size / max(h, w)
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        if (nw, nh) == (w, h):
            return disp
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_NEAREST
        return cv2.resize(np.ascontiguousarray(disp), (nw, nh), interpolation=interp)


def _write_png_atomic(out: Path, pixels: np.ndarray) -> None:
    """Writes ``pixels`` as PNG to ``out`` via a temp file + os.replace (never half a file)."""
    Image = _pil_image_module()
    fd, tmp = tempfile.mkstemp(prefix=f".{out.stem}.", suffix=".tmp", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            Image.fromarray(pixels).save(f, format="PNG")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
