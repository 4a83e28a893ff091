"""Read-only queries behind the image browser and the class panel.

The browser needs what :meth:`Project.image_page` gives (per-kind counts) plus
the tag names, for a *filtered* id list, and the class panel needs per-class
counts of every class at once. Doing that through the per-image ``Project``
methods would cost one query per image, so these few SELECTs go to the
project's own connection (GUI thread only; see :class:`~tlstudio.core.store.Store`).
They only read; every change still goes through :mod:`tlstudio.core.commands`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tlstudio.core.prediction_query import UNCERTAIN, PredictionStatus
from tlstudio.core.project import Project

STATUSES = ("all", "unlabelled", "labelled", "boxes", "landmarks", "mask", "objects")
STATUS_NAMES = {
    "all": "All images",
    "unlabelled": "Unlabelled",
    "labelled": "Labelled",
    "boxes": "Has boxes",
    "landmarks": "Has landmarks",
    "mask": "Has mask",
    "objects": "Has objects",
}
ANY = "any"  # split / class / prediction filter value meaning "do not filter"
NO_SPLIT = "none"  # split filter value for images without a split
# domain filter value for images without a domain (a domain name never holds a NUL)
NO_DOMAIN = "\x00none"
# Filters on the chosen run's stored predictions (see tlstudio.core.prediction_query).
PREDICTIONS = (ANY, "wrong", "right", "uncertain", "unpredicted")
PREDICTION_NAMES = {
    ANY: "Prediction: any",
    "wrong": "Prediction: wrong",
    "right": "Prediction: right",
    "uncertain": "Prediction: low confidence",
    "unpredicted": "Prediction: not predicted",
}
ORDERS = ("id", "uncertainty")
ORDER_NAMES = {"id": "File order", "uncertainty": "Most uncertain first (label these next)"}

_HAS = {
    "tags": "EXISTS (SELECT 1 FROM tags t WHERE t.image_id = i.id)",
    "boxes": "EXISTS (SELECT 1 FROM boxes b WHERE b.image_id = i.id)",
    "landmarks": "EXISTS (SELECT 1 FROM landmark_sets l WHERE l.image_id = i.id)",
    "mask": "EXISTS (SELECT 1 FROM masks m WHERE m.image_id = i.id)",
    "objects": "EXISTS (SELECT 1 FROM instances o WHERE o.image_id = i.id)",
}
_LABELLED = "(" + " OR ".join(_HAS.values()) + ")"


@dataclass(frozen=True)
class ImageFilter:
    """What the browser shows. ``split``: 'train', 'val', 'test', NO_SPLIT or ANY;
    ``class_id``: images using that class in any annotation (None = any);
    ``text``: case-insensitive substring of the stored path (file name and folders);
    ``prediction``: one of :data:`PREDICTIONS`, judged on the chosen run's stored
    predictions ('uncertain' = uncertainty ≥ :data:`UNCERTAIN`); ``order``: 'id'
    (ascending) or 'uncertainty' (most uncertain first); ``domain``: a domain name,
    NO_DOMAIN (images without one) or None (any)."""

    status: str = "all"
    split: str = ANY
    class_id: int | None = None
    text: str = ""
    prediction: str = ANY
    order: str = "id"
    domain: str | None = None

    @property
    def is_empty(self) -> bool:
        return self == ImageFilter()

    @property
    def uses_predictions(self) -> bool:
        """True when the result depends on a run's prediction statuses."""
        return self.prediction != ANY or self.order != "id"

    def where(self) -> tuple[str, list]:
        """SQL condition on ``images i`` and its parameters."""
        conds: list[str] = []
        params: list = []
        if self.status == "unlabelled":
            conds.append(f"NOT {_LABELLED}")
        elif self.status == "labelled":
            conds.append(_LABELLED)
        elif self.status in ("boxes", "landmarks", "mask", "objects"):
            conds.append(_HAS[self.status])
        elif self.status != "all":
            raise ValueError(f"unknown status filter {self.status!r}")
        if self.split == NO_SPLIT:
            conds.append("i.split IS NULL")
        elif self.split != ANY:
            conds.append("i.split = ?")
            params.append(self.split)
        if self.class_id is not None:
            conds.append(
                "(EXISTS (SELECT 1 FROM tags t WHERE t.image_id = i.id AND t.class_id = ?)"
                " OR EXISTS (SELECT 1 FROM boxes b WHERE b.image_id = i.id AND b.class_id = ?)"
                " OR EXISTS (SELECT 1 FROM landmark_sets l WHERE l.image_id = i.id"
                " AND l.class_id = ?)"
                " OR EXISTS (SELECT 1 FROM masks m, json_each(m.classes) j"
                " WHERE m.image_id = i.id AND j.value = ?)"
                " OR EXISTS (SELECT 1 FROM instances o WHERE o.image_id = i.id"
                " AND o.class_id = ?))"
            )
            params += [self.class_id] * 5
        if self.domain == NO_DOMAIN:
            conds.append("i.domain IS NULL")
        elif self.domain is not None:
            conds.append("i.domain = ?")
            params.append(self.domain)
        if self.text.strip():
            conds.append("instr(lower(i.path), ?) > 0")
            params.append(self.text.strip().lower())
        return (" AND ".join(conds) or "1"), params


