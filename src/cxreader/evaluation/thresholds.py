"""Per-class operating thresholds chosen on validation data, and the metrics at those thresholds.

A prediction is *positive* when ``prob >= threshold``. Candidate thresholds are the distinct observed
scores of the class's known-label images, so the chosen threshold reproduces on the same data exactly the
confusion counts it was chosen for. The chosen one maximises Youden's J = sensitivity + specificity − 1
(W. J. Youden, "Index for rating diagnostic tests", Cancer 1950).

Tie rule: when several thresholds reach the maximum, the highest one is chosen (fewest positive calls, i.e.
the most specific of the equally good operating points). Ties are detected in exact integer arithmetic.

Fallback: a class whose known labels are all 0 or all 1 (or all unknown) has no defined optimum; it gets
threshold :data:`FALLBACK_THRESHOLD` = 0.5, the natural cut of a sigmoid output.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cxreader.evaluation.metrics import check_labels_probs
from cxreader.labels import FINDINGS

#: Threshold given to a class without both label values in the data it is chosen on.
FALLBACK_THRESHOLD = 0.5


def _threshold_sweep(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct scores in decreasing order and the TP / FP counts of ``s >= threshold`` at each."""
    order = np.argsort(-s, kind="mergesort")
    scores = s[order]
    positive = (y[order] == 1).astype(np.int64)
    # The last entry of each run of equal scores carries the counts of "score >= that value".
    last_of_group = np.flatnonzero(np.r_[scores[1:] != scores[:-1], True])
    tp = np.cumsum(positive)[last_of_group]
    fp = (last_of_group + 1) - tp
    return scores[last_of_group], tp, fp


def choose_thresholds(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Choose one operating threshold per class (on validation data) by Youden's J.

    Args:
        labels: ``(N, K)`` 0/1 labels, NaN for unknown (left out per class).
        probs: ``(N, K)`` probabilities.

    Returns:
        ``(K,)`` thresholds; each is an observed score of its class (the highest among equally good ones),
        or :data:`FALLBACK_THRESHOLD` for a class without both label values.
    """
    labels, probs = check_labels_probs(labels, probs)
    thresholds = np.full(labels.shape[1], FALLBACK_THRESHOLD)
    for k in range(labels.shape[1]):
        known = ~np.isnan(labels[:, k])
        y, s = labels[known, k], probs[known, k]
        n_pos = int(np.sum(y == 1))
        n_neg = int(y.size - n_pos)
        if n_pos == 0 or n_neg == 0:
            continue
        candidates, tp, fp = _threshold_sweep(y, s)
        # J = tp/P - fp/N; scaled by P·N it is an integer, so ties compare exactly. argmax takes the first
        # maximum, the highest of the tied thresholds (candidates decrease).
        scaled_j = tp * n_neg - fp * n_pos
        thresholds[k] = candidates[int(np.argmax(scaled_j))]
    return thresholds


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator > 0 else float("nan")


def operating_point_metrics(
    labels: np.ndarray,
    probs: np.ndarray,
    thresholds: np.ndarray,
    *,
    findings: Sequence[str] = FINDINGS,
) -> dict[str, dict[str, float | int]]:
    """Confusion counts and rates of each class at its threshold (positive means ``prob >= threshold``).

    Args:
        labels: ``(N, K)`` 0/1 labels, NaN for unknown (left out per class).
        probs: ``(N, K)`` probabilities.
        thresholds: ``(K,)`` thresholds.
        findings: The K class names, keys of the result (default: the 14 :data:`FINDINGS`).

    Returns:
        ``{finding: {"threshold", "sensitivity", "specificity", "precision", "f1", "tp", "fp", "tn", "fn"}}``;
        a rate whose denominator is zero (e.g. sensitivity without positives) is NaN.
    """
    labels, probs = check_labels_probs(labels, probs)
    thresholds = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    if thresholds.size != labels.shape[1] or len(findings) != labels.shape[1]:
        raise ValueError(
            f"{labels.shape[1]} classes but {thresholds.size} thresholds and {len(findings)} finding names"
        )
    if not np.all(np.isfinite(thresholds)):
        raise ValueError("thresholds must be finite")
    result: dict[str, dict[str, float | int]] = {}
    for k, name in enumerate(findings):
        known = ~np.isnan(labels[:, k])
        actual = labels[known, k] == 1
        predicted = probs[known, k] >= thresholds[k]
        tp = int(np.sum(actual & predicted))
        fp = int(np.sum(~actual & predicted))
        tn = int(np.sum(~actual & ~predicted))
        fn = int(np.sum(actual & ~predicted))
        result[name] = {
            "threshold": float(thresholds[k]),
            "sensitivity": _ratio(tp, tp + fn),
            "specificity": _ratio(tn, tn + fp),
            "precision": _ratio(tp, tp + fp),
            "f1": _ratio(2 * tp, 2 * tp + fp + fn),
            "tp": tp,
            "fp": fp,
            "tn": tn,
            "fn": fn,
        }
    return result
