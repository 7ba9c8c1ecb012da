"""How well probabilities are calibrated: expected calibration error and Brier score, with bootstrap CIs.

Expected calibration error (ECE) follows Guo et al., "On Calibration of Modern Neural Networks", ICML 2017
(eq. 3), in its binary, per-finding form: the predicted probabilities of a finding are put in ``M = 15``
equal-width bins ``((m-1)/M, m/M]`` (the first bin also holds 0, as in
:func:`sklearn.calibration.calibration_curve`), and ECE is the image-weighted mean, over bins, of
``|fraction of positives - mean predicted probability|``. Equivalently ``ECE = Σ_m |Σ_{i∈m} (p_i - y_i)| / N``.
The Brier score (Brier, "Verification of forecasts expressed in terms of probability", Monthly Weather
Review 1950) is the mean squared difference ``(p_i - y_i)²``, as :func:`sklearn.metrics.brier_score_loss`.

Both statistics are weighted sums over images, so a bootstrap resample, given as draw counts (see
:func:`~cxreader.evaluation.metrics.bootstrap_weights`), costs one matrix product per finding: 1,000
resamples of 22,433 images × 14 findings take a few seconds. The resamples are the ones the AUROC intervals
use (same stream, same seed), percentile intervals as in :mod:`cxreader.evaluation.metrics`.

Arrays are ``(N, K)``; labels are 0/1 with NaN for unknown, which is left out of that finding only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cxreader.evaluation.metrics import (
    bootstrap_weights,
    check_labels_probs,
    nanmean_rows,
    percentile_interval,
)

#: Bins of the expected calibration error (Guo et al. 2017 use 15 equal-width bins).
ECE_BINS = 15


def bin_index(probs: np.ndarray, n_bins: int = ECE_BINS) -> np.ndarray:
    """The equal-width bin of each probability: ``m - 1`` for ``p`` in ``((m-1)/M, m/M]``, 0 for ``p = 0``.

    The same assignment as :func:`sklearn.calibration.calibration_curve` with ``strategy="uniform"``, so the
    reliability diagram and the ECE read the same bins.
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return np.searchsorted(edges[1:-1], np.asarray(probs, dtype=np.float64))


