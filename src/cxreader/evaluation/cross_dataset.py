"""A checkpoint scored dataset by dataset, and the cross-dataset table of several checkpoints.

Chest X-ray classifiers lose accuracy on hospitals they were not trained on (Zech et al., "Variable
generalization performance of a deep learning model to detect pneumonia in chest radiographs: a
cross-sectional study", PLOS Medicine 2018; Cohen et al., "On the limits of cross-domain generalization in
automated X-ray prediction", MIDL 2020). So a model trained on several datasets is reported per dataset, and
models are compared in a matrix "trained on × scored on".

**Which labels.** A dataset is scored on the findings it defines (:func:`~cxreader.data.label_maps.
dataset_label_space`) that the checkpoint predicts; each finding over the images whose label is known. In the
cross-dataset table every cell of a column averages the same findings: those the scored dataset defines and
*every* checkpoint of the table predicts (the shared labels), so the rows of a column compare like with like.

**Which images.** Each checkpoint is scored on the ``test`` split (or another) of each dataset as its own
training run would have split it (:func:`~cxreader.evaluation.datasets.dataset_splits`: its seed), so a
dataset it trained on is scored on images it never saw; thresholds are chosen on that dataset's validation
split.
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
from cxreader.data.label_maps import dataset_label_space
from cxreader.errors import ConfigError
from cxreader.evaluation.checkpoint_eval import SplitPredictions, predict_images
from cxreader.evaluation.datasets import dataset_splits, run_datasets
from cxreader.evaluation.metrics import bootstrap_auroc_ci, mean_auroc, per_class_auroc
from cxreader.evaluation.report import CONFIDENCE, EvaluationReport, build_report
from cxreader.files import write_text_atomic
from cxreader.models.checkpoint import LoadedCheckpoint, load_checkpoint

SYNTHETIC_BANNER = "**SYNTHETIC DATA** — these numbers describe generated images, not real patients."


@dataclass
class ScoringOptions:
    """How images are scored: as ``cxreader evaluate``'s options say."""

    split: str = "test"
    tencrop: bool = False
    batch_size: int = 32
    workers: int = 2
    cache: str = ""
    n_bootstrap: int = 1000
    seed: int = 0
    calibrated: bool = True


@dataclass
class DatasetScores:
    """A checkpoint's predictions on one dataset's scored split and validation split, on the findings that
    dataset defines and the checkpoint predicts (``findings``, columns of ``labels``/``probs``)."""

    dataset: str
    findings: tuple[str, ...]
    evaluated: SplitPredictions
    val: SplitPredictions | None


def dataset_findings(dataset: str, predicted: Sequence[str]) -> tuple[str, ...]:
    """The findings ``dataset`` defines that a model predicting ``predicted`` outputs, in the model's order."""
    defined = set(dataset_label_space((dataset,)))
    return tuple(name for name in predicted if name in defined)


def _columns(predictions: SplitPredictions, columns: list[int]) -> SplitPredictions:
    return SplitPredictions(
        images=predictions.images,
        labels=predictions.labels[:, columns],
        probs=predictions.probs[:, columns],
        errors=predictions.errors,
        features=predictions.features,
    )


def score_dataset(
    checkpoint: LoadedCheckpoint,
    dataset: str,
    root: str,
    options: ScoringOptions,
    *,
    findings: Sequence[str] | None = None,
    with_val: bool = True,
) -> DatasetScores:
    """Predict one dataset's scored split (and validation split) with the checkpoint (module docstring).

    Args:
        findings: The columns to keep (default: those the dataset defines and the checkpoint predicts).

    Raises:
        ConfigError: the dataset shares no finding with the checkpoint, or has no such split.
    """
    labels = tuple(checkpoint.contract.labels)
    findings = tuple(findings) if findings is not None else dataset_findings(dataset, labels)
    if not findings:
        raise ConfigError(f"{checkpoint.path} predicts none of the findings {dataset} defines")
    config, splits = dataset_splits(
        checkpoint.contract.config, dataset, root, label_space=labels, cache=options.cache
    )
    if options.split not in splits:
        raise ConfigError(f"{dataset}: no {options.split!r} split (has: {', '.join(splits)})")
    kwargs = dict(
        tencrop=options.tencrop,
        batch_size=options.batch_size,
        workers=options.workers,
        calibrated=options.calibrated,
    )
    evaluated = predict_images(checkpoint, config, splits[options.split], **kwargs)
    val = None
    if with_val and options.split != "val" and "val" in splits:
        val = predict_images(checkpoint, config, splits["val"], **kwargs)
    columns = [labels.index(name) for name in findings]
    return DatasetScores(
        dataset=dataset,
        findings=findings,
        evaluated=_columns(evaluated, columns),
        val=_columns(val, columns) if val is not None else None,
    )


