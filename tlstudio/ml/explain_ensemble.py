"""Heatmaps of an ensemble run: the mean of its members' heatmaps for one target.

The target is the ensemble's: with ``target=None`` the class the ensemble predicts
(classify: highest mean probability; segment: the class with the most pixels in the
ensemble's mask, and, unless ``region`` is given, the region is the ensemble's predicted
pixels of that class, resized nearest to the image), the sum of all peaks for landmarks.
Every member then explains that same target with the same method, each map normalised to
[0, 1] as :class:`~tlstudio.ml.explain.Explainer` does, and the ensemble's map is their
plain mean (not normalised again: a pixel reaches 1 only where every member's map peaks,
so disagreement shows as a dimmer map). ``Heatmap.score`` and ``probability`` are the
ensemble's own (classify: the log of the mean probability, and that mean probability).

Stages: when all members have the same stage names (one backbone), ``layers`` are those
and the chosen stage is used in every member; otherwise the only layer is
:data:`EACH_DEEPEST`, each member at its own deepest stage. Feature maps and first-layer
filters belong to one network, so :meth:`EnsembleExplainer.activations` and
:meth:`~EnsembleExplainer.first_layer_filters` raise :class:`ExplainError` naming the
members to pick instead. Cost: the sum of the members' costs plus one ensemble forward.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import torch

from .explain import TARGETED_TASKS, Explainer, ExplainError, Heatmap, _explaining

#: the one layer of an ensemble whose members have different backbones
EACH_DEEPEST = "deepest of each member"


class EnsembleExplainer:
    """The :class:`~tlstudio.ml.explain.Explainer` interface over an
    :class:`~tlstudio.ml.ensemble.EnsembleModel` (see the module docstring)."""

    def __init__(self, model: Any, spec: Any, device: str | torch.device = "cpu", **options: Any):
        from .ensemble import EnsembleModel

        if not isinstance(model, EnsembleModel):
            raise TypeError(f"{type(model).__name__} is not an EnsembleModel")
        self.model = model.to(device)
        self.spec = spec
        self.task: str = model.task
        self.member_ids: list[int] = list(model.member_ids)
        self.explainers = [Explainer(m, spec, device, **options) for m in model.task_members()]
        first = self.explainers[0].layers
        self.shared_layers = all(e.layers == first for e in self.explainers[1:])

    # -- facts -------------------------------------------------------------------------
    @property
    def layers(self) -> list[str]:
        """The members' common stage names, or [:data:`EACH_DEEPEST`] when they differ."""
        return self.explainers[0].layers if self.shared_layers else [EACH_DEEPEST]

    @property
    def methods(self) -> tuple[str, ...]:
        return self.explainers[0].methods

    @property
    def num_targets(self) -> int:
        return self.explainers[0].num_targets

    def _members_text(self) -> str:
        return ", ".join(f"#{i}" for i in self.member_ids) or f"{len(self.explainers)} models"

    def _member_layer(self, layer: str | None) -> tuple[str, str | None]:
        """(the heatmap's layer name, the stage each member uses: None = its deepest)."""
        if self.shared_layers:
            name = self.layers[-1] if layer is None else layer
            if name not in self.layers:
                raise ExplainError(
                    f"unknown layer {name!r}; this ensemble's members have {', '.join(self.layers)}"
                )
            return name, name
        if layer not in (None, EACH_DEEPEST):
            raise ExplainError(
                f"layer {layer!r}: this ensemble's members have different backbones, so each "
                f"is explained at its own deepest stage ({EACH_DEEPEST!r})"
            )
        return EACH_DEEPEST, None

    # -- heatmaps ----------------------------------------------------------------------
    def heatmap(
        self,
        rgb: np.ndarray,
        method: str = "gradcam",
        target: int | None = None,
        layer: str | None = None,
        region: np.ndarray | None = None,
    ) -> Heatmap:
        """The mean of the members' heatmaps of ``method`` for the ensemble's target, in the
        pixels of ``rgb`` (H×W×3 uint8); arguments as :meth:`Explainer.heatmap`."""
        name, member_layer = self._member_layer(layer)
        first = self.explainers[0]
        hw = (int(rgb.shape[0]), int(rgb.shape[1]))
        resolved, score, prob = target, None, None
        if self.task in TARGETED_TASKS:
            x = first._input(rgb)
            with _explaining(self.model), torch.no_grad():
                out = self.model(x)
            objective, resolved = first._objective(out, target, region, hw)
            score = float(objective(out)[0])
            if self.task == "classify":
                prob = float(self.model.probabilities(out)[0, resolved])
            if self.task == "segment" and region is None and resolved is not None:
                pred = (out[0].argmax(0) == resolved + 1).to(torch.uint8).cpu().numpy()
                region = cv2.resize(pred, (hw[1], hw[0]), interpolation=cv2.INTER_NEAREST) > 0
        maps = [
            e.heatmap(rgb, method, target=resolved, layer=member_layer, region=region).values
            for e in self.explainers
        ]
        values = np.mean(np.stack(maps), axis=0).astype(np.float32)
        return Heatmap(values, method, name, resolved, score, prob)

    # -- activations and filters -------------------------------------------------------
    def _refuse(self, what: str) -> ExplainError:
        return ExplainError(
            f"an ensemble has no single network's {what}: pick one of its members, "
            f"runs {self._members_text()}"
        )

    def activations(self, rgb: np.ndarray, layer: str | None, max_maps: int = 64) -> np.ndarray:
        raise self._refuse("feature maps")

    def first_layer_filters(self) -> np.ndarray:
        raise self._refuse("filters")
