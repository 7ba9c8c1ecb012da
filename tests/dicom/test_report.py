"""The TID 1500 Measurement Report: written from a result, read back, in the source's study; and the codes."""

from __future__ import annotations

import io

import highdicom as hd
import pydicom
import pytest
from pydicom import Dataset
from pydicom.sr.codedict import codes as dicom_codes
from pydicom.uid import Comprehensive3DSRStorage
from tests.screening.factories import dicom_bytes

from cxreader import DISCLAIMER
from cxreader.dicom import codes
from cxreader.dicom.identifiers import result_instance_uid, result_series_uid
from cxreader.dicom.report import Algorithm, measurement_report, read_report
from cxreader.labels import FINDINGS
from cxreader.storage.records import FindingResult, ImageResult, StudyInfo

ALGORITHM = Algorithm(name="densenet121", version="0.9.0", checkpoint_sha256="5e" * 32, synthetic=False)
THRESHOLD = 0.42
#: The positive findings of :func:`read_result`: (probability, box, description).
POSITIVES = {
    "Effusion": (
        0.873456,
        (30, 250, 110, 80),
        {"side": "right", "zone": "lower", "organ": "pleura", "size_cm": 4.2, "sentence": "Right effusion."},
    ),
    "Pneumothorax": (
        0.912345,
        (200, 20, 60, 90),
        {
            "side": "left",
            "zone": "upper",
            "organ": "pleura",
            "size_cm": 2.3,
            "sentence": "Left pneumothorax.",
        },
    ),
    "Cardiomegaly": (0.66, None, {"side": "midline", "zone": "cardiac", "organ": "heart", "size_cm": None}),
}


def source_header(*, study_uid: str | None = None, seed: int = 0, complete: bool = False) -> Dataset:
    """A screened CR image's header as a screening run reads it (no pixels); ``complete`` adds what a modality
    usually sends beyond the factory's minimal header."""
    header = pydicom.dcmread(
        io.BytesIO(dicom_bytes(size=(400, 320), seed=seed, study_uid=study_uid)), stop_before_pixels=True
    )
    if complete:
        header.PatientName = "Test^Patient"
        header.StudyTime = "101500"
        header.StudyID = "S1"
        header.AccessionNumber = "A1"
        header.BodyPartExamined = "CHEST"
        header.PatientOrientation = ["L", "F"]
    return header


def finding(name: str, probability: float, *, box=None, description=None) -> FindingResult:
    data = (
        None
        if description is None
        else {"finding": name, "probability": probability, "box": box, **description}
    )
    return FindingResult(
        finding=name, probability=probability, threshold=THRESHOLD, description_data=data, box=box
    )


def read_result(
    source: Dataset,
    *,
    positives: dict = POSITIVES,
    synthetic: bool = False,
    pixel_spacing: tuple[float, float] | None = (0.2, 0.25),
    with_descriptions: bool = True,
) -> ImageResult:
    """An image the model read: the findings of ``positives`` above threshold, the others below."""
    findings = []
    for index, name in enumerate(FINDINGS):
        if name in positives:
            probability, box, description = positives[name]
            findings.append(
                finding(name, probability, box=box, description=description if with_descriptions else None)
            )
        else:
            findings.append(finding(name, 0.01 + 0.02 * index))
    return image_result(source, findings=findings, synthetic=synthetic, pixel_spacing=pixel_spacing)


def refused_result(source: Dataset) -> ImageResult:
    return image_result(
        source,
        findings=[],
        refused=(
            "lateral view (LL): the model reads frontal (PA/AP) radiographs only",
            "unlike the images the model was trained on (out-of-distribution score 31.0 > 12.0)",
        ),
        gate_score=31.0,
        gate_threshold=12.0,
    )


def image_result(source: Dataset, **fields) -> ImageResult:
    fields.setdefault("pixel_spacing", (0.2, 0.25))
    return ImageResult(
        source_path="study/image.dcm",
        content_sha256="0" * 64,
        checkpoint_id=1,
        study=StudyInfo(patient_id=str(source.PatientID), study_instance_uid=str(source.StudyInstanceUID)),
        sop_instance_uid=str(source.SOPInstanceUID),
        modality="CR",
        width=int(source.Columns),
        height=int(source.Rows),
        **fields,
    )


