"""DICOM through pydicom: the first frame, rescale slope/intercept (or a modality LUT)
applied, MONOCHROME1 mirrored so that high = bright, the file's window centre/width kept
as the default display window."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from ..errors import CorruptImageError, MissingCodecError, UnsupportedFormatError
from ..windowing import default_window, robust_window
from .base import ImageData, ImageInfo, Source, check_size, container_bits, finish
from .sniff import describe

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

SUFFIXES = frozenset({".dcm", ".dicom"})
"""File suffixes that make a file without the 128-byte preamble worth trying as DICOM."""


def open_dicom(path: Path, fmt: str, head: bytes, max_pixels: int) -> Source:
    """The decoder of DICOM (see :data:`~.base.Opener`); only the first frame is read."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    force = head[128:132] != b"DICM"
    try:
        # defer_size: large values (PixelData) are read from the file only when used
        ds = pydicom.dcmread(path, defer_size=1024, force=force)
        has_pixels = any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"))
    except Exception as exc:
        if force:  # only the suffix said DICOM
            raise UnsupportedFormatError(path, f"not a DICOM image ({describe(head)})") from exc
        if isinstance(exc, (InvalidDicomError, EOFError, ValueError, KeyError)):
            raise CorruptImageError(path, f"DICOM header cannot be parsed ({exc})") from exc
        raise
    if not has_pixels:
        if force and not any(k in ds for k in ("SOPClassUID", "Modality", "StudyInstanceUID")):
            raise UnsupportedFormatError(path, f"not a DICOM image ({describe(head)})")
        modality = ds.get("Modality")
        what = "DICOM file without pixel data" + (f" (modality {modality})" if modality else "")
        raise UnsupportedFormatError(path, what)
    rows, cols = ds.get("Rows"), ds.get("Columns")
    if rows is None or cols is None:
        raise CorruptImageError(path, "DICOM without Rows/Columns")
    width, height = int(cols), int(rows)
    check_size(path, width, height, max_pixels)
    frames = int(_first(ds.get("NumberOfFrames")) or 1)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    spp = int(ds.get("SamplesPerPixel", 1) or 1)
    channels = 3 if (spp >= 3 or photometric == "PALETTE COLOR") else 1
    bits = container_bits(int(ds.get("BitsAllocated", 16) or 16))
    info = ImageInfo(width, height, bits, channels, fmt, max(frames, 1))

    def decode() -> ImageData:
        return _decode_dicom(path, ds, info, photometric, frames)

    return Source(info, decode)


_TS_PACKAGES = {
    "JPEG-LS": "pip install pyjpegls  (or: pip install pylibjpeg pylibjpeg-libjpeg)",
    "JPEG 2000": "pip install pylibjpeg pylibjpeg-openjpeg",
    "High-Throughput JPEG 2000": "pip install pylibjpeg pylibjpeg-openjpeg",
    "JPEG": "pip install pylibjpeg pylibjpeg-libjpeg",
}


def _codec_hint(ts_name: str) -> str:
    for key in ("High-Throughput JPEG 2000", "JPEG-LS", "JPEG 2000", "JPEG"):
        if key in ts_name:
            return _TS_PACKAGES[key]
    return "pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg  (or python-gdcm)"


def _first(value: Any) -> float | None:
    """First number of a possibly multi-valued DICOM element, or None."""
    if value is None:
        return None
    try:
        if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
            value = value[0] if len(value) else None
        return None if value is None or value == "" else float(value)
    except (TypeError, ValueError, IndexError):
        return None


def _functional(ds: Dataset, seq: str, attr: str) -> Any:
    """``attr`` from Shared or first Per-Frame Functional Groups (enhanced multi-frame)."""
    for groups in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        try:
            item = getattr(ds, groups)[0]
            value = getattr(getattr(item, seq)[0], attr)
        except (AttributeError, IndexError, KeyError, TypeError):
            continue
        if value is not None:
            return value
    return None


def _dicom_attr(ds: Dataset, attr: str, seq: str) -> Any:
    value = ds.get(attr)
    if value is None or value == "":
        value = _functional(ds, seq, attr)
    return value


