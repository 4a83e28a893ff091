"""Run exported models without a project and without torch.

The layer between :mod:`tlstudio.ml` and :mod:`tlstudio.core`: numpy, OpenCV (through
core's image reading) and onnxruntime, never torch, torchvision or Qt (an import-linter
contract in pyproject.toml). ``tlstudio predict --model`` runs here; ``tlstudio.ml.export``
writes the files and checks them with this runtime.

- :mod:`.loader`: the loader follows the file's content (ONNX protobuf or TorchScript zip);
  TorchScript runs only through a loader the caller passes to say it trusts the file;
- :mod:`.sidecar`: the sidecar JSON, checked as untrusted input;
- :mod:`.images`: reading and preprocessing as training does;
- :mod:`.decode`: raw outputs → predictions in image pixels;
- :mod:`.objects`: an instance model's per-object mask grids pasted into images;
- :mod:`.threads`: the process's CPU thread budget (read by every compute path).

The names below are imported on first use, so that reading the thread budget (every
command does) does not load numpy, OpenCV and onnxruntime.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from .errors import ExportError, SidecarError, UntrustedModelError
    from .model import ExportedModel
    from .sidecar import Sidecar, read_sidecar, sidecar_path

_WHERE = {
    "ExportError": ".errors",
    "SidecarError": ".errors",
    "UntrustedModelError": ".errors",
    "ExportedModel": ".model",
    "Sidecar": ".sidecar",
    "read_sidecar": ".sidecar",
    "sidecar_path": ".sidecar",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name], __name__), name)


__all__ = [
    "ExportError",
    "ExportedModel",
    "Sidecar",
    "SidecarError",
    "UntrustedModelError",
    "read_sidecar",
    "sidecar_path",
]
