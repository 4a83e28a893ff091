"""Domain adaptation (tlstudio.ml.adapt): the losses, the gradient reversal and its λ
schedule, the cached-feature variants, which images take part, and runs through the
runner and the CLI on the demo project (two domains)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tlstudio.cli import main
from tlstudio.core.demo import create_demo_project
from tlstudio.core.runs import RunStore
from tlstudio.ml import adapt as A
from tlstudio.ml import runner
from tlstudio.ml.callbacks import Callback
from tlstudio.ml.runner import RunSpec
from tlstudio.ml.trainer import TrainConfig


def _shifted(n: int = 400, d: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    source = torch.randn(n, d, generator=g)
    target = torch.randn(n, d, generator=g) * torch.linspace(0.5, 3.0, d) + 2.0
    return source, target


def test_coral_and_mmd_are_near_zero_for_one_distribution_and_grow_with_the_shift() -> None:
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(500, 6, generator=g), torch.randn(500, 6, generator=g)
    source, target = _shifted()
    assert A.coral_loss(a, b) < 0.02 * A.coral_loss(source, target)
    assert A.mmd_loss(a, b) < 0.05 * A.mmd_loss(source, target)
    # identical batches: exactly nothing to align
    assert float(A.coral_loss(a, a)) == pytest.approx(0.0, abs=1e-7)
    assert float(A.mmd_loss(a, a)) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("loss", [A.coral_loss, A.mmd_loss])
def test_descending_the_alignment_loss_moves_the_features_together(loss) -> None:
    source, target = _shifted(200)
    scale = torch.ones(6, requires_grad=True)
    shift = torch.zeros(6, requires_grad=True)
    opt = torch.optim.Adam([scale, shift], lr=0.05)
    first = float(loss(source * scale + shift, target).detach())
    for _ in range(150):
        opt.zero_grad()
        loss(source * scale + shift, target).backward()
        opt.step()
    assert float(loss(source * scale + shift, target)) < 0.2 * first


def test_gradient_reversal_flips_and_scales_the_gradient_only() -> None:
    x = torch.tensor([1.0, -2.0, 3.0], requires_grad=True)
    y = A.reverse_gradient(x, 0.5)
    assert torch.equal(y, x.detach())
    (y * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    assert torch.allclose(x.grad, torch.tensor([-0.5, -1.0, -1.5]))


def test_dann_lambda_follows_ganin_and_lempitsky() -> None:
    assert A.dann_lambda(0.0) == 0.0
    assert A.dann_lambda(0.1) == pytest.approx(2 / (1 + math.exp(-1)) - 1)
    assert A.dann_lambda(1.0) == pytest.approx(0.99991, abs=1e-5)
    values = [A.dann_lambda(p / 10) for p in range(11)]
    assert values == sorted(values)
    assert A.dann_lambda(5.0) == A.dann_lambda(1.0)  # progress is clamped


def test_domain_classifier_learns_to_tell_the_domains_apart() -> None:
    source, target = _shifted(300)
    clf = A.DomainClassifier(6, hidden=32)
    opt = torch.optim.Adam(clf.parameters(), lr=1e-2)
    for _ in range(100):
        opt.zero_grad()
        A.domain_loss(clf, source, target).backward()
        opt.step()
    clf.eval()
    acc = 0.5 * ((clf(source) < 0).float().mean() + (clf(target) > 0).float().mean())
    assert acc > 0.9


def test_standardize_matches_each_source_domain_to_the_target_statistics() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(5.0, 2.0, (50, 4))
    b = rng.normal(-3.0, 0.5, (30, 4))
    target = rng.normal(1.0, 4.0, (80, 4))
    x = np.concatenate([a, b]).astype(np.float32)
    out = A.align_features(x, ["a"] * 50 + [None] * 30, target, "standardize")
    for rows in (slice(0, 50), slice(50, 80)):  # each domain on its own
        assert np.allclose(out[rows].mean(0), target.mean(0), atol=1e-3)
        assert np.allclose(out[rows].std(0), target.std(0), rtol=1e-3)
    assert out.dtype == np.float32


def test_coral_on_features_moves_the_covariance_towards_the_target() -> None:
    rng = np.random.default_rng(1)
    mix = rng.normal(size=(5, 5))
    source = rng.normal(size=(400, 5)) * 3.0
    target = rng.normal(size=(400, 5)) @ mix * 2.0 + 1.0
    out = A.align_features(source, ["s"] * 400, target, "coral")
    gap = np.linalg.norm(np.cov(source.T) - np.cov(target.T))
    assert np.linalg.norm(np.cov(out.T) - np.cov(target.T)) < 0.2 * gap
    assert np.allclose(out.mean(0), target.mean(0), atol=1e-3)


def test_which_images_take_part() -> None:
    domain = {1: "A", 2: "A", 3: "B", 4: "B", 5: "B", 6: None}
    split = {1: "train", 2: "val", 3: "train", 4: "test", 5: None, 6: "train"}
    (train, val), target = A.split_for_adaptation(domain, split, "B", ([1, 3, 6], [2, 4]))
    assert (train, val) == ([1, 6], [2])  # the target's labelled images leave both sets
    assert target == [3, 5]  # its test image stays unseen
    _, target = A.split_for_adaptation(domain, split, "B", ([1], [2]), target_ids=[4])
    assert target == [4]
    with pytest.raises(A.AdaptError, match="no image has the domain 'C' \\(domains: A, B\\)"):
        A.split_for_adaptation(domain, split, "C", ([1], [2]))
    with pytest.raises(A.AdaptError, match="no images outside the val and test"):
        A.split_for_adaptation({1: "A", 2: "B"}, {2: "test"}, "B", ([1], []))
    with pytest.raises(A.AdaptError, match="adaptation needs labelled images of another"):
        A.split_for_adaptation({1: "B", 2: "B"}, {}, "B", ([1], [2]))


def test_settings_that_cannot_adapt_say_why() -> None:
    cfg = A.AdaptConfig("dann", "B")
    with pytest.raises(A.AdaptError, match="unfreeze some stages"):
        A.check_adaptation(cfg, "classify", cached=True, frozen=True)
    with pytest.raises(A.AdaptError, match="works on cached features"):
        A.check_adaptation(A.AdaptConfig("standardize", "B"), "classify", False, False)
    with pytest.raises(A.AdaptError, match="needs backbone stages that train"):
        A.check_adaptation(A.AdaptConfig("coral", "B"), "segment", cached=False, frozen=True)
    A.check_adaptation(A.AdaptConfig("coral", "B"), "classify", cached=True, frozen=True)
    A.check_adaptation(cfg, "detect", cached=False, frozen=False)
    with pytest.raises(A.AdaptError, match="unknown adaptation 'x'"):
        A.AdaptConfig("x", "B")
    with pytest.raises(A.AdaptError, match="weight must be 0 or more"):
        A.AdaptConfig("mmd", "B", -1.0)
    assert A.AdaptConfig.from_dict(cfg.to_dict()) == cfg


# --------------------------------------------------------------------------- through the runner


@pytest.fixture(scope="module")
def two_sites(tmp_path_factory):
    """The demo project with its images in two domains: "site A" (even ids) and
    "site B" (odd ids); B's images are in the train split or none, none in val/test."""
    project = create_demo_project(tmp_path_factory.mktemp("adapt") / "demo", n_images=24, size=64)
    ids = project.image_ids()
    project.set_domains({i: "site A" if k % 2 == 0 else "site B" for k, i in enumerate(ids)})
    project.set_splits({i: ("val" if k % 4 == 0 else "train") for k, i in enumerate(ids)})
    yield project
    project.close()


