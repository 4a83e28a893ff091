"""Display windowing: from image values (any depth) to 8-bit pixels on screen.

A window is ``(center, width)`` in array units (the values :func:`read_image
<tlstudio.core.imageio.read_image>` returns, e.g. 16-bit counts or Hounsfield units);
it maps ``[center - width/2, center + width/2)`` linearly onto 0..255. 16-bit data is
never clipped to 8 bits before this step.
"""

from __future__ import annotations

import functools

import numpy as np

__all__ = ["default_window", "robust_window", "to_display"]


def default_window(array: np.ndarray) -> tuple[float, float]:
    """A display window ``(center, width)`` in array units for ``array``.

    uint8 (and bool): the full range, ``(128, 256)``. Anything else: the 0.5 and
    99.5 percentiles of the colour samples (alpha excluded, NaN ignored, at most
    ~1M samples looked at), falling back to min..max when those coincide."""
    a = np.asarray(array)
    if a.dtype == np.uint8:
        return (128.0, 256.0)
    if a.dtype == np.bool_:
        return (0.5, 1.0)
    return robust_window(a)


def robust_window(a: np.ndarray) -> tuple[float, float]:
    """(center, width) spanning the 0.5..99.5 percentiles of the colour samples of ``a``."""
    if a.ndim == 3 and a.shape[2] == 4:
        a = a[..., :3]
    if a.size == 0:
        return (0.5, 1.0)
    # a regular grid of about 1M pixels: big images are summarised without a full copy
    step = max(1, int(np.ceil(np.sqrt(a.shape[0] * a.shape[1] / 1_000_000))))
    sample = a[::step, ::step].reshape(-1).astype(np.float64)
    if sample.dtype.kind == "f":
        sample = sample[np.isfinite(sample)]
        if sample.size == 0:
            return (0.5, 1.0)
    lo, hi = np.percentile(sample, [0.5, 99.5])
    if hi <= lo:
        lo, hi = float(sample.min()), float(sample.max())
    if hi <= lo:  # constant image
        return (float(lo), 1.0)
    return (float(lo + hi) / 2.0, float(hi - lo))


def to_display(array: np.ndarray, window: tuple[float, float] | None = None) -> np.ndarray:
    """uint8 ``H×W``, ``H×W×3`` or ``H×W×4`` for display through a linear window.

    ``window = (center, width)`` in array units; ``lo = center - width/2`` and
    ``hi = center + width/2``. The range ``[lo, hi)`` is split into 256 equal bins
    (value ``v`` -> ``floor((v - lo) * 256 / width)``, clipped to 0..255), so
    ``(128, 256)`` is the identity on uint8. ``width <= 0`` thresholds at ``center``.
    ``None`` uses :func:`default_window`; uint8 input with ``window=None`` is
    returned unchanged. Alpha (4th channel) is not windowed, only scaled to 8 bits.
    ``H×W×2`` (grey + alpha) becomes ``H×W×4``.
    """
    a = np.asarray(array)
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (1, 2, 3, 4)):
        raise ValueError(f"expected H×W or H×W×{{1,2,3,4}} array, got shape {a.shape}")
    if a.dtype == np.uint8 and window is None:
        return a
    if a.dtype == np.bool_:
        a = a.astype(np.uint8) * np.uint8(255)
        if window is None:
            return a
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim == 3 and a.shape[2] == 2:
        a = np.concatenate([a[..., :1]] * 3 + [a[..., 1:2]], axis=2)
    if window is None:
        window = default_window(a)
    if a.dtype == np.uint8 and _is_identity(float(window[0]), float(window[1])):
        return a  # every value maps to itself (8-bit images through their default window)
    if a.ndim == 3 and a.shape[2] == 4:
        out = np.empty(a.shape, np.uint8)
        out[..., :3] = _apply_window(a[..., :3], window)
        out[..., 3] = _alpha_to_uint8(a[..., 3])
        return out
    return _apply_window(a, window)


@functools.lru_cache(maxsize=64)
def _is_identity(center: float, width: float) -> bool:
    """True when the window maps every uint8 value to itself."""
    values = np.arange(256)
    return bool(np.array_equal(_window_values(values, (center, width)), values))


def _window_values(values: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    center, width = float(window[0]), float(window[1])
    v = values.astype(np.float64, copy=False)
    if not width > 0:
        return np.where(v >= center, 255, 0).astype(np.uint8)
    lo = center - width / 2.0
    with np.errstate(invalid="ignore"):
        y = np.floor((v - lo) * (256.0 / width))
    y = np.nan_to_num(y, nan=0.0, posinf=255.0, neginf=0.0)
    return np.clip(y, 0, 255).astype(np.uint8)


def _apply_window(a: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    # 8/16-bit integers go through a lookup table: one small computation, then an index.
    if a.dtype in (np.uint8, np.uint16):
        lut = _window_values(np.arange(np.iinfo(a.dtype).max + 1), window)
        out: np.ndarray = lut[a]
        return out
    if a.dtype == np.int16:
        lut = _window_values(np.arange(65536, dtype=np.uint16).view(np.int16), window)
        return lut[a.view(np.uint16)]
    if a.dtype == np.int8:
        lut = _window_values(np.arange(256, dtype=np.uint8).view(np.int8), window)
        return lut[a.view(np.uint8)]
    center, width = float(window[0]), float(window[1])
    v = a.astype(np.float32, copy=False)
    if not width > 0:
        return np.where(v >= center, 255, 0).astype(np.uint8)
    with np.errstate(invalid="ignore", over="ignore"):
        y = np.floor((v - np.float32(center - width / 2.0)) * np.float32(256.0 / width))
        y = np.nan_to_num(y, nan=0.0, posinf=255.0, neginf=0.0)
    result: np.ndarray = np.clip(y, 0, 255).astype(np.uint8)
    return result


def _alpha_to_uint8(alpha: np.ndarray) -> np.ndarray:
    if alpha.dtype == np.uint8:
        return alpha
    if alpha.dtype.kind in "ui":
        top = float(np.iinfo(alpha.dtype).max)
    else:
        top = 1.0  # float alpha is 0..1
    return np.clip(np.rint(alpha.astype(np.float64) * (255.0 / top)), 0, 255).astype(np.uint8)