def _ensure_transfer_syntax(ds: Dataset) -> None:
    """Files without File Meta (read with force=True) get the syntax they were read with."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    meta = getattr(ds, "file_meta", None)
    if meta is not None and "TransferSyntaxUID" in meta:
        return
    encoding = getattr(ds, "original_encoding", None)
    if encoding is not None and encoding[0] is not None:
        implicit, little = encoding
    else:
        implicit = getattr(ds, "is_implicit_VR", True)
        little = getattr(ds, "is_little_endian", True)
    if meta is None:
        ds.file_meta = meta = FileMetaDataset()
    if implicit:
        meta.TransferSyntaxUID = ImplicitVRLittleEndian
    else:
        meta.TransferSyntaxUID = ExplicitVRLittleEndian if little else ExplicitVRBigEndian


def _dicom_pixels(path: Path, ds: Dataset) -> np.ndarray:
    _ensure_transfer_syntax(ds)
    ts = ds.file_meta.TransferSyntaxUID
    try:
        try:
            from pydicom.pixels import pixel_array
        except ImportError:  # pydicom 2.x: decodes every frame
            arr = ds.pixel_array
            frames = int(_first(ds.get("NumberOfFrames")) or 1)
            return arr[0] if frames > 1 else arr
        return pixel_array(ds, index=0)
    except (RuntimeError, NotImplementedError) as exc:
        msg = str(exc)
        compressed = bool(getattr(ts, "is_compressed", False))
        low = msg.lower()
        # pydicom: "... all plugins are missing dependencies", "no pixel data decoders",
        # pydicom 2: "... handlers ...", Pillow: "does not support ... 12-bit precision"
        missing = any(
            s in low
            for s in ("missing", "no pixel data decoders", "handler", "not support", "unsupported")
        )
        if compressed and (missing or isinstance(exc, NotImplementedError)):
            raise MissingCodecError(
                path,
                f"DICOM pixel data is compressed with '{ts.name}' ({ts}) and no installed "
                f"decoder handles it; install one with: {_codec_hint(ts.name)}",
            ) from exc
        raise CorruptImageError(path, f"DICOM pixel data cannot be decoded ({msg})") from exc
    except (ValueError, EOFError, OSError, KeyError, AttributeError, IndexError) as exc:
        raise CorruptImageError(path, f"DICOM pixel data cannot be decoded ({exc})") from exc


def _stored_range(ds: Dataset) -> tuple[float, float] | None:
    bits = ds.get("BitsStored") or ds.get("BitsAllocated")
    if not bits:
        return None
    bits = int(bits)
    if int(ds.get("PixelRepresentation", 0) or 0) == 1:
        return (-(2.0 ** (bits - 1)), 2.0 ** (bits - 1) - 1)
    return (0.0, 2.0**bits - 1)


def _narrow_int(values: np.ndarray) -> np.ndarray:
    """int64 values -> the smallest of int16/uint16/int32 holding them (else float32)."""
    if values.size == 0:
        return values.astype(np.int16)
    lo, hi = int(values.min()), int(values.max())
    for dt in (np.int16, np.uint16, np.int32):
        info = np.iinfo(dt)
        if info.min <= lo and hi <= info.max:
            return values.astype(dt)
    return values.astype(np.float32)


def _decode_dicom(
    path: Path, ds: Dataset, info: ImageInfo, photometric: str, frames: int
) -> ImageData:
    arr = _dicom_pixels(path, ds)
    notes: list[str] = []
    if frames > 1:
        notes.append(f"multi-frame DICOM: {frames} frames, showing the first")
    if arr.ndim == 3 and arr.shape[-1] not in (3, 4) and arr.shape[0] == frames:
        arr = arr[0]  # a decoder that ignored ``index``

    if photometric == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        arr = apply_color_lut(arr, ds)
        if arr.dtype == np.uint16:  # LUT entries are 16-bit; colours need 8
            arr = (arr >> 8).astype(np.uint8)
        return finish(path, arr, info, window=(128.0, 256.0), notes=notes)
    if arr.ndim == 3:  # colour: no modality LUT or window in the standard
        return finish(path, arr, info, window=default_window(arr), notes=notes)

    slope = _first(_dicom_attr(ds, "RescaleSlope", "PixelValueTransformationSequence"))
    intercept = _first(_dicom_attr(ds, "RescaleIntercept", "PixelValueTransformationSequence"))
    srange = _stored_range(ds)
    if slope is not None or intercept is not None:
        s = 1.0 if slope is None else slope
        b = 0.0 if intercept is None else intercept
        if (s, b) != (1.0, 0.0):
            if float(s).is_integer() and float(b).is_integer():
                arr = _narrow_int(arr.astype(np.int64) * int(s) + int(b))
            else:
                arr = (arr.astype(np.float64) * s + b).astype(np.float32)
            if srange is not None:
                srange = cast(
                    tuple[float, float], tuple(sorted((srange[0] * s + b, srange[1] * s + b)))
                )
    elif "ModalityLUTSequence" in ds:
        from pydicom.pixels import apply_modality_lut

        arr = np.asarray(apply_modality_lut(arr, ds))
        srange = None

    center = _first(_dicom_attr(ds, "WindowCenter", "FrameVOILUTSequence"))
    width = _first(_dicom_attr(ds, "WindowWidth", "FrameVOILUTSequence"))
    window = (center, width) if center is not None and width is not None and width > 0 else None

    if photometric == "MONOCHROME1":
        # MONOCHROME1: low values are bright. Mirror the values inside the stored range
        # so that high = bright everywhere downstream; the window mirrors with them.
        lo, hi = srange if srange is not None else (float(arr.min()), float(arr.max()))
        total = lo + hi
        if arr.dtype.kind in "ui" and float(total).is_integer():
            arr = _narrow_int(int(total) - arr.astype(np.int64))
        else:
            arr = (total - arr.astype(np.float64)).astype(np.float32)
        if window is not None:
            window = (total - window[0], window[1])
    if window is None:  # the data's range, whatever the dtype (1-bit data arrives as uint8)
        window = robust_window(arr)
    return finish(path, arr, info, window=window, notes=notes)
