"""Against a real Orthanc (started by ``.ci/run``; skipped without one): ``dicom pull --stow`` puts the report
and the overlay into the image's own study, and ``dicom listen --send-to`` forwards them by C-STORE."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE
from sqlalchemy import select
from tests.screening.factories import dicom_bytes, run_cli, write_checkpoint

from cxreader.dicom.node import DicomNode
from cxreader.dicom.outputs import DicomOutputs, algorithm_of
from cxreader.dicom.report import read_report
from cxreader.dicom.senders import CStoreSender, Destination
from cxreader.inference.backends import load_backend
from cxreader.storage.db import open_database
from cxreader.storage.read import get_image
from cxreader.storage.tables import Image

SR_CLASS = "1.2.840.10008.5.1.4.1.1.88.34"
SC_CLASS = "1.2.840.10008.5.1.4.1.1.7"
REAL_CR = "other/dicom/pydicom-data_RG1_UNCR_chest_CR_MONOCHROME1.dcm"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return write_checkpoint(tmp_path_factory.mktemp("model") / "tiny.pt")


def _objects_in_study(orthanc, study_uid: str) -> dict[str, pydicom.Dataset]:
    """The study's instances by SOP class."""
    found: dict[str, pydicom.Dataset] = {}
    for uid in orthanc.sop_instance_uids_of_study(study_uid):
        dataset = orthanc.get_instance_dataset(uid)
        found.setdefault(str(dataset.SOPClassUID), dataset)
    return found


def _pull(checkpoint: Path, orthanc, tmp_path: Path, capsys) -> str:
    code = run_cli(
        [
            "dicom",
            "pull",
            "--dicomweb",
            orthanc.dicomweb_url,
            "--checkpoint",
            str(checkpoint),
            "--db",
            str(tmp_path / "records.sqlite3"),
            "--spool",
            str(tmp_path / "spool"),
            "--stow",
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("source", ["generated", pytest.param("real", marks=pytest.mark.shared_data)])
def test_pull_and_stow_puts_report_and_overlay_in_the_same_study(
    source, checkpoint, empty_orthanc, request, tmp_path, capsys
):
    if source == "real":
        dataset = pydicom.dcmread(request.getfixturevalue("shared_data") / REAL_CR)
    else:
        dataset = pydicom.dcmread(io.BytesIO(dicom_bytes(modality="DX", size=(160, 128), seed=11)))
    DICOMwebClient(url=empty_orthanc.dicomweb_url).store_instances([dataset])

    out = _pull(checkpoint, empty_orthanc, tmp_path, capsys)
    assert "Listed 1 instance(s): 0 already stored, 1 retrieved" in out
    assert "Screened 1" in out

    objects = _objects_in_study(empty_orthanc, dataset.StudyInstanceUID)
    assert SR_CLASS in objects and SC_CLASS in objects
    report = read_report(objects[SR_CLASS])
    database = open_database(str(tmp_path / "records.sqlite3"))
    with database.session() as session:
        image_id = session.scalars(
            select(Image.id).where(Image.sop_instance_uid == dataset.SOPInstanceUID)
        ).one()
        record = get_image(session=session, image_id=image_id)
    database.close()
    stored = {item.finding: item for item in record.findings if item.above_threshold}
    assert stored and {item.finding for item in report.findings} == set(stored)
    for finding in report.findings:
        assert finding.probability == pytest.approx(stored[finding.finding].probability, abs=1e-6)
        assert finding.threshold == pytest.approx(stored[finding.finding].threshold, abs=1e-6)
        assert finding.box == stored[finding.finding].box
    assert objects[SC_CLASS].StudyInstanceUID == dataset.StudyInstanceUID

    again = _pull(checkpoint, empty_orthanc, tmp_path, capsys)
    assert "Listed 1 instance(s): 1 already stored, 0 retrieved" in again


def test_listen_forwards_results_to_the_pacs_by_c_store(checkpoint, empty_orthanc, tmp_path):
    backend = load_backend(checkpoint)
    database = open_database(str(tmp_path / "records.sqlite3"))
    pacs = Destination(empty_orthanc.ae_title, empty_orthanc.host, empty_orthanc.port)
    sink = DicomOutputs(algorithm=algorithm_of(backend), senders=[CStoreSender(pacs)])
    node = DicomNode(
        backend=backend,
        database=database,
        spool=tmp_path / "spool",
        sink=sink,
        host="127.0.0.1",
        port=0,
        batch_wait_s=0.1,
    )
    node.start()
    try:
        sent = pydicom.dcmread(io.BytesIO(dicom_bytes(modality="DX", size=(160, 128), seed=12)))
        ae = AE(ae_title="MODALITY")
        ae.add_requested_context(sent.SOPClassUID, ExplicitVRLittleEndian)
        association = ae.associate("127.0.0.1", node.port)
        assert association.is_established
        assert association.send_c_store(sent).Status == 0x0000
        association.release()
        deadline = time.monotonic() + 120
        objects: dict[str, pydicom.Dataset] = {}
        while time.monotonic() < deadline and SR_CLASS not in objects:
            time.sleep(0.5)
            objects = _objects_in_study(empty_orthanc, sent.StudyInstanceUID) if sink.sent else {}
        assert SR_CLASS in objects and SC_CLASS in objects
        with database.session() as session:
            status = session.scalars(
                select(Image.status).where(Image.sop_instance_uid == sent.SOPInstanceUID)
            ).one()
        assert status == "ok"
        assert sink.send_failures == 0
    finally:
        node.stop()
        database.close()
