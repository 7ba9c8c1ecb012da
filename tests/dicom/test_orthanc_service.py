"""The test PACS itself: what the cxreader DICOM tests rely on, checked against the configured Orthanc.

STOW-RS stores, QIDO-RS finds by study UID and by modality and date range, WADO-RS returns the same instance
and pixels, and a plain DICOM C-STORE lands too. Skipped without an Orthanc (``.ci/orthanc.sh start``).
"""

from __future__ import annotations

import io
import subprocess
from datetime import date
from pathlib import Path

import numpy as np
import pydicom
from dicomweb_client.api import DICOMwebClient
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import DigitalXRayImageStorageForPresentation, Verification
from tests.screening.factories import dicom_bytes

STUDY_UID = "0020000D"
SOP_INSTANCE_UID = "00080018"


def make_dataset(**kwargs) -> pydicom.Dataset:
    """A small DX image of a study of its own (unless ``study_uid`` is given)."""
    kwargs.setdefault("modality", "DX")
    kwargs.setdefault("study_uid", generate_uid())
    return pydicom.dcmread(io.BytesIO(dicom_bytes(**kwargs)))


def values(results: list[dict], tag: str) -> set[str]:
    """The first value of ``tag`` in each DICOM JSON result of a QIDO-RS search."""
    return {result[tag]["Value"][0] for result in results}


def test_stow_rs_stores_and_qido_rs_finds_by_study_uid(orthanc):
    client = DICOMwebClient(url=orthanc.dicomweb_url)
    dataset = make_dataset()

    response = client.store_instances([dataset])

    assert [item.ReferencedSOPInstanceUID for item in response.ReferencedSOPSequence] == [
        dataset.SOPInstanceUID
    ]
    assert not response.get("FailedSOPSequence")
    # Retrieve URLs name the server's real port (DicomWeb.Host: dicomweb-client's Host header drops it).
    assert response.RetrieveURL.startswith(f"{orthanc.dicomweb_url}/studies/{dataset.StudyInstanceUID}")
    studies = client.search_for_studies(search_filters={"StudyInstanceUID": dataset.StudyInstanceUID})
    assert values(studies, STUDY_UID) == {dataset.StudyInstanceUID}
    instances = client.search_for_instances(study_instance_uid=dataset.StudyInstanceUID)
    assert values(instances, SOP_INSTANCE_UID) == {dataset.SOPInstanceUID}
    assert orthanc.sop_instance_uids_of_study(dataset.StudyInstanceUID) == {dataset.SOPInstanceUID}


def test_qido_rs_finds_by_modality_and_study_date_range(empty_orthanc):
    client = DICOMwebClient(url=empty_orthanc.dicomweb_url)
    wanted = make_dataset(study_date=date(2031, 5, 2), seed=1)
    too_late = make_dataset(study_date=date(2031, 6, 1), seed=2)
    not_dx = make_dataset(modality="CR", study_date=date(2031, 5, 20), seed=3)
    client.store_instances([wanted, too_late, not_dx])

    studies = client.search_for_studies(
        search_filters={"ModalitiesInStudy": "DX", "StudyDate": "20310501-20310531"}
    )
    series = client.search_for_series(search_filters={"Modality": "DX", "StudyDate": "20310501-20310531"})
    instances = client.search_for_instances(
        search_filters={"Modality": "DX", "StudyDate": "20310501-20310531"}
    )

    assert values(studies, STUDY_UID) == {wanted.StudyInstanceUID}
    assert values(series, STUDY_UID) == {wanted.StudyInstanceUID}
    assert values(instances, SOP_INSTANCE_UID) == {wanted.SOPInstanceUID}
    everything = client.search_for_studies(search_filters={"StudyDate": "20310501-"})
    assert values(everything, STUDY_UID) == {d.StudyInstanceUID for d in (wanted, too_late, not_dx)}


def test_wado_rs_returns_the_stored_instance_and_pixels(orthanc):
    client = DICOMwebClient(url=orthanc.dicomweb_url)
    dataset = make_dataset(seed=4)
    client.store_instances([dataset])

    retrieved = client.retrieve_instance(
        study_instance_uid=dataset.StudyInstanceUID,
        series_instance_uid=dataset.SeriesInstanceUID,
        sop_instance_uid=dataset.SOPInstanceUID,
    )
    metadata = client.retrieve_study_metadata(study_instance_uid=dataset.StudyInstanceUID)

    assert retrieved.SOPInstanceUID == dataset.SOPInstanceUID
    assert retrieved.Modality == "DX"
    np.testing.assert_array_equal(retrieved.pixel_array, dataset.pixel_array)
    assert values(metadata, SOP_INSTANCE_UID) == {dataset.SOPInstanceUID}
    stored = orthanc.get_instance_dataset(dataset.SOPInstanceUID)
    np.testing.assert_array_equal(stored.pixel_array, dataset.pixel_array)


def test_c_store_lands_in_orthanc(orthanc):
    dataset = make_dataset(seed=5)
    ae = AE(ae_title="CXREADER-TEST")
    ae.add_requested_context(Verification)
    ae.add_requested_context(DigitalXRayImageStorageForPresentation, ExplicitVRLittleEndian)

    association = ae.associate(orthanc.host, orthanc.port, ae_title=orthanc.ae_title)
    assert association.is_established, "Orthanc refused the association"
    try:
        echo = association.send_c_echo()
        status = association.send_c_store(dataset)
    finally:
        association.release()

    assert echo.Status == 0x0000
    assert status.Status == 0x0000
    assert orthanc.sop_instance_uids_of_study(dataset.StudyInstanceUID) == {dataset.SOPInstanceUID}
    stored = orthanc.get_instance_dataset(dataset.SOPInstanceUID)
    assert stored.SOPClassUID == DigitalXRayImageStorageForPresentation
    np.testing.assert_array_equal(stored.pixel_array, dataset.pixel_array)


def test_delete_study_and_lookup_of_a_missing_instance(orthanc):
    dataset = make_dataset(seed=6)
    DICOMwebClient(url=orthanc.dicomweb_url).store_instances([dataset])
    assert orthanc.instance_id(dataset.SOPInstanceUID) is not None

    orthanc.delete_study(dataset.StudyInstanceUID)

    assert orthanc.instances_of_study(dataset.StudyInstanceUID) == []
    assert orthanc.instance_id(dataset.SOPInstanceUID) is None


def test_dciodvfy_reports_what_an_incomplete_dx_lacks(dciodvfy, tmp_path: Path):
    # The factory's image carries only what screening reads: dciodvfy must call it out as an incomplete DX.
    path = tmp_path / "incomplete.dcm"
    path.write_bytes(dicom_bytes(modality="DX"))

    result = subprocess.run([dciodvfy, str(path)], capture_output=True, text=True, timeout=60)

    errors = [line for line in result.stderr.splitlines() if line.startswith("Error")]
    assert "DXImageForPresentation" in result.stderr
    assert any("<ImageType>" in line for line in errors), result.stderr
