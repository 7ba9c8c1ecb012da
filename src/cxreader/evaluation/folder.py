"""The evaluation folder: ``report.md``, ``report.json``, ``roc.png`` and ``reliability.png`` of one evaluation,
written together.

``cxreader evaluate`` and ``cxreader demo`` both leave this folder behind; each file is written atomically
(:mod:`cxreader.files`), so a reader never finds a half-written report or plot.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cxreader.evaluation.plots import plot_reliability, plot_roc_curves
from cxreader.evaluation.report import EvaluationReport
from cxreader.files import write_text_atomic

#: The files :func:`write_evaluation_folder` writes, in the order a reader would open them.
FOLDER_FILES = ("report.md", "report.json", "roc.png", "reliability.png")


def write_evaluation_folder(
    report: EvaluationReport, labels: np.ndarray, probs: np.ndarray, out_dir: str | Path, *, title: str
) -> Path:
    """Write the report as Markdown and JSON, the per-finding ROC curves and reliability diagrams into ``out_dir``.

    Args:
        report: The evaluation (its Markdown ends with the disclaimer and any SYNTHETIC banner).
        labels: ``(N, K)`` labels the report was computed from (NaN = unknown), columns in the order of the
            report's findings (:attr:`EvaluationReport.findings`).
        probs: ``(N, K)`` probabilities.
        out_dir: The folder; created when missing.
        title: Title of the ROC figure; the reliability figure's title replaces a leading ``ROC`` by
            ``Reliability``.
    """
    out_dir = Path(out_dir)
    write_text_atomic(out_dir / "report.md", report.to_markdown() + "\n")
    report.write_json(out_dir / "report.json")
    findings = report.findings
    plot_roc_curves(labels, probs, out_dir / "roc.png", title=title, findings=findings)
    reliability_title = "Reliability" + title[3:] if title.startswith("ROC") else f"Reliability: {title}"
    plot_reliability(labels, probs, out_dir / "reliability.png", title=reliability_title, findings=findings)
    return out_dir
