"""The SYNTHETIC ChestX-ray14 dataset writer: NIH layout, ground truth, determinism, CLI."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cxreader.cli.__main__ import main
from cxreader.data.nih_tables import read_bbox_list, read_data_entry
from cxreader.data.sidecars import SIDECAR_COLUMNS, read_synthetic_findings
from cxreader.errors import ConfigError, DataError
from cxreader.labels import BOXED_FINDINGS, FINDINGS, parse_finding_labels
from cxreader.synthetic.dataset import (
    BBOX_HEADER,
    DATA_ENTRY_HEADER,
    DEFAULT_PREVALENCE,
    generate_synthetic_dataset,
    inclusion_probabilities,
    plan_images,
)

SIZE = 64


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> tuple[Path, object]:
    out = tmp_path_factory.mktemp("synth") / "data"
    summary = generate_synthetic_dataset(out, images=60, size=SIZE, seed=7, positive_rate=0.3)
    return out, summary


def test_layout_and_exact_headers(dataset):
    out, summary = dataset
    assert {p.name for p in out.iterdir()} == {
        "Data_Entry_2017_v2020.csv",
        "BBox_List_2017.csv",
        "synthetic_findings.csv",
        "train_val_list.txt",
        "test_list.txt",
        "SYNTHETIC_README.txt",
        "images",
    }
    lines = (out / "Data_Entry_2017_v2020.csv").read_text().splitlines()
    assert lines[0] == DATA_ENTRY_HEADER
    assert lines[0] == (
        "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
        "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]"
    )
    assert len(lines) == 61 and all(len(line.split(",")) == 11 for line in lines)
    assert (
        (out / "BBox_List_2017.csv").read_text().splitlines()[0]
        == BBOX_HEADER
        == "Image Index,Finding Label,Bbox [x,y,w,h],,,"
    )
    pngs = sorted((out / "images").iterdir())
    assert len(pngs) == 60 and all(re.fullmatch(r"\d{8}_\d{3}\.png", p.name) for p in pngs)
    with Image.open(pngs[0]) as image:
        assert image.mode == "L" and image.size == (SIZE, SIZE)
    for name in ("train_val_list.txt", "test_list.txt"):
        text = (out / name).read_text()
        assert text and not text.endswith("\n")
    readme = (out / "SYNTHETIC_README.txt").read_text()
    assert "SYNTHETIC" in readme and "not patient data" in readme.lower() and "seed=7" in readme
    assert summary.images == 60 and "SYNTHETIC" in summary.describe()


def test_data_entry_parses_with_nih_reader(dataset):
    out, summary = dataset
    table = read_data_entry(out / "Data_Entry_2017_v2020.csv")
    assert len(table) == 60
    assert (table["original_width"] == SIZE).all() and (table["original_height"] == SIZE).all()
    assert np.allclose(table["pixel_spacing_x"], 400.0 / SIZE) and np.allclose(
        table["pixel_spacing_y"], 400.0 / SIZE
    )
    assert set(table["view_position"]) <= {"PA", "AP"} and set(table["patient_gender"]) <= {"M", "F"}
    assert table["patient_age"].between(1, 100).all()
    for patient, rows in table.groupby("patient_id"):
        assert sorted(rows["follow_up"]) == list(range(len(rows))) and len(rows) <= 4
        assert all(
            name == f"{patient:08d}_{k:03d}.png"
            for name, k in zip(rows["image"], rows["follow_up"], strict=True)
        )
    assert table["patient_id"].nunique() == summary.patients
    assert {name: int(table[name].sum()) for name in FINDINGS} == summary.counts
    assert (table["finding_labels"] == "No Finding").sum() == summary.no_finding > 0


def test_labels_boxes_and_sidecar_agree(dataset):
    out, _ = dataset
    table = read_data_entry(out / "Data_Entry_2017_v2020.csv")
    sidecar = read_synthetic_findings(out / "synthetic_findings.csv")
    boxes = read_bbox_list(out / "BBox_List_2017.csv")
    assert list(sidecar.columns) == list(SIDECAR_COLUMNS)
    for _, row in table.iterrows():
        labelled = {
            name
            for name, hit in zip(FINDINGS, parse_finding_labels(row["finding_labels"]), strict=True)
            if hit
        }
        assert set(sidecar.loc[sidecar["image"] == row["image"], "finding"]) == labelled
    boxed = sidecar[sidecar["finding"].isin(BOXED_FINDINGS)].reset_index(drop=True)
    assert len(boxes) == len(boxed) > 0
    assert (boxes[["image", "finding"]].values == boxed[["image", "finding"]].values).all()
    assert np.allclose(boxes[["x", "y", "w", "h"]].values, boxed[["x", "y", "w", "h"]].values)
    raw = (out / "BBox_List_2017.csv").read_text()
    assert ",Infiltrate," in raw and ",Infiltration," not in raw  # NIH's spelling
    assert (boxes["x"] >= 0).all() and (boxes["y"] >= 0).all()
    assert ((boxes["x"] + boxes["w"]) <= SIZE).all() and ((boxes["y"] + boxes["h"]) <= SIZE).all()
    assert sidecar["extent"].between(0, 1).all() and (sidecar["size_cm"] > 0).all()


def test_patient_level_split(dataset):
    out, summary = dataset
    train = (out / "train_val_list.txt").read_text().split("\n")
    test = (out / "test_list.txt").read_text().split("\n")
    table = read_data_entry(out / "Data_Entry_2017_v2020.csv")
    assert sorted(train + test) == sorted(table["image"])
    patients = dict(zip(table["image"], table["patient_id"], strict=True))
    assert not {patients[name] for name in train} & {patients[name] for name in test}
    assert 0.1 <= len(test) / 60 <= 0.3
    assert (summary.train_val_images, summary.test_images) == (len(train), len(test))


def test_deterministic_and_independent_of_workers(tmp_path):
    first = generate_synthetic_dataset(tmp_path / "a", images=8, size=SIZE, seed=3)
    generate_synthetic_dataset(tmp_path / "b", images=8, size=SIZE, seed=3, workers=2)
    generate_synthetic_dataset(tmp_path / "c", images=8, size=SIZE, seed=4)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert len(files) == 8 + 6
    for relative in files:
        assert (tmp_path / "a" / relative).read_bytes() == (tmp_path / "b" / relative).read_bytes(), relative
    assert (tmp_path / "a" / "Data_Entry_2017_v2020.csv").read_bytes() != (
        tmp_path / "c" / "Data_Entry_2017_v2020.csv"
    ).read_bytes()
    assert first.images == 8


def test_regenerating_replaces_a_synthetic_folder_but_refuses_others(tmp_path):
    generate_synthetic_dataset(tmp_path / "d", images=6, size=SIZE, seed=1)
    generate_synthetic_dataset(tmp_path / "d", images=3, size=SIZE, seed=1)
    assert len(list((tmp_path / "d" / "images").iterdir())) == 3
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="not a cxreader synthetic dataset"):
        generate_synthetic_dataset(other, images=2, size=SIZE)
    with pytest.raises(ConfigError, match="size"):
        generate_synthetic_dataset(tmp_path / "e", images=2, size=16)
    with pytest.raises(ConfigError, match="positive_rate"):
        generate_synthetic_dataset(tmp_path / "e", images=2, positive_rate=0.9)


def test_prevalence_and_normal_share():
    abnormal, q = inclusion_probabilities(DEFAULT_PREVALENCE)
    q_vector = np.array([q[name] for name in FINDINGS])
    marginal = abnormal * q_vector / (1.0 - np.prod(1.0 - q_vector))
    assert np.allclose(marginal, [DEFAULT_PREVALENCE[name] for name in FINDINGS], atol=1e-6)
    specs = plan_images(np.random.default_rng(0), 4000, DEFAULT_PREVALENCE)
    normal = np.mean([not spec.findings for spec in specs])
    assert 0.3 <= normal <= 0.4
    for name in FINDINGS:
        rate = np.mean([name in spec.findings for spec in specs])
        assert 0.1 <= rate <= 0.2, name


def test_cli_synth(tmp_path, capsys):
    out = tmp_path / "cli"
    assert (
        main(["data", "synth", "--out", str(out), "--images", "5", "--size", str(SIZE), "--seed", "2"]) == 0
    )
    printed = capsys.readouterr().out.strip().splitlines()
    assert printed[0].startswith("SYNTHETIC") and "5 images" in printed[0]
    assert printed[1] == str(out.resolve())
    assert len(read_data_entry(out / "Data_Entry_2017_v2020.csv")) == 5
    assert main(["data", "synth", "--out", str(tmp_path / "bad"), "--images", "0"]) == 2
    assert "images must be a positive integer" in capsys.readouterr().err
