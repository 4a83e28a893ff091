"""Image domains in the whole window: per-domain rows in Inspect → Metrics, the latent plot
coloured by domain, and the Train panel's "Adapt to domain" row."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

from tlstudio.core.project import Project
from tlstudio.gui.app import create_main_window

LEFT = Qt.MouseButton.LeftButton

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture
def window(qtbot, trained_demo_dir: Path, tmp_path: Path, qsettings):
    """The trained demo project with its images in two domains (scanner A: even ids)."""
    root = tmp_path / "domains"
    shutil.copytree(trained_demo_dir, root)
    with Project.open(root) as p:
        ids = p.image_ids()
        p.set_domains({i: "scanner A" if k % 2 == 0 else "scanner B" for k, i in enumerate(ids)})
    w = create_main_window(root, qsettings)
    qtbot.addWidget(w)
    w.show()
    qtbot.waitExposed(w)
    w.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is w)
    yield w
    w.close()


def _click_tab(qtbot, tabs, title: str):
    i = next(i for i in range(tabs.count()) if tabs.tabText(i) == title)
    bar = tabs.tabBar()
    qtbot.mouseClick(bar, LEFT, pos=bar.tabRect(i).center())
    return tabs.currentWidget()


def test_metrics_show_a_row_per_domain(qtbot, window) -> None:
    qtbot.keyClick(window, Qt.Key.Key_F4)
    metrics = _click_tab(qtbot, window.inspect_panel.tabs, "Metrics")
    assert not metrics.domain_box.isVisible()
    with qtbot.waitSignal(metrics.evaluated, timeout=60_000) as done:
        qtbot.mouseClick(metrics.evaluate_button, LEFT)
    ev = done.args[0]
    assert list(ev.by_domain) == ["scanner A", "scanner B"]
    assert metrics.domain_box.isVisible()
    m = metrics.domain_model
    header = [m.headerData(c, Qt.Orientation.Horizontal) for c in range(m.columnCount())]
    assert header[:3] == ["Domain", "Images", "Accuracy"]
    rows = [[m.item(r, c).text() for c in range(3)] for r in range(m.rowCount())]
    assert rows == [
        [name, str(int(row["images"])), f"{row['accuracy']:.3f}"]
        for name, row in ev.by_domain.items()
    ]
    assert sum(int(r[1]) for r in rows) == len(ev.image_ids)


def test_latent_plot_coloured_by_domain(qtbot, window) -> None:
    qtbot.keyClick(window, Qt.Key.Key_F4)
    latent = _click_tab(qtbot, window.inspect_panel.tabs, "Latent space")
    with qtbot.waitSignal(latent.computed, timeout=120_000):
        qtbot.mouseClick(latent.compute_button, LEFT)
    combo = latent.colour_combo
    combo.setFocus()
    qtbot.keyClick(combo, Qt.Key.Key_End)  # the last colouring: Domain
    assert combo.currentText() == "Domain"
    text = latent.legend_label.text()
    assert "<b>Domain</b>" in text and "scanner A" in text and "scanner B" in text
    project = window.app_state.project
    domain_of = project.domain_by_image()
    cats = latent._cats
    for k, image_id in enumerate(latent.image_ids):
        name = latent._palette[cats[k]][0]
        assert name == domain_of[image_id]
