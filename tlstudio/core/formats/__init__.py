"""Import and export of interchange formats (COCO, YOLO, VOC, labelme, folders, CSV,
DeepLabCut, SLEAP).

Every import is all-or-nothing: the images it references, the classes and
templates it creates and its annotations are added in one transaction, and any
malformed input raises :class:`~tlstudio.core.errors.FormatError` naming the
file and the field or line, leaving the project as it was. Images already in
the project (same path or same content) are matched, not added twice; imported
annotations are added to what an image has, except tags in a single-label
project, which are replaced. Coordinates up to a few pixels outside the image (the
larger of 3 px and 0.5 % of its side) are clipped onto its edge, with a warning
counting them; further out is an error. Each module's docstring gives its conventions.

:data:`LABEL_FORMATS` is the one list of formats: the command line's choices and
help, the window's dialogs and :func:`detect_format` all read it. Importing this
package is cheap (the format modules load on first use), so ``tlstudio --help``
stays instant.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

from ..errors import FormatError
from .report import LabelImportReport

if TYPE_CHECKING:
    from ..project import Project

__all__ = [
    "EXPORT_KINDS",
    "FORMATS",
    "FORMAT_OPTIONS",
    "LABEL_FORMATS",
    "LABEL_SUFFIXES",
    "FormatOption",
    "LabelFormat",
    "LabelImportReport",
    "detect_format",
    "export_labels",
    "import_labels",
    "label_format",
]

Test = Callable[[Path], bool]
"""A content test: True if the file or folder looks like the format."""


class FormatModule(Protocol):
    """What every format module provides (options: see :class:`FormatOption`)."""

    def import_(
        self, project: Project, path: str | Path, copy_images: bool = False, **options: Any
    ) -> LabelImportReport: ...

    def export(
        self, project: Project, out: str | Path, *, warnings: list[str] | None = None,
        **options: Any,
    ) -> Path: ...  # fmt: skip


class KindFormatModule(Protocol):
    """A format module whose export writes one of several kinds of labels."""

    def export(
        self,
        project: Project,
        out: str | Path,
        *,
        kind: str,
        template: str | None = None,
        warnings: list[str] | None = None,
        **options: Any,
    ) -> Path: ...


@dataclass(frozen=True)
class FormatOption:
    """A yes/no switch of one format: ``name`` is the keyword its module's ``import_``
    and/or ``export`` (``used_by``) take, ``flag`` the command line's, ``help`` says what
    it does."""

    name: str
    flag: str
    help: str
    used_by: tuple[str, ...] = ("import", "export")


@dataclass(frozen=True)
class LabelFormat:
    """One interchange format.

    ``name`` is what the command line and the API take; ``title`` names it in
    sentences; ``description`` says in plain words what a dataset of it is.
    ``export_kinds`` lists the kinds of labels its export can write (the first is
    the default); empty when there is one. ``suffixes`` are the label-file suffixes
    it is read from (lower case, with the dot). ``file_tests`` and ``folder_tests``
    recognise it from content: ``(order, test)`` pairs; :func:`detect_format` runs
    the tests of all formats in ascending ``order`` and takes the first that passes.
    ``module`` is its module in this package, imported on first use. ``options`` are
    its switches (:class:`FormatOption`). ``takes_template``: its export writes the
    landmark sets of one template, which ``template`` names when there are several."""

    name: str
    title: str
    description: str
    module: str
    suffixes: tuple[str, ...] = ()
    export_kinds: tuple[str, ...] = ()
    file_tests: tuple[tuple[int, Test], ...] = ()
    folder_tests: tuple[tuple[int, Test], ...] = ()
    options: tuple[FormatOption, ...] = ()
    takes_template: bool = False

    def check_options(self, options: Mapping[str, Any] | None, use: str) -> dict[str, Any]:
        """``options`` as keywords for the module's ``use`` (import or export); ValueError
        naming an option the format does not take there."""
        known = {o.name for o in self.options if use in o.used_by}
        opts = dict(options or {})
        for name in opts:
            if name not in known:
                flag = next((o.flag for o in FORMAT_OPTIONS if o.name == name), name)
                raise ValueError(f"{flag} does not apply to a {self.title} {use}")
        return opts

    def load(self) -> FormatModule:
        """The format's module (imported now if it was not yet)."""
        return cast(FormatModule, importlib.import_module(f"{__name__}.{self.module}"))


