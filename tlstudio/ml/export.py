"""Export a trained run as a standalone model file (ONNX or TorchScript) with a JSON sidecar,
and run such a file again without the project (:class:`ExportedModel`).

The exported graph takes one float32 tensor ``image`` N×3×S×S: RGB images resized to
S×S (S = the run's input size; plain resize, aspect ratio not kept), scaled to 0..1 and
normalised with the backbone's mean/std. It returns the task's raw outputs, in
network-input pixels (continuous frame: origin at the top-left corner of the top-left
pixel):

- classify:   ``probs`` N×C (softmax; per-class sigmoid for multi-label projects)
- segment:    ``probs`` N×(C+1)×S×S softmax per pixel (channel 0 = background,
  channel i + 1 = class i)
- landmarks:  ``heatmaps`` N×P×h×w and ``keypoints`` N×P×3 (x, y, confidence in [0, 1])
- autoencode: ``reconstruction`` N×3×S×S (normalised input space), ``latent`` N×D and
  ``error`` N (mean squared reconstruction error, normalised units)
- detect:     ``boxes`` K×4 xyxy, ``scores`` K, ``labels`` K (class index 0..C-1), sorted
  by score, for a batch of exactly one image (N = 1)

Class index i is the i-th entry of the sidecar's ``classes`` list (the project's class
order). ONNX files are written by ``torch.onnx.export(dynamo=True)`` with a dynamic batch
axis; detectors go through the TorchScript-based exporter (``dynamo=False``), the path
torchvision's detection models support, because ``torch.export`` cannot trace their
data-dependent box filtering. TorchScript files are ``torch.jit.trace`` archives.

The sidecar is the model file's name plus ``.json`` (``model.onnx`` → ``model.onnx.json``).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from tlstudio import __version__
from tlstudio.core.atomic import replacing, write_text_atomic
from tlstudio.core.errors import ImageError, TlsError
from tlstudio.core.project import Project
from tlstudio.core.runs import RunStore

from . import data as data_mod
from .backbones import get_spec
from .data import read_rgb
from .runner import RunSpec, load_run_model
from .tasks.base import TaskModel, to_image_frame
from .tasks.landmarks import decode_heatmaps

FORMATS = ("onnx", "torchscript")
SUFFIXES = {"onnx": ".onnx", "torchscript": ".pt"}
SIDECAR_FORMAT = "tlstudio-exported-model"
SIDECAR_VERSION = 1
#: largest allowed |exported − PyTorch| / max(1, max |PyTorch|) per output (so 1e-4 absolute
#: for probabilities, and 1e-4 of the value range for pixel coordinates or logits)
CHECK_TOLERANCE = 1e-4
CHECK_IMAGES = 3

#: output names and meanings per task (shapes: N images, C classes, P points, D latent)
OUTPUTS: dict[str, list[dict[str, str]]] = {
    "classify": [
        {
            "name": "probs",
            "shape": "N×C",
            "meaning": "class probabilities (softmax; per-class sigmoid when multi_label)",
        }
    ],
    "segment": [
        {
            "name": "probs",
            "shape": "N×(C+1)×S×S",
            "meaning": "per-pixel softmax; channel 0 = background, channel i+1 = classes[i]",
        }
    ],
    "landmarks": [
        {
            "name": "heatmaps",
            "shape": "N×P×h×w",
            "meaning": "one heatmap per template point; cell u covers input pixels "
            "[u·stride, (u+1)·stride)",
        },
        {
            "name": "keypoints",
            "shape": "N×P×3",
            "meaning": "decoded points (x, y, confidence): x, y in input pixels "
            "(continuous frame), confidence = heatmap peak in [0, 1]",
        },
    ],
    "autoencode": [
        {
            "name": "reconstruction",
            "shape": "N×3×S×S",
            "meaning": "reconstructed input in normalised space (undo with x·std + mean)",
        },
        {"name": "latent", "shape": "N×D", "meaning": "latent code (μ for a VAE)"},
        {
            "name": "error",
            "shape": "N",
            "meaning": "mean squared reconstruction error per image (normalised units)",
        },
    ],
    "detect": [
        {"name": "boxes", "shape": "K×4", "meaning": "x1, y1, x2, y2 in input pixels"},
        {"name": "scores", "shape": "K", "meaning": "detection scores in [0, 1], descending"},
        {"name": "labels", "shape": "K", "meaning": "class index 0..C-1 into classes"},
    ],
}


class ExportError(TlsError):
    """A run cannot be exported, or an exported model cannot be loaded or run (the message
    says why)."""


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_model` wrote. ``max_abs_diff``: the largest absolute difference
    between the exported file's outputs and PyTorch's on real project images (None when
    not checked); ``diffs`` per output; ``checked_images`` how many images were compared;
    ``export_s`` seconds spent exporting (without the check)."""

    path: Path
    sidecar_path: Path
    max_abs_diff: float | None
    format: str
    diffs: dict[str, float] = field(default_factory=dict)
    checked_images: int = 0
    export_s: float = 0.0


