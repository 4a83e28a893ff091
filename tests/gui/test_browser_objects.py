"""The image browser counts each image's objects: the thumbnail caption says "N obj",
the tool tip "N objects", and "Has objects" keeps only images with objects. Driven in the
whole MainWindow: objects are painted, selected and deleted with the Objects tool."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt
from test_canvas_object_tool import _click, _drag, _free_row, _ready, _stored


def _caption(browser, image_id: int) -> str:
    model = browser.model
    return model.data(model.index(model.row_of(image_id)), Qt.ItemDataRole.DisplayRole)


def _tooltip(browser, image_id: int) -> str:
    model = browser.model
    return model.data(model.index(model.row_of(image_id)), Qt.ItemDataRole.ToolTipRole)


def _shows(qtbot, browser, image_id: int, text: str) -> None:
    qtbot.waitUntil(lambda: text in _caption(browser, image_id), timeout=10_000)


def test_captions_count_objects_and_the_filter_keeps_images_with_objects(qtbot, main_window):
    canvas = _ready(qtbot, main_window)
    browser, project, iid = main_window.browser, main_window.app_state.project, canvas.image_id
    objects = project.instances.of_image(iid)
    assert objects  # the demo's shapes are objects
    _shows(qtbot, browser, iid, f"{len(objects)} obj")
    assert f"{len(objects)} objects" in _tooltip(browser, iid)

    y = _free_row(project.mask(iid), None, 40)
    canvas.set_brush_size(6)
    _drag(qtbot, canvas, [(44, y), (60, y), (74, y)])
    _stored(qtbot, canvas)
    _shows(qtbot, browser, iid, f"{len(objects) + 1} obj")

    for obj in project.instances.of_image(iid):  # select each one and delete it
        ys, xs = np.nonzero(project.instances.region(obj.id))
        k = len(ys) // 2
        _click(qtbot, canvas, float(xs[k]) + 0.5, float(ys[k]) + 0.5)
        assert canvas.selection is not None and canvas.selection.id == obj.number
        qtbot.keyClick(canvas, Qt.Key.Key_Delete)
        _stored(qtbot, canvas)
    assert project.instances.of_image(iid) == ()
    qtbot.waitUntil(lambda: " obj" not in _caption(browser, iid), timeout=10_000)

    browser.status.setCurrentIndex(browser.status.findData("objects"))
    with_objects = [i for i in project.image_ids() if project.instances.of_image(i)]
    assert browser.model.ids() == with_objects
    assert iid not in with_objects and len(with_objects) == len(project.image_ids()) - 1
