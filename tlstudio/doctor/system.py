"""The doctor's storage and DICOM sections: can tlstudio write its caches, is there room
on the disk, and which compressed DICOM encodings pydicom can decode here."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

from . import FAIL, OK, WARN, Check

STORAGE_SECTION = "Storage"
DICOM_SECTION = "DICOM codecs"
GIB = 1024**3
LOW_DISK_GIB = 2.0  # a training run writes checkpoints and feature caches
FULL_DISK_GIB = 0.2
# (label, pydicom UID name) of the compressed encodings scanners write most
DICOM_ENCODINGS = (
    ("JPEG baseline", "JPEGBaseline8Bit"),
    ("JPEG lossless", "JPEGLosslessSV1"),
    ("JPEG-LS", "JPEGLSLossless"),
    ("JPEG 2000", "JPEG2000Lossless"),
    ("HTJ2K", "HTJ2KLossless"),
    ("RLE", "RLELossless"),
)


def _existing(path: Path) -> Path:
    """``path`` or its nearest existing parent."""
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def writable(folder: Path) -> str | None:
    """None if a file can be created in ``folder`` (or, if it does not exist yet, in its
    nearest existing parent, where it would be made); else the reason."""
    target = _existing(folder)
    try:
        with tempfile.NamedTemporaryFile(dir=target, prefix=".tlstudio-doctor-"):
            pass
    except OSError as exc:
        return f"{target}: {exc.strerror or exc}"
    return None


def _hub_dir() -> Path:
    try:
        from tlstudio.ml.weights import hub_checkpoint_dir
    except Exception:  # torch broken: torch.hub's default place
        torch_home = os.environ.get("TORCH_HOME") or os.path.join(
            os.environ.get("XDG_CACHE_HOME", "~/.cache"), "torch"
        )
        return Path(torch_home).expanduser() / "hub" / "checkpoints"
    return hub_checkpoint_dir()


def storage_checks(project_dir: Path | None = None) -> list[Check]:
    """Cache folders writable (torch's weight cache, the project's ``cache/``, the temp
    folder) and free space on their disks."""
    folders = [("weights cache", _hub_dir(), "TORCH_HOME=/a/writable/folder tlstudio ...")]
    if project_dir is not None:
        cache = project_dir.absolute() / "cache"
        folders.append(("project cache", cache, f"make {cache} writable (or copy the project)"))
    folders.append(("temp folder", Path(tempfile.gettempdir()), "set TMPDIR to a writable folder"))
    checks: list[Check] = []
    disks: dict[int, Path] = {}
    for label, folder, fix in folders:
        problem = writable(folder)
        if problem:
            checks.append(Check(STORAGE_SECTION, label, FAIL, f"{folder}: not writable "
                                f"({problem})", fix))  # fmt: skip
        else:
            checks.append(Check(STORAGE_SECTION, label, OK, f"{folder} (writable)"))
        existing = _existing(folder)
        disks.setdefault(existing.stat().st_dev, existing)
    for device_folder in disks.values():
        free = shutil.disk_usage(device_folder).free / GIB
        status = FAIL if free < FULL_DISK_GIB else WARN if free < LOW_DISK_GIB else OK
        checks.append(Check(STORAGE_SECTION, "free disk space", status,
                            f"{free:.1f} GiB free on the disk of {device_folder}",
                            f"free space: training runs and caches need about "
                            f"{LOW_DISK_GIB:.0f} GiB"))  # fmt: skip
    return checks


def dicom_checks() -> list[Check]:
    """Which compressed DICOM encodings pydicom can decode with what is installed
    (optional decoders: pylibjpeg with its plugins, pyjpegls, gdcm)."""
    try:
        import pydicom
    except Exception as exc:
        return [Check(DICOM_SECTION, "pydicom", FAIL, f"cannot import pydicom ({exc})",
                      "pip install -c constraints.txt pydicom")]  # fmt: skip
    try:
        from pydicom import uid
        from pydicom.pixels import get_decoder
    except ImportError:  # pydicom 2 reads DICOM, but has no decoder registry to ask
        return [Check(DICOM_SECTION, "pydicom", WARN, f"{pydicom.__version__}: codecs not "
                      "checked (needs pydicom 3)", "pip install -c constraints.txt pydicom")]  # fmt: skip
    checks = [Check(DICOM_SECTION, "pydicom", OK, pydicom.__version__)]
    for label, name in DICOM_ENCODINGS:
        decoder = get_decoder(getattr(uid, name))
        if decoder.is_available:
            checks.append(Check(DICOM_SECTION, label, OK, "can be read"))
            continue
        options = sorted(map(_pip_names, decoder.missing_dependencies), key=_pylibjpeg_first)
        fix = f"pip install {options[0]}" + "".join(f"  (or: {o})" for o in options[1:])
        checks.append(Check(DICOM_SECTION, label, WARN,
                            "cannot be read (no decoder installed); uncompressed DICOM is fine",
                            fix))  # fmt: skip
    return checks


def _pip_names(dependency: str) -> str:
    """pydicom's "pylibjpeg - requires pylibjpeg>=2.0 and pylibjpeg-libjpeg>=2.1" as the
    pip names "pylibjpeg pylibjpeg-libjpeg" (gdcm's is python-gdcm; numpy is there)."""
    wants = dependency.split(" - requires ", 1)[-1].split(" and ")
    names = [re.split(r"[<>=!~ ]", want.strip(), maxsplit=1)[0] for want in wants]
    return " ".join("python-gdcm" if n == "gdcm" else n for n in names if n != "numpy")


def _pylibjpeg_first(option: str) -> tuple[bool, str]:
    return (not option.startswith("pylibjpeg"), option)
