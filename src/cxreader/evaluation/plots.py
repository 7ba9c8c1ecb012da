"""ROC curve figure: one panel per finding, written as a PNG.

Uses matplotlib's object API with the Agg canvas directly (no ``pyplot``), so it never touches the global
backend or figure registry and works on headless machines and inside servers.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.metrics import roc_curve

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
) -> Path:
    """Draw the ROC curve of every finding in a grid (4 columns) and save it as one PNG.

    Each panel shows the empirical ROC curve, the chance diagonal, and the finding's AUROC in its title. A
    finding whose known labels lack positives or negatives gets an empty panel saying so.

    Args:
        labels: ``(N, 14)`` 0/1 labels in :data:`FINDINGS` order, NaN for unknown.
        probs: ``(N, 14)`` probabilities.
        out_path: Destination PNG; written to a temporary file first and moved into place atomically.
        title: Figure title (say "synthetic" in it when the data are synthetic).
    """
    labels, probs = check_labels_probs(labels, probs)
    n_classes = labels.shape[1]
    if n_classes != len(FINDINGS):
        raise ValueError(f"{n_classes} classes, expected the {len(FINDINGS)} findings")
    aurocs = per_class_auroc(labels, probs)

    rows = math.ceil(n_classes / _COLUMNS)
    figure = Figure(figsize=(_COLUMNS * _PANEL_INCHES, rows * _PANEL_INCHES + 0.6), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, _COLUMNS, squeeze=False).ravel()
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
        axis.set_title(_panel_title(FINDINGS[k], float(aurocs[k])), fontsize=10)
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

    out_path = Path(out_path)
    with atomic_write(out_path) as stream:
        figure.savefig(stream, format="png", dpi=110)
    return out_path
