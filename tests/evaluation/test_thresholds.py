from __future__ import annotations

import numpy as np
import pytest

from cxreader.evaluation.thresholds import FALLBACK_THRESHOLD, choose_thresholds, operating_point_metrics


def _brute_force(y: np.ndarray, s: np.ndarray) -> tuple[float, float]:
    """Best Youden's J over all candidate thresholds, and the highest threshold reaching it (float arithmetic)."""
    best_value, best_threshold = -np.inf, np.nan
    for threshold in np.unique(s)[::-1]:
        predicted = s >= threshold
        tp = np.sum(predicted & (y == 1))
        fp = np.sum(predicted & (y == 0))
        fn = np.sum(~predicted & (y == 1))
        tn = np.sum(~predicted & (y == 0))
        value = tp / (tp + fn) + tn / (tn + fp) - 1
        if value > best_value + 1e-12:
            best_value, best_threshold = value, threshold
    return best_value, best_threshold


def test_separable_data_gives_perfect_operating_point():
    rng = np.random.default_rng(0)
    y = (rng.random((200, 2)) < 0.3).astype(float)
    probs = np.where(y == 1, 0.6 + 0.4 * rng.random((200, 2)), 0.4 * rng.random((200, 2)))
    thresholds = choose_thresholds(y, probs)
    points = operating_point_metrics(y, probs, thresholds, findings=["A", "B"])
    for k, name in enumerate(["A", "B"]):
        assert points[name]["sensitivity"] == 1.0
        assert points[name]["specificity"] == 1.0
        assert points[name]["f1"] == 1.0
        # The chosen threshold is an observed score: the lowest positive score.
        assert thresholds[k] == probs[y[:, k] == 1, k].min()


def test_choice_matches_brute_force():
    rng = np.random.default_rng(1)
    y = (rng.random((400, 3)) < 0.2).astype(float)
    probs = np.round(np.clip(rng.random((400, 3)) * 0.8 + 0.25 * y, 0, 1), 2)
    y[::7, 2] = np.nan
    thresholds = choose_thresholds(y, probs)
    for k in range(3):
        known = ~np.isnan(y[:, k])
        _, expected = _brute_force(y[known, k], probs[known, k])
        assert thresholds[k] == expected


def test_ties_choose_the_highest_threshold():
    # Thresholds 0.4 and 0.2 both give J = 0.5; 0.4 is the more specific one.
    y = np.array([[0.0], [1.0], [0.0], [1.0]])
    s = np.array([[0.1], [0.2], [0.3], [0.4]])
    assert choose_thresholds(y, s)[0] == 0.4


def test_classes_without_both_labels_fall_back():
    y = np.array([[0.0, np.nan, 1.0], [0.0, np.nan, 0.0], [0.0, np.nan, 1.0]])
    s = np.array([[0.1, 0.2, 0.9], [0.2, 0.3, 0.1], [0.3, 0.4, 0.8]])
    thresholds = choose_thresholds(y, s)
    assert thresholds[0] == FALLBACK_THRESHOLD and thresholds[1] == FALLBACK_THRESHOLD
    assert thresholds[2] == 0.8


def test_operating_point_counts_and_boundary():
    y = np.array([[1.0], [1.0], [0.0], [0.0], [0.0], [np.nan]])
    s = np.array([[0.7], [0.3], [0.5], [0.2], [0.1], [0.9]])
    point = operating_point_metrics(y, s, np.array([0.5]), findings=["A"])["A"]
    # 0.5 >= 0.5 counts as positive; the unknown label is left out.
    assert (point["tp"], point["fp"], point["tn"], point["fn"]) == (1, 1, 2, 1)
    assert point["sensitivity"] == 0.5
    assert point["specificity"] == pytest.approx(2 / 3)
    assert point["precision"] == 0.5
    assert point["f1"] == 0.5
    assert point["threshold"] == 0.5


def test_undefined_rates_are_nan():
    y = np.array([[0.0], [0.0]])
    s = np.array([[0.1], [0.2]])
    point = operating_point_metrics(y, s, np.array([0.9]), findings=["A"])["A"]
    assert np.isnan(point["sensitivity"]) and np.isnan(point["precision"]) and np.isnan(point["f1"])
    assert point["specificity"] == 1.0


def test_bad_arguments_raise():
    y = np.zeros((2, 2))
    with pytest.raises(ValueError, match="thresholds"):
        operating_point_metrics(y, y, np.array([0.5]), findings=["A", "B"])
    with pytest.raises(ValueError, match="finding names"):
        operating_point_metrics(y, y, np.array([0.5, 0.5]))
