"""tlstudio compiles its own bytecode once when Python will not (PYTHONDONTWRITEBYTECODE),
so later starts do not compile every module again (issue 12 §4)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from tlstudio.core import bytecode


@pytest.fixture
def package(tmp_path: Path) -> Path:
    root = tmp_path / "pkg"
    (root / "sub").mkdir(parents=True)
    (root / "__init__.py").write_text("X = 1\n")
    (root / "sub" / "__init__.py").write_text("")
    (root / "sub" / "mod.py").write_text("def f():\n    return 2\n")
    return root


def test_missing_bytecode_is_compiled_in_another_process(package, monkeypatch):
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    assert len(bytecode.stale_sources(package)) == 3
    proc = bytecode.compile_in_background(package)
    assert proc is not None and proc.wait(timeout=120) == 0
    assert bytecode.stale_sources(package) == []
    assert list((package / "sub" / "__pycache__").glob("mod.*.pyc"))
    assert bytecode.compile_in_background(package) is None  # nothing left to do

    later = time.time() + 5
    os.utime(package / "sub" / "mod.py", (later, later))  # edited after it was compiled
    assert bytecode.stale_sources(package) == [package / "sub" / "mod.py"]


def test_nothing_starts_when_python_writes_bytecode_itself(package, monkeypatch):
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    assert bytecode.compile_in_background(package) is None


def test_a_read_only_package_is_left_alone(package, monkeypatch):
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    assert bytecode.compile_in_background(package) is None
