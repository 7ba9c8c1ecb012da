"""DICOM results of a model of the harmonised label space: every finding of the model coded, the report read
back with the canonical names, the new organs as finding sites; valid for dciodvfy."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import pydicom
import pytest
from tests.screening.factories import dicom_bytes, write_checkpoint

from cxreader.dicom import codes
from cxreader.dicom.identifiers import result_instance_uid, result_series_uid
from cxreader.dicom.outputs import DicomOutputs, algorithm_of
from cxreader.dicom.report import Algorithm, finding_sites, measurement_report, read_report
from cxreader.inference.backends import load_backend
from cxreader.labels import HARMONISED_LABELS
from cxreader.screening.engine import screen
from cxreader.storage.db import open_database
from cxreader.storage.records import FindingResult, ImageResult, StudyInfo

ALGORITHM = Algorithm(name="densenet_small", version="1.0", checkpoint_sha256="ab" * 32, synthetic=True)


def test_every_finding_of_the_label_space_has_a_code_both_ways():
    assert list(codes.FINDING_CODES) == list(HARMONISED_LABELS)
    for name in HARMONISED_LABELS:
        assert codes.finding_name(codes.finding_code(name)) == name
    assert (
        codes.finding_code("Lung Opacity")
        == codes.finding_code("Lung_Opacity")
        == codes.FINDING_CODES["Lung_Opacity"]
    )
    assert codes.finding_code("support devices") == codes.FINDING_CODES["Support_Devices"]


def test_the_new_organs_are_finding_sites():
    (bone,) = finding_sites({"side": "left", "zone": None, "organ": "bone"})
    assert codes.same_code(bone.value, codes.ORGAN_CODES["bone"])
    assert codes.side_name(bone.laterality) == "left"
    (mediastinum,) = finding_sites({"side": "midline", "zone": None, "organ": "mediastinum"})
    assert codes.same_code(mediastinum.value, codes.ORGAN_CODES["mediastinum"])
    assert finding_sites({"side": None, "zone": None, "organ": "device"}) == []


def _source() -> pydicom.Dataset:
    return pydicom.dcmread(io.BytesIO(dicom_bytes(size=(400, 320))), stop_before_pixels=True)


def test_a_report_of_nineteen_findings_reads_back_in_canonical_order():
    source = _source()
    descriptions = {
        "Fracture": {
            "side": "right",
            "zone": None,
            "organ": "bone",
            "size_cm": None,
            "sentence": "Right-sided fracture.",
        },
        "Support_Devices": {"side": None, "zone": None, "organ": "device", "size_cm": None},
        "Lung_Opacity": {"side": "left", "zone": "lower", "organ": "lung", "size_cm": 3.1},
    }
    findings = [
        FindingResult(
            name,
            0.9 if name in descriptions else 0.1,
            0.5,
            description_data={"finding": name, **descriptions[name]} if name in descriptions else None,
            box=(20, 30, 40, 50) if name == "Lung_Opacity" else None,
        )
        for name in reversed(HARMONISED_LABELS)  # any order in: the report's order is canonical
    ]
    result = ImageResult(
        source_path="x.dcm",
        content_sha256="0" * 64,
        checkpoint_id=1,
        findings=findings,
        study=StudyInfo(study_instance_uid=str(source.StudyInstanceUID)),
        pixel_spacing=(0.2, 0.25),
    )
    report = measurement_report(
        source,
        result,
        algorithm=ALGORITHM,
        series_instance_uid=result_series_uid(source.StudyInstanceUID, ALGORITHM.checkpoint_sha256, "sr"),
        sop_instance_uid=result_instance_uid(source.SOPInstanceUID, ALGORITHM.checkpoint_sha256, "sr"),
    )
    buffer = io.BytesIO()
    report.save_as(buffer, enforce_file_format=True)
    contents = read_report(pydicom.dcmread(io.BytesIO(buffer.getvalue())))
    assert [item.finding for item in contents.all_findings] == list(HARMONISED_LABELS)
    assert [item.finding for item in contents.findings] == ["Lung_Opacity", "Fracture", "Support_Devices"]
    by_name = {item.finding: item for item in contents.findings}
    assert by_name["Lung_Opacity"].box == (20, 30, 40, 50) and by_name["Lung_Opacity"].side == "left"
    assert by_name["Fracture"].side == "right" and by_name["Support_Devices"].side is None


@pytest.fixture(scope="module")
def screened(tmp_path_factory) -> Path:
    """The DICOM objects ``screen --dicom-out`` wrote for one CR image read by a 19-label model."""
    root = tmp_path_factory.mktemp("h19")
    model = write_checkpoint(root / "h19.pt", labels=HARMONISED_LABELS, always_positive="Fracture")
    (root / "in").mkdir()
    (root / "in" / "chest.dcm").write_bytes(dicom_bytes(seed=1, size=(96, 80)))
    backend = load_backend(model, device="cpu")
    database = open_database(str(root / "records.sqlite3"))
    sink = DicomOutputs(algorithm=algorithm_of(backend), out_dir=root / "out")
    report = screen([root / "in"], backend=backend, database=database, progress=False, sink=sink)
    database.close()
    assert report.screened == 1 and sink.written == 3  # report, overlay, key object (Fracture is urgent)
    return root / "out"


def test_screening_with_dicom_out_reports_every_finding_of_the_model(screened):
    reports = [path for path in screened.rglob("*.dcm") if pydicom.dcmread(path).Modality == "SR"]
    (path,) = reports
    contents = read_report(pydicom.dcmread(path))
    assert [item.finding for item in contents.all_findings] == list(HARMONISED_LABELS)
    assert [item.finding for item in contents.findings] == ["Fracture"]


def test_the_objects_of_a_nineteen_label_model_pass_dciodvfy(screened, dciodvfy):
    for path in sorted(screened.rglob("*.dcm")):
        checked = subprocess.run([dciodvfy, str(path)], capture_output=True, text=True, check=False)
        errors = [line for line in checked.stderr.splitlines() if line.startswith("Error")]
        assert not errors, (path.name, checked.stderr)