@dataclass(frozen=True)
class BrowserRow:
    """One browser row: an image with its annotation counts and tag names."""

    id: int
    path: str  # as stored (relative to the project folder, or absolute)
    sha256: str
    split: str | None
    n_tags: int
    n_boxes: int
    n_landmarks: int
    has_mask: bool
    tag_names: tuple[str, ...]
    n_objects: int = 0
    domain: str | None = None

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    @property
    def is_labelled(self) -> bool:
        return bool(
            self.n_tags or self.n_boxes or self.n_landmarks or self.has_mask or self.n_objects
        )

    def absolute_path(self, root: Path) -> Path:
        p = Path(self.path)
        return p if p.is_absolute() else root / p

    def badges(self) -> str:
        """Short status text: 'unlabelled' or e.g. 'cat · 3 box · 2 lm · mask'."""
        if not self.is_labelled:
            return "unlabelled"
        tags = ", ".join(self.tag_names)
        kinds = self.kind_badges()
        return f"{tags} · {kinds}" if tags and kinds else tags or kinds

    def kind_badges(self) -> str:
        """'3 box · 2 lm · mask' or '3 box · 4 obj' (tags left out; empty if none). The
        objects' pixels are in the label map, so 'mask' goes unsaid beside them (captions
        under thumbnails are short)."""
        parts = []
        if self.n_boxes:
            parts.append(f"{self.n_boxes} box")
        if self.n_landmarks:
            parts.append(f"{self.n_landmarks} lm")
        if self.n_objects:
            parts.append(f"{self.n_objects} obj")
        elif self.has_mask:
            parts.append("mask")
        return " · ".join(parts)

    def description(self) -> str:
        """Long form for tool tips."""
        kinds = []
        if self.tag_names:
            kinds.append("class " + ", ".join(self.tag_names))
        if self.n_boxes:
            kinds.append(_plural(self.n_boxes, "box", "boxes"))
        if self.n_landmarks:
            kinds.append(_plural(self.n_landmarks, "landmark set", "landmark sets"))
        if self.n_objects:
            kinds.append(_plural(self.n_objects, "object", "objects"))
        if self.has_mask:
            kinds.append("a mask")
        labels = ", ".join(kinds) if kinds else "unlabelled"
        domain = f"\ndomain: {self.domain}" if self.domain else ""
        return f"{self.path}\nsplit: {self.split or 'none'}{domain}\n{labels}"


def _plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def filtered_ids(
    project: Project,
    flt: ImageFilter,
    statuses: Mapping[int, PredictionStatus] | None = None,
) -> list[int]:
    """Ids of the images that pass ``flt``, ascending or in ``flt.order``.

    ``statuses``: the chosen run's prediction statuses by image id (from
    :func:`~tlstudio.core.prediction_query.prediction_status`); None = no run, and
    then the prediction part of ``flt`` is ignored."""
    where, params = flt.where()
    rows = project.store.conn.execute(
        f"SELECT i.id FROM images i WHERE {where} ORDER BY i.id", params
    )
    ids = [r[0] for r in rows]
    if statuses is None or not flt.uses_predictions:
        return ids
    return apply_predictions(ids, flt.prediction, flt.order, statuses)


def apply_predictions(
    ids: Sequence[int], prediction: str, order: str, statuses: Mapping[int, PredictionStatus]
) -> list[int]:
    """Keep the ``ids`` (ascending) that pass the ``prediction`` filter, in ``order``:
    'uncertainty' = most uncertain first, then unknown uncertainty, then not
    predicted, ties by id."""
    if prediction == "wrong":
        ids = [i for i in ids if i in statuses and statuses[i].correct is False]
    elif prediction == "right":
        ids = [i for i in ids if i in statuses and statuses[i].correct is True]
    elif prediction == "uncertain":
        ids = [i for i in ids if _uncertainty(statuses.get(i)) >= UNCERTAIN]
    elif prediction == "unpredicted":
        ids = [i for i in ids if i not in statuses]
    elif prediction != ANY:
        raise ValueError(f"unknown prediction filter {prediction!r}")
    if order == "uncertainty":
        # stable sort of ascending ids: ties stay in id order
        ids = sorted(ids, key=lambda i: _sort_key(statuses.get(i)))
    elif order != "id":
        raise ValueError(f"unknown order {order!r}")
    return list(ids)


def _uncertainty(st: PredictionStatus | None) -> float:
    return -1.0 if st is None or st.uncertainty is None else st.uncertainty


