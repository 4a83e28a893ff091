"""What the Train panel shows about a project, read in one pass: classes and templates,
images per split and per label kind (tags, boxes, landmarks, masks, objects), per class or
template, and a few sample images per kind. No Qt, no torch: it runs in a pool thread
with its own :class:`~tlstudio.core.project.Project` connection.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from .project import Project
from .runs import RunStore

SPLIT_COLUMNS = ("train", "val", "test", "unassigned")
LABEL_KINDS = ("tags", "boxes", "landmarks", "masks", "objects")
ALL_IMAGES = "images"  # the kind of the images themselves (an autoencoder needs no labels)
_SAMPLE_ORDER = {"train": 0, "unassigned": 1, "val": 2, "test": 3}


@dataclass(frozen=True)
class SplitCounts:
    """Images per split (``unassigned``: images without a split)."""

    train: int = 0
    val: int = 0
    test: int = 0
    unassigned: int = 0

    @classmethod
    def of(cls, splits: Iterable[str]) -> SplitCounts:
        """Count an iterable of split names (``"unassigned"`` for none)."""
        n = dict.fromkeys(SPLIT_COLUMNS, 0)
        for split in splits:
            n[split] += 1
        return cls(**n)

    def get(self, split: str) -> int:
        """The count of ``split`` (one of :data:`SPLIT_COLUMNS`)."""
        return int(getattr(self, split))

    @property
    def total(self) -> int:
        return self.train + self.val + self.test + self.unassigned

    @property
    def has_split(self) -> bool:
        """True when some image is in train or val (training then uses the stored split)."""
        return self.train + self.val > 0


@dataclass(frozen=True)
class ClassFact:
    id: int
    name: str
    color: str  # "#rrggbb"


@dataclass(frozen=True)
class ProjectFacts:
    """Facts about one project (see :func:`project_facts`).

    ``counts[kind][key]``: images per split that carry a label of ``kind`` for ``key``
    (a class id for tags, boxes, masks and objects; a template id for landmarks), so an image
    with two classes counts for both. ``labelled[kind]``: images per split with any
    label of ``kind``; ``labelled["images"]`` counts every image. ``samples[kind]``: up
    to N image ids with that kind of label, train images first. ``tagged_classes``:
    classes used by at least one tag. ``runs``: training runs recorded so far.
    ``domains``: the image domains (site, scanner, batch) in use, by name."""

    root: str
    multi_label: bool
    classes: tuple[ClassFact, ...]
    templates: tuple[tuple[int, str], ...]
    split_totals: SplitCounts
    labelled: Mapping[str, SplitCounts]
    counts: Mapping[str, Mapping[int, SplitCounts]]
    samples: Mapping[str, tuple[int, ...]]
    tagged_classes: int
    runs: int = 0
    domains: tuple[str, ...] = ()
    images: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "images", self.split_totals.total)

    def labelled_count(self, kind: str) -> int:
        """Images with a label of ``kind`` (``"images"``: every image)."""
        return self.labelled[kind].total


def project_facts(project: Project, sample_ids: int = 30) -> ProjectFacts:
    """Read :class:`ProjectFacts` from an open project (a few queries per image)."""
    classes = tuple(ClassFact(c.id, c.name, c.color) for c in project.classes())
    templates = tuple((int(t.id), t.name) for t in project.templates() if t.id is not None)
    split_of = {r.id: (r.split or "unassigned") for r in project.images()}
    keys: dict[str, dict[int, set[int]]] = {kind: {} for kind in LABEL_KINDS}
    for image_id in split_of:
        tags = project.tags(image_id)
        if tags:
            keys["tags"][image_id] = set(tags)
        boxes = project.boxes(image_id)
        if boxes:
            keys["boxes"][image_id] = {b.class_id for b in boxes}
        sets = project.landmark_sets(image_id)
        if sets:
            keys["landmarks"][image_id] = {s.template_id for s in sets}
    for c in classes:  # the masks' per-class index: no mask is decoded
        for image_id in project._mask_images_with(c.id):
            keys["masks"].setdefault(image_id, set()).add(c.id)
    for image_id, class_id in project.store.conn.execute(
        "SELECT image_id, class_id FROM instances"
    ):
        keys["objects"].setdefault(image_id, set()).add(class_id)

    counts: dict[str, Mapping[int, SplitCounts]] = {}
    for kind, per_image in keys.items():
        rows: dict[int, list[str]] = {}
        for image_id, row_keys in per_image.items():
            for key in row_keys:
                rows.setdefault(key, []).append(split_of[image_id])
        counts[kind] = MappingProxyType({k: SplitCounts.of(v) for k, v in rows.items()})
    labelled = {kind: SplitCounts.of(split_of[i] for i in keys[kind]) for kind in LABEL_KINDS}
    labelled[ALL_IMAGES] = SplitCounts.of(split_of.values())
    ranked = sorted(split_of, key=lambda i: (_SAMPLE_ORDER[split_of[i]], i))
    samples = {kind: tuple(i for i in ranked if i in keys[kind])[:sample_ids] for kind in keys}
    samples[ALL_IMAGES] = tuple(ranked[:sample_ids])
    tagged = {c for tags in keys["tags"].values() for c in tags}
    return ProjectFacts(
        root=str(project.root),
        multi_label=project.multi_label,
        classes=classes,
        templates=templates,
        split_totals=labelled[ALL_IMAGES],
        labelled=MappingProxyType(labelled),
        counts=MappingProxyType(counts),
        samples=MappingProxyType(samples),
        tagged_classes=len(tagged),
        runs=len(RunStore(project).list()),
        domains=tuple(project.domains()),
    )


def read_project_facts(root: str | Path, sample_ids: int = 30) -> ProjectFacts:
    """:func:`project_facts` of the project at ``root``, through a connection of its own
    (for a pool thread: SQLite connections belong to one thread)."""
    project = Project.open(root)
    try:
        return project_facts(project, sample_ids)
    finally:
        project.close()
