"""Pascal VOC XML: one ``<annotation>`` file per image, boxes only.

Pixel convention: VOC ``bndbox`` values are 1-based pixel indices, inclusive
(``xmin`` = first column of the box, ``xmax`` = last column; a box over the whole
W×H image is 1, 1, W, H). In tlstudio's frame (pixel i spans [i-1, i] for
1-based i) that is ``x1 = xmin - 1, y1 = ymin - 1, x2 = xmax, y2 = ymax``; export
writes the inverse, with fractional values where the box is not pixel-aligned,
so export → import is exact. An ``xmin``/``ymin`` of 0 (written by tools that
count from 0) is clipped to the image edge.

Images resolve from ``<filename>`` against the XML's folder, then
``../JPEGImages``, ``images/`` and ``../images``, then ``<path>``. Export
layout: ``Annotations/<stem>.xml`` and ``JPEGImages/<name>`` (any image format).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from ..atomic import replacing
from ..errors import FormatError
from ..project import ImageRecord, Project
from ._common import (
    ImportSession,
    export_names,
    find_file,
    fmt_num,
    import_session,
    parse_float,
    place_image,
    skipped_kinds,
)
from .report import LabelImportReport


def xml_files(path: Path) -> list[Path]:
    """The XML files of a VOC import: the file itself, or every ``*.xml`` below the folder."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FormatError(path, "", "no such file or folder")
    files = sorted(p for p in path.rglob("*.xml") if p.is_file())
    if not files:
        raise FormatError(path, "", "no .xml files here")
    return files


def parse_xml(path: Path) -> ET.Element:
    """Parse an XML file; documents with a DTD (entity expansion) are refused."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise FormatError(path, "", f"cannot read file ({exc.strerror or exc})") from None
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise FormatError(path, "", "XML with a DTD or entities is not accepted")
    try:
        return ET.fromstring(data)
    except ET.ParseError as exc:
        line = exc.position[0] if exc.position else 0
        raise FormatError(path, f"line {line}", f"not valid XML: {exc}") from None
    except (ValueError, LookupError, RecursionError) as exc:
        raise FormatError(path, "", f"not valid XML: {exc}") from None


def _text(el: ET.Element | None) -> str | None:
    return None if el is None or el.text is None else el.text.strip()


def import_(project: Project, path: str | Path, copy_images: bool = False) -> LabelImportReport:
    """Import one VOC XML or a folder of them (searched recursively)."""
    files = xml_files(Path(path))
    docs = [(f, parse_xml(f)) for f in files]
    with import_session(project, copy_images) as s:
        refs = [(_image_path(f, root), f, "filename") for f, root in docs]
        for (f, root), rec in zip(docs, s.images(refs), strict=True):
            _import_one(s, f, root, rec)
    return s.report


def _image_path(src: Path, root: ET.Element) -> Path:
    if root.tag != "annotation":
        raise FormatError(src, root.tag, "root element must be <annotation>")
    name = _text(root.find("filename"))
    bases = [
        src.parent,
        src.parent.parent / "JPEGImages",
        src.parent / "images",
        src.parent.parent / "images",
    ]
    if not name:
        path_text = _text(root.find("path"))
        if not path_text:
            raise FormatError(src, "filename", "missing <filename>")
        name = path_text
    try:
        img = find_file(name, bases, src, "filename")
    except FormatError:
        path_text = _text(root.find("path"))
        if not path_text:
            raise
        img = find_file(path_text, bases, src, "path")
    return img


def _import_one(s: ImportSession, src: Path, root: ET.Element, rec: ImageRecord) -> None:
    size = root.find("size")
    if size is not None:
        for key, actual in (("width", rec.width), ("height", rec.height)):
            t = _text(size.find(key))
            if t:
                v = parse_float(t, src, f"size/{key}", key)
                if v != 0 and v != actual:  # some tools write 0 for an unknown size
                    raise FormatError(
                        src, f"size/{key}", f"{key} {t} differs from the file's {actual} px"
                    )
    for i, obj in enumerate(root.findall("object"), 1):
        where = f"object {i}"
        label = _text(obj.find("name"))
        if not label:
            raise FormatError(src, f"{where}/name", "missing class name")
        cid = s.class_id(label, src, f"{where}/name")
        bnd = obj.find("bndbox")
        if bnd is None:
            raise FormatError(src, f"{where}/bndbox", "missing <bndbox>")
        vals = []
        for key in ("xmin", "ymin", "xmax", "ymax"):
            t = _text(bnd.find(key))
            if t is None:
                raise FormatError(src, f"{where}/bndbox/{key}", f"missing <{key}>")
            vals.append(parse_float(t, src, f"{where}/bndbox/{key}", key))
        xmin, ymin, xmax, ymax = vals
        s.box(rec, cid, (xmin - 1, ymin - 1, xmax, ymax), src, f"{where}/bndbox", low_tol=1.0)


def _sub(parent: ET.Element, tag: str, text: str | None = None) -> ET.Element:
    el = ET.SubElement(parent, tag)
    if text is not None:
        el.text = text
    return el


def export(project: Project, out: str | Path, *, warnings: list[str] | None = None) -> Path:
    """Write ``out/Annotations/*.xml`` and ``out/JPEGImages/*`` (hard links or copies);
    returns ``out``."""
    out = Path(out)
    (out / "Annotations").mkdir(parents=True, exist_ok=True)
    records = project.images()
    names = export_names(records)
    class_name = {c.id: c.name for c in project.classes()}
    for rec in records:
        place_image(project, rec, out / "JPEGImages" / names[rec.id])
        root = _document(rec, names[rec.id], project, class_name)
        ET.indent(root)
        stem = names[rec.id].rsplit(".", 1)[0]
        with replacing(out / "Annotations" / f"{stem}.xml", sync=False) as tmp:
            ET.ElementTree(root).write(tmp, encoding="utf-8", xml_declaration=True)
    skipped_kinds(project, ("tags", "landmarks", "masks"), "VOC", warnings)
    return out


def _document(
    rec: ImageRecord, name: str, project: Project, class_name: dict[int, str]
) -> ET.Element:
    root = ET.Element("annotation")
    _sub(root, "folder", "JPEGImages")
    _sub(root, "filename", name)
    size = _sub(root, "size")
    _sub(size, "width", str(rec.width))
    _sub(size, "height", str(rec.height))
    _sub(size, "depth", str(rec.channels))
    _sub(root, "segmented", "0")
    for b in project.boxes(rec.id):
        obj = _sub(root, "object")
        _sub(obj, "name", class_name[b.class_id])
        _sub(obj, "pose", "Unspecified")
        _sub(obj, "truncated", "0")
        _sub(obj, "difficult", "0")
        bnd = _sub(obj, "bndbox")
        for key, v in (("xmin", b.x1 + 1), ("ymin", b.y1 + 1), ("xmax", b.x2), ("ymax", b.y2)):
            _sub(bnd, key, fmt_num(v))
    return root
