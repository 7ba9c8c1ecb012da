from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from cxreader.evaluation.metrics import (
    bootstrap_auroc_ci,
    bootstrap_indices,
    mean_auroc,
    per_class_auroc,
)


def _random_data(n: int, k: int, seed: int, *, prevalence: float = 0.3, signal: float = 0.3):
    rng = np.random.default_rng(seed)
    labels = (rng.random((n, k)) < prevalence).astype(float)
    # Rounded scores create many ties, which is where AUROC implementations disagree.
    probs = np.round(np.clip(rng.random((n, k)) * 0.7 + signal * labels, 0, 1), 2)
    return labels, probs


def _sklearn_or_nan(y: np.ndarray, p: np.ndarray) -> float:
    known = ~np.isnan(y)
    y, p = y[known], p[known]
    if np.unique(y).size < 2:
        return float("nan")
    return float(roc_auc_score(y, p))


def test_per_class_auroc_matches_sklearn_with_ties():
    labels, probs = _random_data(500, 4, seed=1)
    ours = per_class_auroc(labels, probs)
    expected = [roc_auc_score(labels[:, k], probs[:, k]) for k in range(4)]
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-12)


def test_perfect_inverted_and_random_predictions():
    rng = np.random.default_rng(2)
    y = (rng.random(4000) < 0.2).astype(float)
    noise = rng.random(4000)
    labels = np.stack([y, y, y, y], axis=1)
    probs = np.stack([0.5 + 0.5 * y * noise + 0.01 * y, 0.5 - 0.4 * y, noise, np.full(4000, 0.3)], axis=1)
    aurocs = per_class_auroc(labels, probs)
    assert aurocs[0] == 1.0
    assert aurocs[1] == 0.0
    assert abs(aurocs[2] - 0.5) < 0.03
    assert aurocs[3] == 0.5  # all scores tied: every pair counts one half


def test_nan_labels_are_masked_per_class():
    labels, probs = _random_data(300, 3, seed=3)
    labels[::3, 0] = np.nan
    labels[1::5, 2] = np.nan
    ours = per_class_auroc(labels, probs)
    expected = [_sklearn_or_nan(labels[:, k], probs[:, k]) for k in range(3)]
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-12)
    # Masking is not the same as calling unknown labels negative.
    assert ours[0] != pytest.approx(roc_auc_score(np.nan_to_num(labels[:, 0]), probs[:, 0]), abs=1e-9)


def test_class_without_both_labels_is_nan_and_mean_skips_it():
    labels, probs = _random_data(100, 3, seed=4)
    labels[:, 1] = 0.0
    labels[:, 2] = np.nan
    aurocs = per_class_auroc(labels, probs)
    assert np.isfinite(aurocs[0])
    assert np.isnan(aurocs[1]) and np.isnan(aurocs[2])
    assert mean_auroc(aurocs) == aurocs[0]
    assert np.isnan(mean_auroc(np.array([np.nan, np.nan])))


@pytest.mark.parametrize("with_unknown", [False, True])
def test_bootstrap_matches_naive_resampling_with_sklearn(with_unknown: bool):
    labels, probs = _random_data(60, 3, seed=7, prevalence=0.15)
    if with_unknown:
        labels[::4, 1] = np.nan
    n_bootstrap = 40
    result = bootstrap_auroc_ci(labels, probs, n_bootstrap=n_bootstrap, confidence=0.9, seed=11)

    indices = np.concatenate(list(bootstrap_indices(60, n_bootstrap, seed=11)))
    assert indices.shape == (n_bootstrap, 60)
    naive = np.array([[_sklearn_or_nan(labels[i, k], probs[i, k]) for k in range(3)] for i in indices])
    np.testing.assert_allclose(result.samples, naive, rtol=0, atol=1e-12)  # NaNs must coincide too
    for k in range(3):
        finite = naive[:, k][np.isfinite(naive[:, k])]
        low, high = np.percentile(finite, [5.0, 95.0])
        assert result.ci_low[k] == pytest.approx(low, abs=1e-12)
        assert result.ci_high[k] == pytest.approx(high, abs=1e-12)
    naive_means = np.nanmean(naive, axis=1)
    np.testing.assert_allclose(result.mean_samples, naive_means, rtol=0, atol=1e-12)
    assert result.mean_ci == pytest.approx(tuple(np.percentile(naive_means, [5.0, 95.0])), abs=1e-12)
    np.testing.assert_allclose(result.auroc, per_class_auroc(labels, probs), rtol=0, atol=0)


def test_bootstrap_ci_contains_estimate_and_narrows_with_more_data():
    small = bootstrap_auroc_ci(*_random_data(150, 2, seed=8), n_bootstrap=200, seed=1)
    large = bootstrap_auroc_ci(*_random_data(6000, 2, seed=8), n_bootstrap=200, seed=1)
    for result in (small, large):
        assert np.all(result.ci_low <= result.auroc) and np.all(result.auroc <= result.ci_high)
        assert result.mean_ci[0] <= result.mean_auroc <= result.mean_ci[1]
    assert np.all(large.ci_high - large.ci_low < 0.5 * (small.ci_high - small.ci_low))


def test_bootstrap_is_reproducible_and_seed_dependent():
    labels, probs = _random_data(200, 2, seed=9)
    first = bootstrap_auroc_ci(labels, probs, n_bootstrap=30, seed=3)
    again = bootstrap_auroc_ci(labels, probs, n_bootstrap=30, seed=3)
    other = bootstrap_auroc_ci(labels, probs, n_bootstrap=30, seed=4)
    np.testing.assert_array_equal(first.samples, again.samples)
    assert not np.array_equal(first.samples, other.samples)


def test_bootstrap_class_without_positives_has_nan_interval():
    labels, probs = _random_data(100, 2, seed=10)
    labels[:, 1] = 0.0
    result = bootstrap_auroc_ci(labels, probs, n_bootstrap=20)
    assert np.isnan(result.auroc[1]) and np.isnan(result.ci_low[1]) and np.isnan(result.ci_high[1])
    assert np.isfinite(result.mean_ci[0])


@pytest.mark.parametrize(
    ("labels", "probs", "message"),
    [
        (np.zeros((3, 2)), np.zeros((3, 3)), "differs"),
        (np.zeros(3), np.zeros(3), "2-D"),
        (np.array([[0.0], [2.0]]), np.zeros((2, 1)), "0, 1 or NaN"),
        (np.array([[0.0], [1.0]]), np.array([[0.1], [np.nan]]), "NaN or infinite"),
    ],
)
def test_invalid_inputs_raise(labels, probs, message):
    with pytest.raises(ValueError, match=message):
        per_class_auroc(labels, probs)


def test_bootstrap_rejects_bad_settings():
    labels, probs = _random_data(20, 1, seed=12)
    with pytest.raises(ValueError, match="n_bootstrap"):
        bootstrap_auroc_ci(labels, probs, n_bootstrap=0)
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_auroc_ci(labels, probs, n_bootstrap=5, confidence=1.5)
