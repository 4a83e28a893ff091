"""A run's report as one self-contained HTML file (figures embedded as base64 PNG, inline
CSS, no scripts), readable offline and printable.

Sections: run configuration, dataset counts per split and class, training curves, metrics
on a split (confusion matrix and per-class table for single-label classification), sample
predictions drawn over their images (labels thin and outlined, predictions filled or thick)
and class-activation heatmaps when :mod:`tlstudio.ml.explain` is available.

Figures use :class:`matplotlib.figure.Figure` with the Agg canvas only (never pyplot), so
nothing here touches a GUI toolkit. Every text that comes from the project (names, paths,
config values, error messages) is HTML-escaped.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import html
import importlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from tlstudio import __version__
from tlstudio.core.atomic import write_text_atomic
from tlstudio.core.errors import ImageError, TlsError
from tlstudio.core.project import Project
from tlstudio.core.runs import RunRecord, RunStore

from . import data as data_mod
from .backbones import get_spec
from .runner import RunSpec, evaluate, load_run_model
from .tasks.base import to_image_frame

SPLITS = ("train", "val", "test")
#: longest side of a sample picture in the report, in screen pixels
SAMPLE_SIDE = 220
_HIDDEN_EPOCH_KEYS = ("lr", "duration_s")

_CSS = """
body { font: 14px/1.45 -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
       color: #222; max-width: 1100px; margin: 24px auto; padding: 0 16px; }
h1 { font-size: 24px; margin-bottom: 4px; }
h2 { font-size: 18px; border-bottom: 1px solid #ccc; padding-bottom: 3px; margin-top: 28px; }
.sub { color: #666; margin-top: 0; }
table { border-collapse: collapse; margin: 8px 0; }
th, td { border: 1px solid #d0d0d0; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.note { color: #8a5a00; background: #fff6e0; border: 1px solid #f0d9a0; padding: 6px 10px; }
.grid { display: flex; flex-wrap: wrap; gap: 12px; }
figure { margin: 0; border: 1px solid #ddd; padding: 6px; background: #fafafa;
         break-inside: avoid; page-break-inside: avoid; }
figure img { display: block; max-width: 100%; }
figcaption { font-size: 12px; margin-top: 4px; max-width: 460px; }
.ok { color: #1a7f37; } .bad { color: #c62828; }
img.plot { max-width: 100%; }
code { font-size: 12px; }
@media print { body { margin: 0; max-width: none; } h2 { break-after: avoid; }
               .grid { gap: 6px; } }
"""


class ReportError(TlsError):
    """A report cannot be written (the message says why)."""


def write_report(
    project: Project,
    run_id: int,
    path: str | Path,
    *,
    split: str = "val",
    samples: int = 8,
    heatmaps: bool = True,
) -> Path:
    """Write run ``run_id``'s report to ``path`` (HTML, written atomically); return the path.

    ``split``: the split whose metrics and sample predictions are shown; ``samples``: how
    many of its images are drawn (spread over the split, in id order); ``heatmaps``: add
    class-activation maps of the samples (Grad-CAM where the task has a class score,
    EigenCAM otherwise) when :mod:`tlstudio.ml.explain` can be imported. A section that
    cannot be made (no saved model, empty split, ...) is replaced by a note saying why."""
    if split not in SPLITS:
        raise ReportError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    path = Path(path)
    if not path.parent.is_dir():
        raise ReportError(f"{path.parent}: no such folder to write the report into")
    runs = RunStore(project)
    record = runs.get(run_id)
    spec = RunSpec.from_dict(record.config)
    epochs = runs.epochs(run_id)
    classes = project.classes()

    parts: list[str] = [_header(project, record, spec)]
    parts.append(_section("Configuration", _config_table(record, spec, project)))
    parts.append(_section("Dataset", _dataset_table(project, spec)))
    parts.append(_section("Training curves", _curves(epochs, record)))
    parts.append(_section("Model selection", _selection(record)))

    model = None
    model_note = None
    if record.checkpoint:
        try:
            model, spec = load_run_model(project, run_id)
        except TlsError as exc:
            model_note = f"The run's model cannot be loaded: {exc}"
    else:
        model_note = f"Run {run_id} has no saved model (status {record.status})."

    if model is None:
        parts.append(_section(f"Metrics ({split})", _note(model_note or "")))
    else:
        parts.append(_section(f"Metrics ({split})", _metrics(project, run_id, split, spec)))

    ids = [r.id for r in project.images_in_split(split)]
    picked = _spread(ids, samples)
    if model is None:
        parts.append(_section("Sample predictions", _note(model_note or "")))
    elif not picked:
        parts.append(
            _section("Sample predictions", _note(f"The {split} split has no images to show."))
        )
    else:
        parts.append(
            _section(
                f"Sample predictions ({split})",
                _samples(project, model, spec, picked, classes),
            )
        )
    if heatmaps and model is not None and picked:
        parts.append(_heatmap_section(project, run_id, spec, picked))
    elif heatmaps:
        parts.append(_section("Class-activation heatmaps", _note("No model or no sample images.")))
    parts.append(
        f'<p class="sub">Written by tlstudio {html.escape(__version__)} on '
        f"{html.escape(_now())}.</p>"
    )
    title = f"Run #{record.id} · {spec.task} · {spec.backbone}"
    doc = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        + "\n".join(parts)
        + "\n</body>\n</html>\n"
    )
    write_text_atomic(path, doc)
    return path


# --------------------------------------------------------------------------- pieces


def _now() -> str:
    return datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")


def _when(t: float) -> str:
    return datetime.datetime.fromtimestamp(t).astimezone().strftime("%Y-%m-%d %H:%M %Z")


def _e(v: Any) -> str:
    return html.escape(str(v))


def _section(title: str, body: str) -> str:
    return f"<section>\n<h2>{_e(title)}</h2>\n{body}\n</section>"


def _note(text: str) -> str:
    return f'<p class="note">{_e(text)}</p>'


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if v != v:
            return "nan"
        return f"{v:.4g}"
    return str(v)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]], numeric_from: int = 1) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = []
        for i, v in enumerate(row):
            cls = ' class="num"' if i >= numeric_from and isinstance(v, int | float) else ""
            cells.append(f"<td{cls}>{_e(_fmt(v))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table>\n<tr>{head}</tr>\n" + "\n".join(body) + "\n</table>"


def _header(project: Project, record: RunRecord, spec: RunSpec) -> str:
    title = f"Run #{record.id} — {spec.task} on {spec.backbone}"
    metric = (
        f"best {record.metric_name} {_fmt(record.best_metric)}"
        if record.metric_name and record.best_metric is not None
        else "no best metric recorded"
    )
    duration = f"{record.duration_s:.0f} s" if record.duration_s is not None else "–"
    return (
        f"<h1>{_e(title)}</h1>\n"
        f'<p class="sub">Project <b>{_e(project.root.name)}</b> (<code>{_e(project.root)}</code>)'
        f" · trained {_e(_when(record.created_at))} on {_e(record.device or '?')} in "
        f"{_e(duration)} · status {_e(record.status)} · {_e(metric)} · report "
        f"{_e(_now())}</p>"
        + (_note(f"The run ended with an error: {record.error}") if record.error else "")
    )


def _augment_text(spec: RunSpec) -> str:
    """ "none", or every augmentation setting as name=value."""
    from dataclasses import fields

    aug = spec.augment
    if aug is None or aug.is_off:
        return "none"
    return ", ".join(f"{f.name}={getattr(aug, f.name)}" for f in fields(aug))


def _config_table(record: RunRecord, spec: RunSpec, project: Project) -> str:
    t = spec.train
    rows: list[tuple[str, Any]] = [
        ("task", spec.task),
        ("backbone", spec.backbone),
        ("weights", spec.weights),
        ("freeze", f"{t.freeze} (leading stages kept fixed)"),
        ("epochs", t.epochs),
        ("batch size", t.batch_size),
        ("learning rate", t.lr),
        ("optimizer", t.optimizer),
        ("schedule", t.schedule),
        ("input size", f"{spec.resolved_input_size} × {spec.resolved_input_size} px"),
        ("augmentation", _augment_text(spec)),
        ("seed", t.seed),
        ("device", record.device),
    ]
    if t.early_stopping_patience:
        rows.append(("early stopping patience", t.early_stopping_patience))
    if spec.model_options:
        rows.append(("model options", json.dumps(spec.model_options, sort_keys=True)))
    if spec.task == "landmarks" and spec.template_id is not None:
        with contextlib.suppress(TlsError):
            tpl = project.template(spec.template_id)
            rows.append(("template", f"{tpl.name} ({len(tpl.points)} points)"))
    experiment = record.config.get("experiment")
    if experiment:
        rows.append(("experiment", json.dumps(experiment, sort_keys=True)))
    return _table(["setting", "value"], rows, numeric_from=99)


def _dataset_table(project: Project, spec: RunSpec) -> str:
    """Images per split and, per class, the images carrying it in the run's kind of label."""
    classes = project.classes()
    kind = {
        "classify": "tags",
        "detect": "boxes",
        "segment": "masks",
        "instances": "objects",
        "landmarks": "landmarks",
    }.get(spec.task)
    cols = [*SPLITS, "none"]
    images = dict.fromkeys(cols, 0)
    per_class = {c.id: dict.fromkeys(cols, 0) for c in classes}
    labelled = dict.fromkeys(cols, 0)
    for rec, ann in project.iter_annotations():
        col = rec.split if rec.split in SPLITS else "none"
        images[col] += 1
        present: set[int] = set()
        if kind == "tags":
            present = set(ann.tags)
        elif kind == "boxes":
            present = {b.class_id for b in ann.boxes}
        elif kind == "landmarks":
            sets = [s for s in ann.landmarks if s.template_id == spec.template_id]
            present = {s.class_id for s in sets if s.class_id is not None}
            if sets:
                labelled[col] += 1
        elif kind == "masks" and ann.mask is not None:
            present = {int(v) for v in np.unique(ann.mask) if v}
        elif kind == "objects" and ann.instances is not None:
            present = {o.class_id for o in ann.instances.objects}
        if kind in ("tags", "boxes", "masks", "objects") and present:
            labelled[col] += 1
        for cid in present:
            if cid in per_class:
                per_class[cid][col] += 1
    rows: list[list[Any]] = [["images", *[images[c] for c in cols], sum(images.values())]]
    if kind is not None:
        what = {"tags": "tagged", "boxes": "with boxes", "masks": "with masks",
                "objects": "with objects", "landmarks": "with landmarks"}[kind]  # fmt: skip
        rows.append([f"images {what}", *[labelled[c] for c in cols], sum(labelled.values())])
        for c in classes:
            counts = per_class[c.id]
            if kind == "landmarks" and not any(counts.values()):
                continue
            rows.append([f"class {c.name}", *[counts[k] for k in cols], sum(counts.values())])
    header = ["", "train", "val", "test", "no split", "total"]
    note = (
        f"<p>Class rows count the images whose {kind} include the class."
        if kind
        else "<p>An autoencoder uses every image; it has no classes."
    )
    return _table(header, rows) + note + "</p>"


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100)


def _png_of_figure(fig) -> str:
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _img_tag(b64: str, alt: str, cls: str = "") -> str:
    c = f' class="{cls}"' if cls else ""
    return f'<img{c} alt="{_e(alt)}" src="data:image/png;base64,{b64}">'


def _curves(epochs: list[tuple[int, dict[str, float]]], record: RunRecord) -> str:
    if not epochs:
        return _note("No epochs were recorded for this run.")
    xs = [e + 1 for e, _ in epochs]  # stored 0-based; people count epochs from 1
    keys: list[str] = []
    for _, m in epochs:
        keys += [k for k in m if k not in keys and k not in _HIDDEN_EPOCH_KEYS]
    losses = [k for k in keys if k.endswith("loss")]
    metrics = [k for k in keys if k not in losses]
    fig = _figure(10, 3.4)
    axes = [fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)]
    for ax, names, title in ((axes[0], losses, "loss"), (axes[1], metrics, "metrics")):
        for k in names:
            ys = [m.get(k, float("nan")) for _, m in epochs]
            ax.plot(xs, ys, marker="o", markersize=3, label=k.replace("_", " "))
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        if names:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "none recorded", ha="center", va="center", transform=ax.transAxes)
    best = _best_epoch(epochs, record)
    if best is not None:
        for ax in axes:
            ax.axvline(best, color="#888", linestyle="--", linewidth=1)
    fig.tight_layout()
    caption = "Per-epoch values recorded while training"
    if best is not None:
        caption += f"; the dashed line marks the best epoch ({best}) by {record.metric_name}"
    return (
        f"<figure>{_img_tag(_png_of_figure(fig), 'training curves', 'plot')}"
        f"<figcaption>{_e(caption)}.</figcaption></figure>"
    )


def _best_epoch(epochs: list[tuple[int, dict[str, float]]], record: RunRecord) -> int | None:
    """The best epoch counted from 1 (as the Train panel and the CLI show it), or None."""
    if record.metric_name is None or record.best_metric is None:
        return None
    for e, m in epochs:
        v = m.get(record.metric_name)
        if v is not None and abs(v - record.best_metric) <= 1e-9 * max(1.0, abs(v)):
            return e + 1
    return None


def _metrics(project: Project, run_id: int, split: str, spec: RunSpec) -> str:
    try:
        out = evaluate(project, run_id, split, device="cpu")
    except TlsError as exc:
        return _note(f"No metrics on the {split} split: {exc}")
    summary = out.get("summary", {})
    parts = [
        f"<p>{_e(out.get('images', 0))} images of the {_e(split)} split.</p>",
        _table(["metric", "value"], [[k, v] for k, v in summary.items()]),
    ]
    detail = out.get("detail")
    if detail and "confusion_matrix" in detail:
        names = detail.get("class_names") or []
        parts.append(_confusion_figure(np.asarray(detail["confusion_matrix"]), names))
        rows = [
            [pc["name"], pc["precision"], pc["recall"], pc["f1"], pc["support"], pc["predicted"]]
            for pc in detail.get("per_class", [])
        ]
        parts.append("<h3>Per class</h3>")
        parts.append(_table(["class", "precision", "recall", "F1", "support", "predicted"], rows))
        if detail.get("roc_auc") is None and detail.get("roc_auc_reason"):
            parts.append(f"<p>ROC-AUC: {_e(detail['roc_auc_reason'])}.</p>")
    if out.get("calibration") is not None:
        parts.append("<h3>Calibration</h3>")
        parts.append(_calibration(out["calibration"]))
    parts.append(_by_domain(project, run_id, split))
    return "\n".join(parts)


def _by_domain(project: Project, run_id: int, split: str) -> str:
    """A table of the summary per image domain, when images of the split have one."""
    if not any(r.domain is not None for r in project.images_in_split(split)):
        return ""
    from .evaluation import evaluate_run

    by_domain = evaluate_run(project, run_id, split, device="cpu").by_domain
    if not by_domain:
        return ""
    keys = [k for k in next(iter(by_domain.values())) if k != "images"]
    rows = [[name, int(row["images"]), *[row.get(k) for k in keys]]
            for name, row in by_domain.items()]  # fmt: skip
    return "<h3>Per domain</h3>\n" + _table(["domain", "images", *keys], rows)


def _selection(record: RunRecord) -> str:
    """Which epoch was kept and on what it was picked; the test score, if any."""
    cfg = record.config
    sel, test = cfg.get("selection"), cfg.get("test")
    if not isinstance(sel, dict):
        return _note("This run recorded no selection details (trained before they were kept).")
    parts = []
    if sel.get("epoch") is not None:
        picked_on = sel.get("picked_on")
        how = (
            "its validation metric, measured on the same images"
            if picked_on == "val"
            else picked_on
        )
        parts.append(
            f"<p>Kept epoch {int(sel['epoch']) + 1}, picked by {_e(how)} "
            f"({_e(sel.get('metric'))} {_e(_fmt(sel.get('value')))}). Validation figures of "
            "the kept epoch lean optimistic.</p>"
        )
    if isinstance(test, dict):
        parts.append(f"<p>Test split ({_e(test['label'])}; {int(test['images'])} images):</p>")
        parts.append(_table(["metric", "value"], list(test["metrics"].items())))
    else:
        parts.append(_note("No test score: the project has no labelled test image the run "
                           "did not train or select on."))  # fmt: skip
    return "\n".join(parts)


def _calibration(cal: dict[str, Any]) -> str:
    """ECE before/after the run's temperature and the reliability diagram."""
    shown = [("without temperature", cal["before"]), ("as predicted", cal["after"])]
    shown = [(name, rel) for name, rel in shown if rel is not None]
    t = cal["temperature"]
    text = (
        f"Temperature {t:.3g} (fitted on the val split). "
        if cal["before"] is not None
        else "No temperature was fitted. "
    ) + "; ".join(f"ECE {name}: {rel.ece:.4f}" for name, rel in shown)
    fig = _figure(4.2 * len(shown), 3.6)
    for k, (name, rel) in enumerate(shown):
        ax = fig.add_subplot(1, len(shown), k + 1)
        edges = np.asarray(rel.bin_edges)
        centres, width = (edges[:-1] + edges[1:]) / 2, edges[1] - edges[0]
        acc = [np.nan if a is None else a for a in rel.accuracy]
        ax.bar(centres, acc, width=width * 0.9, color="#4c78a8", label="accuracy")
        ax.plot([0, 1], [0, 1], color="#888", linestyle="--", label="perfectly calibrated")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence")
        ax.set_ylabel("accuracy")
        ax.set_title(f"{name} (ECE {rel.ece:.3f})")
        ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return (
        f"<p>{_e(text)}.</p><figure>{_img_tag(_png_of_figure(fig), 'reliability diagram', 'plot')}"
        "<figcaption>Reliability diagram: for the images in each confidence bin, how often "
        "the predicted class was right.</figcaption></figure>"
    )


def _confusion_figure(cm: np.ndarray, names: Sequence[str]) -> str:
    c = len(cm)
    side = min(9.0, 2.0 + 0.55 * c)
    fig = _figure(side + 1.0, side)
    ax = fig.add_subplot(1, 1, 1)
    rows = cm.sum(axis=1, keepdims=True)
    frac = np.divide(cm, rows, out=np.zeros(cm.shape, float), where=rows > 0)
    im = ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(c), labels=list(names), rotation=45, ha="right")
    ax.set_yticks(range(c), labels=list(names))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if c <= 20:
        for i in range(c):
            for j in range(c):
                ax.text(j, i, str(int(cm[i, j])), ha="center", va="center",
                        color="white" if frac[i, j] > 0.5 else "black", fontsize=9)  # fmt: skip
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    fig.tight_layout()
    return (
        f"<figure>{_img_tag(_png_of_figure(fig), 'confusion matrix', 'plot')}"
        "<figcaption>Confusion matrix: rows are the true classes, columns the predicted "
        "ones; numbers are image counts, colour the fraction of each row.</figcaption></figure>"
    )


# --------------------------------------------------------------------------- samples


def _spread(ids: Sequence[int], n: int) -> list[int]:
    """``n`` ids spread evenly over ``ids`` (all when there are fewer)."""
    ids = list(ids)
    if n <= 0 or not ids:
        return []
    if len(ids) <= n:
        return ids
    pos = np.linspace(0, len(ids) - 1, n).round().astype(int)
    return [ids[i] for i in sorted(set(pos.tolist()))]


def _bgr(color: str) -> tuple[int, int, int]:
    c = color.lstrip("#")
    try:
        r, g, b = int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16)
    except (ValueError, IndexError):
        r, g, b = 230, 60, 60
    return (b, g, r)


