"""SYNTHETIC CheXpert, MIMIC-CXR-JPG and PadChest layouts: published headers, images, marker, determinism, CLI."""

from __future__ import annotations

import gzip
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import cxreader.cli.__main__ as cli
from cxreader.cli import synth_cmd
from cxreader.data.chexpert import read_chexpert
from cxreader.data.mimic import read_mimic_root
from cxreader.data.padchest import read_padchest
from cxreader.data.sidecars import SYNTHETIC_MARKER, read_synthetic_findings
from cxreader.errors import ConfigError, DataError
from cxreader.synthetic import layouts
from cxreader.synthetic.layouts import LAYOUTS, drawn_findings, write_layout

#: The published headers, verbatim.
CHEXPERT_HEADER = (
    "Path,Sex,Age,Frontal/Lateral,AP/PA,No Finding,Enlarged Cardiomediastinum,Cardiomegaly,Lung Opacity,"
    "Lung Lesion,Edema,Consolidation,Pneumonia,Atelectasis,Pneumothorax,Pleural Effusion,Pleural Other,"
    "Fracture,Support Devices"
)
MIMIC_HEADERS = {
    "mimic-cxr-2.0.0-chexpert.csv.gz": "subject_id,study_id,Atelectasis,Cardiomegaly,Consolidation,Edema,"
    "Enlarged Cardiomediastinum,Fracture,Lung Lesion,Lung Opacity,No Finding,Pleural Effusion,Pleural Other,"
    "Pneumonia,Pneumothorax,Support Devices",
    "mimic-cxr-2.0.0-metadata.csv.gz": "dicom_id,subject_id,study_id,PerformedProcedureStepDescription,"
    "ViewPosition,Rows,Columns,StudyDate,StudyTime,ProcedureCodeSequence_CodeMeaning,ViewCodeSequence_CodeMeaning,"
    "PatientOrientationCodeSequence_CodeMeaning",
    "mimic-cxr-2.0.0-split.csv.gz": "dicom_id,study_id,subject_id,split",
}
PADCHEST_HEADER = (
    "ImageID,ImageDir,StudyDate_DICOM,StudyID,PatientID,PatientBirth,PatientSex_DICOM,ViewPosition_DICOM,"
    "Projection,MethodProjection,Pediatric,Modality_DICOM,Manufacturer_DICOM,PhotometricInterpretation_DICOM,"
    "PixelRepresentation_DICOM,PixelAspectRatio_DICOM,SpatialResolution_DICOM,BitsStored_DICOM,"
    "WindowCenter_DICOM,WindowWidth_DICOM,Rows_DICOM,Columns_DICOM,XRayTubeCurrent_DICOM,Exposure_DICOM,"
    "ExposureInuAs_DICOM,ExposureTime,RelativeXRayExposure_DICOM,ReportID,Report,MethodLabel,Labels,"
    "Localizations,LabelsLocalizationsBySentence,labelCUIS,LocalizationsCUIS"
)
SIZE = 64


def first_line(path: Path) -> str:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as handle:
        return handle.readline().rstrip("\n")


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("layouts")
    return {
        layout: write_layout(layout, base / layout, images=120, size=SIZE, seed=3) for layout in LAYOUTS[1:]
    }


def test_chexpert_layout(written: dict[str, Path]) -> None:
    root = written["chexpert"]
    for name in ("train.csv", "valid.csv"):
        assert first_line(root / name) == CHEXPERT_HEADER
    train, valid = read_chexpert(root / "train.csv"), read_chexpert(root / "valid.csv")
    assert set(train["split"]) == {"train"} and set(valid["split"]) == {"valid"}
    assert not set(train["patient_id"]) & set(valid["patient_id"])
    assert train.groupby("patient_id")["Path"].apply(lambda p: p.str.split("/").str[3].nunique()).max() > 1
    labels = list(train.columns[5:19])
    assert (train[labels] == -1.0).any().any() and train[labels].isna().any().any()
    assert not valid[labels].isna().any().any() and not (valid[labels] == -1.0).any().any()
    assert not train[labels].isna().all(axis=1).any()  # every row says something: No Finding at least
    pathology = [label for label in labels if label not in ("No Finding", "Support Devices")]
    mentioned = train[pathology].isin([1.0, -1.0]).any(axis=1)
    assert ((train["No Finding"] == 1.0) == ~mentioned).all()
    lateral = train[~train["frontal"]]
    assert len(lateral) > 0 and (lateral["AP/PA"] == "").all()
    assert all(path.endswith("view2_lateral.jpg") for path in lateral["Path"])
    with Image.open(root / train["Path"].iloc[0]) as image:
        assert image.format == "JPEG" and image.size == (SIZE, SIZE) and image.mode == "L"


