"""``experiment --kind multitask``: each task of a multi-task spec trained on its own, and
the joint run, with the same settings and splits; each task's main validation metric
single vs joint (:func:`compare_single_vs_joint`)."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field

from tlstudio.core.errors import ValidationError
from tlstudio.core.project import Project

from .callbacks import Callback, CancelToken
from .experiments import _ended, _train_jobs
from .metrics import MAIN_METRIC
from .parallel_runs import RunJob, RunPool
from .runner import RunSpec
from .tasks.joint import check_tasks


@dataclass
class TaskComparison:
    """One task: its main metric (``higher_is_better`` says which way is better) on the
    validation split, trained alone and in the joint run (NaN where a run failed)."""

    task: str
    metric: str
    higher_is_better: bool
    single: float
    joint: float
    single_run: int | None
    joint_run: int | None

    @property
    def joint_better(self) -> bool:
        """True when the joint run's value is the better one (False on a tie or NaN)."""
        if self.higher_is_better:
            return self.joint > self.single
        return self.joint < self.single


@dataclass
class MultitaskComparison:
    """Every task's :class:`TaskComparison`, in the spec's task order."""

    tasks: list[TaskComparison] = field(default_factory=list)
    cancelled: bool = False


_LOWER_IS_BETTER = ("nme", "recon_error")


def single_spec(spec: RunSpec, task: str) -> RunSpec:
    """``spec`` for ``task`` alone: same backbone, weights, training and input size, with
    the options the multi-task spec gives that task (``model_options[task]``)."""
    out = copy.deepcopy(spec)
    out.task = task
    out.model_options = dict(spec.model_options.get(task) or {})
    if task != "landmarks":
        out.template_id = None
    return out


def compare_single_vs_joint(
    project: Project,
    spec: RunSpec,
    callbacks: Sequence[Callback] = (),
    token: CancelToken | None = None,
    pool: RunPool | None = None,
) -> MultitaskComparison:
    """Train each task of ``spec`` (a multi-task spec, "classify,landmarks") alone, then the
    joint run, on the same splits with the same settings, and compare each task's main
    validation metric (of the epoch each run kept). Runs are recorded with config
    ``experiment = {"kind": "multitask", "arm": "single"|"joint", "task": ...}``."""
    tasks = check_tasks(spec.task)
    if len(tasks) < 2:
        raise ValidationError(
            "the multitask experiment needs several tasks: --task A,B (e.g. classify,landmarks)"
        )
    jobs = [
        RunJob(single_spec(spec, t), None, {"kind": "multitask", "arm": "single", "task": t}, t)
        for t in tasks
    ]
    jobs.append(
        RunJob(
            copy.deepcopy(spec),
            None,
            {"kind": "multitask", "arm": "joint", "task": spec.task},
            "joint",
        )  # fmt: skip
    )
    results = _train_jobs(project, jobs, callbacks, token, pool)
    joint = results[-1]
    out = MultitaskComparison(cancelled=not all(_ended(r) for r in results))
    multi = project.multi_label
    for task, single in zip(tasks, results[:-1], strict=True):
        metric = MAIN_METRIC["classify_multi" if task == "classify" and multi else task]
        s = single.metrics.get(metric, float("nan")) if _ended(single) else float("nan")
        j = joint.metrics.get(f"{task}/{metric}", float("nan")) if _ended(joint) else float("nan")
        out.tasks.append(
            TaskComparison(
                task,
                metric,
                metric not in _LOWER_IS_BETTER,
                float(s),
                float(j),
                single.run_id if single is not None else None,
                joint.run_id if joint is not None else None,
            )  # fmt: skip
        )
    return out
