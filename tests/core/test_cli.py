"""The ``tlstudio`` command line, run in-process through ``main``."""

from __future__ import annotations

import importlib.machinery
import io
import json
import subprocess
import sys
import types
from pathlib import Path

import pytest

from tlstudio import cli
from tlstudio.cli import main
from tlstudio.core.project import Project


def run(capsys, *argv: object) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def test_module_entry_point_prints_help() -> None:
    repo = Path(__file__).resolve().parents[2]  # `-m` finds the package from here, installed or not
    proc = subprocess.run(
        [sys.executable, "-m", "tlstudio", "--help"],
        capture_output=True, text=True, timeout=60, cwd=repo,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    for command in ("new", "import", "export", "info", "demo"):
        assert command in proc.stdout


def test_new_then_info(tmp_path: Path, capsys) -> None:
    code, out, _ = run(capsys, "new", tmp_path / "p", "--multi-label")
    assert code == 0 and "multi-label" in out
    with Project.open(tmp_path / "p") as p:
        assert p.multi_label and p.image_count() == 0
    code, out, _ = run(capsys, "info", tmp_path / "p")
    assert code == 0
    assert "Images: 0" in out and "Classes: none" in out and "unassigned 0" in out


def test_new_on_an_existing_project_is_a_user_error(tmp_path: Path, capsys) -> None:
    assert run(capsys, "new", tmp_path / "p")[0] == 0
    code, out, err = run(capsys, "new", tmp_path / "p")
    assert code == 2 and out == ""
    assert err.startswith("error: ") and "already a tlstudio project" in err


def test_import_folder_reports_bad_files_and_adds_the_rest(
    tmp_path: Path, capsys, make_images
) -> None:
    src = tmp_path / "src"
    make_images(src, 4)
    make_images(src / "nested", 1, start=10)
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (src / "empty.jpg").write_bytes(b"")
    run(capsys, "new", tmp_path / "p")

    code, out, err = run(capsys, "import", tmp_path / "p", src)
    assert code == 0, err
    assert "Images: 5 added, 0 duplicates skipped, 2 bad files" in out
    bad = [line for line in out.splitlines() if line.strip().startswith("bad file:")]
    assert len(bad) == 2
    assert any("broken.png: " in line for line in bad) and any(
        "empty.jpg: " in line for line in bad
    )
    assert err == ""  # stderr is not a terminal: no progress line
    with Project.open(tmp_path / "p") as p:
        assert p.image_count() == 5

    code, out, _ = run(capsys, "import", tmp_path / "p", src / "img000.png")
    assert code == 0 and "0 added, 1 duplicate skipped" in out
    assert f"duplicate: {(src / 'img000.png').resolve()}" in out


def test_import_copy_puts_images_in_the_project(tmp_path: Path, capsys, make_images) -> None:
    files = make_images(tmp_path / "src", 2)
    run(capsys, "new", tmp_path / "p")
    code, out, _ = run(capsys, "import", tmp_path / "p", *files, "--copy")
    assert code == 0 and "2 added" in out
    with Project.open(tmp_path / "p") as p:
        assert sorted(r.path for r in p.images()) == ["images/img000.png", "images/img001.png"]


def test_import_images_and_a_detected_label_file(tmp_path: Path, capsys, make_images) -> None:
    src = tmp_path / "src"
    make_images(src, 2, (32, 24))
    coco = {
        "images": [{"id": 1, "file_name": "img000.png", "width": 32, "height": 24}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 7, "bbox": [2, 3, 10, 8]}],
        "categories": [{"id": 7, "name": "cell"}],
    }
    (src / "labels.json").write_text(json.dumps(coco))
    run(capsys, "new", tmp_path / "p")
    code, out, err = run(capsys, "import", tmp_path / "p", src, src / "labels.json")
    assert code == 0, err
    assert "Images: 2 added" in out
    assert "(coco): 0 images added, 1 matched; 1 box" in out
    # the folder holds a COCO file: it is named, not imported a second time
    assert f"note: {src} looks like a COCO dataset; only its images were added." in out
    with Project.open(tmp_path / "p") as p:
        rec = p.image_by_path(src / "img000.png")
        assert [b.xyxy for b in p.boxes(rec.id)] == [(2, 3, 12, 11)]
        assert [c.name for c in p.classes()] == ["cell"]


def test_broken_label_file_is_a_user_error_and_imports_nothing(
    tmp_path: Path, capsys, make_images
) -> None:
    src = tmp_path / "src"
    make_images(src, 1)
    (src / "labels.json").write_text(
        '{"images": [{"id": 1, "file_name": "nope.png"}], "annotations": []}'
    )
    run(capsys, "new", tmp_path / "p")
    code, _, err = run(capsys, "import", tmp_path / "p", src / "labels.json", "--format", "coco")
    assert code == 2 and err.startswith("error: ") and "labels.json" in err
    with Project.open(tmp_path / "p") as p:
        assert p.image_count() == 0


