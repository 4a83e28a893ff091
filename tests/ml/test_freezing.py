"""Freeze depth really freezes; BN stays in eval; counts, LR groups, progressive unfreezing."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tlstudio.ml.backbones import Backbone, build_backbone
from tlstudio.ml.freezing import (
    ProgressiveUnfreezer,
    apply_frozen_bn_eval,
    count_parameters,
    param_groups,
    set_freeze_depth,
)


@pytest.fixture
def backbone() -> Backbone:
    torch.manual_seed(0)
    return build_backbone("resnet18", weights="none")  # BN in every stage, 5 stages


def _stage_params(b: Backbone, i: int) -> int:
    return sum(p.numel() for p in b.stages[i].parameters())


def _snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_sgd_step_leaves_frozen_stages_bit_identical(backbone: Backbone) -> None:
    head = nn.Linear(backbone.out_channels, 3)
    model = nn.Sequential(backbone, head)
    set_freeze_depth(backbone, 2)
    model.train()
    before = [_snapshot(s) for s in backbone.stages]
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 0])
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
    after = [_snapshot(s) for s in backbone.stages]
    for i in (0, 1):  # weights and BN running stats untouched
        assert all(torch.equal(before[i][k], after[i][k]) for k in before[i]), f"stage {i} changed"
        assert all(p.grad is None for p in backbone.stages[i].parameters())
    for i in (2, 3, 4):
        changed = [k for k in before[i] if not torch.equal(before[i][k], after[i][k])]
        assert any(k.endswith("weight") and "bn" not in k for k in changed), (
            f"stage {i} conv unchanged"
        )
        assert any(k.endswith("running_mean") for k in changed), f"stage {i} BN stats unchanged"


def test_frozen_stages_stay_in_eval_mode(backbone: Backbone) -> None:
    set_freeze_depth(backbone, 2)
    model = nn.Sequential(backbone, nn.Linear(backbone.out_channels, 2))
    model.train()  # through a parent module, as a trainer would
    for i, stage in enumerate(backbone.stages):
        bns = [m for m in stage.modules() if isinstance(m, nn.BatchNorm2d)]
        assert bns and all(bn.training == (i >= 2) for bn in bns)
    model.eval()
    assert not any(m.training for m in backbone.modules())
    set_freeze_depth(backbone, 0)
    model.train()
    assert all(m.training for m in backbone.modules())


def test_frozen_bn_running_stats_unchanged_in_train_forward(backbone: Backbone) -> None:
    set_freeze_depth(backbone, "all")
    backbone.train()
    before = _snapshot(backbone)
    with torch.no_grad():
        backbone(torch.randn(2, 3, 32, 32) * 3 + 1)
    after = _snapshot(backbone)
    assert all(torch.equal(before[k], after[k]) for k in before)
    set_freeze_depth(backbone, 4)  # the last stage now trains: its BN statistics move
    backbone.train()
    with torch.no_grad():
        backbone(torch.randn(2, 3, 32, 32) * 3 + 1)
    moved = {k for k, v in _snapshot(backbone).items() if not torch.equal(v, before[k])}
    assert moved and all(k.startswith("stages.4.") for k in moved)


def test_trainable_counts(backbone: Backbone) -> None:
    total = sum(p.numel() for p in backbone.parameters())
    set_freeze_depth(backbone, 0)
    assert count_parameters(backbone) == (total, total)
    set_freeze_depth(backbone, 2)
    frozen = _stage_params(backbone, 0) + _stage_params(backbone, 1)
    assert 0 < frozen < total
    assert count_parameters(backbone) == (total - frozen, total)
    set_freeze_depth(backbone, "all")
    assert count_parameters(backbone) == (0, total)
    set_freeze_depth(backbone, len(backbone.stages))
    assert count_parameters(backbone) == (0, total)
    set_freeze_depth(backbone, 1)  # absolute: unfreezes what depth "all" froze
    assert count_parameters(backbone) == (total - _stage_params(backbone, 0), total)
    assert backbone.frozen_depth == 1


@pytest.mark.parametrize("depth", [-1, 6, "some", 2.0, True])
def test_invalid_depth(backbone: Backbone, depth: object) -> None:
    with pytest.raises(ValueError, match="freeze depth"):
        set_freeze_depth(backbone, depth)  # type: ignore[arg-type]


def test_param_groups_discriminative_lrs(backbone: Backbone) -> None:
    head = nn.Linear(backbone.out_channels, 4)
    set_freeze_depth(backbone, 2)
    groups = param_groups(backbone, head, base_lr=1e-2, stage_decay=0.5)
    assert [g["name"] for g in groups] == ["head", "layer4", "layer3", "layer2"]
    assert [g["lr"] for g in groups] == pytest.approx([1e-2, 5e-3, 2.5e-3, 1.25e-3])
    grouped = [p for g in groups for p in g["params"]]
    assert len({id(p) for p in grouped}) == len(grouped)
    trainable = {id(p) for p in backbone.parameters() if p.requires_grad} | {
        id(p) for p in head.parameters()
    }
    assert {id(p) for p in grouped} == trainable
    opt = torch.optim.AdamW(groups)  # accepted as-is by torch optimizers
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([g["lr"] for g in groups])
    set_freeze_depth(backbone, "all")
    assert [g["name"] for g in param_groups(backbone, head, 1e-3, 0.5)] == ["head"]


def test_progressive_unfreezer(backbone: Backbone) -> None:
    unfreezer = ProgressiveUnfreezer(backbone, start_depth="all", every_n_epochs=2, min_depth=1)
    assert backbone.frozen_depth == 5
    depths, changes = [], []
    for epoch in range(12):
        changes.append(unfreezer.on_epoch_start(epoch))
        depths.append(backbone.frozen_depth)
    assert depths == [5, 5, 4, 4, 3, 3, 2, 2, 1, 1, 1, 1]
    assert changes == [
        False,
        False,
        True,
        False,
        True,
        False,
        True,
        False,
        True,
        False,
        False,
        False,
    ]
    # The topmost frozen stage is the one released: stage 1 trains, stage 0 stays frozen.
    assert all(p.requires_grad for p in backbone.stages[1].parameters())
    assert not any(p.requires_grad for p in backbone.stages[0].parameters())
    with pytest.raises(ValueError):
        ProgressiveUnfreezer(backbone, start_depth=1, every_n_epochs=1, min_depth=2)


def test_apply_frozen_bn_eval_on_plain_module() -> None:
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 4, 3), nn.BatchNorm2d(4)
    )
    model[:2].requires_grad_(False)
    model.train()
    apply_frozen_bn_eval(model)
    assert not model[1].training and model[3].training
