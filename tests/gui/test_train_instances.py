"""The Train panel offers instance segmentation on a project with objects (the demo's
shapes): its images per split count objects per class and its augmentation preview draws
each object moving with the image."""

from __future__ import annotations

import numpy as np
from test_train_config import _select_task, _wait_preview, demo_state, panel

__all__ = ["demo_state", "panel"]  # fixtures used through their names


def test_instance_segmentation_is_offered_with_objects_counted_and_previewed(qtbot, panel):
    project = panel.app_state.project
    _select_task(qtbot, panel, "instances")
    assert panel.task_combo.currentText() == "Instance segmentation"
    table = panel.split_table
    names = [table.verticalHeaderItem(r).text() for r in range(table.rowCount())]
    assert names == [c.name for c in project.classes()]
    for r, cls in enumerate(project.classes()):
        expected = sum(
            1
            for rec in project.images_in_split("train")
            if any(o.class_id == cls.id for o in project.instances.of_image(rec.id))
        )
        assert table.item(r, 0).text() == str(expected)

    def previewing_instances() -> bool:
        shown = panel.preview.result()
        return shown is not None and shown.task == "instances"

    qtbot.waitUntil(previewing_instances, timeout=20000)
    result = _wait_preview(qtbot, panel)
    sample = result.samples[0]
    image_id = result.image_id
    assert len(sample["labels"]) == len(project.instances.of_image(image_id))
    assert sample["boxes"].shape == (len(sample["labels"]), 4)
    assert np.all(sample["boxes"][:, 2:] > sample["boxes"][:, :2])