def _display(rgb: np.ndarray) -> tuple[np.ndarray, float]:
    """A BGR copy scaled so its longest side is :data:`SAMPLE_SIDE`; and the scale."""
    h, w = rgb.shape[:2]
    scale = SAMPLE_SIDE / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    img = cv2.resize(np.ascontiguousarray(rgb), size, interpolation=interp)
    return cv2.cvtColor(img, cv2.COLOR_RGB2BGR), scale


def _png_b64(bgr: np.ndarray) -> str:
    ok, buf = cv2.imencode(".png", bgr)
    if not ok:
        raise ReportError("could not encode a sample picture as PNG")
    return base64.b64encode(buf.tobytes()).decode("ascii")


def _pt(x: float, y: float, s: float) -> tuple[int, int]:
    return (round(x * s), round(y * s))


def _samples(project, model, spec: RunSpec, ids: list[int], classes) -> str:
    size = spec.resolved_input_size
    bspec = get_spec(spec.backbone)
    mean = torch.tensor(bspec.mean).view(3, 1, 1)
    std = torch.tensor(bspec.std).view(3, 1, 1)
    by_id = {c.id: c for c in classes}
    figures = []
    notes = []
    for image_id in ids:
        try:
            rgb = data_mod.read_rgb(project.image_path(image_id))
        except ImageError as exc:
            notes.append(f"image {image_id}: {exc}")
            continue
        x = torch.from_numpy(data_mod.resize_square(rgb, size)).permute(2, 0, 1).float() / 255.0
        x = ((x - mean) / std)[None]
        with torch.no_grad():
            (pred,) = model.predict_step(x)
        pred = {k: v.detach().cpu() if isinstance(v, torch.Tensor) else v for k, v in pred.items()}
        orig = (int(rgb.shape[0]), int(rgb.shape[1]))
        pred = to_image_frame(pred, (size, size), orig)
        ann = project.annotations(image_id)
        name = project.image(image_id).name
        pictures, caption = _draw(spec, rgb, pred, ann, classes, by_id, project)
        imgs = "".join(_img_tag(_png_b64(p), f"{name} {spec.task}") for p in pictures)
        row = f'<div style="display:flex;gap:4px">{imgs}</div>' if len(pictures) > 1 else imgs
        figures.append(
            f"<figure>{row}<figcaption><b>{_e(name)}</b><br>{caption}</figcaption></figure>"
        )
    legend = _legend(spec.task)
    out = f"<p>{_e(legend)}</p>" + '<div class="grid">' + "\n".join(figures) + "</div>"
    if notes:
        out += _note("Left out: " + "; ".join(notes))
    return out