class _Seen(Callback):
    def __init__(self) -> None:
        self.train_images = 0
        self.val_images = 0
        self.progress: list[float] = []

    def on_fit_start(self, trainer, event) -> None:
        self.train_images, self.val_images = event.train_images, event.val_images
        self.model = trainer.model

    def on_batch_start(self, trainer, epoch, step) -> None:
        self.progress.append(getattr(trainer.model, "progress", -1.0))


@pytest.mark.parametrize("method", ["dann", "mmd", "coral"])
def test_a_trained_adaptation_run_uses_target_pixels_not_labels(two_sites, method) -> None:
    project = two_sites
    spec = RunSpec(
        task="classify", backbone="resnet18", weights="none", input_size=32,
        train=TrainConfig(epochs=2, batch_size=4, lr=1e-3, freeze=3),
        adapt=A.AdaptConfig(method, "site B", 0.5),
    )  # fmt: skip
    seen = _Seen()
    result = runner.train(project, spec, callbacks=[seen])
    source = [r for r in project.images() if r.domain == "site A"]
    assert seen.train_images == sum(1 for r in source if r.split == "train")
    assert seen.val_images == sum(1 for r in source if r.split == "val")
    assert isinstance(seen.model, A.DomainAdapted) and seen.model.method == method
    assert seen.model.last_alignment > 0.0
    # DANN's λ follows the training progress: 0 at the first step, rising
    assert seen.progress[0] == 0.0 and seen.progress == sorted(seen.progress)
    assert seen.progress[-1] > 0.5
    rec = RunStore(project).get(result.run_id)
    assert rec.status == "finished" and rec.config["adapt"]["method"] == method
    # the saved model is the plain task model: it loads and predicts without the wrapper
    model, loaded = runner.load_run_model(project, result.run_id)
    assert loaded.adapt == spec.adapt and not isinstance(model, A.DomainAdapted)
    assert runner.predict(project, result.run_id, project.image_ids()[:2]) == 2