@dataclass
class LabelledScores:
    """Labels and probabilities of the scored images, and of the validation images thresholds are chosen on
    (``None``: chosen on the scored images), in the columns ``findings``."""

    labels: np.ndarray
    probs: np.ndarray
    val_labels: np.ndarray | None
    val_probs: np.ndarray | None
    findings: tuple[str, ...]

    @classmethod
    def of(cls, scores: DatasetScores) -> LabelledScores:
        val = scores.val
        return cls(
            scores.evaluated.labels,
            scores.evaluated.probs,
            val.labels if val is not None else None,
            val.probs if val is not None else None,
            scores.findings,
        )

    def report(self, options: ScoringOptions, metadata: Mapping[str, Any], rule: str) -> EvaluationReport:
        """The :class:`EvaluationReport` of these scores (thresholds by ``rule``)."""
        return build_report(
            self.labels,
            self.probs,
            val_labels=self.val_labels,
            val_probs=self.val_probs,
            n_bootstrap=options.n_bootstrap,
            seed=options.seed,
            metadata=metadata,
            operating_point=rule,
            findings=self.findings,
        )


def _stack(
    scores: Sequence[DatasetScores], findings: tuple[str, ...], *, val: bool
) -> tuple[np.ndarray, np.ndarray] | tuple[None, None]:
    """The scored (or validation) images of every dataset stacked, in the columns ``findings``: NaN labels
    where a dataset does not define a finding; ``(None, None)`` when a dataset has no validation images."""
    labels, probs = [], []
    for score in scores:
        predictions = score.val if val else score.evaluated
        if predictions is None:
            return None, None
        block = np.full((len(predictions.images), len(findings)), np.nan)
        block_probs = np.full(block.shape, 0.5)  # never read: their labels are unknown
        for k, name in enumerate(findings):
            if name in score.findings:
                block[:, k] = predictions.labels[:, score.findings.index(name)]
                block_probs[:, k] = predictions.probs[:, score.findings.index(name)]
        labels.append(block)
        probs.append(block_probs)
    return np.concatenate(labels), np.concatenate(probs)


def pooled_scores(scores: Sequence[DatasetScores], predicted: Sequence[str]) -> LabelledScores:
    """Every dataset's images together, on the predicted findings at least one of them defines."""
    findings = tuple(name for name in predicted if any(name in score.findings for score in scores))
    return LabelledScores(
        *_stack(scores, findings, val=False), *_stack(scores, findings, val=True), findings=findings
    )


@dataclass
class MultiDatasetReport:
    """A checkpoint scored on several datasets: one report per dataset and one over all their images.

    Attributes:
        checkpoint: Its path. trained_on: The datasets it trained on (its contract's config).
        split: The split scored. per_dataset: Dataset → report over the findings it defines.
        overall: Every dataset's images pooled, each finding over the images whose label is known.
        synthetic: The checkpoint is marked synthetic.
    """

    checkpoint: str
    trained_on: tuple[str, ...]
    split: str
    per_dataset: dict[str, EvaluationReport]
    overall: EvaluationReport
    synthetic: bool = False

    def summary_rows(self) -> list[str]:
        rows = [
            "| Scored on | Images | Findings | Mean AUROC | 95% CI |",
            "|---|---:|---:|---:|---:|",
        ]
        for name, report in [*self.per_dataset.items(), ("**all**", self.overall)]:
            defined = sum(math.isfinite(value) for value in report.auroc.values())
            rows.append(
                f"| {name} | {report.n_images} | {defined} of {len(report.auroc)} "
                f"| {_fmt(report.mean_auroc)} | {_fmt_ci(report.mean_auroc_ci95)} |"
            )
        return rows

    def to_markdown(self) -> str:
        """A summary table (mean AUROC per dataset and overall), then each dataset's findings."""
        lines = [SYNTHETIC_BANNER, ""] if self.synthetic else []
        lines += [
            f"Checkpoint {Path(self.checkpoint).name}, trained on {', '.join(self.trained_on)}; split "
            f"{self.split}. Each dataset is scored on the findings it defines that the model predicts "
            "(Findings: how many of those have positive and negative labels, so an AUROC); thresholds are "
            "chosen on its validation split.",
            "",
            *self.summary_rows(),
            "",
        ]
        for name, report in self.per_dataset.items():
            lines += [f"### {name}", "", report.to_markdown(section=True)]
        lines += ["### all datasets", "", self.overall.to_markdown(section=True), DISCLAIMER, ""]
        return "\n".join(lines)

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "checkpoint": self.checkpoint,
            "trained_on": list(self.trained_on),
            "split": self.split,
            "synthetic": self.synthetic,
            "datasets": {name: report.to_json_dict() for name, report in self.per_dataset.items()},
            "overall": self.overall.to_json_dict(),
            "disclaimer": DISCLAIMER,
        }

    def write_json(self, path: str | Path) -> Path:
        return write_text_atomic(path, json.dumps(self.to_json_dict(), indent=2, allow_nan=False) + "\n")


