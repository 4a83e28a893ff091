"""SIGKILL during ``import --copy`` (issue 11 §8, §16): a killed import leaves no file
without its row, no row without its file, and no name clash when the same files are
imported again. A few random trials here (edits: tests/core/test_crash.py);
tests/bench/bench_kills.py runs hundreds."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from kill_scenarios import REPO, Trial, import_trial

from tlstudio.core.project import Project
from tlstudio.core.staging import IMAGES, STAGING

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")

N_FILES = 12


@pytest.fixture
def src(tmp_path: Path, make_images) -> Path:
    make_images(tmp_path / "src", N_FILES, (48, 32))
    return tmp_path / "src"


def test_import_copy_survives_random_kills(tmp_path: Path, src: Path) -> None:
    root = tmp_path / "p"
    Project.create(root).close()
    rng = random.Random(8)
    trials: list[Trial] = []
    for _ in range(4):
        trials.append(import_trial(root, src, N_FILES, rng))
        with Project.open(root) as p:
            p.remove_images(p.image_ids())  # the next trial starts from an empty project
        for f in (root / IMAGES).glob("*"):
            f.unlink()
    assert [(t.orphans, t.clashes) for t in trials] == [(0, 0)] * 4
    assert all(t.integrity for t in trials)
    assert any(t.mid for t in trials)


KILL_AT = """
    import os, signal, sys
    from tlstudio.core import staging
    from tlstudio.core.project import Project

    where = sys.argv[3]
    if where == "after commit":  # the rows are committed, the copies still staged
        staging.Staging.publish = lambda self: os.kill(os.getpid(), signal.SIGKILL)
    else:  # during the copies, before the transaction
        real, count = staging.Staging.stage, [0]
        def stage(self, src):
            count[0] += 1
            if count[0] == 5:
                os.kill(os.getpid(), signal.SIGKILL)
            return real(self, src)
        staging.Staging.stage = stage
    Project.open(sys.argv[1]).add_images([sys.argv[2]], copy=True)
"""


@pytest.mark.parametrize("where", ["during the copies", "after commit"])
def test_a_killed_import_copy_is_finished_or_undone_on_the_next_open(
    tmp_path: Path, src: Path, where: str
) -> None:
    root = tmp_path / "p"
    Project.create(root).close()
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(KILL_AT), str(root), str(src), where],
        env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    staged = [f for f in (root / STAGING).rglob("*") if f.is_file() and f.suffix != ".owner"]
    assert len(staged) == (N_FILES if where == "after commit" else 4)  # what the kill left
    with Project.open(root) as p:
        rows = sorted(r.path for r in p.images())
        on_disk = sorted(f"{IMAGES}/{f.name}" for f in (root / IMAGES).glob("*"))
        assert rows == on_disk  # every row has its file, every file its row
        assert len(rows) == (N_FILES if where == "after commit" else 0)
        assert not (root / STAGING).exists()
        report = p.add_images([src], copy=True)  # importing again: nothing clashes
        assert len(report.added) + len(report.duplicates) == N_FILES
        names = sorted(Path(r.path).name for r in p.images())
        assert names == sorted(f.name for f in src.iterdir())