def report_of(
    source: Dataset, result: ImageResult, algorithm: Algorithm = ALGORITHM
) -> hd.sr.Comprehensive3DSR:
    return measurement_report(
        source,
        result,
        algorithm=algorithm,
        series_instance_uid=result_series_uid(source.StudyInstanceUID, algorithm.checkpoint_sha256, "sr"),
        sop_instance_uid=result_instance_uid(source.SOPInstanceUID, algorithm.checkpoint_sha256, "sr"),
    )


def written(dataset: Dataset) -> Dataset:
    """The dataset as a PACS receives it: written as a Part 10 file and read back."""
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, dataset, enforce_file_format=True)
    buffer.seek(0)
    return pydicom.dcmread(buffer)


@pytest.fixture(scope="module")
def standard() -> tuple[Dataset, ImageResult, Dataset]:
    """A source, the result of reading it (:data:`POSITIVES`) and its report as a PACS receives it."""
    source = source_header()
    result = read_result(source)
    return source, result, written(report_of(source, result))


def test_positive_findings_round_trip_with_boxes_and_sides(standard) -> None:
    contents = read_report(standard[2])

    positives = {item.finding: item for item in contents.findings}
    assert set(positives) == set(POSITIVES)
    for name, (probability, box, description) in POSITIVES.items():
        item = positives[name]
        assert item.probability == pytest.approx(probability, abs=1e-6)
        assert item.threshold == pytest.approx(THRESHOLD, abs=1e-6)
        assert item.box == box
        assert item.side == (None if description["side"] == "midline" else description["side"])
    assert positives["Effusion"].size_mm == pytest.approx(42.0)


def test_every_finding_is_reported_with_its_probability(standard) -> None:
    _, result, report = standard
    contents = read_report(report)

    assert [item.finding for item in contents.all_findings] == list(FINDINGS)
    for reported, stored in zip(contents.all_findings, result.findings, strict=True):
        assert reported.probability == pytest.approx(stored.probability, abs=1e-6)
        assert reported.above_threshold == stored.above_threshold
    assert contents.refused_reasons == ()


def test_report_joins_the_source_study_in_a_series_of_its_own(standard) -> None:
    source, _, report = standard

    assert report.SOPClassUID == Comprehensive3DSRStorage
    assert report.Modality == "SR"
    assert report.StudyInstanceUID == source.StudyInstanceUID
    assert report.SeriesInstanceUID != source.SeriesInstanceUID
    assert report.SeriesInstanceUID == result_series_uid(
        source.StudyInstanceUID, ALGORITHM.checkpoint_sha256, "sr"
    )
    assert report.PatientID == source.PatientID
    assert report.SeriesNumber == 9901
    assert report.SeriesDescription == "cxreader findings (decision support)"
    assert (report.CompletionFlag, report.VerificationFlag) == ("COMPLETE", "UNVERIFIED")


def test_regions_are_closed_rectangles_in_source_pixel_coordinates(standard) -> None:
    source, _, written_report = standard
    report = hd.sr.Comprehensive3DSR.from_dataset(written_report)

    groups = report.content.get_planar_roi_measurement_groups(finding_type=dicom_codes.SCT.PleuralEffusion)
    assert len(groups) == 1
    region = groups[0].roi
    assert region.graphic_type == hd.sr.GraphicTypeValues.POLYLINE
    assert region.value.tolist() == [[30, 250], [140, 250], [140, 330], [30, 330], [30, 250]]
    assert (
        region.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    )


@pytest.mark.parametrize("synthetic_model", [False, True])
def test_algorithm_and_synthetic_flag_read_back(synthetic_model: bool) -> None:
    source = source_header()
    algorithm = Algorithm("densenet121", "0.9.0", "ab" * 32, synthetic=synthetic_model)
    report = written(report_of(source, read_result(source), algorithm))
    contents = read_report(report)

    assert contents.checkpoint_sha256 == "ab" * 32
    assert contents.synthetic is synthetic_model
    assert ("SYNTHETIC" in report.SeriesDescription) is synthetic_model


def test_synthetic_image_is_marked_even_from_a_real_model() -> None:
    source = source_header()
    report = written(report_of(source, read_result(source, synthetic=True)))

    assert read_report(report).synthetic
    assert report.SeriesDescription.startswith("SYNTHETIC")