def _load(checkpoint: str | Path | LoadedCheckpoint) -> LoadedCheckpoint:
    return checkpoint if isinstance(checkpoint, LoadedCheckpoint) else load_checkpoint(checkpoint)


def _metadata(checkpoint: LoadedCheckpoint, options: ScoringOptions, **extra: Any) -> dict[str, Any]:
    return {
        "checkpoint": str(checkpoint.path),
        "checkpoint_sha256": checkpoint.sha256,
        "split": options.split,
        "tencrop": options.tencrop,
        "calibrated": options.calibrated and checkpoint.contract.calibration is not None,
        "synthetic": checkpoint.contract.synthetic,
        **extra,
    }


def evaluate_on_datasets(
    checkpoint: str | Path | LoadedCheckpoint, data: Mapping[str, str], options: ScoringOptions
) -> tuple[MultiDatasetReport, dict[str, DatasetScores]]:
    """Score a checkpoint on each dataset of ``data`` (name → root) and on all of them pooled.

    Returns:
        The report and each dataset's scores (for the ROC and reliability plots).
    """
    loaded = _load(checkpoint)
    rule = (loaded.contract.operating_point or {}).get("rule", "youden")
    scores = {name: score_dataset(loaded, name, root, options) for name, root in data.items()}
    per_dataset = {
        name: LabelledScores.of(score).report(options, _metadata(loaded, options, dataset=name), rule)
        for name, score in scores.items()
    }
    overall = pooled_scores(list(scores.values()), loaded.contract.labels).report(
        options, _metadata(loaded, options, dataset="all"), rule
    )
    report = MultiDatasetReport(
        checkpoint=str(loaded.path),
        trained_on=run_datasets(loaded.contract.config),
        split=options.split,
        per_dataset=per_dataset,
        overall=overall,
        synthetic=loaded.contract.synthetic,
    )
    return report, scores


@dataclass
class CrossCell:
    """One checkpoint on one dataset: mean AUROC over the column's shared findings, with its interval."""

    mean_auroc: float
    ci95: tuple[float, float]
    n_images: int
    auroc: dict[str, float] = field(default_factory=dict)


@dataclass
class CrossDatasetTable:
    """Mean AUROC of each checkpoint (row: the datasets it trained on) on each dataset (column).

    Attributes:
        checkpoints: Row → checkpoint path. trained_on: Row → its training datasets.
        datasets: The columns. shared: Column → the findings averaged there (module docstring).
        cells: Row → column → :class:`CrossCell` (absent where no finding is shared).
    """

    checkpoints: list[str]
    trained_on: list[tuple[str, ...]]
    datasets: tuple[str, ...]
    shared: dict[str, tuple[str, ...]]
    cells: list[dict[str, CrossCell]]
    split: str = "test"
    synthetic: bool = False

    def row_names(self) -> list[str]:
        """``+``-joined training datasets; the checkpoint's file name added where two rows would read alike."""
        names = ["+".join(datasets) for datasets in self.trained_on]
        return [
            f"{name} ({Path(path).parent.name}/{Path(path).name})" if names.count(name) > 1 else name
            for name, path in zip(names, self.checkpoints, strict=True)
        ]

    def to_markdown(self) -> str:
        """The matrix, the findings of each column and the disclaimer."""
        lines = [SYNTHETIC_BANNER, ""] if self.synthetic else []
        lines += [
            f"Mean AUROC on the {self.split} split of each dataset (95% bootstrap CI), over the findings the "
            "dataset defines that every model predicts:",
            "",
            "| Trained on \\ scored on | " + " | ".join(self.datasets) + " |",
            "|---|" + "---:|" * len(self.datasets),
        ]
        for name, cells in zip(self.row_names(), self.cells, strict=True):
            lines.append(f"| {name} | " + " | ".join(_cell_text(cells.get(d)) for d in self.datasets) + " |")
        lines.append("")
        for dataset in self.datasets:
            shared = self.shared[dataset]
            lines.append(f"- {dataset}: {len(shared)} findings ({', '.join(shared) or 'none'})")
        lines += ["", DISCLAIMER, ""]
        return "\n".join(lines)

    def to_json_dict(self) -> dict[str, Any]:
        rows = []
        for name, path, trained, cells in zip(
            self.row_names(), self.checkpoints, self.trained_on, self.cells, strict=True
        ):
            rows.append(
                {
                    "row": name,
                    "checkpoint": path,
                    "trained_on": list(trained),
                    "scored_on": {dataset: _cell_json(cell) for dataset, cell in cells.items()},
                }
            )
        return {
            "split": self.split,
            "synthetic": self.synthetic,
            "datasets": list(self.datasets),
            "shared_findings": {name: list(found) for name, found in self.shared.items()},
            "rows": rows,
            "disclaimer": DISCLAIMER,
        }

    def write_json(self, path: str | Path) -> Path:
        return write_text_atomic(path, json.dumps(self.to_json_dict(), indent=2, allow_nan=False) + "\n")


