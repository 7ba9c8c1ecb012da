"""``cxreader dicom listen``: a C-STORE SCP that screens the radiographs it receives, refuses other SOP classes
with a failure status and a record, survives aborted associations, and stops cleanly on SIGTERM."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE
from sqlalchemy import select
from tests.screening.factories import cli_command, dicom_bytes, write_checkpoint

from cxreader.dicom.node import STATUS_SOP_CLASS_NOT_SUPPORTED, DicomNode
from cxreader.dicom.outputs import DicomOutputs, algorithm_of
from cxreader.inference.backends import load_backend
from cxreader.storage.db import open_database
from cxreader.storage.dicom_objects import dicom_objects_of
from cxreader.storage.tables import Image

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return write_checkpoint(tmp_path_factory.mktemp("model") / "tiny.pt")


@pytest.fixture
def node(checkpoint, tmp_path) -> Iterator[DicomNode]:
    backend = load_backend(checkpoint)
    database = open_database(str(tmp_path / "records.sqlite3"))
    outputs = DicomOutputs(algorithm=algorithm_of(backend), out_dir=tmp_path / "out")
    running = DicomNode(
        backend=backend,
        database=database,
        spool=tmp_path / "spool",
        sink=outputs,
        host="127.0.0.1",
        port=0,
        batch_wait_s=0.1,
    )
    running.start()
    yield running
    running.stop()
    database.close()


def dataset(*, modality: str = "CR", sop_class: str | None = None, seed: int = 0) -> pydicom.Dataset:
    ds = pydicom.dcmread(io.BytesIO(dicom_bytes(modality=modality, seed=seed, size=(96, 80))))
    if sop_class is not None:
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = sop_class
    return ds


def send(port: int, *datasets: pydicom.Dataset) -> list[int]:
    ae = AE(ae_title="TESTSCU")
    for uid in sorted({str(item.SOPClassUID) for item in datasets}):
        ae.add_requested_context(uid, ExplicitVRLittleEndian)
    association = ae.associate("127.0.0.1", port, ae_title="CXREADER")
    assert association.is_established
    try:
        return [association.send_c_store(item).Status for item in datasets]
    finally:
        association.release()


def wait_for(condition, timeout_s: float = 120.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    pytest.fail("timed out waiting for the node")


def stored_rows(node: DicomNode) -> list:
    with node.database.session() as session:
        return list(
            session.execute(select(Image.id, Image.status, Image.sop_instance_uid, Image.failure_reason))
        )


def test_a_received_radiograph_is_screened_stored_and_written_as_dicom(node):
    sent = dataset(seed=1)
    assert send(node.port, sent) == [0x0000]
    rows = wait_for(lambda: [row for row in stored_rows(node) if row.sop_instance_uid == sent.SOPInstanceUID])
    assert rows[0].status == "ok"
    with node.database.session() as session:
        objects = dicom_objects_of(session=session, image_ids=[rows[0].id])[rows[0].id]
    assert {item.kind for item in objects} == {"sr", "overlay", "kos"}
    assert not any((node.spool / "pending").iterdir())
    assert (node.spool / "received").is_dir()


def test_other_sop_classes_get_a_failure_status_and_a_record(node):
    ct = dataset(modality="CT", sop_class=CT_IMAGE_STORAGE, seed=2)
    assert send(node.port, ct) == [STATUS_SOP_CLASS_NOT_SUPPORTED]
    rows = stored_rows(node)
    assert len(rows) == 1 and rows[0].status == "failed"
    assert "CT Image Storage is not a chest radiograph" in rows[0].failure_reason
    assert node.counts.refused_sop_class == 1


def test_an_aborted_association_leaves_the_node_running(node):
    ae = AE(ae_title="ABORTER")
    ae.add_requested_context("1.2.840.10008.5.1.4.1.1.1", ExplicitVRLittleEndian)
    association = ae.associate("127.0.0.1", node.port)
    assert association.is_established
    association.abort()
    # Raw garbage on the port is no association at all.
    import socket

    with socket.create_connection(("127.0.0.1", node.port), timeout=5) as raw:
        raw.sendall(b"\x01\x00not a PDU at all" * 10)
    sent = dataset(seed=3)
    assert send(node.port, sent) == [0x0000]
    wait_for(lambda: [row for row in stored_rows(node) if row.sop_instance_uid == sent.SOPInstanceUID])


def test_a_restarted_node_screens_what_was_received_but_not_screened(checkpoint, tmp_path):
    spool = tmp_path / "spool"
    (spool / "received").mkdir(parents=True)
    (spool / "pending").mkdir()
    data = dicom_bytes(seed=4, size=(96, 80))
    import hashlib

    sha = hashlib.sha256(data).hexdigest()
    (spool / "received" / f"{sha}.dcm").write_bytes(data)
    (spool / "pending" / sha).touch()
    database = open_database(str(tmp_path / "records.sqlite3"))
    node = DicomNode(
        backend=load_backend(checkpoint), database=database, spool=spool, host="127.0.0.1", port=0
    )
    node.start()
    try:
        wait_for(lambda: stored_rows(node))
        wait_for(lambda: not any((spool / "pending").iterdir()))
    finally:
        node.stop()
        database.close()


def test_listen_command_stops_cleanly_on_sigterm_and_logs_no_patient_identifier(checkpoint, tmp_path):
    ready = tmp_path / "port"
    process = subprocess.Popen(
        cli_command(
            "dicom",
            "listen",
            "--port",
            "0",
            "--host",
            "127.0.0.1",
            "--checkpoint",
            str(checkpoint),
            "--db",
            str(tmp_path / "records.sqlite3"),
            "--dicom-out",
            str(tmp_path / "out"),
            "--ready-file",
            str(ready),
            "--device",
            "cpu",
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        port = int(wait_for(lambda: ready.is_file() and ready.read_text().strip()))
        sent = [dataset(seed=5), dataset(seed=6)]
        sent[1].PatientID = "SECRET-PATIENT-42"
        sent[1].PatientName = "SECRETPATIENTNAME"  # one component: highdicom warns, quoting it (filtered)
        sent[1].PatientBirthDate = "SECRETDOB"  # invalid DA: pydicom warns, quoting it (not when reading)
        assert send(port, *sent) == [0x0000, 0x0000]
        ct = dataset(modality="CT", sop_class=CT_IMAGE_STORAGE, seed=7)
        ct.PatientID = "SECRET-PATIENT-43"
        assert send(port, ct) == [STATUS_SOP_CLASS_NOT_SUPPORTED]
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    assert "Received 2 radiograph(s)" in out and "refused 1 instance(s)" in out
    assert "screened 2" in out
    assert "SECRET-PATIENT" not in out + err and "SECRETPATIENTNAME" not in out + err
    assert "SECRETDOB" not in out + err
    assert len(list((tmp_path / "out").rglob("sr_*.dcm"))) == 2


def test_an_instance_received_twice_is_read_once(node):
    sent = dataset(seed=8)
    assert send(node.port, sent) == [0x0000]
    wait_for(lambda: node.counts.report.screened == 1)
    assert send(node.port, sent) == [0x0000]
    wait_for(lambda: node.counts.report.skipped == 1)
    assert node.counts.report.screened == 1
    assert len([row for row in stored_rows(node) if row.sop_instance_uid == sent.SOPInstanceUID]) == 1
