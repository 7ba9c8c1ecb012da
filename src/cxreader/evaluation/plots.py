"""ROC curves and reliability diagrams: one panel per finding, each figure written as a PNG.

Uses matplotlib's object API with the Agg canvas directly (no ``pyplot``), so it never touches the global
backend or figure registry and works on headless machines and inside servers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.calibration import calibration_curve
from sklearn.metrics import roc_curve

from cxreader.evaluation.calibration_metrics import ECE_BINS, bin_index, expected_calibration_error
from cxreader.evaluation.metrics import check_labels_probs, per_class_auroc
from cxreader.files import atomic_write
from cxreader.labels import FINDINGS

_COLUMNS = 4
_PANEL_INCHES = 3.0


def _panel_title(name: str, auroc: float) -> str:
    label = name.replace("_", " ")
    return f"{label}\nAUROC {auroc:.3f}" if math.isfinite(auroc) else f"{label}\nAUROC n/a"


def plot_roc_curves(
    labels: np.ndarray,
    probs: np.ndarray,
    out_path: str | Path,
    *,
    title: str,
    findings: Sequence[str] = FINDINGS,
) -> Path:
    """Draw the ROC curve of every finding in a grid (4 columns) and save it as one PNG.

    Each panel shows the empirical ROC curve, the chance diagonal, and the finding's AUROC in its title. A
    finding whose known labels lack positives or negatives gets an empty panel saying so.

    Args:
        labels: ``(N, K)`` 0/1 labels in ``findings`` order, NaN for unknown.
        probs: ``(N, K)`` probabilities.
        out_path: Destination PNG; written to a temporary file first and moved into place atomically.
        title: Figure title (say "synthetic" in it when the data are synthetic).
        findings: The K panel names (default: the 14 :data:`FINDINGS`).
    """
    labels, probs = _check_findings(labels, probs, findings)
    n_classes = labels.shape[1]
    aurocs = per_class_auroc(labels, probs)

    figure, axes = _panel_grid(n_classes)
    for k, axis in enumerate(axes):
        if k >= n_classes:
            axis.set_axis_off()
            continue
        axis.plot([0, 1], [0, 1], linestyle="--", color="0.6", linewidth=1)
        if math.isfinite(aurocs[k]):  # the known labels hold both values
            known = ~np.isnan(labels[:, k])
            fpr, tpr, _ = roc_curve(labels[known, k], probs[known, k])
            axis.plot(fpr, tpr, color="tab:blue", linewidth=1.6)
        else:
            axis.text(0.5, 0.5, "needs positive and\nnegative labels", ha="center", va="center", fontsize=9)
        axis.set_title(_panel_title(findings[k], float(aurocs[k])), fontsize=10)
        axis.set_xlim(0, 1)
        axis.set_ylim(0, 1)
        axis.set_aspect("equal")
        axis.tick_params(labelsize=8)
        axis.grid(True, linewidth=0.4, alpha=0.5)
        if k % _COLUMNS == 0:
            axis.set_ylabel("Sensitivity (TPR)", fontsize=9)
        if k + _COLUMNS >= n_classes:
            axis.set_xlabel("1 − Specificity (FPR)", fontsize=9)
    figure.suptitle(title, fontsize=13)
    return _save(figure, out_path)


def plot_reliability(
    labels: np.ndarray,
    probs: np.ndarray,
    out_path: str | Path,
    *,
    title: str,
    n_bins: int = ECE_BINS,
    findings: Sequence[str] = FINDINGS,
) -> Path:
    """Draw the reliability diagram of every finding in a grid (4 columns) and save it as one PNG.

    Each panel plots, per equal-width bin of predicted probability (Guo et al. 2017, Fig. 1; the bins of
    the ECE), the fraction of positives against the mean predicted probability
    (:func:`sklearn.calibration.calibration_curve`), with the diagonal of perfect calibration, grey bars
    for the share of images in each bin (log scale, right axis), and the finding's ECE in its title.

    Args:
        labels: ``(N, K)`` 0/1 labels in ``findings`` order, NaN for unknown.
        probs: ``(N, K)`` probabilities in [0, 1].
        out_path: Destination PNG, written atomically.
        title: Figure title (say "synthetic" in it when the data are synthetic).
        n_bins: Equal-width bins.
        findings: The K panel names (default: the 14 :data:`FINDINGS`).
    """
    labels, probs = _check_findings(labels, probs, findings)
    n_classes = labels.shape[1]
    eces = expected_calibration_error(labels, probs, n_bins=n_bins)
    edges = np.linspace(0.0, 1.0, n_bins + 1)

    figure, axes = _panel_grid(n_classes)
    for k, axis in enumerate(axes):
        if k >= n_classes:
            axis.set_axis_off()
            continue
        known = ~np.isnan(labels[:, k])
        name = findings[k].replace("_", " ")
        axis.plot([0, 1], [0, 1], linestyle="--", color="0.6", linewidth=1)
        if known.any():
            y, p = labels[known, k], probs[known, k]
            share = np.bincount(bin_index(p, n_bins), minlength=n_bins) / p.size
            counts_axis = axis.twinx()
            counts_axis.bar(edges[:-1], share, width=1.0 / n_bins, align="edge", color="0.85", zorder=0)
            counts_axis.set_yscale("log")
            counts_axis.set_ylim(1e-4, 1.0)
            counts_axis.tick_params(labelsize=7, colors="0.5")
            axis.set_zorder(counts_axis.get_zorder() + 1)  # the curve above the bars
            axis.patch.set_visible(False)
            fraction_positive, mean_predicted = calibration_curve(y, p, n_bins=n_bins, strategy="uniform")
            axis.plot(
                mean_predicted, fraction_positive, marker="o", markersize=3, color="tab:red", linewidth=1.4
            )
            axis.set_title(f"{name}\nECE {eces[k]:.4f}", fontsize=10)
        else:
            axis.text(0.5, 0.5, "no known labels", ha="center", va="center", fontsize=9)
            axis.set_title(f"{name}\nECE n/a", fontsize=10)
        axis.set_xlim(0, 1)
        axis.set_ylim(0, 1)
        axis.tick_params(labelsize=8)
        axis.grid(True, linewidth=0.4, alpha=0.5)
        if k % _COLUMNS == 0:
            axis.set_ylabel("Fraction positive", fontsize=9)
        if k + _COLUMNS >= n_classes:
            axis.set_xlabel("Mean predicted probability", fontsize=9)
    figure.suptitle(title, fontsize=13)
    return _save(figure, out_path)


def _check_findings(
    labels: np.ndarray, probs: np.ndarray, findings: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    labels, probs = check_labels_probs(labels, probs)
    if labels.shape[1] != len(findings):
        raise ValueError(f"{labels.shape[1]} classes, expected the {len(findings)} findings")
    return labels, probs


def _panel_grid(n_panels: int) -> tuple[Figure, np.ndarray]:
    """A figure with a grid of ``_COLUMNS`` columns and enough rows for ``n_panels``, on an Agg canvas."""
    rows = math.ceil(n_panels / _COLUMNS)
    figure = Figure(figsize=(_COLUMNS * _PANEL_INCHES, rows * _PANEL_INCHES + 0.6), layout="constrained")
    FigureCanvasAgg(figure)
    return figure, figure.subplots(rows, _COLUMNS, squeeze=False).ravel()


def _save(figure: Figure, out_path: str | Path) -> Path:
    """Write the figure as a PNG, to a temporary file first and moved into place atomically."""
    out_path = Path(out_path)
    with atomic_write(out_path) as stream:
        figure.savefig(stream, format="png", dpi=110)
    return out_path
