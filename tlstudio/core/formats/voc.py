"""Pascal VOC: ``Annotations/*.xml`` (boxes) and segmentation PNGs.

**Boxes.** VOC ``bndbox`` values are 1-based pixel indices, inclusive (``xmin`` =
first column of the box, ``xmax`` = last column; a box over the whole W×H image is 1,
1, W, H). In tlstudio's frame (pixel i spans [i-1, i] for 1-based i) that is ``x1 =
xmin - 1, y1 = ymin - 1, x2 = xmax, y2 = ymax``; export writes the inverse, with
fractional values where the box is not pixel-aligned, so export → import is exact.
labelme2voc (labelme's converter) writes labelme's raw 0-based corners instead: its
files are recognised (``<database/>``, ``<annotation/>`` and ``<image/>`` written
empty at the top level instead of inside VOC's ``<source>``) and read as 0-based,
and ``zero_based=True`` (``--voc-zero-based``) reads or writes any VOC as 0-based
(``x1 = xmin``, ``x2 = xmax``).

**Segmentation.** ``SegmentationClass/<stem>.png`` (labelme writes
``SegmentationClassPNG/``) is a palette (or grey) PNG of class indices: 0 background,
255 void (read as the ignore region), i = the i-th name of ``class_names.txt`` (one per
line, labelme2voc's, whose first name ``_background_`` is the background), else of
VOC's 21 classes. ``SegmentationObject/<stem>.png`` numbers the objects 1, 2, … (0
none, 255 void); object k is the k-th ``<object>`` of the image's XML (VOC's rule), so
its box becomes the object's box; its class is the class most of its pixels have in
the class PNG. Labelled pixels outside every object are label-map pixels of no
object. Export writes both PNGs (VOC's palette; objects first in the XML, in
number order, then the other boxes; an object without a box gets its pixels'
bounding box marked ``<tlstudio_box>0</tlstudio_box>``, which tlstudio does not read
back as a box), ``class_names.txt`` (``_background_`` then the project's classes)
and ``ImageSets/Segmentation/default.txt``. At most 254 classes and 254 objects per
image fit an 8-bit PNG.

Images resolve from ``<filename>`` against the XML's folder, then
``../JPEGImages``, ``images/`` and ``../images``, then ``<path>``; the images of the
PNGs are ``JPEGImages/<stem>.*``. Export layout: ``Annotations/<stem>.xml`` and
``JPEGImages/<name>`` (any image format).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..annotations import ImageAnnotations
from ..atomic import replacing, write_text_atomic
from ..errors import FormatError
from ..project import ImageRecord, Project
from ._common import (
    BACKGROUND_NAMES,
    ImportSession,
    bbox_of_mask,
    export_names,
    find_file,
    fmt_num,
    import_session,
    is_file,
    note,
    parse_float,
    place_image,
    read_text,
    skipped_kinds,
)
from .report import LabelImportReport

SEGMENTATION_CLASS_DIRS = ("SegmentationClass", "SegmentationClassPNG")
SEGMENTATION_OBJECT_DIRS = ("SegmentationObject", "SegmentationObjectPNG")
VOID = 255
VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip
"""VOC 2012's class indices, used when a dataset has no ``class_names.txt``."""
DERIVED_BOX = "tlstudio_box"
"""Child of an ``<object>`` whose ``bndbox`` is its mask's bounding box, not a box."""


def voc_palette() -> np.ndarray:
    """VOC's 256-colour map (index → RGB) as a 256×3 uint8 array."""
    pal = np.zeros((256, 3), np.uint8)
    for i in range(256):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal[i] = (r, g, b)
    return pal