@pytest.mark.parametrize("task", ["segment", "detect", "landmarks"])
def test_other_tasks_align_the_pooled_backbone_features(two_sites, task) -> None:
    spec = RunSpec(
        task=task, backbone="resnet18", weights="none", input_size=32,
        train=TrainConfig(epochs=1, batch_size=4, lr=1e-3, freeze=3),
        adapt=A.AdaptConfig("coral", "site B"),
    )  # fmt: skip
    seen = _Seen()
    result = runner.train(two_sites, spec, callbacks=[seen])
    assert result.ended.status == "finished"
    assert isinstance(seen.model, A.DomainAdapted) and seen.model.last_alignment > 0.0


def test_cached_features_are_moved_to_the_target_domain(two_sites, monkeypatch) -> None:
    calls = []
    real = A.align_features

    def spy(features, domains, target, method):
        calls.append((len(features), set(domains), len(target), method))
        return real(features, domains, target, method)

    monkeypatch.setattr(A, "align_features", spy)
    spec = RunSpec(
        task="classify", backbone="efficientnet_lite0", weights="bundled", input_size=32,
        train=TrainConfig(epochs=2, batch_size=8),
        adapt=A.AdaptConfig("standardize", "site B"),
    )  # fmt: skip
    result = runner.train(two_sites, spec)
    assert result.feature_cache
    n_target = sum(1 for r in two_sites.images() if r.domain == "site B")
    assert [c[1:] for c in calls] == [({"site A"}, n_target, "standardize")] * 2


def test_cli_train_adapt_and_its_errors(two_sites, capsys) -> None:
    root = str(two_sites.root)
    args = ["train", root, "--task", "classify", "--input-size", "32", "--epochs", "1"]
    assert main([*args, "--adapt", "coral", "--target-domain", "site B"]) == 0
    out, err = capsys.readouterr()
    assert "adapted to domain 'site B' with CORAL" in err and "fast path" in err
    assert main([*args, "--adapt", "dann", "--target-domain", "site B"]) == 2
    err = capsys.readouterr().err
    assert "unfreeze some stages" in err and "Traceback" not in err
    assert main([*args, "--adapt", "mmd"]) == 2
    assert "--adapt needs --target-domain" in capsys.readouterr().err
    assert main([*args, "--target-domain", "site B"]) == 2
    assert "--target-domain goes with --adapt" in capsys.readouterr().err
    assert main([*args, "--adapt", "coral", "--target-domain", "nowhere"]) == 2
    assert "no image has the domain 'nowhere'" in capsys.readouterr().err


