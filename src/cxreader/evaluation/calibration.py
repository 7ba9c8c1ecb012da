"""Fitting a post-hoc calibration of per-finding probabilities: temperature scaling, or isotonic regression.

Temperature scaling (Guo et al., "On Calibration of Modern Neural Networks", ICML 2017, §4.2) divides a
finding's logit by one temperature ``T > 0`` fitted on validation data by minimising the negative
log-likelihood; ``T > 1`` softens over-confident probabilities. It is strictly monotonic, so it never changes a
finding's ranking of images: AUROC is unchanged. Isotonic regression (Zadrozny & Elkan, "Transforming
classifier scores into accurate multiclass probability estimates", KDD 2002) fits a non-decreasing step
function from probability to observed frequency; it can repair miscalibration that one temperature cannot
(an offset, a bend), but it needs data and may merge nearby scores into ties.

Both work from probabilities, since predictions files hold probabilities: the logit is ``log(p / (1 - p))``
with ``p`` clipped to ``[1e-12, 1 - 1e-12]``.

**Which method, per finding** (:func:`fit_calibration`):

1. A finding whose validation labels lack positives or negatives, or whose positives all score above all its
   negatives (perfectly separated: the likelihood grows without bound as ``T`` shrinks, so no temperature is
   identifiable and the fit would saturate every output), is left as it is (``identity``).
2. Temperature scaling is the default.
3. Isotonic regression replaces it only where the finding has at least ``min_isotonic_positives`` (50)
   positives *and* as many negatives, and where, in a seeded stratified 5-fold cross-validation on the
   validation data, isotonic's out-of-fold NLL *and* out-of-fold ECE (15 bins) are both lower than
   temperature scaling's. Out-of-fold scores are used because isotonic regression always wins on the data
   it was fitted to. The chosen method is then refitted on all validation data.

The result is a :class:`~cxreader.inference.calibration.Calibration`, defined with the code that applies it
(:mod:`cxreader.inference.calibration`, a layer below, so that every model call can use it): small and
serialisable, it travels inside a checkpoint's contract and is applied at inference. This module holds only
the fitting side.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
from scipy.optimize import minimize_scalar
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import log_loss
from sklearn.model_selection import StratifiedKFold

from cxreader.evaluation.calibration_metrics import ECE_BINS, expected_calibration_error
from cxreader.inference.calibration import (
    IDENTITY,
    ISOTONIC,
    TEMPERATURE,
    Calibration,
    FindingCalibration,
    apply_isotonic,
    apply_temperature,
    probability_to_logit,
)
from cxreader.labels import FINDINGS

#: Isotonic regression is considered only for findings with at least this many positives (and negatives).
MIN_ISOTONIC_POSITIVES = 50
#: Folds of the cross-validation that compares the two methods.
SELECTION_FOLDS = 5
#: The temperature is searched in [1/100, 100] (on a log scale).
_LOG_TEMPERATURE_BOUNDS = (math.log(1e-2), math.log(1e2))


def _known(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    probs = np.asarray(probs, dtype=np.float64).ravel()
    labels = np.asarray(labels, dtype=np.float64).ravel()
    if probs.shape != labels.shape:
        raise ValueError(f"{probs.size} probabilities but {labels.size} labels")
    known = ~np.isnan(labels)
    return probs[known], labels[known]


def _require_both_classes(labels: np.ndarray) -> None:
    if labels.size == 0 or labels.min() == labels.max():
        raise ValueError("fitting a calibration needs both positive and negative labels")


def fit_temperature(probs: np.ndarray, labels: np.ndarray) -> float:
    """The temperature minimising the negative log-likelihood of one finding's labels (Guo et al. 2017).

    Args:
        probs: ``(N,)`` validation probabilities.
        labels: ``(N,)`` 0/1 labels, NaN for unknown (left out).

    Returns:
        ``T`` in [0.01, 100] (searched on a log scale with :func:`scipy.optimize.minimize_scalar`).

    Raises:
        ValueError: the known labels lack positives or negatives.
    """
    probs, labels = _known(probs, labels)
    _require_both_classes(labels)
    logits = probability_to_logit(probs)

    def nll(log_temperature: float) -> float:
        scaled = logits / math.exp(log_temperature)
        # -[y log σ(z) + (1 - y) log(1 - σ(z))] = log(1 + e^z) - y z, computed without overflow.
        return float(np.mean(np.logaddexp(0.0, scaled) - labels * scaled))

    result = minimize_scalar(nll, bounds=_LOG_TEMPERATURE_BOUNDS, method="bounded", options={"xatol": 1e-6})
    return float(math.exp(result.x))


def fit_isotonic(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Isotonic regression of one finding's labels on its probabilities (Zadrozny & Elkan 2002).

    Returns:
        ``(x, y)`` knots of the fitted non-decreasing piecewise-linear map (:class:`sklearn.isotonic.
        IsotonicRegression`'s thresholds); :func:`apply_isotonic` interpolates them, constant outside.

    Raises:
        ValueError: the known labels lack positives or negatives.
    """
    probs, labels = _known(probs, labels)
    _require_both_classes(labels)
    model = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip").fit(probs, labels)
    knots_x, knots_y = model.X_thresholds_, model.y_thresholds_
    return np.asarray(knots_x, dtype=np.float64), np.asarray(knots_y, dtype=np.float64)


