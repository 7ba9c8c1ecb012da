"""MIMIC-CXR-JPG tables (Johnson et al. 2019): the three-table join, image paths, splits, bad headers."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from cxreader.data import mimic
from cxreader.data.harmonise import load_dataset_splits
from cxreader.data.label_maps import UncertaintyPolicy
from cxreader.data.label_stats import COUNT_KINDS
from cxreader.data.mimic import (
    MIMIC_LABELS,
    image_path,
    mimic_summaries,
    read_mimic,
    read_mimic_labels_file,
    read_mimic_root,
)
from cxreader.errors import DataError

#: The headers of the MIMIC-CXR-JPG 2.0.0 tables, verbatim.
LABELS_HEADER = (
    "subject_id,study_id,Atelectasis,Cardiomegaly,Consolidation,Edema,Enlarged Cardiomediastinum,Fracture,"
    "Lung Lesion,Lung Opacity,No Finding,Pleural Effusion,Pleural Other,Pneumonia,Pneumothorax,Support Devices"
)
METADATA_HEADER = (
    "dicom_id,subject_id,study_id,PerformedProcedureStepDescription,ViewPosition,Rows,Columns,StudyDate,"
    "StudyTime,ProcedureCodeSequence_CodeMeaning,ViewCodeSequence_CodeMeaning,"
    "PatientOrientationCodeSequence_CodeMeaning"
)
SPLIT_HEADER = "dicom_id,study_id,subject_id,split"

D1 = "02aa804e-bde0afdd-112c0b34-7bc16630-4e384014"
D2 = "174413ec-4ec4c1f7-34ea26b7-c5f994f8-79ef1962"
D3 = "2a2277a9-b0ded155-c0de8eb9-c124d10e-82c5caab"
D4 = "68b5c4b1-227d0485-9cc38c3f-7b84ab51-4b472714"
D5 = "fffabebf-74fd3a1f-673b6b41-96ec0ac9-2ab69818"
LABELS_ROWS = (
    "10000032,50414267,,,,,,,,,1.0,,,,,",
    "10000032,53189527,,-1.0,,,,,,,,1.0,,,0.0,",
    "11000011,50000001,1.0,1.0,,0.0,,,,,,,,-1.0,,1.0",
)
METADATA_ROWS = (
    f"{D1},10000032,50414267,CHEST (PA AND LAT),PA,3056,2544,21800506,213014.531,CHEST (PA AND LAT),"
    "postero-anterior,Erect",
    f"{D2},10000032,50414267,CHEST (PA AND LAT),LATERAL,3056,2544,21800506,213014.531,CHEST (PA AND LAT),"
    "lateral,Erect",
    f"{D3},10000032,53189527,CHEST (PA AND LAT),PA,3056,2544,21800626,165500.312,CHEST (PA AND LAT),"
    "postero-anterior,Erect",
    f"{D4},11000011,50000001,CHEST (PORTABLE AP),AP,2544,3056,21960101,010101.000,CHEST (PORTABLE AP),"
    "antero-posterior,Recumbent",
    f"{D5},11000011,59999999,CHEST (PORTABLE AP),AP,2544,3056,21960102,010101.000,CHEST (PORTABLE AP),"
    "antero-posterior,Recumbent",
)
SPLIT_ROWS = (
    f"{D1},50414267,10000032,train",
    f"{D2},50414267,10000032,train",
    f"{D3},53189527,10000032,train",
    f"{D4},50000001,11000011,test",
    f"{D5},59999999,11000011,test",
)


def write(path: Path, header: str, rows: tuple[str, ...]) -> Path:
    text = header + "\n" + "\n".join(rows) + "\n"
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


@pytest.fixture
def tables(tmp_path: Path) -> tuple[Path, Path, Path]:
    return (
        write(tmp_path / "mimic-cxr-2.0.0-chexpert.csv.gz", LABELS_HEADER, LABELS_ROWS),
        write(tmp_path / "mimic-cxr-2.0.0-metadata.csv.gz", METADATA_HEADER, METADATA_ROWS),
        write(tmp_path / "mimic-cxr-2.0.0-split.csv", SPLIT_HEADER, SPLIT_ROWS),
    )


def test_image_path() -> None:
    assert image_path(10000032, 50414267, D1) == f"files/p10/p10000032/s50414267/{D1}.jpg"
    assert image_path(19999987, 58971208, "abc") == "files/p19/p19999987/s58971208/abc.jpg"


def test_join_paths_and_labels(tables: tuple[Path, Path, Path]) -> None:
    frame = read_mimic(*tables)
    assert frame["dicom_id"].tolist() == [D1, D2, D3, D4, D5]
    assert frame["path"].iloc[3] == f"files/p11/p11000011/s50000001/{D4}.jpg"
    assert frame["split"].tolist() == ["train", "train", "train", "test", "test"]
    assert frame["frontal"].tolist() == [True, False, True, True, True]
    # both images of study 50414267 carry its labels; study 59999999 has no label row: all unmentioned
    assert frame["No Finding"].tolist()[:2] == [1.0, 1.0]
    assert frame["Cardiomegaly"].iloc[2] == -1.0 and frame["Pneumothorax"].iloc[2] == 0.0
    assert all(np.isnan(frame[label].iloc[4]) for label in MIMIC_LABELS)


def test_summaries_per_split(tables: tuple[Path, Path, Path]) -> None:
    summaries = mimic_summaries(read_mimic(*tables))
    assert list(summaries) == ["train", "test"]
    train, test = summaries["train"], summaries["test"]
    assert (train.images, train.patients, train.frontal) == (3, 1, 2)
    assert (test.images, test.patients, test.frontal) == (2, 1, 2)
    cardiomegaly = train.labels["Cardiomegaly"]
    assert (
        cardiomegaly.positive,
        cardiomegaly.negative,
        cardiomegaly.uncertain,
        cardiomegaly.unmentioned,
    ) == (
        0,
        0,
        1,
        2,
    )
    assert test.labels["Cardiomegaly"].positive == 1 and test.labels["Pneumonia"].uncertain == 1
    for summary in summaries.values():
        for counts in summary.labels.values():
            assert sum(getattr(counts, kind) for kind in COUNT_KINDS) == summary.images


def test_root_and_labels_file_find_the_other_tables(tables: tuple[Path, Path, Path]) -> None:
    expected = read_mimic(*tables)
    assert read_mimic_root(tables[0].parent).equals(expected)
    assert read_mimic_labels_file(tables[0]).equals(expected)


def test_missing_table_is_named(tmp_path: Path) -> None:
    write(tmp_path / "mimic-cxr-2.0.0-chexpert.csv", LABELS_HEADER, LABELS_ROWS)
    with pytest.raises(DataError, match="mimic-cxr-2.0.0-metadata.csv, mimic-cxr-2.0.0-split.csv"):
        read_mimic_root(tmp_path)


def test_wrong_header_names_file_and_columns(tables: tuple[Path, Path, Path]) -> None:
    split = write(tables[2], "dicom_id,study_id,subject,fold", SPLIT_ROWS)
    with pytest.raises(DataError) as info:
        read_mimic(*tables)
    message = str(info.value)
    assert message.startswith(str(split)) and "'subject_id'" in message and "'split'" in message


def test_split_and_metadata_must_agree(tables: tuple[Path, Path, Path]) -> None:
    rows = (SPLIT_ROWS[0].replace("50414267", "50414268"), *SPLIT_ROWS[1:])
    write(tables[2], SPLIT_HEADER, rows)
    with pytest.raises(DataError, match=f"image '{D1}': study_id differs"):
        read_mimic(*tables)


def test_duplicate_study_in_labels(tables: tuple[Path, Path, Path]) -> None:
    write(tables[0], LABELS_HEADER, (*LABELS_ROWS, LABELS_ROWS[0]))
    with pytest.raises(DataError, match="study_id 50414267 appears more than once"):
        read_mimic(*tables)


def test_reader_headers_are_the_published_ones() -> None:
    assert ",".join(mimic.LABELS_HEADER) == LABELS_HEADER
    assert ",".join(mimic.METADATA_HEADER) == METADATA_HEADER
    assert ",".join(mimic.SPLIT_HEADER) == SPLIT_HEADER
    assert set(mimic.LABELS_HEADER[2:]) == set(MIMIC_LABELS)


def test_dataset_splits_follow_the_split_table(tables: tuple[Path, Path, Path]) -> None:
    root = tables[0].parent
    splits = load_dataset_splits("mimic", root, uncertainty=UncertaintyPolicy("ones"))
    # D2 is LATERAL; D5's study has no label row (the labeler said nothing): both left out
    assert [len(split) for split in splits.values()] == [2, 0, 1]
    train, test = splits["train"], splits["test"]
    assert train.images == [image_path(10000032, 50414267, D1), image_path(10000032, 53189527, D3)]
    assert train.paths == [str(root.absolute() / image) for image in train.images]
    assert list(train.view_position) == ["PA", "PA"] and list(test.view_position) == ["AP"]
    assert set(train.patients) == {10000032} and set(test.patients) == {11000011}
    cardiomegaly = train.label_names.index("Cardiomegaly")
    assert train.labels[:, cardiomegaly].tolist() == [0.0, 1.0]  # unmentioned -> 0, uncertain -> 1 (U-Ones)
    assert np.isnan(train.labels[:, train.label_names.index("Mass")]).all()
    assert test.images == [image_path(11000011, 50000001, D4)]
    everything = load_dataset_splits("mimic", root, frontal_only=False)
    assert everything["train"].images[1] == image_path(10000032, 50414267, D2)
    assert list(everything["train"].view_position) == ["PA", "LATERAL", "PA"]


def test_validate_is_val(tables: tuple[Path, Path, Path]) -> None:
    rows = tuple(row.replace(",test", ",validate") for row in SPLIT_ROWS)
    write(tables[2], SPLIT_HEADER, rows)
    splits = load_dataset_splits("mimic", tables[0].parent)
    assert [len(split) for split in splits.values()] == [2, 1, 0]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (
            (*SPLIT_ROWS[:4], SPLIT_ROWS[4].replace(",test", ",train")),
            "subject 11000011 is in more than one split",
        ),
        ((*SPLIT_ROWS[:4], SPLIT_ROWS[4].replace(",test", ",holdout")), "split 'holdout' is not one of"),
    ],
)
def test_bad_split_table(tables: tuple[Path, Path, Path], rows: tuple[str, ...], message: str) -> None:
    write(tables[2], SPLIT_HEADER, rows)
    with pytest.raises(DataError, match=message) as info:
        load_dataset_splits("mimic", tables[0].parent)
    assert str(info.value).startswith(str(tables[2]))
