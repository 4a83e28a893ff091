"""Choosing the torch device, seeding every random generator and saving their states.

The RNG state is kept as tensors and plain values so a checkpoint holding it loads with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

from tlstudio.core.errors import DEVICE, TlsError


class DeviceError(TlsError):
    """The requested device (CUDA, MPS) is not available or does not exist."""

    kind = DEVICE


def select_device(pref: str = "auto") -> torch.device:
    """``auto``: CUDA, then MPS, then CPU. An explicit ``cuda``/``cuda:N``/``mps`` that is not
    available raises :class:`DeviceError` saying why."""
    p = (pref or "auto").strip().lower()
    mps = getattr(torch.backends, "mps", None)
    mps_ok = bool(mps is not None and mps.is_available())
    if p == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if mps_ok else torch.device("cpu")
    if p == "cpu":
        return torch.device("cpu")
    if p == "cuda" or p.startswith("cuda:"):
        if not torch.cuda.is_available():
            why = (
                "this torch build has no CUDA support"
                if torch.version.cuda is None
                else "no NVIDIA GPU or driver was found"
            )
            raise DeviceError(
                f"device {pref!r} was requested but CUDA is not available ({why}); "
                "choose device 'cpu' or 'auto'"
            )
        try:
            dev = torch.device(p)
        except RuntimeError as exc:
            raise DeviceError(f"device {pref!r} is not a valid CUDA device name: {exc}") from None
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise DeviceError(
                f"device {pref!r} does not exist: {count} CUDA device(s), numbered 0..{count - 1}"
            )
        return dev
    if p == "mps":
        if not mps_ok:
            raise DeviceError(
                "device 'mps' was requested but Apple Metal (MPS) is not available; "
                "choose device 'cpu' or 'auto'"
            )
        return torch.device("mps")
    raise DeviceError(f"unknown device {pref!r}; use auto, cpu, cuda, cuda:N or mps")


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global generator and torch (CPU and every GPU)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device


def rng_state() -> dict[str, Any]:
    """Every global RNG state as tensors and plain values (loadable with weights_only)."""
    np_state = np.random.get_state(legacy=False)
    py_version, py_state, py_gauss = random.getstate()
    state: dict[str, Any] = {
        "python": [py_version, list(py_state), py_gauss],
        "numpy_key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
        "numpy_pos": int(np_state["state"]["pos"]),
        "numpy_has_gauss": int(np_state["has_gauss"]),
        "numpy_gauss": float(np_state["gauss"]),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the global RNG states saved by :func:`rng_state` (CUDA only when the
    device count matches)."""
    py_version, py_state, py_gauss = state["python"]
    random.setstate((py_version, tuple(py_state), py_gauss))
    np.random.set_state(
        {
            "bit_generator": "MT19937",
            "state": {
                "key": state["numpy_key"].numpy().astype(np.uint32),
                "pos": state["numpy_pos"],
            },
            "has_gauss": state["numpy_has_gauss"],
            "gauss": state["numpy_gauss"],
        }
    )
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
