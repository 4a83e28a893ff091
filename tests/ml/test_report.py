"""The HTML run report: sections, embedded figures, well-formed and escaped markup,
sample predictions drawn per task, heatmaps when the explainer is there, and the CLI."""

from __future__ import annotations

import base64
import re
import sys
from html.parser import HTMLParser

import cv2
import numpy as np
import pytest

from tlstudio.cli import main
from tlstudio.core.runs import RunStore
from tlstudio.ml.report import SAMPLE_SIDE, write_report
from tlstudio.ml.runner import RunSpec

VOID = {"meta", "img", "br", "hr", "link", "input"}


@pytest.fixture(scope="module")
def trained(trained_demo):
    """(project, task -> run id): the session's demo runs (classify has 2 epochs)."""
    return trained_demo.project, trained_demo.runs


class _Page(HTMLParser):
    """Collects headings, images and table cells; checks that every element closes."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.h2: list[str] = []
        self.images: list[str] = []
        self.cells: list[str] = []
        self.tags: set[str] = set()
        self._text: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        if tag == "img":
            self.images.append(dict(attrs)["src"])
        if tag not in VOID:
            self.stack.append(tag)
        if tag in ("h2", "td"):
            self._text = []

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes <{self.stack[-1] if self.stack else None}>")
            return
        self.stack.pop()
        if tag in ("h2", "td") and self._text is not None:
            (self.h2 if tag == "h2" else self.cells).append("".join(self._text).strip())
            self._text = None

    def handle_data(self, data):
        if self._text is not None:
            self._text.append(data)


def _parse(text: str) -> _Page:
    page = _Page()
    page.feed(text)
    page.close()
    assert not page.errors and not page.stack, (page.errors, page.stack)
    return page


def _png(src: str) -> np.ndarray:
    assert src.startswith("data:image/png;base64,")
    raw = base64.b64decode(src.split(",", 1)[1])
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    return cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR)


def test_classification_report_has_every_section_and_embedded_figures(trained, tmp_path):
    project, runs = trained
    out = write_report(project, runs["classify"], tmp_path / "report.html", samples=3)
    text = out.read_text(encoding="utf-8")
    page = _parse(text)
    assert "script" not in page.tags and "<link" not in text  # self-contained, no JS
    assert page.h2 == [
        "Configuration",
        "Dataset",
        "Training curves",
        "Model selection",
        "Metrics (val)",
        "Sample predictions (val)",
        "Class-activation heatmaps (Grad-CAM)",
    ]
    # curves + confusion matrix + reliability diagram + 3 samples + 3 heatmaps, all PNGs
    assert len(page.images) == 9
    pictures = [_png(src) for src in page.images]
    assert all(p is not None and p.size for p in pictures)
    assert max(pictures[3].shape[:2]) == SAMPLE_SIDE
    assert "Reliability diagram" in text and "ECE as predicted" in text
    assert "picked by its validation metric" in text
    # the configuration and per-class tables carry the run's values and the class names
    for value in ("resnet18", "0.001", "64 × 64 px", "none", "2"):
        assert value in page.cells
    for c in project.classes():
        assert c.name in page.cells
    # dataset row "images": counts per split as stored
    counts = [len(project.images_in_split(s)) for s in ("train", "val", "test")]
    i = page.cells.index("images")
    assert [int(v) for v in page.cells[i + 1 : i + 4]] == counts
    assert "Confusion matrix" in text and "label: " in text and "predicted: " in text


def test_landmark_samples_are_drawn_over_the_image(trained, tmp_path):
    project, runs = trained
    out = write_report(project, runs["landmarks"], tmp_path / "lm.html", samples=2, heatmaps=False)
    page = _parse(out.read_text(encoding="utf-8"))
    assert "Class-activation heatmaps" not in " ".join(page.h2)
    samples = [_png(s) for s in page.images[1:]]  # after the training curves
    assert len(samples) == 2
    first = project.images_in_split("val")[0]
    plain = cv2.resize(cv2.imread(str(project.image_path(first.id))), (SAMPLE_SIDE, SAMPLE_SIDE))
    changed = np.abs(samples[0].astype(int) - plain.astype(int)).max(axis=2) > 60
    assert changed.mean() > 0.002  # points and skeleton were drawn
    assert "mean confidence" in out.read_text(encoding="utf-8")


def test_project_text_is_escaped(trained, tmp_path):
    project, runs = trained
    cls = project.classes()[0]
    project.rename_class(cls.id, "<b>big</b> & bold")
    try:
        text = write_report(
            project, runs["classify"], tmp_path / "r.html", samples=1, heatmaps=False
        ).read_text(encoding="utf-8")
    finally:
        project.rename_class(cls.id, cls.name)
    assert "&lt;b&gt;big&lt;/b&gt; &amp; bold" in text and "<b>big</b>" not in text
    _parse(text)


def test_missing_explainer_and_missing_model_become_notes(trained, tmp_path, monkeypatch):
    project, runs = trained
    monkeypatch.setitem(sys.modules, "tlstudio.ml.explain", None)  # import now fails
    text = write_report(project, runs["classify"], tmp_path / "a.html", samples=1).read_text()
    assert re.search(r'class="note">Left out: tlstudio\.ml\.explain is not available', text)

    store = RunStore(project)
    failed = store.start("classify", "resnet18", RunSpec(task="classify").to_dict())
    store.update(failed, status="failed", error="CUDA out of memory")
    text = write_report(project, failed, tmp_path / "b.html").read_text()
    page = _parse(text)
    assert f"Run {failed} has no saved model (status failed)." in text
    assert "The run ended with an error: CUDA out of memory" in text
    assert "Training curves" in page.h2 and "No epochs were recorded" in text


def test_cli_report(trained, tmp_path, capsys):
    project, runs = trained
    out = tmp_path / "cli.html"
    code = main(["report", str(project.root), "--run", str(runs["classify"]), "--out", str(out),
                 "--samples", "1", "--no-heatmaps", "--split", "test"])  # fmt: skip
    assert code == 0
    assert str(out) in capsys.readouterr().out
    assert "<h2>Metrics (test)</h2>" in out.read_text(encoding="utf-8")


def test_report_counts_the_best_epoch_from_1_like_the_train_panel(trained_demo, tmp_path):
    project, runs, best_epochs = trained_demo
    out = write_report(project, runs["classify"], tmp_path / "epochs.html", samples=1,
                       heatmaps=False)  # fmt: skip
    text = out.read_text(encoding="utf-8")
    best = best_epochs["classify"]
    assert best is not None
    # the monitor and the CLI say "best … at epoch {best + 1}"; the report must agree
    assert f"marks the best epoch ({best + 1})" in text
