"""Screenshots of the Objects tool for the docs.

    QT_QPA_PLATFORM=offscreen python tools/screenshots/make_screenshots_objects.py [OUT_DIR] [RUN_PROJECT]

writes into OUT_DIR (default ``docs/screenshots``) ``canvas_objects.png`` (1280×800): the
demo's shapes as objects, two touching objects of one class painted with the tool (one
selected), "colour by object" on and a hatched ignore region; and, given a project folder
RUN_PROJECT with a finished instance run whose predictions are stored,
``predictions_instances.png``: that run's predicted objects scoring ≥ 0.15 over an
image. Not a test.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from PySide6.QtCore import QPointF, QSettings, Qt
from PySide6.QtTest import QTest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from screenshot_support import settle, wait_for  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SIZE = (1280, 800)
SCORE_PERCENT = 15  # predictions shown from this score (%): a tiny run scores low


def _drag(canvas, points) -> None:
    view = canvas.viewport()
    QTest.mousePress(view, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                     canvas.mapFromScene(QPointF(*points[0])))  # fmt: skip
    for p in points[1:]:
        QTest.mouseMove(view, canvas.mapFromScene(QPointF(*p)))
    QTest.mouseRelease(view, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                       canvas.mapFromScene(QPointF(*points[-1])))  # fmt: skip


def _window(root: Path, settings_dir: Path):
    from tlstudio.gui.app import create_main_window

    settings = QSettings(str(settings_dir / "settings.ini"), QSettings.Format.IniFormat)
    window = create_main_window(root, settings)
    window.resize(*SIZE)
    window.show()
    wait_for(lambda: window.canvas.image_ready, 60)
    return window


def objects_shot(out_dir: Path, tmp: Path) -> Path:
    from tlstudio.core.demo import create_demo_project

    root = tmp / "Shapes demo"
    with create_demo_project(root, n_images=8, size=256, seed=3) as p:
        iid = p.image_ids()[0]
        ignore = np.zeros((256, 256), bool)
        ignore[216:, :70] = True  # a corner left out of training and metrics
        p.instances.set_ignore(iid, ignore)
    window = _window(root, tmp)
    canvas, state = window.canvas, window.app_state
    label = canvas.label_map()
    free = next(y for y in range(40, 216) if not label[y - 30 : y + 30, 150:250].any())
    circle = next(c for c in state.project.classes() if c.name == "circle")
    state.set_class(circle.id)
    canvas.setFocus()
    QTest.keyClick(canvas, Qt.Key.Key_I)
    canvas.set_brush_size(22)
    _drag(canvas, [(160, free - 10), (175, free - 14), (190, free - 8), (196, free + 6)])
    QTest.keyClick(canvas, Qt.Key.Key_Escape)  # the next stroke is another object
    _drag(canvas, [(204, free - 6), (220, free + 2), (236, free + 12), (230, free + 24)])
    window.display.color_by_object.setChecked(True)
    canvas.set_mask_opacity(0.55)
    wait_for(lambda: not canvas.mask_writer.busy, 60)
    QTest.mouseMove(canvas.viewport(), canvas.mapFromScene(QPointF(250, free + 30)))
    settle(400)
    path = out_dir / "canvas_objects.png"
    window.grab().save(str(path))
    window.close()
    return path


def predictions_shot(out_dir: Path, run_project: Path, tmp: Path) -> Path | None:
    from tlstudio.core.runs import RunStore

    copy = tmp / "run project"
    shutil.copytree(run_project, copy, ignore=shutil.ignore_patterns("cache"))
    window = _window(copy, tmp)
    state = window.app_state
    runs = [r for r in RunStore(state.project).list() if r.task == "instances"]
    if not runs:
        window.close()
        return None
    run = max(runs, key=lambda r: r.id)
    val = [r.id for r in state.project.images_in_split("val")]
    state.set_image(val[0] if val else state.project.image_ids()[0])
    state.set_run(run.id)
    wait_for(lambda: window.canvas.prediction() is not None, 60)
    window.predictions.threshold_slider.setValue(SCORE_PERCENT)
    settle(400)
    path = out_dir / "predictions_instances.png"
    window.grab().save(str(path))
    window.close()
    return path


def main(argv: list[str]) -> int:
    from tlstudio.gui.app import create_application
    from tlstudio.gui.workers.jobs import wait_for_jobs

    create_application()
    out_dir = Path(argv[1]) if len(argv) > 1 else ROOT / "docs" / "screenshots"
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="tlstudio_objects_"))
    try:
        written = [objects_shot(out_dir, tmp)]
        if len(argv) > 2:
            written.append(predictions_shot(out_dir, Path(argv[2]), tmp))
        wait_for_jobs()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for p in written:
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