class _BinnedClass:
    """One finding's known-label images, sorted by bin once, ready for weighted ECE and Brier on many resamples.

    Each resample chunk then costs elementwise products and one :func:`numpy.add.reduceat` over the bins: no
    BLAS call, whose threads only contend on a small shared machine.
    """

    def __init__(self, labels_k: np.ndarray, probs_k: np.ndarray, n_bins: int):
        known = np.flatnonzero(~np.isnan(labels_k))
        bins = bin_index(probs_k[known], n_bins)
        order = np.argsort(bins, kind="stable")
        #: Row index (into the N images) of each known-label image, grouped by bin.
        self.rows = known[order]
        self.residual = probs_k[self.rows] - labels_k[self.rows]
        self.squared_error = self.residual**2
        #: Where each non-empty bin starts in ``rows`` (empty bins add nothing to the ECE).
        self.bin_starts = np.flatnonzero(np.diff(bins[order], prepend=-1))

    def ece_brier(self, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Weighted ECE and Brier score for each column of ``weights`` (``(N, B)``); NaN without labels."""
        if self.rows.size == 0:
            nan = np.full(weights.shape[1], np.nan)
            return nan, nan
        w = weights[self.rows]
        total = w.sum(axis=0)
        bin_residuals = np.add.reduceat(w * self.residual[:, None], self.bin_starts, axis=0)
        # A resample that drew none of a finding's known-label images leaves it undefined (0 / 0 = NaN).
        with np.errstate(invalid="ignore", divide="ignore"):
            ece = np.abs(bin_residuals).sum(axis=0) / total
            brier = np.einsum("n,nb->b", self.squared_error, w) / total
        return ece, brier


def expected_calibration_error(
    labels: np.ndarray, probs: np.ndarray, *, n_bins: int = ECE_BINS
) -> np.ndarray:
    """ECE of each finding (Guo et al. 2017, binary form; see the module docstring).

    Args:
        labels: ``(N, K)`` 0/1 labels, NaN for unknown.
        probs: ``(N, K)`` probabilities in [0, 1].
        n_bins: Number of equal-width bins.

    Returns:
        ``(K,)`` ECE in [0, 1]; NaN for a finding without known labels.
    """
    labels, probs = _check_probabilities(labels, probs)
    ones = np.ones((labels.shape[0], 1))
    return np.array(
        [
            _BinnedClass(labels[:, k], probs[:, k], n_bins).ece_brier(ones)[0][0]
            for k in range(labels.shape[1])
        ]
    )


def brier_scores(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Brier score of each finding: the mean of ``(p - y)²`` over its known labels (NaN when there are none)."""
    labels, probs = _check_probabilities(labels, probs)
    ones = np.ones((labels.shape[0], 1))
    return np.array(
        [_BinnedClass(labels[:, k], probs[:, k], 1).ece_brier(ones)[1][0] for k in range(labels.shape[1])]
    )


def _check_probabilities(labels: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels, probs = check_labels_probs(labels, probs)
    if probs.size and (probs.min() < 0.0 or probs.max() > 1.0):
        raise ValueError("calibration needs probabilities in [0, 1]; got scores outside that range")
    return labels, probs


@dataclass(frozen=True)
class CalibrationMetrics:
    """Per-finding ECE and Brier score, their means over findings, and percentile-bootstrap intervals.

    Attributes:
        ece, brier: ``(K,)`` point estimates (NaN for a finding without known labels).
        ece_low, ece_high, brier_low, brier_high: ``(K,)`` interval bounds (NaN when not bootstrapped).
        mean_ece, mean_brier: Means of the defined per-finding values.
        mean_ece_ci, mean_brier_ci: ``(low, high)`` intervals of the means.
        n_bins: Bins of the ECE.
        n_bootstrap: Resamples behind the intervals (0: none).
    """

    ece: np.ndarray
    ece_low: np.ndarray
    ece_high: np.ndarray
    brier: np.ndarray
    brier_low: np.ndarray
    brier_high: np.ndarray
    mean_ece: float
    mean_ece_ci: tuple[float, float]
    mean_brier: float
    mean_brier_ci: tuple[float, float]
    n_bins: int
    n_bootstrap: int


def calibration_metrics(
    labels: np.ndarray,
    probs: np.ndarray,
    *,
    n_bins: int = ECE_BINS,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> CalibrationMetrics:
    """ECE and Brier score per finding and their means, with percentile-bootstrap intervals.

    Whole images are resampled with replacement, with the stream and seed convention of
    :func:`~cxreader.evaluation.metrics.bootstrap_auroc_ci` (Efron & Tibshirani 1993, ch. 13), so the
    calibration and AUROC intervals of one report come from the same resamples.

    Args:
        labels: ``(N, K)`` 0/1 labels, NaN for unknown.
        probs: ``(N, K)`` probabilities in [0, 1].
        n_bins: ECE bins (Guo et al. 2017: 15).
        n_bootstrap: Resamples; 0 skips the intervals (NaN bounds).
        confidence: Two-sided coverage of the intervals.
        seed: Seed of the resampling stream.
    """
    labels, probs = _check_probabilities(labels, probs)
    if n_bootstrap < 0:
        raise ValueError(f"n_bootstrap must be >= 0, got {n_bootstrap}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    n_images, n_classes = labels.shape
    classes = [_BinnedClass(labels[:, k], probs[:, k], n_bins) for k in range(n_classes)]
    ones = np.ones((n_images, 1))
    point = np.array([[value[0] for value in c.ece_brier(ones)] for c in classes])  # (K, 2): ECE, Brier

    samples = np.full((n_bootstrap, n_classes, 2), np.nan)
    done = 0
    for counts in bootstrap_weights(n_images, n_bootstrap, seed=seed) if n_bootstrap else ():
        chunk = slice(done, done + counts.shape[1])
        for k, binned in enumerate(classes):
            samples[chunk, k, 0], samples[chunk, k, 1] = binned.ece_brier(counts)
        done += counts.shape[1]

    intervals = np.array(
        [[percentile_interval(samples[:, k, s], confidence) for s in range(2)] for k in range(n_classes)]
    ).reshape(n_classes, 2, 2)  # (K, statistic, bound)
    means = nanmean_rows(point.T)
    mean_samples = [nanmean_rows(samples[:, :, s]) for s in range(2)]
    mean_intervals = [percentile_interval(values, confidence) for values in mean_samples]
    return CalibrationMetrics(
        ece=point[:, 0],
        ece_low=intervals[:, 0, 0],
        ece_high=intervals[:, 0, 1],
        brier=point[:, 1],
        brier_low=intervals[:, 1, 0],
        brier_high=intervals[:, 1, 1],
        mean_ece=float(means[0]),
        mean_ece_ci=mean_intervals[0],
        mean_brier=float(means[1]),
        mean_brier_ci=mean_intervals[1],
        n_bins=n_bins,
        n_bootstrap=n_bootstrap,
    )
