"""Package metadata and desktop files: one version source, licence, changelog, the desktop
entry and AppStream file (validated when their tools are installed), the icon sizes."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import tlstudio

ROOT = Path(__file__).resolve().parents[1]
PACKAGING = ROOT / "packaging"
METAINFO = PACKAGING / "io.github.tlstudio.tlstudio.metainfo.xml"
DESKTOP = PACKAGING / "tlstudio.desktop"


def _pyproject() -> dict:
    from setuptools.config.pyprojecttoml import read_configuration

    return read_configuration(ROOT / "pyproject.toml")  # expands the dynamic version


def test_one_version_source() -> None:
    """pyproject.toml takes the version from tlstudio/__init__.py; nothing else states it."""
    project = _pyproject()["project"]
    assert project["version"] == tlstudio.__version__
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    raw = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in raw["project"] and "version" in raw["project"]["dynamic"]


def test_version_command_prints_it() -> None:
    done = subprocess.run([sys.executable, "-m", "tlstudio", "--version"], capture_output=True,
                          text=True, cwd=ROOT, timeout=60)  # fmt: skip
    assert done.stdout.strip() == f"tlstudio {tlstudio.__version__}"


def test_changelog_and_appstream_release_match_the_version() -> None:
    changelog = (ROOT / "CHANGELOG.md").read_text()
    first = re.search(r"(?m)^## \[([^\]]+)\]", changelog)
    assert first and first.group(1) == tlstudio.__version__
    releases = ET.parse(METAINFO).getroot().find("releases")
    assert releases is not None and releases[0].get("version") == tlstudio.__version__


def test_licence_metadata() -> None:
    project = _pyproject()["project"]
    assert project["license"] == "MIT"
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and "Permission is hereby granted" in text
    assert not any(c.startswith("License ::") for c in project.get("classifiers", []))


def test_gui_script_and_console_script() -> None:
    project = _pyproject()["project"]
    assert project["scripts"]["tlstudio"] == "tlstudio.cli:main"
    module, func = project["gui-scripts"]["tlstudio-gui"].split(":")
    assert module == "tlstudio.gui.app" and func == "main"
    torch_req = next(d for d in project["dependencies"] if d.startswith("torch>"))
    assert torch_req == "torch>=2.10"


def test_metainfo_screenshots_are_the_readme_images() -> None:
    root = ET.parse(METAINFO).getroot()
    homepage = root.find("url[@type='homepage']").text
    assert homepage == _pyproject()["project"]["urls"]["Homepage"]
    owner_repo = homepage.removeprefix("https://github.com/")
    readme = (ROOT / "README.md").read_text()
    images = [img.text for img in root.iter("image")]
    assert images
    for url in images:
        prefix = f"https://raw.githubusercontent.com/{owner_repo}/main/"
        assert url.startswith(prefix), url
        path = url.removeprefix(prefix)
        assert (ROOT / path).is_file(), f"{path} is not in the repository"
        assert f"({path})" in readme, f"{path} is not one of the README's images"


def test_icon_rasters_have_their_sizes() -> None:
    from PIL import Image

    for size in (16, 24, 32, 48, 64, 128, 256, 512):
        with Image.open(ROOT / "resources" / "app" / "png" / f"tlstudio-{size}.png") as im:
            assert im.size == (size, size) and im.mode == "RGBA"
    with Image.open(ROOT / "resources" / "app" / "tlstudio.ico") as ico:
        assert {(16, 16), (32, 32), (48, 48), (256, 256)} <= set(ico.info["sizes"])
    with Image.open(ROOT / "resources" / "app" / "tlstudio.icns") as icns:
        assert icns.format == "ICNS"


def test_desktop_entry_points_at_the_icon_and_command() -> None:
    text = DESKTOP.read_text()
    assert "\nIcon=tlstudio\n" in text and "\nExec=tlstudio %f\n" in text
    from tlstudio.gui.app import DESKTOP_FILE

    assert DESKTOP.stem == DESKTOP_FILE  # the window's desktopFileName matches the entry


@pytest.mark.skipif(shutil.which("desktop-file-validate") is None,
                    reason="desktop-file-validate not installed (apt-get install desktop-file-utils)")  # fmt: skip
def test_desktop_entry_validates() -> None:
    done = subprocess.run(["desktop-file-validate", str(DESKTOP)], capture_output=True, text=True)
    assert done.returncode == 0 and not done.stdout.strip(), done.stdout + done.stderr


@pytest.mark.skipif(shutil.which("appstreamcli") is None,
                    reason="appstreamcli not installed (apt-get install appstream)")  # fmt: skip
def test_metainfo_validates() -> None:
    done = subprocess.run(["appstreamcli", "validate", "--no-net", "--pedantic", str(METAINFO)],
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
