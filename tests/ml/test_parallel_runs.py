"""An experiment's runs in parallel worker processes (``--workers``/``--devices``)."""

from __future__ import annotations

import json
import os

import pytest

from tlstudio.cli import main
from tlstudio.core.demo import create_demo_project
from tlstudio.core.project import Project
from tlstudio.core.runs import RunStore
from tlstudio.ml.devices import DeviceError
from tlstudio.ml.parallel_runs import parse_devices
from tlstudio.ml.runner import RunError

CV = ["--kind", "cv", "--k", "2", "--backbone", "resnet18", "--weights", "none",
      "--input-size", "32", "--epochs", "1", "--batch", "4", "--device", "cpu"]  # fmt: skip


def _table(text: str) -> dict[str, list[str]]:
    """The printed table's rows by their first cell (the run ids row left out)."""
    rows = {}
    for line in text.splitlines()[2:]:
        if line.startswith("-") or not line.strip():
            continue
        cells = line.split()
        name = " ".join(cells[:2]) if cells[0] == "images" else cells[0]
        if name != "run":
            rows[name] = cells[len(name.split()) :]
    return rows


@pytest.mark.slow
def test_cross_validation_with_two_workers_prints_the_same_table(tmp_path, capsys):
    """2 CPU workers train the 2 folds in their own processes, record them safely, and the
    table is the one of the folds trained one after the other."""
    project = create_demo_project(tmp_path / "demo", n_images=24, size=64)
    project.close()
    root = str(tmp_path / "demo")
    assert main(["experiment", root, *CV]) == 0
    one_by_one = _table(capsys.readouterr().out)
    assert main(["experiment", root, *CV, "--workers", "2"]) == 0
    captured = capsys.readouterr()
    parallel = _table(captured.out)
    assert "2 workers: cpu, cpu" in captured.err
    assert parallel.keys() == one_by_one.keys() and "accuracy" in parallel
    assert parallel == one_by_one
    with Project.open(root, read_only=True) as p:
        runs = RunStore(p).list()
        assert [r.status for r in runs] == ["finished"] * 4
        owners = [
            json.loads(row[0])["pid"]
            for row in p.store.conn.execute("SELECT owner FROM runs ORDER BY id")
        ]
        assert owners[0] == owners[1] == os.getpid()  # one after the other: this process
        assert len({owners[2], owners[3]}) == 2 and os.getpid() not in owners[2:]
        assert {r.config["experiment"]["fold"] for r in runs[2:]} == {0, 1}


def test_devices_and_workers_are_checked():
    assert parse_devices(None, None) is None
    assert parse_devices(None, 1) is None  # one worker: no pool, as before
    assert parse_devices(None, 3) == ["cpu", "cpu", "cpu"]
    assert parse_devices("cpu, cpu", None) == ["cpu", "cpu"]
    with pytest.raises(RunError, match="not both"):
        parse_devices("cpu", 2)
    with pytest.raises(RunError, match="at least 1"):
        parse_devices(None, 0)
    import torch

    if torch.cuda.device_count() < 2:
        with pytest.raises(DeviceError):
            parse_devices("cuda:0,cuda:1", None)


def test_sklearn_experiment_refuses_workers(tmp_path, capsys):
    create_demo_project(tmp_path / "demo", n_images=12, size=64).close()
    args = ["experiment", str(tmp_path / "demo"), "--kind", "sklearn", "--workers", "2"]
    assert main(args) == 2
    assert "one run" in capsys.readouterr().err
