"""PNG: the header from the IHDR chunk; 16-bit files through OpenCV (which keeps all 16
bits, where Pillow reduces colour to 8), 1–8-bit files through Pillow. The orientation of
an eXIf chunk is applied to both, as for JPEG and TIFF.

:func:`verify_png` checks a whole file without decoding it into an image: every chunk's
CRC, and the compressed pixel data inflated in pieces to exactly the size the header
calls for, with a valid filter byte on every row. That is everything that can fail while
decoding a PNG, in constant memory.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ..errors import CorruptImageError
from .base import ImageData, ImageInfo, Source, check_size, finish, orient, oriented_size
from .pil import exif_orientation, open_pil

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CRITICAL = frozenset({b"IHDR", b"PLTE", b"IDAT", b"IEND"})
_READ = 1 << 20  # bytes read (and inflated) at a time by verify_png
# (x0, y0, dx, dy) of the seven Adam7 passes
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
          (0, 1, 1, 2))  # fmt: skip
_SAMPLES = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # samples per pixel of each colour type


def open_png(path: Path, fmt: str, head: bytes, max_pixels: int) -> Source:
    """The decoder of PNG (see :data:`~.base.Opener`)."""
    width, height, bit_depth, color_type, interlace = _png_header(path, head)
    check_size(path, width, height, max_pixels)
    orientation = png_orientation(path)

    def verify() -> None:
        verify_png(path)

    if bit_depth <= 8:
        # Pillow keeps palette/transparency semantics for 1..8-bit files
        src = open_pil(path, fmt, head, max_pixels, orientation=orientation)
        return replace(src, verify=verify)
    channels = {0: 1, 2: 3, 4: 4, 6: 4}[color_type]
    w, h = oriented_size(width, height, orientation)
    info = ImageInfo(w, h, 16, channels, fmt)

    def decode() -> ImageData:
        import cv2

        # Pillow reduces 16-bit colour PNG to 8 bits; OpenCV keeps 16 (as BGR[A]).
        # IMREAD_UNCHANGED also means "do not apply EXIF orientation": it is applied below.
        buf = np.fromfile(path, dtype=np.uint8)
        arr = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
        del buf
        if arr is None or arr.shape[:2] != (height, width):
            raise CorruptImageError(path, "PNG pixel data is truncated or corrupt")
        if arr.ndim == 3:
            if channels == 1:  # grey with a tRNS colour: transparency ignored, as Pillow does
                arr = arr[..., 0]
            elif channels == 3:
                arr = cv2.cvtColor(arr[..., :3], cv2.COLOR_BGR2RGB)
            elif arr.shape[2] == 4:
                arr = cv2.cvtColor(arr, cv2.COLOR_BGRA2RGBA)
        return finish(path, orient(arr, orientation), info)

    return Source(info, decode, verify=verify)


def _png_header(path: Path, head: bytes) -> tuple[int, int, int, int, int]:
    """(width, height, bit depth, colour type, interlace method) from the IHDR chunk."""
    if len(head) < 33 or head[12:16] != b"IHDR":
        raise CorruptImageError(path, "PNG without a valid IHDR header (truncated?)")
    width, height, bit_depth, color_type, _, _, interlace = struct.unpack(">IIBBBBB", head[16:29])
    allowed = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}
    if bit_depth not in allowed.get(color_type, ()) or interlace not in (0, 1):
        raise CorruptImageError(
            path, f"PNG header has invalid bit depth {bit_depth} / colour type {color_type}"
        )
    return width, height, bit_depth, color_type, interlace


def _chunks(f: BinaryIO, path: Path) -> Iterator[tuple[bytes, int, int]]:
    """(type, data length, file offset of the data) of each chunk after the signature, up
    to IEND; the file position is left for the caller to move. CorruptImageError for a
    chunk header cut off or impossible."""
    pos = len(_SIGNATURE)
    while True:
        f.seek(pos)
        header = f.read(8)
        if len(header) < 8:
            raise CorruptImageError(path, f"PNG is truncated: no IEND chunk (file ends at {pos})")
        length, kind = struct.unpack(">I4s", header)
        if length > 0x7FFFFFFF:
            raise CorruptImageError(path, f"PNG chunk {kind!r} at byte {pos} has length {length}")
        yield kind, length, pos + 8
        if kind == b"IEND":
            return
        pos += 12 + length


def png_orientation(path: Path) -> int:
    """The EXIF orientation (1..8) of the PNG's eXIf chunk, wherever it is; 1 without one
    (or when the file cannot be walked: the decoder reports that)."""
    try:
        with open(path, "rb") as f:
            for kind, length, offset in _chunks(f, path):
                if kind == b"eXIf":
                    f.seek(offset)
                    return exif_orientation(f.read(min(length, 1 << 20)))
    except (CorruptImageError, OSError):
        return 1
    return 1


def verify_png(path: Path) -> None:
    """CorruptImageError unless every chunk of the PNG is whole with the right CRC (critical
    chunks) and its pixel data inflates to exactly the rows the header describes, each with
    a valid filter type. Memory stays about :data:`_READ` bytes whatever the image size."""
    with open(path, "rb") as f:
        head = f.read(64)
        width, height, bit_depth, color_type, interlace = _png_header(path, head)
        rows = _row_layout(width, height, bit_depth * _SAMPLES[color_type], interlace)
        checker = _RowChecker(path, rows)
        inflater = zlib.decompressobj()
        seen_idat = ended_idat = False
        for kind, length, offset in _chunks(f, path):
            if kind == b"IDAT":
                if ended_idat:
                    raise CorruptImageError(path, "PNG has IDAT chunks that are not consecutive")
                seen_idat = True
            elif seen_idat:
                ended_idat = True
            f.seek(offset)
            crc = zlib.crc32(kind)
            left = length
            while left:
                piece = f.read(min(left, _READ))
                if not piece:
                    raise CorruptImageError(
                        path, f"PNG is truncated: chunk {kind.decode('latin-1')} is cut off"
                    )
                left -= len(piece)
                crc = zlib.crc32(piece, crc)
                if kind == b"IDAT":
                    _inflate(path, inflater, piece, checker)
            tail = f.read(4)
            if len(tail) < 4:
                raise CorruptImageError(path, f"PNG is truncated after chunk {kind!r}")
            if kind in _CRITICAL and struct.unpack(">I", tail)[0] != crc:
                raise CorruptImageError(
                    path, f"PNG chunk {kind.decode('latin-1')} at byte {offset - 8} is corrupt "
                    "(CRC mismatch)"
                )  # fmt: skip
            if kind == b"IEND":
                break
    if not seen_idat:
        raise CorruptImageError(path, "PNG without pixel data (no IDAT chunk)")
    if checker.remaining:
        raise CorruptImageError(
            path, f"PNG pixel data is truncated: {checker.remaining:,} bytes of rows missing"
        )


def _inflate(path: Path, inflater: zlib._Decompress, data: bytes, checker: _RowChecker) -> None:
    """Inflate ``data`` into ``checker`` in pieces of at most :data:`_READ` bytes."""
    try:
        while data and not inflater.eof:
            out = inflater.decompress(data, _READ)
            checker.feed(out)
            data = inflater.unconsumed_tail
    except zlib.error as exc:
        raise CorruptImageError(path, f"PNG pixel data is corrupt ({exc})") from None


def _row_layout(
    width: int, height: int, bits_per_pixel: int, interlace: int
) -> list[tuple[int, int]]:
    """(rows, bytes per row including the filter byte) of each pass (one for plain PNG)."""
    if not interlace:
        return [(height, 1 + (width * bits_per_pixel + 7) // 8)]
    out = []
    for x0, y0, dx, dy in _ADAM7:
        w = (width - x0 + dx - 1) // dx if width > x0 else 0
        h = (height - y0 + dy - 1) // dy if height > y0 else 0
        if w and h:
            out.append((h, 1 + (w * bits_per_pixel + 7) // 8))
    return out


class _RowChecker:
    """Counts inflated bytes against the rows expected and checks each row's filter byte."""

    def __init__(self, path: Path, layout: list[tuple[int, int]]):
        self.path = path
        self.layout = list(layout)
        self.remaining = sum(rows * stride for rows, stride in layout)
        self._pass = 0
        self._offset = 0  # position within the current row

    def feed(self, data: bytes) -> None:
        if len(data) > self.remaining:
            data = data[: self.remaining]  # extra data after the last row: ignored, as libpng
        self.remaining -= len(data)
        buf = np.frombuffer(data, np.uint8)
        pos = 0
        while pos < len(buf):
            rows, stride = self.layout[self._pass]
            # bytes left in this pass from the current position
            pass_left = rows * stride - self._offset
            take = min(pass_left, len(buf) - pos)
            first = (-self._offset) % stride  # index in this piece of the next row start
            filters = buf[pos + first : pos + take : stride]
            if filters.size and int(filters.max()) > 4:
                raise CorruptImageError(self.path, "PNG pixel data is corrupt (bad row filter)")
            pos += take
            self._offset += take
            if self._offset == rows * stride:
                self._pass += 1
                self._offset = 0
