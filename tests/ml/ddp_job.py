"""A training job for ``torchrun``, started by tests/ml/test_distributed.py.

``python -m torch.distributed.run ... tests/ml/ddp_job.py PROJECT SPECS_JSON OUT_DIR``
trains each RunSpec of the list in SPECS_JSON on PROJECT, one after the other, with
:func:`tlstudio.ml.runner.train` (an entry ``{"resume": RUN}`` goes on with that run through
:func:`tlstudio.ml.runner.resume_run`; ``"cancel_after_epoch": E`` in a spec's entry cancels
that run's token on rank 0 alone after epoch E), joined to the job by
:func:`tlstudio.ml.distributed.run_in_job` exactly as ``tlstudio train`` is, and writes
``OUT_DIR/rank<R>.json``: per run its id, status and epochs run, then how many rows this
process's database connection changed (SQLite's ``total_changes``) and whether it opened
the project read-only. ``DDP_TEST_FAIL_RANK=R`` makes rank R raise in its second epoch.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def main() -> int:
    from tlstudio.ml import distributed as D
    from tlstudio.ml import runner
    from tlstudio.ml.callbacks import Callback, CancelToken
    from tlstudio.ml.trainer import Trainer

    root, spec_file, out_dir = sys.argv[1:4]
    entries = json.loads(Path(spec_file).read_text())
    device = next(e["train"]["device"] for e in entries if "resume" not in e)
    fail_rank = os.environ.get("DDP_TEST_FAIL_RANK")

    class _CancelAfter(Callback):
        """Cancels ``token`` (as the window's Stop button would) after epoch ``epoch``."""

        def __init__(self, token: CancelToken, epoch: int) -> None:
            self.token, self.epoch = token, epoch

        def on_epoch_end(self, trainer, event) -> None:
            if event.epoch == self.epoch:
                self.token.cancel()

    def body(project, ctx) -> int:
        if fail_rank is not None and ctx.rank == int(fail_rank):
            real = Trainer._train_batches

            def failing(self, epoch):
                if epoch == 1:
                    raise RuntimeError(f"injected failure in rank {ctx.rank}")
                return real(self, epoch)

            Trainer._train_batches = failing
        runs = []
        for entry in entries:
            if "resume" in entry:
                result = runner.resume_run(project, entry["resume"], distributed=ctx)
            else:
                entry = dict(entry)
                cancel_after = entry.pop("cancel_after_epoch", None)
                token, callbacks = CancelToken(), []
                if cancel_after is not None and ctx.is_main:
                    callbacks.append(_CancelAfter(token, cancel_after))
                spec = runner.RunSpec.from_dict(entry)
                result = runner.train(
                    project, spec, distributed=ctx, token=token, callbacks=callbacks
                )
            ended = result.ended
            runs.append({"run_id": result.run_id, "status": ended.status,
                         "epochs_run": ended.epochs_run})  # fmt: skip
        record = {
            "runs": runs,
            "changes": project.store.conn.total_changes,
            "read_only": project.read_only,
        }
        Path(out_dir, f"rank{ctx.rank}.json").write_text(json.dumps(record))
        return 0

    return D.run_in_job(root, device, body)


if __name__ == "__main__":
    sys.exit(main())
