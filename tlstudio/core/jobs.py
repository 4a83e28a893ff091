"""Job bundles: train on a GPU server or a cluster, bring the run back.

``write_bundle`` makes a self-contained folder::

    job/
      job.json      the run spec, the train/val image ids, the labels version, a job id
      run.sh        trains with torchrun (one machine) or srun + torchrun (SLURM)
      project/      a small project: a copy of the labels, splits, classes and templates
                    of the images the run uses (same ids), and those images under
                    project/images/ (or, with copy_images=False, paths relative to
                    project/ that lead to the originals: for shared storage)

On the server ``tlstudio run-job job/`` (what run.sh starts) trains the run into
``job/project`` and writes ``job/result.json``. ``import_run`` copies that run into the
original project (config, epochs, metrics, files, predictions) as a new run, after
checking that the labels it was trained on are still the project's (the *labels
version*: a hash of the classes, templates and every used image's content, split and
labels; surrogate row ids and colours are left out).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import stat
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import __version__
from .atomic import write_text_atomic
from .errors import TlsError
from .project import Project
from .runs import RunRecord, RunStore
from .store import DB_NAME

JOB_FILE = "job.json"
RESULT_FILE = "result.json"
PROJECT_DIR = "project"
RUN_SCRIPT = "run.sh"
JOB_FORMAT = 1

ProgressFn = Callable[[int, int], None]  # (done, total)

# (table, columns) hashed for the labels version, per image; blobs are hashed by content
_LABEL_TABLES: tuple[tuple[str, str], ...] = (
    ("tags", "image_id, class_id"),
    ("boxes", "image_id, class_id, x1, y1, x2, y2"),
    ("landmark_sets", "image_id, template_id, class_id, points"),
    ("masks", "image_id, png"),
    ("instance_maps", "image_id, png"),
    ("instances", "image_id, number, class_id, iscrowd, outline"),
    ("ignore_masks", "image_id, png"),
)


class JobError(TlsError):
    """A job folder cannot be written, read or imported (the message says why)."""


class LabelsChangedError(JobError):
    """The project's labels are not those the job was made from (import with force);
    ``reason`` says what differs, without the command-line hint."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"{reason}; import anyway with --force")
        self.reason = reason


@dataclass(frozen=True)
class Job:
    """A job folder's ``job.json``. ``spec`` is the run spec as a plain dict
    (``RunSpec.to_dict``)."""

    folder: Path
    job_id: str
    spec: dict[str, Any]
    train_ids: list[int]
    val_ids: list[int]
    labels_version: str
    images_copied: bool
    source: str  # the original project's folder, for people
    created_at: float
    warnings: list[str] = field(default_factory=list)

    @property
    def project_dir(self) -> Path:
        return self.folder / PROJECT_DIR

    @property
    def image_ids(self) -> list[int]:
        return [*self.train_ids, *self.val_ids]


# --------------------------------------------------------------------------- labels version


