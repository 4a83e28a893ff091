"""Explainability: class-activation heatmaps (Grad-CAM, Grad-CAM++, EigenCAM, Score-CAM),
feature maps of a backbone stage and the first layer's filters.

Frames. ``rgb`` arguments are the image as stored (H×W×3 uint8 RGB, as displayed through
its window); heatmaps come back in the same image pixels (origin at the top-left corner).
A map computed at a stage's resolution (input / stride) is resized bilinearly to the
network input (``spec.resolved_input_size`` square, the same plain resize the datasets
use), then to the image's H×W, then ReLU'd and divided by its maximum, so values are in
[0, 1] (all zeros when nothing is positive).

Targets (the scalar a heatmap explains; ``Heatmap.score`` is its value):

- classify:  the logit of class ``target`` (0..C-1); default the predicted class.
- segment:   the mean logit of class ``target`` over ``region`` (bool H×W in image
             pixels, resized nearest to the input; for Grad-CAM the same map as the sum,
             up to a positive factor); default target the class with the most predicted
             pixels, default region its predicted pixels (the whole image when none).
- landmarks: the peak of point ``target``'s heatmap; default (None) the sum of all peaks.
- detect, autoencode: EigenCAM of the backbone stage only (class-agnostic: no target,
             score None); the gradient and Score-CAM methods raise :class:`ExplainError`.

Score-CAM is a variant of Wang et al. (2020), not the paper's method: only the
``scorecam_channels`` (64) channels with the highest mean activation take part (the paper
uses every channel), and a channel's weight is the linear gain of the target score over
an all-zero input (zero after normalisation, i.e. the mean colour), ``s(x·m_k) - s(0)``,
with no softmax (the paper, and pytorch-grad-cam, weight the channels by a softmax of
their scores). Grad-CAM and Grad-CAM++ follow their papers (Grad-CAM++: the closed form
for an exponential score, as in pytorch-grad-cam).

Ensembles: :func:`make_explainer` and :func:`load_explainer` give an ensemble run an
:class:`~tlstudio.ml.explain_ensemble.EnsembleExplainer` (the mean of its members' maps
for the ensemble's target; no activations or filters).

Hooks. A forward hook on the chosen stage captures its output; gradients are taken with
:func:`torch.autograd.grad` on that tensor, so no parameter's ``.grad`` is touched. The
hook is removed when the call ends, also when it raises, and every parameter's
``requires_grad`` and every module's train/eval mode are restored.

Cost per image (F = one forward pass at the network input size): Grad-CAM/Grad-CAM++
one forward plus a backward from the score down to the chosen stage only (about 1-1.5 F
at the deepest stage, more for shallower ones); EigenCAM one forward plus an SVD of the
(h·w)×C stage output; Score-CAM one forward plus one per masked input, K ≤
``scorecam_channels`` (64) inputs in batches of ``scorecam_batch`` (about K + 2 F).
Measured by ``tests/bench/bench_explain.py`` (CPU, 1 thread, 224 px, deepest stage):
Grad-CAM, Grad-CAM++ and EigenCAM 1.0-1.25 F, Score-CAM 47 F (ResNet-18) to 69 F
(EfficientNet-Lite0).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tlstudio.core.errors import TlsError
from tlstudio.ml.backbones import Backbone, get_spec
from tlstudio.ml.tasks.base import TaskModel

if TYPE_CHECKING:  # pragma: no cover
    from tlstudio.ml.explain_ensemble import EnsembleExplainer
    from tlstudio.ml.tasks.classify import ClassifierModel

METHODS = ("gradcam", "gradcam++", "eigencam", "scorecam")
GRADIENT_FREE = ("eigencam", "scorecam")
METHOD_TITLES = {
    "gradcam": "Grad-CAM",
    "gradcam++": "Grad-CAM++",
    "eigencam": "EigenCAM",
    "scorecam": "Score-CAM",
}
#: tasks whose output gives a scalar per target (all methods); the others get EigenCAM only
TARGETED_TASKS = ("classify", "segment", "landmarks")


class ExplainError(TlsError, ValueError):
    """A heatmap cannot be computed with these settings (the message says which and why)."""


@dataclass
class Heatmap:
    """``values``: H×W float32 in [0, 1], image pixels. ``target``: class index 0..C-1
    (classify, segment) or point index (landmarks), None when the map is class-agnostic or
    covers all points. ``score``: the model output explained (see the module docstring);
    ``probability``: classify only, the softmax (or sigmoid) probability of the target."""

    values: np.ndarray
    method: str
    layer: str
    target: int | None
    score: float | None
    probability: float | None = None


def colorize(values: np.ndarray, cmap: str = "turbo") -> np.ndarray:
    """H×W values in [0, 1] → H×W×3 uint8 RGB through a matplotlib colormap."""
    import matplotlib

    lut = (matplotlib.colormaps[cmap](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.uint8)
    idx = np.clip(np.asarray(values, np.float32) * 255 + 0.5, 0, 255).astype(np.intp)
    return lut[idx]


@contextmanager
def _capture(module: nn.Module) -> Iterator[dict[str, Tensor]]:
    """Forward hook storing ``module``'s output under "act"; always removed."""
    store: dict[str, Tensor] = {}

    def hook(_m: nn.Module, _inp: Any, out: Any) -> None:
        store["act"] = out

    handle = module.register_forward_hook(hook)
    try:
        yield store
    finally:
        handle.remove()


