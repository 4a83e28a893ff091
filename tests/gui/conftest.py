"""Shared GUI fixtures (pytest-qt, ``QT_QPA_PLATFORM=offscreen``).

``qt_project``: an open demo project (6 images of 128 px with tags, boxes, landmarks
and masks). ``app_state``: an AppState with ``qt_project`` open. ``demo_dir``: the
folder of a closed demo project. ``qsettings``: QSettings in a temporary INI file,
so no test touches the user's settings. ``main_window``: the window as ``run`` builds
it (without exec), with ``demo_dir`` opened. ``trained_demo_dir``: a closed demo project
with one tiny trained run (session-wide: copy it before changing it).
``screenshot_script``: loads a script of ``tools/screenshots`` by name, as it runs there.

Every test here ends with ``no_background_work_left`` (autouse): it fails a test that
leaves a QThread or a plain thread of ours running, a thread pool busy or an executor
task unfinished, after a short grace (see :mod:`thread_leaks`).
"""

from __future__ import annotations

import gc
import importlib.util
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
from thread_leaks import ThreadWatch, check_no_leaks

#: how long (ms) work may go on after a test before it counts as left running
LEAK_GRACE_MS = 1000
#: the scripts that make docs/screenshots (see its README)
SCREENSHOT_SCRIPTS = Path(__file__).resolve().parents[2] / "tools" / "screenshots"


@pytest.fixture(autouse=True)
def no_background_work_left(qapp, monkeypatch):
    """Fail the test if background work it started is still running after it (and after
    the other fixtures' teardown: this one is set up first, so it is torn down last).

    Garbage is collected on this (the GUI) thread only, as the window does
    (:mod:`tlstudio.gui.gc_thread`): automatic collection is off during the test and the
    test's garbage is collected here at the end. A pool thread collecting a closed
    window's widgets deadlocked the suite."""
    gc.disable()
    watch = ThreadWatch()
    watch.install(monkeypatch)
    try:
        yield watch
        check_no_leaks(watch, LEAK_GRACE_MS)
    finally:
        gc.collect()
        gc.enable()


@pytest.fixture
def screenshot_script(monkeypatch) -> Callable[[str], ModuleType]:
    """``load(name)``: the module of ``tools/screenshots/{name}.py``, with that folder on
    sys.path as when the script runs (its helper module is found there)."""
    monkeypatch.syspath_prepend(str(SCREENSHOT_SCRIPTS))

    def load(name: str) -> ModuleType:
        spec = importlib.util.spec_from_file_location(name, SCREENSHOT_SCRIPTS / f"{name}.py")
        assert spec is not None and spec.loader is not None, name
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture
def qt_project(tmp_path: Path):
    from tlstudio.core.demo import create_demo_project

    project = create_demo_project(tmp_path / "qt_demo", n_images=6, size=128)
    yield project
    project.close()


@pytest.fixture
def app_state(qtbot, qt_project):
    from tlstudio.gui.state import AppState

    state = AppState()
    state.open_project(qt_project)
    yield state
    state.close_project()  # panels hear project_closed; closing the store twice is harmless


@pytest.fixture
def demo_dir(tmp_path: Path) -> Path:
    from tlstudio.core.demo import create_demo_project

    root = tmp_path / "demo"
    create_demo_project(root, n_images=6, size=128).close()
    return root


@pytest.fixture
def torch_home(tmp_path: Path, monkeypatch) -> Path:
    """torch's hub cache in a temporary folder: no test sees or fills the user's."""
    home = tmp_path / "torch_home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    return home


@pytest.fixture
def qsettings(tmp_path: Path):
    from PySide6.QtCore import QSettings

    return QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)


@pytest.fixture
def main_window(qtbot, demo_dir: Path, qsettings):
    from tlstudio.gui.app import create_application, create_main_window
    from tlstudio.gui.workers.jobs import wait_for_jobs

    create_application()
    window = create_main_window(demo_dir, qsettings)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    window.activateWindow()
    yield window
    # A run still going would make close() ask "Stop it and close?" in a modal box that
    # nobody answers offscreen: the suite would hang. Stop it first.
    assert window.train_panel.shutdown(60_000), "a training run did not stop within 60 s"
    window.close()
    assert wait_for_jobs(60_000), "background jobs still running 60 s after the window closed"


@pytest.fixture(scope="session")
def trained_demo_dir(tmp_path_factory) -> Path:
    """The folder of a closed 12-image demo project with one tiny finished classifier run
    (ResNet-18 from scratch, one epoch on 32 px images: about a second). Copy it before
    changing it: the session shares it."""
    import torch

    from tlstudio.core.demo import create_demo_project
    from tlstudio.ml import runner
    from tlstudio.ml.runner import RunSpec
    from tlstudio.ml.trainer import TrainConfig

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("trained_demo") / "demo"
    try:
        with create_demo_project(root, n_images=12, size=48) as project:
            spec = RunSpec(task="classify", backbone="resnet18", weights="none", input_size=32,
                           train=TrainConfig(epochs=1, batch_size=8))  # fmt: skip
            runner.train(project, spec)
    finally:
        torch.set_num_threads(threads)
    return root
