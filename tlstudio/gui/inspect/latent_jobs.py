"""The latent view's background work, as plain functions for
:class:`~tlstudio.gui.workers.jobs.BackgroundJob`: features, 2-D projection and the
colouring facts (labels, predictions) of a run. Each opens its own Project (SQLite
connections belong to one thread) and returns plain data (numpy arrays, ints, strings).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tlstudio.core.cancel import CancelToken
from tlstudio.core.errors import Cancelled
from tlstudio.gui.workers.jobs import Progress


@dataclass
class LatentResult:
    run_id: int
    method: str
    image_ids: np.ndarray  # N int64
    xy: np.ndarray  # N×2 float32, projection coordinates
    source: str
    features: Any  # the Embedding, kept so a new method only re-projects
    facts: Any  # PointFacts


def compute_latent(
    root: Path,
    run_id: int,
    method: str,
    embedding: Any,
    token: CancelToken,
    progress: Progress,
) -> LatentResult:
    """Embed the run's images (unless ``embedding`` is given), project them with
    ``method`` and read their facts. Progress stages: "features" (images), "projection"
    (no count). Raises :class:`Cancelled` once ``token`` is cancelled (a running
    t-SNE/UMAP fit finishes first)."""
    from tlstudio.core.project import Project
    from tlstudio.ml import embed

    project = Project.open(root)
    try:
        if embedding is None:
            embedding = embed.embed_run(
                project, run_id, progress=lambda d, t: progress(d, t, "features"), token=token
            )
        if token.is_cancelled:
            raise Cancelled("latent space cancelled")
        progress(0, 0, "projection")
        xy = embed.project_points(embedding.features, method)
        if token.is_cancelled:
            raise Cancelled("latent space cancelled")
        facts = embed.point_facts(project, run_id, embedding.image_ids)
    finally:
        project.close()
    ids = np.asarray(embedding.image_ids, np.int64)
    return LatentResult(run_id, method, ids, xy, embedding.source, embedding, facts)


def read_facts(root: Path, run_id: int | None, ids: list[int]) -> Any:
    """The colouring facts (PointFacts) of images ``ids`` for run ``run_id``."""
    from tlstudio.core.project import Project
    from tlstudio.ml import embed

    project = Project.open(root)
    try:
        return embed.point_facts(project, run_id, ids)
    finally:
        project.close()
