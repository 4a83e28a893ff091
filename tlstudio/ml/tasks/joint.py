"""Names of multi-task runs: several task heads on one shared backbone, written as the
tasks joined by commas ("classify,landmarks"). Importing it does not import torch.

A single task name is not a multi-task run. Only tasks whose heads read the backbone's
features of the whole image can share it here; detection, instance segmentation and the
autoencoder are refused with the reason (:data:`REFUSED`).
"""

from __future__ import annotations

from tlstudio.core.errors import ValidationError
from tlstudio.ml.tasks.registry import TASK_NAMES

JOINT_TASKS = ("classify", "landmarks", "segment")
"""Tasks that may be combined in one run (any two or all three)."""

REFUSED = {
    "detect": "detection's heads (FCOS, Faster R-CNN) own their feature pyramid and resize "
    "the images themselves, so they cannot share the backbone's features with other heads",
    "instances": "Mask R-CNN owns its feature pyramid and resizes the images itself, so it "
    "cannot share the backbone's features with other heads",
    "autoencode": "the autoencoder learns from images alone; train it as its own run",
}

TASK_WEIGHTS_UNCERTAINTY = "uncertainty"
"""``task_weights`` value: learn each task's weight (Kendall, Gal and Cipolla 2018)."""


def is_multitask(task: str) -> bool:
    """True for a multi-task run's task ("classify,landmarks")."""
    return "," in task


def split_tasks(task: str) -> tuple[str, ...]:
    """The tasks of ``task``, in the order given ("segment" → ("segment",))."""
    return tuple(t.strip() for t in task.split(","))


def check_tasks(task: str) -> tuple[str, ...]:
    """The tasks of ``task`` after checking them: each known, none twice, and for more than
    one, each in :data:`JOINT_TASKS`. Raises :class:`ValidationError` saying what to change."""
    names = split_tasks(task)
    for name in names:
        if name not in TASK_NAMES:
            raise ValidationError(
                f"unknown task {name!r}; use one of {', '.join(TASK_NAMES)}, or several of "
                f"{', '.join(JOINT_TASKS)} joined by commas (e.g. classify,landmarks)"
            )
    if len(set(names)) != len(names):
        raise ValidationError(f"task list {task!r} names a task twice")
    if len(names) > 1:
        for name in names:
            if name in REFUSED:
                raise ValidationError(
                    f"{name} cannot be part of a multi-task run: {REFUSED[name]}. "
                    f"Combine {', '.join(JOINT_TASKS)}"
                )
    return names


def parse_task_weights(text: str, n_tasks: int) -> list[float] | str:
    """``--task-weights``: "uncertainty", or one non-negative number per task ("1,0.5").

    Raises :class:`ValidationError` for a wrong count or a bad number."""
    text = text.strip()
    if text == TASK_WEIGHTS_UNCERTAINTY:
        return TASK_WEIGHTS_UNCERTAINTY
    parts = [p.strip() for p in text.split(",")]
    try:
        weights = [float(p) for p in parts]
    except ValueError:
        raise ValidationError(
            f"--task-weights {text!r}: give '{TASK_WEIGHTS_UNCERTAINTY}' or one number per "
            "task, e.g. 1,0.5"
        ) from None
    if len(weights) != n_tasks:
        raise ValidationError(
            f"--task-weights has {len(weights)} number(s) for {n_tasks} task(s); give one per task"
        )
    if any(not w >= 0 for w in weights) or not any(w > 0 for w in weights):
        raise ValidationError("--task-weights must be >= 0 and not all 0")
    return weights
