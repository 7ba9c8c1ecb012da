"""`cxreader evaluate --by` and the calibration outputs, through the real CLI, in both modes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tests.conftest import HEADER, make_tiny_nih

from cxreader.cli.__main__ import main
from cxreader.labels import FINDINGS, NO_FINDING, NUM_FINDINGS
from cxreader.models import create_model
from cxreader.models.checkpoint import CheckpointContract, save_checkpoint

#: Patient attributes cycled over the rows: (sex, age, view).
ATTRIBUTES = [("M", 30, "PA"), ("F", 45, "AP"), ("F", 72, "PA"), ("M", 61, "AP")]


def _data_entry_rows(images: list[str], labels: np.ndarray) -> list[str]:
    rows = []
    for index, (image, vector) in enumerate(zip(images, labels, strict=True)):
        sex, age, view = ATTRIBUTES[index % len(ATTRIBUTES)]
        names = "|".join(name for name, value in zip(FINDINGS, vector, strict=True) if value) or NO_FINDING
        patient = int(image.split("_")[0])
        rows.append(f"{image},{names},0,{patient},{age},{sex},{view},1024,1024,0.143,0.143")
    return rows


def _predictions_and_labels(folder: Path, n: int = 240) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    labels = rng.random((n, NUM_FINDINGS)) < 0.3
    labels[:, FINDINGS.index("Hernia")] = False
    labels[1::4, FINDINGS.index("Hernia")] = True  # Hernia only in the (F, 45, AP) rows
    probs = np.clip(0.6 * rng.random((n, NUM_FINDINGS)) + 0.35 * labels, 0, 1)
    images = [f"{i + 1:08d}_000.png" for i in range(n)]
    entry = folder / "Data_Entry_2017_v2020.csv"
    entry.write_text("\n".join([HEADER, *_data_entry_rows(images, labels)]) + "\n")
    predictions = folder / "preds.csv"
    header = ",".join(["Image Index", *(f"prob_{name}" for name in FINDINGS)])
    body = [",".join([image, *(f"{p:.6f}" for p in row)]) for image, row in zip(images, probs, strict=True)]
    predictions.write_text("\n".join([header, *body]) + "\n")
    return predictions, entry


def _check_png(path: Path) -> None:
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width > 500


def test_predictions_file_by_sex_age_view(tmp_path, capsys):
    predictions, entry = _predictions_and_labels(tmp_path)
    out_json, out_dir = tmp_path / "report.json", tmp_path / "eval"
    arguments = ["evaluate", "--predictions", str(predictions), "--labels", str(entry), "--bootstrap", "30"]
    code = main([*arguments, "--by", "sex,age,view", "--json", str(out_json), "--out", str(out_dir)])
    assert code == 0
    report = json.loads(out_json.read_text())

    assert list(report["subgroups"]) == ["sex", "age", "view"]
    assert list(report["subgroups"]["age"]) == ["<40", "40-59", ">=60"]
    assert list(report["subgroups"]["view"]) == ["PA", "AP"]
    cell = report["subgroups"]["sex"]["M"]["Atelectasis"]
    assert set(cell["auroc"]) == {"value", "low", "high"} and cell["n"] == 120
    assert 0.0 <= cell["auroc"]["low"] <= cell["auroc"]["value"] <= cell["auroc"]["high"] <= 1.0
    hernia_men = report["subgroups"]["sex"]["M"]["Hernia"]
    assert hernia_men["auroc"]["value"] is None and hernia_men["reason"] == "no positives"
    assert report["subgroups"]["sex"]["F"]["Hernia"]["positives"] == 60
    assert report["subgroup_gaps"]["age"]["Atelectasis"]["highest"] in ("<40", "40-59", ">=60")
    assert set(report["calibration"]) == {"ece_bins", "ece", "brier", "mean_ece", "mean_brier"}
    assert report["calibration"]["ece"]["Mass"]["value"] > 0

    printed = capsys.readouterr().out
    assert "AUROC by age" in printed and "Calibration" in printed
    assert sorted(path.name for path in out_dir.iterdir()) == [
        "reliability.png",
        "report.json",
        "report.md",
        "roc.png",
    ]
    _check_png(out_dir / "reliability.png")
    assert json.loads((out_dir / "report.json").read_text()) == report

    assert main([*arguments, "--by", "sex,ethnicity"]) == 2
    assert "ethnicity" in capsys.readouterr().err


@pytest.fixture
def tiny_checkpoint_with_data(tmp_path) -> tuple[Path, Path]:
    """An untrained compact DenseNet checkpoint and a tiny NIH-layout dataset with varied patients."""
    data = make_tiny_nih(tmp_path / "nih", patients=40, per_patient=2, size=40)
    entry = data / "Data_Entry_2017_v2020.csv"
    lines = entry.read_text().splitlines()
    rows = []
    for line in lines[1:]:
        fields = line.split(",")
        sex, age, view = ATTRIBUTES[int(fields[3]) % len(ATTRIBUTES)]  # by patient id
        fields[4], fields[5], fields[6] = str(age), sex, view
        rows.append(",".join(fields))
    entry.write_text("\n".join([lines[0], *rows]) + "\n")
    torch.manual_seed(0)
    contract = CheckpointContract(
        model_name="densenet_small",
        input_size=32,
        synthetic=True,
        config={"split": "random", "seed": 0, "image_size": 32, "data": str(data)},
    )
    checkpoint = tmp_path / "tiny.pt"
    save_checkpoint(checkpoint, model=create_model("densenet_small", init="none"), contract=contract)
    return checkpoint, data


def test_checkpoint_evaluation_by_sex_age_view(tiny_checkpoint_with_data, tmp_path):
    checkpoint, _ = tiny_checkpoint_with_data
    out_dir = tmp_path / "eval"
    arguments = ["evaluate", "--checkpoint", str(checkpoint), "--bootstrap", "20", "--workers", "0"]
    assert main([*arguments, "--by", "view,sex", "--out", str(out_dir)]) == 0
    report = json.loads((out_dir / "report.json").read_text())
    assert list(report["subgroups"]) == ["view", "sex"]
    sizes = {name: groups["Effusion"]["n"] for name, groups in report["subgroups"]["sex"].items()}
    assert set(sizes) <= {"M", "F"} and sum(sizes.values()) == report["n_images"]
    assert report["metadata"]["synthetic"] is True and report["metadata"]["subgroups_by"] == "view,sex"
    assert report["calibration"]["mean_brier"]["value"] is not None
    _check_png(out_dir / "reliability.png")
    assert "SYNTHETIC" in (out_dir / "report.md").read_text()
