"""Image domains (site, scanner, batch…): schema 4 → 5, the store, undo, import --domain,
info, and the formats that carry a domain (CSV column, COCO image field)."""

from __future__ import annotations

import csv
import json
import sqlite3
from pathlib import Path

import pytest

from tlstudio.cli import main
from tlstudio.core.commands import SetDomains, UndoStack
from tlstudio.core.errors import ValidationError
from tlstudio.core.formats import export_labels, import_labels
from tlstudio.core.project import Project
from tlstudio.core.store import DB_NAME, SCHEMA_VERSION


def _cli(capsys, *argv: object) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def test_a_version_4_project_is_migrated_and_its_images_have_no_domain(tmp_path, make_images):
    root = tmp_path / "old"
    with Project.create(root) as p:
        p.add_images(make_images(tmp_path / "src", 3))
        p.set_splits({p.image_ids()[0]: "val"})
    with sqlite3.connect(root / DB_NAME) as conn:  # what tlstudio with schema 4 wrote
        conn.execute("DROP INDEX images_domain")
        conn.execute("ALTER TABLE images DROP COLUMN domain")
        conn.execute("UPDATE meta SET value = '4' WHERE key = 'schema_version'")
    with Project.open(root) as p:
        assert p.store.get_meta("schema_version") == str(SCHEMA_VERSION) == "5"
        ids = p.image_ids()
        assert [p.image(i).domain for i in ids] == [None, None, None]
        assert p.image(ids[0]).split == "val"  # the old columns are read as before
        p.set_domains({ids[1]: "scanner A"})
        assert p.domains() == {"scanner A": 1}


def test_set_domains_validates_and_counts(project: Project) -> None:
    ids = project.image_ids()
    project.set_domains({ids[0]: "  site A ", ids[1]: "site B", ids[2]: "site A"})
    assert project.image(ids[0]).domain == "site A"  # stripped
    assert project.domains() == {"site A": 2, "site B": 1}
    assert [r.id for r in project.images_in_domain("site A")] == [ids[0], ids[2]]
    assert project.stats()["domains"] == {"site A": 2, "site B": 1}
    project.set_domains({ids[1]: "   "})  # blank = no domain
    assert project.image(ids[1]).domain is None
    assert ids[1] in [r.id for r in project.images_in_domain(None)]
    with pytest.raises(ValidationError, match="longer than 100"):
        project.set_domains({ids[0]: "x" * 101})
    with pytest.raises(ValidationError, match="invalid text"):
        project.set_domains({ids[0]: "a\x00b"})
    assert project.image(ids[0]).domain == "site A"  # a refused edit changes nothing
    assert project.image_page(0, 1)[0].image.domain == "site A"


def test_set_domains_command_undoes(project: Project) -> None:
    ids = project.image_ids()
    project.set_domains({ids[0]: "old"})
    stack = UndoStack(project)
    stack.push(SetDomains({ids[0]: "new", ids[1]: "new"}))
    assert project.domains() == {"new": 2}
    stack.undo()
    assert project.image(ids[0]).domain == "old" and project.image(ids[1]).domain is None
    stack.redo()
    assert project.domains() == {"new": 2}


def test_import_with_domain_sets_it_on_added_images_only(tmp_path, make_images, capsys):
    root = tmp_path / "p"
    _cli(capsys, "new", root)
    first = make_images(tmp_path / "site_a", 3)
    code, _, _ = _cli(capsys, "import", root, tmp_path / "site_a", "--domain", "hospital A")
    assert code == 0
    make_images(tmp_path / "site_b", 2, start=10)
    # site_b plus one image already imported: that one keeps its domain
    code, _, _ = _cli(
        capsys, "import", root, tmp_path / "site_b", first[0], "--domain", "hospital B"
    )
    assert code == 0
    with Project.open(root) as p:
        assert p.domains() == {"hospital A": 3, "hospital B": 2}
    make_images(tmp_path / "plain", 1, start=20)
    _cli(capsys, "import", root, tmp_path / "plain")
    code, out, _ = _cli(capsys, "info", root)
    assert code == 0
    assert "Domains: hospital A 3, hospital B 2, no domain 1" in out
    code, _, err = _cli(capsys, "import", root, tmp_path / "plain", "--domain", "x" * 200)
    assert code != 0 and "longer than 100" in err


def test_csv_carries_the_domain_both_ways(project: Project, tmp_path: Path) -> None:
    ids = project.image_ids()
    cat = project.class_by_name("cat")
    project.set_tags(ids[0], [cat.id])
    project.set_domains({ids[0]: "lab 1", ids[1]: "lab 2"})
    out = export_labels(project, "csv", tmp_path / "out.csv")
    rows = list(csv.DictReader(out.open()))
    assert rows[0]["domain"] == "lab 1" and rows[1]["domain"] == "lab 2"
    assert rows[2]["domain"] == ""
    with Project.create(tmp_path / "q") as q:
        import_labels(q, out, "csv", domain="fallback")
        by_name = {r.name: r.domain for r in q.images()}
    names = {r.id: r.name for r in project.images()}
    assert by_name[names[ids[0]]] == "lab 1" and by_name[names[ids[1]]] == "lab 2"
    assert by_name[names[ids[2]]] == "fallback"  # no domain in the file: the import's


def test_csv_without_domains_has_no_domain_column(project: Project, tmp_path: Path) -> None:
    out = export_labels(project, "csv", tmp_path / "out.csv")
    assert out.read_text().splitlines()[0] == "image,label"


def test_coco_carries_the_domain_as_an_image_field(project: Project, tmp_path: Path) -> None:
    ids = project.image_ids()
    project.set_domains({ids[1]: "microscope 2"})
    out = export_labels(project, "coco", tmp_path / "coco.json")
    images = json.loads(out.read_text())["images"]
    assert [im.get("domain") for im in images][:2] == [None, "microscope 2"]
    with Project.create(tmp_path / "q") as q:
        import_labels(q, out, "coco")
        assert q.domains() == {"microscope 2": 1}
    data = json.loads(out.read_text())
    data["images"][0]["domain"] = 7.5  # a number is read as its text; a list is refused
    data["images"][1]["domain"] = ["x"]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    with Project.create(tmp_path / "r") as r:
        with pytest.raises(Exception, match=r"\(images\[1\]\.domain\): domain: expected a string"):
            import_labels(r, bad, "coco")
        assert r.image_count() == 0  # all or nothing