def xml_files(path: Path) -> list[Path]:
    """The XML files of a VOC import: the file itself, or every ``*.xml`` below the folder
    (none is fine when the folder holds segmentation PNGs)."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FormatError(path, "", "no such file or folder")
    files = sorted(p for p in path.rglob("*.xml") if p.is_file())
    if not files and not _segmentation_dirs(path):
        raise FormatError(path, "", "no .xml files and no SegmentationClass/ folder here")
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


def written_by_labelme2voc(root: ET.Element) -> bool:
    """labelme2voc writes ``<database/>``, ``<annotation/>`` and ``<image/>`` empty at the
    top level (VOC puts them, filled in, inside ``<source>``)."""
    return all(
        (el := root.find(tag)) is not None and not _text(el) and len(el) == 0
        for tag in ("database", "annotation", "image")
    )


@dataclass
class _Doc:
    src: Path
    root: ET.Element
    zero_based: bool
    objects: list[tuple[str, int | None]] = field(default_factory=list)  # (class, box id)


def import_(project: Project, path: str | Path, copy_images: bool = False, *,
            zero_based: bool = False) -> LabelImportReport:  # fmt: skip
    """Import one VOC XML or a VOC folder (XML searched recursively, plus segmentation
    PNGs). ``zero_based``: read every box as 0-based (labelme2voc files are anyway)."""
    path = Path(path)
    files = xml_files(path)
    docs = []
    for f in files:
        root = parse_xml(f)
        docs.append(_Doc(f, root, zero_based or written_by_labelme2voc(root)))
    with import_session(project, copy_images) as s:
        refs = [(_image_path(d.src, d.root), d.src, "filename") for d in docs]
        by_stem: dict[str, _Doc] = {}
        auto = 0
        for d, rec in zip(docs, s.images(refs), strict=True):
            _import_one(s, d, rec)
            by_stem[d.src.stem] = d
            auto += d.zero_based and not zero_based
        if auto:
            s.warn(None, "", f"{auto} XML files written by labelme2voc: their boxes were read as "
                   "0-based (labelme's pixel corners), as that tool writes them")  # fmt: skip
        if path.is_dir():
            _import_segmentation(s, path, by_stem)
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


def _import_one(s: ImportSession, doc: _Doc, rec: ImageRecord) -> None:
    src, root = doc.src, doc.root
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
    shift = 0.0 if doc.zero_based else 1.0
    for i, obj in enumerate(root.findall("object"), 1):
        where = f"object {i}"
        label = _text(obj.find("name"))
        if not label:
            raise FormatError(src, f"{where}/name", "missing class name")
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
        if _text(obj.find(DERIVED_BOX)) == "0" or label in BACKGROUND_NAMES:
            doc.objects.append((label, None))
            continue
        cid = s.class_id(label, src, f"{where}/name")
        box = s.box(rec, cid, (xmin - shift, ymin - shift, xmax, ymax), src, f"{where}/bndbox")
        doc.objects.append((label, box.id))


# -- segmentation PNGs -------------------------------------------------------------------------


def _segmentation_dirs(root: Path) -> tuple[Path, Path | None] | None:
    """The class and object PNG folders (the first holding PNGs: labelme2voc's video
    example has ``.npy`` files in ``SegmentationClass/`` and PNGs in
    ``SegmentationClassPNG/``)."""

    def first(names: tuple[str, ...]) -> Path | None:
        return next((root / d for d in names if any((root / d).glob("*.png"))), None)

    cls = first(SEGMENTATION_CLASS_DIRS)
    return None if cls is None else (cls, first(SEGMENTATION_OBJECT_DIRS))


def read_index_png(path: Path) -> np.ndarray:
    """The H×W index values of a palette or grey PNG (RGB PNGs in VOC's colours are mapped
    back to their indices). FormatError for anything else."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            if im.mode == "P":
                return np.array(im, np.uint8)
            if im.mode in ("L", "I;16", "I"):
                arr = np.array(im)
                if arr.max(initial=0) > 255:
                    raise FormatError(path, "", "indices above 255 do not fit VOC's 8-bit PNGs")
                return arr.astype(np.uint8)
            if im.mode in ("RGB", "RGBA"):
                rgb = np.array(im.convert("RGB"))
            else:
                raise FormatError(path, "", f"a {im.mode} image is not a VOC label PNG")
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise FormatError(path, "", f"cannot read PNG ({exc})") from None
    pal = voc_palette()
    code = (rgb[..., 0].astype(np.int32) << 16) | (rgb[..., 1].astype(np.int32) << 8) | rgb[..., 2]
    pal_code = (pal[:, 0].astype(np.int32) << 16) | (pal[:, 1].astype(np.int32) << 8) | pal[:, 2]
    lut = {int(c): i for i, c in enumerate(pal_code)}
    values, inverse = np.unique(code, return_inverse=True)
    unknown = [int(v) for v in values if int(v) not in lut]
    if unknown:
        v = unknown[0]
        raise FormatError(
            path, "", f"colour #{v:06x} is not one of VOC's palette colours (write indices)"
        )
    idx = np.array([lut[int(v)] for v in values], np.uint8)
    out: np.ndarray = idx[inverse].reshape(code.shape)
    return out


