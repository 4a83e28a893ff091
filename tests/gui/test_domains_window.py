"""Image domains in the whole window: per-domain rows in Inspect → Metrics, the latent plot
coloured by domain, and the Train panel's "Adapt to domain" row."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

from tlstudio.core.project import Project
from tlstudio.gui.app import create_main_window

sys.path.insert(0, str(Path(__file__).parent))
from combo_support import choose_by_data  # noqa: E402

sys.path.pop(0)

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


def test_train_panel_adapt_row_sets_the_runs_adaptation(qtbot, window, torch_home) -> None:
    from tlstudio.ml.adapt_config import AdaptConfig

    qtbot.keyClick(window, Qt.Key.Key_F3)
    panel = window.train_panel.config
    panel.wait_ready()
    qtbot.waitUntil(panel.has_facts, timeout=10_000)
    qtbot.mouseClick(panel.view_button, LEFT)  # All settings…
    row = panel.adapt_row
    domains = [row.domain_combo.itemText(i) for i in range(row.domain_combo.count())]
    assert domains == ["scanner A", "scanner B"] and row.method_combo.isEnabled()
    assert panel.spec().adapt is None and not row.domain_combo.isEnabled()
    choose_by_data(qtbot, row.method_combo, "coral")
    choose_by_data(qtbot, row.domain_combo, "scanner B")
    assert panel.spec().adapt == AdaptConfig("coral", "scanner B")
    assert panel.train_problem() is None  # CORAL works on the cached features too
    choose_by_data(qtbot, row.method_combo, "dann")  # ...DANN does not, with the backbone frozen
    assert panel.spec().train.freeze == "all"
    problem = panel.train_problem()
    assert problem is not None and "unfreeze some stages" in problem
    assert not panel.train_button.isEnabled()
    assert "unfreeze some stages" in panel.problem_label.text()
    choose_by_data(qtbot, row.method_combo, None)
    assert panel.spec().adapt is None and panel.train_button.isEnabled()
