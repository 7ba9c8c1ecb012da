from __future__ import annotations

import csv
import gzip
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from cxreader.errors import DataError
from cxreader.evaluation.predictions_file import (
    load_labelled_predictions,
    load_predictions_csv,
)
from cxreader.evaluation.report import build_report
from cxreader.labels import FINDINGS, NO_FINDING, NUM_FINDINGS

DATA_ENTRY_HEADER = (
    "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
    "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]"
)


def _write_predictions(path: Path, header: list[str], rows: list[list[object]], *, gz: bool = False) -> Path:
    text = "\n".join(",".join(str(cell) for cell in row) for row in [header, *rows]) + "\n"
    if gz:
        with gzip.open(path, "wt", encoding="utf-8") as handle:
            handle.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def _write_data_entry(path: Path, images: list[str], labels: np.ndarray) -> Path:
    lines = [DATA_ENTRY_HEADER]
    for index, (image, vector) in enumerate(zip(images, labels, strict=True)):
        positives = [name for name, value in zip(FINDINGS, vector, strict=True) if value > 0.5]
        cell = "|".join(positives) or NO_FINDING
        lines.append(f"{image},{cell},0,{index + 1},50,M,PA,1024,1024,0.143,0.143")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _standard_header() -> list[str]:
    return ["Image Index", *(f"prob_{name}" for name in FINDINGS)]


def _random_probs(n: int, seed: int) -> np.ndarray:
    return np.round(np.random.default_rng(seed).random((n, NUM_FINDINGS)), 6)


@pytest.mark.parametrize("gz", [False, True])
def test_loads_any_column_order_and_spelling(tmp_path, gz):
    probs = _random_probs(5, 0)
    images = [f"{i:08d}_000.png" for i in range(5)]
    # Shuffled columns, no prefix, alternative spellings.
    names = [name.replace("_", " ") if name == "Pleural_Thickening" else name for name in FINDINGS]
    names[FINDINGS.index("Infiltration")] = "prob_Infiltrate"
    order = np.random.default_rng(1).permutation(NUM_FINDINGS)
    header = ["Image Index", *(names[k] for k in order)]
    rows = [[image, *(probs[i, k] for k in order)] for i, image in enumerate(images)]
    path = _write_predictions(tmp_path / ("p.csv.gz" if gz else "p.csv"), header, rows, gz=gz)
    ids, loaded = load_predictions_csv(path)
    assert ids == images
    np.testing.assert_array_equal(loaded, probs)


def _one_row(value: object = 0.5) -> list[object]:
    return ["a.png", *([value] + [0.5] * (NUM_FINDINGS - 1))]


@pytest.mark.parametrize(
    ("header", "rows", "message"),
    [
        (["Image", *(f"prob_{n}" for n in FINDINGS)], [_one_row()], "first column"),
        (_standard_header()[:-1], [_one_row()[:-1]], "missing probability columns for: Hernia"),
        ([*_standard_header(), "prob_Fracture"], [[*_one_row(), 0.1]], "unexpected column 'prob_Fracture'"),
        ([*_standard_header(), "Effusion"], [[*_one_row(), 0.1]], "finding Effusion has two columns"),
        (
            _standard_header(),
            [_one_row("high")],
            "line 2, column 'prob_Atelectasis': non-numeric value 'high'",
        ),
        (_standard_header(), [_one_row(1.5)], "not a probability in \\[0, 1\\]"),
        (_standard_header(), [_one_row(-0.1)], "not a probability"),
        (_standard_header(), [_one_row("nan")], "not a probability"),
        (_standard_header(), [_one_row(), _one_row()], "line 3: image 'a.png' appears more than once"),
        (_standard_header(), [_one_row()[:-2]], "expected 15 fields, found 13"),
        (_standard_header(), [], "no prediction rows"),
    ],
)
def test_bad_files_raise_data_error_naming_the_file(tmp_path, header, rows, message):
    path = _write_predictions(tmp_path / "bad.csv", header, rows)
    with pytest.raises(DataError, match=message) as info:
        load_predictions_csv(path)
    assert str(path) in str(info.value)


def test_empty_and_absent_files(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataError, match="empty file"):
        load_predictions_csv(empty)
    with pytest.raises(DataError, match="not found"):
        load_predictions_csv(tmp_path / "absent.csv")


def test_score_joins_on_image_name(tmp_path):
    n = 60
    rng = np.random.default_rng(2)
    images = [f"{i:08d}_000.png" for i in range(n)]
    labels = (rng.random((n, NUM_FINDINGS)) < 0.3).astype(float)
    probs = np.round(np.clip(rng.random((n, NUM_FINDINGS)) * 0.7 + 0.3 * labels, 0, 1), 4)
    # The label table has extra images and a different order; predictions cover a subset.
    extra = [f"{n + i:08d}_000.png" for i in range(5)]
    labels_path = _write_data_entry(
        tmp_path / "Data_Entry.csv",
        extra + images[::-1],
        np.vstack([np.zeros((5, NUM_FINDINGS)), labels[::-1]]),
    )
    rows = [[image, *probs[i]] for i, image in enumerate(images)]
    predictions_path = _write_predictions(tmp_path / "preds.csv", _standard_header(), rows)

    ids, joined_labels, joined_probs = load_labelled_predictions(predictions_path, labels_path)
    assert ids == images
    np.testing.assert_array_equal(joined_labels, labels)
    np.testing.assert_array_equal(joined_probs, probs)
    report = build_report(joined_labels, joined_probs, n_bootstrap=10)
    for k, name in enumerate(FINDINGS):
        assert abs(report.auroc[name] - roc_auc_score(labels[:, k], probs[:, k])) < 1e-12
    assert report.n_images == n


def test_score_fails_when_predictions_lack_labels(tmp_path):
    images = [f"{i:08d}_000.png" for i in range(10)]
    labels_path = _write_data_entry(tmp_path / "Data_Entry.csv", images[:3], np.zeros((3, NUM_FINDINGS)))
    rows = [[image, *([0.5] * NUM_FINDINGS)] for image in images]
    predictions_path = _write_predictions(tmp_path / "preds.csv", _standard_header(), rows)
    with pytest.raises(DataError, match="7 of 10 predicted images have no label row") as info:
        load_labelled_predictions(predictions_path, labels_path)
    assert "00000003_000.png" in str(info.value) and str(predictions_path) in str(info.value)


@pytest.mark.shared_data
def test_reference_predictions_reproduce_published_aucs(shared_data):
    reference = shared_data / "nih" / "reference_preds"
    _, labels, probs = load_labelled_predictions(
        reference / "preds_22433.csv.gz", shared_data / "meta" / "Data_Entry_2017_v2020.csv.gz"
    )
    report = build_report(labels, probs, n_bootstrap=0)
    with open(reference / "aucs.csv", encoding="utf-8", newline="") as handle:
        published = {row["label"]: float(row["auc"]) for row in csv.DictReader(handle)}
    assert set(published) == set(FINDINGS)
    assert report.n_images == 22433
    for name, value in published.items():
        assert abs(report.auroc[name] - value) < 5e-7, name
