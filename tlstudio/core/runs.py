"""Training runs and model predictions recorded in the project database.

Run files (checkpoints, exports) live under ``<project>/runs/<id>/``; paths
stored in the database are relative to the project folder.

A run records the process that trains it (:class:`~tlstudio.core.owner.ProcessOwner`).
A run still ``running`` whose process is gone (killed, crashed, power cut) is marked
``interrupted`` when the project is opened for editing or its runs are listed; its last
checkpoint stays, so it can be resumed.
"""

from __future__ import annotations

import builtins
import json
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .annotations import decode_mask, encode_mask
from .errors import ProjectBusyError, ValidationError
from .owner import ProcessOwner
from .project import Project
from .store import inserted_id


@dataclass(frozen=True)
class PredictionRow:
    """One prediction ready to store: the payload as JSON, the mask as PNG bytes."""

    image_id: int
    payload_json: str
    mask_png: bytes | None
    score: float | None

    @property
    def size_bytes(self) -> int:
        """Bytes it holds in memory (roughly), for writers that buffer rows."""
        return len(self.payload_json) + len(self.mask_png or b"") + 64


def prediction_row(
    image_id: int,
    payload: dict[str, Any],
    mask: np.ndarray | None = None,
    score: float | None = None,
) -> PredictionRow:
    """A :class:`PredictionRow` (payload coordinates in image pixels; ``mask`` a label map)."""
    png = None if mask is None else encode_mask(mask)[0]
    return PredictionRow(image_id, json.dumps(payload), png, score)


RUN_STATUSES = ("running", "finished", "cancelled", "failed", "interrupted")
INTERRUPTED_ERROR = "its process ended while training (killed or crashed)"


@dataclass(frozen=True)
class RunRecord:
    id: int
    created_at: float  # seconds since the epoch
    task: str
    backbone: str
    config: dict[str, Any]
    status: str
    error: str | None
    metric_name: str | None
    best_metric: float | None
    checkpoint: str | None  # relative to the project folder
    device: str | None
    duration_s: float | None


@dataclass(frozen=True)
class Prediction:
    """A model output for one image. ``payload`` coordinates are image pixels."""

    run_id: int
    image_id: int
    payload: dict[str, Any]
    mask: np.ndarray | None
    score: float | None


_RUN_COLS = (
    "id, created_at, task, backbone, config, status, error, metric_name, best_metric,"
    " checkpoint, device, duration_s"
)


def _run(row: Sequence[Any]) -> RunRecord:
    r = list(row)
    r[4] = json.loads(r[4])
    return RunRecord(*r)


