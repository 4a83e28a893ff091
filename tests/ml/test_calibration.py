"""Temperature scaling and the expected calibration error: the arithmetic on known
numbers, and a real run whose temperature is fitted on val, stored, and used by
prediction, evaluation and the exported ONNX file."""

from __future__ import annotations

import numpy as np
import pytest

from tlstudio.cli import main
from tlstudio.core.demo import create_demo_project
from tlstudio.core.runs import RunStore
from tlstudio.ml import calibration as C
from tlstudio.ml import experiments as X
from tlstudio.ml import runner
from tlstudio.ml.evaluation import evaluate_run


def test_ece_of_hand_computed_cases():
    # four images at confidence 0.9, two right: one bin, |0.5 - 0.9| = 0.4
    probs = np.array([[0.9, 0.1]] * 4)
    assert C.expected_calibration_error(probs, [0, 0, 1, 1]) == pytest.approx(0.4)
    # two bins: 0.6 (right) and 0.95 (wrong): (|1 - 0.6| + |0 - 0.95|) / 2
    probs = np.array([[0.6, 0.4], [0.05, 0.95]])
    rel = C.reliability(probs, [0, 0])
    assert rel.ece == pytest.approx((0.4 + 0.95) / 2)
    assert sum(rel.counts) == 2 and rel.accuracy[9] == 1.0 and rel.accuracy[14] == 0.0
    assert rel.confidence[9] == pytest.approx(0.6) and rel.accuracy[0] is None
    # multi-label: every (image, class) probability is one binary prediction
    rel = C.reliability(np.array([[0.8, 0.2]]), np.array([[1.0, 0.0]]), multi_label=True)
    assert rel.n == 2 and rel.ece == pytest.approx(0.2)


def test_temperature_recovers_overconfidence():
    rng = np.random.default_rng(0)
    z = rng.normal(0, 1.5, (4000, 5))
    p = C.probabilities(z)
    y = np.array([rng.choice(5, p=row) for row in p])  # labels drawn from calibrated probs
    t = C.fit_temperature(3.0 * z, y)  # the same model, three times too sure
    assert t == pytest.approx(3.0, rel=0.1)
    before = C.expected_calibration_error(C.probabilities(3.0 * z), y)
    after = C.expected_calibration_error(C.probabilities(3.0 * z, t), y)
    assert before > 0.1 and after < 0.03
    # the ranking never changes: same predicted class, so same accuracy
    assert (C.probabilities(3.0 * z, t).argmax(1) == z.argmax(1)).all()
    # rescale undoes and redoes a temperature on probabilities alone
    scaled = C.probabilities(z, 2.5)
    assert np.allclose(C.rescale(scaled, 2.5), p, atol=1e-9)


def test_a_few_wildly_wrong_images_do_not_decide_the_temperature():
    rng = np.random.default_rng(1)
    z = rng.normal(0, 1.5, (400, 5))
    y = np.array([rng.choice(5, p=row) for row in C.probabilities(z)])
    clean = C.fit_temperature(2.0 * z, y)
    wild = 2.0 * z
    for i in range(4):  # four images the model is sure of, by a logit gap of 200, and wrong
        wild[i] = 0.0
        wild[i, (y[i] + 1) % 5] = 200.0
    t = C.fit_temperature(wild, y)
    assert clean == pytest.approx(2.0, rel=0.2) and t == pytest.approx(clean, rel=0.15)
    before = C.expected_calibration_error(C.probabilities(wild), y)
    assert C.expected_calibration_error(C.probabilities(wild, t), y) < before


def test_fit_never_returns_worse_than_none():
    z = np.array([[2.0, 0.0], [0.0, 2.0]] * 10)
    y = np.array([0, 1] * 10)
    t = C.fit_temperature(z, y)
    assert C._nll(z, y, t, False) <= C._nll(z, y, 1.0, False)
    record = C.calibration_record(z[:4], y[:4], multi_label=False)
    assert record["temperature"] == 1.0 and "at least" in record["note"]


@pytest.fixture(scope="module")
def fewshot(tmp_path_factory):
    """80 demo images (a dozen in val and in test) and a prototype head: its softmax of similarities
    / 0.1 is far from calibrated, so a temperature is fitted."""
    project = create_demo_project(tmp_path_factory.mktemp("cal") / "demo", n_images=80, size=48)
    run_id, _ = X.fit_sklearn_run(project, "efficientnet_lite0", "bundled", "prototype", 64,
                                  device="cpu")  # fmt: skip
    yield project, run_id
    project.close()


def test_run_stores_its_temperature_and_every_path_applies_it(fewshot, tmp_path):
    project, run_id = fewshot
    cal = RunStore(project).get(run_id).config["calibration"]
    assert cal["split"] == "val" and cal["images"] == len(project.images_in_split("val"))
    assert cal["temperature"] != 1.0 and cal["nll_after"] < cal["nll_before"]

    model, _spec = runner.load_run_model(project, run_id)
    assert model.temperature == pytest.approx(cal["temperature"])
    ev = evaluate_run(project, run_id, "val", device="cpu")
    assert ev.calibration["temperature"] == pytest.approx(cal["temperature"])
    assert ev.calibration["before"].ece == pytest.approx(cal["ece_before"], abs=1e-4)
    assert ev.calibration["after"].ece == pytest.approx(cal["ece_after"], abs=1e-4)
    assert ev.summary["ece"] == pytest.approx(cal["ece_after"], abs=1e-4)

    # stored predictions are the calibrated probabilities ...
    image_id = ev.image_ids[0]
    runner.predict(project, run_id, [image_id], device="cpu")
    stored = RunStore(project).prediction(run_id, image_id).payload["probs"]
    stored = np.array([stored[str(c.id)] for c in project.classes()])
    model.temperature = 1.0
    from tlstudio.ml.selection import outputs_on

    raw = outputs_on(project, model, _spec, [image_id]).logits

    # compared as log-odds to the top class: the probabilities themselves are near 0 or 1
    def margins(p):
        logp = np.log(np.asarray(p, np.float64))
        return logp - logp.max()

    calibrated = C.probabilities(raw, cal["temperature"])[0]
    assert np.allclose(margins(stored), margins(calibrated), atol=1e-2)
    assert not np.allclose(margins(stored), margins(C.probabilities(raw)[0]), atol=0.5)

    # ... and so are the exported model's
    from tlstudio.ml.export import export_model
    from tlstudio.runtime import ExportedModel

    out = tmp_path / "m.onnx"
    export_model(project, run_id, out)
    exported = ExportedModel.load(out).predict_files([project.image_path(image_id)])[0]
    got = np.array([exported["probs"][c.name] for c in project.classes()])
    assert np.allclose(got, stored, atol=1e-4)
    assert np.allclose(margins(got), margins(stored), atol=1e-2)


def test_calibrate_command_refits_and_prints_both_errors(fewshot, capsys):
    project, run_id = fewshot
    RunStore(project).update_config(run_id, calibration=None)  # a run from before
    assert runner.load_run_model(project, run_id)[0].temperature == 1.0
    assert main(["calibrate", str(project.root), str(run_id)]) == 0
    out = capsys.readouterr().out
    assert "temperature" in out and "expected calibration error" in out and "->" in out
    assert RunStore(project).get(run_id).config["calibration"]["temperature"] != 1.0
    assert main(["evaluate", str(project.root), str(run_id)]) == 0
    assert "ece" in capsys.readouterr().out