def _tables(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def _value(v: object) -> object:
    if isinstance(v, bytes):
        return "sha256:" + hashlib.sha256(v).hexdigest()
    return v


def labels_version(project: Project, image_ids: Iterable[int]) -> str:
    """A hash (24 hex digits) of what training on ``image_ids`` reads from ``project``:
    single/multi-label, classes (id, name, order), templates, and per image its content
    hash, split and labels. Any change to those changes it; colours and row ids do not."""
    conn = project.store.conn
    ids = sorted({int(i) for i in image_ids})
    wanted = set(ids)
    h = hashlib.sha256()

    def feed(tag: str, rows: Iterable[Sequence[object]]) -> None:
        h.update(tag.encode())
        for row in rows:
            h.update(json.dumps([_value(v) for v in row], default=str).encode())
            h.update(b"\n")

    feed("multi_label", [(project.multi_label,)])
    feed("classes", conn.execute("SELECT id, name, position FROM classes ORDER BY id"))
    feed(
        "templates",
        conn.execute("SELECT id, name, points, skeleton, flip_pairs FROM templates ORDER BY id"),
    )
    images = {
        int(r[0]): r
        for r in conn.execute("SELECT id, sha256, split FROM images")
        if int(r[0]) in wanted
    }
    feed("images", [images.get(i, (i, None, None)) for i in ids])
    present = _tables(conn)
    for table, cols in _LABEL_TABLES:
        if table not in present:
            continue
        rows = [r for r in conn.execute(f"SELECT {cols} FROM {table}") if int(r[0]) in wanted]
        feed(table, sorted(rows, key=lambda r: json.dumps([_value(v) for v in r], default=str)))
    return h.hexdigest()[:24]


# --------------------------------------------------------------------------- writing


def _empty_folder(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise JobError(f"{out}: the job folder must be new or empty")
    out.mkdir(parents=True, exist_ok=True)


def _stored(path: Path, root: Path) -> str:
    try:
        return Path(os.path.relpath(path, root)).as_posix()
    except ValueError:  # another drive (Windows): only an absolute path reaches it
        return path.as_posix()


def write_bundle(
    project: Project,
    spec: dict[str, Any],
    out: str | Path,
    train_ids: Sequence[int],
    val_ids: Sequence[int],
    *,
    copy_images: bool = True,
    progress: ProgressFn | None = None,
) -> Job:
    """Write a job folder at ``out`` (new or empty) for training ``spec`` on ``train_ids``
    (validated on ``val_ids``). Images whose file is missing are left out, with a warning
    in the returned job. ``progress(done, total)`` counts images copied."""
    out = Path(out).resolve()
    used = [int(i) for i in train_ids] + [int(i) for i in val_ids]
    if not train_ids:
        raise JobError("the job has no training images; label some or assign splits")
    if len(set(used)) != len(used):
        raise JobError("an image is both in the training and the validation images")
    missing = {i for i in used if not project.image_path(i).is_file()}
    warnings = []
    if missing:
        names = sorted(project.image(i).path for i in missing)
        shown = ", ".join(names[:10]) + (" ..." if len(names) > 10 else "")
        warnings.append(f"{len(names)} image files are missing and left out: {shown}")
    train = [i for i in train_ids if i not in missing]
    val = [i for i in val_ids if i not in missing]
    if not train:
        raise JobError("every training image of the job is missing on disk")
    version = labels_version(project, [*train, *val])
    _empty_folder(out)
    target_root = out / PROJECT_DIR
    target_root.mkdir()
    try:
        dst = sqlite3.connect(target_root / DB_NAME)
        try:
            project.store.conn.backup(dst)  # a consistent snapshot, even while others edit
        finally:
            dst.close()
        with Project.open(target_root, read_only=False) as copy:
            _trim(project, copy, train, val, copy_images, progress)
            copy.store.conn.execute("VACUUM")
            if labels_version(copy, [*train, *val]) != version:  # pragma: no cover - a bug
                raise JobError("the job's copy of the labels differs from the project's")
        shutil.rmtree(target_root / "cache", ignore_errors=True)
        job = Job(
            out, uuid.uuid4().hex, dict(spec), train, val, version, copy_images,
            str(project.root), time.time(), warnings,
        )  # fmt: skip
        _write_job(job)
        script = out / RUN_SCRIPT
        write_text_atomic(script, run_script(job))
        script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise
    return job


def _trim(
    source: Project,
    copy: Project,
    train: list[int],
    val: list[int],
    copy_images: bool,
    progress: ProgressFn | None,
) -> None:
    """Leave in ``copy`` only the job's images, no runs, and image paths
    that resolve from the copy's folder; copy the files when ``copy_images``."""
    keep = set(train) | set(val)
    paths: dict[int, str] = {}
    if copy_images:
        folder = copy.root / "images"
        folder.mkdir()
        for n, image_id in enumerate([*train, *val]):
            src = source.image_path(image_id)
            name = f"{image_id:06d}_{src.name}"
            shutil.copy2(src, folder / name)
            paths[image_id] = f"images/{name}"
            if progress is not None:
                progress(n + 1, len(keep))
    else:
        for image_id in keep:
            paths[image_id] = _stored(source.image_path(image_id), copy.root)
    conn = copy.store.conn
    with copy.transaction():
        conn.execute("DELETE FROM runs")
        copy.remove_images([i for i in copy.image_ids() if i not in keep])
        # splits stay the project's (the labels version hashes them); run-job trains on
        # the job's explicit train/val ids
        conn.executemany(
            "UPDATE images SET path = ?, fold = NULL WHERE id = ?",
            [(paths[i], i) for i in keep],
        )


def _write_job(job: Job) -> None:
    data = {
        "format": JOB_FORMAT,
        "job_id": job.job_id,
        "created_at": job.created_at,
        "tlstudio": __version__,
        "source": job.source,
        "labels_version": job.labels_version,
        "images_copied": job.images_copied,
        "warnings": job.warnings,
        "spec": job.spec,
        "image_ids": {"train": job.train_ids, "val": job.val_ids},
    }
    write_text_atomic(job.folder / JOB_FILE, json.dumps(data, indent=1) + "\n")


def run_script(job: Job) -> str:
    """The text of ``run.sh``: torchrun on one machine, srun + torchrun under SLURM."""
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(job.created_at))
    return f"""#!/usr/bin/env bash
# tlstudio training job {job.job_id}
# written by `tlstudio bundle` on {when} from {job.source}
#
# On one machine (a GPU server, or the CPU):
#     bash run.sh                    one process per GPU of this machine (1 on the CPU)
#     NPROC=2 bash run.sh            choose the number of processes
#     DEVICE=cpu NPROC=2 bash run.sh train on the CPU (gloo) even where there are GPUs
# On a SLURM cluster: edit the #SBATCH lines below, then run from this folder
#     sbatch run.sh                  (several nodes: --nodes=N; one process per GPU)
# Needs tlstudio (with torch) on the server: PYTHON=/path/to/venv/bin/python bash run.sh
#
# Then copy this folder back and, on the computer with the project:
#     tlstudio import-run PROJECT_FOLDER THIS_FOLDER
#
# sbatch reads the #SBATCH lines; for bash they are comments.
#SBATCH --job-name=tlstudio-{job.job_id[:8]}
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=1
#SBATCH --cpus-per-task=8
#SBATCH --time=04:00:00
#SBATCH --output=tlstudio-%j.out
set -euo pipefail

HERE="$(cd "$(dirname "${{BASH_SOURCE[0]}}")" && pwd)"
if [ ! -f "$HERE/{JOB_FILE}" ] && [ -n "${{SLURM_SUBMIT_DIR:-}}" ]; then
    HERE="$SLURM_SUBMIT_DIR"  # sbatch runs a copy of this script: use the submit folder
fi
if [ ! -f "$HERE/{JOB_FILE}" ]; then
    echo "run.sh: no {JOB_FILE} in $HERE; start run.sh from the job folder" >&2
    exit 2
fi
PYTHON="${{PYTHON:-python3}}"
DEVICE="${{DEVICE:-auto}}"
TORCHRUN=("$PYTHON" -m torch.distributed.run)

if [ -n "${{SLURM_JOB_ID:-}}" ]; then
    NODES="${{SLURM_JOB_NUM_NODES:-1}}"
    NPROC="${{NPROC:-${{SLURM_GPUS_ON_NODE:-1}}}}"
    MASTER="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"
    # one torchrun per node; torchrun starts NPROC training processes on each
    exec srun --nodes="$NODES" --ntasks-per-node=1 "${{TORCHRUN[@]}}" \\
        --nnodes="$NODES" --nproc_per_node="$NPROC" \\
        --rdzv-backend=c10d --rdzv-endpoint="$MASTER:29500" --rdzv-id="$SLURM_JOB_ID" \\
        -m tlstudio run-job "$HERE" --device "$DEVICE"
fi

if [ -z "${{NPROC:-}}" ]; then
    NPROC="$("$PYTHON" -c 'import torch; print(max(1, torch.cuda.device_count()))')"
    [ "$DEVICE" = "cpu" ] && NPROC=1
fi
exec "${{TORCHRUN[@]}}" --standalone --nproc_per_node="$NPROC" \\
    -m tlstudio run-job "$HERE" --device "$DEVICE"
"""


# --------------------------------------------------------------------------- reading


def read_job(folder: str | Path) -> Job:
    """The job in ``folder`` (its ``job.json``); JobError naming the problem."""
    folder = Path(folder).resolve()
    path = folder / JOB_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise JobError(f"{folder}: not a job folder (no {JOB_FILE}); make one with "
                       "'tlstudio bundle'") from None  # fmt: skip
    except (OSError, ValueError) as exc:
        raise JobError(f"{path}: not readable ({exc})") from None
    try:
        if int(data["format"]) > JOB_FORMAT:
            raise JobError(f"{path}: written by a newer tlstudio ({data.get('tlstudio')})")
        ids = data["image_ids"]
        return Job(
            folder, str(data["job_id"]), dict(data["spec"]),
            [int(i) for i in ids["train"]], [int(i) for i in ids["val"]],
            str(data["labels_version"]), bool(data.get("images_copied", True)),
            str(data.get("source", "")), float(data.get("created_at", 0.0)),
            [str(w) for w in data.get("warnings", [])],
        )  # fmt: skip
    except (KeyError, TypeError, ValueError) as exc:
        raise JobError(f"{path}: not a tlstudio job file ({exc!r} is missing or wrong)") from None


def write_result(job: Job, run_id: int, status: str) -> None:
    """``result.json``: which run of ``job/project`` the job trained (written by run-job)."""
    data = {"job_id": job.job_id, "run_id": int(run_id), "status": status, "at": time.time()}
    write_text_atomic(job.folder / RESULT_FILE, json.dumps(data, indent=1) + "\n")


def _job_run(job: Job, runs: RunStore) -> RunRecord:
    """The run the job trained: the one in ``result.json``, else the newest run."""
    result = job.folder / RESULT_FILE
    run_id = None
    if result.is_file():
        try:
            run_id = int(json.loads(result.read_text(encoding="utf-8"))["run_id"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise JobError(f"{result}: not readable ({exc})") from None
    records = runs.list()
    if run_id is None:
        if not records:
            raise JobError(
                f"{job.folder}: the job has not trained yet; run {RUN_SCRIPT} on the server "
                "and copy the folder back"
            )
        return records[-1]
    for rec in records:
        if rec.id == run_id:
            return rec
    raise JobError(f"{result}: run {run_id} is not in the job's project")


# --------------------------------------------------------------------------- importing


def import_run(project: Project, folder: str | Path, *, force: bool = False) -> int:
    """Copy the run a job trained into ``project`` as a new run; returns its id.

    Refuses (:class:`LabelsChangedError`) when the project's labels of the job's images
    are not those the job was made from, unless ``force``; refuses a run that did not
    finish or was imported before."""
    job = read_job(folder)
    if not job.project_dir.is_dir():
        raise JobError(f"{job.folder}: the job has no {PROJECT_DIR}/ folder")
    with Project.open(job.project_dir, read_only=True) as done:
        jruns = RunStore(done)
        rec = _job_run(job, jruns)
        if rec.status == "running":
            raise JobError(
                f"{job.folder}: run {rec.id} of the job is still training (or its process was "
                "killed); wait for it, or resume it on the server"
            )
        if rec.checkpoint is None:
            raise JobError(
                f"{job.folder}: run {rec.id} of the job saved no model (status {rec.status}"
                + (f": {rec.error}" if rec.error else "")
                + ")"
            )
        epochs = jruns.epochs(rec.id)
        predictions = [
            p
            for image_id, _score in jruns.predicted_images(rec.id)
            if (p := jruns.prediction(rec.id, image_id)) is not None
        ]
        src_dir = job.project_dir / "runs" / str(rec.id)
        checkpoint_name = Path(rec.checkpoint).name
    if not force:
        _check_labels(project, job)
    runs = RunStore(project)
    for other in runs.list():
        origin = other.config.get("imported_from") or {}
        if origin.get("job_id") == job.job_id and origin.get("job_run") == rec.id:
            raise JobError(f"{job.folder}: this job's run was imported before, as run {other.id}")
    staging = project.root / "runs" / f".import-{uuid.uuid4().hex[:12]}"
    staging.mkdir(parents=True)
    try:
        for item in src_dir.iterdir():
            if item.is_file():
                shutil.copy2(item, staging / item.name)
        if not (staging / checkpoint_name).is_file():
            raise JobError(f"{src_dir / checkpoint_name}: the job's model file is missing")
        config = dict(rec.config)
        config["imported_from"] = {
            "job_id": job.job_id, "job_run": rec.id, "job_folder": str(job.folder),
            "imported_at": time.time(), "forced": bool(force),
        }  # fmt: skip
        known = set(project.image_ids())
        with project.transaction():
            run_id = runs.start(
                rec.task, rec.backbone, config, rec.device, created_at=rec.created_at
            )
            for epoch, metrics in epochs:
                runs.log_epoch(run_id, epoch, metrics)
            for p in predictions:
                if p.image_id in known:
                    runs.set_prediction(run_id, p.image_id, p.payload, p.mask, p.score)
            runs.update(
                run_id,
                status=rec.status,
                error=rec.error,
                metric_name=rec.metric_name,
                best_metric=rec.best_metric,
                checkpoint=f"runs/{run_id}/{checkpoint_name}",
                duration_s=rec.duration_s,
            )
            target = project.root / "runs" / str(run_id)
            if target.exists():  # a leftover folder of a run id never committed
                shutil.rmtree(target)
            os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return run_id


def _check_labels(project: Project, job: Job) -> None:
    gone = [i for i in job.image_ids if i not in set(project.image_ids())]
    if gone:
        raise LabelsChangedError(
            f"{len(gone)} of the job's {len(job.image_ids)} images are no longer in "
            f"{project.root}: the job was made from another version of this project (or "
            "from another project)"
        )
    now = labels_version(project, job.image_ids)
    if now != job.labels_version:
        raise LabelsChangedError(
            f"the labels of {project.root} changed since the job was made "
            f"({time.strftime('%Y-%m-%d %H:%M', time.localtime(job.created_at))}): classes, "
            "templates, splits or labels of its images differ, so the run's metrics would not "
            "describe the project"
        )
