"""tools/screenshots/README.md names every screenshot script and every picture it makes,
and every picture in docs/screenshots (the README's among them) has its line there."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT_SCRIPTS = ROOT / "tools" / "screenshots"


def _listed() -> dict[str, list[str]]:
    """script -> the PNG names its row of the table lists."""
    text = (SCREENSHOT_SCRIPTS / "README.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `(make_screenshots\w*\.py)` \| (.*?) \|", text, re.MULTILINE)
    return {script: re.findall(r"`([\w.]+\.png)`", pngs) for script, pngs in rows}


def test_the_readme_lists_every_script_with_the_pictures_it_writes():
    listed = _listed()
    assert set(listed) == {p.name for p in SCREENSHOT_SCRIPTS.glob("make_screenshots*.py")}
    for script, pngs in listed.items():
        source = (SCREENSHOT_SCRIPTS / script).read_text(encoding="utf-8")
        assert pngs, script
        for png in pngs:  # written as "name.png" or f"{name}.png"
            assert re.search(rf"\b{re.escape(Path(png).stem)}\b", source), (script, png)


def test_every_picture_in_the_docs_has_its_line_in_the_readme():
    text = (SCREENSHOT_SCRIPTS / "README.md").read_text(encoding="utf-8")
    made = {png for pngs in _listed().values() for png in pngs}
    pictures = {p.name for p in (ROOT / "docs" / "screenshots").glob("*.png")}
    assert made <= pictures
    assert all(f"`{png}`" in text for png in pictures)  # made, or said to be made by hand
    shown = set(re.findall(r"docs/screenshots/([\w.]+\.png)", (ROOT / "README.md").read_text()))
    assert shown <= made  # the README shows only pictures a script can make again