def test_import_of_a_missing_path_names_it(tmp_path: Path, capsys) -> None:
    run(capsys, "new", tmp_path / "p")
    code, _, err = run(capsys, "import", tmp_path / "p", tmp_path / "nowhere")
    assert code == 2 and "nowhere: no such file or folder" in err


def test_demo_export_and_reimport_round_trip(tmp_path: Path, capsys) -> None:
    code, out, err = run(capsys, "demo", tmp_path / "d", "--images", "9", "--size", "64")
    assert code == 0, err
    assert "9 synthetic images" in out and "circle" in out and "Shape 5 (5 points)" in out
    with Project.open(tmp_path / "d") as p:
        before = p.stats()
    assert before["images"] == 9 and before["kinds"]["boxes"] >= 9

    code, out, err = run(capsys, "export", tmp_path / "d", "--format", "coco", tmp_path / "out")
    assert code == 0, err
    assert (tmp_path / "out" / "annotations.json").is_file() and "Exported coco" in out

    run(capsys, "new", tmp_path / "copy")
    code, out, err = run(capsys, "import", tmp_path / "copy", tmp_path / "out", "--format", "coco")
    assert code == 0, err
    assert "(coco): 9 images added" in out
    with Project.open(tmp_path / "copy") as p:
        after = p.stats()
    for key in ("images", "kinds", "classes"):
        assert after[key] == before[key], key


def test_info_lists_splits_classes_and_missing_files(tmp_path: Path, capsys) -> None:
    with Project.open(
        run(capsys, "demo", tmp_path / "d", "--images", "6", "--size", "64") and tmp_path / "d"
    ) as p:
        gone = p.image_path(p.images()[0])
        n_train = len(p.images_in_split("train"))
    gone.unlink()
    code, out, _ = run(capsys, "info", tmp_path / "d")
    assert code == 0
    assert "Images: 6 (6 labelled, 1 missing)" in out
    assert f"train {n_train}," in out
    assert any(line.split()[:1] == ["circle"] for line in out.splitlines())
    assert out.rstrip().endswith(f"Missing files:\n  {gone}")


def test_not_a_project_exits_2_naming_the_folder(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "plain"
    folder.mkdir()
    for argv in (
        ["info", folder],
        [folder],
        ["export", folder, "--format", "coco", tmp_path / "o"],
    ):
        code, out, err = run(capsys, *argv)
        assert code == 2, argv
        assert err.startswith("error: ") and str(folder) in err and "not a tlstudio project" in err
    code, _, err = run(capsys, "info", tmp_path / "absent")
    assert code == 2 and str(tmp_path / "absent") in err


def test_bad_command_line_exits_2(capsys) -> None:
    assert main(["export", "x", "--format", "bmp", "o"]) == 2
    assert "invalid choice" in capsys.readouterr().err


def test_window_module_is_started_with_the_project(tmp_path: Path, capsys, monkeypatch) -> None:
    calls = []
    fake = types.ModuleType("tlstudio.gui.app")
    fake.__spec__ = importlib.machinery.ModuleSpec("tlstudio.gui.app", None)
    fake.run = lambda project_dir: calls.append(project_dir) or 3
    monkeypatch.setitem(sys.modules, "tlstudio.gui.app", fake)
    run(capsys, "new", tmp_path / "p")
    assert main([]) == 3 and main([str(tmp_path / "p")]) == 3
    assert calls == [None, str(tmp_path / "p")]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_rewrites_one_line_on_a_terminal_only() -> None:
    term = _Terminal()
    with cli._progress("images", term) as progress:
        for i in range(1, 4):
            progress(i, 3)
    text = term.getvalue()
    assert text.startswith("\rimporting images: 1/3") and text.endswith("\rimporting images: 3/3\n")
    with cli._progress("images", io.StringIO()) as progress:
        assert progress is None


@pytest.mark.parametrize("argv", [["--version"], ["--help"], ["import", "--help"]])
def test_help_and_version_return_0(argv, capsys) -> None:
    assert main(argv) == 0
    assert "tlstudio" in capsys.readouterr().out


def test_export_choices_that_do_not_fit_are_user_errors(tmp_path: Path, capsys) -> None:
    run(capsys, "demo", tmp_path / "d", "--images", "3", "--size", "48")
    code, _, err = run(
        capsys, "export", tmp_path / "d", "--format", "voc", tmp_path / "v", "--kind", "pose"
    )
    assert code == 2 and "--kind applies to YOLO only" in err
    code, _, err = run(
        capsys, "export", tmp_path / "d", "--format", "yolo", tmp_path / "y",
        "--kind", "pose", "--template", "Nope",
    )  # fmt: skip
    assert code == 2 and err.startswith("error: ") and "Nope" in err
    code, out, err = run(
        capsys, "export", tmp_path / "d", "--format", "yolo", tmp_path / "y", "--kind", "pose"
    )
    assert code == 0 and "Exported yolo (pose)" in out
    assert "warning: " in err and "masks not exported" in err  # what the format cannot hold
