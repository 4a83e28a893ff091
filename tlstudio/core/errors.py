"""Typed errors. Every message names the file or record and the reason."""

from __future__ import annotations

import os
from pathlib import Path


def shown_path(path: str | os.PathLike[str]) -> str:
    """``path`` as text that can always be printed or shown: bytes of a file name that are
    not valid UTF-8 (kept by Python as lone surrogates) appear as ``\\xff`` escapes."""
    text = os.fspath(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(text).decode("utf-8", "backslashreplace")
    return text


class TlsError(Exception):
    """Base class of every error tlstudio raises on purpose."""


class ProjectError(TlsError):
    """A project folder cannot be created or opened."""


class SchemaTooNewError(ProjectError):
    """The project was written by a newer tlstudio (higher schema version)."""


class ReadOnlyProjectError(ProjectError):
    """An edit was refused because the project was opened read-only (its database file or
    folder cannot be written)."""


class ProjectBusyError(ProjectError):
    """An edit was refused because another program held the project's write lock for
    longer than the busy timeout; nothing was changed and the edit can be retried."""


class ValidationError(TlsError):
    """Annotation or label-set data is impossible (box outside image, unknown class, ...)."""


class ImageError(TlsError):
    """An image file cannot be read. ``path`` names the file, ``reason`` says why."""

    def __init__(self, path: str | Path, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{shown_path(self.path)}: {reason}")


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
        super().__init__(f"{shown_path(self.path)}{loc}: {reason}")