def sidecar_path(path: str | Path) -> Path:
    """The sidecar of a model file: its name plus ``.json``."""
    p = Path(path)
    return p.with_name(p.name + ".json")


# --------------------------------------------------------------------------- graphs


class _ClassifyGraph(nn.Module):
    def __init__(self, model: TaskModel):
        super().__init__()
        self.model = model

    def forward(self, image: Tensor) -> tuple[Tensor]:
        return (self.model.probabilities(self.model(image)),)


class _SegmentGraph(nn.Module):
    def __init__(self, model: TaskModel):
        super().__init__()
        self.model = model

    def forward(self, image: Tensor) -> tuple[Tensor]:
        return (torch.softmax(self.model(image), dim=1),)


class _LandmarkGraph(nn.Module):
    def __init__(self, model: TaskModel):
        super().__init__()
        self.model = model

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor]:
        heat = self.model(image)
        return heat, decode_heatmaps(heat, self.model.heatmap_stride)


class _AutoencodeGraph(nn.Module):
    def __init__(self, model: TaskModel, size: int):
        super().__init__()
        self.model = model
        self.size = int(size)

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        mu, _ = self.model.encode(image)  # eval mode decodes from μ, as predict_step does
        recon = self.model.decode(mu, (self.size, self.size))
        error = ((recon - image) ** 2).flatten(1).mean(dim=1)
        return recon, mu, error


class _DetectGraph(nn.Module):
    """One image (1×3×S×S) → boxes, scores, labels 0..C-1, sorted by descending score."""

    def __init__(self, model: TaskModel):
        super().__init__()
        self.model = model

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        det = self.model.detector([image[0]])[0]
        order = det["scores"].argsort(descending=True)
        labels = det["labels"][order] + self.model._label_offset - 1
        return det["boxes"][order], det["scores"][order], labels


def _graph(model: TaskModel, spec: RunSpec) -> nn.Module:
    task = spec.task
    if task == "classify":
        return _ClassifyGraph(model).eval()
    if task == "segment":
        return _SegmentGraph(model).eval()
    if task == "landmarks":
        return _LandmarkGraph(model).eval()
    if task == "autoencode":
        return _AutoencodeGraph(model, spec.resolved_input_size).eval()
    if task == "detect":
        return _DetectGraph(model).eval()
    raise ExportError(f"cannot export task {task!r}")


# --------------------------------------------------------------------------- export


