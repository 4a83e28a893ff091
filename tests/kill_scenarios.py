"""SIGKILL at a random moment of an edit session, an ``import --copy`` and a training
run, and what it left behind. Used with a few trials by the suite (tests/core/test_kills.py,
tests/ml/test_run_recovery.py) and with hundreds by tests/bench/bench_kills.py.

Each ``*_trial`` starts a child process on a project, kills it (SIGKILL) at a random
point while it works, reopens the project the way the next session would, and returns
a :class:`Trial` with what it counts.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import tlstudio
from tlstudio.core.project import Project
from tlstudio.core.staging import IMAGES, STAGING

REPO = Path(tlstudio.__file__).resolve().parents[1]


@dataclass
class Trial:
    """What one kill left: ``mid`` = the child was killed while working (not after it was
    done); ``lost`` = edits it reported committed that are not in the database; ``orphans``
    = files in ``images/`` or staging that no row refers to, plus rows without their file;
    ``clashes`` = second copies (``*_1.png``) made by importing the same files again;
    ``stuck`` = runs still ``running`` after the project was reopened; ``integrity`` = the
    database passed ``PRAGMA integrity_check``; ``late`` (imports) = the kill came after
    every file was checked and copied, while the rows went in and the copies moved."""

    mid: bool = False
    late: bool = False
    reported: int = 0  # edits: committed edits the child reported (over all its runs)
    stored: int = 0  # edits: edits found in the database afterwards
    lost: int = 0
    orphans: int = 0
    clashes: int = 0
    stuck: int = 0
    integrity: bool = True


def start_child(script: str, *args: object) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script), *map(str, args)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True, bufsize=1,
    )  # fmt: skip


def kill_when(
    child: subprocess.Popen[str], ready: int, delay_s: float, timeout_s: float
) -> list[str]:
    """Read the child's lines; once ``ready`` lines came, wait ``delay_s`` and SIGKILL it.
    Returns every line it printed (a torn last line included). A child that ends first is
    not killed; one that hangs is killed after ``timeout_s``."""
    assert child.stdout is not None
    watchdog = threading.Timer(timeout_s, child.kill)
    watchdog.start()
    lines: list[str] = []
    try:
        while len(lines) < ready:
            line = child.stdout.readline()
            if not line:
                break
            lines.append(line.strip())
        if child.poll() is None:
            time.sleep(delay_s)
            os.kill(child.pid, signal.SIGKILL)
        lines += [line.strip() for line in child.stdout]
        child.wait(timeout=30)
    finally:
        watchdog.cancel()
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stdout.close()
        if child.stderr is not None:
            child.stderr.close()
    return lines


def _integrity(project: Project) -> bool:
    c = project.store.conn
    return (
        c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        and c.execute("PRAGMA foreign_key_check").fetchall() == []
    )


# -- edits ------------------------------------------------------------------------------------

EDIT_CHILD = """
    import sys
    from tlstudio.core.annotations import Box
    from tlstudio.core.commands import AddBox, UndoStack
    from tlstudio.core.project import Project

    project = Project.open(sys.argv[1])
    image_id = project.image_ids()[0]
    class_id = project.classes()[0].id
    stack = UndoStack(project, limit=50)
    k = len(project.boxes(image_id))  # boxes committed so far, over all runs
    while True:  # until killed
        stack.push(AddBox(image_id, Box(class_id, 0, 0, 1 + k % 30, 1 + k % 20)))
        k += 1
        print(k, flush=True)
"""


def edit_project(root: Path, make_images: Callable[..., object]) -> Path:
    """A project at ``root`` with one image and one class, to kill edit sessions on."""
    make_images(root.parent / f"{root.name}_src", 1)
    with Project.create(root) as p:
        p.add_images([root.parent / f"{root.name}_src"])
        p.add_class("cat")
    return root


def edit_trial(root: Path, rng: random.Random, edits: int | None = None) -> Trial:
    """Kill a child that keeps adding boxes (one committed edit per line it prints) after
    ``edits`` of them (default: a random number up to 60), a moment into the next."""
    n = edits if edits is not None else rng.randint(2, 60)
    lines = kill_when(start_child(EDIT_CHILD, root), n, rng.random() * 0.05, 60)
    trial = Trial(mid=True)
    trial.reported = max((int(x) for x in lines if x.isdigit()), default=0)
    with Project.open(root) as p:
        trial.stored = len(p.boxes(p.image_ids()[0]))
        trial.lost = max(0, trial.reported - trial.stored)
        trial.integrity = _integrity(p)
    return trial


# -- import --copy ------------------------------------------------------------------------------

IMPORT_CHILD = """
    import sys
    from tlstudio.core.project import Project

    project = Project.open(sys.argv[1])
    print("ready", flush=True)
    report = project.add_images(
        [sys.argv[2]], copy=True, progress=lambda done, total: print(done, flush=True)
    )
    print("done", len(report.added), flush=True)
