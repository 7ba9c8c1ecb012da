"""Applying a calibration: the per-finding maps, their JSON form, and reading one from a contract."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.special import expit
from sklearn.isotonic import IsotonicRegression
from tests.inference.calibration_data import bent, overconfident

from cxreader.errors import CheckpointError
from cxreader.evaluation.calibration import MIN_ISOTONIC_POSITIVES, fit_calibration, fit_isotonic
from cxreader.inference.calibration import (
    CALIBRATION_FORMAT,
    IDENTITY,
    ISOTONIC,
    TEMPERATURE,
    Calibration,
    FindingCalibration,
    apply_isotonic,
    apply_temperature,
    contract_calibration,
    probability_to_logit,
)
from cxreader.labels import FINDINGS, NUM_FINDINGS
from cxreader.models.checkpoint import CheckpointContract


def test_each_method_maps_probabilities_as_defined():
    probs = np.array([0.0, 0.1, 0.5, 0.8, 1.0])
    np.testing.assert_allclose(
        FindingCalibration(TEMPERATURE, temperature=2.0).apply(probs),
        expit(np.log(np.clip(probs, 1e-12, 1 - 1e-12) / (1 - np.clip(probs, 1e-12, 1 - 1e-12))) / 2.0),
    )
    assert apply_temperature(np.array([0.5]), 7.0)[0] == 0.5  # logit 0 stays 0
    assert apply_temperature(np.array([0.9]), 2.0)[0] < 0.9  # T > 1 softens
    isotonic = FindingCalibration(ISOTONIC, knots_x=(0.2, 0.6), knots_y=(0.1, 0.3))
    np.testing.assert_allclose(isotonic.apply(probs), [0.1, 0.1, 0.25, 0.3, 0.3])
    np.testing.assert_array_equal(FindingCalibration(IDENTITY).apply(probs), probs)
    assert np.all(np.diff(probability_to_logit(probs)) > 0)  # order-preserving, finite at 0 and 1


def test_isotonic_knots_reproduce_sklearn_predictions():
    labels, probs = bent(3000, seed=6)
    knots_x, knots_y = fit_isotonic(probs, labels)
    model = IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip").fit(probs, labels)
    new = np.concatenate([np.random.default_rng(7).random(500), [0.0, 1.0]])
    np.testing.assert_allclose(apply_isotonic(new, knots_x, knots_y), model.predict(new), atol=1e-12)


def test_json_round_trip_applies_identically():
    labels, probs = overconfident(3000, NUM_FINDINGS, temperature=2.0, seed=8)
    bent_labels, bent_probs = bent(3000, seed=9)
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


def test_malformed_calibrations_are_refused():
    with pytest.raises(ValueError, match="format"):
        Calibration.from_json({"format": "something else", "findings": []})
    with pytest.raises(ValueError, match="malformed"):
        Calibration.from_json({"format": CALIBRATION_FORMAT, "findings": [{"method": TEMPERATURE}]})
    with pytest.raises(ValueError, match="unknown calibration method"):
        FindingCalibration(method="platt")
    with pytest.raises(ValueError, match="non-decreasing"):
        FindingCalibration(method=ISOTONIC, knots_x=(0.0, 1.0), knots_y=(0.9, 0.1))
    with pytest.raises(ValueError, match="temperature"):
        FindingCalibration(method=TEMPERATURE, temperature=0.0)
    calibration = Calibration(("a", "b"), (FindingCalibration(IDENTITY), FindingCalibration(IDENTITY)))
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        calibration.apply(np.zeros((4, 3)))


def test_a_contract_gives_its_calibration_or_none_and_refuses_other_findings():
    contract = CheckpointContract(model_name="densenet_small")
    assert contract_calibration(contract) is None
    per_finding = tuple(FindingCalibration(TEMPERATURE, temperature=1.0 + k) for k in range(NUM_FINDINGS))
    calibration = Calibration(FINDINGS, per_finding)
    contract.calibration = calibration.to_json()
    assert contract_calibration(contract) == calibration
    contract.calibration = Calibration(FINDINGS[::-1], per_finding).to_json()
    with pytest.raises(CheckpointError, match="not cxreader's findings"):
        contract_calibration(contract, source="model.pt")
    contract.calibration = {"format": "other"}
    with pytest.raises(CheckpointError, match="model.pt: unreadable calibration"):
        contract_calibration(contract, source="model.pt")
