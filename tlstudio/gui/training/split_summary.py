"""Images per split for the chosen task (per class, per template, or all images), a
note on how the images will be split and warnings about classes with too few images."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from tlstudio.core.project_facts import SPLIT_COLUMNS, ProjectFacts, SplitCounts
from tlstudio.ml.tasks.registry import task_info

MIN_TRAIN_IMAGES = 5  # per class, below which the summary warns
MAX_WARNINGS = 6


def task_rows(facts: ProjectFacts, task: str) -> list[tuple[str, SplitCounts]]:
    """(row name, images per split) of ``task``: classes, templates or all images."""
    kind = task_info(task).label_kind
    if kind is None:
        return [("all images", facts.split_totals)]
    counts = facts.counts[kind]
    if kind == "landmarks":
        return [(name, counts[tid]) for tid, name in facts.templates if tid in counts]
    return [
        (c.name, counts.get(c.id, SplitCounts()))
        for c in facts.classes
        if c.id in counts or kind == "tags"
    ]


def task_images(facts: ProjectFacts, task: str) -> SplitCounts:
    """Images per split that carry the labels ``task`` learns from (all, for autoencode)."""
    return facts.labelled[task_info(task).label_kind or "images"]


class SplitSummary(QWidget):
    """The "Images per split" table with its note and warnings."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.table = QTableWidget(0, len(SPLIT_COLUMNS))
        self.table.setObjectName("splitTable")
        self.table.setHorizontalHeaderLabels(list(SPLIT_COLUMNS))
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.table.verticalHeader().setDefaultSectionSize(20)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.horizontalHeader().setMinimumSectionSize(40)
        self.table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.setToolTip(
            "Images with labels for the chosen task, per split and class (an image with "
            "two classes counts for both)"
        )
        self.note = QLabel()
        self.note.setObjectName("splitNote")
        self.note.setWordWrap(True)
        self.note.setStyleSheet("color: palette(mid);")
        self.warning = QLabel()
        self.warning.setObjectName("splitWarning")
        self.warning.setWordWrap(True)
        self.warning.setStyleSheet("color: #b45309;")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.table)
        layout.addWidget(self.note)
        layout.addWidget(self.warning)

    def show_message(self, text: str) -> None:
        """No facts to show (no project, still reading, or an error): ``text`` instead."""
        self.table.setRowCount(0)
        self.note.setText(text)
        self.note.setVisible(bool(text))
        self.warning.setText("")
        self.warning.hide()

    def update_from(self, facts: ProjectFacts, task: str) -> None:
        rows = task_rows(facts, task)
        table = self.table
        table.setRowCount(len(rows))
        table.setVerticalHeaderLabels([name for name, _ in rows])
        for r, (_name, per_split) in enumerate(rows):
            for c, split in enumerate(SPLIT_COLUMNS):
                item = QTableWidgetItem(str(per_split.get(split)))
                item.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
                table.setItem(r, c, item)
        header = table.horizontalHeader().height()
        body = sum(table.rowHeight(r) for r in range(len(rows)))
        table.setFixedHeight(max(header + body + 4, header + 24))

        totals = facts.split_totals
        notes = []
        if not totals.has_split:
            notes.append(
                "No train/val split assigned: Train offers to make one (else a random 20 % "
                "of the images is held out for validation, for that run only)."
            )
        elif totals.unassigned:
            notes.append(f"{totals.unassigned} images have no split and are not used.")
        if task in ("detect", "segment", "instances"):
            notes.append("Counts are images containing the class.")
        self.note.setText(" ".join(notes))
        self.note.setVisible(bool(notes))
        warnings = self._warnings(rows, task, totals.has_split)
        self.warning.setText("\n".join(warnings))
        self.warning.setVisible(bool(warnings))

    @staticmethod
    def _warnings(rows: list[tuple[str, SplitCounts]], task: str, has_split: bool) -> list[str]:
        if task_info(task).label_kind not in ("tags", "boxes", "masks", "objects"):
            return []
        warnings = []
        val_total = sum(per.val for _n, per in rows)
        for name, per in rows:
            train = per.train if has_split else per.unassigned
            if train < MIN_TRAIN_IMAGES:
                where = "training" if has_split else "labelled"
                warnings.append(
                    f"⚠ {name}: only {train} {where} image{'s' if train != 1 else ''} "
                    f"({MIN_TRAIN_IMAGES} or more recommended)"
                )
            if has_split and val_total and per.val == 0:
                warnings.append(f"⚠ {name}: missing from the validation split")
        if len(warnings) > MAX_WARNINGS:
            warnings = warnings[: MAX_WARNINGS - 1] + [f"… and {len(warnings) - 5} more"]
        return warnings

    def warnings(self) -> list[str]:
        return [line for line in self.warning.text().split("\n") if line]
