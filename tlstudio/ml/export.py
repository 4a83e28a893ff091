"""Export a trained run as a standalone model file (ONNX or TorchScript) with a JSON sidecar.
Running such a file again, without the project and without torch, is
:class:`tlstudio.runtime.ExportedModel`'s job; the export is checked through it.

The exported graph takes one float32 tensor ``image`` N×3×S×S: RGB images resized to
S×S (S = the run's input size; plain resize, aspect ratio not kept), scaled to 0..1 and
normalised with the backbone's mean/std. It returns the task's raw outputs, in
network-input pixels (continuous frame: origin at the top-left corner of the top-left
pixel):

- classify:   ``probs`` N×C (softmax; per-class sigmoid for multi-label projects) of the
  logits divided by the run's calibration temperature (part of the graph; the sidecar's
  ``run.config.calibration`` records it)
- segment:    ``probs`` N×(C+1)×S×S softmax per pixel (channel 0 = background,
  channel i + 1 = class i)
- landmarks:  ``heatmaps`` N×P×h×w and ``keypoints`` N×P×3 (x, y, confidence in [0, 1])
- autoencode: ``reconstruction`` N×3×S×S (normalised input space), ``latent`` N×D and
  ``error`` N (mean squared reconstruction error, normalised units)
- several tasks (a multi-task run, "classify,landmarks"): each task's outputs in task
  order, named ``<task>_<name>`` ("classify_probs", "landmarks_keypoints")
- detect:     ``boxes`` K×4 xyxy, ``scores`` K, ``labels`` K (class index 0..C-1), sorted
  by score, for a batch of exactly one image (N = 1)
- instances:  detect's three outputs and ``mask_probs`` K×M×M, each object's probability
  grid over its box (pasted into the image by :mod:`tlstudio.runtime.objects`), N = 1

An ensemble run exports as one graph holding every member (classify, segment: the mean
of their probabilities; landmarks: the mean heatmaps). A detector ensemble's graph runs
every member and returns each one's boxes, scores and labels (``boxes_0, scores_0,
labels_0, boxes_1, …``); the sidecar's ``"ensemble": {"members": K, "combine": "wbf" |
"nms", "iou": 0.55}`` tells :mod:`tlstudio.runtime.decode` to merge them with the
ensemble's own rule (:mod:`tlstudio.runtime.fusion`), which needs no torch.

Class index i is the i-th entry of the sidecar's ``classes`` list (the project's class
order). ONNX files are written by ``torch.onnx.export(dynamo=True)`` with a dynamic batch
axis; detectors go through the TorchScript-based exporter (``dynamo=False``), the path
torchvision's detection models support, because ``torch.export`` cannot trace their
data-dependent box filtering. TorchScript files are ``torch.jit.trace`` archives: programs,
which the runtime runs only when the caller trusts them (:func:`torchscript_runner`).

The sidecar is the model file's name plus ``.json`` (``model.onnx`` → ``model.onnx.json``).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from tlstudio import __version__
from tlstudio.core.atomic import replacing, write_text_atomic
from tlstudio.core.errors import ImageError
from tlstudio.core.project import Project
from tlstudio.core.runs import RunStore
from tlstudio.runtime import ExportError, Sidecar, sidecar_path
from tlstudio.runtime.images import normalise
from tlstudio.runtime.loader import Runner, open_runner
from tlstudio.runtime.sidecar import (
    ONE_IMAGE_TASKS,
    SIDECAR_FORMAT,
    SIDECAR_VERSION,
    output_specs,
    parse_sidecar,
)

from . import data as data_mod
from .backbones import get_spec
from .ensemble import FUSION_IOU, Probabilistic, ensemble_combine, heatmap_stride_of
from .runner import RunSpec, load_run_model
from .tasks.autoencode import AutoencoderModel
from .tasks.base import TaskModel
from .tasks.landmarks import decode_heatmaps

if TYPE_CHECKING:
    from .tasks.detect import DetectorModel

FORMATS = ("onnx", "torchscript")
SUFFIXES = {"onnx": ".onnx", "torchscript": ".pt"}
#: largest allowed |exported − PyTorch| / max(1, max |PyTorch|) per output (so 1e-4 absolute
#: for probabilities, and 1e-4 of the value range for pixel coordinates or logits)
CHECK_TOLERANCE = 1e-4
CHECK_IMAGES = 3


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


# --------------------------------------------------------------------------- graphs


class _ClassifyGraph(nn.Module):
    def __init__(self, model: TaskModel):
        super().__init__()
        if not isinstance(model, Probabilistic):
            raise ExportError(f"a classify run's model is a {type(model).__name__}")
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
        self.heatmap_stride = heatmap_stride_of(model)

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor]:
        heat = self.model(image)
        return heat, decode_heatmaps(heat, self.heatmap_stride)


class _AutoencodeGraph(nn.Module):
    def __init__(self, model: AutoencoderModel, size: int):
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

    def __init__(self, model: DetectorModel):
        super().__init__()
        self.model = model

    def forward(self, image: Tensor) -> tuple[Tensor, ...]:
        det = self.model.detector([image[0]])[0]
        out = self.model._decoded(det, det["scores"].argsort(descending=True))
        return tuple(
            out[name] for name in ("boxes", "scores", "labels", "mask_probs") if name in out
        )


class _DetectEnsembleGraph(nn.Module):
    """One image (1×3×S×S) → each member's boxes, scores, labels in turn (see the module
    docstring); merged outside the graph."""

    def __init__(self, members: Sequence[DetectorModel]):
        super().__init__()
        self.members = nn.ModuleList([_DetectGraph(m) for m in members])

    def forward(self, image: Tensor) -> tuple[Tensor, ...]:
        return tuple(t for member in self.members for t in member(image))


def _detectors(graph: nn.Module) -> list[nn.Module]:
    """The DetectorModels inside a detect graph (one, or an ensemble's members)."""
    if isinstance(graph, _DetectEnsembleGraph):
        return [g.get_submodule("model") for g in graph.members]
    return [graph.get_submodule("model")]


def _graph(model: TaskModel, spec: RunSpec) -> nn.Module:
    task = spec.task
    if "," in task:  # a multi-task run: each task's outputs in turn
        from .multitask import MultiTaskGraph

        return MultiTaskGraph(model).eval()
    if task == "detect" and getattr(model, "member_ids", None):
        from .ensemble import EnsembleModel
        from .tasks.detect import DetectorModel

        members = model.task_members() if isinstance(model, EnsembleModel) else []
        if not members or not all(isinstance(m, DetectorModel) for m in members):
            raise ExportError("a detector ensemble's members must all be detectors")
        return _DetectEnsembleGraph([m for m in members if isinstance(m, DetectorModel)]).eval()
    if task == "classify":
        return _ClassifyGraph(model).eval()
    if task == "segment":
        return _SegmentGraph(model).eval()
    if task == "landmarks":
        return _LandmarkGraph(model).eval()
    if task == "autoencode":
        if not isinstance(model, AutoencoderModel):
            raise ExportError(f"an autoencode run's model is a {type(model).__name__}")
        return _AutoencodeGraph(model, spec.resolved_input_size).eval()
    if task in ONE_IMAGE_TASKS:
        from .tasks.detect import DetectorModel  # torchvision: imported for detectors only

        if not isinstance(model, DetectorModel):
            raise ExportError(f"a {task} run's model is a {type(model).__name__}")
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
    one_image = spec.task in ONE_IMAGE_TASKS
    example = batch[:1] if one_image else _pad_batch(batch[:2], 2)
    info = _sidecar(project, record, spec, model, format, path.name)
    outputs = [o["name"] for o in info["outputs"]]
    side = sidecar_path(path)

    with replacing(path) as tmp:
        t0 = time.perf_counter()
        if format == "onnx":
            _export_onnx(graph, example, tmp, outputs, opset, detect=one_image)
        else:
            _export_torchscript(graph, example, tmp)
        export_s = time.perf_counter() - t0
        diffs: dict[str, float] = {}
        checked = 0
        if check:
            # a batch size other than the traced one, so a baked-in batch size shows up
            check_batch = batch[-CHECK_IMAGES:] if len(batch) > 2 else batch
            diffs = _check(graph, tmp, parse_sidecar(info, side), check_batch)
            checked = len(check_batch)
        info["check"] = (
            {"images": checked, "max_abs_diff": max(diffs.values()), "per_output": diffs}
            if check
            else None
        )
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
                if program is None:  # the dynamo exporter always returns one
                    raise ExportError("torch.onnx.export returned no ONNX program")
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


def _check(graph: nn.Module, path: Path, side: Sidecar, batch: Tensor) -> dict[str, float]:
    """Largest |exported − PyTorch| per output over ``batch`` (one image at a time for
    detection); raises ExportError beyond the tolerance or on a shape mismatch. The file
    is opened as a user's ``ExportedModel.load`` opens it, with the sidecar to be written."""
    task, outputs = side.task, side.output_names
    runner = _check_runner(path, side)
    one_image = task in ONE_IMAGE_TASKS
    chunks = [batch[i : i + 1] for i in range(len(batch))] if one_image else [batch]
    diffs = dict.fromkeys(outputs, 0.0)
    for n, x in enumerate(chunks):
        got = runner(x.numpy())
        with torch.no_grad():
            want = [t.detach().numpy() for t in graph(x)]
        if len(got) != len(want):
            raise ExportError(f"the exported model returns {len(got)} outputs, not {len(want)}")
        if one_image:  # per detector (an ensemble's members in turn)
            detectors = _detectors(graph)
            k = len(got) // len(detectors)
            aligned = [
                _align_detections(got[i * k : (i + 1) * k], want[i * k : (i + 1) * k],
                                  *_cut_offs(d), n)
                for i, d in enumerate(detectors)
            ]  # fmt: skip
            got = [a for pair in aligned for a in pair[0]]
            want = [w for pair in aligned for w in pair[1]]
        for name, g, w in zip(outputs, got, want, strict=True):
            if g.shape != w.shape:
                where = f" on check image {n + 1}" if one_image else ""
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


def _check_runner(path: Path, side: Sidecar) -> Runner:
    """The runtime's runner over the file just written (from this project's own run, so a
    TorchScript archive is trusted), after the same content checks a user's load gets."""
    _, runner = open_runner(
        path, side, threads=torch.get_num_threads(), torchscript=torchscript_runner
    )
    return runner


def torchscript_runner(path: Path, threads: int | None = None) -> Runner:
    """A runner over a TorchScript archive: ``torch.jit.load`` runs code from the file with
    the user's rights, so pass this to :meth:`tlstudio.runtime.ExportedModel.load` only for
    files the user trusts. ``threads`` is ignored (torch's thread count is process-wide)."""
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


def pair_detections(
    boxes_a: np.ndarray, labels_a: np.ndarray, boxes_b: np.ndarray, labels_b: np.ndarray
) -> np.ndarray:
    """The order of detections A that lines them up with detections B (same count): the
    assignment with the smallest total box distance, labels forced to agree where they
    can. Detections with equal scores may come out of a sort in either order, so outputs
    are compared after pairing, not position by position."""
    from scipy.optimize import linear_sum_assignment  # type: ignore[import-untyped]  # no stubs

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
    thresh = getattr(det, "score_thresh", None) or getattr(heads, "score_thresh", None) or 0.0
    cap = (
        getattr(det, "detections_per_img", None) or getattr(heads, "detections_per_img", None) or 0
    )
    return float(thresh), int(cap)


def _align_detections(
    got: list[np.ndarray], want: list[np.ndarray], min_score: float, cap: int, n: int
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Exported and PyTorch detections (boxes, scores, labels) of one image, paired up.

    A detection only one side returns is excused when its score lies within
    :data:`CHECK_TOLERANCE` of the score cut-off (``min_score``, or that side's lowest score
    when it holds ``cap`` detections): a float rounding difference decides such borderline
    cases. Any other unpaired detection makes the export unreliable."""
    from scipy.optimize import linear_sum_assignment  # type: ignore[import-untyped]  # no stubs

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
    if scored and metric is not None:
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
    if "landmarks" in spec.task.split(",") and spec.template_id is not None:
        t = project.template(spec.template_id)
        template = {
            "id": t.id,
            "name": t.name,
            "points": list(t.points),
            "skeleton": [list(e) for e in t.skeleton],
            "flip_pairs": [list(e) for e in t.flip_pairs],
            "heatmap_stride": heatmap_stride_of(model),
        }
    input_shape: list[Any] = [1 if spec.task in ONE_IMAGE_TASKS else "N", 3, size, size]
    # a detector ensemble's members stay separate outputs (merged when decoded)
    members = list(getattr(model, "member_ids", None) or []) if spec.task == "detect" else []
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
        "multi_label": bool("classify" in spec.task.split(",") and project.multi_label),
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
        "outputs": output_specs(spec.task, len(members)),
        "ensemble": (
            {"members": len(members), "combine": ensemble_combine(model), "iou": FUSION_IOU}
            if members
            else None
        ),
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


def _normalise(images: Sequence[np.ndarray], spec: RunSpec) -> Tensor:
    """size × size × 3 uint8 RGB images → normalised float32 N×3×S×S, as the runtime does."""
    b = get_spec(spec.backbone)
    return torch.from_numpy(normalise(images, b.mean, b.std))


def _pad_batch(x: Tensor, n: int) -> Tensor:
    """``x`` repeated to at least ``n`` images (a dynamic batch axis needs an example > 1)."""
    while len(x) < n:
        x = torch.cat([x, x[: n - len(x)]])
    return x
