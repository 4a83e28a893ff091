"""project_facts: the typed facts the Train panel shows, read without Qt or torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tlstudio.core.annotations import Box
from tlstudio.core.demo import create_demo_project
from tlstudio.core.project import Project
from tlstudio.core.project_facts import SplitCounts, project_facts, read_project_facts


def test_counts_per_kind_class_and_split_match_the_store(tmp_path: Path) -> None:
    with create_demo_project(tmp_path / "demo", n_images=12, size=64) as project:
        facts = project_facts(project, sample_ids=5)
        records = project.images()
        assert facts.images == len(records) == facts.split_totals.total
        for split in ("train", "val", "test"):
            assert facts.split_totals.get(split) == len(project.images_in_split(split))
        assert [c.name for c in facts.classes] == [c.name for c in project.classes()]
        assert facts.templates == tuple((t.id, t.name) for t in project.templates())
        split_of = {r.id: r.split or "unassigned" for r in records}
        for c in project.classes():
            tagged = [split_of[r.id] for r in records if c.id in project.tags(r.id)]
            assert facts.counts["tags"].get(c.id, SplitCounts()) == SplitCounts.of(tagged)
            boxed = [split_of[r.id] for r in records
                     if any(b.class_id == c.id for b in project.boxes(r.id))]  # fmt: skip
            assert facts.counts["boxes"].get(c.id, SplitCounts()) == SplitCounts.of(boxed)
            masked = [split_of[r.id] for r in records
                      if (m := project.mask(r.id)) is not None and (m == c.id).any()]  # fmt: skip
            assert facts.counts["masks"].get(c.id, SplitCounts()) == SplitCounts.of(masked)
        with_tags = [split_of[r.id] for r in records if project.tags(r.id)]
        assert facts.labelled["tags"] == SplitCounts.of(with_tags)
        assert facts.labelled_count("images") == len(records)
        assert facts.tagged_classes == len(project.classes())
        assert len(facts.samples["tags"]) == 5
        first = project.image(facts.samples["images"][0])
        assert first.split == "train"  # samples come from the train split first
        assert facts.runs == 0


def test_facts_of_a_fresh_project_without_splits(tmp_path: Path, make_images) -> None:
    root = tmp_path / "p"
    with Project.create(root) as project:
        project.add_images(make_images(root, 4, (16, 16)))
        cls = project.add_class("spot")
        project.add_box(project.image_ids()[0], Box(cls.id, 1, 1, 8, 8))
    facts = read_project_facts(root)
    assert facts.split_totals == SplitCounts(unassigned=4)
    assert not facts.split_totals.has_split
    assert facts.labelled["boxes"] == SplitCounts(unassigned=1)
    assert facts.labelled_count("tags") == 0 and facts.tagged_classes == 0
    assert dict(facts.counts["boxes"]) == {cls.id: SplitCounts(unassigned=1)}
    with pytest.raises(AttributeError):
        facts.runs = 3  # type: ignore[misc]  # frozen


def test_the_module_imports_neither_qt_nor_torch() -> None:
    code = (
        "import sys, tlstudio.core.project_facts, tlstudio.ml.presets, tlstudio.ml.tasks.registry\n"
        "print(sorted(m for m in ('torch', 'PySide6') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
