"""Which image format a file holds, from its first bytes (never from its name)."""

from __future__ import annotations

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def sniff(head: bytes) -> str | None:
    """The format (``PNG``, ``JPEG``, ``BMP``, ``TIFF`` or ``DICOM``) that the file's first
    bytes ``head`` (512 are read) announce; None for anything else."""
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


def describe(head: bytes) -> str:
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