def binary_nll(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-likelihood of 0/1 labels (:func:`sklearn.metrics.log_loss`; probabilities clipped
    to machine epsilon, so a confident miss costs about 36 nats rather than infinity)."""
    return float(log_loss(labels, probs, labels=[0, 1]))


def _cross_validated_scores(
    probs: np.ndarray, labels: np.ndarray, *, folds: int, seed: int
) -> dict[str, dict[str, float]]:
    """Out-of-fold NLL and ECE of temperature scaling and of isotonic regression (seeded stratified folds)."""
    out_of_fold = {TEMPERATURE: np.empty_like(probs), ISOTONIC: np.empty_like(probs)}
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for train, held_out in splitter.split(probs.reshape(-1, 1), labels):
        temperature = fit_temperature(probs[train], labels[train])
        out_of_fold[TEMPERATURE][held_out] = apply_temperature(probs[held_out], temperature)
        knots_x, knots_y = fit_isotonic(probs[train], labels[train])
        out_of_fold[ISOTONIC][held_out] = apply_isotonic(probs[held_out], knots_x, knots_y)
    return {
        method: {
            "nll": binary_nll(predicted, labels),
            "ece": float(expected_calibration_error(labels[:, None], predicted[:, None])[0]),
        }
        for method, predicted in out_of_fold.items()
    }


def fit_finding_calibration(
    probs: np.ndarray,
    labels: np.ndarray,
    *,
    isotonic: bool = True,
    min_isotonic_positives: int = MIN_ISOTONIC_POSITIVES,
    folds: int = SELECTION_FOLDS,
    seed: int = 0,
) -> FindingCalibration:
    """Fit one finding's calibration on validation data by the rule of the module docstring.

    Args:
        probs: ``(N,)`` validation probabilities.
        labels: ``(N,)`` 0/1 labels, NaN for unknown (left out).
        isotonic: Consider isotonic regression at all (``False``: temperature scaling wherever defined).
        min_isotonic_positives: Fewest positives (and negatives) for isotonic to be considered.
        folds: Folds of the comparison.
        seed: Seed of the fold assignment.
    """
    probs, labels = _known(probs, labels)
    positives = int(labels.sum())
    negatives = labels.size - positives
    counts = {"n": int(labels.size), "positives": positives}
    if positives == 0 or negatives == 0:
        missing = "positive" if positives == 0 else "negative"
        return FindingCalibration(IDENTITY, reason=f"no {missing} validation labels", **counts)
    if probs[labels == 1].min() > probs[labels == 0].max():
        # The likelihood keeps rising as T shrinks: the fit would run to its bound and saturate every output.
        return FindingCalibration(
            IDENTITY, reason="perfectly separated on validation: no temperature is identifiable", **counts
        )
    fitted = FindingCalibration(TEMPERATURE, temperature=fit_temperature(probs, labels), **counts)
    if not isotonic:
        return replace(fitted, reason="temperature scaling only (isotonic not considered)")
    if min(positives, negatives) < min_isotonic_positives:
        fewer = "positives" if positives <= negatives else "negatives"
        return replace(
            fitted,
            reason=f"{min(positives, negatives)} {fewer} < {min_isotonic_positives}: too few for isotonic",
        )
    scores = _cross_validated_scores(probs, labels, folds=folds, seed=seed)
    lower = all(scores[ISOTONIC][key] < scores[TEMPERATURE][key] for key in ("nll", "ece"))
    if not lower:
        return replace(
            fitted,
            reason="isotonic did not lower both cross-validated NLL and ECE",
            cross_validated=scores,
        )
    knots_x, knots_y = fit_isotonic(probs, labels)
    return replace(
        fitted,
        method=ISOTONIC,
        knots_x=tuple(knots_x.tolist()),
        knots_y=tuple(knots_y.tolist()),
        reason="isotonic lowered both cross-validated NLL and ECE",
        cross_validated=scores,
    )


def fit_calibration(
    probabilities: np.ndarray,
    labels: np.ndarray,
    *,
    findings: Sequence[str] = FINDINGS,
    isotonic: bool = True,
    min_isotonic_positives: int = MIN_ISOTONIC_POSITIVES,
    folds: int = SELECTION_FOLDS,
    seed: int = 0,
) -> Calibration:
    """Fit a per-finding calibration on validation probabilities (temperature scaling, Guo et al. 2017; or
    isotonic regression, Zadrozny & Elkan 2002, where the rule of the module docstring picks it).

    Args:
        probabilities: ``(N, K)`` validation probabilities, columns in ``findings`` order.
        labels: ``(N, K)`` 0/1 labels, NaN for unknown.
        findings: Column names (default: the 14 :data:`~cxreader.labels.FINDINGS`).
        isotonic: Consider isotonic regression (``False``: temperature scaling only).
        min_isotonic_positives: Fewest positives (and negatives) for isotonic to be considered.
        folds: Folds of the cross-validated comparison (>= 2).
        seed: Seed of the fold assignment.
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64)
    if probabilities.ndim != 2 or probabilities.shape != labels.shape:
        raise ValueError(
            f"probabilities {probabilities.shape} and labels {labels.shape} must be one (N, K) shape"
        )
    if probabilities.shape[1] != len(findings):
        raise ValueError(f"{probabilities.shape[1]} columns but {len(findings)} findings")
    if not np.all((probabilities >= 0.0) & (probabilities <= 1.0)):
        raise ValueError("probabilities must lie in [0, 1]")
    if folds < 2:
        raise ValueError(f"folds must be >= 2, got {folds}")
    per_finding = tuple(
        fit_finding_calibration(
            probabilities[:, k],
            labels[:, k],
            isotonic=isotonic,
            min_isotonic_positives=min_isotonic_positives,
            folds=folds,
            seed=seed,
        )
        for k in range(len(findings))
    )
    return Calibration(
        findings=tuple(findings),
        per_finding=per_finding,
        rule={
            "min_isotonic_positives": min_isotonic_positives,
            "folds": folds,
            "seed": seed,
            "ece_bins": ECE_BINS,
            "isotonic": isotonic,
        },
    )
