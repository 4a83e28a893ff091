"""Display-window presets: the named windows a radiologist expects for an image.

A window is ``(center, width)`` in the image array's units (see
:func:`tlstudio.core.windowing.to_display`). CT presets are in Hounsfield units
(HU) and only make sense where the array holds HU: a DICOM CT after its rescale
slope/intercept. Every DICOM file may also name its own windows in the header
(``WindowCenter`` / ``WindowWidth``, multi-valued, with
``WindowCenterWidthExplanation`` names); :func:`header_windows` lists them all.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["CT_PRESETS", "DisplayFacts", "WindowPreset", "display_facts"]


@dataclass(frozen=True)
class WindowPreset:
    """A named display window; ``center`` and ``width`` in array units (HU for CT)."""

    name: str
    center: float
    width: float

    @property
    def window(self) -> tuple[float, float]:
        return (self.center, self.width)


CT_PRESETS: tuple[WindowPreset, ...] = (
    WindowPreset("Brain", 40.0, 80.0),
    WindowPreset("Soft tissue", 40.0, 400.0),
    WindowPreset("Lung", -600.0, 1500.0),
    WindowPreset("Bone", 400.0, 1800.0),
    WindowPreset("Liver", 60.0, 150.0),
)
"""CT windows in HU, in the order of their keys (Alt+1 … Alt+5)."""


@dataclass(frozen=True)
class DisplayFacts:
    """What the header says about an image's display: ``in_hu`` when its array
    values are Hounsfield units (DICOM CT after rescale), ``header_windows`` the
    windows named in the DICOM header, in header order (in array units)."""

    in_hu: bool = False
    header_windows: tuple[WindowPreset, ...] = ()


NO_FACTS = DisplayFacts()


def display_facts(
    path: str | os.PathLike[str], default_window: tuple[float, float]
) -> DisplayFacts:
    """The :class:`DisplayFacts` of the image file ``path``; empty for anything but DICOM.

    ``default_window`` is the window :func:`~tlstudio.core.imageio.read_image` chose
    (``ImageData.window``): for MONOCHROME1 files it is the first header window
    mirrored like the pixel values, which gives the mirror for the other header
    windows. A header that cannot be read gives empty facts (the image still shows)."""
    p = Path(path)
    try:
        with open(p, "rb") as f:
            head = f.read(132)
    except OSError:
        return NO_FACTS
    if head[128:132] != b"DICM" and p.suffix.lower() not in (".dcm", ".dicom"):
        return NO_FACTS
    try:
        import pydicom

        ds = pydicom.dcmread(p, stop_before_pixels=True, force=True)
    except Exception:  # a header pydicom cannot parse: no presets, never an error here
        return NO_FACTS
    return DisplayFacts(_in_hu(ds), _header_windows(ds, default_window))


def _values(value: Any) -> list[Any]:
    """A DICOM element value as a list (multi-valued or single; empty for none)."""
    if value is None or value == "":
        return []
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return list(value)
    return [value]


def _numbers(value: Any) -> list[float | None]:
    out: list[float | None] = []
    for v in _values(value):
        try:
            out.append(float(v))
        except (TypeError, ValueError):
            out.append(None)
    return out


def _item_with(ds: Any, attr: str, seq: str) -> Any:
    """The dataset holding ``attr``: the top level, else the first ``seq`` item of the
    shared or per-frame functional groups (enhanced multi-frame files); None if none."""
    if ds.get(attr) not in (None, ""):
        return ds
    for groups in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        try:
            item = getattr(getattr(ds, groups)[0], seq)[0]
        except (AttributeError, IndexError, KeyError, TypeError):
            continue
        if item.get(attr) not in (None, ""):
            return item
    return None


def _header_windows(ds: Any, default_window: tuple[float, float]) -> tuple[WindowPreset, ...]:
    item = _item_with(ds, "WindowCenter", "FrameVOILUTSequence")
    if item is None:
        return ()
    centers = _numbers(item.get("WindowCenter"))
    widths = _numbers(item.get("WindowWidth"))
    names = [str(n).strip() for n in _values(item.get("WindowCenterWidthExplanation"))]
    mirror: float | None = None
    if str(ds.get("PhotometricInterpretation", "")).strip().upper() == "MONOCHROME1":
        first = centers[0] if centers else None
        mirror = None if first is None else default_window[0] + first
    out: list[WindowPreset] = []
    for i, (c, w) in enumerate(zip(centers, widths, strict=False)):
        if c is None or w is None or w <= 0:
            continue
        name = names[i] if i < len(names) and names[i] else f"Header window {i + 1}"
        center = c if mirror is None else mirror - c
        out.append(WindowPreset(name, center, w))
    return tuple(out)


def _in_hu(ds: Any) -> bool:
    """CT whose stored values are turned into HU by its rescale (the reader applies it)."""
    if str(ds.get("Modality", "")).strip().upper() != "CT":
        return False
    # MONOCHROME1 values are mirrored on reading (high = bright): no longer HU
    if str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper() != "MONOCHROME2":
        return False
    item = _item_with(ds, "RescaleIntercept", "PixelValueTransformationSequence")
    if item is None:
        return False
    unit = str(item.get("RescaleType", "") or "").strip().upper()
    return unit in ("", "HU")