"""


def import_trial(root: Path, src: Path, n_files: int, rng: random.Random) -> Trial:
    """Kill a child importing ``src`` (``n_files`` images) with ``copy=True``: during the
    checks and copies, or (half the trials) at a random moment after the last file was
    checked, when the rows go in and the copies move; then reopen and import ``src`` again,
    as a user would."""
    late = rng.random() < 0.5
    ready = n_files + 1 if late else rng.randint(1, n_files)
    delay = rng.random() * (0.02 if late else 0.01)
    lines = kill_when(start_child(IMPORT_CHILD, root, src), ready, delay, 120)
    trial = Trial(mid=not any(x.startswith("done") for x in lines))
    trial.late = trial.mid and str(n_files) in lines
    with Project.open(root) as p:  # the next session: sweeps what the kill left
        trial.orphans = _orphans(p)
        trial.integrity = _integrity(p)
        p.add_images([src], copy=True)
        trial.clashes = sum(1 for r in p.images() if Path(r.path).stem.endswith("_1"))
        trial.orphans += _orphans(p)
    return trial


def _orphans(p: Project) -> int:
    """Files in images/ or staging without a row, plus rows without their file."""
    rows = {r.path for r in p.images()}
    images = p.root / IMAGES
    on_disk = {f"{IMAGES}/{f.name}" for f in images.iterdir()} if images.is_dir() else set()
    staged = sum(1 for f in (p.root / STAGING).rglob("*") if f.is_file()) if (
        p.root / STAGING
    ).is_dir() else 0  # fmt: skip
    return len(on_disk - rows) + len(rows - on_disk) + staged


# -- training ------------------------------------------------------------------------------------

TRAIN_CHILD = """
    import sys
    import torch

    torch.set_num_threads(1)
    from tlstudio.core.project import Project
    from tlstudio.ml.callbacks import Callback
    from tlstudio.ml.runner import RunSpec, train
    from tlstudio.ml.trainer import TrainConfig

    class Say(Callback):
        def on_fit_start(self, trainer, event):
            print("start", event.run_id, flush=True)

        def on_epoch_end(self, trainer, event):  # after last.pt of this epoch was saved
            print("epoch", event.epoch, flush=True)

    project = Project.open(sys.argv[1])
    spec = RunSpec(
        task="classify", backbone="resnet18", weights="none", input_size=32,
        train=TrainConfig(epochs=int(sys.argv[2]), batch_size=8, lr=1e-3, device="cpu"),
    )
    result = train(project, spec, callbacks=[Say()])
    print("done", result.run_id, flush=True)
"""


def train_trial(root: Path, rng: random.Random, epochs: int = 40) -> Trial:
    """Kill a child training a tiny model after a random number of epochs (mid-epoch)."""
    ready = 1 + rng.randint(0, 3)  # "start", then up to three epochs
    lines = kill_when(start_child(TRAIN_CHILD, root, epochs), ready, rng.random() * 0.2, 300)
    trial = Trial(mid=not any(x.startswith("done") for x in lines))
    from tlstudio.core.runs import RunStore

    with Project.open(root) as p:
        trial.stuck = sum(1 for r in RunStore(p).list() if r.status == "running")
        trial.integrity = _integrity(p)
    return trial


def train_child_until_epoch(root: Path, epochs: int, kill_after_epoch: int) -> int:
    """Start training, SIGKILL it just after epoch ``kill_after_epoch`` ended (its
    checkpoint saved); return the run id."""
    lines = kill_when(start_child(TRAIN_CHILD, root, epochs), 2 + kill_after_epoch, 0.0, 300)
    starts = [x for x in lines if x.startswith("start")]
    assert starts and not any(x.startswith("done") for x in lines), lines
    return int(starts[0].split()[1])
