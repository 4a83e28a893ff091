"""Run a launcher (torchrun, a job's run.sh) that starts processes of its own, so that a
test never leaves them behind: on the deadline every process of its session is killed."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Sequence
from typing import Any


def run_job_processes(
    cmd: Sequence[str], *, timeout: float, **popen: Any
) -> subprocess.CompletedProcess[str]:
    """``cmd`` in a session of its own, stdout and stderr together in ``.stdout``; after
    ``timeout`` seconds the whole session (the launcher and every process it started) is
    killed and ``subprocess.TimeoutExpired`` raised, so a hung job fails the test."""
    with subprocess.Popen(
        list(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True, **popen,
    ) as proc:  # fmt: skip
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the session's id is the launcher's pid
            proc.communicate(timeout=30)
            raise
    return subprocess.CompletedProcess(list(cmd), proc.returncode, out)
