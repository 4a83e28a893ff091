"""Screenshots of the labelling canvas with each kind of label, for the docs.

    QT_QPA_PLATFORM=offscreen python tools/screenshots/make_screenshots.py [OUT_DIR]

writes ``canvas_*.png`` into OUT_DIR (default ``docs/screenshots``). Not a test
(pytest does not collect it); ``tests/gui/test_canvas.py`` runs it once into a temporary
folder so it keeps working.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
from PySide6.QtCore import QEvent, Qt
from PySide6.QtGui import QMouseEvent
from PySide6.QtWidgets import QApplication

ROOT = Path(__file__).resolve().parents[2]


def _mouse(view, kind: QEvent.Type, x: float, y: float, button=Qt.MouseButton.NoButton,
           buttons=Qt.MouseButton.NoButton) -> None:  # fmt: skip
    local = view.image_to_view(x, y)
    ev = QMouseEvent(kind, local, local, button, buttons, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(view.viewport(), ev)


def _click(view, x: float, y: float) -> None:
    left = Qt.MouseButton.LeftButton
    _mouse(view, QEvent.Type.MouseButtonPress, x, y, left, left)
    _mouse(view, QEvent.Type.MouseButtonRelease, x, y, left, Qt.MouseButton.NoButton)


def _hover(view, x: float, y: float) -> None:
    _mouse(view, QEvent.Type.MouseMove, x, y)


def _settle(app: QApplication) -> None:
    for _ in range(3):
        app.processEvents()


def make_screenshots(out_dir: str | Path, size: int = 256) -> list[Path]:
    """Render the canvas states into ``out_dir``; returns the PNG paths."""
    from tlstudio.core.demo import create_demo_project
    from tlstudio.gui.canvas import CanvasView
    from tlstudio.gui.state import AppState

    app = QApplication.instance() or QApplication([])
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with tempfile.TemporaryDirectory() as tmp:
        project = create_demo_project(Path(tmp) / "demo", n_images=4, size=size, seed=3)
        state = AppState()
        state.open_project(project)
        view = CanvasView(state)
        view.resize(720, 540)
        view.show()
        ids = project.image_ids()
        # the image with the most labels
        image_id = max(ids, key=lambda i: len(project.boxes(i)))
        state.set_image(image_id)
        view.wait_for_image()
        _settle(app)

        def shot(name: str) -> None:
            _settle(app)
            path = out / name
            view.grab().save(str(path))
            written.append(path)

        shot("canvas_all.png")

        view.annotations.set_landmarks_visible(False)
        view.annotations.set_mask_visible(False)
        box = project.boxes(image_id)[0]
        view.annotations.select_box(box.id)
        shot("canvas_boxes.png")
        view.annotations.clear_selection()

        view.annotations.set_boxes_visible(False)
        view.annotations.set_landmarks_visible(True)
        lms = project.landmark_sets(image_id)[0]
        view.annotations.select_landmarks(lms.id, 0)
        shot("canvas_landmarks.png")
        view.annotations.clear_selection()

        # placing a set: three points done (the second occluded), the label names the fourth
        state.set_template(project.template_by_name("Shape 5").id)
        state.set_tool("landmarks")
        tool = view.tool
        _click(view, 40, 30)
        from PySide6.QtGui import QKeyEvent

        QApplication.sendEvent(
            view, QKeyEvent(QEvent.Type.KeyPress, Qt.Key.Key_O, Qt.KeyboardModifier.NoModifier, "o")
        )  # the next point is occluded
        _click(view, 90, 70)
        _click(view, 40, 110)
        _hover(view, 12, 70)
        shot("canvas_landmarks_placing.png")
        tool.cancel()

        view.annotations.set_landmarks_visible(False)
        view.annotations.set_mask_visible(True)
        view.set_mask_opacity(0.6)
        state.set_tool("mask")
        view.set_brush_size(24)
        _hover(view, size * 0.75, size * 0.2)
        shot("canvas_mask.png")

        view.set_mask_mode("polygon")
        for x, y in [(30, 180), (90, 150), (120, 220)]:
            _click(view, x, y)
        _hover(view, 40, 235)
        shot("canvas_polygon.png")
        view.tool.cancel()
        view.set_mask_mode("brush")

        # a 16-bit image through a narrow window
        y, x = np.mgrid[0:300, 0:400]
        grey = (2000 + 30000 * np.exp(-((x - 200) ** 2 + (y - 150) ** 2) / 9000)).astype(np.uint16)
        grey += (
            (np.random.default_rng(0).normal(0, 400, grey.shape)).astype(np.int16).view(np.uint16)
        )
        path16 = Path(tmp) / "grey16.png"
        cv2.imwrite(str(path16), grey)
        grey_id = project.add_images([path16]).added[0]
        state.set_tool("select")
        state.set_image(grey_id)
        view.wait_for_image()
        view.set_window(20000, 12000)
        shot("canvas_window16.png")

        view.close()
        state.close_project()
    return written


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "screenshots"
    for p in make_screenshots(target):
        print(p)
