"""Shared fixtures: tiny generated images, a small project to edit, trained tiny models
shared by the whole session (``trained_demo``) and umap with its compilation cached.

``tlstudio.core.project`` is imported inside the fixtures, so collecting tests
that do not use them never depends on the project store.

Markers: ``slow`` (several seconds each; CI runs them, ``-m "not slow"`` leaves them
out of a quick local run).
"""

from __future__ import annotations

import os
import sqlite3
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

# Numba (under umap-learn) compiles its functions on first use, about 10 s per process.
# Its on-disk cache goes under build/ (ignored by git); the variable is read when numba
# is imported, so it is set here, before any test module imports it.
os.environ.setdefault(
    "NUMBA_CACHE_DIR", str(Path(__file__).resolve().parents[1] / "build" / "cache" / "numba")
)

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "slow: takes several seconds; CI runs it, a quick run uses -m 'not slow'"
    )


def _write_image(path: Path, array: np.ndarray) -> Path:
    """Write ``array`` with OpenCV (format from the suffix); return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), array):
        raise RuntimeError(f"cv2 could not write {path}")
    return path


def _make_images(
    folder: Path,
    n: int,
    size: tuple[int, int] = (32, 24),
    *,
    prefix: str = "img",
    suffix: str = ".png",
    seed: int = 0,
    start: int = 0,
) -> list[Path]:
    """Write ``n`` distinct BGR images of ``size`` = (width, height) into ``folder``.

    Every image has different content (so none is a duplicate of another), and
    ``start`` lets a second call continue with new content."""
    w, h = size
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(start, start + n):
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        img[0, 0] = (i % 256, (i // 256) % 256, 7)  # distinct even if the rng repeats
        paths.append(_write_image(folder / f"{prefix}{i:03d}{suffix}", img))
    return paths


def _db_state(conn: sqlite3.Connection, *, exclude: tuple[str, ...] = ("meta",)) -> dict:
    """Every user table's rows, sorted: the full database state for equality checks.

    ``sqlite_sequence`` (AUTOINCREMENT counters) is left out: ids are never reused
    on purpose, so it legitimately moves forward on undo."""
    names = [
        r[0]
        for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            " ORDER BY name"
        )
    ]
    state = {}
    for name in names:
        if name in exclude:
            continue
        rows = conn.execute(f'SELECT * FROM "{name}"').fetchall()
        state[name] = sorted(rows, key=repr)
    return state


@pytest.fixture
def make_images() -> Callable[..., list[Path]]:
    """``make_images(folder, n, size=(w, h), prefix=, suffix=, seed=, start=)``."""
    return _make_images


@pytest.fixture
def write_image() -> Callable[[Path, np.ndarray], Path]:
    """``write_image(path, array)``: write an array with OpenCV."""
    return _write_image


@pytest.fixture
def db_state() -> Callable[..., dict]:
    """``db_state(conn)``: sorted rows of every table except meta."""
    return _db_state


@pytest.fixture
def project(tmp_path: Path):
    """A single-label project with 6 images (32×24 px), 3 classes and the Face 5 template.

    Attributes added for tests: ``image_files`` (the source files, in id order)."""
    from tlstudio.core.labelset import builtin_templates
    from tlstudio.core.project import Project

    files = _make_images(tmp_path / "src", 6, (32, 24))
    proj = Project.create(tmp_path / "proj")
    report = proj.add_images(files)
    assert len(report.added) == 6, report
    for name in ("cat", "dog", "bird"):
        proj.add_class(name)
    face = next(t for t in builtin_templates() if t.name == "Face 5")
    proj.add_template(face)
    proj.image_files = files
    yield proj
    proj.close()


@pytest.fixture
def torch_one_thread():
    """One intra-op torch thread for the test (CI has 2 cores; tiny models gain nothing
    from more), restored afterwards. Use with ``pytest.mark.usefixtures``."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# -- running code without the power to ignore file permissions ----------------------------

NOBODY = 65534  # uid and gid of 'nobody' on Linux


def _give_away(path: Path) -> None:
    """As root, hand ``path`` (and everything below it) to 'nobody'; otherwise nothing."""
    import os

    if os.geteuid() != 0:
        return
    os.chown(path, NOBODY, NOBODY)
    if path.is_dir() and not path.is_symlink():
        for root, dirs, files in os.walk(path):
            for name in dirs + files:
                os.chown(os.path.join(root, name), NOBODY, NOBODY, follow_symlinks=False)