def _sort_key(st: PredictionStatus | None) -> tuple[int, float]:
    if st is None:
        return (2, 0.0)
    if st.uncertainty is None:
        return (1, 0.0)
    return (0, -st.uncertainty)


def next_matching(project: Project, flt: ImageFilter, after_id: int | None) -> int | None:
    """The first image passing ``flt`` with id > ``after_id``, wrapping round; None if none."""
    where, params = flt.where()
    sql = f"SELECT i.id FROM images i WHERE {where} AND i.id > ? ORDER BY i.id LIMIT 1"
    conn = project.store.conn
    row = conn.execute(sql, [*params, -1 if after_id is None else after_id]).fetchone()
    if row is None and after_id is not None:
        row = conn.execute(sql, [*params, -1]).fetchone()
    return None if row is None else row[0]


def rows_for(project: Project, ids: Sequence[int]) -> dict[int, BrowserRow]:
    """Browser rows of ``ids`` (one query; ids that no longer exist are absent)."""
    if not ids:
        return {}
    marks = ",".join("?" * len(ids))
    sql = f"""SELECT i.id, i.path, i.sha256, i.split,
            (SELECT COUNT(*) FROM tags t WHERE t.image_id = i.id),
            (SELECT COUNT(*) FROM boxes b WHERE b.image_id = i.id),
            (SELECT COUNT(*) FROM landmark_sets l WHERE l.image_id = i.id),
            EXISTS (SELECT 1 FROM masks m WHERE m.image_id = i.id),
            (SELECT group_concat(c.name, char(31)) FROM
                (SELECT c.name FROM tags t JOIN classes c ON c.id = t.class_id
                 WHERE t.image_id = i.id ORDER BY c.position, c.id) c),
            (SELECT COUNT(*) FROM instances o WHERE o.image_id = i.id),
            i.domain
        FROM images i WHERE i.id IN ({marks})"""
    out: dict[int, BrowserRow] = {}
    for r in project.store.conn.execute(sql, list(ids)):
        image_id, path, sha256, split, n_tags, n_boxes, n_landmarks, has_mask = r[:8]
        names = tuple(r[8].split("\x1f")) if r[8] else ()
        out[image_id] = BrowserRow(
            image_id,
            path,
            sha256,
            split,
            n_tags,
            n_boxes,
            n_landmarks,
            bool(has_mask),
            names,
            n_objects=r[9],
            domain=r[10],
        )
    return out


def class_counts(project: Project) -> dict[int, dict[str, int]]:
    """Per class id: how many tags, boxes, landmark sets and masks (images) use it.

    Four grouped queries for all classes, where ``Project.class_usage`` is four per class."""
    conn = project.store.conn
    out: dict[int, dict[str, int]] = {
        c.id: {"tags": 0, "boxes": 0, "landmarks": 0, "masks": 0} for c in project.classes()
    }
    for kind, sql in (
        ("tags", "SELECT class_id, COUNT(*) FROM tags GROUP BY class_id"),
        ("boxes", "SELECT class_id, COUNT(*) FROM boxes GROUP BY class_id"),
        (
            "landmarks",
            "SELECT class_id, COUNT(*) FROM landmark_sets WHERE class_id IS NOT NULL"
            " GROUP BY class_id",
        ),
        ("masks", "SELECT j.value, COUNT(*) FROM masks m, json_each(m.classes) j GROUP BY j.value"),
    ):
        for class_id, n in conn.execute(sql):
            if class_id in out:
                out[class_id][kind] = n
    return out


def usage_text(usage: dict[str, int]) -> str:
    """'12 tags, 3 boxes and 1 mask' (zeros left out) or 'no annotations'."""
    names = {
        "tags": ("tag", "tags"),
        "boxes": ("box", "boxes"),
        "landmarks": ("landmark set", "landmark sets"),
        "masks": ("mask", "masks"),
    }
    parts = [_plural(n, *names[k]) for k, n in usage.items() if n and k in names]
    if not parts:
        return "no annotations"
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def template_counts(project: Project) -> dict[int, int]:
    """Per template id: how many landmark sets use it (templates without sets: 0)."""
    out = {t.id: 0 for t in project.templates() if t.id is not None}  # stored: all have ids
    sql = "SELECT template_id, COUNT(*) FROM landmark_sets GROUP BY template_id"
    for template_id, n in project.store.conn.execute(sql):
        if template_id in out:
            out[template_id] = n
    return out


def template_class(project: Project, template_id: int | None) -> int | None:
    """The class every landmark set of ``template_id`` has, when there are sets and they
    all have the same class; else None."""
    if template_id is None:
        return None
    rows = project.store.conn.execute(
        "SELECT DISTINCT class_id FROM landmark_sets WHERE template_id = ? LIMIT 2",
        (template_id,),
    ).fetchall()
    return rows[0][0] if len(rows) == 1 else None
