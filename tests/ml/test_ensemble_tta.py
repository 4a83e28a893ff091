"""Ensembles (runs combined as one predictor, with the spread between members) and
test-time augmentation (views mapped back to the image, left/right points swapped)."""

from __future__ import annotations

import copy
import shutil

import numpy as np
import pytest
import torch

from tlstudio.core.demo import create_demo_project
from tlstudio.core.project import Project
from tlstudio.core.runs import RunStore
from tlstudio.ml import experiments as X
from tlstudio.ml import runner
from tlstudio.ml.ensemble import EnsembleError, EnsembleModel, create_ensemble, fuse_boxes
from tlstudio.ml.evaluation import evaluate_run
from tlstudio.ml.tasks.base import TaskModel
from tlstudio.ml.tasks.landmarks import decode_heatmaps
from tlstudio.ml.tta import TTAConfig, TTAModel


def _det(boxes, scores, labels):
    return {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "scores": torch.tensor(scores), "labels": torch.tensor(labels)}  # fmt: skip


def test_weighted_box_fusion_averages_agreeing_boxes():
    a = _det([[10, 10, 30, 30], [50, 50, 60, 60]], [0.9, 0.8], [0, 1])
    b = _det([[12, 10, 32, 30], [50, 50, 60, 60]], [0.3, 0.6], [0, 0])
    out = fuse_boxes([a, b])
    by_label = {}
    for box, s, lab, agree in zip(
        out["boxes"].tolist(),
        out["scores"].tolist(),
        out["labels"].tolist(),
        out["agreement"].tolist(),
        strict=True,
    ):
        by_label.setdefault(lab, []).append((box, s, agree))  # fmt: skip
    (box0, s0, ag0), (box0b, s0b, ag0b) = sorted(by_label[0], key=lambda r: -r[1])
    # the two overlapping class-0 boxes: corners weighted by score, score averaged
    assert box0 == pytest.approx([(10 * 0.9 + 12 * 0.3) / 1.2, 10, (30 * 0.9 + 32 * 0.3) / 1.2, 30])
    assert s0 == pytest.approx((0.9 + 0.3) / 2) and ag0 == 1.0
    # a box one model of two found scores half and counts half the members
    assert s0b == pytest.approx(0.6 / 2) and ag0b == 0.5
    assert by_label[1] == [([50, 50, 60, 60], pytest.approx(0.4), 0.5)]  # classes never merge
    assert out["scores"].tolist() == sorted(out["scores"].tolist(), reverse=True)
    nms = fuse_boxes([a, b], method="nms")
    assert [10, 10, 30, 30] in nms["boxes"].tolist() and len(nms["boxes"]) == 3


@pytest.fixture(scope="module")
def fewshot(tmp_path_factory):
    project = create_demo_project(tmp_path_factory.mktemp("ens") / "demo", n_images=24, size=48)
    ids = [X.fit_sklearn_run(project, "efficientnet_lite0", "bundled", kind, 64, device="cpu")[0]
           for kind in ("logreg", "prototype", "knn")]  # fmt: skip
    yield project, ids
    project.close()


def test_classifier_ensemble_predicts_the_members_mean_with_their_spread(fewshot):
    project, members = fewshot
    run_id = create_ensemble(project, members)
    rec = RunStore(project).get(run_id)
    assert rec.status == "finished" and rec.checkpoint and rec.task == "classify"
    assert run_id in [r.id for r in RunStore(project).with_model()]  # shows in run pickers
    image_id = project.image_ids()[0]
    probs = []
    for m in [*members, run_id]:
        runner.predict(project, m, [image_id], device="cpu")
        payload = RunStore(project).prediction(m, image_id).payload
        probs.append(np.array([payload["probs"][str(c.id)] for c in project.classes()]))
    assert np.allclose(probs[-1], np.mean(probs[:-1], axis=0), atol=1e-5)
    spread = RunStore(project).prediction(run_id, image_id).payload["spread"]
    assert np.allclose([spread[str(c.id)] for c in project.classes()],
                       np.std(probs[:-1], axis=0), atol=1e-5)  # fmt: skip
    ev = evaluate_run(project, run_id, "val", device="cpu")
    assert 0.0 <= ev.summary["accuracy"] <= 1.0 and ev.calibration is not None


@pytest.mark.slow
def test_ensemble_exports_as_one_onnx_file(fewshot, tmp_path):
    from tlstudio.ml.export import export_model
    from tlstudio.runtime import ExportedModel

    project, members = fewshot
    run_id = create_ensemble(project, members[:2])
    image_id = project.image_ids()[1]
    runner.predict(project, run_id, [image_id], device="cpu")
    stored = RunStore(project).prediction(run_id, image_id).payload["probs"]
    out = tmp_path / "ensemble.onnx"
    res = export_model(project, run_id, out)
    assert res.max_abs_diff is not None and res.max_abs_diff < 1e-4
    got = ExportedModel.load(out).predict_files([project.image_path(image_id)])[0]["probs"]
    assert np.allclose([got[c.name] for c in project.classes()],
                       [stored[str(c.id)] for c in project.classes()], atol=1e-4)  # fmt: skip


def test_ensemble_refuses_runs_that_do_not_fit_and_names_a_deleted_member(fewshot, tmp_path):
    project, members = fewshot
    with pytest.raises(EnsembleError, match="at least two"):
        create_ensemble(project, [members[0], members[0]])
    other, _ = X.fit_sklearn_run(project, "efficientnet_lite0", "bundled", "logreg", 96,
                                 device="cpu")  # fmt: skip
    with pytest.raises(EnsembleError, match="input size is 96 px"):
        create_ensemble(project, [members[0], other])
    run_id = create_ensemble(project, [members[0], members[1]])
    copy_root = tmp_path / "copy"
    shutil.copytree(project.root, copy_root)
    with Project.open(copy_root) as copied:
        RunStore(copied).delete(members[1])
        with pytest.raises(runner.RunError, match=f"member run {members[1]} is gone"):
            runner.load_run_model(copied, run_id)