def _run_unprivileged(fn: Callable[..., object], *args: object) -> object:
    """``fn(*args)`` in a forked child whose file permissions apply: as root (whom chmod
    does not stop) the child becomes 'nobody' first; otherwise it keeps this user. The
    child imports nothing new from places 'nobody' cannot read, so what ``fn`` uses must
    be imported by the caller first. Returns ``fn``'s (picklable) result; an exception in
    the child fails the test with its traceback."""
    import os
    import pickle
    import traceback

    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.close(read_fd)
            if os.geteuid() == 0:
                os.setgroups([])
                os.setgid(NOBODY)
                os.setuid(NOBODY)
            outcome: tuple[str, object] = ("ok", fn(*args))
        except BaseException:
            outcome = ("error", traceback.format_exc())
        try:
            data = pickle.dumps(outcome)
        except Exception:
            data = pickle.dumps(("error", f"unpicklable result: {outcome!r}"))
        with os.fdopen(write_fd, "wb") as f:
            f.write(data)
        os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    kind, value = pickle.loads(data) if data else ("error", "the child died")
    if kind != "ok":
        pytest.fail(f"in the unprivileged child:\n{value}")
    return value


@pytest.fixture
def unprivileged(tmp_path_factory):
    """``(folder, run, give_away)``: a folder 'nobody' can reach (tmp_path cannot be, as
    root), ``run(fn, *args)`` (see :func:`_run_unprivileged`) and ``give_away(path)``,
    which makes files created by the test the child's own."""
    import os
    import shutil
    import tempfile

    import tlstudio.cli  # noqa: F401 - imported here: the child may not read the stdlib
    import tlstudio.core.runs  # noqa: F401
    from tlstudio.core.formats import LABEL_FORMATS

    for fmt in LABEL_FORMATS:
        fmt.load()
    folder = Path(tempfile.mkdtemp(prefix="tls-unpriv-"))
    os.chmod(folder, 0o755)
    _give_away(folder)
    yield folder, _run_unprivileged, _give_away
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def umap_jit_cached() -> None:
    """Import umap-learn with every numba function of umap and pynndescent cached on disk
    (``NUMBA_CACHE_DIR``). umap marks few of its functions ``cache=True``; the others
    would compile again in every test session (about 10 s), so caching is switched on for
    them before their first call. The first session fills the cache, later ones load it."""
    import umap  # noqa: F401  (imports umap.umap_, layouts, ... and pynndescent)
    from numba.core.dispatcher import Dispatcher

    for name, module in list(sys.modules.items()):
        if name.split(".")[0] not in ("umap", "pynndescent"):
            continue
        for obj in list(vars(module).values()):
            if isinstance(obj, Dispatcher):
                try:
                    obj.enable_caching()
                except RuntimeError:  # no file to key the cache on; it compiles as before
                    pass


class TrainedDemo(NamedTuple):
    """A 12-image demo project (64 px) with one finished run per task and its stored
    predictions. ``runs``: task -> run id; ``best_epochs``: task -> the best epoch as the
    trainer's events carry it (0-based). Shared by the whole session: add runs or rename
    things only if you undo it."""

    project: Any  # tlstudio.core.project.Project, imported only when the fixture runs
    runs: dict[str, int]
    best_epochs: dict[str, int | None]


@pytest.fixture(scope="session")
def trained_demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrainedDemo]:
    """Tiny models trained once per session: ResNet-18 from random weights, 64 px input,
    batch 8; classify 2 epochs, detect/landmarks/segment/autoencode 1 epoch each (a few
    seconds on one CPU thread)."""
    import torch

    from tlstudio.core.demo import create_demo_project
    from tlstudio.ml import runner
    from tlstudio.ml.runner import RunSpec
    from tlstudio.ml.trainer import TrainConfig

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    project = create_demo_project(tmp_path_factory.mktemp("trained") / "demo", n_images=12, size=64)
    try:
        runs, best_epochs = {}, {}
        for task in ("classify", "segment", "landmarks", "autoencode", "detect"):
            epochs = 2 if task == "classify" else 1
            spec = RunSpec(task=task, backbone="resnet18", weights="none",
                           train=TrainConfig(epochs=epochs, batch_size=8), input_size=64)  # fmt: skip
            result = runner.train(project, spec)
            runs[task], best_epochs[task] = result.run_id, result.ended.best_epoch
            runner.predict(project, runs[task], device="cpu")
    finally:
        torch.set_num_threads(threads)
    yield TrainedDemo(project, runs, best_epochs)
    project.close()
