from __future__ import annotations

import json

import numpy as np
import pytest

from cxreader import DISCLAIMER
from cxreader.evaluation.calibration_metrics import calibration_metrics
from cxreader.evaluation.metrics import per_class_auroc
from cxreader.evaluation.report import build_report
from cxreader.evaluation.thresholds import choose_thresholds
from cxreader.labels import FINDINGS, NUM_FINDINGS


def _data(n: int, seed: int):
    rng = np.random.default_rng(seed)
    labels = (rng.random((n, NUM_FINDINGS)) < 0.25).astype(float)
    probs = np.clip(rng.random((n, NUM_FINDINGS)) * 0.7 + 0.3 * labels, 0, 1)
    return labels, probs


def test_report_values_and_strict_json_with_an_undefined_class(tmp_path):
    labels, probs = _data(200, 0)
    labels[:, FINDINGS.index("Hernia")] = 0.0
    report = build_report(
        labels, probs, n_bootstrap=30, seed=2, metadata={"synthetic": True, "split": "test"}
    )

    expected = per_class_auroc(labels, probs)
    for k, name in enumerate(FINDINGS[:-1]):
        assert report.auroc[name] == expected[k]
        low, high = report.ci95[name]
        assert low <= report.auroc[name] <= high
    assert report.mean_auroc == pytest.approx(np.nanmean(expected), abs=1e-12)
    assert report.n_images == 200
    assert report.positives["Hernia"] == 0
    assert report.positives["Atelectasis"] == int(labels[:, 0].sum())
    assert report.threshold_source == "same_data"

    data = json.loads(json.dumps(report.to_json_dict(), allow_nan=False))
    assert set(data) >= {
        "auroc",
        "mean_auroc",
        "ci95",
        "mean_auroc_ci95",
        "thresholds",
        "operating_points",
        "n_images",
        "positives",
        "metadata",
    }
    assert list(data["auroc"]) == list(FINDINGS)
    assert data["auroc"]["Hernia"] is None
    assert data["ci95"]["Hernia"] == [None, None]
    assert data["operating_points"]["Hernia"]["sensitivity"] is None
    assert data["metadata"]["synthetic"] is True
    assert data["metadata"]["split"] == "test"
    assert data["metadata"]["threshold_source"] == "same_data"
    assert data["metadata"]["n_bootstrap"] == 30
    assert data["disclaimer"] == DISCLAIMER

    path = report.write_json(tmp_path / "out" / "report.json")
    assert json.loads(path.read_text()) == data
    assert [p.name for p in path.parent.iterdir()] == ["report.json"]


def test_thresholds_from_validation():
    labels, probs = _data(150, 1)
    val_labels, val_probs = _data(120, 2)
    from_val = build_report(labels, probs, val_labels=val_labels, val_probs=val_probs, n_bootstrap=0)
    assert from_val.threshold_source == "validation"
    np.testing.assert_array_equal(
        list(from_val.thresholds.values()), choose_thresholds(val_labels, val_probs)
    )
    assert from_val.operating_points["Edema"]["threshold"] == from_val.thresholds["Edema"]

    with pytest.raises(ValueError, match="together"):
        build_report(labels, probs, val_labels=val_labels)


def test_no_bootstrap_gives_null_intervals():
    labels, probs = _data(80, 3)
    data = build_report(labels, probs, n_bootstrap=0).to_json_dict()
    assert data["mean_auroc_ci95"] == [None, None]
    assert data["ci95"]["Mass"] == [None, None]
    assert data["mean_auroc"] is not None


def test_markdown_table():
    labels, probs = _data(100, 4)
    labels[:, FINDINGS.index("Hernia")] = 0.0
    report = build_report(labels, probs, n_bootstrap=20, metadata={"synthetic": True})
    text = report.to_markdown()
    lines = text.splitlines()
    header = "| Finding | AUROC | 95% CI | Threshold | Sens | Spec | F1 | Positives |"
    start = lines.index(header)
    rows = lines[start + 2 : start + 2 + NUM_FINDINGS + 1]
    assert [row.split("|")[1].strip() for row in rows[:-1]] == [name.replace("_", " ") for name in FINDINGS]
    assert rows[-1].startswith("| **Mean** |")
    assert f"{report.mean_auroc:.3f}" in rows[-1]
    hernia = rows[FINDINGS.index("Hernia")]
    assert "n/a" in hernia and hernia.rstrip().endswith("| 0 |")
    assert "SYNTHETIC" in text and DISCLAIMER in text
    assert "optimistic" in text  # thresholds chosen on the evaluated data are flagged


