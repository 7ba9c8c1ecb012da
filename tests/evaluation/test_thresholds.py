from __future__ import annotations

import numpy as np
import pytest

from cxreader.errors import ConfigError
from cxreader.evaluation.thresholds import (
    FALLBACK_THRESHOLD,
    OperatingPointRule,
    choose_thresholds,
    operating_point_metrics,
    operating_points,
)


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


# One class, 5 positives and 5 negatives. Sweeping down: 0.95, 0.9, 0.8, 0.7 are positives (TP 1..4, FP 0),
# 0.65 a negative (TP 4, FP 1), 0.6 a positive (TP 5, FP 1), the rest negatives.
HAND_Y = np.array([1, 1, 1, 1, 0, 1, 0, 0, 0, 0], dtype=float)[:, None]
HAND_S = np.array([0.95, 0.9, 0.8, 0.7, 0.65, 0.6, 0.5, 0.4, 0.3, 0.2])[:, None]


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ("youden", 0.7),  # J = 0.8 at 0.7 (4/5 - 0) and at 0.6 (5/5 - 1/5): the higher one wins the tie
        ("f1", 0.6),  # F1 = 10/11 at 0.6 beats 8/9 at 0.7
        ("sensitivity=0.9", 0.6),  # 4/5 < 0.9 at 0.7; 5/5 first at 0.6
        ("sensitivity=0.8", 0.7),  # exactly 4/5 counts as reached
        ("specificity=0.9", 0.7),  # the lowest threshold with no false positive
        ("specificity=0.8", 0.6),  # one false positive allowed: down to 0.6, not 0.5 (two)
        ("SPECIFICITY = 1", 0.7),  # spelling is forgiving
    ],
)
def test_operating_point_rules_pick_the_right_threshold(rule, expected):
    assert choose_thresholds(HAND_Y, HAND_S, rule)[0] == expected


def test_targets_are_exact_decimals():
    # In floating point 0.7 * 10 = 7.000000000000001 > 7: 7 of 10 positives found would not count.
    y = np.r_[np.ones(10), np.zeros(10)][:, None]
    s = np.r_[np.linspace(1.0, 0.55, 10), np.linspace(0.5, 0.05, 10)][:, None]
    assert choose_thresholds(y, s, "sensitivity=0.7")[0] == s[6, 0]
    assert (
        choose_thresholds(1 - y, 1 - s, "specificity=0.7")[0] == (1 - s)[7, 0]
    )  # the third-highest negative: 3 of 10 false positives


def test_a_specificity_no_threshold_reaches_calls_nothing_positive():
    y = np.array([[0.0], [1.0], [0.0], [1.0]])
    s = np.array([[0.9], [0.8], [0.3], [0.2]])  # the top score is a negative
    threshold = choose_thresholds(y, s, "specificity=0.9")[0]
    assert 0.9 < threshold < 0.9 + 1e-12
    point = operating_points(y, s, "specificity=0.9", findings=["A"])["findings"]["A"]
    assert point["specificity"] == 1.0 and point["sensitivity"] == 0.0


def test_operating_points_record_the_rule_and_what_it_reached():
    y = np.hstack([HAND_Y, np.zeros_like(HAND_Y)])  # the second class has no positives
    s = np.hstack([HAND_S, HAND_S])
    record = operating_points(y, s, "sensitivity=0.9", findings=["A", "B"])
    assert record["rule"] == "sensitivity=0.9" and record["scale"] == "calibrated"
    assert record["findings"]["A"] == {
        "threshold": 0.6,
        "sensitivity": 1.0,
        "specificity": 0.8,
        "rule": "sensitivity=0.9",
    }
    assert record["findings"]["B"]["threshold"] == FALLBACK_THRESHOLD
    assert record["findings"]["B"]["sensitivity"] is None  # undefined, and JSON has no NaN


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("youdn", "expected youden"),
        ("sensitivity", "needs a value"),
        ("sensitivity=", "needs a value"),
        ("specificity=high", "not a number"),
        ("sensitivity=0", "must be in \\(0, 1\\]"),
        ("specificity=1.5", "must be in \\(0, 1\\]"),
        ("f1=0.5", "takes no value"),
        ("", "expected youden"),
    ],
)
def test_malformed_rules_are_refused_with_the_accepted_forms(text, message):
    with pytest.raises(ConfigError, match=message):
        OperatingPointRule.parse(text)
    with pytest.raises(ConfigError, match="sensitivity=X"):
        choose_thresholds(HAND_Y, HAND_S, text)


def test_rules_print_as_they_are_written():
    assert [
        str(OperatingPointRule.parse(t)) for t in ("youden", "F1", "sensitivity=0.90", "specificity=1")
    ] == [
        "youden",
        "f1",
        "sensitivity=0.9",
        "specificity=1",
    ]
