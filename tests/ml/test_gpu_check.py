"""tests/bench/gpu_check.py runs every GPU path's check; on a CPU with --tiny (issue 12 §7)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_gpu_check_runs_every_check_on_the_cpu():
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    out = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "bench" / "gpu_check.py"), "--device", "cpu",
         "--tiny", "--threads", "1"],
        capture_output=True, text=True, env=env, timeout=300,  # it takes under a minute; 300 s ends a hang
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    table = out.stdout.split("\ncheck ")[1]
    rows = {line.split("  ")[0]: line for line in table.splitlines()[1:] if line.strip()}
    for task in ("classify", "detect", "landmarks", "segment", "autoencode"):
        assert " ok " in rows[f"train 2 epochs + predict: {task}"]
    assert " ok " in rows["throughput resnet18 float32"]
    assert "epoch finished" in rows["out of memory: absurd batch"]
    assert " ok " in rows["Grad-CAM on the device"] and " ok " in rows["export to ONNX (checked)"]
    assert "0 failed" in out.stdout