def _legend(task: str) -> str:
    return {
        "classify": "Caption: the labelled class and the prediction with its probability "
        "(green when they agree, red when not).",
        "detect": "Thin outlines: labelled boxes. Thick boxes with a score: predictions "
        "scoring at least 0.3 (at most 10 per image).",
        "landmarks": "Hollow circles: labelled points. Filled dots joined by the skeleton: "
        "predicted points (dot size grows with confidence).",
        "segment": "Left: the labelled mask; right: the predicted mask, each over the image "
        "in the class colours.",
        "instances": "Left: the labelled objects; right: the predicted objects scoring at "
        "least 0.3 (at most 10 per image), each outlined in its class colour.",
        "autoencode": "Left: the network input; right: its reconstruction. The caption "
        "gives the reconstruction error (mean squared, normalised units).",
    }.get(task, "")


def _draw(spec, rgb, pred, ann, classes, by_id, project) -> tuple[list[np.ndarray], str]:
    """Pictures (BGR) and an HTML caption for one sample."""
    task = spec.task
    img, s = _display(rgb)
    if task == "classify":
        probs = pred["probs"].numpy()
        best = int(np.argmax(probs))
        predicted = classes[best]
        truth = [by_id[t].name for t in ann.tags if t in by_id]
        agree = predicted.id in ann.tags
        cls = "ok" if agree else "bad"
        label = ", ".join(truth) if truth else "unlabelled"
        caption = (
            f"label: {_e(label)}<br>predicted: "
            f'<span class="{cls}">{_e(predicted.name)} ({probs[best]:.2f})</span>'
        )
        cv2.rectangle(img, (0, 0), (img.shape[1] - 1, img.shape[0] - 1),
                      (55, 127, 26) if agree else (40, 40, 198), 3)  # fmt: skip
        return [img], caption
    if task == "detect":
        for b in ann.boxes:
            color = _bgr(by_id[b.class_id].color) if b.class_id in by_id else (255, 255, 255)
            cv2.rectangle(img, _pt(b.x1, b.y1, s), _pt(b.x2, b.y2, s), (255, 255, 255), 3)
            cv2.rectangle(img, _pt(b.x1, b.y1, s), _pt(b.x2, b.y2, s), color, 1)
        kept = 0
        lines = []
        for box, score, lbl in zip(pred["boxes"].tolist(), pred["scores"].tolist(),
                                   pred["labels"].tolist(), strict=True):  # fmt: skip
            if score < 0.3 or kept >= 10:
                continue
            kept += 1
            c = classes[int(lbl)]
            p1, p2 = _pt(box[0], box[1], s), _pt(box[2], box[3], s)
            cv2.rectangle(img, p1, p2, _bgr(c.color), 2)
            cv2.putText(img, f"{score:.2f}", (p1[0] + 2, max(10, p1[1] - 3)),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.4, _bgr(c.color), 1, cv2.LINE_AA)  # fmt: skip
            lines.append(f"{c.name} {score:.2f}")
        caption = f"{len(ann.boxes)} labelled box(es); predicted: " + _e(
            ", ".join(lines) if lines else "nothing scoring ≥ 0.3"
        )
        return [img], caption
    if task == "landmarks":
        tpl = project.template(spec.template_id) if spec.template_id is not None else None
        for lms in ann.landmarks:
            if lms.template_id != spec.template_id:
                continue
            for p in lms.points:
                if p.visibility > 0:
                    cv2.circle(img, _pt(p.x, p.y, s), 5, (255, 255, 255), 2, cv2.LINE_AA)
        kps = pred["keypoints"].tolist()
        if tpl is not None:
            for a, b in tpl.skeleton:
                if a < len(kps) and b < len(kps):
                    cv2.line(img, _pt(kps[a][0], kps[a][1], s), _pt(kps[b][0], kps[b][1], s),
                             (0, 200, 255), 1, cv2.LINE_AA)  # fmt: skip
        for x, y, conf in kps:
            cv2.circle(img, _pt(x, y, s), 2 + round(3 * conf), (0, 140, 255), -1, cv2.LINE_AA)
        mean_conf = float(np.mean([k[2] for k in kps])) if kps else 0.0
        return [img], f"mean confidence {mean_conf:.2f}"
    if task == "segment":
        lut = np.zeros((max([c.id for c in classes], default=0) + 1, 3), np.uint8)
        for c in classes:
            lut[c.id] = _bgr(c.color)
        pos_lut = np.array([0] + [c.id for c in classes], dtype=np.int64)
        pred_ids = pos_lut[pred["mask"].numpy().astype(np.int64)]
        pics = []
        for m in (ann.mask, pred_ids):
            pic = img.copy()
            if m is not None:
                small = cv2.resize(np.asarray(m, np.int32).astype(np.float32),
                                   (img.shape[1], img.shape[0]),
                                   interpolation=cv2.INTER_NEAREST).astype(np.int64)  # fmt: skip
                small = np.clip(small, 0, len(lut) - 1)
                fg = small > 0
                pic[fg] = (0.45 * pic[fg] + 0.55 * lut[small[fg]]).astype(np.uint8)
            pics.append(pic)
        present = sorted({int(v) for v in np.unique(pred_ids) if v})
        names = [by_id[v].name for v in present if v in by_id]
        caption = "labelled mask | predicted: " + _e(", ".join(names) if names else "background")
        if ann.mask is None:
            caption = "no labelled mask | predicted: " + _e(", ".join(names) or "background")
        return pics, caption
    if task == "instances":
        return _draw_objects(img, s, pred, ann, classes, by_id)
    if task == "autoencode":
        bspec = get_spec(spec.backbone)
        rec = pred.get("reconstruction")
        pics = [img]
        if rec is not None:
            r = (
                rec.numpy() * np.asarray(bspec.std)[:, None, None]
                + np.asarray(bspec.mean)[:, None, None]
            )
            r = (np.clip(r, 0, 1) * 255 + 0.5).astype(np.uint8).transpose(1, 2, 0)
            pics.append(_display(r)[0])
        return pics, f"reconstruction error {float(pred['error']):.4f}"
    return [img], ""


