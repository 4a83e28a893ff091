"""A process killed (SIGKILL) in the middle of editing loses no committed edit."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from kill_scenarios import EDIT_CHILD

import tlstudio
from tlstudio.core.project import Project
from tlstudio.core.store import DB_NAME

TARGET = 300  # edits reported committed before each kill
ROUNDS = 3  # kill, reopen and go on: a reopened project must keep working

CHILD = textwrap.dedent(EDIT_CHILD)  # pushes boxes and prints how many are committed


def _run_until_killed(root: Path, at_least: int) -> int:
    """Start the child, SIGKILL it once it reported ``at_least`` boxes; the last report."""
    env = dict(os.environ, PYTHONPATH=str(Path(tlstudio.__file__).parents[1]))
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(root)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
        bufsize=1,
    )
    watchdog = threading.Timer(60, child.kill)  # a hung child fails the test, not the run
    watchdog.start()
    reported = 0
    try:
        while reported < at_least:
            line = child.stdout.readline()
            if not line:
                pytest.fail(f"child stopped at {reported} boxes: {child.stderr.read()}")
            reported = int(line)
        os.kill(child.pid, signal.SIGKILL)  # mid-run: it is busy pushing edits
        # lines it printed before dying were committed too (a torn last line is ignored)
        for line in child.stdout:
            if line.strip().isdigit():
                reported = max(reported, int(line))
        assert child.wait(timeout=10) == -signal.SIGKILL
    finally:
        watchdog.cancel()
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stdout.close()
        child.stderr.close()
    return reported


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_sigkill_loses_no_committed_edit(tmp_path: Path, make_images) -> None:
    make_images(tmp_path / "src", 1)
    root = tmp_path / "p"
    with Project.create(root) as proj:
        proj.add_images([tmp_path / "src"])
        proj.add_class("cat")

    n_boxes = 0
    for _ in range(ROUNDS):
        reported = _run_until_killed(root, n_boxes + TARGET)
        assert reported >= n_boxes + TARGET
        with Project.open(root) as proj:
            n_boxes = proj.stats()["kinds"]["boxes"]
            assert n_boxes >= reported, (n_boxes, reported)
            assert n_boxes <= reported + 1  # at most the edit it was about to report
            image_id = proj.image_ids()[0]
            assert len(proj.boxes(image_id)) == n_boxes
            c = proj.store.conn
            assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            assert c.execute("PRAGMA foreign_key_check").fetchall() == []

    with Project.open(root) as proj:  # still writable after the kills
        proj.add_class("dog")
    conn = sqlite3.connect(root / DB_NAME)
    assert conn.execute("SELECT COUNT(*) FROM classes").fetchone()[0] == 2
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
