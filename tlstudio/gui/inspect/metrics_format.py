"""How the metrics view writes figures: which summary keys become cards, column titles,
number formats, the per-class table and the one-line verdict of an image."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QStandardItem, QStandardItemModel

if TYPE_CHECKING:  # pragma: no cover
    from tlstudio.ml.evaluation import Evaluation, ImageRecord

#: summary keys shown as big figures, per task (the rest go into the notes line)
CARD_KEYS = {
    "classify": ("accuracy", "balanced_accuracy", "f1_macro", "roc_auc", "images"),
    "classify_multi": ("f1_macro", "f1_micro", "subset_accuracy", "roc_auc", "images"),
    "detect": ("map50", "map", "map75", "mean_iou", "images"),
    "instances": ("segm_map50", "segm_map", "segm_map75", "map50", "images"),
    "landmarks": ("nme", "pck@0.05", "pck@0.1", "mean_error_px", "images"),
    "segment": ("miou", "mdice", "pixel_accuracy", "images"),
    "autoencode": ("recon_error_mean", "recon_error_median", "recon_error_p95", "images"),
}

#: per-class column headers
COLUMN_TITLES = {
    "name": "Class",
    "precision": "Precision",
    "recall": "Recall",
    "f1": "F1",
    "ap": "AP",
    "roc_auc": "ROC-AUC",
    "support": "Images",
    "predicted": "Predicted",
    "ap50": "AP@.5",
    "ap75": "AP@.75",
    "recall50": "Recall@.5",
    "num_gt": "True boxes",
    "num_pred": "Predicted boxes",
    "segm_ap": "Mask AP",
    "segm_ap50": "Mask AP@.5",
    "segm_ap75": "Mask AP@.75",
    "mean_error_px": "Mean error (px)",
    "nme": "NME",
    "count": "Visible",
    "iou": "IoU",
    "dice": "Dice",
    "gt_pixels": "True pixels",
    "pred_pixels": "Predicted pixels",
    "images": "Images",
    "mean_error": "Mean error",
    "median_error": "Median error",
    "max_error": "Largest error",
}

SORT_ROLE = Qt.ItemDataRole.UserRole + 1


def format_value(key: str, value: Any) -> str:
    """A metric for display: counts as integers, pixel errors with one decimal,
    reconstruction errors with 4 significant digits, other ratios with 3 decimals,
    "—" for undefined."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, str):
        return value
    if key in ("images", "support", "predicted", "num_gt", "num_pred", "count",
               "gt_pixels", "pred_pixels"):  # fmt: skip
        return f"{int(value)}"
    if key.endswith("_px"):
        return f"{value:.1f}"
    if "error" in key:
        return f"{value:.4g}"
    return f"{value:.3f}"


def metric_label(key: str) -> str:
    """The readable name of a metric key (the key itself when unknown)."""
    from tlstudio.ml.evaluation import METRIC_LABELS

    return METRIC_LABELS.get(key, key)


def badness(r: ImageRecord) -> float:
    """Sort key of "worst first" image lists (no error: last)."""
    return -math.inf if r.error is None else float(r.error)


def score_text(ev: Evaluation | None, r: ImageRecord) -> str:
    """The figure shown after an image in the list, by the evaluation's task."""
    task = ev.task if ev is not None else ""
    if task == "classify":
        return f"p = {r.score:.2f}"
    if task in ("detect", "instances"):
        return f"{int(r.error or 0)} wrong, best score {r.score:.2f}"
    if task == "landmarks":
        return f"NME {r.score:.3f}, {r.error:.1f} px" if r.error is not None else f"{r.score:.3f}"
    if task == "segment":
        return f"IoU {r.score:.2f}"
    return f"error {r.score:.4g}"


def fill_class_table(m: QStandardItemModel, ev: Evaluation) -> None:
    """The per-class (per point, per class tag) rows of ``ev`` into ``m``, each cell
    sortable by its value (undefined values sort first)."""
    m.clear()
    cols = ev.per_class_columns
    titles = dict(COLUMN_TITLES, name={"landmarks": "Point", "autoencode": "Class tag"}.get(
        ev.task, "Class"))  # fmt: skip
    if ev.task == "instances":
        titles.update(num_gt="True objects", num_pred="Predicted objects", ap50="Box AP@.5")
    m.setHorizontalHeaderLabels([titles.get(c, c) for c in cols])
    for row in ev.per_class:
        m.appendRow([_cell(c, row.get(c)) for c in cols])


def _cell(column: str, v: Any) -> QStandardItem:
    """A table cell: the value as text, sortable by it (undefined values sort first);
    the "name" column sorts by its text."""
    item = QStandardItem(format_value(column, v))
    if column == "name":
        item.setData(str(v).lower(), SORT_ROLE)
    else:
        undefined = v is None or (isinstance(v, float) and math.isnan(v))
        item.setData(-math.inf if undefined else float(v), SORT_ROLE)
        item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
    return item


def fill_domain_table(m: QStandardItemModel, ev: Evaluation, keys: Sequence[str]) -> None:
    """One row per image domain of ``ev`` (its name, images and the metrics ``keys``)."""
    m.clear()
    m.setHorizontalHeaderLabels(["Domain", "Images", *[metric_label(k) for k in keys]])
    for name, row in ev.by_domain.items():
        m.appendRow(
            [_cell("name", name), _cell("images", int(row["images"])),
             *[_cell(k, row.get(k)) for k in keys]]
        )  # fmt: skip
