"""Import and export of interchange formats (COCO, YOLO, VOC, labelme, folders, CSV).

Every import is all-or-nothing: the images it references, the classes and
templates it creates and its annotations are added in one transaction, and any
malformed input raises :class:`~tlstudio.core.errors.FormatError` naming the
file and the field or line, leaving the project as it was. Images already in
the project (same path or same content) are matched, not added twice; imported
annotations are added to what an image has, except tags in a single-label
project, which are replaced. Coordinates up to 0.5 px outside the image are
clipped; further out is an error. Each module's docstring gives its conventions.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import FormatError
from ..project import Project
from . import coco, csvfmt, folders, labelme, voc, yolo
from ._common import LabelImportReport

FORMATS = ("coco", "yolo", "voc", "labelme", "folders", "csv")

_MODULES = {
    "coco": coco,
    "yolo": yolo,
    "voc": voc,
    "labelme": labelme,
    "folders": folders,
    "csv": csvfmt,
}

__all__ = ["FORMATS", "LabelImportReport", "detect_format", "export_labels", "import_labels"]


def _head(path: Path, n: int = 1 << 16) -> str:
    try:
        with open(path, "rb") as f:
            return f.read(n).decode("utf-8", "replace")
    except OSError:
        return ""


def _is_labelme(path: Path) -> bool:
    head = _head(path)
    return head.lstrip("\ufeff \t\r\n").startswith("{") and '"shapes"' in head


def detect_format(path: str | Path) -> str:
    """Guess the format of a label file or dataset folder from its content.

    Files: ``.json`` (COCO if it has ``images``, labelme if it has ``shapes``),
    ``.yaml``/``classes.txt`` (YOLO), ``.xml`` (VOC), ``.csv``. Folders, in this
    order: a YOLO ``data.yaml`` or ``images/`` + ``labels/``; a COCO JSON (also in
    ``annotations/``); VOC XML (also in ``Annotations/``); labelme JSON; one CSV;
    sub-folders holding images (class folders). FormatError if none fits."""
    p = Path(path)
    if not p.exists():
        raise FormatError(p, "", "no such file or folder")
    if p.is_file():
        suffix = p.suffix.lower()
        if suffix == ".json":
            if _is_labelme(p):
                return "labelme"
            if coco.looks_like_coco(p):
                return "coco"
        elif suffix in (".yaml", ".yml") or p.name == "classes.txt":
            return "yolo"
        elif suffix == ".xml":
            return "voc"
        elif suffix == ".csv":
            return "csv"
        raise FormatError(p, "", "cannot tell the label format of this file")
    cfg = yolo.find_config(p)
    if (cfg is not None and cfg.name != "classes.txt") or (
        (p / "images").is_dir() and (p / "labels").is_dir()
    ):
        return "yolo"
    for folder in (p, p / "annotations"):
        if folder.is_dir() and any(
            coco.looks_like_coco(j) for j in sorted(folder.glob("*.json"))[:50]
        ):
            return "coco"
    if (p / "Annotations").is_dir() or any(p.glob("*.xml")):
        return "voc"
    jsons = sorted(p.glob("*.json"))[:50] or sorted(p.rglob("*.json"))[:50]
    if any(_is_labelme(j) for j in jsons):
        return "labelme"
    if cfg is not None:  # labelImg: classes.txt beside the label files
        return "yolo"
    if len(list(p.glob("*.csv"))) == 1:
        return "csv"
    from .. import imageio

    for d in folders.class_dirs(p):
        if any(f.is_file() and imageio.is_image_file(f) for f in d.rglob("*")):
            return "folders"
    raise FormatError(
        p, "", "cannot tell the label format; name it (one of " + ", ".join(FORMATS) + ")"
    )


def _module(format: str):
    try:
        return _MODULES[format]
    except KeyError:
        raise ValueError(f"unknown format {format!r}; use one of {', '.join(FORMATS)}") from None


def import_labels(project: Project, path: str | Path, format: str | None = None, *,
                  copy_images: bool = False) -> LabelImportReport:  # fmt: skip
    """Import labels (and the images they reference) from ``path``, all or nothing.

    ``format`` is one of :data:`FORMATS`, or None to :func:`detect_format`.
    ``copy_images`` copies newly added images into the project folder."""
    path = Path(path)
    fmt = detect_format(path) if format is None else format
    return _module(fmt).import_(project, path, copy_images=copy_images)


def export_labels(project: Project, format: str, out: str | Path, *, kind: str | None = None,
                  template: str | None = None, warnings: list[str] | None = None) -> Path:  # fmt: skip
    """Export the project's labels to ``out`` (a folder, or for COCO/CSV also a .json/.csv
    file) and return the path to hand back to :func:`import_labels`.

    ``kind`` selects the YOLO task (``detect`` default, ``pose``, ``segment``) and
    ``template`` the landmark template of a YOLO pose export. Messages about what the
    format could not hold are appended to ``warnings`` when a list is given."""
    mod = _module(format)
    if format == "yolo":
        return yolo.export(
            project, out, kind=kind or "detect", template=template, warnings=warnings
        )
    if kind is not None or template is not None:
        raise ValueError(f"{format} export takes no kind or template")
    return mod.export(project, out, warnings=warnings)
