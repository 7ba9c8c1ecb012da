"""The per-dataset and cross-dataset reports on hand-made scores: which findings each dataset is scored on,
how the datasets pool, and how the matrix reads."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from cxreader import DISCLAIMER
from cxreader.evaluation.checkpoint_eval import SplitPredictions
from cxreader.evaluation.cross_dataset import (
    CrossCell,
    CrossDatasetTable,
    DatasetScores,
    LabelledScores,
    ScoringOptions,
    cross_cell,
    dataset_findings,
    pooled_scores,
    shared_findings,
)
from cxreader.evaluation.metrics import per_class_auroc
from cxreader.labels import FINDINGS, HARMONISED_LABELS


def _predictions(n: int, k: int, seed: int) -> SplitPredictions:
    rng = np.random.default_rng(seed)
    labels = (rng.random((n, k)) < 0.3).astype(float)
    probs = np.clip(rng.random((n, k)) * 0.6 + 0.4 * labels, 0, 1)
    return SplitPredictions(images=[f"{seed}-{i}" for i in range(n)], labels=labels, probs=probs, errors=[])


def _scores(dataset: str, findings: tuple[str, ...], n: int, seed: int) -> DatasetScores:
    return DatasetScores(
        dataset=dataset,
        findings=findings,
        evaluated=_predictions(n, len(findings), seed),
        val=_predictions(n, len(findings), seed + 100),
    )


def test_a_dataset_is_scored_on_the_findings_it_defines_that_the_model_predicts():
    assert dataset_findings("nih", HARMONISED_LABELS) == FINDINGS
    chexpert = dataset_findings("chexpert", HARMONISED_LABELS)
    assert "Lung_Opacity" in chexpert and "Mass" not in chexpert and "Hernia" not in chexpert
    assert dataset_findings("chexpert", FINDINGS) == tuple(name for name in FINDINGS if name in chexpert)
    assert dataset_findings("padchest", ("Lung_Opacity", "Fracture")) == ("Fracture",)


def test_shared_findings_are_those_every_checkpoint_predicts():
    merged = SimpleNamespace(contract=SimpleNamespace(labels=HARMONISED_LABELS))
    nih = SimpleNamespace(contract=SimpleNamespace(labels=FINDINGS))
    assert shared_findings([merged], "padchest") == dataset_findings("padchest", HARMONISED_LABELS)
    both = shared_findings([merged, nih], "padchest")
    assert both == dataset_findings("padchest", FINDINGS) and "Fracture" not in both


def test_pooling_leaves_a_finding_unknown_for_the_datasets_that_do_not_define_it():
    nih = _scores("nih", FINDINGS, 40, 1)
    chexpert_findings = dataset_findings("chexpert", HARMONISED_LABELS)
    chexpert = _scores("chexpert", chexpert_findings, 30, 2)
    pooled = pooled_scores([nih, chexpert], HARMONISED_LABELS)
    assert pooled.findings == HARMONISED_LABELS[: len(FINDINGS)] + tuple(
        name for name in HARMONISED_LABELS[len(FINDINGS) :] if name in chexpert_findings
    )
    assert (
        pooled.labels.shape == (70, len(pooled.findings)) and pooled.val_labels.shape == pooled.labels.shape
    )
    mass, opacity = pooled.findings.index("Mass"), pooled.findings.index("Lung_Opacity")
    assert np.isnan(pooled.labels[40:, mass]).all() and not np.isnan(pooled.labels[:40, mass]).any()
    assert np.isnan(pooled.labels[:40, opacity]).all()
    column = chexpert_findings.index("Lung_Opacity")
    np.testing.assert_array_equal(pooled.probs[40:, opacity], chexpert.evaluated.probs[:, column])
    report = pooled.report(ScoringOptions(n_bootstrap=0), {"synthetic": True}, "youden")
    assert report.labelled["Mass"] == 40 and report.labelled["Cardiomegaly"] == 70
    expected = per_class_auroc(nih.evaluated.labels, nih.evaluated.probs)[FINDINGS.index("Mass")]
    assert report.auroc["Mass"] == pytest.approx(expected)


def test_a_dataset_without_validation_images_pools_thresholds_on_the_scored_ones():
    nih = _scores("nih", FINDINGS, 20, 3)
    nih.val = None
    pooled = pooled_scores([nih], FINDINGS)
    assert pooled.val_labels is None and pooled.val_probs is None
    report = LabelledScores.of(nih).report(ScoringOptions(n_bootstrap=0), {}, "youden")
    assert report.threshold_source == "same_data"


def test_a_cross_cell_is_the_mean_auroc_over_its_findings_with_an_interval():
    scores = _scores("nih", FINDINGS[:4], 80, 4)
    cell = cross_cell(scores, ScoringOptions(n_bootstrap=30))
    expected = per_class_auroc(scores.evaluated.labels, scores.evaluated.probs)
    assert cell.mean_auroc == pytest.approx(float(np.nanmean(expected)))
    assert cell.ci95[0] <= cell.mean_auroc <= cell.ci95[1] and cell.n_images == 80
    assert list(cell.auroc) == list(FINDINGS[:4])
    no_ci = cross_cell(scores, ScoringOptions(n_bootstrap=0))
    assert math.isnan(no_ci.ci95[0]) and no_ci.mean_auroc == pytest.approx(cell.mean_auroc)


def test_the_matrix_names_rows_by_training_data_and_marks_synthetic():
    cell = CrossCell(mean_auroc=0.81234, ci95=(0.7, 0.9), n_images=50, auroc={"Effusion": 0.81234})
    table = CrossDatasetTable(
        checkpoints=["a/best.pt", "b/best.pt", "c/best.pt"],
        trained_on=[("nih",), ("nih",), ("nih", "chexpert")],
        datasets=("nih", "chexpert"),
        shared={"nih": ("Effusion",), "chexpert": ()},
        cells=[{"nih": cell}, {"nih": cell}, {"nih": cell}],
        synthetic=True,
    )
    assert table.row_names() == ["nih (a/best.pt)", "nih (b/best.pt)", "nih+chexpert"]
    text = table.to_markdown()
    assert text.startswith("**SYNTHETIC DATA**") and DISCLAIMER in text
    assert "| Trained on \\ scored on | nih | chexpert |" in text
    assert "| nih+chexpert | 0.812 (0.700–0.900) | — |" in text
    assert "- chexpert: 0 findings (none)" in text
    payload = table.to_json_dict()
    assert payload["rows"][2]["scored_on"]["nih"]["mean_auroc"] == pytest.approx(0.81234)
    assert payload["shared_findings"]["nih"] == ["Effusion"] and payload["synthetic"] is True
    assert Path(payload["rows"][0]["checkpoint"]).name == "best.pt"
