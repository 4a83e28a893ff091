"""A process killed (SIGKILL) in the middle of editing loses no committed edit."""

from __future__ import annotations

import random
import sqlite3
import sys
from pathlib import Path

import pytest
from kill_scenarios import edit_project, edit_trial

from tlstudio.core.project import Project
from tlstudio.core.store import DB_NAME

TARGET = 300  # edits reported committed before each kill
ROUNDS = 3  # kill, reopen and go on: a reopened project must keep working


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_sigkill_loses_no_committed_edit(tmp_path: Path, make_images) -> None:
    root = edit_project(tmp_path / "p", make_images)
    rng = random.Random(7)
    n_boxes = 0
    for _ in range(ROUNDS):
        trial = edit_trial(root, rng, edits=TARGET)
        assert trial.reported >= n_boxes + TARGET
        assert trial.stored >= trial.reported  # every edit it reported is there
        assert trial.stored <= trial.reported + 1  # at most the edit it was about to report
        assert trial.integrity
        n_boxes = trial.stored

    with Project.open(root) as proj:  # still writable after the kills
        proj.add_class("dog")
    conn = sqlite3.connect(root / DB_NAME)
    assert conn.execute("SELECT COUNT(*) FROM classes").fetchone()[0] == 2
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_edits_survive_kills_at_random_moments(tmp_path: Path, make_images) -> None:
    root = edit_project(tmp_path / "p", make_images)
    rng = random.Random(11)
    trials = [edit_trial(root, rng) for _ in range(3)]
    assert [t.lost for t in trials] == [0, 0, 0]
    assert all(t.integrity for t in trials)
