"""One run in several processes (DistributedDataParallel under torchrun, gloo on the CPU).

The torchrun tests start real jobs (``python -m torch.distributed.run --standalone``) on a
tiny project; every collective gives up after 60 s (``TLSTUDIO_DIST_TIMEOUT_S``) and every
job after JOB_TIMEOUT_S (all its processes killed), so a broken job fails the test
instead of hanging the suite.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from subprocess import CompletedProcess

import pytest
import torch
from job_processes import run_job_processes
from torch.utils.data import DataLoader, RandomSampler

from tlstudio.core.demo import create_demo_project
from tlstudio.core.project import Project
from tlstudio.core.runs import RunStore
from tlstudio.ml import distributed as D
from tlstudio.ml import runner
from tlstudio.ml.callbacks import Callback
from tlstudio.ml.runner import RunSpec
from tlstudio.ml.train_config import TrainConfig

REPO = Path(__file__).resolve().parents[2]
JOB_TIMEOUT_S = 180
TRAIN = 16  # training images of the test project (a multiple of 2 processes × batch 4)


# --------------------------------------------------------------------------- helpers


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    """A demo project of 24 images (64 px): the first 16 train, the last 8 val."""
    project = create_demo_project(tmp_path / "tiny", n_images=24, size=64)
    ids = project.image_ids()
    project.set_splits({i: ("train" if k < TRAIN else "val") for k, i in enumerate(ids)})
    project.close()
    return tmp_path / "tiny"


def torchrun(nproc: int, args: list[str], cwd: Path, **env: str) -> CompletedProcess[str]:
    """``torchrun --standalone --nproc_per_node nproc ARGS`` (a free port, this worktree's
    tlstudio); stdout and stderr together in ``.stdout``."""
    environ = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    environ[D.TIMEOUT_ENV] = "60"
    environ.update(env)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={nproc}", *args]  # fmt: skip
    return run_job_processes(cmd, cwd=cwd, env=environ, timeout=JOB_TIMEOUT_S)


def head_spec(batch: int, **train) -> RunSpec:
    """A deterministic model: a linear head (no dropout) on a fixed random ResNet-18 (32 px)."""
    cfg = TrainConfig(epochs=train.pop("epochs", 3), batch_size=batch, device="cpu",
                      lr=train.pop("lr", 3e-3), **train)  # fmt: skip
    return RunSpec(task="classify", backbone="resnet18", weights="none", train=cfg,
                   input_size=32, model_options={"dropout": 0.0})  # fmt: skip


def run_job(
    tmp_path: Path, project: Path, entries: list[RunSpec | dict], nproc: int = 2, **env: str
):
    """Run tests/ml/ddp_job.py under torchrun on RunSpecs (or ``{"resume": RUN}`` entries);
    (process, [rank0 record, rank1 record, …])."""
    spec_file = tmp_path / "specs.json"
    spec_file.write_text(
        json.dumps([e.to_dict() if isinstance(e, RunSpec) else e for e in entries])
    )
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    job = [str(REPO / "tests" / "ml" / "ddp_job.py"), str(project), str(spec_file), str(out)]
    proc = torchrun(nproc, job, tmp_path, **env)
    records = [
        json.loads((out / f"rank{r}.json").read_text())
        for r in range(nproc)
        if (out / f"rank{r}.json").is_file()
    ]
    return proc, records


def epoch_curve(project_dir: Path, run_id: int) -> list[dict[str, float]]:
    with Project.open(project_dir, read_only=True) as project:
        return [m for _, m in RunStore(project).epochs(run_id)]


# --------------------------------------------------------------------------- unit tests


def test_shards_cut_the_one_process_order_among_processes():
    """Each epoch's order is what a one-process loader draws from the same generator, and
    the shards of 2 processes together are that order, batch by batch."""
    n, batch = 10, 2
    gen = torch.Generator()
    gen.manual_seed(7)
    one = [i for b in DataLoader(range(n), batch_size=2 * batch, sampler=RandomSampler(
        range(n), generator=gen), generator=gen) for i in b.tolist()]  # fmt: skip
    shards = []
    for rank in range(2):
        gen.manual_seed(7)
        sampler = D.ShardSampler(n, 2, rank, gen)
        loader = DataLoader(range(n), batch_size=batch, sampler=sampler, generator=gen)
        shards.append([b.tolist() for b in loader])
    assert len(shards[0]) == len(shards[1]) == 3
    rebuilt = [i for b0, b1 in zip(*shards, strict=True) for i in D.interleave([b0, b1])]
    assert rebuilt == one
    assert sorted(rebuilt) == list(range(n))


def test_shards_pad_by_repeating_the_start_and_validation_shares_restore_order():
    gen = torch.Generator()
    parts = []
    for rank in range(3):
        gen.manual_seed(1)
        parts.append(list(D.ShardSampler(7, 3, rank, gen)))
    assert [len(p) for p in parts] == [3, 3, 3]
    flat = D.interleave(parts)
    assert sorted(flat[:7]) == list(range(7)) and flat[7:] == flat[:2]
    shares = [list(D.StrideSampler(7, 3, r)) for r in range(3)]
    assert shares == [[0, 3, 6], [1, 4], [2, 5]]
    assert D.interleave(shares) == list(range(7))


def test_sync_batchnorm_choice_and_conversion_keep_the_checkpoint_format():
    from torch import nn

    from tlstudio.ml.backbones import build_backbone

    cpu2 = D.DistContext(0, 2, 0, 2, "gloo", "cpu")
    gpu2 = D.DistContext(0, 2, 0, 2, "nccl", "cuda:0")
    assert D.use_sync_batchnorm(None, "segment", gpu2) is True
    assert D.use_sync_batchnorm(None, "classify", gpu2) is False
    assert D.use_sync_batchnorm(None, "detect", cpu2) is False
    assert (
        D.use_sync_batchnorm(True, "detect", D.DistContext(0, 1, 0, 1, "nccl", "cuda:0")) is False
    )
    with pytest.raises(D.DistributedError, match="GPUs only"):
        D.use_sync_batchnorm(True, "segment", cpu2)

    model = build_backbone("resnet18", "none")
    plain = {k: v.clone() for k, v in model.state_dict().items()}
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    synced = D.convert_sync_batchnorm(model)
    assert n_bn > 0
    assert sum(isinstance(m, nn.SyncBatchNorm) for m in synced.modules()) == n_bn
    assert not any(isinstance(m, nn.BatchNorm2d) for m in synced.modules())
    state = synced.state_dict()
    assert state.keys() == plain.keys()
    fresh = build_backbone("resnet18", "none")
    fresh.load_state_dict(state)  # a SyncBatchNorm checkpoint loads into a plain model


def test_devices_and_settings_for_a_job(monkeypatch):
    assert D._device_for("cpu", 3) == "cpu"
    assert D._device_for("auto", 0) == ("cuda:0" if torch.cuda.is_available() else "cpu")
    with pytest.raises(D.DistributedError, match="MPS"):
        D._device_for("mps", 0)
    if not torch.cuda.is_available():
        with pytest.raises(D.DeviceError, match="CUDA is not available"):
            D._device_for("cuda", 0)
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    assert not D.launched_by_torchrun() and D.init_from_env("cpu") is None
    monkeypatch.setenv(D.TIMEOUT_ENV, "soon")
    with pytest.raises(D.DistributedError, match="not a number"):
        D.collective_timeout_s()
    monkeypatch.setenv(D.TIMEOUT_ENV, "30")
    assert D.collective_timeout_s() == 30.0
    ctx = D.DistContext(0, 8, 0, 4, "nccl", "cuda:0")
    assert ctx.describe_device() == "cuda ×8 (nccl, 2 nodes)"
    assert ctx.layout(16, True)["global_batch"] == 128


def test_one_process_group_gives_the_plain_fit_exactly(tiny, tmp_path):
    """The multi-process hooks (sharded sampler, DDP step, reductions, agreement on stop)
    with a group of one process change no number of the fit."""
    import torch.distributed as dist

    with Project.open(tiny) as project:
        plain = runner.train(project, head_spec(8))
        dist.init_process_group(
            "gloo", store=dist.FileStore(str(tmp_path / "store"), 1), rank=0, world_size=1
        )
        try:
            ctx = D.DistContext(0, 1, 0, 1, "gloo", "cpu")
            ddp = runner.train(project, head_spec(8), distributed=ctx)
        finally:
            dist.destroy_process_group()
        runs = RunStore(project)
        a = [m for _, m in runs.epochs(plain.run_id)]
        b = [m for _, m in runs.epochs(ddp.run_id)]
        assert runs.get(ddp.run_id).device == "cpu ×1 (gloo)"
    assert [m["train_loss"] for m in a] == pytest.approx([m["train_loss"] for m in b], rel=1e-6)
    assert [m["val_loss"] for m in a] == pytest.approx([m["val_loss"] for m in b], rel=1e-6)


# --------------------------------------------------------------------------- torchrun jobs
# Two jobs only (each costs seconds of process start-up on a small CPU): one that trains
# several runs in turn (every check of a working job), one whose rank 1 raises.


class _StopAfter(Callback):
    """Raises after epoch ``epoch`` (its checkpoint is written): a run to resume."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_end(self, trainer, event) -> None:
        if event.epoch == self.epoch:
            raise RuntimeError("power cut")