def _class_names(root: Path, src_dir: Path) -> tuple[list[str], Path | None]:
    for cand in (root / "class_names.txt", root / "labels.txt", src_dir / "class_names.txt"):
        if is_file(cand):
            names = [ln.strip() for ln in read_text(cand).splitlines() if ln.strip()]
            if names and names[0] == "__ignore__":  # labelme's labels.txt: -1, 0, 1, ...
                names = names[1:]
            return names, cand
    return list(VOC_CLASSES), None


def _import_segmentation(s: ImportSession, root: Path, by_stem: dict[str, _Doc]) -> None:
    dirs = _segmentation_dirs(root)
    if dirs is None:
        return
    cls_dir, obj_dir = dirs
    names, names_file = _class_names(root, cls_dir)
    pngs = sorted(p for p in cls_dir.glob("*.png") if p.is_file())
    refs = [(_png_image(root, p), p, "image") for p in pngs]
    for png, rec in zip(pngs, s.images(refs), strict=True):
        classes = read_index_png(png)
        if classes.shape != (rec.height, rec.width):
            raise FormatError(png, "", f"PNG is {classes.shape[1]}×{classes.shape[0]} px, "
                              f"image is {rec.width}×{rec.height} px")  # fmt: skip
        present = sorted(set(np.unique(classes).tolist()) - {0, VOID})
        for v in present:
            if v >= len(names):
                where = f"names from {names_file}" if names_file else "VOC's 21 classes"
                raise FormatError(png, "", f"class index {v} has no name ({where})")
        objects = None
        obj_png = None if obj_dir is None else obj_dir / png.name
        if obj_png is not None and is_file(obj_png):
            objects = read_index_png(obj_png)
            if objects.shape != classes.shape:
                raise FormatError(obj_png, "", "object PNG and class PNG differ in size")
        if (classes == VOID).any():
            s.ignore(rec, classes == VOID, png, "255 (void)")
        doc = by_stem.get(png.stem)
        in_object = np.zeros(classes.shape, bool)
        if objects is not None:
            for k in sorted(set(np.unique(objects).tolist()) - {0, VOID}):
                region = (objects == k) & (classes != VOID)
                if not region.any():
                    continue
                values, counts = np.unique(classes[region], return_counts=True)
                v = int(values[np.argmax(counts)])
                if v == 0:
                    continue
                box_id = None
                if doc is not None and k <= len(doc.objects) and doc.objects[k - 1][0] == names[v]:
                    box_id = doc.objects[k - 1][1]
                s.region(rec, names[v], region, obj_png or png, f"object {k}", box_id=box_id)
                in_object |= region
        for v in present:
            region = (classes == v) & ~in_object
            if region.any():
                s.region(rec, names[v], region, png, f"class {v}", instance=False)


def _png_image(root: Path, png: Path) -> Path:
    folder = root / "JPEGImages"
    for cand in sorted(folder.glob(png.stem + ".*")) if folder.is_dir() else []:
        if cand.suffix.lower() != ".xml" and is_file(cand):
            return cand
    raise FormatError(png, "", f"no image {png.stem}.* in {folder}")


# -- export -------------------------------------------------------------------------------------


def _sub(parent: ET.Element, tag: str, text: str | None = None) -> ET.Element:
    el = ET.SubElement(parent, tag)
    if text is not None:
        el.text = text
    return el