def _outline(img: np.ndarray, crop: np.ndarray, x0: int, y0: int, s: float, color) -> None:
    """Draw the outline of ``crop`` (bool pixels of an object at image pixel x0, y0)."""
    contours, _ = cv2.findContours(crop.astype(np.uint8), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_SIMPLE)  # fmt: skip
    for c in contours:
        pts = ((c.reshape(-1, 2) + (x0 + 0.5, y0 + 0.5)) * s).round().astype(np.int32)
        cv2.polylines(img, [pts], True, (255, 255, 255), 3, cv2.LINE_AA)
        cv2.polylines(img, [pts], True, color, 1, cv2.LINE_AA)


def _draw_objects(img, s, pred, ann, classes, by_id) -> tuple[list[np.ndarray], str]:
    labelled, predicted = img.copy(), img.copy()
    layer = ann.instances
    for o in layer.objects if layer is not None else ():
        color = _bgr(by_id[o.class_id].color) if o.class_id in by_id else (255, 255, 255)
        _outline(labelled, layer.map == o.number, 0, 0, s, color)
    lines: list[str] = []
    for obj, score, lbl in zip(pred["objects"], pred["scores"].tolist(),
                               pred["labels"].tolist(), strict=True):  # fmt: skip
        if score < 0.3 or len(lines) >= 10 or not obj.area:
            continue
        c = classes[int(lbl)]
        _outline(predicted, obj.crop, obj.x0, obj.y0, s, _bgr(c.color))
        lines.append(f"{c.name} {score:.2f}")
    n = 0 if layer is None else len(layer.objects)
    caption = f"{n} labelled object(s) | predicted: " + _e(
        ", ".join(lines) if lines else "nothing scoring ≥ 0.3"
    )
    return [labelled, predicted], caption