def test_missing_target_files_are_left_out_with_a_warning(tmp_path) -> None:
    project = create_demo_project(tmp_path / "demo", n_images=12, size=48)
    ids = project.image_ids()
    project.set_domains({i: "site A" if k % 2 == 0 else "site B" for k, i in enumerate(ids)})
    project.set_splits({i: ("val" if k % 4 == 0 else "train") for k, i in enumerate(ids)})
    site_b = [i for i in ids if project.image(i).domain == "site B"]
    gone = project.image(site_b[0]).path
    project.image_path(site_b[0]).unlink()
    spec = RunSpec(
        task="classify", backbone="resnet18", weights="none", input_size=32,
        train=TrainConfig(epochs=1, batch_size=4, lr=1e-3, freeze=3),
        adapt=A.AdaptConfig("coral", "site B"),
    )  # fmt: skip
    result = runner.train(project, spec)
    assert result.ended.status == "finished"
    assert any("target domain 'site B'" in w and gone in w for w in result.warnings)
    for i in site_b[1:]:
        project.image_path(i).unlink()
    with pytest.raises(A.AdaptError, match="every image of the domain 'site B' to adapt to is"):
        runner.train(project, spec)
    project.close()


# --------------------------------------------------------------------------- per-domain metrics


def test_metrics_per_domain_in_evaluation_cli_and_report(two_sites, capsys, tmp_path) -> None:
    from tlstudio.ml.evaluation import evaluate_run
    from tlstudio.ml.report import write_report

    spec = RunSpec(
        task="classify", backbone="efficientnet_lite0", weights="bundled", input_size=32,
        train=TrainConfig(epochs=2, batch_size=8),
    )  # fmt: skip
    run_id = runner.train(two_sites, spec).run_id
    ev = evaluate_run(two_sites, run_id, "train")
    assert list(ev.by_domain) == ["site A", "site B"]
    domain_of = two_sites.domain_by_image()
    for name, row in ev.by_domain.items():
        records = [r for r in ev.records if domain_of[r.image_id] == name]
        assert row["images"] == len(records) > 0
        assert row["accuracy"] == pytest.approx(np.mean([r.correct for r in records]))
    assert "\ndomain,accuracy," in ev.to_csv()

    assert main(["evaluate", str(two_sites.root), str(run_id), "--split", "train",
                 "--by-domain"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "per domain:" in out
    line = next(x for x in out.splitlines() if x.startswith("site B"))
    assert f"{ev.by_domain['site B']['accuracy']:.3f}" in line
    html = write_report(two_sites, run_id, tmp_path / "r.html", split="train", heatmaps=False)
    text = html.read_text()
    assert "<h3>Per domain</h3>" in text and "site B" in text


def test_domain_experiment_keeps_evaluated_target_images_out_of_every_run(
    two_sites, monkeypatch, capsys
) -> None:
    from tlstudio.ml import domain_experiment as D

    trained: list[tuple[str, set[int], set[int]]] = []
    evaluated: list[set[int]] = []
    real_train, real_eval = runner.train, D.evaluate_ids

    def train_spy(project, spec, **kw):
        ids = set(kw["image_ids"][0]) | set(kw["image_ids"][1])
        trained.append((spec.adapt.method if spec.adapt else "none", ids,
                        set(kw.get("target_ids") or ())))  # fmt: skip
        return real_train(project, spec, **kw)

    def eval_spy(project, run_id, ids, **kw):
        evaluated.append(set(ids))
        return real_eval(project, run_id, ids, **kw)

    monkeypatch.setattr(runner, "train", train_spy)
    monkeypatch.setattr(D, "evaluate_ids", eval_spy)
    args = ["experiment", str(two_sites.root), "--kind", "domain", "--target-domain", "site B",
            "--k", "2", "--input-size", "32", "--epochs", "1"]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    for arm in ("source only", "Per-domain standardisation", "CORAL"):
        assert arm in out
    assert "± " in out and "target images adapted to (labels unused)" in out
    assert [t[0] for t in trained] == ["none", "standardize", "coral"] * 2
    site_b = {r.id for r in two_sites.images() if r.domain == "site B"}
    for (method, labelled, target), seen in zip(trained, evaluated, strict=True):
        assert not labelled & site_b  # target labels never train or validate
        assert seen <= site_b and not seen & target  # evaluated images were not adapted to
        assert method == "none" or target == site_b - seen
    runs = RunStore(two_sites).list()
    kinds = [r.config.get("experiment", {}).get("kind") for r in runs]
    assert kinds.count("domain") == 6
    assert main([*args[:-2], "--epochs", "1", "--k", "20"]) == 2
    assert "needs at least 20" in capsys.readouterr().err