def export(project: Project, out: str | Path, *, warnings: list[str] | None = None,
           zero_based: bool = False) -> Path:  # fmt: skip
    """Write ``out/Annotations/*.xml``, ``out/JPEGImages/*`` (hard links or copies) and,
    for images with masks, ``SegmentationClass/`` and ``SegmentationObject/`` PNGs;
    returns ``out``. ``zero_based``: write labelme2voc's 0-based box corners."""
    out = Path(out)
    (out / "Annotations").mkdir(parents=True, exist_ok=True)
    records = project.images()
    names = export_names(records)
    classes = project.classes()
    class_name = {c.id: c.name for c in classes}
    index = {c.id: i + 1 for i, c in enumerate(classes)}
    segmented: list[str] = []
    too_many = 0
    for rec in records:
        place_image(project, rec, out / "JPEGImages" / names[rec.id])
        stem = names[rec.id].rsplit(".", 1)[0]
        ann = project.annotations(rec.id)
        root = _document(rec, names[rec.id], ann, class_name, zero_based)
        if ann.mask is not None or ann.ignore is not None:
            if len(classes) > 254 or (ann.instances and len(ann.instances.objects) > 254):
                too_many += 1
            else:
                _write_pngs(out, stem, rec, ann, index)
                segmented.append(stem)
        ET.indent(root)
        with replacing(out / "Annotations" / f"{stem}.xml", sync=False) as tmp:
            ET.ElementTree(root).write(tmp, encoding="utf-8", xml_declaration=True)
    if segmented:
        write_text_atomic(
            out / "class_names.txt",
            "\n".join(["_background_", *(c.name for c in classes)]) + "\n",
            sync=False,
        )
        sets = out / "ImageSets" / "Segmentation"
        sets.mkdir(parents=True, exist_ok=True)
        write_text_atomic(sets / "default.txt", "".join(s + "\n" for s in segmented), sync=False)
    if too_many:
        note(warnings, f"VOC: masks of {too_many} images not exported (more than 254 classes "
             "or objects do not fit VOC's 8-bit PNGs)")  # fmt: skip
    skipped_kinds(project, ("tags", "landmarks"), "VOC", warnings)
    return out


def _document(rec: ImageRecord, name: str, ann: ImageAnnotations, class_name: dict[int, str],
              zero_based: bool) -> ET.Element:  # fmt: skip
    root = ET.Element("annotation")
    _sub(root, "folder", "JPEGImages")
    _sub(root, "filename", name)
    size = _sub(root, "size")
    _sub(size, "width", str(rec.width))
    _sub(size, "height", str(rec.height))
    _sub(size, "depth", str(rec.channels))
    _sub(root, "segmented", "1" if ann.mask is not None else "0")
    shift = 0.0 if zero_based else 1.0
    boxes = {b.id: b for b in ann.boxes}
    linked: set[int | None] = set()

    def add(cls: str, xyxy: tuple[float, float, float, float], derived: bool) -> None:
        obj = _sub(root, "object")
        _sub(obj, "name", cls)
        _sub(obj, "pose", "Unspecified")
        _sub(obj, "truncated", "0")
        _sub(obj, "difficult", "0")
        bnd = _sub(obj, "bndbox")
        x1, y1, x2, y2 = xyxy
        for key, v in (("xmin", x1 + shift), ("ymin", y1 + shift), ("xmax", x2), ("ymax", y2)):
            _sub(bnd, key, fmt_num(v))
        if derived:
            _sub(obj, DERIVED_BOX, "0")

    if ann.instances is not None:
        for o in ann.instances.objects:
            box = boxes.get(o.box_id) if o.box_id is not None else None
            if box is not None:
                linked.add(box.id)
                add(class_name[o.class_id], box.xyxy, False)
            else:
                x1, y1, x2, y2 = bbox_of_mask(ann.instances.region(o.number))
                add(class_name[o.class_id], (x1, y1, x2, y2), True)
    for b in ann.boxes:
        if b.id not in linked:
            add(class_name[b.class_id], b.xyxy, False)
    return root


def _write_pngs(
    out: Path, stem: str, rec: ImageRecord, ann: ImageAnnotations, index: dict[int, int]
) -> None:
    from PIL import Image

    shape = (rec.height, rec.width)
    cls = np.zeros(shape, np.uint8)
    if ann.mask is not None:
        lut = np.zeros(int(ann.mask.max()) + 1, np.uint8)
        for cid, i in index.items():
            if cid < len(lut):
                lut[cid] = i
        cls = lut[ann.mask]
    obj = np.zeros(shape, np.uint8)
    if ann.instances is not None:
        for k, o in enumerate(ann.instances.objects, 1):
            obj[ann.instances.map == o.number] = k
    if ann.ignore is not None:
        cls[ann.ignore] = VOID
        obj[ann.ignore] = VOID
    palette = voc_palette().ravel().tolist()
    for folder, arr in (("SegmentationClass", cls), ("SegmentationObject", obj)):
        (out / folder).mkdir(exist_ok=True)
        im = Image.fromarray(arr, mode="P")
        im.putpalette(palette)
        with replacing(out / folder / f"{stem}.png", sync=False) as tmp:
            im.save(tmp, format="PNG")