def test_disclaimer_is_in_the_report(standard) -> None:
    report = standard[2]

    texts = hd.sr.utils.find_content_items(report, name=codes.COMMENT, recursive=True)
    assert [item.TextValue for item in texts] == [DISCLAIMER]


def test_refused_image_report_says_not_read_and_why() -> None:
    source = source_header()
    result = refused_result(source)
    report = written(report_of(source, result))
    contents = read_report(report)

    assert contents.refused_reasons == result.refused
    assert contents.findings == []
    document = hd.sr.Comprehensive3DSR.from_dataset(report)
    [group] = document.content.get_image_measurement_groups()
    [status] = group.get_qualitative_evaluations(name=codes.READING_STATUS)
    assert codes.same_code(status.value, codes.NOT_READ)
    [score] = group.get_measurements(name=codes.OUT_OF_DISTRIBUTION_SCORE)
    assert score.value == pytest.approx(31.0)


def test_below_threshold_only_gives_no_region_groups() -> None:
    source = source_header()
    report = written(report_of(source, read_result(source, positives={})))
    document = hd.sr.Comprehensive3DSR.from_dataset(report)

    assert document.content.get_planar_roi_measurement_groups() == []
    assert len(document.content.get_image_measurement_groups()) == len(FINDINGS)
    contents = read_report(report)
    assert contents.findings == []
    assert len(contents.all_findings) == len(FINDINGS)


def test_positive_findings_without_descriptions_have_no_sites_or_boxes() -> None:
    source = source_header()
    positives = {
        name: (probability, None, description) for name, (probability, _, description) in POSITIVES.items()
    }
    contents = read_report(
        written(report_of(source, read_result(source, positives=positives, with_descriptions=False)))
    )

    assert {item.finding for item in contents.findings} == set(POSITIVES)
    assert all(
        item.box is None and item.side is None and item.size_mm is None for item in contents.all_findings
    )


def test_size_needs_a_pixel_spacing() -> None:
    source = source_header()
    contents = read_report(written(report_of(source, read_result(source, pixel_spacing=None))))

    assert all(item.size_mm is None for item in contents.all_findings)


def test_a_result_with_nothing_to_report_is_refused() -> None:
    source = source_header()
    with pytest.raises(ValueError, match="nothing to report"):
        report_of(source, image_result(source, findings=[]))


def test_finding_codes_cover_every_finding_both_ways() -> None:
    for name in FINDINGS:
        assert codes.finding_name(codes.finding_code(name)) == name
    assert codes.finding_code("pleural thickening") == codes.finding_code("Pleural_Thickening")
    keys = {(code.value, code.scheme_designator) for code in codes.FINDING_CODES.values()}
    assert len(keys) == len(codes.FINDING_CODES)
    assert codes.finding_name(dicom_codes.SCT.Lung) is None


def test_finding_codes_are_standard_where_pydicom_has_them_and_private_codes_are_valid() -> None:
    assert codes.finding_code("Effusion") == dicom_codes.SCT.PleuralEffusion
    assert codes.finding_code("Edema") == dicom_codes.SCT.PulmonaryEdema
    for code in codes.FINDING_CODES.values():
        assert code.scheme_designator in {"SCT", "DCM", codes.PRIVATE_SCHEME}
        assert len(code.value) <= 16 and len(code.meaning) <= 64


def test_unknown_finding_has_no_code() -> None:
    with pytest.raises(ValueError, match="no code for finding"):
        codes.finding_code("Broken heart")


def test_result_uids_are_deterministic_and_distinct_per_kind() -> None:
    first = result_instance_uid("1.2.3", "ab" * 32, "sr")
    assert first == result_instance_uid("1.2.3", "ab" * 32, "sr")
    assert first != result_instance_uid("1.2.3", "ab" * 32, "overlay")
    assert first != result_instance_uid("1.2.3", "cd" * 32, "sr")
    assert result_series_uid("1.2.3", "ab" * 32, "kos") != result_series_uid("1.2.3", "ab" * 32, "sr")
    assert len(first) <= 64
    with pytest.raises(ValueError, match="unknown kind"):
        result_series_uid("1.2.3", "ab" * 32, "pdf")
