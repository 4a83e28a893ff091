"""The format registry (``tlstudio.core.formats.LABEL_FORMATS``) drives the command line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tlstudio.cli import main
from tlstudio.core.formats import EXPORT_KINDS, FORMATS, LABEL_FORMATS, LABEL_SUFFIXES, label_format


def _help(capsys, *argv: str) -> str:
    import os

    before = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "2000"  # no wrapping: argparse breaks lines at hyphens too
    try:
        assert main(list(argv)) == 0
    finally:
        if before is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = before
    return " ".join(capsys.readouterr().out.split())  # argparse wraps lines


@pytest.mark.parametrize("command", ["export", "import"])
def test_help_lists_every_registered_format_with_its_description(command, capsys) -> None:
    text = _help(capsys, command, "--help")
    choices = ",".join(FORMATS) + (",images" if command == "import" else "")
    assert "{" + choices + "}" in text
    for f in LABEL_FORMATS:
        assert f"{f.name}: {' '.join(f.description.split())}" in text


def test_export_help_lists_the_kinds_of_each_format(capsys) -> None:
    text = _help(capsys, "export", "--help")
    assert "--kind {" + ",".join(EXPORT_KINDS) + "}" in text
    for f in LABEL_FORMATS:
        if f.export_kinds:
            assert f"for {f.title}: {f.export_kinds[0]} (default)" in text


@pytest.mark.parametrize("command", ["export", "import"])
def test_an_unknown_format_is_refused_with_the_registered_ones(command, tmp_path, capsys):
    code = main([command, str(tmp_path), "--format", "nope", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert code == 2 and "invalid choice: 'nope'" in err
    for name in FORMATS:
        assert repr(name) in err


def test_the_api_refuses_an_unknown_format_naming_the_registered_ones() -> None:
    with pytest.raises(ValueError) as info:
        label_format("nope")
    assert all(name in str(info.value) for name in FORMATS)


def test_every_registered_format_names_a_module_with_import_and_export() -> None:
    for f in LABEL_FORMATS:
        module = f.load()
        assert callable(module.import_) and callable(module.export), f.name


def test_registry_is_light_to_import() -> None:
    """``tlstudio --help`` builds its parser from the registry, so importing the registry
    must not load the format modules, numpy or OpenCV."""
    code = (
        "import sys, tlstudio.cli\n"
        "heavy = {'numpy', 'cv2', 'yaml', 'tlstudio.core.project', 'tlstudio.core.formats.coco'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    repo = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=repo
    ).stdout
    assert out.strip() == "[]"


def test_label_suffixes_are_those_the_importers_used_before_the_registry() -> None:
    # plus DeepLabCut's .h5 and SLEAP's .slp
    assert LABEL_SUFFIXES == {
        ".json",
        ".txt",
        ".xml",
        ".csv",
        ".yaml",
        ".yml",
        ".tsv",
        ".h5",
        ".slp",
    }