def export_model(
    project: Project,
    run_id: int,
    path: str | Path,
    format: str = "onnx",
    *,
    opset: int | None = None,
    check: bool = True,
) -> ExportResult:
    """Export run ``run_id``'s model to ``path`` (ONNX or TorchScript) and write the sidecar
    ``<path>.json`` (see the module docstring for inputs and outputs).

    ``opset``: the ONNX opset (default: the exporter's recommended one; ignored for
    TorchScript). ``check``: run the exported file (onnxruntime / ``torch.jit.load``) on up
    to 3 real project images and compare with the PyTorch model; raise
    :class:`ExportError` if an output differs by more than :data:`CHECK_TOLERANCE`
    relative to max(1, its largest magnitude). Both files are written atomically (a
    temporary file, then rename); nothing is left at ``path`` when anything fails."""
    if format not in FORMATS:
        raise ExportError(f"unknown export format {format!r}; use one of {', '.join(FORMATS)}")
    path = Path(path)
    if not path.parent.is_dir():
        raise ExportError(f"{path.parent}: no such folder to export into")
    record = RunStore(project).get(run_id)
    model, spec = load_run_model(project, run_id)
    model = model.float().eval()
    graph = _graph(model, spec)
    size = spec.resolved_input_size
    images = _sample_images(project, spec, CHECK_IMAGES + 1)
    if check and not images:
        raise ExportError(
            f"run {run_id}: no readable project image to check the export against "
            "(export with check=False to skip the check)"
        )
    if not images:  # an unchecked export still needs an example input to trace with
        images = [np.full((size, size, 3), 127, np.uint8)] * 2
    batch = _normalise(images, spec)
    example = batch[:1] if spec.task == "detect" else _pad_batch(batch[:2], 2)
    outputs = [o["name"] for o in OUTPUTS[spec.task]]

    with replacing(path) as tmp:
        t0 = time.perf_counter()
        if format == "onnx":
            _export_onnx(graph, example, tmp, outputs, opset, detect=spec.task == "detect")
        else:
            _export_torchscript(graph, example, tmp)
        export_s = time.perf_counter() - t0
        diffs: dict[str, float] = {}
        checked = 0
        if check:
            # a batch size other than the traced one, so a baked-in batch size shows up
            check_batch = batch[-CHECK_IMAGES:] if len(batch) > 2 else batch
            diffs = _check(graph, tmp, format, check_batch, outputs, spec.task)
            checked = len(check_batch)
        info = _sidecar(project, record, spec, model, format, path.name)
        info["check"] = (
            {"images": checked, "max_abs_diff": max(diffs.values()), "per_output": diffs}
            if check
            else None
        )
        side = sidecar_path(path)
        write_text_atomic(side, json.dumps(info, indent=1, ensure_ascii=False))
    return ExportResult(
        path=path,
        sidecar_path=side,
        max_abs_diff=max(diffs.values()) if diffs else None,
        format=format,
        diffs=diffs,
        checked_images=checked,
        export_s=export_s,
    )


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the exporters' deprecation and tracer warnings (the export is checked
    numerically instead)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _export_onnx(
    graph: nn.Module,
    example: Tensor,
    path: Path,
    outputs: list[str],
    opset: int | None,
    *,
    detect: bool,
) -> None:
    try:
        with torch.no_grad(), _quiet():
            if detect:
                torch.onnx.export(
                    graph, (example,), str(path), input_names=["image"],
                    output_names=outputs, opset_version=opset or 17, dynamo=False,
                )  # fmt: skip
            else:
                batch = torch.export.Dim("batch", min=1, max=4096)
                program = torch.onnx.export(
                    graph, (example,), None, input_names=["image"], output_names=outputs,
                    opset_version=opset, dynamo=True, dynamic_shapes=({0: batch},),
                    verbose=False,
                )  # fmt: skip
                program.save(str(path), external_data=False)
    except Exception as exc:
        how = "TorchScript-based exporter (torchvision detection)" if detect else "torch.export"
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportError(f"ONNX export failed in the {how}: {reason[:500]}") from exc


def _export_torchscript(graph: nn.Module, example: Tensor, path: Path) -> None:
    try:
        with torch.no_grad(), _quiet():
            traced = torch.jit.trace(graph, (example,), check_trace=False, strict=False)
            torch.jit.save(traced, str(path))
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportError(f"TorchScript export (torch.jit.trace) failed: {reason[:500]}") from exc


def _check(
    graph: nn.Module, path: Path, format: str, batch: Tensor, outputs: list[str], task: str
) -> dict[str, float]:
    """Largest |exported − PyTorch| per output over ``batch`` (one image at a time for
    detection); raises ExportError beyond the tolerance or on a shape mismatch."""
    runner = _load_runtime(path, format, threads=torch.get_num_threads())
    chunks = [batch[i : i + 1] for i in range(len(batch))] if task == "detect" else [batch]
    diffs = dict.fromkeys(outputs, 0.0)
    for n, x in enumerate(chunks):
        got = runner(x.numpy())
        with torch.no_grad():
            want = [t.detach().numpy() for t in graph(x)]
        if len(got) != len(want):
            raise ExportError(f"the exported model returns {len(got)} outputs, not {len(want)}")
        if task == "detect":
            got, want = _align_detections(got, want, *_cut_offs(graph.model), n)
        for name, g, w in zip(outputs, got, want, strict=True):
            if g.shape != w.shape:
                where = f" on check image {n + 1}" if task == "detect" else ""
                raise ExportError(
                    f"exported output {name!r} has shape {g.shape} where PyTorch gives "
                    f"{w.shape}{where}: the export is not reliable"
                )
            if not g.size:
                continue
            diff = float(np.abs(g.astype(np.float64) - w.astype(np.float64)).max())
            scale = max(1.0, float(np.abs(w).max()))
            if not diff <= CHECK_TOLERANCE * scale:
                raise ExportError(
                    f"exported output {name!r} differs from PyTorch by {diff:.3g} "
                    f"(allowed {CHECK_TOLERANCE * scale:.3g}): the export is not reliable"
                )
            diffs[name] = max(diffs[name], diff)
    return diffs