# -- content tests ------------------------------------------------------------------------


def _head(path: Path, n: int = 1 << 16) -> str:
    try:
        with open(path, "rb") as f:
            return f.read(n).decode("utf-8", "replace")
    except OSError:
        return ""


def _is_labelme(path: Path) -> bool:
    head = _head(path)
    return head.lstrip("\ufeff \t\r\n").startswith("{") and '"shapes"' in head


def _is_coco(path: Path) -> bool:
    from .coco import looks_like_coco

    return looks_like_coco(path)


def _suffix_in(*suffixes: str) -> Test:
    return lambda p: p.suffix.lower() in suffixes


def _json_file(test: Test) -> Test:
    return lambda p: p.suffix.lower() == ".json" and test(p)


def _yolo_file(p: Path) -> bool:
    return p.suffix.lower() in (".yaml", ".yml") or p.name == "classes.txt"


def _yolo_config(p: Path) -> Path | None:
    from .yolo import find_config

    return find_config(p)


def _yolo_folder(p: Path) -> bool:
    cfg = _yolo_config(p)
    if cfg is not None and cfg.name != "classes.txt":
        return True
    return (p / "images").is_dir() and (p / "labels").is_dir()


def _yolo_classes_txt(p: Path) -> bool:
    # labelImg writes classes.txt beside its label files; weaker evidence than the others
    return _yolo_config(p) is not None


def _coco_folder(p: Path) -> bool:
    return any(
        folder.is_dir() and any(_is_coco(j) for j in sorted(folder.glob("*.json"))[:50])
        for folder in (p, p / "annotations")
    )


def _voc_folder(p: Path) -> bool:
    from .voc import SEGMENTATION_CLASS_DIRS

    return (
        (p / "Annotations").is_dir()
        or any(any((p / d).glob("*.png")) for d in SEGMENTATION_CLASS_DIRS)
        or any(p.glob("*.xml"))
    )


def _labelme_folder(p: Path) -> bool:
    jsons = sorted(p.glob("*.json"))[:50] or sorted(p.rglob("*.json"))[:50]
    return any(_is_labelme(j) for j in jsons)


def _dlc_file(p: Path) -> bool:
    from .dlc import looks_like_dlc_csv, looks_like_dlc_h5

    suffix = p.suffix.lower()
    return (suffix == ".csv" and looks_like_dlc_csv(p)) or (
        suffix == ".h5" and looks_like_dlc_h5(p)
    )


def _dlc_folder(p: Path) -> bool:
    return (
        ((p / "labeled-data").is_dir() and (p / "config.yaml").is_file())
        or any(p.glob("CollectedData*.csv"))
        or any(p.glob("CollectedData*.h5"))
    )


def _sleap_file(p: Path) -> bool:
    from .sleap import looks_like_slp

    return p.suffix.lower() == ".slp" and looks_like_slp(p)


def _sleap_folder(p: Path) -> bool:
    return any(_sleap_file(f) for f in sorted(p.glob("*.slp"))[:20])


def _csv_folder(p: Path) -> bool:
    return len(list(p.glob("*.csv"))) == 1


def _class_folders(p: Path) -> bool:
    from .. import imageio
    from .folders import class_dirs

    return any(
        any(f.is_file() and imageio.is_image_file(f) for f in d.rglob("*")) for d in class_dirs(p)
    )


# -- the registry -------------------------------------------------------------------------

