"""Class-per-folder datasets: ``root/<class>/<image>`` (torchvision ``ImageFolder``).

Import tags every image below ``root/<class>/`` (searched recursively) with that
class. A root whose sub-folders are all split names (``train``, ``val``,
``valid``, ``validation``, ``test``) is read one level deeper:
``root/<split>/<class>/<image>``. Images directly in ``root`` are skipped with a
warning. Export hard-links (or copies) every image with exactly one tag into
``out/<class>/``; unlabelled images and images with several tags are not exported, and
a warning for each group names them. Characters that cannot
be in a folder name (``/``, ``\\``) become ``_``.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import FormatError
from ..project import Project
from ._common import (
    export_names,
    files_under,
    import_session,
    is_file,
    note,
    place_image,
    skipped_kinds,
)
from .report import LabelImportReport

SPLIT_NAMES = {"train", "val", "valid", "validation", "test"}


def class_dirs(root: Path) -> list[Path]:
    """The class folders of a dataset root (one level deeper for split folders); folders
    starting with ``.`` and tlstudio project folders are ignored."""
    if not root.is_dir():
        raise FormatError(root, "", "not a folder")

    def subdirs(p: Path) -> list[Path]:
        return sorted(
            d for d in p.iterdir()
            if d.is_dir() and not d.name.startswith(".") and not is_file(d / "project.sqlite")
        )  # fmt: skip

    top = subdirs(root)
    if top and all(d.name.lower() in SPLIT_NAMES for d in top):
        return [c for d in top for c in subdirs(d)]
    return top


def import_(project: Project, path: str | Path, copy_images: bool = False) -> LabelImportReport:
    """Import a class-per-folder dataset; the folder name is the class name."""
    from .. import imageio

    root = Path(path)
    dirs = class_dirs(root)
    if not dirs:
        raise FormatError(root, "", "no class folders here")
    skip_root = project.root.resolve()
    with import_session(project, copy_images) as s:
        loose = [p for p in root.iterdir() if p.is_file() and imageio.is_image_file(p)]
        if loose:
            s.warn(root, "", f"{len(loose)} images outside class folders were skipped")
        refs, folders = [], []
        for d in dirs:
            files = [p for p in files_under(d, s) if not p.resolve().is_relative_to(skip_root)]
            images = [p for p in files if imageio.is_image_file(p)]
            if len(images) < len(files):
                s.warn(d, "", f"{len(files) - len(images)} files that are not images were skipped")
            refs += [(img, img, "") for img in images]
            folders += [d] * len(images)
        # images first: they are checked and copied before the transaction begins
        records = s.images(refs)
        class_ids = {d: s.class_id(d.name, d, "folder name") for d in dict.fromkeys(folders)}
        for (img, _, _), rec, d in zip(refs, records, folders, strict=True):
            s.tag(rec, class_ids[d], img, f"class folder {d.name!r}")
    return s.report


def _listed(paths: list[str]) -> str:
    return ", ".join(paths[:10]) + (" ..." if len(paths) > 10 else "")


def folder_name(class_name: str) -> str:
    name = class_name.replace("/", "_").replace("\\", "_")
    return "_" if name in (".", "..") else name


def export(project: Project, out: str | Path, *, warnings: list[str] | None = None) -> Path:
    """Place each image with exactly one tag in ``out/<class>/``; returns ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    records = project.images()
    names = export_names(records)
    class_name = {c.id: c.name for c in project.classes()}
    untagged: list[str] = []
    several: list[str] = []
    for rec in records:
        tags = project.tags(rec.id)
        if len(tags) != 1:
            (untagged if not tags else several).append(rec.path)
            continue
        place_image(project, rec, out / folder_name(class_name[tags[0]]) / names[rec.id])
    if untagged:
        note(warnings, f"class folders: {len(untagged)} unlabelled images (no class tag) were "
             f"not exported: {_listed(untagged)}")  # fmt: skip
    if several:
        note(warnings, f"class folders: {len(several)} images with several class tags were "
             f"not exported (a folder holds one class): {_listed(several)}")  # fmt: skip
    skipped_kinds(project, ("boxes", "landmarks", "masks"), "class folders", warnings)
    return out