class _Heat(TaskModel):
    """Landmarks from content: point 0's heatmap is the image's brightness on its left
    half, point 1's on its right half (a model that learned "left eye = the eye on the
    image's left"); stride 1."""

    task = "landmarks"
    heatmap_stride = 1

    def __init__(self, gain: float = 1.0):
        torch.nn.Module.__init__(self)
        self.gain = gain
        self.main_metric, self.higher_is_better = "nme", False

    def forward(self, x):
        b = x.mean(1, keepdim=True).clamp(0, 1) * self.gain
        w = x.shape[-1]
        left = torch.arange(w) < w / 2
        return torch.cat([b * left, b * ~left], dim=1)


def _two_dots(size=64):
    img = torch.zeros(1, 3, size, size)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    for cx, cy in ((18.5, 30.5), (47.5, 22.5)):
        img[0] += torch.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 8.0)
    return img


def test_tta_maps_landmarks_back_and_swaps_left_and_right():
    img = _two_dots()
    plain = decode_heatmaps(_Heat()(img), 1)[0]
    tta = TTAModel(_Heat(), TTAConfig(flip=True, scales=(1.25,)), flip_perm=[1, 0])
    got = tta.predict_step(img)[0]["keypoints"]
    assert torch.allclose(got[:, :2], plain[:, :2], atol=0.6)
    assert torch.allclose(got[:, 2], plain[:, 2], atol=0.05)
    # without the swap the mirror image's "left" point lands on the right one
    wrong = TTAModel(_Heat(), TTAConfig(flip=True, scales=()), flip_perm=None)
    assert (wrong.predict_step(img)[0]["keypoints"][:, 2] < 0.6 * plain[:, 2]).all()


class _Boxes(TaskModel):
    """A detector that boxes the brightest pixel (±6 px), class 0."""

    task = "detect"

    def __init__(self):
        torch.nn.Module.__init__(self)
        self.main_metric, self.higher_is_better = "map50", True

    def predict_step(self, images):
        out = []
        for im in images:
            g = im.mean(0)
            y, x = divmod(int(g.argmax()), g.shape[1])
            out.append(_det([[x - 6 + 0.5, y - 6 + 0.5, x + 6.5, y + 6.5]], [0.9], [0]))
        return out


def test_tta_maps_boxes_back_and_fuses_them():
    img = torch.zeros(1, 3, 64, 64)
    img[0, :, 20, 10] = 1.0
    plain = _Boxes().predict_step(img)[0]["boxes"][0]
    tta = TTAModel(_Boxes(), TTAConfig(flip=True, scales=(1.25,)))
    assert len(tta.views(64)) == 3
    got = tta.predict_step(img)[0]
    assert len(got["boxes"]) == 1 and got["agreement"].tolist() == [1.0]
    assert torch.allclose(got["boxes"][0], plain, atol=1.0)


class _Seg(TaskModel):
    """Segments bright pixels as class 1 (logits ±10)."""

    task = "segment"

    def __init__(self):
        torch.nn.Module.__init__(self)
        self.main_metric, self.higher_is_better = "miou", True

    def forward(self, x):
        fg = (x.mean(1, keepdim=True) > 0.5).float() * 20 - 10
        return torch.cat([-fg, fg], dim=1)


def test_tta_maps_masks_back():
    img = torch.zeros(1, 3, 64, 64)
    img[0, :, 8:30, 4:20] = 1.0  # a block off-centre: a mirror left unmapped would miss it
    plain = _Seg()(img)[0].argmax(0)
    got = TTAModel(_Seg(), TTAConfig(flip=True, scales=(1.25,))).predict_step(img)[0]["mask"]
    assert (got != plain).float().mean() < 0.01


def test_landmark_and_segment_ensembles_average_and_report_spread():
    a, b = _Heat(1.0), _Heat(0.5)
    img = _two_dots()
    out = EnsembleModel([a, b], member_ids=[1, 2]).predict_step(img)[0]
    mean = (a(img) + b(img)) / 2
    assert torch.allclose(out["keypoints"], decode_heatmaps(mean, 1)[0])
    assert out["point_spread"].shape == (2, 2) and torch.allclose(
        out["point_spread"], torch.zeros(2, 2), atol=1e-4
    )
    s1, s2 = _Seg(), copy.deepcopy(_Seg())
    seg = EnsembleModel([s1, s2], member_ids=[1, 2]).predict_step(img)[0]
    assert seg["probs"].shape == (2, 64, 64) and seg["spread"] == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("task", ["classify", "segment", "landmarks", "detect"])
def test_tta_runs_on_every_task_of_a_trained_project(trained_demo, task):
    project, run_id = trained_demo.project, trained_demo.runs[task]
    ev = evaluate_run(project, run_id, "val", device="cpu", tta=True)
    plain = evaluate_run(project, run_id, "val", device="cpu")
    assert set(ev.summary) == set(plain.summary)
    assert all(np.isfinite(v) or np.isnan(v) for v in ev.summary.values())


def test_latent_view_of_an_ensemble_names_its_members_instead(fewshot):
    from tlstudio.ml.embed import embed_run

    project, members = fewshot
    run_id = create_ensemble(project, members[:2])
    named = ", ".join(f"#{m}" for m in members[:2])
    with pytest.raises(runner.RunError, match=f"is an ensemble.*runs {named}"):
        embed_run(project, run_id)
