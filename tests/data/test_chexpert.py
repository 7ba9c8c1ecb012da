"""CheXpert label tables (Irvin et al. 2019): the 1 / 0 / -1 / empty coding, patients, splits, bad headers."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from cxreader.data.chexpert import (
    CHEXPERT_COLUMNS,
    CHEXPERT_LABELS,
    chexpert_image_paths,
    chexpert_summaries,
    find_chexpert_tables,
    read_chexpert,
)
from cxreader.data.label_stats import COUNT_KINDS
from cxreader.errors import DataError

#: The header of CheXpert-v1.0-small/train.csv, verbatim.
HEADER = (
    "Path,Sex,Age,Frontal/Lateral,AP/PA,No Finding,Enlarged Cardiomediastinum,Cardiomegaly,Lung Opacity,"
    "Lung Lesion,Edema,Consolidation,Pneumonia,Atelectasis,Pneumothorax,Pleural Effusion,Pleural Other,"
    "Fracture,Support Devices"
)
TRAIN_ROWS = (
    "CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg,Female,68,Frontal,AP,1.0,,,,,,,,,0.0,,,,1.0",
    "CheXpert-v1.0-small/train/patient00002/study2/view1_frontal.jpg,Female,87,Frontal,AP,,,-1.0,1.0,,-1.0,-1.0,,"
    "-1.0,,-1.0,,1.0,",
    "CheXpert-v1.0-small/train/patient00002/study1/view1_frontal.jpg,Female,83,Frontal,AP,,,,1.0,,,-1.0,,,,,,1.0,",
    "CheXpert-v1.0-small/train/patient00002/study1/view2_lateral.jpg,Female,83,Lateral,,,,,1.0,,,-1.0,,,,,,1.0,",
    "CheXpert-v1.0-small/train/patient00003/study1/view1_frontal.jpg,Male,41,Frontal,AP,,,0.0,,,1.0,,,,0.0,,,,",
)
VALID_ROWS = (
    "CheXpert-v1.0-small/valid/patient64541/study1/view1_frontal.jpg,Male,73,Frontal,AP,0.0,1.0,1.0,1.0,0.0,"
    "0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0",
    "CheXpert-v1.0-small/valid/patient64542/study1/view2_lateral.jpg,Male,70,Lateral,,0.0,0.0,0.0,0.0,0.0,"
    "0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,1.0",
)


def write(path: Path, header: str, rows: tuple[str, ...]) -> Path:
    text = header + "\n" + "\n".join(rows) + "\n"
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def test_header_is_the_published_one() -> None:
    assert ",".join(CHEXPERT_COLUMNS) == HEADER
    assert len(CHEXPERT_LABELS) == 14


def test_coding_patients_frontal_and_split(tmp_path: Path) -> None:
    frame = read_chexpert(write(tmp_path / "train.csv", HEADER, TRAIN_ROWS))
    assert len(frame) == 5
    assert frame["patient_id"].tolist() == [1, 2, 2, 2, 3]
    assert frame["frontal"].tolist() == [True, True, True, False, True]
    assert set(frame["split"]) == {"train"}
    assert frame["No Finding"].iloc[0] == 1.0 and np.isnan(frame["No Finding"].iloc[1])
    assert frame["Cardiomegaly"].iloc[1] == -1.0 and frame["Cardiomegaly"].iloc[4] == 0.0
    assert frame["Pneumothorax"].iloc[0] == 0.0 and frame["Support Devices"].iloc[0] == 1.0


def test_counts_per_split(tmp_path: Path) -> None:
    train = write(tmp_path / "train.csv", HEADER, TRAIN_ROWS)
    valid = write(tmp_path / "valid.csv.gz", HEADER, VALID_ROWS)
    assert find_chexpert_tables(tmp_path) == [train, valid]
    summaries = chexpert_summaries([train, valid])
    assert list(summaries) == ["train", "valid"]
    assert (summaries["train"].images, summaries["train"].patients, summaries["train"].frontal) == (5, 3, 4)
    assert (summaries["valid"].images, summaries["valid"].patients, summaries["valid"].frontal) == (2, 2, 1)
    cardiomegaly = summaries["train"].labels["Cardiomegaly"]
    assert (
        cardiomegaly.positive,
        cardiomegaly.negative,
        cardiomegaly.uncertain,
        cardiomegaly.unmentioned,
    ) == (
        0,
        1,
        1,
        3,
    )
    consolidation = summaries["train"].labels["Consolidation"]
    assert (consolidation.uncertain, consolidation.unmentioned) == (3, 2)
    assert summaries["valid"].labels["Cardiomegaly"].positive == 1
    assert summaries["valid"].labels["Cardiomegaly"].percent("positive") == 50.0


def test_split_from_the_file_name_without_a_split_folder(tmp_path: Path) -> None:
    rows = tuple(row.replace("CheXpert-v1.0-small/train/", "") for row in TRAIN_ROWS)
    frame = read_chexpert(write(tmp_path / "valid.csv", HEADER, rows))
    assert set(frame["split"]) == {"valid"} and frame["patient_id"].tolist() == [1, 2, 2, 2, 3]


def test_missing_columns_are_all_named(tmp_path: Path) -> None:
    header = HEADER.replace("Frontal/Lateral,", "").replace(",Fracture", "")
    rows = tuple(",".join(row.split(",")[:3] + row.split(",")[4:-2]) for row in TRAIN_ROWS)
    path = write(tmp_path / "train.csv", header, rows)
    with pytest.raises(DataError) as info:
        read_chexpert(path)
    message = str(info.value)
    assert message.startswith(str(path)) and "\n" not in message
    assert "'Frontal/Lateral'" in message and "'Fracture'" in message and "CheXpert" in message


@pytest.mark.parametrize(("cell", "reason"), [("2.0", "is not 1.0"), ("yes", "'Cardiomegaly'")])
def test_bad_label_value(tmp_path: Path, cell: str, reason: str) -> None:
    row = "CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg,Female,68,Frontal,AP,,," + cell
    path = write(tmp_path / "train.csv", HEADER, (row + "," * 11,))
    with pytest.raises(DataError, match=reason):
        read_chexpert(path)


def test_path_without_patient_folder(tmp_path: Path) -> None:
    path = write(tmp_path / "train.csv", HEADER, ("images/view1.jpg,Female,68,Frontal,AP" + "," * 14,))
    with pytest.raises(DataError, match="line 2: Path has no patientNNNNN folder"):
        read_chexpert(path)


def test_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no CheXpert train.csv"):
        find_chexpert_tables(tmp_path)


@pytest.mark.shared_data
def test_real_chexpert_train_counts_are_consistent(shared_data: Path) -> None:
    path = shared_data / "meta" / "chexpert_train.csv.gz"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    summaries = chexpert_summaries([path])
    assert list(summaries) == ["train"]
    train = summaries["train"]
    assert train.images == 223_414
    assert 0 < train.patients <= train.images and 0 < train.frontal <= train.images
    assert list(train.labels) == list(CHEXPERT_LABELS)
    for counts in train.labels.values():
        assert sum(getattr(counts, kind) for kind in COUNT_KINDS) == train.images
    assert train.labels["No Finding"].negative == 0 and train.labels["No Finding"].uncertain == 0


def test_image_paths_from_the_root_or_the_release_folder(tmp_path: Path) -> None:
    cell = "CheXpert-v1.0-small/valid/patient64541/study1/view1_frontal.jpg"
    assert chexpert_image_paths(tmp_path, [cell]) == [str(tmp_path.absolute() / cell)]
    release = tmp_path / "CheXpert-v1.0-small"
    release.mkdir()
    assert chexpert_image_paths(release, [cell]) == [str(tmp_path.absolute() / cell)]
    (release / "CheXpert-v1.0-small").mkdir()  # a release folder nested in one of the same name
    assert chexpert_image_paths(release, [cell]) == [str(release.absolute() / cell)]
