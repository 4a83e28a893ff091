"""A rough training-time estimate for the Quick view, from the backbone's cost on this
computer's CPU (measured with "Measure speed", else its multiply-accumulates relative to
EfficientNet-Lite0 times a typical laptop's Lite0 time) and the number of images.

Model, per epoch: every training image goes forward through the backbone and, for the
trainable fraction of it, backward (about twice a forward pass); every validation image
goes forward once. On the fast path (frozen backbone, no augmentation) the features are
computed once and the epochs train only the head, which costs next to nothing. Task
heads and decoders, reading and augmenting images add a per-task factor and a fixed
cost per image. It is an estimate; the monitor's ETA replaces it once a run starts.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from tlstudio.core.project_facts import ProjectFacts
from tlstudio.gui.training.split_summary import task_images
from tlstudio.ml.tasks.registry import task_info

if TYPE_CHECKING:  # pragma: no cover
    from tlstudio.ml.backbones import BackboneSpec
    from tlstudio.ml.runner import RunSpec

#: EfficientNet-Lite0, forward pass, ms per 224 px image, batch of 4, on a laptop CPU.
REFERENCE_LITE0_MS = 15.0
READ_MS = 3.0  # reading, resizing and augmenting one image
HEAD_EPOCH_S = 0.05  # one epoch of a head on cached features
HOLD_OUT = 0.2  # what a run holds out for validation when no split is stored (ml.data)
#: Extra cost of the task's head or decoder, as a factor on the backbone's cost.
TASK_FACTOR = {
    "classify": 1.0, "autoencode": 1.8, "landmarks": 1.6, "segment": 1.6, "detect": 2.5,
    "instances": 3.0,
}  # fmt: skip


def estimate_seconds(
    *,
    ms_per_image: float,
    train_images: int,
    val_images: int,
    epochs: int,
    trainable_fraction: float,
    fast_path: bool,
    task: str,
) -> float:
    """Seconds a run takes under the model above (``trainable_fraction``: 0 = frozen
    backbone, 1 = every stage trains)."""
    f = ms_per_image * TASK_FACTOR.get(task, 2.0)
    if fast_path:
        return (train_images + val_images) * (f + READ_MS) / 1000 + epochs * HEAD_EPOCH_S
    train = train_images * (f * (1 + 2 * trainable_fraction) + READ_MS)
    val = val_images * (f + READ_MS)
    return epochs * (train + val) / 1000


def format_duration(seconds: float) -> str:
    """Plain words: "under a minute", "about 4 minutes", "about 1 h 20 min"."""
    if seconds < 60:
        return "under a minute"
    minutes = math.ceil(seconds / 60)
    if minutes < 60:
        return f"about {minutes} minute{'s' if minutes != 1 else ''}"
    hours, rest = divmod(int(round(minutes / 10.0) * 10), 60)
    return f"about {hours} h {rest:02d} min" if rest else f"about {hours} h"


def images_for_run(facts: ProjectFacts, task: str) -> tuple[int, int, str]:
    """(training images, validation images, a sentence on them) for a run of ``task``:
    the stored split, or without one the hold-out a run makes."""
    images = task_images(facts, task)
    what = task_info(task).label.lower()
    if facts.split_totals.has_split:
        train, val = images.train, images.val
        split = f"{train} training, {val} validation, {images.test} test"
        if images.unassigned:
            split += f", {images.unassigned} without a split (not used)"
    else:
        val = round(HOLD_OUT * images.unassigned)
        train = images.unassigned - val
        split = "no split yet (Train offers to make one)"
    return train, val, f"{images.total} images for {what}: {split}."


def describe_estimate(
    spec: RunSpec,
    facts: ProjectFacts,
    backbone: BackboneSpec,
    measured_ms: float | None,
    *,
    trainable_fraction: float,
    fast_path: bool,
    gpu: bool,
) -> str:
    """The Quick view's sentence: how long ``spec`` trains on this computer's CPU, from
    what, and that it is an estimate. ``measured_ms``: the backbone's timing on this
    computer at its own input size (None: from GMACs relative to EfficientNet-Lite0)."""
    from tlstudio.gui.training.backbone_table import DEFAULT_BACKBONE, GMACS

    ms = measured_ms
    if ms is None:
        ms = REFERENCE_LITE0_MS * GMACS.get(backbone.name, 1.0) / GMACS[DEFAULT_BACKBONE]
    ms *= ((spec.input_size or backbone.input_size) / backbone.input_size) ** 2
    train, val, _ = images_for_run(facts, spec.task)
    seconds = estimate_seconds(
        ms_per_image=ms, train_images=train, val_images=val, epochs=spec.train.epochs,
        trainable_fraction=trainable_fraction, fast_path=fast_path, task=spec.task,
    )  # fmt: skip
    basis = (
        f"{backbone.name} timed on this computer at {ms:.0f} ms per image"
        if measured_ms is not None
        else f"{backbone.name} on a typical laptop processor (about {ms:.0f} ms per image)"
    )
    text = (
        f"{format_duration(seconds).capitalize()} on this computer's processor: "
        f"{spec.train.epochs} epochs over {train} training and {val} validation images, "
        f"{basis}. This is an estimate; once a run starts, the monitor shows the time left."
    )
    if gpu:
        text += " A graphics card was found: training there is usually much faster."
    return text
