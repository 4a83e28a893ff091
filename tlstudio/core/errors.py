"""Typed errors. Every message names the file or record and the reason.

Each class carries a ``kind`` that says what went wrong in terms a window can act on
(which words to use, whether it is the user's to fix); :func:`error_kind` gives the kind
of any exception, so nobody compares class names as strings."""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar

#: the request cannot be done as asked (a setting, a choice, a record that is gone)
USER = "user"
#: something needed is not there (a file, weights, a codec)
MISSING = "missing"
#: a file is there but its content is wrong (corrupt image, malformed label file)
FORMAT = "format"
#: the file system refused (permissions, a full disk)
IO = "io"
#: the compute device is unavailable or out of memory
DEVICE = "device"
#: the work stopped because it was asked to
CANCELLED = "cancelled"
#: anything else: a bug in tlstudio or a library, worth a report
INTERNAL = "internal"
ERROR_KINDS = (USER, MISSING, FORMAT, IO, DEVICE, CANCELLED, INTERNAL)


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
    """Base class of every error tlstudio raises on purpose; ``kind``: one of
    :data:`ERROR_KINDS` (never :data:`INTERNAL`: these are raised on purpose)."""

    kind: ClassVar[str] = USER


class Cancelled(TlsError):
    """Work stopped because it was asked to (its cancel token); raised by code that
    has no result to give after a cancel."""

    kind = CANCELLED


def error_kind(exc: BaseException) -> str:
    """The kind (:data:`ERROR_KINDS`) of any exception: a :class:`TlsError`'s own;
    missing files and other file-system refusals by their OSError class; running out of
    memory is :data:`DEVICE`; everything else is :data:`INTERNAL` (a bug)."""
    if isinstance(exc, TlsError):
        return exc.kind
    if isinstance(exc, (FileNotFoundError, NotADirectoryError)):
        return MISSING
    if isinstance(exc, OSError):
        return IO
    if isinstance(exc, MemoryError):
        return DEVICE
    return INTERNAL


def error_message(exc: BaseException) -> str:
    """The text to show for ``exc``: its own message (written for people) unless it is
    :data:`INTERNAL`, whose type is named too, as a bug report needs it."""
    text = str(exc)
    if error_kind(exc) == INTERNAL:
        return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text or type(exc).__name__


class ProjectError(TlsError):
    """A project folder cannot be created or opened."""


class SchemaTooNewError(ProjectError):
    """The project was written by a newer tlstudio (higher schema version)."""

    kind = FORMAT


class ReadOnlyProjectError(ProjectError):
    """An edit was refused because the project was opened read-only (its database file or
    folder cannot be written)."""

    kind = IO


class ProjectBusyError(ProjectError):
    """An edit was refused because another program held the project's write lock for
    longer than the busy timeout; nothing was changed and the edit can be retried."""

    kind = IO


class ValidationError(TlsError):
    """Annotation or label-set data is impossible (box outside image, unknown class, ...)."""


class ImageError(TlsError):
    """An image file cannot be read. ``path`` names the file, ``reason`` says why."""

    kind = FORMAT

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

    kind = MISSING


class ImageTooLargeError(ImageError):
    """The image has more pixels than the limit; refused before decoding pixels."""


class FormatError(TlsError):
    """An interchange file is malformed. ``path`` names the file, ``where`` the field or line."""

    kind = FORMAT

    def __init__(self, path: str | Path, where: str, reason: str):
        self.path = Path(path)
        self.where = where
        self.reason = reason
        loc = f" ({where})" if where else ""
        super().__init__(f"{shown_path(self.path)}{loc}: {reason}")