def _through_backbone(spec: RunSpec) -> RunSpec:
    """The same frozen backbone, but images (not cached features) go through it every step."""
    spec.use_feature_cache = False
    return spec


def _cached_spec() -> RunSpec:
    """Bundled weights: the features of the fast path are cached (random weights are not)."""
    cfg = TrainConfig(epochs=1, batch_size=4, device="cpu")
    return RunSpec(task="classify", backbone="efficientnet_lite0", weights="bundled",
                   train=cfg, input_size=32)  # fmt: skip


@pytest.mark.slow
def test_two_processes_match_one_process_with_twice_the_batch(tiny, tmp_path):
    """One torchrun job (2 processes × batch 4) trains several runs in turn:

    - each is recorded once, by rank 0 alone (rank 1's database connection changes no row),
      with its processes and global batch;
    - it follows 1 process × batch 8 (same global batches, gradients averaged by DDP) to
      float rounding, on the cached-feature path and through the (frozen) backbone;
    - early stopping, a non-finite loss and a cancel on rank 0 stop every process at the
      same epoch;
    - the fast path's features are extracted by both processes and cached once;
    - a run started in one process (4 steps per epoch) goes on in 2 (2 steps per epoch)
      with its cosine schedule ending where it should."""
    resumed = _through_backbone(head_spec(4, epochs=4))
    with Project.open(tiny) as project:
        with pytest.raises(RuntimeError, match="power cut"):
            runner.train(project, resumed, callbacks=[_StopAfter(1)])
        (first,) = RunStore(project).list()
        assert first.status == "failed"
    specs = [
        head_spec(4),
        _through_backbone(head_spec(4, epochs=2)),
        head_spec(4, epochs=5, lr=1e-12, early_stopping_patience=1, monitor="val_loss"),
        head_spec(4, epochs=3, lr=1e30),
        _cached_spec(),
    ]
    cancelled = {**head_spec(4, epochs=4).to_dict(), "cancel_after_epoch": 1}
    entries = [s.to_dict() for s in specs] + [{"resume": first.id}, cancelled]
    proc, records = run_job(tmp_path, tiny, entries)
    assert proc.returncode == 0, proc.stdout
    assert len(records) == 2, proc.stdout
    rank0, rank1 = records
    assert rank1["changes"] == 0 and rank1["read_only"] is True
    assert rank0["changes"] > 0 and rank0["read_only"] is False
    statuses = [r["status"] for r in rank0["runs"]]
    assert statuses == ["finished", "finished", "stopped_early", "failed", "finished",
                        "finished", "cancelled"]  # fmt: skip
    assert rank1["runs"] == rank0["runs"]  # the same run ids, stops and epochs

    with Project.open(tiny) as project:
        store = RunStore(project)
        assert len(store.list()) == 2 + len(specs)  # one run per spec, not one per process
        cached = list((project.cache_dir / "features").rglob("*.npy"))
        assert len(cached) == project.image_count()  # 16 train + 8 val, each stored once
        run = store.get(rank0["runs"][0]["run_id"])
        assert run.device == "cpu ×2 (gloo)" and run.config["train"]["batch_size"] == 4
        assert run.config["distributed"] == [{"from_epoch": 0, "world_size": 2, "nodes": 1,
                                              "backend": "gloo", "batch_per_process": 4,
                                              "global_batch": 8, "sync_batchnorm": False}]  # fmt: skip
        assert (project.root / run.checkpoint).is_file()

        for ddp_run, spec in zip(rank0["runs"][:2], specs[:2], strict=True):
            single = spec.to_dict()
            single["train"]["batch_size"] = 8
            one = runner.train(project, RunSpec.from_dict(single))
            ref = [m for _, m in store.epochs(one.run_id)]
            got = [m for _, m in store.epochs(ddp_run["run_id"])]
            for name in ("train_loss", "val_loss", "accuracy"):
                assert [m[name] for m in got] == pytest.approx([m[name] for m in ref], rel=1e-4)
            worst = max(abs(g[n] - r[n]) / max(abs(r[n]), 1e-12)
                        for g, r in zip(got, ref, strict=True) for n in ("train_loss", "val_loss"))  # fmt: skip
            print(f"2 x batch 4 vs 1 x batch 8, run {ddp_run['run_id']}: "
                  f"largest relative loss difference {worst:.1e}")  # fmt: skip
        nan_run = store.get(rank0["runs"][3]["run_id"])
        assert nan_run.status == "failed" and "loss became" in (nan_run.error or "")
        # rank 0's cancel after epoch 1 stopped rank 1 there too (same epochs_run above)
        assert rank0["runs"][6]["epochs_run"] == 2
        assert store.get(rank0["runs"][6]["run_id"]).status == "cancelled"

        rec = store.get(first.id)
        assert rec.status == "finished" and rec.device == "cpu ×2 (gloo)"
        assert rec.config["distributed"][-1]["from_epoch"] == 2
        assert rec.config["distributed"][-1]["world_size"] == 2
        epochs = store.epochs(first.id)
    assert [e for e, _ in epochs] == [0, 1, 2, 3]
    # the last batch of epoch e runs at step (e + 1)·2 − 1 of 4·2 (2 steps per epoch now)
    for e in (2, 3):
        factor = (1 + math.cos(math.pi * ((e + 1) * 2 - 1) / 8)) / 2
        assert epochs[e][1]["lr"] == pytest.approx(resumed.train.lr * factor, rel=1e-6)


