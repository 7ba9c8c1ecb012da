"""AUROC by patient subgroup (sex, age band, view position) and the largest gap between subgroups.

A classifier can rank well on average and worse for one group of patients; Seyyed-Kalantari et al.
("CheXclusion: Fairness gaps in deep chest X-ray classifiers", PSB 2021) report such gaps for ChestX-ray14
models by sex, age and other attributes. Here each subgroup's AUROC per finding gets its own
percentile-bootstrap 95% interval (:func:`~cxreader.evaluation.metrics.bootstrap_auroc_ci`, images of the
subgroup resampled, same seed convention), with its number of images and positives; per finding and
attribute, the gap is the highest minus the lowest defined subgroup AUROC.

Attributes come from the NIH ``Data_Entry`` columns: ``sex`` from ``Patient Gender`` (M / F), ``age`` from
``Patient Age`` in the bands ``<40``, ``40-59``, ``>=60`` (years), ``view`` from ``View Position`` (PA / AP).
An image whose value is missing or unrecognised belongs to no subgroup of that attribute.

JSON shape (:meth:`SubgroupReport.to_json_dict`)::

    "subgroups": {"sex": {"M": {"Atelectasis": {"auroc": {"value": .., "low": .., "high": ..},
                                                 "n": .., "positives": .., "reason": null}, ...},
                          "F": {...}},
                  "age": {"<40": {...}, "40-59": {...}, ">=60": {...}},
                  "view": {"PA": {...}, "AP": {...}}},
    "subgroup_gaps": {"sex": {"Atelectasis": {"gap": .., "highest": "M", "lowest": "F"}, ...}, ...}

``auroc.value`` is null where the subgroup has no positives or no negatives for the finding; ``reason``
then says which.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from cxreader.errors import ConfigError
from cxreader.evaluation.metrics import bootstrap_auroc_ci, check_labels_probs, per_class_auroc
from cxreader.labels import FINDINGS

#: The attributes ``evaluate --by`` accepts, in report order.
SUBGROUP_ATTRIBUTES = ("sex", "age", "view")
#: Age bands in years: [0, 40), [40, 60), [60, ∞).
AGE_BANDS = ("<40", "40-59", ">=60")
_AGE_EDGES = (40.0, 60.0)
#: The subgroup values of each attribute, in report order.
SUBGROUP_VALUES = {"sex": ("M", "F"), "age": AGE_BANDS, "view": ("PA", "AP")}
#: The Data_Entry column (as named by :func:`~cxreader.data.nih_tables.read_data_entry`) behind each attribute.
ATTRIBUTE_COLUMNS = {"sex": "patient_gender", "age": "patient_age", "view": "view_position"}


def parse_attributes(text: str) -> tuple[str, ...]:
    """``"sex,age,view"`` → ``("sex", "age", "view")``, in the order given, without repeats.

    Raises:
        ConfigError: an attribute that is not one of :data:`SUBGROUP_ATTRIBUTES`, or none at all.
    """
    names = [name.strip().lower() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in SUBGROUP_ATTRIBUTES]
    if unknown or not names:
        raise ConfigError(
            f"--by {text!r}: expected a comma-separated list of {', '.join(SUBGROUP_ATTRIBUTES)}"
            + (f" (unknown: {', '.join(unknown)})" if unknown else "")
        )
    return tuple(dict.fromkeys(names))


def age_bands(ages: np.ndarray) -> np.ndarray:
    """The band of each age in years (:data:`AGE_BANDS`); ``""`` for a missing or negative age."""
    ages = np.asarray(ages, dtype=np.float64)
    bands = np.array(AGE_BANDS, dtype=object)[np.searchsorted(_AGE_EDGES, ages, side="right")]
    bands[~(ages >= 0)] = ""  # NaN compares false
    return bands


def subgroup_columns(table: pd.DataFrame, attributes: Sequence[str]) -> dict[str, np.ndarray]:
    """Each attribute's subgroup value per row of a Data_Entry table (``""`` = no subgroup).

    Args:
        table: Rows of :func:`~cxreader.data.nih_tables.read_data_entry`, one per evaluated image, in the
            order of the evaluated arrays.
        attributes: Names from :data:`SUBGROUP_ATTRIBUTES`.
    """
    columns = {}
    for attribute in attributes:
        if attribute not in SUBGROUP_VALUES:
            raise ConfigError(f"unknown subgroup attribute {attribute!r}")
        raw = table[ATTRIBUTE_COLUMNS[attribute]]
        if attribute == "age":
            values = age_bands(raw.to_numpy(dtype=np.float64))
        else:
            values = raw.astype(str).str.strip().str.upper().to_numpy(dtype=object)
            values[~np.isin(values, SUBGROUP_VALUES[attribute])] = ""
        columns[attribute] = values
    return columns


def subgroup_columns_for_images(
    table: pd.DataFrame, images: Sequence[str], attributes: Sequence[str]
) -> dict[str, np.ndarray]:
    """:func:`subgroup_columns` for the given image names, looked up in a whole Data_Entry table.

    Raises:
        ConfigError: some images are not in the table (how many and the first few are named).
    """
    indexed = table.set_index("image")
    positions = indexed.index.get_indexer(list(images))
    if (positions < 0).any():
        absent = [images[i] for i in np.flatnonzero(positions < 0)[:5]]
        raise ConfigError(
            f"--by: {int((positions < 0).sum())} evaluated image(s) are not in the Data_Entry table "
            f"(first: {', '.join(absent)})"
        )
    return subgroup_columns(indexed.iloc[positions], attributes)


@dataclass(frozen=True)
class SubgroupReport:
    """AUROC per finding in each subgroup of each attribute, and the gaps between subgroups.

    Attributes:
        results: attribute → subgroup value → finding → ``{"auroc": {"value", "low", "high"}, "n",
            "positives", "reason"}`` (the JSON shape of the module docstring).
        gaps: attribute → finding → ``{"gap", "highest", "lowest"}`` (null gap with a ``reason`` when fewer
            than two subgroups have a defined AUROC).
        n_images: attribute → subgroup value → images in the subgroup.
        findings: The findings reported, in order (the model's label space).
    """

    results: dict[str, dict[str, dict[str, dict[str, Any]]]]
    gaps: dict[str, dict[str, dict[str, Any]]]
    n_images: dict[str, dict[str, int]]
    findings: tuple[str, ...] = FINDINGS

    def to_json_dict(self) -> dict[str, Any]:
        """``{"subgroups": ..., "subgroup_gaps": ...}`` (NaN left in; the report makes it strict JSON)."""
        return {"subgroups": self.results, "subgroup_gaps": self.gaps}

    def to_markdown(self) -> list[str]:
        """One table per attribute: a row per finding, a column per subgroup, then the gap."""
        lines: list[str] = []
        for attribute, groups in self.results.items():
            names = list(groups)
            lines += [
                f"AUROC by {attribute} (95% CI; positives):",
                "",
                "| Finding | "
                + " | ".join(f"{name} (n={self.n_images[attribute][name]})" for name in names)
                + " | Gap |",
                "|---|" + "---:|" * (len(names) + 1),
            ]
            for finding in self.findings:
                cells = [_markdown_cell(groups[name][finding]) for name in names]
                lines.append(
                    f"| {finding.replace('_', ' ')} | "
                    + " | ".join(cells)
                    + f" | {_markdown_gap(self.gaps[attribute][finding])} |"
                )
            lines.append("")
        return lines


def _markdown_cell(entry: Mapping[str, Any]) -> str:
    auroc = entry["auroc"]
    if not math.isfinite(auroc["value"]):
        return f"n/a ({entry['reason']})"
    interval = (
        f" ({auroc['low']:.3f}–{auroc['high']:.3f})"
        if math.isfinite(auroc["low"]) and math.isfinite(auroc["high"])
        else ""
    )
    return f"{auroc['value']:.3f}{interval}; {entry['positives']}"


def _markdown_gap(gap: Mapping[str, Any]) -> str:
    if gap["gap"] is None or not math.isfinite(gap["gap"]):
        return "n/a"
    return f"{gap['gap']:.3f} ({gap['highest']} > {gap['lowest']})"


def _undefined_reason(labels_k: np.ndarray) -> str | None:
    known = labels_k[~np.isnan(labels_k)]
    if known.size == 0:
        return "no images"
    if not (known == 1).any():
        return "no positives"
    if not (known == 0).any():
        return "no negatives"
    return None


def _group_results(
    labels: np.ndarray,
    probs: np.ndarray,
    *,
    findings: Sequence[str],
    n_bootstrap: int,
    confidence: float,
    seed: int,
) -> dict[str, dict[str, Any]]:
    """Finding → AUROC (with interval), images with a known label and positives, for one subgroup."""
    n_classes = labels.shape[1]
    if n_bootstrap > 0 and labels.shape[0] > 0:
        boot = bootstrap_auroc_ci(labels, probs, n_bootstrap=n_bootstrap, confidence=confidence, seed=seed)
        values, low, high = boot.auroc, boot.ci_low, boot.ci_high
    else:
        values = per_class_auroc(labels, probs) if labels.shape[0] else np.full(n_classes, np.nan)
        low = high = np.full(n_classes, np.nan)
    results = {}
    for k, finding in enumerate(findings):
        column = labels[:, k]
        results[finding] = {
            "auroc": {"value": float(values[k]), "low": float(low[k]), "high": float(high[k])},
            "n": int(np.sum(~np.isnan(column))),
            "positives": int(np.sum(column == 1)),
            "reason": _undefined_reason(column),
        }
    return results


def _gap(groups: Mapping[str, Mapping[str, Any]], finding: str) -> dict[str, Any]:
    defined = {
        name: results[finding]["auroc"]["value"]
        for name, results in groups.items()
        if math.isfinite(results[finding]["auroc"]["value"])
    }
    if len(defined) < 2:
        return {
            "gap": None,
            "highest": None,
            "lowest": None,
            "reason": "fewer than two subgroups with an AUROC",
        }
    highest = max(defined, key=defined.__getitem__)
    lowest = min(defined, key=defined.__getitem__)
    return {"gap": defined[highest] - defined[lowest], "highest": highest, "lowest": lowest, "reason": None}


def evaluate_subgroups(
    labels: np.ndarray,
    probs: np.ndarray,
    groups: Mapping[str, np.ndarray],
    *,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    findings: Sequence[str] = FINDINGS,
) -> SubgroupReport:
    """AUROC with percentile-bootstrap intervals per finding in every subgroup, and the gaps.

    Args:
        labels: ``(N, K)`` 0/1 labels in ``findings`` order, NaN for unknown.
        probs: ``(N, K)`` scores.
        groups: attribute → ``(N,)`` subgroup value per image (``""`` = none), e.g. from
            :func:`subgroup_columns`. The subgroups reported are the attribute's known values
            (:data:`SUBGROUP_VALUES`) present in the data, in that order.
        n_bootstrap: Resamples of each subgroup's images; 0 skips the intervals.
        confidence: Two-sided coverage.
        seed: Seed of every subgroup's resampling stream.
        findings: The K column names (default: the 14 :data:`FINDINGS`).
    """
    labels, probs = check_labels_probs(labels, probs)
    findings = tuple(findings)
    if labels.shape[1] != len(findings):
        raise ValueError(f"expected {len(findings)} columns ({', '.join(findings)}), got {labels.shape[1]}")
    results: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
    gaps: dict[str, dict[str, dict[str, Any]]] = {}
    sizes: dict[str, dict[str, int]] = {}
    for attribute, values in groups.items():
        if attribute not in SUBGROUP_VALUES:
            raise ValueError(
                f"unknown subgroup attribute {attribute!r}; expected one of {', '.join(SUBGROUP_VALUES)}"
            )
        values = np.asarray(values, dtype=object)
        if values.shape != (labels.shape[0],):
            raise ValueError(
                f"subgroup values of {attribute!r}: shape {values.shape}, expected ({labels.shape[0]},)"
            )
        present = [name for name in SUBGROUP_VALUES[attribute] if np.any(values == name)]
        results[attribute] = {}
        sizes[attribute] = {}
        for name in present:
            rows = np.flatnonzero(values == name)
            sizes[attribute][name] = int(rows.size)
            results[attribute][name] = _group_results(
                labels[rows],
                probs[rows],
                findings=findings,
                n_bootstrap=n_bootstrap,
                confidence=confidence,
                seed=seed,
            )
        gaps[attribute] = {finding: _gap(results[attribute], finding) for finding in findings}
    return SubgroupReport(results=results, gaps=gaps, n_images=sizes, findings=findings)
