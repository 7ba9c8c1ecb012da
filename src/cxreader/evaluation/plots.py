"""ROC curve figure: one panel per finding, written as a PNG.

Uses matplotlib's object API with the Agg canvas directly (no ``pyplot``), so it never touches the global
backend or figure registry and works on headless machines and inside servers.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from cxreader.evaluation.metrics import check_labels_probs, per_class_auroc, roc_curve_points
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
    aurocs: Sequence[float] | np.ndarray | None = None,
    findings: Sequence[str] = FINDINGS,
) -> Path:
    """Draw the ROC curve of every finding in a grid (4 columns) and save it as one PNG.

    Each panel shows the empirical ROC curve, the chance diagonal, and the finding's AUROC in its title. A
    finding whose known labels lack positives or negatives gets an empty panel saying so.

    Args:
        labels: ``(N, K)`` 0/1 labels, NaN for unknown.
        probs: ``(N, K)`` probabilities.
        out_path: Destination PNG; written to a temporary file first and moved into place atomically.
        title: Figure title (say "synthetic" in it when the data are synthetic).
        aurocs: ``(K,)`` AUROCs to print; computed from the data when omitted.
        findings: The K class names (default: the 14 :data:`FINDINGS`).

    Returns:
        The path written.
    """
    labels, probs = check_labels_probs(labels, probs)
    n_classes = labels.shape[1]
    if len(findings) != n_classes:
        raise ValueError(f"{n_classes} classes but {len(findings)} finding names")
    aurocs = per_class_auroc(labels, probs) if aurocs is None else np.asarray(aurocs, dtype=np.float64)
    if aurocs.shape != (n_classes,):
        raise ValueError(f"aurocs must have shape ({n_classes},), got {aurocs.shape}")

    rows = math.ceil(n_classes / _COLUMNS)
    figure = Figure(figsize=(_COLUMNS * _PANEL_INCHES, rows * _PANEL_INCHES + 0.6), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, _COLUMNS, squeeze=False).ravel()
    for k, axis in enumerate(axes):
        if k >= n_classes:
            axis.set_axis_off()
            continue
        axis.plot([0, 1], [0, 1], linestyle="--", color="0.6", linewidth=1)
        try:
            curve = roc_curve_points(labels[:, k], probs[:, k])
        except ValueError:
            axis.text(0.5, 0.5, "needs positive and\nnegative labels", ha="center", va="center", fontsize=9)
        else:
            axis.plot(curve.fpr, curve.tpr, color="tab:blue", linewidth=1.6)
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

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(dir=out_path.parent, prefix=f".{out_path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            figure.savefig(stream, format="png", dpi=110)
        os.chmod(temp_name, 0o644)  # mkstemp creates files 0600; results are meant to be shared
        os.replace(temp_name, out_path)  # readers see the old file or the whole new one, never a partial PNG
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    return out_path
