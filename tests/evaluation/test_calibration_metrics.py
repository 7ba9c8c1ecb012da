from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import brier_score_loss

from cxreader.evaluation.calibration_metrics import (
    bin_index,
    brier_scores,
    calibration_metrics,
    expected_calibration_error,
)
from cxreader.evaluation.metrics import bootstrap_indices


def _column(values) -> np.ndarray:
    return np.asarray(values, dtype=float).reshape(-1, 1)


def _naive_ece(labels: np.ndarray, probs: np.ndarray, n_bins: int) -> float:
    """Guo et al. 2017, eq. 3, written out: bins ((m-1)/M, m/M], the first one closed at 0."""
    total = 0.0
    for m in range(n_bins):
        low, high = m / n_bins, (m + 1) / n_bins
        in_bin = (probs > low) & (probs <= high) if m else (probs <= high)
        if in_bin.any():
            total += in_bin.sum() / probs.size * abs(labels[in_bin].mean() - probs[in_bin].mean())
    return total


def test_ece_and_brier_of_a_hand_computed_example():
    labels = _column([0, 1, 1, 1])
    probs = _column([0.1, 0.2, 0.8, 0.9])
    # Two bins: {0.1, 0.2}: |0.5 - 0.15| · 2/4 = 0.175; {0.8, 0.9}: |1 - 0.85| · 2/4 = 0.075.
    assert expected_calibration_error(labels, probs, n_bins=2)[0] == pytest.approx(0.25, abs=1e-12)
    # Fifteen bins: every image alone in its bin, so ECE = mean |p - y| = (0.1 + 0.8 + 0.2 + 0.1) / 4.
    assert expected_calibration_error(labels, probs)[0] == pytest.approx(0.3, abs=1e-12)
    # Brier: (0.01 + 0.64 + 0.04 + 0.01) / 4.
    assert brier_scores(labels, probs)[0] == pytest.approx(0.175, abs=1e-12)


def test_bins_are_closed_on_the_right_like_guo_and_sklearn():
    np.testing.assert_array_equal(bin_index(np.array([0.0, 0.5, 0.5000001, 1.0]), 2), [0, 0, 1, 1])
    assert expected_calibration_error(_column([1, 0]), _column([0.5, 0.5]), n_bins=2)[0] == 0.0


def test_matches_the_definition_and_sklearn_on_random_data_with_unknown_labels():
    rng = np.random.default_rng(0)
    probs = np.round(rng.random((700, 3)), 2)  # rounding puts many values on bin edges
    labels = (rng.random((700, 3)) < probs).astype(float)
    labels[::7, 1] = np.nan
    ece = expected_calibration_error(labels, probs)
    brier = brier_scores(labels, probs)
    for k in range(3):
        known = ~np.isnan(labels[:, k])
        assert ece[k] == pytest.approx(_naive_ece(labels[known, k], probs[known, k], 15), abs=1e-12)
        assert brier[k] == pytest.approx(brier_score_loss(labels[known, k], probs[known, k]), abs=1e-12)


def test_calibrated_probabilities_have_ece_near_zero_and_overconfident_ones_do_not():
    rng = np.random.default_rng(1)
    probs = rng.random(200_000)
    labels = (rng.random(probs.size) < probs).astype(float)
    assert expected_calibration_error(_column(labels), _column(probs))[0] < 0.005
    overconfident = np.where(probs > 0.5, np.sqrt(probs), probs**2)
    assert expected_calibration_error(_column(labels), _column(overconfident))[0] > 0.05


def test_bootstrap_intervals_are_those_of_the_shared_resamples():
    rng = np.random.default_rng(2)
    probs = rng.random((80, 2))
    labels = (rng.random((80, 2)) < probs).astype(float)
    labels[:5, 1] = np.nan
    metrics = calibration_metrics(labels, probs, n_bootstrap=40, seed=7)

    indices = np.concatenate(list(bootstrap_indices(80, 40, seed=7)))
    naive = np.array(
        [
            [expected_calibration_error(labels[i], probs[i])[0], brier_scores(labels[i], probs[i])[0]]
            for i in indices
        ]
    )
    low, high = np.percentile(naive, [2.5, 97.5], axis=0)
    assert metrics.ece_low[0] == pytest.approx(low[0], abs=1e-12)
    assert metrics.ece_high[0] == pytest.approx(high[0], abs=1e-12)
    assert metrics.brier_low[0] == pytest.approx(low[1], abs=1e-12)
    assert metrics.brier_high[0] == pytest.approx(high[1], abs=1e-12)
    np.testing.assert_allclose(metrics.ece, expected_calibration_error(labels, probs), atol=1e-12)
    assert metrics.mean_ece == pytest.approx(metrics.ece.mean(), abs=1e-12)
    assert metrics.mean_brier_ci[0] <= metrics.mean_brier <= metrics.mean_brier_ci[1]


def test_a_finding_without_labels_is_left_out_of_the_means():
    probs = np.random.default_rng(3).random((30, 2))
    labels = np.zeros((30, 2))
    labels[:, 1] = np.nan
    metrics = calibration_metrics(labels, probs, n_bootstrap=0)
    assert np.isnan(metrics.ece[1]) and np.isnan(metrics.brier[1])
    assert metrics.mean_ece == pytest.approx(metrics.ece[0], abs=1e-12)
    assert metrics.mean_brier == pytest.approx(np.mean(probs[:, 0] ** 2), abs=1e-12)
    assert np.isnan(metrics.ece_low).all() and all(np.isnan(metrics.mean_ece_ci))


def test_rejects_scores_that_are_not_probabilities():
    with pytest.raises(ValueError, match="probabilities"):
        expected_calibration_error(_column([0, 1]), _column([-0.5, 2.0]))
