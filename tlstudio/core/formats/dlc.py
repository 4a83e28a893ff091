"""DeepLabCut labelled data: ``labeled-data/<video>/CollectedData_<scorer>.csv`` (or
``.h5``) beside a project's ``config.yaml``.

The CSV has three header rows (four for multi-animal projects) whose first cell names
them: ``scorer``, [``individuals``,] ``bodyparts``, ``coords`` (``x``, ``y``); each
further row is one labelled frame: its path relative to the project folder
(``labeled-data/<video>/img001.png``; DeepLabCut 2.3 splits it over three columns),
then x, y per body part (and individual); an empty cell is an unlabelled point. The
``.h5`` holds the same table as a pandas HDFStore (PyTables ``table`` or ``fixed``
layout, key ``df_with_missing``); it is read with h5py, without pandas.

Coordinates: DeepLabCut's labelling tools put pixel centres on integers (the top-left
pixel's centre is (0, 0)); tlstudio's are pixel edges, so x_tlstudio = x + 0.5 (and
the export writes x − 0.5).

Import: the body parts (``config.yaml`` ``bodyparts``, or ``multianimalbodyparts`` in
a multi-animal project, else the CSV's order) become a landmark template named after
the config's ``Task`` (``deeplabcut`` without a config) whose skeleton is the config's
``skeleton`` (pairs of body-part names) and whose left/right pairs come from
``left_``/``right_`` names; each individual of a frame with at least one labelled
point gives one landmark set (several per image in a multi-animal project). The
``uniquebodyparts`` of a multi-animal project (individual ``single``) form a second
template, ``<Task> unique``. A folder is searched for ``CollectedData_*.csv`` (the
``.h5`` where no CSV is beside it); a file is read as it is.

Export: ``out/config.yaml`` (Task, scorer ``tlstudio``, bodyparts, skeleton; for
several sets of the template on an image ``multianimalproject: true`` with
``individuals`` and ``multianimalbodyparts``, plus ``uniquebodyparts`` from a template
``<name> unique``), ``out/labeled-data/images/CollectedData_tlstudio.csv`` and the
images hard-linked (or copied) beside it. The ``.h5`` DeepLabCut trains from is not
written: DeepLabCut makes it from the CSV (``deeplabcut.convertcsv2h5(config)``).
DeepLabCut has no visibility flag, classes or left/right pairs: occluded points are
written as labelled, classes and pairs are not written (a warning counts them).
"""

from __future__ import annotations

import csv
import io
import math
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ..annotations import SKIPPED, VISIBLE, LandmarkSet, Point
from ..errors import FormatError, ValidationError
from ..labelset import LandmarkTemplate
from ..project import Project
from ._common import (
    ImportSession,
    export_names,
    export_template,
    flip_pairs_from_names,
    import_session,
    is_file,
    note,
    place_image,
    read_text,
    skipped_kinds,
)
from .report import LabelImportReport

DEFAULT_TASK = "deeplabcut"
UNIQUE = "single"  # DeepLabCut's individual name for the unique body parts
SCORER = "tlstudio"
EXPORT_FOLDER = "images"


@dataclass
class _Table:
    """A CollectedData table: frame paths, column labels (individual or None, body part,
    coordinate) and values (frames × columns, NaN = empty)."""

    src: Path
    frames: list[str]
    columns: list[tuple[str | None, str, str]]
    values: np.ndarray


@dataclass
class _Config:
    path: Path | None = None
    task: str = DEFAULT_TASK
    bodyparts: list[str] = field(default_factory=list)
    unique: list[str] = field(default_factory=list)
    skeleton: list[tuple[str, str]] = field(default_factory=list)


def looks_like_dlc_csv(path: Path) -> bool:
    """True for a CSV whose first cell is ``scorer`` and which has a ``bodyparts`` row."""
    try:
        with open(path, encoding="utf-8-sig", errors="replace") as f:
            head = [f.readline() for _ in range(3)]
    except OSError:
        return False
    return head[0].startswith("scorer,") and any(ln.startswith("bodyparts,") for ln in head[1:])


def looks_like_dlc_h5(path: Path) -> bool:
    """True for an HDF5 file (signature) named like DeepLabCut's CollectedData."""
    try:
        with open(path, "rb") as f:
            sig = f.read(8)
    except OSError:
        return False
    return sig == b"\x89HDF\r\n\x1a\n" and path.name.startswith("CollectedData")