@contextmanager
def _explaining(model: nn.Module) -> Iterator[None]:
    """Eval mode, no parameter gradients; both restored afterwards."""
    modes = [(m, m.training) for m in model.modules()]
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for m, mode in modes:
            m.training = mode
        for p, flag in flags:
            p.requires_grad_(flag)


def _normalise(cam: np.ndarray) -> np.ndarray:
    cam = np.maximum(cam, 0.0)
    top = float(cam.max()) if cam.size else 0.0
    return (cam / top if top > 0 else np.zeros_like(cam)).astype(np.float32)


class Explainer:
    """Heatmaps, activations and filters of one trained model (see the module docstring).

    ``scorecam_channels``: Score-CAM uses this many channels at most (the top ones by
    mean activation; the paper uses all); ``scorecam_batch``: masked inputs per forward
    pass."""

    def __init__(
        self,
        model: TaskModel,
        spec: Any,
        device: str | torch.device = "cpu",
        scorecam_channels: int = 64,
        scorecam_batch: int = 16,
    ):
        members = getattr(model, "member_ids", None)
        if members:  # an EnsembleModel (tlstudio.ml.ensemble)
            raise ExplainError(
                "an ensemble has no single backbone: explain it with make_explainer "
                "(the mean of its members' maps) or pick one of its members, runs "
                + ", ".join(f"#{i}" for i in members)
            )
        if getattr(model, "backbone", None) is None:
            raise ExplainError(
                f"this {model.task} model has no backbone stages to explain "
                "(autoencoder with the small encoder)"
            )
        self.model = model.to(device)
        self.spec = spec
        self.device = torch.device(device)
        self.task: str = model.task
        self.size = int(spec.resolved_input_size)
        bspec = get_spec(spec.backbone)
        self._mean = torch.tensor(bspec.mean, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(bspec.std, device=self.device).view(1, 3, 1, 1)
        self.scorecam_channels = int(scorecam_channels)
        self.scorecam_batch = int(scorecam_batch)

    # -- facts -------------------------------------------------------------------------
    @property
    def _backbone(self) -> Backbone:
        """The model's staged backbone (a model without one is refused on construction)."""
        return cast(Backbone, self.model.backbone)

    @property
    def layers(self) -> list[str]:
        """Backbone stage names, from the input; the deepest (last) is the default."""
        return list(self._backbone.stage_names)

    @property
    def methods(self) -> tuple[str, ...]:
        """Methods this model supports (all for classify/segment/landmarks, else EigenCAM)."""
        return METHODS if self.task in TARGETED_TASKS else ("eigencam",)

    @property
    def num_targets(self) -> int:
        """Number of targets: classes (classify, segment), points (landmarks), else 0."""
        m = self.model
        if self.task == "landmarks":
            return int(cast(int, m.num_points))  # a LandmarkModel's attribute
        return int(getattr(m, "num_classes", 0))

    def _stage(self, layer: str | None) -> tuple[str, nn.Module]:
        names = self.layers
        name = names[-1] if layer is None else layer
        if name not in names:
            raise ExplainError(f"unknown layer {name!r}; this backbone has {', '.join(names)}")
        return name, self._backbone.stages[names.index(name)]

    def _input(self, rgb: np.ndarray) -> Tensor:
        from tlstudio.ml.data import resize_square

        rgb = np.asarray(rgb)
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ExplainError(f"expected an H×W×3 uint8 RGB image, got {rgb.shape} {rgb.dtype}")
        x = torch.from_numpy(resize_square(rgb, self.size)).to(self.device)
        x = x.permute(2, 0, 1)[None].float() / 255.0
        return (x - self._mean) / self._std

    # -- targets -----------------------------------------------------------------------
    def _objective(
        self, out: Tensor, target: int | None, region: np.ndarray | None, hw: tuple[int, int]
    ) -> tuple[Callable[[Tensor], Tensor], int | None]:
        """(model output N×... → N target scores, resolved target), from the output ``out``
        of the image being explained (used to pick the predicted class and region)."""
        n = self.num_targets
        if target is not None and not 0 <= target < n:
            what = "point" if self.task == "landmarks" else "class"
            raise ExplainError(f"target {what} {target} out of range 0..{n - 1}")
        out = out.detach()
        if self.task == "classify":
            t = int(out[0].argmax()) if target is None else target
            return (lambda o: o[:, t]), t
        if self.task == "landmarks":
            if target is None:
                return (lambda o: o.flatten(2).amax(dim=2).sum(dim=1)), None
            return (lambda o: o[:, target].flatten(1).amax(dim=1)), target
        # segment: channel 0 is background, class i is channel i + 1
        pred = out[0].argmax(0)
        counts = torch.bincount(pred.flatten(), minlength=n + 1)[1:]
        t = int(counts.argmax()) if target is None else target
        if region is None:
            sel = pred == t + 1
        else:
            region = np.asarray(region, bool)
            if region.shape != hw:
                raise ExplainError(f"region is {region.shape}, the image is {hw} (H, W)")
            small = cv2.resize(region.astype(np.uint8), (self.size, self.size),
                               interpolation=cv2.INTER_NEAREST)  # fmt: skip
            sel = torch.from_numpy(small.astype(bool)).to(self.device)
        if not bool(sel.any()):
            sel = torch.ones_like(sel, dtype=torch.bool)
        weight = sel.float() / sel.sum()
        return (lambda o: (o[:, t + 1] * weight).sum(dim=(1, 2))), t

    # -- heatmaps ----------------------------------------------------------------------
    def heatmap(
        self,
        rgb: np.ndarray,
        method: str = "gradcam",
        target: int | None = None,
        layer: str | None = None,
        region: np.ndarray | None = None,
    ) -> Heatmap:
        """Heatmap of ``method`` for ``target`` at stage ``layer`` (default: deepest), in the
        pixels of ``rgb`` (H×W×3 uint8). ``region``: segment only, bool H×W image pixels."""
        if method not in METHODS:
            raise ExplainError(f"unknown method {method!r}; use one of {', '.join(METHODS)}")
        if method not in self.methods:
            raise ExplainError(
                f"{METHOD_TITLES[method]} needs a class score; a {self.task} model supports "
                "EigenCAM only"
            )
        name, stage = self._stage(layer)
        hw = (int(rgb.shape[0]), int(rgb.shape[1]))
        x = self._input(rgb)
        target_out: int | None = None
        score = prob = None
        with _explaining(self.model), _capture(stage) as store, torch.enable_grad():
            if self.task not in TARGETED_TASKS:
                with torch.no_grad():
                    self.model.backbone(x)
                cam = self._eigencam(store["act"][0])
            else:
                x.requires_grad_(method not in GRADIENT_FREE)
                out = self.model(x)
                objective, target_out = self._objective(out, target, region, hw)
                value = objective(out)[0]
                score = float(value.detach())
                if self.task == "classify":
                    classifier = cast("ClassifierModel", self.model)
                    prob = float(classifier.probabilities(out.detach())[0, target_out])
                act = store["act"]
                if method in ("gradcam", "gradcam++"):
                    (grad,) = torch.autograd.grad(value, act)
                    cam = self._gradcam(act[0].detach(), grad[0], plus=method == "gradcam++")
                elif method == "eigencam":
                    cam = self._eigencam(act[0].detach())
                else:
                    cam = self._scorecam(x.detach(), act[0].detach(), objective)
        return Heatmap(self._to_image(cam, hw), method, name, target_out, score, prob)

    @staticmethod
    def _gradcam(act: Tensor, grad: Tensor, plus: bool) -> Tensor:
        """C×h×w activations and gradients → h×w map (before ReLU). Grad-CAM++ replaces only
        a zero denominator of its alphas (pytorch-grad-cam adds 1e-6 to every one)."""
        if not plus:
            weights = grad.mean(dim=(1, 2))
        else:  # Chattopadhyay et al. 2018, closed form for an exponential score
            g2, g3 = grad**2, grad**3
            denom = 2 * g2 + act.sum(dim=(1, 2), keepdim=True) * g3
            alpha = torch.where(grad != 0, g2 / torch.where(denom != 0, denom, 1e-7), 0.0)
            weights = (alpha * grad.clamp_min(0)).sum(dim=(1, 2))
        return (weights[:, None, None] * act).sum(dim=0)

    @staticmethod
    def _eigencam(act: Tensor) -> Tensor:
        """Projection on the first principal component of the C-dim pixel vectors; its sign
        is chosen to agree with the mean activation (SVD signs are arbitrary)."""
        c, h, w = act.shape
        flat = act.reshape(c, h * w).T.double()
        flat = flat - flat.mean(dim=0, keepdim=True)
        _, _, vh = torch.linalg.svd(flat, full_matrices=False)
        proj = (flat @ vh[0]).reshape(h, w)
        if float((proj * act.mean(dim=0).double()).sum()) < 0:
            proj = -proj
        return proj.float()

    def _scorecam(self, x: Tensor, act: Tensor, objective: Callable[[Any], Tensor]) -> Tensor:
        """Score-CAM variant (see the module docstring): each of the top-K channels (K =
        ``scorecam_channels``, by mean activation), upsampled and min-max scaled to [0, 1],
        masks the input (masked pixels = the mean colour, 0 after normalisation); its
        weight is the linear gain of the target over the all-zero input, no softmax."""
        k = min(self.scorecam_channels, act.shape[0])
        top = act.mean(dim=(1, 2)).topk(k).indices
        maps = F.interpolate(act[top][None], size=x.shape[-2:], mode="bilinear",
                             align_corners=False)[0]  # fmt: skip
        lo = maps.flatten(1).amin(1)[:, None, None]
        hi = maps.flatten(1).amax(1)[:, None, None]
        masks = torch.where(hi > lo, (maps - lo) / (hi - lo).clamp_min(1e-12), 0.0)
        scores = []
        with torch.no_grad():
            baseline = objective(self.model(torch.zeros_like(x)))[0]
            for i in range(0, k, self.scorecam_batch):
                m = masks[i : i + self.scorecam_batch, None]
                scores.append(objective(self.model(x * m)))
        weights = torch.cat(scores) - baseline
        return (weights[:, None, None] * act[top]).sum(dim=0)

    def _to_image(self, cam: Tensor, hw: tuple[int, int]) -> np.ndarray:
        up = F.interpolate(cam[None, None].float(), size=(self.size, self.size),
                           mode="bilinear", align_corners=False)  # fmt: skip
        up = F.interpolate(up, size=hw, mode="bilinear", align_corners=False)[0, 0]
        return _normalise(up.detach().cpu().numpy())

    # -- activations and filters -------------------------------------------------------
    def activations(self, rgb: np.ndarray, layer: str | None, max_maps: int = 64) -> np.ndarray:
        """The ``max_maps`` feature maps of stage ``layer`` with the highest mean activation,
        highest first: K×h×w float32 (stage resolution), each scaled to [0, 1] (min-max;
        a constant map becomes 0)."""
        _, stage = self._stage(layer)
        x = self._input(rgb)
        with _explaining(self.model), _capture(stage) as store, torch.no_grad():
            self.model.backbone(x)
        act = store["act"][0].float()
        k = min(int(max_maps), act.shape[0])
        act = act[act.mean(dim=(1, 2)).topk(k).indices]
        lo = act.flatten(1).amin(1)[:, None, None]
        hi = act.flatten(1).amax(1)[:, None, None]
        act = torch.where(hi > lo, (act - lo) / (hi - lo).clamp_min(1e-12), 0.0)
        return act.cpu().numpy().astype(np.float32)

    def first_layer_filters(self) -> np.ndarray:
        """The first convolution's RGB filters as images: K×kh×kw×3 float32 in [0, 1],
        each scaled symmetrically (0.5 = zero weight, 0 or 1 = its largest |weight|)."""
        for m in self.model.backbone.modules():
            if isinstance(m, nn.Conv2d) and m.in_channels == 3 and m.groups == 1:
                w = m.weight.detach().float().cpu()
                scale = w.abs().flatten(1).amax(1).clamp_min(1e-12)[:, None, None, None]
                return (0.5 + 0.5 * w / scale).permute(0, 2, 3, 1).numpy().astype(np.float32)
        raise ExplainError("the backbone has no convolution on the RGB input")


def make_explainer(
    model: TaskModel, spec: Any, device: str = "cpu"
) -> Explainer | EnsembleExplainer:
    """An :class:`Explainer` of ``model``, or for an ensemble an
    :class:`~tlstudio.ml.explain_ensemble.EnsembleExplainer` (the same interface; its
    heatmap is the mean of the members' heatmaps)."""
    if getattr(model, "member_ids", None) is not None and hasattr(model, "task_members"):
        from tlstudio.ml.explain_ensemble import EnsembleExplainer

        return EnsembleExplainer(model, spec, device)
    return Explainer(model, spec, device)


def load_explainer(project: Any, run_id: int, device: str = "cpu") -> Explainer | EnsembleExplainer:
    """The explainer (:func:`make_explainer`) of run ``run_id``'s saved model (raises
    RunError if none)."""
    from tlstudio.ml.runner import load_run_model

    model, spec = load_run_model(project, run_id)
    return make_explainer(model, spec, device)
