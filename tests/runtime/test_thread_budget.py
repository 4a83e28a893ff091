"""One thread budget per process (issue 12 §2): the policy, ``--threads`` and
``TLSTUDIO_THREADS`` on the command line, onnxruntime's session threads, DataLoader workers."""

from __future__ import annotations

import shutil

import pytest

from tlstudio.cli import main
from tlstudio.core.errors import ValidationError
from tlstudio.runtime import threads


@pytest.fixture(autouse=True)
def _no_budget_left():
    yield
    threads.clear()


def test_defaults_leave_the_window_a_core_and_give_the_command_line_all():
    assert threads.plan(None, gui=True, cores=2).threads == 1
    assert threads.plan(None, gui=True, cores=1).threads == 1
    assert threads.plan(None, gui=False, cores=2).threads == 2
    window16 = threads.plan(None, gui=True, cores=16)
    assert window16.total == 15 and "one left for the window" in window16.source
    # from 4 threads a quarter (at most 4) load data; together they stay within the budget
    assert (window16.threads, window16.loader_workers) == (12, 3)
    assert threads.plan(3, gui=False).loader_workers == 0
    big = threads.plan(64, gui=False)
    assert (big.threads, big.loader_workers, big.interop) == (60, 4, 1)
    with pytest.raises(ValidationError, match="threads must be 0"):
        threads.plan(-1, gui=False)


def test_a_library_caller_keeps_torchs_setting(torch_one_thread):
    import torch

    from tlstudio.ml.threads import apply

    assert threads.configured() is None
    assert apply() == 1 and torch.get_num_threads() == 1


@pytest.fixture
def trained_copy(trained_demo, tmp_path):
    root = tmp_path / "demo"
    shutil.copytree(trained_demo.project.root, root)
    return root, trained_demo.runs["classify"]


def test_cli_threads_option_sets_torchs_threads(trained_copy, torch_one_thread, capsys):
    import torch

    root, run_id = trained_copy
    assert main(["evaluate", str(root), str(run_id), "--threads", "3"]) == 0
    assert torch.get_num_threads() == 3
    assert threads.configured() is None  # the budget ended with the command


def test_cli_takes_the_environment_variable_and_names_it_when_wrong(
    trained_copy, torch_one_thread, monkeypatch, capsys
):
    import torch

    root, run_id = trained_copy
    monkeypatch.setenv(threads.ENV_VAR, "2")
    assert main(["predict", str(root), str(run_id), "--images", "1"]) == 0
    assert torch.get_num_threads() == 2
    monkeypatch.setenv(threads.ENV_VAR, "many")
    assert main(["predict", str(root), str(run_id), "--images", "1"]) == 2
    assert "TLSTUDIO_THREADS='many'" in capsys.readouterr().err


def test_onnxruntime_sessions_follow_the_budget(make_model, image_file, monkeypatch, capsys):
    import onnxruntime as ort

    sessions = []
    real = ort.InferenceSession

    def recording(path, options, **kwargs):
        sessions.append(options)
        return real(path, options, **kwargs)

    monkeypatch.setattr(ort, "InferenceSession", recording)
    model = make_model("classify")
    monkeypatch.setenv(threads.WAIT_POLICY_VAR, "PASSIVE")
    assert main(["predict", "--model", str(model), str(image_file), "--threads", "1"]) == 0
    (opts,) = sessions
    assert (opts.intra_op_num_threads, opts.inter_op_num_threads) == (1, 1)
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_dataloader_workers_come_from_the_budget(trained_copy, torch_one_thread):
    from tlstudio.core.project import Project
    from tlstudio.ml import data as data_mod
    from tlstudio.ml.architectures import get_spec
    from tlstudio.ml.callbacks import Callback
    from tlstudio.ml.runner import RunSpec, build_model
    from tlstudio.ml.train_config import TrainConfig
    from tlstudio.ml.trainer import Trainer

    class LoaderWorkers(Callback):
        def on_fit_start(self, trainer, event) -> None:
            self.seen = trainer._train_loader.num_workers

    root, _ = trained_copy
    bspec = get_spec("resnet18")
    with Project.open(root) as project:
        train, _val = data_mod.make_datasets(project, "classify", 32, bspec.mean, bspec.std, None)
        threads.configure(8, gui=False)  # 2 DataLoader workers, 6 compute threads
        for num_workers, expected in ((None, 2), (0, 0)):  # an explicit setting wins
            spec = RunSpec("classify", "resnet18", "none", input_size=32,
                           train=TrainConfig(epochs=1, batch_size=4, num_workers=num_workers))  # fmt: skip
            probe = LoaderWorkers()
            ended = Trainer(build_model(project, spec), train, None, spec.train,
                            callbacks=[probe]).fit()  # fmt: skip
            assert ended.status == "finished" and probe.seen == expected