LABEL_FORMATS: tuple[LabelFormat, ...] = (
    LabelFormat(
        "coco", "COCO", "a COCO dataset", "coco", suffixes=(".json",),
        file_tests=((2, _json_file(_is_coco)),), folder_tests=((20, _coco_folder),),
    ),
    LabelFormat(
        "yolo", "YOLO", "a YOLO dataset", "yolo", suffixes=(".yaml", ".yml", ".txt"),
        export_kinds=("detect", "pose", "segment"),
        file_tests=((3, _yolo_file),),
        folder_tests=((10, _yolo_folder), (50, _yolo_classes_txt)),
    ),
    LabelFormat(
        "voc", "Pascal VOC", "a Pascal VOC dataset (boxes, SegmentationClass/Object PNGs)",
        "voc", suffixes=(".xml",),
        file_tests=((4, _suffix_in(".xml")),), folder_tests=((30, _voc_folder),),
        options=(FormatOption(
            "zero_based", "--voc-zero-based",
            "VOC box coordinates count pixels from 0, as labelme2voc writes them (VOC's own "
            "are 1-based, the default; labelme2voc files are recognised by themselves)",
        ),),
    ),
    LabelFormat(
        "labelme", "labelme", "a labelme folder", "labelme", suffixes=(".json",),
        file_tests=((1, _json_file(_is_labelme)),), folder_tests=((40, _labelme_folder),),
    ),
    LabelFormat(
        "dlc", "DeepLabCut",
        "DeepLabCut labelled data (CollectedData CSV or H5 files and config.yaml)",
        "dlc", suffixes=(".csv", ".h5"), takes_template=True,
        file_tests=((0, _dlc_file),), folder_tests=((35, _dlc_folder),),
    ),
    LabelFormat(
        "sleap", "SLEAP", "SLEAP labels (.slp) with their images or embedded frames",
        "sleap", suffixes=(".slp",),
        file_tests=((0, _sleap_file),), folder_tests=((36, _sleap_folder),),
    ),
    LabelFormat(
        "folders", "class folders", "class folders (one sub-folder of images per class)",
        "folders", folder_tests=((70, _class_folders),),
    ),
    LabelFormat(
        # .tsv is not read, but counts as a label file: reported as such, not as a bad image
        "csv", "CSV", "a folder with a CSV label file", "csvfmt", suffixes=(".csv", ".tsv"),
        file_tests=((5, _suffix_in(".csv")),), folder_tests=((60, _csv_folder),),
    ),
)  # fmt: skip

FORMATS: tuple[str, ...] = tuple(f.name for f in LABEL_FORMATS)
"""The names of :data:`LABEL_FORMATS`, in the order menus list them."""

LABEL_SUFFIXES: frozenset[str] = frozenset(s for f in LABEL_FORMATS for s in f.suffixes)
"""Suffixes of label files (lower case, with the dot): an importer given such a file
reads it as labels unless it is an image."""

EXPORT_KINDS: tuple[str, ...] = tuple(
    dict.fromkeys(k for f in LABEL_FORMATS for k in f.export_kinds)
)
"""Every kind any format's export takes (see :attr:`LabelFormat.export_kinds`)."""

FORMAT_OPTIONS: tuple[FormatOption, ...] = tuple(o for f in LABEL_FORMATS for o in f.options)
"""Every format's switches (see :attr:`LabelFormat.options`), for the command line."""

_BY_NAME = {f.name: f for f in LABEL_FORMATS}