def pair_detections(
    boxes_a: np.ndarray, labels_a: np.ndarray, boxes_b: np.ndarray, labels_b: np.ndarray
) -> np.ndarray:
    """The order of detections A that lines them up with detections B (same count): the
    assignment with the smallest total box distance, labels forced to agree where they
    can. Detections with equal scores may come out of a sort in either order, so outputs
    are compared after pairing, not position by position."""
    from scipy.optimize import linear_sum_assignment

    if len(boxes_a) == 0:
        return np.zeros(0, dtype=np.int64)
    cost = np.abs(boxes_b[:, None, :] - boxes_a[None, :, :]).max(axis=2).astype(np.float64)
    cost += 1e6 * (labels_b[:, None] != labels_a[None, :])
    rows, cols = linear_sum_assignment(cost)
    return cols[np.argsort(rows)]


def _cut_offs(model: nn.Module) -> tuple[float, int]:
    """(score threshold, detections-per-image cap) of a DetectorModel."""
    det = model.detector
    heads = getattr(det, "roi_heads", None)  # Faster R-CNN keeps them on its RoI heads
    thresh = getattr(det, "score_thresh", None) or getattr(heads, "score_thresh", 0.0)
    cap = getattr(det, "detections_per_img", None) or getattr(heads, "detections_per_img", 0)
    return float(thresh), int(cap)


