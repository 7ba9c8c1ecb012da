"""Per-class operating thresholds chosen on validation data by a stated rule, and the metrics at them.

A prediction is *positive* when ``prob >= threshold``. Candidate thresholds are the distinct observed
scores of the class's known-label images, so the chosen threshold reproduces on the same data exactly the
confusion counts it was chosen for. The rule (:class:`OperatingPointRule`, written as on the command line):

* ``youden`` (the default, and the only rule before rules could be chosen): maximise Youden's
  J = sensitivity + specificity − 1 (W. J. Youden, "Index for rating diagnostic tests", Cancer 1950).
  Ties are detected in exact integer arithmetic (J scaled by P·N).
* ``f1``: maximise F1 = 2TP / (2TP + FP + FN) (van Rijsbergen 1979). F1 is a ratio of integers and IEEE
  division is correctly rounded, so equal ratios give equal doubles and ties are exact too.
* ``sensitivity=X``: the highest threshold whose sensitivity is at least X (the most specific of the operating
  points that find that share of the positives). Always exists: the lowest score finds them all.
* ``specificity=X``: the lowest threshold whose specificity is at least X (the most sensitive of those that
  clear that share of the negatives). Where even the highest score falls short (negatives share the top
  score), the threshold is just above the highest score (nothing is called positive, specificity 1).

X is read as an exact decimal (``0.9`` is 9/10) and compared in integer arithmetic, so ``sensitivity=0.9``
on 10 positives accepts exactly 9 found.

Tie rule (``youden``, ``f1``): when several thresholds reach the maximum, the highest one is chosen (fewest
positive calls, i.e. the most specific of the equally good operating points).

Fallback: a class whose known labels are all 0 or all 1 (or all unknown) has no defined optimum; it gets
threshold :data:`FALLBACK_THRESHOLD` = 0.5, the natural cut of a sigmoid output.

A checkpoint stores the chosen rule and, per finding, the threshold and the sensitivity and specificity it
reached on validation (:func:`operating_points`); where the checkpoint is calibrated, they are chosen on the
calibrated probabilities, the scale the model runner reports.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from cxreader.errors import ConfigError
from cxreader.evaluation.metrics import check_labels_probs
from cxreader.labels import FINDINGS

#: Threshold given to a class without both label values in the data it is chosen on.
FALLBACK_THRESHOLD = 0.5
#: The rule of :func:`choose_thresholds` when none is given (the one cxreader always used).
DEFAULT_RULE = "youden"
#: How the rules are written (``--operating-point``, the ``operating_point`` config key).
RULE_SYNTAX = "youden | f1 | sensitivity=X | specificity=X (0 < X <= 1)"


@dataclass(frozen=True)
class OperatingPointRule:
    """A rule that picks one threshold per finding (see the module docstring).

    Attributes:
        name: ``youden``, ``f1``, ``sensitivity`` or ``specificity``.
        target: The sensitivity or specificity to reach, as an exact fraction (``None`` for the others).
    """

    name: str
    target: Fraction | None = None

    @classmethod
    def parse(cls, text: str | OperatingPointRule) -> OperatingPointRule:
        """Read ``youden``, ``f1``, ``sensitivity=0.9`` or ``specificity=0.95``.

        Raises:
            ConfigError: anything else, naming the accepted forms.
        """
        if isinstance(text, OperatingPointRule):
            return text
        raw = str(text).strip()
        name, sep, value = (part.strip() for part in raw.lower().partition("="))
        problem = f"operating point {raw!r}: expected {RULE_SYNTAX}"
        if name in ("youden", "f1"):
            if sep:
                raise ConfigError(f"{problem} ({name} takes no value)")
            return cls(name)
        if name not in ("sensitivity", "specificity"):
            raise ConfigError(problem)
        if not value:
            raise ConfigError(f"{problem} ({name} needs a value, e.g. {name}=0.9)")
        try:
            target = Fraction(value)
        except (ValueError, ZeroDivisionError):
            raise ConfigError(f"{problem} ({value!r} is not a number)") from None
        if not 0 < target <= 1:
            raise ConfigError(f"{problem} ({name} must be in (0, 1], got {value})")
        return cls(name, target)

    def __str__(self) -> str:
        if self.target is None:
            return self.name
        return f"{self.name}={_decimal(self.target)}"


def _decimal(value: Fraction) -> str:
    text = f"{float(value):.12g}"
    return text if Fraction(text) == value else str(value)


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


def _choose_one(y: np.ndarray, s: np.ndarray, rule: OperatingPointRule) -> float:
    """One class's threshold by ``rule``; ``y`` holds both label values."""
    n_pos = int(np.sum(y == 1))
    n_neg = int(y.size - n_pos)
    candidates, tp, fp = _threshold_sweep(y, s)
    # Candidates decrease, so argmax (the first maximum) takes the highest of tied thresholds.
    if rule.name == "youden":
        # J = tp/P - fp/N; scaled by P·N it is an integer, so ties compare exactly.
        return float(candidates[int(np.argmax(tp * n_neg - fp * n_pos))])
    if rule.name == "f1":
        # 2TP + FP + FN = TP + FP + P; a correctly rounded quotient of integers, so ties compare exactly.
        return float(candidates[int(np.argmax(2.0 * tp / (tp + fp + n_pos)))])
    assert rule.target is not None
    numerator, denominator = rule.target.numerator, rule.target.denominator
    if rule.name == "sensitivity":  # tp / P >= X, first reached at the highest such threshold
        reached = tp * denominator >= numerator * n_pos
        return float(candidates[int(np.argmax(reached))])
    # specificity: (N - fp) / N >= X holds on a prefix of the candidates; take its last (lowest) one.
    reached = np.flatnonzero((n_neg - fp) * denominator >= numerator * n_neg)
    if reached.size == 0:
        return float(np.nextafter(candidates[0], math.inf))
    return float(candidates[int(reached[-1])])