def find_tables(path: Path) -> list[Path]:
    """The CollectedData files of an import: the file itself, or below the folder every
    ``CollectedData_*.csv`` and the ``.h5`` files that have no CSV beside them."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FormatError(path, "", "no such file or folder")
    csvs = sorted(p for p in path.rglob("CollectedData*.csv") if p.is_file())
    h5s = sorted(
        p
        for p in path.rglob("CollectedData*.h5")
        if p.is_file() and not is_file(p.with_suffix(".csv"))
    )
    found = csvs + h5s
    if not found:
        raise FormatError(path, "", "no DeepLabCut CollectedData_*.csv or .h5 here")
    return found


# -- reading -----------------------------------------------------------------------------------


def read_csv_table(src: Path) -> _Table:
    rows = list(csv.reader(io.StringIO(read_text(src))))
    names = [r[0].strip() if r else "" for r in rows[:4]]
    if not names or names[0] != "scorer":
        raise FormatError(src, "line 1", "a DeepLabCut CSV starts with a 'scorer' row")
    try:
        n_head = names.index("coords") + 1
    except ValueError:
        raise FormatError(src, "", "no 'coords' row in the first four lines") from None
    head = {names[i]: rows[i] for i in range(n_head)}
    if "bodyparts" not in head:
        raise FormatError(src, "", "no 'bodyparts' row")
    coords_row = head["coords"]
    # DeepLabCut 2.3 writes the frame path over three index columns (empty header cells)
    n_index = next((i for i, v in enumerate(coords_row[1:], 1) if v.strip()), len(coords_row))
    width = len(coords_row)
    columns: list[tuple[str | None, str, str]] = []
    for j in range(n_index, width):
        ind = head["individuals"][j].strip() if "individuals" in head else None
        columns.append((ind, head["bodyparts"][j].strip(), coords_row[j].strip()))
    frames, values = [], []
    for ln, row in enumerate(rows[n_head:], n_head + 1):
        if not any(c.strip() for c in row):
            continue
        frame = "/".join(c.strip() for c in row[:n_index] if c.strip())
        if not frame:
            raise FormatError(src, f"line {ln}", "no frame path in the first column")
        vals = []
        for j in range(n_index, width):
            cell = row[j].strip() if j < len(row) else ""
            if not cell:
                vals.append(math.nan)
                continue
            try:
                v = float(cell)
            except ValueError:
                raise FormatError(src, f"line {ln}", f"{cell[:30]!r} is not a number") from None
            vals.append(v)
        frames.append(frame)
        values.append(vals)
    arr = np.array(values, np.float64).reshape(len(frames), len(columns))
    return _Table(src, frames, columns, arr)


class _NoGlobals(pickle.Unpickler):
    """Unpickles lists, tuples, strings and numbers only (pandas' attribute pickles)."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"refused to load {module}.{name}")


def _unpickle(raw: Any) -> Any:
    data = raw.tobytes() if hasattr(raw, "tobytes") else bytes(raw)
    return _NoGlobals(io.BytesIO(data), encoding="utf-8").load()


def _text(v: Any) -> str:
    return v.decode("utf-8") if isinstance(v, bytes) else str(v)


def read_h5_table(src: Path) -> _Table:
    """A CollectedData ``.h5`` (pandas HDFStore, ``table`` or ``fixed`` layout) via h5py."""
    import h5py  # only here: an optional, heavy import

    try:
        with h5py.File(src, "r") as f:
            key = "df_with_missing" if "df_with_missing" in f else next(iter(f.keys()), None)
            if key is None or not isinstance(f[key], h5py.Group):
                raise FormatError(src, "", "no pandas table in this HDF5 file")
            group = f[key]
            kind = _text(group.attrs.get("pandas_type", b""))
            if kind == "frame_table":
                frames, columns, values = _h5_table_layout(src, group)
            elif kind == "frame":
                frames, columns, values = _h5_fixed_layout(src, group)
            else:
                raise FormatError(src, key, f"not a pandas DataFrame (pandas_type {kind!r})")
    except OSError as exc:
        raise FormatError(src, "", f"cannot read HDF5 file ({exc})") from None
    except (pickle.UnpicklingError, ValueError, KeyError, IndexError, TypeError, EOFError) as exc:
        raise FormatError(src, "", f"unexpected layout of the HDF5 table ({exc})") from None
    cols: list[tuple[str | None, str, str]] = []
    for label in columns:
        parts = [_text(x) for x in label]
        if len(parts) == 4:
            cols.append((parts[1], parts[2], parts[3]))
        elif len(parts) == 3:
            cols.append((None, parts[1], parts[2]))
        else:
            raise FormatError(
                src, "", f"column {parts} is not (scorer, [individual,] bodypart, coord)"
            )
    return _Table(src, frames, cols, np.asarray(values, np.float64))


def _h5_table_layout(src: Path, group: Any) -> tuple[list[str], list[Any], np.ndarray]:
    table = group["table"][()]
    names = table.dtype.names
    index_cols = [c for c in names if not c.startswith("values_block_")]
    frames = ["/".join(_text(row[c]) for c in index_cols) for row in table]
    blocks = sorted(c for c in names if c.startswith("values_block_"))
    columns: list[Any] = []
    parts = []
    for b in blocks:
        kind = group["table"].attrs.get(f"{b}_kind")
        columns += list(_unpickle(kind))
        vals = np.asarray(table[b], np.float64)
        parts.append(vals.reshape(len(table), -1))
    values = np.concatenate(parts, axis=1) if parts else np.zeros((len(table), 0))
    return frames, columns, values


def _h5_index(group: Any, key: str) -> list[Any]:
    """A pandas index written by ``write_index`` (regular or MultiIndex)."""
    n_levels = group.attrs.get(f"{key}_nlevels")
    if n_levels is None:
        return [_text(v) for v in group[key][()]]
    levels, codes = [], []
    for i in range(int(n_levels)):
        levels.append([_text(v) for v in group[f"{key}_level{i}"][()]])
        codes.append(np.asarray(group[f"{key}_label{i}"][()], np.int64))
    return [tuple(levels[i][c[j]] for i, c in enumerate(codes)) for j in range(len(codes[0]))]


def _h5_fixed_layout(src: Path, group: Any) -> tuple[list[str], list[Any], np.ndarray]:
    rows = _h5_index(group, "axis1")
    frames = ["/".join(r) if isinstance(r, tuple) else r for r in rows]
    columns: list[Any] = []
    parts = []
    for i in range(int(group.attrs.get("nblocks", 1))):
        items = _h5_index(group, f"block{i}_items")
        node = group[f"block{i}_values"]
        vals = np.asarray(node[()], np.float64)
        if not bool(node.attrs.get("transposed", False)):
            vals = vals.T
        columns += items
        parts.append(vals.reshape(len(frames), len(items)))
    values = np.concatenate(parts, axis=1) if parts else np.zeros((len(frames), 0))
    return frames, columns, values


def read_config(start: Path) -> _Config:
    """The ``config.yaml`` of the DeepLabCut project holding ``start`` (searched upwards
    three levels), or defaults."""
    folder = start if start.is_dir() else start.parent
    for cand in [folder, *list(folder.parents)[:3]]:
        cfg_path = cand / "config.yaml"
        if is_file(cfg_path):
            break
    else:
        return _Config()
    try:
        data = yaml.safe_load(read_text(cfg_path))
    except yaml.YAMLError as exc:
        raise FormatError(cfg_path, "", f"not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        return _Config(cfg_path)
    cfg = _Config(cfg_path)
    task = data.get("Task")
    if isinstance(task, (str, int)) and str(task).strip():
        cfg.task = str(task).strip()

    def names(key: str) -> list[str]:
        v = data.get(key)
        return [str(x) for x in v] if isinstance(v, list) else []

    cfg.bodyparts = names("multianimalbodyparts") if data.get("multianimalproject") else []
    cfg.bodyparts = cfg.bodyparts or names("bodyparts")
    cfg.unique = names("uniquebodyparts")
    for j, edge in enumerate(data.get("skeleton") or []):
        if not (isinstance(edge, list) and len(edge) == 2):
            raise FormatError(cfg_path, f"skeleton[{j}]", "expected a pair of body-part names")
        cfg.skeleton.append((str(edge[0]), str(edge[1])))
    return cfg


# -- import --------------------------------------------------------------------------------------


def import_(project: Project, path: str | Path, copy_images: bool = False) -> LabelImportReport:
    """Import DeepLabCut labelled data (a project, a labeled-data folder or one file)."""
    path = Path(path)
    tables = []
    for f in find_tables(path):
        tables.append(read_h5_table(f) if f.suffix.lower() == ".h5" else read_csv_table(f))
    cfg = read_config(path)
    with import_session(project, copy_images) as s:
        for table in tables:
            _import_table(s, table, cfg)
    return s.report


def _template(s: ImportSession, name: str, parts: list[str], cfg: _Config,
              src: Path) -> LandmarkTemplate:  # fmt: skip
    index = {p: i for i, p in enumerate(parts)}
    skeleton = tuple(
        (index[a], index[b]) for a, b in cfg.skeleton if a in index and b in index and a != b
    )
    try:
        t = LandmarkTemplate(name, tuple(parts), skeleton, flip_pairs_from_names(parts))
    except ValidationError as exc:
        raise FormatError(src, "bodyparts", str(exc)) from None
    return s.template(t, src, "bodyparts", rename=True)


def _import_table(s: ImportSession, table: _Table, cfg: _Config) -> None:
    src = table.src
    for _, _, coord in table.columns:
        if coord not in ("x", "y", "likelihood"):
            raise FormatError(src, "coords", f"unknown coordinate {coord!r} (x, y or likelihood)")
    individuals = list(dict.fromkeys(ind for ind, _, _ in table.columns))
    groups: dict[str, list[str]] = {}  # individual -> body parts, in column order
    for ind, part, _ in table.columns:
        key = UNIQUE if ind == UNIQUE else "animal"
        lst = groups.setdefault(key, [])
        if part not in lst:
            lst.append(part)
    # the config's order (and parts no frame has labelled) where it holds the CSV's parts
    animal = groups.get("animal", [])
    if animal and set(animal) <= set(cfg.bodyparts):
        animal = list(cfg.bodyparts)
    unique = groups.get(UNIQUE, [])
    if unique and set(unique) <= set(cfg.unique):
        unique = list(cfg.unique)
    templates = {}
    if animal:
        templates["animal"] = _template(s, cfg.task, animal, cfg, src)
    if unique:
        templates[UNIQUE] = _template(s, f"{cfg.task} unique", unique, cfg, src)
    col = {c: j for j, c in enumerate(table.columns)}
    root = src.parent.parent.parent if src.parent.parent.name == "labeled-data" else None
    bases = [b for b in (root, cfg.path.parent if cfg.path else None) if b is not None]
    refs = [(_frame_path(frame, src, bases), src, f"row {i + 1} ({frame})")
            for i, frame in enumerate(table.frames)]  # fmt: skip
    for i, rec in enumerate(s.images(refs)):
        where = f"row {i + 1} ({table.frames[i]})"
        for ind in individuals:
            key = UNIQUE if ind == UNIQUE else "animal"
            tpl = templates.get(key)
            if tpl is None:
                continue
            points = []
            for part in tpl.points:
                jx, jy = col.get((ind, part, "x")), col.get((ind, part, "y"))
                x = math.nan if jx is None else float(table.values[i, jx])
                y = math.nan if jy is None else float(table.values[i, jy])
                if math.isnan(x) or math.isnan(y):
                    points.append(Point(0.0, 0.0, SKIPPED))
                else:
                    points.append(s.point(rec, x + 0.5, y + 0.5, VISIBLE, src, where))
            if any(p.visibility != SKIPPED for p in points):
                s.landmarks(rec, tpl, points, None, src, where)


def _frame_path(frame: str, src: Path, bases: list[Path]) -> Path:
    rel = Path(frame.replace("\\", "/"))
    for base in bases:
        if is_file(base / rel):
            return base / rel
    # DeepLabCut's own path is relative to the project; the frame sits beside the CSV
    return src.parent / rel.name


# -- export --------------------------------------------------------------------------------------


def export(project: Project, out: str | Path, *, warnings: list[str] | None = None,
           template: str | None = None) -> Path:  # fmt: skip
    """Write a DeepLabCut project folder (see the module doc) for the landmark sets of one
    template (``template`` names it when the project uses several); returns ``out``."""
    out = Path(out)
    tpl = export_template(project, template, "DeepLabCut", skip_suffix=" unique")
    unique = project.template_by_name(f"{tpl.name} unique")
    assert tpl.id is not None
    records = project.images()
    names = export_names(records)
    folder = out / "labeled-data" / EXPORT_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    per_image: dict[int, tuple[list[LandmarkSet], list[LandmarkSet]]] = {}
    occluded = classed = 0
    for rec in records:
        sets = project.landmark_sets(rec.id)
        main = [ls for ls in sets if ls.template_id == tpl.id]
        extra = [ls for ls in sets if unique is not None and ls.template_id == unique.id]
        if main or extra:
            per_image[rec.id] = (main, extra[:1])
            for ls in main + extra:
                occluded += sum(p.visibility == 1 for p in ls.points)
                classed += ls.class_id is not None
    n_animals = max((len(m) for m, _ in per_image.values()), default=0)
    multi = n_animals > 1 or unique is not None
    individuals = [f"individual{k}" for k in range(1, n_animals + 1)] if multi else [""]
    head_ind, head_part, head_coord = ["individuals"], ["bodyparts"], ["coords"]
    for ind in individuals:
        for part in tpl.points:
            head_ind += [ind, ind]
            head_part += [part, part]
            head_coord += ["x", "y"]
    if unique is not None:
        for part in unique.points:
            head_ind += [UNIQUE, UNIQUE]
            head_part += [part, part]
            head_coord += ["x", "y"]
    rows = [["scorer"] + [SCORER] * (len(head_part) - 1)]
    if multi:
        rows.append(head_ind)
    rows += [head_part, head_coord]
    for rec in records:
        if rec.id not in per_image:
            continue
        main, extra = per_image[rec.id]
        place_image(project, rec, folder / names[rec.id])
        row = [f"labeled-data/{EXPORT_FOLDER}/{names[rec.id]}"]
        for k in range(len(individuals)):
            row += _cells(main[k].points if k < len(main) else None, len(tpl.points))
        if unique is not None:
            row += _cells(extra[0].points if extra else None, len(unique.points))
        rows.append(row)
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    (folder / f"CollectedData_{SCORER}.csv").write_text(buf.getvalue(), encoding="utf-8")
    (out / "config.yaml").write_text(
        _config_text(tpl, unique, individuals if multi else None), encoding="utf-8"
    )
    if occluded:
        note(warnings, f"DeepLabCut: {occluded} occluded points written as labelled "
             "(DeepLabCut has no visibility flag)")  # fmt: skip
    if classed:
        note(warnings, f"DeepLabCut: the classes of {classed} landmark sets were not written")
    if tpl.flip_pairs:
        note(warnings, "DeepLabCut: the template's left/right pairs were not written "
             "(DeepLabCut sets them per model)")  # fmt: skip
    skipped_kinds(project, ("tags", "boxes", "masks"), "DeepLabCut", warnings)
    return out


def _cells(points: tuple[Point, ...] | None, n: int) -> list[str]:
    if points is None:
        return [""] * (2 * n)
    out = []
    for p in points:
        if p.visibility == SKIPPED:
            out += ["", ""]
        else:
            out += [repr(float(p.x) - 0.5), repr(float(p.y) - 0.5)]
    return out


def _config_text(tpl: LandmarkTemplate, unique: LandmarkTemplate | None,
                 individuals: list[str] | None) -> str:  # fmt: skip
    data: dict[str, Any] = {"Task": tpl.name, "scorer": SCORER, "date": "",
                            "multianimalproject": individuals is not None}  # fmt: skip
    if individuals is not None:
        data["identity"] = False
        data["individuals"] = individuals
        data["uniquebodyparts"] = [] if unique is None else list(unique.points)
        data["multianimalbodyparts"] = list(tpl.points)
        data["bodyparts"] = "MULTI!"
    else:
        data["bodyparts"] = list(tpl.points)
    data["skeleton"] = [[tpl.points[a], tpl.points[b]] for a, b in tpl.skeleton]
    data["video_sets"] = {}
    return "# DeepLabCut project configuration written by tlstudio\n" + yaml.safe_dump(
        data, sort_keys=False, allow_unicode=True
    )