def _align_detections(
    got: list[np.ndarray], want: list[np.ndarray], min_score: float, cap: int, n: int
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Exported and PyTorch detections (boxes, scores, labels) of one image, paired up.

    A detection only one side returns is excused when its score lies within
    :data:`CHECK_TOLERANCE` of the score cut-off (``min_score``, or that side's lowest score
    when it holds ``cap`` detections): a float rounding difference decides such borderline
    cases. Any other unpaired detection makes the export unreliable."""
    from scipy.optimize import linear_sum_assignment

    gb, wb = got[0].reshape(-1, 4), want[0].reshape(-1, 4)
    gi = wi = np.zeros(0, dtype=np.int64)
    if len(gb) and len(wb):
        cost = np.abs(wb[:, None, :] - gb[None, :, :]).max(axis=2).astype(np.float64)
        cost += 1e6 * (want[2][:, None] != got[2][None, :])
        wi, gi = linear_sum_assignment(cost)
        ok = cost[wi, gi] < 1e6
        wi, gi = wi[ok], gi[ok]
    for side, sc, used, total in (
        ("exported", got[1], gi, len(gb)),
        ("PyTorch", want[1], wi, len(wb)),
    ):
        extra = np.setdiff1d(np.arange(total), used)
        near = np.abs(sc[extra] - min_score) <= CHECK_TOLERANCE
        if total >= cap > 0:  # the cap cut this list: its lowest scores are borderline too
            near |= np.abs(sc[extra] - sc.min()) <= CHECK_TOLERANCE
        if not near.all():
            raise ExportError(
                f"the exported detector returns {len(gb)} boxes where PyTorch returns "
                f"{len(wb)} on check image {n + 1} ({side} has unmatched boxes scoring "
                f"{', '.join(f'{v:.3f}' for v in sc[extra][:3])}): the export is not reliable"
            )
    order = np.argsort(wi)
    return [g[gi[order]] for g in got], [w[wi[order]] for w in want]


# --------------------------------------------------------------------------- sidecar


def _iso(t: float) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.UTC).isoformat(timespec="seconds")


def _run_summary(runs: RunStore, run_id: int, metric: str | None, higher: bool) -> dict:
    """Metrics of the best epoch (by the run's metric), else of the last epoch."""
    epochs = runs.epochs(run_id)
    if not epochs:
        return {}
    scored = [(e, m) for e, m in epochs if metric and metric in m]
    if scored:
        pick = (max if higher else min)(scored, key=lambda em: em[1][metric])
    else:
        pick = epochs[-1]
    hidden = ("lr", "duration_s")
    return {"epoch": pick[0], **{k: v for k, v in pick[1].items() if k not in hidden}}


def _sidecar(
    project: Project, record, spec: RunSpec, model: TaskModel, format: str, file_name: str
) -> dict[str, Any]:
    bspec = get_spec(spec.backbone)
    size = spec.resolved_input_size
    template = None
    if spec.task == "landmarks" and spec.template_id is not None:
        t = project.template(spec.template_id)
        template = {
            "id": t.id,
            "name": t.name,
            "points": list(t.points),
            "skeleton": [list(e) for e in t.skeleton],
            "flip_pairs": [list(e) for e in t.flip_pairs],
            "heatmap_stride": int(model.heatmap_stride),
        }
    input_shape: list[Any] = [1 if spec.task == "detect" else "N", 3, size, size]
    runs = RunStore(project)
    return {
        "format": SIDECAR_FORMAT,
        "format_version": SIDECAR_VERSION,
        "tlstudio_version": __version__,
        "torch_version": torch.__version__,
        "model_format": format,
        "file": file_name,
        "exported_at": _iso(time.time()),
        "task": spec.task,
        "multi_label": bool(spec.task == "classify" and project.multi_label),
        "project": {"name": project.root.name},
        "run": {
            "id": record.id,
            "created_at": _iso(record.created_at),
            "status": record.status,
            "backbone": spec.backbone,
            "weights": spec.weights,
            "device": record.device,
            "duration_s": record.duration_s,
            "metric_name": record.metric_name,
            "best_metric": record.best_metric,
            "summary": _run_summary(
                runs, record.id, record.metric_name, bool(model.higher_is_better)
            ),
            "config": record.config,
        },
        "classes": [
            {"index": i, "id": c.id, "name": c.name, "color": c.color}
            for i, c in enumerate(project.classes())
        ],
        "template": template,
        "preprocessing": {
            "input_size": size,
            "resize": "plain resize to input_size × input_size (aspect ratio not kept): "
            "area averaging when shrinking, bilinear otherwise",
            "channel_order": "RGB",
            "layout": "NCHW",
            "dtype": "float32",
            "value_scale": "0..1 (uint8 / 255)",
            "mean": list(bspec.mean),
            "std": list(bspec.std),
            "normalise": "(x - mean) / std per channel, after scaling to 0..1",
            "grey_images": "repeated into 3 channels; alpha dropped",
        },
        "input": {"name": "image", "shape": input_shape},
        "outputs": [dict(o) for o in OUTPUTS[spec.task]],
        "coordinates": "network-input pixels, origin at the top-left corner of the "
        "top-left pixel; scale x by width/input_size and y by height/input_size for "
        "image pixels",
    }


# --------------------------------------------------------------------------- images


def _sample_images(project: Project, spec: RunSpec, n: int) -> list[np.ndarray]:
    """Up to ``n`` readable project images (val split first), size × size RGB uint8."""
    size = spec.resolved_input_size
    order: list[int] = []
    for split in ("val", "test", "train"):
        order += [r.id for r in project.images_in_split(split)]
    seen = set(order)
    order += [i for i in project.image_ids() if i not in seen]
    out = []
    for image_id in order:
        try:
            rgb, _ = data_mod.load_input_image(project.image_path(image_id), size)
        except ImageError:
            continue
        out.append(rgb)
        if len(out) == n:
            break
    return out


def _normalise(images: Sequence[np.ndarray], spec_or_pre: RunSpec | dict) -> Tensor:
    """size × size × 3 uint8 RGB images → normalised float32 N×3×S×S."""
    if isinstance(spec_or_pre, RunSpec):
        b = get_spec(spec_or_pre.backbone)
        mean, std = b.mean, b.std
    else:
        mean, std = spec_or_pre["mean"], spec_or_pre["std"]
    m = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
    xs = [(torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1).float() / 255.0 - m) / s
          for a in images]  # fmt: skip
    return torch.stack(xs)


def _pad_batch(x: Tensor, n: int) -> Tensor:
    """``x`` repeated to at least ``n`` images (a dynamic batch axis needs an example > 1)."""
    while len(x) < n:
        x = torch.cat([x, x[: n - len(x)]])
    return x


# --------------------------------------------------------------------------- runtime


def _load_runtime(path: Path, format: str, threads: int | None = None) -> Callable:
    """A function: float32 N×3×S×S array → list of output arrays."""
    if format == "onnx":
        try:
            import onnxruntime as ort
        except ImportError as exc:  # declared dependency; a broken install says so
            raise ExportError(f"onnxruntime is needed to run {path.name} ({exc})") from exc
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if threads:
            opts.intra_op_num_threads = int(threads)
            opts.inter_op_num_threads = 1
        try:
            session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise ExportError(f"{path}: not a loadable ONNX model ({exc})") from exc
        name = session.get_inputs()[0].name

        def run_onnx(x: np.ndarray) -> list[np.ndarray]:
            return list(session.run(None, {name: np.ascontiguousarray(x, dtype=np.float32)}))

        return run_onnx
    if format == "torchscript":
        try:
            with warnings.catch_warnings():  # TorchScript is deprecated in torch 2.x, still works
                warnings.simplefilter("ignore", FutureWarning)
                module = torch.jit.load(str(path), map_location="cpu").eval()
        except Exception as exc:
            raise ExportError(f"{path}: not a loadable TorchScript model ({exc})") from exc

        def run_ts(x: np.ndarray) -> list[np.ndarray]:
            with torch.no_grad():
                out = module(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))
            if isinstance(out, Tensor):
                out = (out,)
            return [t.detach().cpu().numpy() for t in out]

        return run_ts
    raise ExportError(f"unknown model format {format!r}")


