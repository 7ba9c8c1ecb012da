"""The evaluation report of a classifier on one labelled set: AUROC with CIs, thresholds, operating points,
calibration and, on request, AUROC by subgroup.

The metrics follow CheXNet's evaluation (Rajpurkar et al., "CheXNet: Radiologist-Level Pneumonia Detection
on Chest X-Rays with Deep Learning", 2017): per-finding AUROC and its mean over the 14 findings (or over the
findings of the label space given: a model trained on several datasets, :data:`~cxreader.labels.
HARMONISED_LABELS`; a finding is scored on the images whose label is known). Confidence
intervals are percentile-bootstrap intervals over images (:mod:`cxreader.evaluation.metrics`); operating
thresholds maximise Youden's J (:mod:`cxreader.evaluation.thresholds`). Calibration is measured by the
expected calibration error of Guo et al. 2017 and the Brier score
(:mod:`cxreader.evaluation.calibration_metrics`), subgroups by :mod:`cxreader.evaluation.subgroups`. The
AUROC and calibration intervals of one report come from the same bootstrap resamples; a subgroup's intervals
resample that subgroup's images.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cxreader import DISCLAIMER
from cxreader.evaluation.calibration_metrics import ECE_BINS, CalibrationMetrics, calibration_metrics
from cxreader.evaluation.metrics import bootstrap_auroc_ci, check_labels_probs, mean_auroc, per_class_auroc
from cxreader.evaluation.subgroups import SubgroupReport, evaluate_subgroups
from cxreader.evaluation.thresholds import choose_thresholds, operating_point_metrics
from cxreader.files import write_text_atomic
from cxreader.labels import FINDINGS

#: How the thresholds of a report were obtained (``EvaluationReport.threshold_source``).
THRESHOLDS_FROM_VALIDATION = "validation"
THRESHOLDS_FROM_SAME_DATA = "same_data"
CONFIDENCE = 0.95

_SOURCE_TEXT = {
    THRESHOLDS_FROM_VALIDATION: "chosen on the validation data",
    THRESHOLDS_FROM_SAME_DATA: "chosen on these same data, so the operating points are optimistic",
}


@dataclass
class EvaluationReport:
    """Everything measured on one labelled set, keyed by finding name in the order of the label space
    (:data:`FINDINGS` unless another was given; :attr:`findings`).

    Attributes:
        auroc: AUROC per finding (NaN where a finding lacks positives or negatives).
        ci95: 95% percentile-bootstrap interval per finding (NaN bounds when no bootstrap was run).
        mean_auroc: Mean of the defined per-finding AUROCs.
        mean_auroc_ci95: 95% interval of the mean.
        thresholds: Operating threshold per finding ("positive" means ``prob >= threshold``).
        threshold_source: ``"validation"`` or ``"same_data"``.
        operating_points: Per finding: threshold, sensitivity, specificity, precision, f1, tp, fp, tn, fn.
        positives: Number of positive labels per finding.
        labelled: Number of images whose label is known (not NaN) per finding; reported (JSON ``labelled``, a
            Markdown column ``Known``) only where some label is unknown.
        metadata: Facts about the run as JSON scalars ("synthetic", checkpoint path, split, ...), plus the
            threshold source and bootstrap settings added by :func:`build_report`.
        calibration: ECE and Brier score per finding and their means, with intervals.
        subgroups: AUROC by subgroup and the gaps, when subgroups were asked for.
    """

    auroc: dict[str, float]
    ci95: dict[str, tuple[float, float]]
    mean_auroc: float
    mean_auroc_ci95: tuple[float, float]
    thresholds: dict[str, float]
    threshold_source: str
    operating_points: dict[str, dict[str, float | int]]
    n_images: int
    positives: dict[str, int]
    metadata: dict[str, Any] = field(default_factory=dict)
    calibration: CalibrationMetrics | None = None
    subgroups: SubgroupReport | None = None
    labelled: dict[str, int] = field(default_factory=dict)

    @property
    def findings(self) -> tuple[str, ...]:
        """The findings reported, in column order."""
        return tuple(self.auroc)

    @property
    def has_unknown_labels(self) -> bool:
        """Some finding's label is unknown (NaN) for some image: per-finding counts are then reported."""
        return any(count != self.n_images for count in self.labelled.values())

    def to_json_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; NaN and infinities become ``null`` so the output is strict JSON.

        ``calibration`` holds ``ece``, ``brier`` (finding → ``{"value", "low", "high"}``), ``mean_ece`` and
        ``mean_brier`` (``{"value", "low", "high"}``); ``subgroups`` and ``subgroup_gaps``, present when
        subgroups were evaluated, have the shape documented in :mod:`cxreader.evaluation.subgroups`.
        """
        extra: dict[str, Any] = {}
        if self.calibration is not None:
            extra["calibration"] = _calibration_json(self.calibration, self.findings)
        if self.subgroups is not None:
            extra.update(self.subgroups.to_json_dict())
        if self.has_unknown_labels:
            extra["labelled"] = self.labelled
        return _json_safe(
            {
                "auroc": self.auroc,
                "mean_auroc": self.mean_auroc,
                "ci95": {name: list(bounds) for name, bounds in self.ci95.items()},
                "mean_auroc_ci95": list(self.mean_auroc_ci95),
                "thresholds": self.thresholds,
                "operating_points": self.operating_points,
                "n_images": self.n_images,
                "positives": self.positives,
                "metadata": {**self.metadata, "threshold_source": self.threshold_source},
                **extra,
                "disclaimer": DISCLAIMER,
            }
        )

    def write_json(self, path: str | Path) -> Path:
        """Write :meth:`to_json_dict` to ``path`` with :func:`~cxreader.files.write_text_atomic`."""
        return write_text_atomic(path, json.dumps(self.to_json_dict(), indent=2, allow_nan=False) + "\n")

    def to_markdown(self, *, section: bool = False) -> str:
        """A Markdown summary: a short header, one table row per finding, a mean row, the disclaimer.

        Args:
            section: A section of a larger report (one dataset of several): without the SYNTHETIC banner and
                the disclaimer, which the larger report carries once.
        """
        lines = []
        if self.metadata.get("synthetic") and not section:
            lines += ["**SYNTHETIC DATA** — these numbers describe generated images, not real patients.", ""]
        n_bootstrap = self.metadata.get("n_bootstrap", 0)
        ci_text = (
            f"95% CI: percentile bootstrap over images, {n_bootstrap} resamples"
            if n_bootstrap
            else "95% CI: not computed"
        )
        lines += [
            f"Images: {self.n_images} · thresholds by {self.metadata.get('threshold_method', 'youden')}, "
            f"{_SOURCE_TEXT.get(self.threshold_source, self.threshold_source)} · {ci_text}",
            "",
        ]
        if "gate_refused" in self.metadata:
            lines += [
                f"Input gate: {self.metadata['gate_refused']} of {self.n_images} images "
                f"({100 * self.metadata['gate_refused_share']:.1f}%) score above the model's out-of-distribution "
                'threshold and would be "not read" in use; the figures below include them.',
                "",
            ]
        lines += self._finding_table()
        if self.calibration is not None:
            lines += _calibration_markdown(self.calibration, self.findings)
        if self.subgroups is not None:
            lines += self.subgroups.to_markdown()
        if not section:
            lines += [DISCLAIMER, ""]
        return "\n".join(lines)

    def _finding_table(self) -> list[str]:
        """The per-finding table (a ``Known`` column where some labels are unknown) and its mean row."""
        known = self.has_unknown_labels
        lines = [
            "| Finding | AUROC | 95% CI | Threshold | Sens | Spec | F1 | Positives |"
            + (" Known |" if known else ""),
            "|---|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if known else ""),
        ]
        for name in self.auroc:
            point = self.operating_points[name]
            lines.append(
                f"| {name.replace('_', ' ')} | {_fmt(self.auroc[name])} | {_fmt_ci(self.ci95[name])} "
                f"| {_fmt(self.thresholds[name], 4)} | {_fmt(point['sensitivity'])} "
                f"| {_fmt(point['specificity'])} | {_fmt(point['f1'])} | {self.positives[name]} |"
                + (f" {self.labelled[name]} |" if known else "")
            )
        lines.append(
            f"| **Mean** | **{_fmt(self.mean_auroc)}** | {_fmt_ci(self.mean_auroc_ci95)} |  |  |  |  "
            f"| {sum(self.positives.values())} |" + ("  |" if known else "")
        )
        lines.append("")
        return lines


def _interval(value: float, low: float, high: float) -> dict[str, float]:
    return {"value": float(value), "low": float(low), "high": float(high)}


def _calibration_json(metrics: CalibrationMetrics, findings: Sequence[str]) -> dict[str, Any]:
    return {
        "ece_bins": metrics.n_bins,
        "ece": {
            name: _interval(metrics.ece[k], metrics.ece_low[k], metrics.ece_high[k])
            for k, name in enumerate(findings)
        },
        "brier": {
            name: _interval(metrics.brier[k], metrics.brier_low[k], metrics.brier_high[k])
            for k, name in enumerate(findings)
        },
        "mean_ece": _interval(metrics.mean_ece, *metrics.mean_ece_ci),
        "mean_brier": _interval(metrics.mean_brier, *metrics.mean_brier_ci),
    }


def _calibration_markdown(metrics: CalibrationMetrics, findings: Sequence[str]) -> list[str]:
    lines = [
        f"Calibration: expected calibration error ({metrics.n_bins} equal-width bins, Guo et al. 2017) and "
        "Brier score; lower is better.",
        "",
        "| Finding | ECE | 95% CI | Brier | 95% CI |",
        "|---|---:|---:|---:|---:|",
    ]
    for k, name in enumerate(findings):
        lines.append(
            f"| {name.replace('_', ' ')} | {_fmt(metrics.ece[k], 4)} "
            f"| {_fmt_ci((metrics.ece_low[k], metrics.ece_high[k]), 4)} | {_fmt(metrics.brier[k], 4)} "
            f"| {_fmt_ci((metrics.brier_low[k], metrics.brier_high[k]), 4)} |"
        )
    lines += [
        f"| **Mean** | **{_fmt(metrics.mean_ece, 4)}** | {_fmt_ci(metrics.mean_ece_ci, 4)} "
        f"| **{_fmt(metrics.mean_brier, 4)}** | {_fmt_ci(metrics.mean_brier_ci, 4)} |",
        "",
    ]
    return lines


def _fmt(value: float, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if value is not None and math.isfinite(value) else "n/a"


def _fmt_ci(bounds: tuple[float, float], digits: int = 3) -> str:
    low, high = bounds
    if not (math.isfinite(low) and math.isfinite(high)):
        return "n/a"
    return f"{low:.{digits}f}–{high:.{digits}f}"


def _json_safe(value: Any) -> Any:
    """Recursively turn non-finite floats (an undefined AUROC, CI or rate) into ``None``; the report holds
    Python scalars only (:func:`build_report` converts every number)."""
    if isinstance(value, Mapping):
        return {str(key): _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return value


def build_report(
    labels: np.ndarray,
    probs: np.ndarray,
    *,
    val_labels: np.ndarray | None = None,
    val_probs: np.ndarray | None = None,
    n_bootstrap: int = 1000,
    seed: int = 0,
    metadata: Mapping[str, Any] | None = None,
    groups: Mapping[str, np.ndarray] | None = None,
    operating_point: str = "youden",
    findings: Sequence[str] = FINDINGS,
) -> EvaluationReport:
    """Evaluate ``(N, K)`` probabilities against labels: AUROC, thresholds, calibration, subgroups.

    Thresholds follow the ``operating_point`` rule (:func:`choose_thresholds`: Youden's J by default, or the
    rule the checkpoint's thresholds were chosen by) on the validation data when given, else on the
    evaluated data themselves — recorded as ``threshold_source = "same_data"`` because such
    operating points are optimistic.

    Args:
        labels: ``(N, K)`` 0/1 labels in ``findings`` order, NaN for unknown (left out of that finding only:
            AUROC, thresholds and calibration of each finding are measured on its known labels).
        probs: ``(N, K)`` probabilities.
        val_labels: ``(M, K)`` validation labels to choose thresholds on.
        val_probs: ``(M, K)`` validation probabilities.
        n_bootstrap: Bootstrap resamples for the CIs; 0 skips them (CIs are NaN / null).
        metadata: Extra facts to carry ("synthetic": bool, "checkpoint", "split", ...).
        groups: attribute → ``(N,)`` subgroup value per image (``sex``, ``age``, ``view``; see
            :func:`~cxreader.evaluation.subgroups.subgroup_columns`); when given, AUROC is also reported per
            subgroup.
        operating_point: The threshold rule (:class:`~cxreader.evaluation.thresholds.OperatingPointRule`).
        findings: The K column names, in order (default: the 14 :data:`FINDINGS`).
    """
    findings = tuple(findings)
    labels, probs = check_labels_probs(labels, probs)
    if labels.shape[1] != len(findings):
        raise ValueError(f"expected {len(findings)} columns ({', '.join(findings)}), got {labels.shape[1]}")
    if n_bootstrap < 0:
        raise ValueError(f"n_bootstrap must be >= 0, got {n_bootstrap}")
    if (val_labels is None) != (val_probs is None):
        raise ValueError("val_labels and val_probs must be given together")

    if val_labels is not None:
        val_labels, val_probs = check_labels_probs(val_labels, val_probs)
        if val_labels.shape[1] != len(findings):
            raise ValueError(f"expected {len(findings)} validation columns, got {val_labels.shape[1]}")
        chosen = choose_thresholds(val_labels, val_probs, operating_point)
        source = THRESHOLDS_FROM_VALIDATION
    else:
        chosen = choose_thresholds(labels, probs, operating_point)
        source = THRESHOLDS_FROM_SAME_DATA

    if n_bootstrap > 0:
        boot = bootstrap_auroc_ci(labels, probs, n_bootstrap=n_bootstrap, confidence=CONFIDENCE, seed=seed)
        aurocs, low, high = boot.auroc, boot.ci_low, boot.ci_high
        mean_value, mean_ci = boot.mean_auroc, boot.mean_ci
    else:
        aurocs = per_class_auroc(labels, probs)
        low = high = np.full(len(findings), np.nan)
        mean_value, mean_ci = mean_auroc(aurocs), (float("nan"), float("nan"))

    calibration = calibration_metrics(
        labels, probs, n_bins=ECE_BINS, n_bootstrap=n_bootstrap, confidence=CONFIDENCE, seed=seed
    )
    subgroups = (
        evaluate_subgroups(
            labels,
            probs,
            groups,
            n_bootstrap=n_bootstrap,
            confidence=CONFIDENCE,
            seed=seed,
            findings=findings,
        )
        if groups
        else None
    )
    run_facts: dict[str, Any] = {
        "n_bootstrap": n_bootstrap,
        "bootstrap_seed": seed,
        "confidence": CONFIDENCE,
        "threshold_method": operating_point,
        "ece_bins": ECE_BINS,
    }
    if subgroups is not None:
        run_facts["subgroups_by"] = ",".join(groups)
    return EvaluationReport(
        auroc={name: float(aurocs[k]) for k, name in enumerate(findings)},
        ci95={name: (float(low[k]), float(high[k])) for k, name in enumerate(findings)},
        mean_auroc=float(mean_value),
        mean_auroc_ci95=(float(mean_ci[0]), float(mean_ci[1])),
        thresholds={name: float(chosen[k]) for k, name in enumerate(findings)},
        threshold_source=source,
        operating_points=operating_point_metrics(labels, probs, chosen, findings=findings),
        n_images=int(labels.shape[0]),
        positives={name: int(np.sum(labels[:, k] == 1)) for k, name in enumerate(findings)},
        metadata={**(dict(metadata) if metadata else {}), **run_facts},
        calibration=calibration,
        subgroups=subgroups,
        labelled={name: int(np.sum(~np.isnan(labels[:, k]))) for k, name in enumerate(findings)},
    )