def test_rejects_wrong_width():
    with pytest.raises(ValueError, match="14 columns"):
        build_report(np.zeros((4, 3)), np.zeros((4, 3)))


def test_calibration_in_json_and_markdown():
    labels, probs = _data(250, 5)
    labels[:7, 2] = np.nan
    report = build_report(labels, probs, n_bootstrap=25, seed=4)
    expected = calibration_metrics(labels, probs, n_bootstrap=25, seed=4)
    data = json.loads(json.dumps(report.to_json_dict(), allow_nan=False))["calibration"]
    assert data["ece_bins"] == 15
    assert list(data["ece"]) == list(FINDINGS)
    effusion = FINDINGS.index("Effusion")
    assert data["ece"]["Effusion"] == {
        "value": expected.ece[effusion],
        "low": expected.ece_low[effusion],
        "high": expected.ece_high[effusion],
    }
    assert data["brier"]["Effusion"]["value"] == expected.brier[effusion]
    assert data["mean_ece"] == {
        "value": expected.mean_ece,
        "low": expected.mean_ece_ci[0],
        "high": expected.mean_ece_ci[1],
    }
    assert data["mean_brier"]["value"] == expected.mean_brier

    lines = report.to_markdown().splitlines()
    start = lines.index("| Finding | ECE | 95% CI | Brier | 95% CI |")
    mean_row = lines[start + 2 + NUM_FINDINGS]
    assert mean_row.startswith("| **Mean** |") and f"{expected.mean_ece:.4f}" in mean_row
    assert lines[-1] == DISCLAIMER


def test_a_label_space_of_its_own_with_unknown_labels():
    """A dataset scored on the findings it defines: columns named by ``findings``, each finding over its known
    labels, a Known column and a ``labelled`` count where some label is unknown."""
    findings = ("Cardiomegaly", "Effusion", "Lung_Opacity", "Fracture")
    rng = np.random.default_rng(3)
    labels = (rng.random((120, 4)) < 0.3).astype(float)
    probs = np.clip(rng.random((120, 4)) * 0.6 + 0.4 * labels, 0, 1)
    labels[:30, 2] = np.nan  # Lung_Opacity unknown for a quarter of the images
    labels[:, 3] = 0.0  # no fracture anywhere: AUROC undefined, default threshold
    report = build_report(labels, probs, n_bootstrap=20, findings=findings)
    assert report.findings == findings and list(report.thresholds) == list(findings)
    assert report.labelled == {"Cardiomegaly": 120, "Effusion": 120, "Lung_Opacity": 90, "Fracture": 120}
    known = ~np.isnan(labels[:, 2])
    assert report.auroc["Lung_Opacity"] == pytest.approx(
        per_class_auroc(labels[known][:, 2:3], probs[known][:, 2:3])[0]
    )
    assert np.isnan(report.auroc["Fracture"]) and report.thresholds["Fracture"] == 0.5
    assert report.mean_auroc == pytest.approx(np.mean([report.auroc[name] for name in findings[:3]]))
    text = report.to_markdown()
    assert "| Known |" in text and "Hernia" not in text
    opacity = next(line for line in text.splitlines() if line.startswith("| Lung Opacity |"))
    assert opacity.endswith("| 90 |")
    payload = report.to_json_dict()
    assert payload["labelled"]["Lung_Opacity"] == 90 and set(payload["calibration"]["ece"]) == set(findings)


def test_the_fourteen_findings_without_unknown_labels_report_as_before():
    labels, probs = _data(100, 4)
    report = build_report(labels, probs, n_bootstrap=0)
    assert report.findings == FINDINGS and not report.has_unknown_labels
    assert "labelled" not in report.to_json_dict() and "Known" not in report.to_markdown()
