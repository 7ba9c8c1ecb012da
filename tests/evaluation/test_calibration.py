from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit
from tests.inference.calibration_data import bent, overconfident

from cxreader.evaluation.calibration import (
    MIN_ISOTONIC_POSITIVES,
    fit_calibration,
    fit_finding_calibration,
    fit_temperature,
)
from cxreader.evaluation.calibration_metrics import ECE_BINS, expected_calibration_error
from cxreader.evaluation.metrics import per_class_auroc
from cxreader.inference.calibration import (
    IDENTITY,
    ISOTONIC,
    TEMPERATURE,
    apply_isotonic,
    apply_temperature,
)
from cxreader.labels import FINDINGS, NUM_FINDINGS


def test_temperature_scaling_recovers_a_known_temperature():
    labels, probs = overconfident(40_000, 1, temperature=2.5, seed=0)
    temperature = fit_temperature(probs[:, 0], labels[:, 0])
    assert temperature == pytest.approx(2.5, rel=0.05)
    # Dividing the logit by the fitted temperature gives back the true probabilities sigmoid(z).
    true_probs = expit(np.log(probs[:, 0] / (1 - probs[:, 0])) / 2.5)
    np.testing.assert_allclose(apply_temperature(probs[:, 0], temperature), true_probs, atol=0.02)


def test_temperature_scaling_leaves_auroc_unchanged_and_lowers_ece():
    labels, probs = overconfident(6000, NUM_FINDINGS, temperature=3.0, seed=1)
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
    labels, probs = bent(6000, seed=2)
    chosen = fit_finding_calibration(probs, labels)
    assert chosen.method == ISOTONIC
    cv = chosen.cross_validated
    assert cv[ISOTONIC]["nll"] < cv[TEMPERATURE]["nll"] and cv[ISOTONIC]["ece"] < cv[TEMPERATURE]["ece"]
    knots_x, knots_y = np.asarray(chosen.knots_x), np.asarray(chosen.knots_y)
    np.testing.assert_allclose(chosen.apply(probs), apply_isotonic(probs, knots_x, knots_y))


def test_isotonic_is_not_chosen_with_too_few_positives():
    labels, probs = bent(6000, seed=3)
    positives = np.flatnonzero(labels == 1)
    labels[positives[MIN_ISOTONIC_POSITIVES - 1 :]] = 0.0  # 49 positives left
    chosen = fit_finding_calibration(probs, labels)
    assert chosen.method == TEMPERATURE
    assert chosen.positives == MIN_ISOTONIC_POSITIVES - 1
    assert f"< {MIN_ISOTONIC_POSITIVES}" in chosen.reason and not chosen.cross_validated


def test_isotonic_is_not_chosen_where_one_temperature_is_the_right_model():
    labels, probs = overconfident(6000, 1, temperature=2.0, seed=4)
    chosen = fit_finding_calibration(probs[:, 0], labels[:, 0])
    assert chosen.method == TEMPERATURE
    assert chosen.cross_validated[TEMPERATURE]["nll"] < chosen.cross_validated[ISOTONIC]["nll"]
    assert "did not lower" in chosen.reason


def test_a_finding_without_positives_is_left_alone():
    labels, probs = overconfident(500, NUM_FINDINGS, temperature=2.0, seed=5)
    labels[:, FINDINGS.index("Hernia")] = 0.0
    calibration = fit_calibration(probs, labels)
    hernia = calibration.per_finding[FINDINGS.index("Hernia")]
    assert hernia.method == IDENTITY and "no positive" in hernia.reason
    np.testing.assert_array_equal(calibration.apply(probs)[:, -1], probs[:, -1])


def test_the_fitting_rule_is_recorded_with_the_calibration():
    labels, probs = overconfident(300, 2, temperature=2.0, seed=11)
    calibration = fit_calibration(probs, labels, findings=("a", "b"), isotonic=False, folds=3, seed=4)
    assert calibration.rule == {
        "min_isotonic_positives": MIN_ISOTONIC_POSITIVES,
        "folds": 3,
        "seed": 4,
        "ece_bins": ECE_BINS,
        "isotonic": False,
    }


def test_malformed_fitting_inputs_are_refused():
    with pytest.raises(ValueError, match="both positive and negative"):
        fit_temperature(np.array([0.2, 0.7]), np.array([1.0, 1.0]))
    with pytest.raises(ValueError, match="folds"):
        fit_calibration(np.full((4, 2), 0.5), np.zeros((4, 2)), findings=("a", "b"), folds=1)
    with pytest.raises(ValueError, match=r"lie in \[0, 1\]"):
        fit_calibration(np.full((4, 2), 1.5), np.zeros((4, 2)), findings=("a", "b"))


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


def test_a_perfectly_separated_finding_is_left_alone_rather_than_saturated():
    probs = np.array([0.1, 0.2, 0.3, 0.6, 0.7, 0.9])
    labels = np.array([0.0, 0.0, 0.0, 1.0, 1.0, 1.0])
    separated = fit_finding_calibration(probs, labels)
    assert separated.method == IDENTITY and "perfectly separated" in separated.reason
    labels[2], labels[3] = 1.0, 0.0  # a positive below a negative: now a temperature is identifiable
    assert fit_finding_calibration(probs, labels).method != IDENTITY