def choose_thresholds(
    labels: np.ndarray, probs: np.ndarray, rule: str | OperatingPointRule = DEFAULT_RULE
) -> np.ndarray:
    """Choose one operating threshold per class (on validation data) by ``rule`` (module docstring).

    Args:
        labels: ``(N, K)`` 0/1 labels, NaN for unknown (left out per class).
        probs: ``(N, K)`` probabilities.
        rule: ``youden`` (default), ``f1``, ``sensitivity=X`` or ``specificity=X``.

    Returns:
        ``(K,)`` thresholds; each is an observed score of its class (the highest among equally good ones;
        for ``specificity=X`` possibly just above the highest), or :data:`FALLBACK_THRESHOLD` for a class
        without both label values.

    Raises:
        ConfigError: a malformed rule.
    """
    rule = OperatingPointRule.parse(rule)
    labels, probs = check_labels_probs(labels, probs)
    thresholds = np.full(labels.shape[1], FALLBACK_THRESHOLD)
    for k in range(labels.shape[1]):
        known = ~np.isnan(labels[:, k])
        y, s = labels[known, k], probs[known, k]
        n_pos = int(np.sum(y == 1))
        if n_pos == 0 or n_pos == y.size:
            continue
        thresholds[k] = _choose_one(y, s, rule)
    return thresholds


def operating_points(
    labels: np.ndarray,
    probs: np.ndarray,
    rule: str | OperatingPointRule = DEFAULT_RULE,
    *,
    findings: Sequence[str] = FINDINGS,
    scale: str = "calibrated",
    split: str = "validation",
) -> dict[str, Any]:
    """The operating point a checkpoint stores: thresholds by ``rule`` and what they reached on this data.

    Args:
        labels, probs: ``(N, K)`` validation labels (NaN unknown) and probabilities.
        rule: See :func:`choose_thresholds`.
        findings: The K class names.
        scale: ``calibrated`` or ``raw``: which probabilities these are (a record for the reader).
        split: The data they were chosen on (a record).

    Returns:
        ``{"rule", "scale", "split", "findings": {name: {"threshold", "sensitivity", "specificity",
        "rule"}}}``, JSON-ready (a rate that is undefined, e.g. sensitivity without positives, is ``None``).
    """
    rule = OperatingPointRule.parse(rule)
    thresholds = choose_thresholds(labels, probs, rule)
    reached = operating_point_metrics(labels, probs, thresholds, findings=findings)
    return {
        "rule": str(rule),
        "scale": scale,
        "split": split,
        "findings": {
            name: {
                "threshold": float(thresholds[k]),
                "sensitivity": _json_rate(reached[name]["sensitivity"]),
                "specificity": _json_rate(reached[name]["specificity"]),
                "rule": str(rule),
            }
            for k, name in enumerate(findings)
        },
    }


def _json_rate(value: float | int) -> float | None:
    return float(value) if math.isfinite(value) else None


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