class RunStore:
    """Runs, per-epoch metrics and predictions of one project."""

    def __init__(self, project: Project):
        self.project = project
        self._c = project.store.conn

    def run_dir(self, run_id: int) -> Path:
        d = self.project.root / "runs" / str(run_id)
        d.mkdir(parents=True, exist_ok=True)
        return d

    def start(
        self,
        task: str,
        backbone: str,
        config: dict[str, Any],
        device: str | None = None,
        *,
        created_at: float | None = None,
    ) -> int:
        """Record a new run, ``running`` and owned by this process; ``created_at``
        (seconds since the epoch) defaults to now."""
        when = time.time() if created_at is None else float(created_at)
        with self.project.transaction():
            cur = self._c.execute(
                "INSERT INTO runs (created_at, task, backbone, config, status, device, owner)"
                " VALUES (?, ?, ?, ?, 'running', ?, ?)",
                (when, task, backbone, json.dumps(config), device,
                 ProcessOwner.current().to_json()),
            )  # fmt: skip
        return inserted_id(cur)

    def claim(self, run_id: int) -> None:
        """Mark a run ``running`` again, owned by this process (resuming it)."""
        self.get(run_id)
        with self.project.transaction():
            self._c.execute(
                "UPDATE runs SET status = 'running', error = NULL, owner = ? WHERE id = ?",
                (ProcessOwner.current().to_json(), run_id),
            )

    def update(self, run_id: int, **fields: Any) -> None:
        """Set run columns: status, error, metric_name, best_metric, checkpoint, device,
        duration_s, config (a dict, stored as JSON)."""
        allowed = {
            "status",
            "error",
            "metric_name",
            "best_metric",
            "checkpoint",
            "device",
            "duration_s",
            "config",
        }
        bad = set(fields) - allowed
        if bad:
            raise ValidationError(f"unknown run fields {sorted(bad)}")
        if "status" in fields and fields["status"] not in RUN_STATUSES:
            raise ValidationError(f"unknown run status {fields['status']!r}")
        if not fields:
            return
        if "config" in fields:
            fields["config"] = json.dumps(fields["config"])
        cols = ", ".join(f"{k} = ?" for k in fields)
        with self.project.transaction():
            self._c.execute(f"UPDATE runs SET {cols} WHERE id = ?", (*fields.values(), run_id))

    def update_config(self, run_id: int, **entries: Any) -> None:
        """Set top-level entries of a run's config (plain JSON data; None removes one),
        e.g. what was measured after training: ``calibration``, ``selection``, ``test``."""
        config = dict(self.get(run_id).config)
        for key, value in entries.items():
            if value is None:
                config.pop(key, None)
            else:
                config[key] = value
        with self.project.transaction():
            self._c.execute("UPDATE runs SET config = ? WHERE id = ?", (json.dumps(config), run_id))

    def log_epoch(self, run_id: int, epoch: int, metrics: dict[str, float]) -> None:
        with self.project.transaction():
            self._c.execute(
                "INSERT OR REPLACE INTO run_epochs VALUES (?, ?, ?)",
                (run_id, epoch, json.dumps({k: float(v) for k, v in metrics.items()})),
            )

    def get(self, run_id: int) -> RunRecord:
        row = self._c.execute(f"SELECT {_RUN_COLS} FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise ValidationError(f"no run with id {run_id}")
        return _run(row)

    def list(self) -> list[RunRecord]:
        """Every run, oldest first (runs whose process is gone are marked interrupted
        first, where the project can be written)."""
        if not self.project.read_only:
            try:
                mark_interrupted_runs(self.project, wait=False)
            except ProjectBusyError:
                pass  # another program is writing: marked on a later listing
        return [_run(r) for r in self._c.execute(f"SELECT {_RUN_COLS} FROM runs ORDER BY id")]

    def with_model(self) -> builtins.list[RunRecord]:
        """Runs that saved a model (finished, or cancelled after an epoch), newest first."""
        return [
            _run(r)
            for r in self._c.execute(
                f"SELECT {_RUN_COLS} FROM runs WHERE checkpoint IS NOT NULL ORDER BY id DESC"
            )
        ]

    def epochs(self, run_id: int) -> builtins.list[tuple[int, dict[str, float]]]:
        rows = self._c.execute(
            "SELECT epoch, metrics FROM run_epochs WHERE run_id = ? ORDER BY epoch", (run_id,)
        )
        return [(e, json.loads(m)) for e, m in rows]

    def last_checkpoint(self, run_id: int) -> Path | None:
        """The run's newest trainer checkpoint (``last.pt``), if it has one."""
        path = self.project.root / "runs" / str(run_id) / "last.pt"
        return path if path.is_file() else None

    def delete(self, run_id: int) -> None:
        """Forget a run, its metrics and predictions, and delete its files."""
        with self.project.transaction():
            self._c.execute("DELETE FROM runs WHERE id = ?", (run_id,))
        shutil.rmtree(self.project.root / "runs" / str(run_id), ignore_errors=True)

    # -- predictions ---------------------------------------------------------
    def set_prediction(self, run_id: int, image_id: int, payload: dict[str, Any],
                       mask: np.ndarray | None = None, score: float | None = None) -> None:  # fmt: skip
        self.set_predictions(run_id, [prediction_row(image_id, payload, mask, score)])

    def set_predictions(self, run_id: int, rows: Sequence[PredictionRow]) -> None:
        """Store (or replace) many predictions of a run in one transaction: one commit and
        one disk sync however many rows."""
        with self.project.transaction():
            self._c.executemany(
                "INSERT OR REPLACE INTO predictions VALUES (?, ?, ?, ?, ?)",
                [(run_id, r.image_id, r.payload_json, r.mask_png, r.score) for r in rows],
            )

    def prediction(self, run_id: int, image_id: int) -> Prediction | None:
        row = self._c.execute(
            "SELECT payload, mask, score FROM predictions WHERE run_id = ? AND image_id = ?",
            (run_id, image_id),
        ).fetchone()
        if row is None:
            return None
        mask = None if row[1] is None else decode_mask(row[1])
        return Prediction(run_id, image_id, json.loads(row[0]), mask, row[2])

    def predicted_images(self, run_id: int) -> builtins.list[tuple[int, float | None]]:
        """(image id, score) of every prediction of a run, lowest score first."""
        rows = self._c.execute(
            "SELECT image_id, score FROM predictions WHERE run_id = ? ORDER BY score, image_id",
            (run_id,),
        )
        return [tuple(r) for r in rows]


def mark_interrupted_runs(project: Project, *, wait: bool = True) -> list[int]:
    """Mark runs still ``running`` whose owning process is gone as ``interrupted`` (runs
    recorded before owners were, have none: they count as gone). Returns their ids.
    ``wait=False``: raise ProjectBusyError at once instead of waiting for another
    program's write lock (listing runs must not hang)."""
    rows = project.store.conn.execute("SELECT id, owner FROM runs WHERE status = 'running'")
    gone = []
    for run_id, text in rows.fetchall():
        owner = ProcessOwner.from_json(text)
        if owner is None or owner.is_gone():
            gone.append(run_id)
    if not gone:
        return gone
    conn = project.store.conn
    timeout_ms = conn.execute("PRAGMA busy_timeout").fetchone()[0]
    if not wait:
        conn.execute("PRAGMA busy_timeout = 0")
    try:
        with project.transaction():
            conn.executemany(
                "UPDATE runs SET status = 'interrupted', error = ? WHERE id = ? "
                "AND status = 'running'",
                [(INTERRUPTED_ERROR, i) for i in gone],
            )
    finally:
        conn.execute(f"PRAGMA busy_timeout = {int(timeout_ms)}")
    return gone
