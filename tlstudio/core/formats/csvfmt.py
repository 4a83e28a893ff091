"""CSV of image-level labels: a header ``image,label`` (or ``filename,class``; an optional
``domain`` column names the image's domain; other columns are ignored), one row per image, image paths relative to the CSV's folder
(or absolute), several labels of a multi-label image joined with ``;``; an empty
label leaves the image untagged. UTF-8, with or without a BOM.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from ..atomic import write_text_atomic
from ..errors import FormatError
from ..project import Project
from ._common import (
    export_names,
    find_file,
    import_session,
    note,
    place_image,
    read_text,
    relative_ref,
    skipped_kinds,
)
from .report import LabelImportReport

IMAGE_COLUMNS = ("image", "filename", "file", "path")
LABEL_COLUMNS = ("label", "class", "labels", "classes")
DOMAIN_COLUMN = "domain"


def find_csv(path: Path) -> Path:
    """The CSV itself, or the only ``*.csv`` in the folder."""
    if not path.is_dir():
        return path
    found = sorted(p for p in path.glob("*.csv") if p.is_file())
    if len(found) != 1:
        raise FormatError(path, "", f"expected one .csv file here, found {len(found)}")
    return found[0]


def import_(project: Project, path: str | Path, copy_images: bool = False) -> LabelImportReport:
    """Import image-level labels from a CSV file."""
    src = find_csv(Path(path))
    text = read_text(src)
    reader = csv.reader(io.StringIO(text, newline=""))
    with import_session(project, copy_images) as s:
        try:
            header = next(reader, None)
            if header is None:
                raise FormatError(src, "line 1", "empty file")
            cols = [h.strip().lower() for h in header]
            img_col = next((cols.index(c) for c in IMAGE_COLUMNS if c in cols), None)
            lbl_col = next((cols.index(c) for c in LABEL_COLUMNS if c in cols), None)
            dom_col = cols.index(DOMAIN_COLUMN) if DOMAIN_COLUMN in cols else None
            if img_col is None or lbl_col is None:
                raise FormatError(
                    src, "line 1", "the header needs an image and a label column (image,label)"
                )
            rows = []
            for row in reader:
                where = f"line {reader.line_num}"
                if not any(cell.strip() for cell in row):
                    continue
                if len(row) <= max(img_col, lbl_col):
                    raise FormatError(src, where, f"expected {len(cols)} columns, got {len(row)}")
                path = find_file(row[img_col].strip(), [src.parent], src, where)
                domain = row[dom_col] if dom_col is not None and dom_col < len(row) else None
                rows.append((path, where, row[lbl_col], domain))
            records = s.images([(path, src, where) for path, where, _, _ in rows])
            for (_, where, labels, domain), rec in zip(rows, records, strict=True):
                if domain is not None and domain.strip():
                    s.set_domain(rec, domain, src, f"{where}, domain")
                for label in labels.split(";"):
                    if label.strip():
                        s.tag(rec, s.class_id(label, src, where), src, where)
        except csv.Error as exc:
            raise FormatError(src, f"line {reader.line_num}", f"bad CSV: {exc}") from None
    return s.report


def export(project: Project, out: str | Path, *, warnings: list[str] | None = None) -> Path:
    """Write ``image,label`` rows for every image (untagged images get an empty label),
    with a ``domain`` column when an image has a domain.
    ``out`` ending in ``.csv``: that file, paths relative to it (images stay where they
    are); otherwise ``out/labels.csv`` with the images hard-linked (or copied) into
    ``out/images/``. Returns the CSV path."""
    out = Path(out)
    records = project.images()
    if out.suffix.lower() == ".csv":
        csv_path = out
        csv_path.parent.mkdir(parents=True, exist_ok=True)
        refs = {
            r.id: relative_ref(project.image_path(r).resolve(), csv_path.parent.resolve())
            for r in records
        }
    else:
        out.mkdir(parents=True, exist_ok=True)
        csv_path = out / "labels.csv"
        names = export_names(records)
        refs = {}
        for r in records:
            place_image(project, r, out / "images" / names[r.id])
            refs[r.id] = f"images/{names[r.id]}"
    class_name = {c.id: c.name for c in project.classes()}
    bad = [n for n in class_name.values() if ";" in n]
    if bad:
        note(warnings, f"CSV: class names containing ';' will read back as several labels: {bad}")
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator="\n")
    with_domain = any(r.domain is not None for r in records)
    writer.writerow(["image", "label", *([DOMAIN_COLUMN] if with_domain else [])])
    for r in records:
        row = [refs[r.id], ";".join(class_name[c] for c in project.tags(r.id))]
        writer.writerow([*row, r.domain or ""] if with_domain else row)
    write_text_atomic(csv_path, buf.getvalue(), newline="")
    skipped_kinds(project, ("boxes", "landmarks", "masks"), "CSV", warnings)
    return csv_path
