"""Ignore regions (labelme's ``__ignore__``, VOC's void border) are left out of the
segmentation loss and metrics: the dataset marks them 255, the loss and the evaluation
skip those pixels."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from tlstudio.core.project import Project
from tlstudio.ml import metrics as M
from tlstudio.ml.data import ProjectDataset
from tlstudio.ml.tasks.segment import IGNORE_INDEX, SegmenterModel, soft_dice_loss

W, H, S = 64, 48, 32
RAW = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))


def _one_image(tmp_path: Path) -> tuple[Project, int, int]:
    """A project with one grey W×H image and a class "cell": (project, image id, class id)."""
    path = tmp_path / "a.png"
    cv2.imwrite(str(path), np.full((H, W, 3), 90, np.uint8))
    proj = Project.create(tmp_path / "p")
    (iid,) = proj.add_images([path]).added
    return proj, iid, proj.add_class("cell").id


def test_dataset_marks_ignored_pixels_255(tmp_path: Path) -> None:
    proj, iid, cid = _one_image(tmp_path)
    with proj:
        m = np.zeros((H, W), np.uint16)
        m[:, : W // 2] = cid
        proj.set_mask(iid, m)
        ignore = np.zeros((H, W), bool)
        ignore[: H // 2, :] = True
        proj.instances.set_ignore(iid, ignore)
        _, target = ProjectDataset(proj, "segment", [iid], S, *RAW)[0]
    mask = target["mask"]
    assert (mask[: S // 2] == IGNORE_INDEX).all()
    assert (mask[S // 2 :, : S // 2] == 1).all() and (mask[S // 2 :, S // 2 :] == 0).all()


def test_loss_counts_only_pixels_outside_ignore_regions() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 8, 8)
    target = torch.randint(0, 3, (2, 8, 8))
    ignored = target.clone()
    ignored[:, :4] = IGNORE_INDEX
    keep = ignored != IGNORE_INDEX
    want_ce = F.cross_entropy(logits.permute(0, 2, 3, 1)[keep], target[keep])
    model = SegmenterModel.__new__(SegmenterModel)  # the loss needs no network
    torch.nn.Module.__init__(model)
    model.num_classes, model.dice_weight = 2, 0.0
    got = model.loss_from_logits(logits, [{"mask": t} for t in ignored])
    torch.testing.assert_close(got["ce"], want_ce)
    # Dice: the ignored half neither adds nor removes: equal to Dice on the kept pixels
    probs = torch.softmax(logits, 1)
    dice = soft_dice_loss(probs, ignored)
    top = soft_dice_loss(probs[:, :, 4:], target[:, 4:])
    torch.testing.assert_close(dice, top)
    # whatever the network says under the ignore region, the loss does not change
    changed = logits.clone()
    changed[:, :, :4] = 50 * torch.randn(2, 3, 4, 8)
    again = model.loss_from_logits(changed, [{"mask": t} for t in ignored])
    torch.testing.assert_close(again["ce"], got["ce"])


def test_metrics_skip_ignored_pixels() -> None:
    target = np.zeros((4, 4), np.int64)
    target[:2] = 1
    pred = target.copy()
    pred[3, 3] = 1  # one wrong pixel ...
    ignored = target.copy()
    ignored[3, 3] = IGNORE_INDEX  # ... under the ignore region
    assert M.segmentation_metrics([pred], [ignored], 1)["pixel_accuracy"] == 1.0
    assert M.segmentation_metrics([pred], [target], 1)["pixel_accuracy"] < 1.0


def test_evaluation_leaves_ignore_regions_out(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from tlstudio.ml.evaluation import _segment

    proj, iid, cid = _one_image(tmp_path)
    with proj:
        m = np.zeros((H, W), np.uint16)
        m[:10, :10] = cid
        proj.set_mask(iid, m)
        pred = (m > 0).astype(np.int64)
        pred[30:, 30:] = 1  # wrong, but inside the ignore region
        ignore = np.zeros((H, W), bool)
        ignore[30:, 30:] = True
        ds = SimpleNamespace(image_ids=[iid])
        ev: dict = {"notes": []}
        _segment(proj, ds, [{"mask": pred}], ["cell"], ev)
        assert ev["summary"]["pixel_accuracy"] < 1.0
        proj.instances.set_ignore(iid, ignore)
        ev = {"notes": []}
        _segment(proj, ds, [{"mask": pred}], ["cell"], ev)
        assert ev["summary"]["pixel_accuracy"] == 1.0 and ev["summary"]["miou"] == 1.0