class ExportedModel:
    """An exported model file and its sidecar, ready to predict on RGB images.

    :meth:`predict` returns the payloads ``runner.predict`` stores, in image pixels, with
    class *names* (``"class"``) beside the database ids (``"class_id"``) of the project the
    model came from; class-keyed dicts use names:

    - classify:   {"class", "class_id", "score", "probs": {name: p}}
    - detect:     {"boxes": [{"class", "class_id", "score", "xyxy": [x1, y1, x2, y2]}],
      "score"} (score = best box score, 0 without boxes)
    - landmarks:  {"points": [[x, y, confidence], ...] in template order, "names": point
      names, "score"} (score = mean confidence)
    - segment:    {"classes": [names present], "mask": H×W uint16, "score": None}; mask
      value 0 = background, k = ``classes[k - 1]`` (1-based position in the sidecar's
      class list, not a database id)
    - autoencode: {"latent": [...], "error": float, "score"} (score = error)
    """

    def __init__(self, path: Path, info: dict[str, Any], run: Callable):
        self.path = path
        self.info = info
        self._run = run
        self.task: str = info["task"]
        self.format: str = info["model_format"]
        self.input_size: int = int(info["preprocessing"]["input_size"])
        self.classes: list[dict[str, Any]] = list(info.get("classes") or [])
        self.class_names: list[str] = [c["name"] for c in self.classes]
        self.outputs: list[str] = [o["name"] for o in info["outputs"]]

    @classmethod
    def load(cls, path: str | Path, *, threads: int | None = None) -> ExportedModel:
        """Open ``path`` (.onnx through onnxruntime on the CPU, anything else as TorchScript,
        unless the sidecar says otherwise) and its sidecar ``<path>.json``. ``threads``:
        onnxruntime intra-op threads (default: its own choice). Only load files you trust:
        a TorchScript archive is code."""
        path = Path(path)
        if not path.is_file():
            raise ExportError(f"{path}: no such model file")
        side = sidecar_path(path)
        if not side.is_file():
            raise ExportError(
                f"{side}: the model's sidecar is missing; keep the .json written next to the "
                "model file by tlstudio export-model"
            )
        try:
            info = json.loads(side.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ExportError(f"{side}: not a readable sidecar ({exc})") from exc
        if not isinstance(info, dict) or info.get("format") != SIDECAR_FORMAT:
            raise ExportError(f"{side}: not a tlstudio model sidecar")
        if int(info.get("format_version", 0)) > SIDECAR_VERSION:
            raise ExportError(
                f"{side}: written by a newer tlstudio (sidecar version "
                f"{info.get('format_version')}); update tlstudio"
            )
        if info.get("task") not in OUTPUTS:
            raise ExportError(f"{side}: unknown task {info.get('task')!r}")
        fmt = info.get("model_format") or (
            "onnx" if path.suffix.lower() == ".onnx" else "torchscript"
        )
        return cls(path, info, _load_runtime(path, fmt, threads))

    # -- running -------------------------------------------------------------
    def preprocess(self, rgb_images: Sequence[np.ndarray]) -> np.ndarray:
        """H×W×3 uint8 RGB images (any size; H×W grey is repeated into 3 channels) →
        the model input N×3×S×S float32, resized and normalised as the sidecar says."""
        resized = []
        for i, a in enumerate(rgb_images):
            a = np.asarray(a)
            if a.ndim == 2:
                a = np.repeat(a[..., None], 3, axis=2)
            if a.ndim != 3 or a.shape[2] not in (3, 4) or a.dtype != np.uint8:
                raise ExportError(
                    f"image {i}: expected H×W×3 uint8 RGB, got {a.dtype} {tuple(a.shape)}"
                )
            resized.append(data_mod.resize_square(np.ascontiguousarray(a[..., :3]),
                                                  self.input_size))  # fmt: skip
        if not resized:
            return np.zeros((0, 3, self.input_size, self.input_size), np.float32)
        return _normalise(resized, self.info["preprocessing"]).numpy()

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Raw outputs (name → array) for a preprocessed batch N×3×S×S (N = 1 for detect)."""
        if self.task == "detect" and len(batch) != 1:
            raise ExportError("an exported detector takes one image at a time (N = 1)")
        return dict(zip(self.outputs, self._run(batch), strict=True))

    def predict(
        self, rgb_images: Sequence[np.ndarray], *, batch_size: int = 16
    ) -> list[dict[str, Any]]:
        """Decoded predictions per image, coordinates in each image's own pixels (see the
        class docstring for the keys)."""
        images = list(rgb_images)
        out: list[dict[str, Any]] = []
        step = 1 if self.task == "detect" else max(1, int(batch_size))
        for start in range(0, len(images), step):
            chunk = images[start : start + step]
            raw = self.run(self.preprocess(chunk))
            for k, img in enumerate(chunk):
                orig = (int(np.asarray(img).shape[0]), int(np.asarray(img).shape[1]))
                out.append(self._decode(raw, k, orig))
        return out

    def predict_files(self, paths: Sequence[str | Path], *, batch_size: int = 16) -> list[dict]:
        """:meth:`predict` on image files, read as training reads them (see :func:`read_rgb`)."""
        return self.predict([read_rgb(p) for p in paths], batch_size=batch_size)

    # -- decoding ------------------------------------------------------------
    def _decode(self, raw: dict[str, np.ndarray], k: int, orig: tuple[int, int]) -> dict:
        s = (self.input_size, self.input_size)
        names, ids = self.class_names, [c.get("id") for c in self.classes]
        if self.task == "classify":
            probs = raw["probs"][k].astype(float).tolist()
            best = int(np.argmax(probs))
            return {"class": names[best], "class_id": ids[best], "score": float(max(probs)),
                    "probs": dict(zip(names, probs, strict=True))}  # fmt: skip
        if self.task == "detect":
            pred = to_image_frame({"boxes": torch.from_numpy(raw["boxes"].reshape(-1, 4))}, s, orig)
            boxes = [
                {
                    "class": names[int(lbl)],
                    "class_id": ids[int(lbl)],
                    "score": float(sc),
                    "xyxy": [float(v) for v in b],
                }  # fmt: skip
                for b, sc, lbl in zip(
                    pred["boxes"].tolist(),
                    raw["scores"].tolist(),
                    raw["labels"].tolist(),
                    strict=True,
                )  # fmt: skip
            ]
            return {"boxes": boxes, "score": max((b["score"] for b in boxes), default=0.0)}
        if self.task == "landmarks":
            kp = torch.from_numpy(np.ascontiguousarray(raw["keypoints"][k]))
            pts = to_image_frame({"keypoints": kp}, s, orig)["keypoints"].tolist()
            pts = [[float(x), float(y), float(c)] for x, y, c in pts]
            template = self.info.get("template") or {}
            return {"points": pts, "names": list(template.get("points", [])),
                    "score": float(np.mean([p[2] for p in pts])) if pts else None}  # fmt: skip
        if self.task == "segment":
            mask = torch.from_numpy(raw["probs"][k].argmax(0))
            full = to_image_frame({"mask": mask}, s, orig)["mask"].numpy().astype(np.uint16)
            present = sorted(int(v) for v in np.unique(full) if v)
            return {"classes": [names[v - 1] for v in present], "mask": full, "score": None}
        if self.task == "autoencode":
            err = float(raw["error"][k])
            return {"latent": [float(v) for v in raw["latent"][k].tolist()], "error": err,
                    "score": err}  # fmt: skip
        raise ExportError(f"unknown task {self.task!r}")