def test_lateral_is_the_frontal_picture_flagged_lateral(written: dict[str, Path]) -> None:
    root = written["chexpert"]
    train = read_chexpert(root / "train.csv")
    lateral = train[~train["frontal"]]["Path"].iloc[0]
    frontal = lateral.replace("view2_lateral", "view1_frontal")
    assert np.array_equal(np.asarray(Image.open(root / lateral)), np.asarray(Image.open(root / frontal)))
    truth = drawn_findings(root)
    assert truth.get(lateral, set()) == truth.get(frontal, set())


def test_mimic_layout(written: dict[str, Path]) -> None:
    root = written["mimic"]
    for name, header in MIMIC_HEADERS.items():
        assert first_line(root / name) == header
    frame = read_mimic_root(root)
    assert set(frame["split"]) == {"train", "validate", "test"}
    assert frame.groupby("subject_id")["split"].nunique().max() == 1
    assert frame.groupby("subject_id")["study_id"].nunique().max() > 1
    assert set(frame["ViewPosition"]) == {"PA", "AP", "LATERAL"}
    assert all((root / path).is_file() for path in frame["path"])
    assert frame["path"].str.match(r"^files/p10/p100\d{5}/s5\d{7}/[0-9a-f]{8}(-[0-9a-f]{8}){4}\.jpg$").all()


def test_padchest_layout(written: dict[str, Path]) -> None:
    root = written["padchest"]
    table = root / "PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv.gz"
    assert first_line(table) == PADCHEST_HEADER
    frame = read_padchest(table)
    assert frame["labels"].notna().all() and ("normal",) in set(frame["labels"])
    assert set(frame["Projection"]) <= {"PA", "AP", "AP_horizontal", "L"} and "L" in set(frame["Projection"])
    assert frame["ImageDir"].nunique() == 2
    first = root / frame["ImageDir"].iloc[0] / frame["ImageID"].iloc[0]
    with Image.open(first) as image:
        assert image.format == "PNG" and image.mode.startswith("I;16") and image.size == (SIZE, SIZE)
        assert np.asarray(image).max() > 255
    raw = pd.read_csv(table, dtype=str, keep_default_na=False)
    assert raw["Labels"].str.startswith("['").all()


@pytest.mark.parametrize("layout", LAYOUTS[1:])
def test_marked_synthetic_with_a_sidecar(written: dict[str, Path], layout: str) -> None:
    root = written[layout]
    assert "SYNTHETIC DATA - NOT PATIENT DATA" in (root / SYNTHETIC_MARKER).read_text()
    assert f"--layout {layout}" in (root / SYNTHETIC_MARKER).read_text()
    sidecar = read_synthetic_findings(root / "synthetic_findings.csv")
    assert len(sidecar) > 0


@pytest.mark.parametrize("layout", LAYOUTS[1:])
def test_deterministic_and_rewritable(tmp_path: Path, layout: str) -> None:
    first = write_layout(layout, tmp_path / "a", images=30, size=SIZE, seed=7)
    second = write_layout(layout, tmp_path / "b", images=30, size=SIZE, seed=7)
    files = sorted(path.relative_to(first) for path in first.rglob("*") if path.is_file())
    assert files == sorted(path.relative_to(second) for path in second.rglob("*") if path.is_file())
    for relative in files:
        if relative.name != SYNTHETIC_MARKER:
            assert (first / relative).read_bytes() == (second / relative).read_bytes(), relative
    again = write_layout(layout, first, images=12, size=SIZE, seed=8)
    assert sum(1 for path in again.rglob("*") if path.suffix in (".jpg", ".png")) == 12


def test_refuses_a_folder_of_other_files(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="not a cxreader synthetic dataset"):
        write_layout("mimic", tmp_path, images=5, size=SIZE, seed=0)
    with pytest.raises(ConfigError, match="unknown layout"):
        write_layout("openi", tmp_path / "x", images=5, size=SIZE, seed=0)
    with pytest.raises(ConfigError, match="size"):
        write_layout("chexpert", tmp_path / "x", images=5, size=16, seed=0)


def test_fast_enough(tmp_path: Path) -> None:
    started = time.perf_counter()
    write_layout("padchest", tmp_path / "p", images=300, size=SIZE, seed=0)
    assert time.perf_counter() - started < 20.0


def test_cli_layout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert synth_cmd.LAYOUTS == layouts.LAYOUTS
    out = tmp_path / "chexpert"
    args = ["data", "synth", "--layout", "chexpert", "--out", str(out), "--images", "20", "--size", "64"]
    assert cli.main(args) == 0
    assert "SYNTHETIC" in capsys.readouterr().out
    assert (out / "train.csv").is_file() and (out / SYNTHETIC_MARKER).is_file()
    assert cli.main([*args, "--positive-rate", "0.2"]) != 0
    assert "--layout nih" in capsys.readouterr().err
    nih = tmp_path / "nih"
    assert cli.main(["data", "synth", "--out", str(nih), "--images", "10", "--size", "64"]) == 0
    assert (nih / "Data_Entry_2017_v2020.csv").is_file()
