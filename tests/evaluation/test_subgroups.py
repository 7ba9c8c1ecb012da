from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from cxreader.errors import ConfigError
from cxreader.evaluation.report import build_report
from cxreader.evaluation.subgroups import (
    age_bands,
    evaluate_subgroups,
    parse_attributes,
    subgroup_columns,
    subgroup_columns_for_images,
)
from cxreader.labels import FINDINGS, NUM_FINDINGS

HERNIA = FINDINGS.index("Hernia")


def _table(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Labels, scores and sex/view groups where no woman has Hernia and no AP image is free of Effusion."""
    rng = np.random.default_rng(seed)
    labels = (rng.random((n, NUM_FINDINGS)) < 0.3).astype(float)
    probs = np.clip(rng.random((n, NUM_FINDINGS)) * 0.7 + 0.3 * labels, 0, 1)
    sex = np.where(np.arange(n) % 2 == 0, "M", "F").astype(object)
    view = np.where(np.arange(n) % 3 == 0, "AP", "PA").astype(object)
    labels[sex == "F", HERNIA] = 0.0
    labels[view == "AP", FINDINGS.index("Effusion")] = 1.0
    return labels, probs, {"sex": sex, "view": view}


def test_age_bands_and_attribute_parsing():
    ages = np.array([0, 39.9, 40, 59, 59.99, 60, 95, np.nan, -1])
    assert age_bands(ages).tolist() == ["<40", "<40", "40-59", "40-59", "40-59", ">=60", ">=60", "", ""]
    assert parse_attributes(" sex, AGE,view,sex") == ("sex", "age", "view")
    with pytest.raises(ConfigError, match="race"):
        parse_attributes("sex,race")
    with pytest.raises(ConfigError):
        parse_attributes(" , ")


def test_columns_come_from_the_data_entry_fields():
    table = pd.DataFrame(
        {
            "image": ["a.png", "b.png", "c.png", "d.png"],
            "patient_gender": ["M", "F", "f", "O"],
            "patient_age": [25.0, 45.0, 71.0, np.nan],
            "view_position": ["PA", "AP", "LL", "pa"],
        }
    )
    columns = subgroup_columns(table, ("sex", "age", "view"))
    assert columns["sex"].tolist() == ["M", "F", "F", ""]
    assert columns["age"].tolist() == ["<40", "40-59", ">=60", ""]
    assert columns["view"].tolist() == ["PA", "AP", "", "PA"]
    by_name = subgroup_columns_for_images(table, ["c.png", "a.png"], ("sex",))
    assert by_name["sex"].tolist() == ["F", "M"]
    with pytest.raises(ConfigError, match="1 evaluated image"):
        subgroup_columns_for_images(table, ["a.png", "zzz.png"], ("sex",))


def test_subgroup_auroc_counts_intervals_and_undefined_groups():
    labels, probs, groups = _table(400, seed=0)
    report = evaluate_subgroups(labels, probs, groups, n_bootstrap=50, seed=3)

    women = groups["sex"] == "F"
    entry = report.results["sex"]["F"]["Atelectasis"]
    assert entry["auroc"]["value"] == pytest.approx(
        roc_auc_score(labels[women, 0], probs[women, 0]), abs=1e-12
    )
    assert entry["auroc"]["low"] <= entry["auroc"]["value"] <= entry["auroc"]["high"]
    assert entry["n"] == 200 and entry["positives"] == int(labels[women, 0].sum())
    assert entry["reason"] is None
    assert report.n_images == {"sex": {"M": 200, "F": 200}, "view": {"PA": 266, "AP": 134}}

    hernia = report.results["sex"]["F"]["Hernia"]
    assert np.isnan(hernia["auroc"]["value"]) and hernia["positives"] == 0
    assert hernia["reason"] == "no positives"
    assert report.results["view"]["AP"]["Effusion"]["reason"] == "no negatives"

    gap = report.gaps["sex"]["Atelectasis"]
    men_value = report.results["sex"]["M"]["Atelectasis"]["auroc"]["value"]
    assert gap["gap"] == pytest.approx(abs(men_value - entry["auroc"]["value"]), abs=1e-12)
    assert {gap["highest"], gap["lowest"]} == {"M", "F"}
    assert (
        report.gaps["sex"]["Hernia"]["gap"] is None
        and "fewer than two" in report.gaps["sex"]["Hernia"]["reason"]
    )


def test_report_carries_subgroups_as_strict_json_and_markdown_tables():
    labels, probs, groups = _table(300, seed=1)
    report = build_report(labels, probs, n_bootstrap=20, groups=groups)
    data = json.loads(json.dumps(report.to_json_dict(), allow_nan=False))
    assert list(data["subgroups"]) == ["sex", "view"]
    assert list(data["subgroups"]["sex"]) == ["M", "F"]
    women_hernia = data["subgroups"]["sex"]["F"]["Hernia"]
    assert women_hernia["auroc"] == {"value": None, "low": None, "high": None}
    assert set(data["subgroups"]["view"]["PA"]["Mass"]) == {"auroc", "n", "positives", "reason"}
    assert data["subgroup_gaps"]["view"]["Effusion"]["gap"] is None
    assert data["metadata"]["subgroups_by"] == "sex,view"

    text = report.to_markdown()
    assert "AUROC by sex" in text and "AUROC by view" in text
    assert "| Finding | M (n=150) | F (n=150) | Gap |" in text
    assert "n/a (no positives)" in text
    assert text.rstrip().endswith(report.to_json_dict()["disclaimer"])


def test_no_subgroups_unless_asked():
    labels, probs, _ = _table(60, seed=2)
    data = build_report(labels, probs, n_bootstrap=0).to_json_dict()
    assert "subgroups" not in data and "subgroup_gaps" not in data
    with pytest.raises(ValueError, match="unknown subgroup attribute"):
        evaluate_subgroups(labels, probs, {"race": np.full(60, "x", dtype=object)}, n_bootstrap=0)


@pytest.mark.shared_data
def test_real_reference_predictions_by_subgroup(shared_data):
    from cxreader.evaluation.predictions_file import read_labelled_predictions

    joined = read_labelled_predictions(
        shared_data / "nih" / "reference_preds" / "preds_22433.csv.gz",
        shared_data / "meta" / "Data_Entry_2017_v2020.csv.gz",
    )
    groups = subgroup_columns(joined.table, ("sex", "age", "view"))
    report = evaluate_subgroups(joined.labels, joined.probs, groups, n_bootstrap=0)
    for attribute, sizes in report.n_images.items():
        assert sum(sizes.values()) == 22_433, attribute  # every image has a sex, an age band and a view
    ap = groups["view"] == "AP"
    effusion = FINDINGS.index("Effusion")
    assert report.results["view"]["AP"]["Effusion"]["auroc"]["value"] == pytest.approx(
        roc_auc_score(joined.labels[ap, effusion], joined.probs[ap, effusion]), abs=1e-12
    )
