"""PadChest label table (Bustos et al. 2020): with and without the index column, malformed Labels cells."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from cxreader.data.label_stats import COUNT_KINDS
from cxreader.data.padchest import (
    PADCHEST_HEADER,
    find_padchest_table,
    malformed_count,
    padchest_image_paths,
    padchest_summaries,
    parse_labels,
    read_padchest,
)
from cxreader.errors import DataError

#: The header of the BIMCV PadChest labels CSV, verbatim (the torchxrayvision copy prefixes one empty field).
HEADER = (
    "ImageID,ImageDir,StudyDate_DICOM,StudyID,PatientID,PatientBirth,PatientSex_DICOM,ViewPosition_DICOM,"
    "Projection,MethodProjection,Pediatric,Modality_DICOM,Manufacturer_DICOM,PhotometricInterpretation_DICOM,"
    "PixelRepresentation_DICOM,PixelAspectRatio_DICOM,SpatialResolution_DICOM,BitsStored_DICOM,"
    "WindowCenter_DICOM,WindowWidth_DICOM,Rows_DICOM,Columns_DICOM,XRayTubeCurrent_DICOM,Exposure_DICOM,"
    "ExposureInuAs_DICOM,ExposureTime,RelativeXRayExposure_DICOM,ReportID,Report,MethodLabel,Labels,"
    "Localizations,LabelsLocalizationsBySentence,labelCUIS,LocalizationsCUIS"
)
_MIDDLE = (
    "Manual review of DICOM fields,No,CR,ImagingDynamicsCompanyLtd,MONOCHROME2,0,None,None,12,2092,2251,1728,"
    "1872,250,2,2500,10,-1.42,4765777, sin hallazg patolog edad pacient .,Physician"
)


def row(image: str, patient: str, projection: str, labels: str) -> str:
    view = {"PA": "POSTEROANTERIOR", "L": "LATERAL"}.get(projection, "None")
    return (
        f"{image}.png,0,20140915,{image},{patient},1930.0,F,{view},{projection},{_MIDDLE},{labels},[],"
        f"\"[['normal']]\",[],[]"
    )


ROWS = (
    row("img1", "pat1", "PA", "['normal']"),
    row("img2", "pat1", "L", "\"['cardiomegaly', 'pleural effusion']\""),
    row("img3", "pat2", "AP_horizontal", "\"['pleural effusion', 'pleural effusion', ' cardiomegaly ']\""),
    row("img4", "pat3", "COSTAL", "['']"),
    row("img5", "pat3", "AP", ""),  # malformed: empty
    row("img6", "pat4", "PA", "['cardiomegaly'"),  # malformed: unterminated list
)


def write(path: Path, *, index: bool, header: str = HEADER, rows: tuple[str, ...] = ROWS) -> Path:
    lines = [("," if index else "") + header]
    lines += [(f"{number}," if index else "") + text for number, text in enumerate(rows)]
    text = "\n".join(lines) + "\n"
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("['normal']", ("normal",)),
        ("['cardiomegaly', 'pleural effusion']", ("cardiomegaly", "pleural effusion")),
        ("[]", ()),
        ("['a', 'a', ' ']", ("a",)),
        ("", None),
        ("nan", None),
        ("['a'", None),
        ("[1, 2]", None),
        ("'normal'", None),
        ("__import__('os').system('true')", None),
        (None, None),
    ],
)
def test_parse_labels(text: object, expected: tuple[str, ...] | None) -> None:
    assert parse_labels(text) == expected


@pytest.mark.parametrize("index", [False, True])
def test_read_with_and_without_index_column(tmp_path: Path, index: bool) -> None:
    frame = read_padchest(write(tmp_path / "padchest.csv.gz", index=index))
    assert frame["ImageID"].tolist() == [f"img{n}.png" for n in range(1, 7)]
    assert frame["labels"].tolist() == [
        ("normal",),
        ("cardiomegaly", "pleural effusion"),
        ("pleural effusion", "cardiomegaly"),
        (),
        None,
        None,
    ]
    assert frame["frontal"].tolist() == [True, False, True, False, True, True]
    assert malformed_count(frame) == 2


def test_summary_counts_listed_names(tmp_path: Path) -> None:
    summaries = padchest_summaries(read_padchest(write(tmp_path / "padchest.csv", index=True)))
    assert list(summaries) == ["all"]
    summary = summaries["all"]
    assert (summary.images, summary.patients, summary.frontal) == (6, 4, 4)
    assert list(summary.labels) == ["cardiomegaly", "pleural effusion", "normal"]
    cardiomegaly = summary.labels["cardiomegaly"]
    assert (
        cardiomegaly.positive,
        cardiomegaly.negative,
        cardiomegaly.uncertain,
        cardiomegaly.unmentioned,
    ) == (
        2,
        0,
        0,
        4,
    )
    for counts in summary.labels.values():
        assert sum(getattr(counts, kind) for kind in COUNT_KINDS) == summary.images


def test_missing_columns_are_named(tmp_path: Path) -> None:
    header = HEADER.replace("PatientID", "Patient").replace(",Labels,", ",Findings,")
    path = write(tmp_path / "padchest.csv", index=False, header=header)
    with pytest.raises(DataError) as info:
        read_padchest(path)
    message = str(info.value)
    assert message.startswith(str(path)) and "PadChest" in message and "\n" not in message
    assert "'PatientID'" in message and "'Labels'" in message


def test_find_table(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no PadChest table"):
        find_padchest_table(tmp_path)
    path = write(tmp_path / "PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv.gz", index=True)
    assert find_padchest_table(tmp_path) == path


@pytest.mark.shared_data
def test_real_padchest_counts_are_consistent(shared_data: Path) -> None:
    path = shared_data / "meta" / "PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv.gz"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    frame = read_padchest(path)
    assert len(frame) == 160_861 and malformed_count(frame) == 103
    summary = padchest_summaries(frame)["all"]
    assert summary.images == len(frame) and 0 < summary.patients <= summary.images
    assert 0 < summary.frontal <= summary.images
    assert "cardiomegaly" in summary.labels and "normal" in summary.labels
    for counts in summary.labels.values():
        assert counts.negative == counts.uncertain == 0
        assert counts.positive + counts.unmentioned == summary.images


def test_reader_header_is_the_published_one() -> None:
    assert ",".join(PADCHEST_HEADER) == HEADER


def test_image_paths_in_either_layout(tmp_path: Path) -> None:
    frame = read_padchest(write(tmp_path / "padchest.csv", index=False))
    assert padchest_image_paths(tmp_path, frame)[0] == str(tmp_path.absolute() / "0" / "img1.png")
    (tmp_path / "images" / "0").mkdir(parents=True)
    assert padchest_image_paths(tmp_path, frame)[0] == str(tmp_path.absolute() / "images" / "0" / "img1.png")
    (tmp_path / "images" / "0").rmdir()
    assert padchest_image_paths(tmp_path, frame)[0] == str(tmp_path.absolute() / "images" / "img1.png")
