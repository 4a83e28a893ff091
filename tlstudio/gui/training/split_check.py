"""Before a run starts: is there a training and a validation split for the task? If not,
say so and offer to make one (:func:`tlstudio.core.splits.random_split`, applied as one
undoable command), or to train anyway. :func:`split_issue` decides (no Qt);
:func:`ask_about_split` asks (a window-modal message box that does not block).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from PySide6.QtWidgets import QMessageBox, QWidget

from tlstudio.core.commands import SetSplits
from tlstudio.core.errors import TlsError
from tlstudio.core.project_facts import ProjectFacts
from tlstudio.core.splits import random_split
from tlstudio.gui.state import AppState
from tlstudio.gui.training.split_summary import task_images
from tlstudio.ml.tasks.registry import task_info

FRACTIONS = (0.7, 0.15, 0.15)  # train, val, test of a split made here
HOLD_OUT = 0.2  # what a run holds out for validation when no split is stored (ml.data)
MAKE, ANYWAY = "make", "anyway"


@dataclass(frozen=True)
class SplitIssue:
    """What is wrong with the split for a task, and what can be done. ``only_unassigned``:
    a split made here leaves the images that already have one alone."""

    title: str
    text: str
    make_label: str
    anyway_label: str
    anyway_note: str  # shown with the run when the user trains anyway
    only_unassigned: bool


def split_issue(facts: ProjectFacts, task: str) -> SplitIssue | None:
    """None when ``task`` has images in both the training and the validation split."""
    what = task_info(task).label.lower()
    labelled = task_images(facts, task)
    fractions = "70 % training, 15 % validation and 15 % test, class by class"
    if not facts.split_totals.has_split:
        n = facts.split_totals.unassigned
        return SplitIssue(
            title="No training/validation split",
            text=(
                f"No image is assigned to the training or validation split yet.\n\n"
                f"Make a split: the {n} images are divided {fractions} "
                f"(Edit ▸ Undo takes it back).\n\nTrain anyway: this run alone holds out a "
                f"random {HOLD_OUT:.0%} of the images for validation; it is not saved, so the "
                f"next run may hold out others and runs cannot be compared fairly."
            ),
            make_label="Make a split and train",
            anyway_label="Train anyway",
            anyway_note=(
                f"No split assigned: this run holds out a random {HOLD_OUT:.0%} of the "
                f"images for validation (not saved)."
            ),
            only_unassigned=True,
        )
    if labelled.train and labelled.val:
        return None
    missing = "validation" if labelled.train else "training"
    unassigned = labelled.unassigned
    if unassigned >= 2:
        make = (
            f"Make a split of the {facts.split_totals.unassigned} images without one: "
            f"{fractions} (Edit ▸ Undo takes it back)."
        )
    else:
        make = (
            f"Split all {facts.images} images again: {fractions}; this replaces the "
            f"current split (Edit ▸ Undo takes it back)."
        )
    consequence = (
        "so the run cannot tell how well the model does on images it has not seen, nor "
        "which epoch was best (the last one is kept)"
        if missing == "validation"
        else "so there is nothing to train on"
    )
    return SplitIssue(
        title=f"No {missing} images",
        text=(
            f"{labelled.total} images are labelled for {what}, but none of them is in the "
            f"{missing} split, {consequence}.\n\n{make}"
        ),
        make_label="Make a split and train",
        anyway_label=f"Train without {missing} images",
        anyway_note=f"No {missing} images for {what}: trained without them.",
        only_unassigned=unassigned >= 2,
    )


def describe_split(assignment: dict[int, str]) -> str:
    """ "Split made before this run: 8 training, 2 validation, 2 test images …"."""
    n = Counter(assignment.values())
    return (
        f"Split made before this run: {n['train']} training, {n['val']} validation, "
        f"{n['test']} test images (Edit ▸ Undo takes it back)."
    )


def make_split(
    parent: QWidget, app_state: AppState, *, seed: int, only_unassigned: bool
) -> str | None:
    """Split the project :data:`FRACTIONS`, stratified by class, as one undoable command;
    the sentence saying what was made, or None (no project, or the user was told why)."""
    project = app_state.project
    if project is None:
        return None
    try:
        assignment = random_split(project, FRACTIONS, seed=seed, only_unassigned=only_unassigned)
    except TlsError as exc:
        QMessageBox.warning(parent, "Make a split", f"No split could be made: {exc}")
        return None
    app_state.push(SetSplits(dict(assignment), "Split for training"))
    return describe_split(assignment)


def ask_about_split(
    parent: QWidget, issue: SplitIssue, answered: Callable[[str | None], None]
) -> QMessageBox:
    """Show ``issue`` in a window-modal box; ``answered`` gets ``"make"``, ``"anyway"``
    or None (cancelled) once the user picks. Returns the box (already open)."""
    box = QMessageBox(QMessageBox.Icon.Warning, issue.title, issue.text, parent=parent)
    box.setObjectName("splitQuestion")
    make = box.addButton(issue.make_label, QMessageBox.ButtonRole.AcceptRole)
    make.setObjectName("makeSplitButton")
    anyway = box.addButton(issue.anyway_label, QMessageBox.ButtonRole.DestructiveRole)
    anyway.setObjectName("trainAnywayButton")
    box.addButton(QMessageBox.StandardButton.Cancel)
    box.setDefaultButton(make)

    def done(_result: int) -> None:
        clicked = box.clickedButton()
        answered(MAKE if clicked is make else ANYWAY if clicked is anyway else None)
        box.deleteLater()

    box.finished.connect(done)
    box.open()
    return box