# --------------------------------------------------------------------------- heatmaps


def _heatmap_section(project: Project, run_id: int, spec: RunSpec, ids: list[int]) -> str:
    title = "Class-activation heatmaps"
    try:
        explain = importlib.import_module("tlstudio.ml.explain")
    except Exception as exc:  # the explainability module is optional here
        return _section(title, _note(f"Left out: tlstudio.ml.explain is not available ({exc})."))
    try:
        explainer = explain.load_explainer(project, run_id)
        methods = tuple(getattr(explainer, "methods", ("gradcam",)))
        method = "gradcam" if "gradcam" in methods else "eigencam"
        figures = []
        for image_id in ids:
            rgb = data_mod.read_rgb(project.image_path(image_id))
            hm = explainer.heatmap(rgb, method)
            values: np.ndarray = np.asarray(hm.values, np.float32)
            if values.shape != rgb.shape[:2]:
                values = cv2.resize(values, (rgb.shape[1], rgb.shape[0]))
            img, _ = _display(rgb)
            v = cv2.resize(values, (img.shape[1], img.shape[0]), interpolation=cv2.INTER_LINEAR)
            heat = cv2.applyColorMap((np.clip(v, 0, 1) * 255).astype(np.uint8), cv2.COLORMAP_JET)
            blend = cv2.addWeighted(img, 0.55, heat, 0.45, 0)
            cap = _e(project.image(image_id).name)
            if getattr(hm, "target", None) is not None and spec.task == "classify":
                cls = project.classes()[int(hm.target)].name
                prob = getattr(hm, "probability", None)
                cap += f"<br>explains: {_e(cls)}" + (f" ({prob:.2f})" if prob is not None else "")
            figures.append(
                f"<figure>{_img_tag(_png_b64(blend), 'heatmap')}<figcaption>{cap}"
                "</figcaption></figure>"
            )
    except Exception as exc:  # a failing explainer must not cost the whole report
        return _section(title, _note(f"Left out: the heatmaps could not be computed ({exc})."))
    label = {"gradcam": "Grad-CAM", "eigencam": "EigenCAM"}[method]
    intro = (
        f"<p>{label} of the backbone's deepest stage for the samples above (red = most "
        "influence on the prediction"
        + (", for the predicted class" if spec.task == "classify" else "")
        + ").</p>"
    )
    return _section(
        f"{title} ({label})", intro + '<div class="grid">' + "".join(figures) + "</div>"
    )


# --------------------------------------------------------------------------- output
