"""Errors of exported models: loading, checking and running them."""

from __future__ import annotations

from pathlib import Path

from tlstudio.core.errors import FormatError, TlsError


class ExportError(TlsError):
    """A run cannot be exported, or an exported model cannot be loaded or run (the message
    names the file and says why)."""


class UntrustedModelError(ExportError):
    """The model file is a TorchScript archive (a program that runs with the user's rights)
    and the caller did not say it trusts it."""


class SidecarError(ExportError, FormatError):
    """A model's sidecar JSON is unreadable or holds a value the runtime will not use.
    ``path`` names the sidecar, ``field`` the JSON field (dotted, "" for the whole file)."""

    def __init__(self, path: str | Path, field: str, reason: str):
        FormatError.__init__(self, path, f"field {field!r}" if field else "", reason)
        self.field = field
