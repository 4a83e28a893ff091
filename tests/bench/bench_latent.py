"""Latent-space benchmark: projection time and scatter redraw time.

    QT_QPA_PLATFORM=offscreen python tests/bench/bench_latent.py [--quick]

Prints, in one run:

1. ``project_points`` time for 5,000 and 20,000 points (D = 256, ten Gaussian clusters)
   with PCA, t-SNE and UMAP. UMAP's one-off JIT compilations are timed separately first
   (50 points; 4,200 points, where umap-learn switches to pynndescent). t-SNE at 20,000 is skipped when the 5,000 time, scaled by N log N,
   predicts more than 5 minutes (the line says so).
2. Scatter redraw of the LatentView's single ScatterPlotItem (pxMode, useCache) for
   10,000 vs 100,000 points: setting the points + a forced repaint of the plot's
   viewport (``viewport().repaint()``, offscreen), median of 7, three ways: the view's
   ``set_points`` (atlas lookup per colour), ``setData`` with a shared-brush array, and
   ``setData`` with one new QBrush per point.
3. At 50,000 points: hover hit test, lasso selection (40-vertex polygon) and recolour
   (``setBrush``), median of 7.

``--quick`` uses 1,000 / 2,000 points for part 1 (a smoke run). No asserts on time.
"""

from __future__ import annotations

import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchkit import load_average, print_header  # noqa: E402


def clustered(n: int, d: int = 256, k: int = 10, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 4, (k, d))
    labels = rng.integers(0, k, n)
    return (centres[labels] + rng.normal(0, 1, (n, d))).astype(np.float32)


def timed(fn, repeat: int = 1) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def projections(sizes: tuple[int, int]) -> None:
    from tlstudio.ml.embed import project_points

    print("== projection (project_points, D=256, 10 clusters) ==")
    jit = timed(lambda: project_points(clustered(50, 16), "umap"))
    print(f"UMAP first call, 50 points (import + JIT compile):       {jit:8.1f} s")
    # above 4,096 points umap-learn switches to pynndescent, compiled on its first use
    jit = timed(lambda: project_points(clustered(4_200, 16), "umap"))
    print(f"UMAP first call, 4,200 points (+ pynndescent JIT compile): {jit:8.1f} s")
    tsne_small = None
    for n in sizes:
        X = clustered(n)
        for method in ("pca", "tsne", "umap"):
            if method == "tsne" and tsne_small is not None:
                n0, t0 = tsne_small
                estimate = t0 * (n * math.log(n)) / (n0 * math.log(n0))
                if estimate > 300:
                    print(f"{method:5s} N={n:6d}: skipped (estimated {estimate:.0f} s > 5 min)")
                    continue
            t = timed(lambda X=X, m=method: project_points(X, m))
            if method == "tsne":
                tsne_small = (n, t)
            print(f"{method:5s} N={n:6d}: {t:8.2f} s")


WAYS = ("set_points (atlas per category)", "setData, shared brushes", "setData, QBrush per point")


def scatter_redraw() -> None:
    import pyqtgraph as pg
    from PySide6.QtGui import QColor
    from PySide6.QtWidgets import QApplication

    from tlstudio.gui.inspect.latent_scatter import AtlasScatter as _Scatter
    from tlstudio.gui.inspect.latent_scatter import points_in_polygon

    app = QApplication.instance() or QApplication([])
    print("\n== scatter redraw: set the points + repaint of a 1000×700 PlotWidget's viewport ==")
    print("   (median of 7; the LatentView uses the first way)")
    colours = ["#e15759", "#4e79a7", "#59a14f", "#f28e2b", "#76b7b2", "#b4b9c0"]
    shared = [pg.mkBrush(c) for c in colours]
    shared_arr = np.array(shared, dtype=object)

    def new_plot():
        plot = pg.PlotWidget(background="w")
        plot.resize(1000, 700)
        plot.show()
        item = _Scatter(pxMode=True, useCache=True, size=5, pen=pg.mkPen(0, 0, 0, 70))
        plot.addItem(item)
        app.processEvents()
        return plot, item

    for n in (10_000, 100_000):
        rng = np.random.default_rng(1)
        xy = rng.normal(size=(n, 2)).astype(np.float32)
        cats = rng.integers(0, len(colours), n)
        for way in WAYS:
            plot, item = new_plot()

            def put(way=way, xy=xy, cats=cats, item=item):
                if way == WAYS[0]:
                    item.set_points(xy[:, 0], xy[:, 1], cats, shared)
                elif way == WAYS[1]:
                    item.setData(x=xy[:, 0], y=xy[:, 1], brush=shared_arr[cats])
                else:
                    item.setData(x=xy[:, 0], y=xy[:, 1],
                                 brush=[pg.mkBrush(QColor(colours[c])) for c in cats])  # fmt: skip

            put()  # warm the symbol atlas
            repeat = 3 if way == WAYS[2] and n > 50_000 else 7
            t_set = timed(put, repeat)
            t_paint = timed(plot.viewport().repaint, 7)
            t_all = timed(lambda put=put, plot=plot: (put(), plot.viewport().repaint()), repeat)
            print(f"N={n:7d} {way:33s}: set {t_set * 1e3:7.1f} ms, repaint "
                  f"{t_paint * 1e3:6.1f} ms, both {t_all * 1e3:7.1f} ms")  # fmt: skip
            plot.close()

    print("\n== interaction at 50,000 points (median of 7) ==")
    n = 50_000
    rng = np.random.default_rng(2)
    xy = rng.normal(size=(n, 2)).astype(np.float32)
    cats = rng.integers(0, len(colours), n)
    plot, item = new_plot()
    item.set_points(xy[:, 0], xy[:, 1], cats, shared)
    plot.viewport().repaint()

    def hover():
        px, py = 0.01, 0.01  # data units per pixel
        d2 = ((xy[:, 0] - 0.3) / px) ** 2 + ((xy[:, 1] + 0.2) / py) ** 2
        int(np.argmin(d2))

    a = np.linspace(0, 2 * np.pi, 40, endpoint=False)
    polygon = np.column_stack([np.cos(a), 0.7 * np.sin(a)])
    sel = points_in_polygon(xy, polygon)
    faded = [pg.mkBrush(QColor(c).lighter(160)) for c in colours]
    styles = np.where(sel, cats, cats + len(colours))
    print(f"hover hit test:              {timed(hover, 7) * 1e3:7.2f} ms")
    print(
        f"lasso (40 vertices):         {timed(lambda: points_in_polygon(xy, polygon), 7) * 1e3:7.2f} ms"
    )
    recolour = timed(lambda: (item.set_categories(styles, shared + faded),
                              plot.viewport().repaint()), 7)  # fmt: skip
    print(f"selection recolour+repaint:  {recolour * 1e3:7.2f} ms")
    print(f"repaint only:                {timed(plot.viewport().repaint, 7) * 1e3:7.2f} ms")
    plot.close()


def main() -> None:
    import torch

    torch.set_num_threads(1)
    quick = "--quick" in sys.argv
    print_header("latent space: projections, scatter redraw, interaction (1 torch thread)")
    projections((1_000, 2_000) if quick else (5_000, 20_000))
    scatter_redraw()
    print(f"load average at the end: {load_average()}")


if __name__ == "__main__":
    main()
