"""Evaluation: per-class AUROC with bootstrap CIs, operating thresholds, ROC plots, reports.

Follows CheXNet's protocol (Rajpurkar et al., 2017): AUROC per finding and its mean over the 14 findings.
"""

from __future__ import annotations

from cxreader.evaluation.metrics import (
    BootstrapResult,
    RocCurve,
    bootstrap_auroc_ci,
    mean_auroc,
    per_class_auroc,
    roc_curve_points,
    weighted_auroc,
)
from cxreader.evaluation.plots import plot_roc_curves
from cxreader.evaluation.predictions_file import (
    load_labelled_predictions,
    load_predictions_csv,
    score_predictions_file,
)
from cxreader.evaluation.report import EvaluationReport, build_report
from cxreader.evaluation.thresholds import choose_thresholds, operating_point_metrics

__all__ = [
    "BootstrapResult",
    "EvaluationReport",
    "RocCurve",
    "bootstrap_auroc_ci",
    "build_report",
    "choose_thresholds",
    "load_labelled_predictions",
    "load_predictions_csv",
    "mean_auroc",
    "operating_point_metrics",
    "per_class_auroc",
    "plot_roc_curves",
    "roc_curve_points",
    "score_predictions_file",
    "weighted_auroc",
]
