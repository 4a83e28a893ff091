"""Exports write every file whole or not at all (issue 11 §16): a failure while writing
(a full disk, here simulated at the final rename) leaves the files of the previous export
exactly as they were, and no temporary file behind."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from tlstudio.core.annotations import Box
from tlstudio.core.formats import export_labels
from tlstudio.core.project import Project


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


@pytest.mark.parametrize("fmt", ["coco", "csv", "labelme", "voc", "yolo"])
def test_an_export_that_fails_midway_keeps_the_previous_files(
    project: Project, tmp_path: Path, monkeypatch, fmt: str
) -> None:
    ids = project.image_ids()
    cat = project.class_by_name("cat").id
    project.set_tags(ids[0], [cat])
    project.add_box(ids[0], Box(cat, 1, 1, 10, 10))
    out = tmp_path / "out"
    export_labels(project, fmt, out)
    before = _snapshot(out)
    project.set_tags(ids[1], [cat])  # the next export differs
    project.add_box(ids[1], Box(cat, 2, 2, 12, 12))

    real = os.replace

    def disk_full(src, dst, *args, **kwargs):
        if Path(dst).is_relative_to(out):
            raise OSError(errno.ENOSPC, "No space left on device", str(dst))
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", disk_full)
    with pytest.raises(OSError, match="No space left"):
        export_labels(project, fmt, out)
    monkeypatch.setattr(os, "replace", real)
    assert _snapshot(out) == before
    export_labels(project, fmt, out)
    assert _snapshot(out) != before