def label_format(name: str) -> LabelFormat:
    """The registered format called ``name``; ValueError listing the names otherwise."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown format {name!r}; use one of {', '.join(FORMATS)}") from None


# (order, format name, test), in the order detect_format runs them
_FILE_TESTS = sorted(
    ((o, f.name, t) for f in LABEL_FORMATS for o, t in f.file_tests), key=lambda x: x[0]
)
_FOLDER_TESTS = sorted(
    ((o, f.name, t) for f in LABEL_FORMATS for o, t in f.folder_tests), key=lambda x: x[0]
)


def _first_match(path: Path, tests: list[tuple[int, str, Test]]) -> str | None:
    return next((name for _, name, test in tests if _passes(test, path)), None)


def _passes(test: Test, path: Path) -> bool:
    """``test(path)``, False where it cannot read something (an unreadable sub-folder
    or file is not evidence of any format)."""
    try:
        return test(path)
    except OSError:
        return False


def detect_format(path: str | Path) -> str:
    """Guess the format of a label file or dataset folder from its content.

    Files: ``.json`` (labelme if it has ``shapes``, COCO if it has ``images``),
    ``.yaml``/``classes.txt`` (YOLO), ``.xml`` (VOC), ``.csv``. Folders, in this
    order: a YOLO ``data.yaml`` or ``images/`` + ``labels/``; a COCO JSON (also in
    ``annotations/``); VOC XML (also in ``Annotations/``); labelme JSON; a labelImg
    ``classes.txt`` (YOLO); one CSV; sub-folders holding images (class folders).
    FormatError if none fits."""
    p = Path(path)
    if not p.exists():
        raise FormatError(p, "", "no such file or folder")
    if p.is_file():
        found = _first_match(p, _FILE_TESTS)
        if found is None:
            raise FormatError(p, "", "cannot tell the label format of this file")
        return found
    found = _first_match(p, _FOLDER_TESTS)
    if found is None:
        raise FormatError(
            p, "", "cannot tell the label format; name it (one of " + ", ".join(FORMATS) + ")"
        )
    return found


def import_labels(project: Project, path: str | Path, format: str | None = None, *,
                  copy_images: bool = False, options: Mapping[str, Any] | None = None,
                  domain: str | None = None) -> LabelImportReport:  # fmt: skip
    """Import labels (and the images they reference) from ``path``, all or nothing.

    ``format`` is one of :data:`FORMATS`, or None to :func:`detect_format`.
    ``copy_images`` copies newly added images into the project folder. ``options`` are
    the format's switches by name (:attr:`LabelFormat.options`; ValueError for others).
    ``domain`` is given to the images the import adds (a domain the file names for an
    image, as COCO's ``images[].domain`` or a CSV ``domain`` column, wins)."""
    from ..project import check_domain
    from ._common import NEW_IMAGE_DOMAIN

    path = Path(path)
    fmt = label_format(detect_format(path) if format is None else format)
    opts = fmt.check_options(options, "import")
    token = NEW_IMAGE_DOMAIN.set(check_domain(domain))
    try:
        return fmt.load().import_(project, path, copy_images=copy_images, **opts)
    finally:
        NEW_IMAGE_DOMAIN.reset(token)


def export_labels(project: Project, format: str, out: str | Path, *, kind: str | None = None,
                  template: str | None = None, warnings: list[str] | None = None,
                  options: Mapping[str, Any] | None = None) -> Path:  # fmt: skip
    """Export the project's labels to ``out`` (a folder, or for COCO/CSV also a .json/.csv
    file) and return the path to hand back to :func:`import_labels`.

    ``kind`` is one of the format's :attr:`~LabelFormat.export_kinds` (default: the
    first; YOLO: ``detect``, ``pose``, ``segment``) and ``template`` the landmark
    template of a YOLO pose export. Messages about what the format could not hold are
    appended to ``warnings`` when a list is given. ``options``: as for
    :func:`import_labels`."""
    fmt = label_format(format)
    module = fmt.load()
    opts = fmt.check_options(options, "export")
    if fmt.export_kinds:
        kinds_module = cast(KindFormatModule, module)
        return kinds_module.export(
            project, out, kind=kind or fmt.export_kinds[0], template=template, warnings=warnings,
            **opts,
        )  # fmt: skip
    if kind is not None:
        raise ValueError(f"{format} export takes no kind")
    if fmt.takes_template:
        opts["template"] = template
    elif template is not None:
        raise ValueError(f"{format} export takes no template")
    return module.export(project, out, warnings=warnings, **opts)
