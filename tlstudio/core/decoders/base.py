"""What every decoder shares: the result types, the size guard, orientation and the
final wrapping of a decoded array.

Arrays are row-major ``H×W`` (grey) or ``H×W×C`` (RGB or RGBA channel order), index
``[y, x]`` with the origin at the top-left pixel of the image *as it is meant to be
viewed* (EXIF/TIFF orientation applied).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import CorruptImageError, ImageTooLargeError
from ..windowing import default_window


@dataclass(frozen=True)
class ImageInfo:
    """Header facts of an image file (no pixels decoded).

    ``width``/``height`` are in pixels *after* orientation is applied.
    ``bit_depth`` is the bits per sample of the decoded container before any
    DICOM rescale: 8 for files with 1–8 bits, 16 for 9–16, 32 for 32-bit data
    (DICOM: ``BitsAllocated`` rounded up to 8/16/32/64).
    ``channels`` is 1 (grey), 3 (RGB) or 4 (RGBA) as
    :func:`~tlstudio.core.imageio.read_image` returns it.
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


@dataclass
class Source:
    """A file whose header was read; ``decode`` reads the pixels.

    ``verify`` checks that all pixel data is there and decodes (raises CorruptImageError
    otherwise) without holding the decoded image where the format allows it; None means
    "decode and drop". ``decode_reduced(side)`` decodes at a reduced resolution whose
    longest side is at least ``side`` pixels where the format allows it (JPEG); None
    means only full-size decoding exists."""

    info: ImageInfo
    decode: Callable[[], ImageData]
    verify: Callable[[], None] | None = None
    decode_reduced: Callable[[int], ImageData] | None = None


Opener = Callable[[Path, str, bytes, int], Source]
"""A decoder: ``(path, format name, first bytes of the file, max_pixels)`` -> its header
facts and a ``decode`` that reads the pixels. Raises ImageError subclasses."""


def check_size(path: Path, width: int, height: int, max_pixels: int) -> None:
    """The size guard, run on header values before any pixel is decoded: CorruptImageError
    for a non-positive side, ImageTooLargeError above ``max_pixels`` (width × height)."""
    if width <= 0 or height <= 0:
        raise CorruptImageError(path, f"header gives an impossible size {width}×{height}")
    if width * height > max_pixels:
        raise ImageTooLargeError(
            path,
            f"{width}×{height} = {width * height:,} pixels exceeds the limit of {max_pixels:,}",
        )


def decoded_bytes(info: ImageInfo) -> int:
    """Bytes of the array that decoding ``info``'s first page gives."""
    return info.width * info.height * info.channels * max(1, container_bits(info.bit_depth) // 8)


def check_memory(path: Path, info: ImageInfo, max_bytes: int | None) -> None:
    """ImageTooLargeError when the decoded image would need more than ``max_bytes`` (None:
    a quarter of the memory available now, see :func:`memory_budget`)."""
    need = decoded_bytes(info)
    if max_bytes is None:
        available = available_memory()
        if available is None:
            return
        max_bytes = available // 4
        where = f"a quarter of the {_size(available)} of memory available now"
    else:
        where = "the limit"
    if need > max_bytes:
        kind = {1: "grey", 3: "RGB", 4: "RGBA"}.get(info.channels, f"{info.channels}-channel")
        raise ImageTooLargeError(
            path,
            f"{info.width}×{info.height} {kind} {info.bit_depth}-bit decodes to {_size(need)}, "
            f"more than {where} ({_size(max_bytes)})",
        )


def memory_budget() -> int | None:
    """Bytes one decoded image may take: a quarter of the memory available now (None
    where that cannot be read)."""
    available = available_memory()
    return None if available is None else available // 4


def available_memory() -> int | None:
    """Bytes of memory available to this process now: the system's available memory
    (Linux ``MemAvailable``), capped by a cgroup limit; None where it cannot be read."""
    found: int | None = None
    try:
        with open("/proc/meminfo", "rb") as f:
            for line in f:
                if line.startswith(b"MemAvailable:"):
                    found = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        found = None
    if found is None and sys.platform == "win32":  # pragma: no cover - Windows only
        found = _windows_available_memory()
    if found is None and hasattr(os, "sysconf"):
        try:
            found = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
        except (ValueError, OSError):
            found = None
    limit = _cgroup_headroom()
    if limit is not None:
        found = limit if found is None else min(found, limit)
    return found


def _cgroup_headroom() -> int | None:
    """memory.max - memory.current of this process's cgroup (v2), if it has a limit."""
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            text = f.read().strip()
        if text == "max":
            return None
        with open("/sys/fs/cgroup/memory.current") as f:
            return max(0, int(text) - int(f.read().strip()))
    except (OSError, ValueError):
        return None


def _windows_available_memory() -> int | None:  # pragma: no cover - Windows only
    import ctypes

    class MemoryStatus(ctypes.Structure):
        _fields_ = [
            ("dwLength", ctypes.c_ulong),
            ("dwMemoryLoad", ctypes.c_ulong),
            ("ullTotalPhys", ctypes.c_ulonglong),
            ("ullAvailPhys", ctypes.c_ulonglong),
            ("ullTotalPageFile", ctypes.c_ulonglong),
            ("ullAvailPageFile", ctypes.c_ulonglong),
            ("ullTotalVirtual", ctypes.c_ulonglong),
            ("ullAvailVirtual", ctypes.c_ulonglong),
            ("ullAvailExtendedVirtual", ctypes.c_ulonglong),
        ]

    status = MemoryStatus()
    status.dwLength = ctypes.sizeof(MemoryStatus)
    if not ctypes.windll.kernel32.GlobalMemoryStatusEx(ctypes.byref(status)):  # type: ignore[attr-defined]
        return None
    return int(status.ullAvailPhys)


def _size(n: float) -> str:
    """``2.7 GB``, ``640 MB``: decimal units, as file managers show them."""
    for unit in ("bytes", "kB", "MB", "GB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def container_bits(bits: int) -> int:
    """Bits per sample rounded up to the container that holds them (8, 16, 32 or 64)."""
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


def orient(a: np.ndarray, orientation: int) -> np.ndarray:
    """The stored array ``a`` turned as EXIF/TIFF ``orientation`` (1..8) says."""
    fn = _ORIENT.get(orientation)
    return a if fn is None else np.ascontiguousarray(fn(a))


def oriented_size(width: int, height: int, orientation: int) -> tuple[int, int]:
    """(width, height) after :func:`orient`."""
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def finish(
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
