"""The ML modules are imported on one path: the Train panel's loader and every job that
needs them (``needs_ml=True``) import them one thread at a time.

The race it prevents: two threads importing a package with circular imports for the
first time at once (torchvision: "cannot import name 'StochasticDepth' from partially
initialized module 'torchvision.ops'", seen after F3 then F4 → Evaluate). torchvision is
imported long before these tests run, so they use a package built like it, whose modules
wait for each other at a barrier: two threads importing it unguarded fail every time.
"""

from __future__ import annotations

import sys
import threading
import types
from pathlib import Path

import pytest
from PySide6.QtWidgets import QWidget

from tlstudio.gui.training.ml_loader import MlLoader
from tlstudio.gui.workers import ml_imports
from tlstudio.gui.workers.jobs import BackgroundJob, job_pool

# racepkg/__init__ imports models, models imports ops, ops imports models back (as
# torchvision's models and ops import each other). Alone, a thread imports it fine. Two at
# once (one importing racepkg, the other racepkg.ops as soon as racepkg began) meet at the
# barrier, each holding one module; the second waits for models, then the first asks
# for ops, Python sees the deadlock and hands the first the unfinished ops.
PACKAGE = {
    "__init__.py": "import racepkg_gate\nracepkg_gate.entered.set()\nfrom racepkg import models\n",
    "models.py": "import time\n\nimport racepkg_gate\n\n\ndef helper():\n    return 1\n\n\n"
    "if racepkg_gate.meet():\n    time.sleep(0.3)  # the other thread asks for models first\n"
    "from racepkg.ops import StochasticDepth\n",
    "ops.py": "import racepkg_gate\n\nracepkg_gate.meet()\nfrom racepkg.models import helper\n\n\n"
    "class StochasticDepth:\n    pass\n",
}


@pytest.fixture
def racepkg(tmp_path: Path, monkeypatch) -> types.ModuleType:
    """The package on sys.path and among the ML modules; returns its gate (``entered``:
    the package began importing; ``meet()``: wait up to 1 s for a second thread, True if
    it came)."""
    folder = tmp_path / "racepkg"
    folder.mkdir()
    for name, text in PACKAGE.items():
        (folder / name).write_text(text)
    gate = types.ModuleType("racepkg_gate")
    gate.entered = threading.Event()
    barrier = threading.Barrier(2, timeout=1)

    def meet() -> bool:
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            return False  # alone: no other thread imports it at the same time
        return True

    gate.meet = meet
    monkeypatch.setitem(sys.modules, "racepkg_gate", gate)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(ml_imports, "ML_MODULES", ("racepkg",))
    yield gate
    for name in [n for n in sys.modules if n == "racepkg" or n.startswith("racepkg.")]:
        del sys.modules[name]


@pytest.fixture
def fresh_loader(monkeypatch):
    """MlLoader as in a process that has not loaded the ML modules yet."""
    monkeypatch.setattr(MlLoader, "_job", None)
    monkeypatch.setattr(MlLoader, "_loaded", threading.Event())
    monkeypatch.setattr(MlLoader, "_error", None)
    monkeypatch.setattr(MlLoader, "statuses", None)
    monkeypatch.setattr(MlLoader, "gpu", False)
    monkeypatch.setattr("tlstudio.gui.training.ml_loader.GUI_MODULES", ())
    return MlLoader


def test_a_job_needing_ml_waits_for_the_loaders_import(qtbot, racepkg, fresh_loader):
    owner = QWidget()
    pool = job_pool(owner, 2, "two at once")

    def evaluate(_token, _progress) -> str:
        racepkg.entered.wait(5)  # the loader is importing the package now
        from racepkg.ops import StochasticDepth

        return StochasticDepth.__name__

    fresh_loader.start()
    job = BackgroundJob(evaluate, needs_ml=True)
    outcome: list[tuple] = []
    job.succeeded.connect(lambda value: outcome.append(("succeeded", value)))
    job.failed.connect(lambda kind, message: outcome.append(("failed", kind, message)))
    job.start(pool)
    qtbot.waitUntil(lambda: bool(outcome), timeout=20_000)
    fresh_loader.wait()  # raises what the loader's import raised
    assert outcome == [("succeeded", "StochasticDepth")]
    assert fresh_loader.done() and fresh_loader.statuses
    assert sys.modules["racepkg.models"].helper() == 1


def test_two_jobs_needing_ml_import_one_at_a_time(qtbot, racepkg):
    owner = QWidget()
    pool = job_pool(owner, 2, "two at once")

    def predict(_token, _progress) -> str:  # imports the whole package, as a model would
        import racepkg

        return racepkg.__name__

    def evaluate(_token, _progress) -> str:  # a part of it, while the other job imports
        racepkg.entered.wait(5)
        from racepkg.ops import StochasticDepth

        return StochasticDepth.__name__

    outcomes: dict[str, tuple] = {}
    for fn in (predict, evaluate):
        job = BackgroundJob(fn, needs_ml=True, name=fn.__name__)
        job.succeeded.connect(lambda value, n=fn.__name__: outcomes.setdefault(n, (value,)))
        job.failed.connect(lambda kind, msg, n=fn.__name__: outcomes.setdefault(n, (kind, msg)))
        job.start(pool)
    qtbot.waitUntil(lambda: len(outcomes) == 2, timeout=20_000)
    assert outcomes == {"predict": ("racepkg",), "evaluate": ("StochasticDepth",)}
