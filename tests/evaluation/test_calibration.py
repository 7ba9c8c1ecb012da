from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.special import expit
from sklearn.isotonic import IsotonicRegression

from cxreader.evaluation.calibration import (
    CALIBRATION_FORMAT,
    IDENTITY,
    ISOTONIC,
    MIN_ISOTONIC_POSITIVES,
    TEMPERATURE,
    Calibration,
    FindingCalibration,
    apply_isotonic,
    apply_temperature,
    fit_calibration,
    fit_finding_calibration,
    fit_isotonic,
    fit_temperature,
)
from cxreader.evaluation.calibration_metrics import expected_calibration_error
from cxreader.evaluation.metrics import per_class_auroc
from cxreader.labels import FINDINGS, NUM_FINDINGS


def _overconfident(n: int, k: int, temperature: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from sigmoid(z), and the probabilities of a model that outputs sigmoid(T · z)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(-1.0, 2.0, size=(n, k))
    labels = (rng.random((n, k)) < expit(logits)).astype(float)
    return labels, expit(temperature * logits)


def _bent(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities p whose true frequency is p²: a bend no single temperature can straighten."""
    rng = np.random.default_rng(seed)
    probs = rng.random(n)
    return (rng.random(n) < probs**2).astype(float), probs


def test_temperature_scaling_recovers_a_known_temperature():
    labels, probs = _overconfident(40_000, 1, temperature=2.5, seed=0)
    temperature = fit_temperature(probs[:, 0], labels[:, 0])
    assert temperature == pytest.approx(2.5, rel=0.05)
    # Dividing the logit by the fitted temperature gives back the true probabilities sigmoid(z).
    true_probs = expit(np.log(probs[:, 0] / (1 - probs[:, 0])) / 2.5)
    np.testing.assert_allclose(apply_temperature(probs[:, 0], temperature), true_probs, atol=0.02)


def test_temperature_scaling_leaves_auroc_unchanged_and_lowers_ece():
    labels, probs = _overconfident(6000, NUM_FINDINGS, temperature=3.0, seed=1)
    labels[::11, 3] = np.nan  # unknown labels are left out of the fit
    fit, held_out = slice(0, 3000), slice(3000, None)
    calibration = fit_calibration(probs[fit], labels[fit], isotonic=False)
    assert set(calibration.methods.values()) == {TEMPERATURE}
    calibrated = calibration.apply(probs[held_out])
    np.testing.assert_array_equal(
        per_class_auroc(labels[held_out], calibrated), per_class_auroc(labels[held_out], probs[held_out])
    )
    before = expected_calibration_error(labels[held_out], probs[held_out])
    after = expected_calibration_error(labels[held_out], calibrated)
    assert np.all(after < before) and after.mean() < 0.3 * before.mean()


def test_isotonic_is_chosen_where_it_beats_temperature_with_enough_positives():
    labels, probs = _bent(6000, seed=2)
    chosen = fit_finding_calibration(probs, labels)
    assert chosen.method == ISOTONIC
    cv = chosen.cross_validated
    assert cv[ISOTONIC]["nll"] < cv[TEMPERATURE]["nll"] and cv[ISOTONIC]["ece"] < cv[TEMPERATURE]["ece"]
    knots_x, knots_y = np.asarray(chosen.knots_x), np.asarray(chosen.knots_y)
    np.testing.assert_allclose(chosen.apply(probs), apply_isotonic(probs, knots_x, knots_y))


def test_isotonic_is_not_chosen_with_too_few_positives():
    labels, probs = _bent(6000, seed=3)
    positives = np.flatnonzero(labels == 1)
    labels[positives[MIN_ISOTONIC_POSITIVES - 1 :]] = 0.0  # 49 positives left
    chosen = fit_finding_calibration(probs, labels)
    assert chosen.method == TEMPERATURE
    assert chosen.positives == MIN_ISOTONIC_POSITIVES - 1
    assert f"< {MIN_ISOTONIC_POSITIVES}" in chosen.reason and not chosen.cross_validated


def test_isotonic_is_not_chosen_where_one_temperature_is_the_right_model():
    labels, probs = _overconfident(6000, 1, temperature=2.0, seed=4)
    chosen = fit_finding_calibration(probs[:, 0], labels[:, 0])
    assert chosen.method == TEMPERATURE
    assert chosen.cross_validated[TEMPERATURE]["nll"] < chosen.cross_validated[ISOTONIC]["nll"]
    assert "did not lower" in chosen.reason


def test_a_finding_without_positives_is_left_alone():
    labels, probs = _overconfident(500, NUM_FINDINGS, temperature=2.0, seed=5)
    labels[:, FINDINGS.index("Hernia")] = 0.0
    calibration = fit_calibration(probs, labels)
    hernia = calibration.per_finding[FINDINGS.index("Hernia")]
    assert hernia.method == IDENTITY and "no positive" in hernia.reason
    np.testing.assert_array_equal(calibration.apply(probs)[:, -1], probs[:, -1])


def test_isotonic_knots_reproduce_sklearn_predictions():
    labels, probs = _bent(3000, seed=6)
    knots_x, knots_y = fit_isotonic(probs, labels)
    model = IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip").fit(probs, labels)
    new = np.concatenate([np.random.default_rng(7).random(500), [0.0, 1.0]])
    np.testing.assert_allclose(apply_isotonic(new, knots_x, knots_y), model.predict(new), atol=1e-12)


def test_json_round_trip_applies_identically():
    labels, probs = _overconfident(3000, NUM_FINDINGS, temperature=2.0, seed=8)
    bent_labels, bent_probs = _bent(3000, seed=9)
    labels[:, 0], probs[:, 0] = bent_labels, bent_probs  # an isotonic finding among temperature ones
    labels[:, -1] = 0.0  # and an identity one
    calibration = fit_calibration(probs, labels)
    assert {ISOTONIC, TEMPERATURE, IDENTITY} <= set(calibration.methods.values())

    data = json.loads(json.dumps(calibration.to_json(), allow_nan=False))
    assert data["format"] == CALIBRATION_FORMAT
    assert [entry["finding"] for entry in data["findings"]] == list(FINDINGS)
    assert data["rule"]["min_isotonic_positives"] == MIN_ISOTONIC_POSITIVES
    restored = Calibration.from_json(data)
    assert restored == calibration
    np.testing.assert_array_equal(restored.apply(probs), calibration.apply(probs))


def test_malformed_inputs_are_refused():
    with pytest.raises(ValueError, match="format"):
        Calibration.from_json({"format": "something else", "findings": []})
    with pytest.raises(ValueError, match="unknown calibration method"):
        FindingCalibration(method="platt")
    with pytest.raises(ValueError, match="non-decreasing"):
        FindingCalibration(method=ISOTONIC, knots_x=(0.0, 1.0), knots_y=(0.9, 0.1))
    with pytest.raises(ValueError, match="temperature"):
        FindingCalibration(method=TEMPERATURE, temperature=0.0)
    calibration = fit_calibration(*reversed(_overconfident(200, 2, 2.0, seed=10)), findings=("a", "b"))
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        calibration.apply(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="both positive and negative"):
        fit_temperature(np.array([0.2, 0.7]), np.array([1.0, 1.0]))


@pytest.mark.shared_data
def test_real_reference_predictions_calibrate_on_held_out_patients(shared_data):
    from cxreader.evaluation.predictions_file import read_labelled_predictions

    joined = read_labelled_predictions(
        shared_data / "nih" / "reference_preds" / "preds_22433.csv.gz",
        shared_data / "meta" / "Data_Entry_2017_v2020.csv.gz",
    )
    patient_ids = joined.table["patient_id"].to_numpy()
    patients = np.random.default_rng(0).permutation(np.unique(patient_ids))
    fit = np.isin(patient_ids, patients[: patients.size // 2])
    calibration = fit_calibration(joined.probs[fit], joined.labels[fit], isotonic=False)
    labels, probs = joined.labels[~fit], joined.probs[~fit]
    calibrated = calibration.apply(probs)
    np.testing.assert_array_equal(per_class_auroc(labels, calibrated), per_class_auroc(labels, probs))
    before = expected_calibration_error(labels, probs).mean()
    assert expected_calibration_error(labels, calibrated).mean() < 0.8 * before
