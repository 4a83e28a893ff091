"""Typed errors. Every message names the file or record and the reason."""

from __future__ import annotations

from pathlib import Path


class TlsError(Exception):
    """Base class of every error tlstudio raises on purpose."""


class ProjectError(TlsError):
    """A project folder cannot be created or opened."""


class SchemaTooNewError(ProjectError):
    """The project was written by a newer tlstudio (higher schema version)."""


class ValidationError(TlsError):
    """Annotation or label-set data is impossible (box outside image, unknown class, ...)."""


class ImageError(TlsError):
    """An image file cannot be read. ``path`` names the file, ``reason`` says why."""

    def __init__(self, path: str | Path, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class UnsupportedFormatError(ImageError):
    """The file is not an image format tlstudio reads (or its extension lies)."""


class CorruptImageError(ImageError):
    """The file is truncated, zero-byte or otherwise undecodable."""


class MissingCodecError(ImageError):
    """A compressed DICOM needs a codec that is not installed (the message names it)."""


class ImageTooLargeError(ImageError):
    """The image has more pixels than the limit; refused before decoding pixels."""


class FormatError(TlsError):
    """An interchange file is malformed. ``path`` names the file, ``where`` the field or line."""

    def __init__(self, path: str | Path, where: str, reason: str):
        self.path = Path(path)
        self.where = where
        self.reason = reason
        loc = f" ({where})" if where else ""
        super().__init__(f"{self.path}{loc}: {reason}")
