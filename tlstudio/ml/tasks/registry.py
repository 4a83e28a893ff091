"""The tasks tlstudio trains, in one list: the CLI's ``--task`` choices, the Train panel's
task menu and the models' factory all read it. Importing it does not import torch.

``label_kind`` names the annotations a task learns from, as the project stores them
(``"tags"``, ``"boxes"``, ``"landmarks"``, ``"masks"``, ``"objects"``); None means images
alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

LABEL_KINDS = ("tags", "boxes", "landmarks", "masks", "objects")


@dataclass(frozen=True)
class TaskInfo:
    """One task: ``name`` (stored in runs, typed on the command line), ``label`` (for
    people), ``needs`` (the labels it learns from, in plain words), ``label_kind`` and
    ``missing`` (why it cannot train when nothing of that kind is labelled)."""

    name: str
    label: str
    needs: str
    label_kind: str | None
    missing: str = ""


TASKS: tuple[TaskInfo, ...] = (
    TaskInfo("classify", "Classification", "class tags on images of two or more classes",
             "tags", "no class tags labelled"),
    TaskInfo("detect", "Detection", "boxes drawn around objects", "boxes", "no boxes labelled"),
    TaskInfo("landmarks", "Landmarks", "landmark points placed with a template", "landmarks",
             "no landmarks labelled (no template is used)"),
    TaskInfo("segment", "Segmentation", "masks painted over the images", "masks",
             "no masks painted"),
    TaskInfo("instances", "Instance segmentation",
             "objects: each one's own pixels and class (Objects tool, or COCO/labelme/VOC)",
             "objects", "no objects labelled (paint them with the Objects tool)"),
    TaskInfo("autoencode", "Autoencoder", "images only (no labels)", None),
)  # fmt: skip
TASK_NAMES: tuple[str, ...] = tuple(t.name for t in TASKS)
NO_IMAGES = "no images in the project"


def task_info(name: str) -> TaskInfo:
    """The registry entry of ``name``; ValueError naming the known tasks if there is none."""
    for info in TASKS:
        if info.name == name:
            return info
    raise ValueError(f"unknown task {name!r}; use one of {', '.join(TASK_NAMES)}")


def unavailable_reasons(
    *, images: int, labelled: Mapping[str, int], tagged_classes: int, multi_label: bool
) -> dict[str, str | None]:
    """For each task: None if a project with these counts can train it, else why not.

    ``images``: images in the project; ``labelled[kind]``: how many annotations (or
    images) of each label kind there are (only > 0 matters); ``tagged_classes``: classes
    used by at least one tag."""
    if images == 0:
        return dict.fromkeys(TASK_NAMES, NO_IMAGES)
    out: dict[str, str | None] = {}
    for info in TASKS:
        if info.label_kind is None:
            out[info.name] = None
        elif not labelled.get(info.label_kind, 0):
            out[info.name] = info.missing
        else:
            out[info.name] = None
    if out["classify"] is None and tagged_classes < 2 and not multi_label:
        out["classify"] = "only one class is tagged; classification needs at least two"
    return out


def default_task(reasons: Mapping[str, str | None]) -> str:
    """The first task in registry order that can train (the autoencoder needs no labels,
    so it is the fallback)."""
    return next((t.name for t in TASKS if not reasons.get(t.name)), TASKS[0].name)