@pytest.mark.slow
def test_a_failing_rank_fails_the_whole_job_with_its_error(tiny, tmp_path):
    """Rank 1 raises in its second epoch while rank 0 waits for it in a collective: the
    job ends (within JOB_TIMEOUT_S, or subprocess.run raises) with rank 1's error."""
    proc, records = run_job(tmp_path, tiny, [head_spec(4, epochs=2)], DDP_TEST_FAIL_RANK="1")
    assert proc.returncode != 0
    assert "injected failure in rank 1" in proc.stdout
    assert records == []  # neither process got past the failure
    with Project.open(tiny) as project:
        (run,) = RunStore(project).list()
        assert run.status in ("failed", "interrupted"), run  # not left "running"


def test_a_job_past_its_deadline_is_killed_with_every_process_it_started(tmp_path):
    """The tests' launcher helper: a job that hangs fails the test and leaves no process."""
    import subprocess
    import time

    pid_file = tmp_path / "child.pid"
    script = f"sleep 120 & echo $! > {pid_file}; wait"
    with pytest.raises(subprocess.TimeoutExpired):
        run_job_processes(["bash", "-c", script], timeout=2)
    child = int(pid_file.read_text())

    def gone() -> bool:
        try:
            state = Path(f"/proc/{child}/stat").read_text().split(")")[-1].split()[0]
        except FileNotFoundError:
            return True
        return state in ("Z", "X")  # killed, not yet reaped by init

    deadline = time.monotonic() + 10
    while not gone() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gone()