def shared_findings(checkpoints: Sequence[LoadedCheckpoint], dataset: str) -> tuple[str, ...]:
    """The findings ``dataset`` defines that every checkpoint predicts, in the first checkpoint's order."""
    first = dataset_findings(dataset, checkpoints[0].contract.labels)
    return tuple(name for name in first if all(name in c.contract.labels for c in checkpoints[1:]))


def cross_cell(scores: DatasetScores, options: ScoringOptions) -> CrossCell:
    """Mean AUROC (with a percentile-bootstrap interval) of one checkpoint's scores on one dataset."""
    labels, probs = scores.evaluated.labels, scores.evaluated.probs
    if options.n_bootstrap > 0 and len(labels):
        boot = bootstrap_auroc_ci(
            labels, probs, n_bootstrap=options.n_bootstrap, confidence=CONFIDENCE, seed=options.seed
        )
        aurocs, mean, interval = boot.auroc, boot.mean_auroc, boot.mean_ci
    else:
        aurocs = per_class_auroc(labels, probs)
        mean, interval = mean_auroc(aurocs), (math.nan, math.nan)
    return CrossCell(
        mean_auroc=float(mean),
        ci95=(float(interval[0]), float(interval[1])),
        n_images=int(len(labels)),
        auroc={name: float(value) for name, value in zip(scores.findings, aurocs, strict=True)},
    )


def cross_dataset_table(
    checkpoints: Sequence[str | Path | LoadedCheckpoint], data: Mapping[str, str], options: ScoringOptions
) -> CrossDatasetTable:
    """Score every checkpoint on every dataset of ``data`` (name → root) over the shared findings."""
    if not checkpoints or not data:
        raise ConfigError("the cross-dataset table needs at least one --checkpoint and one --data NAME=DIR")
    loaded = [_load(checkpoint) for checkpoint in checkpoints]
    shared = {name: shared_findings(loaded, name) for name in data}
    cells: list[dict[str, CrossCell]] = []
    for checkpoint in loaded:
        row = {}
        for name, root in data.items():
            if shared[name]:
                scores = score_dataset(checkpoint, name, root, options, findings=shared[name], with_val=False)
                row[name] = cross_cell(scores, options)
        cells.append(row)
    return CrossDatasetTable(
        checkpoints=[str(c.path) for c in loaded],
        trained_on=[run_datasets(c.contract.config) for c in loaded],
        datasets=tuple(data),
        shared=shared,
        cells=cells,
        split=options.split,
        synthetic=any(c.contract.synthetic for c in loaded),
    )


def _fmt(value: float) -> str:
    return f"{value:.3f}" if math.isfinite(value) else "n/a"


def _fmt_ci(bounds: tuple[float, float]) -> str:
    low, high = bounds
    return f"{low:.3f}–{high:.3f}" if math.isfinite(low) and math.isfinite(high) else "n/a"


def _cell_text(cell: CrossCell | None) -> str:
    if cell is None:
        return "—"
    interval = _fmt_ci(cell.ci95)
    return _fmt(cell.mean_auroc) + (f" ({interval})" if interval != "n/a" else "")


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _cell_json(cell: CrossCell) -> dict[str, Any]:
    return {
        "mean_auroc": _finite(cell.mean_auroc),
        "ci95": [_finite(bound) for bound in cell.ci95],
        "n_images": cell.n_images,
        "auroc": {name: _finite(value) for name, value in cell.auroc.items()},
    }
