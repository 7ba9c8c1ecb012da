"""``screen --dicom-out``: every screened DICOM image gets its report, overlay and (on the triage list) key object
selection in its own study, recorded in the database; plain image files get none."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from sqlalchemy import select
from tests.screening.factories import dicom_bytes, png_bytes, run_cli, write_checkpoint

from cxreader.dicom.outputs import DicomOutputs, algorithm_of
from cxreader.dicom.report import read_report
from cxreader.inference.backends import load_backend
from cxreader.screening.engine import screen
from cxreader.storage.db import open_database
from cxreader.storage.dicom_objects import dicom_objects_of
from cxreader.storage.read import get_image
from cxreader.storage.tables import Image

SR_CLASS = "1.2.840.10008.5.1.4.1.1.88.34"  # Comprehensive 3D SR
SC_CLASS = "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture
KOS_CLASS = "1.2.840.10008.5.1.4.1.1.88.59"  # Key Object Selection


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return write_checkpoint(tmp_path_factory.mktemp("model") / "tiny.pt")


def _inputs(folder: Path) -> dict[str, Path]:
    folder.mkdir()
    paths = {
        "cr": folder / "chest_cr.dcm",
        "dx": folder / "chest_dx",  # no extension, as PACS exports often are
        "png": folder / "plain.png",
    }
    paths["cr"].write_bytes(dicom_bytes(seed=1, size=(96, 80)))
    paths["dx"].write_bytes(dicom_bytes(seed=2, size=(96, 80), patient_id="PAT-0002"))
    paths["png"].write_bytes(png_bytes(3, size=96))
    return paths


def test_screen_writes_report_overlay_and_key_object_in_the_source_study(checkpoint, tmp_path):
    inputs = _inputs(tmp_path / "in")
    backend = load_backend(checkpoint)
    database = open_database(str(tmp_path / "records.sqlite3"))
    sink = DicomOutputs(algorithm=algorithm_of(backend), out_dir=tmp_path / "out")
    report = screen([tmp_path / "in"], backend=backend, database=database, progress=False, sink=sink)
    assert report.screened == 3
    # The tiny model finds Pneumothorax on every image: report, overlay and key object for both DICOMs.
    assert sink.written == 6 and sink.skipped == 0

    with database.session() as session:
        ids = {row.source_path: row.id for row in session.execute(select(Image.source_path, Image.id))}
        objects = dicom_objects_of(session=session, image_ids=ids.values())
        records = {path: get_image(session=session, image_id=image_id) for path, image_id in ids.items()}
    png_id = ids[str(inputs["png"].resolve())]
    assert png_id not in objects
    for key in ("cr", "dx"):
        image_id = ids[str(inputs[key].resolve())]
        source = pydicom.dcmread(inputs[key], stop_before_pixels=True)
        kinds = {item.kind: item for item in objects[image_id]}
        assert set(kinds) == {"sr", "overlay", "kos"}
        classes = {kind: item.sop_class_uid for kind, item in kinds.items()}
        assert classes == {"sr": SR_CLASS, "overlay": SC_CLASS, "kos": KOS_CLASS}
        for item in kinds.values():
            written = pydicom.dcmread(item.path)
            assert written.StudyInstanceUID == source.StudyInstanceUID
            assert written.SeriesInstanceUID not in (source.SeriesInstanceUID,)
            assert written.PatientID == source.PatientID
            assert written.SOPInstanceUID == item.sop_instance_uid
        assert len({item.series_instance_uid for item in kinds.values()}) == 3
        contents = read_report(pydicom.dcmread(kinds["sr"].path))
        record = records[str(inputs[key].resolve())]
        stored = {f.finding: f for f in record.findings if f.above_threshold}
        assert {f.finding for f in contents.findings} == set(stored)
        for finding in contents.findings:
            assert finding.probability == pytest.approx(stored[finding.finding].probability, abs=1e-6)
            assert finding.box == stored[finding.finding].box
        assert contents.checkpoint_sha256 == backend.sha256
        assert contents.synthetic
    database.close()


def test_the_same_result_written_again_keeps_its_uids(checkpoint, tmp_path):
    """Writing a result twice (a second database, a resend) replaces the PACS copy instead of adding one."""
    inputs = _inputs(tmp_path / "in")
    backend = load_backend(checkpoint)
    uids = []
    for run in ("a", "b"):
        database = open_database(str(tmp_path / f"{run}.sqlite3"))
        sink = DicomOutputs(algorithm=algorithm_of(backend), out_dir=tmp_path / run)
        screen([inputs["cr"]], backend=backend, database=database, progress=False, sink=sink)
        database.close()
        uids.append(sorted(path.name for path in (tmp_path / run).rglob("*.dcm")))
    assert uids[0] == uids[1] and len(uids[0]) == 3


def test_a_source_whose_header_cannot_be_read_again_gets_no_objects_but_its_record(
    checkpoint, tmp_path, caplog
):
    inputs = _inputs(tmp_path / "in")
    backend = load_backend(checkpoint)
    database = open_database(str(tmp_path / "records.sqlite3"))
    sink = DicomOutputs(algorithm=algorithm_of(backend), out_dir=tmp_path / "out")

    class Broken(DicomOutputs):
        def _objects_of(self, item):
            raise ValueError("simulated writer failure")

    broken = Broken(algorithm=sink.algorithm, out_dir=tmp_path / "out")
    report = screen([inputs["cr"]], backend=backend, database=database, progress=False, sink=broken)
    assert report.screened == 1 and broken.skipped == 1
    assert "no DICOM results written: ValueError: simulated writer failure" in caplog.text
    assert "PAT-0001" not in caplog.text
    database.close()


def test_screen_command_dicom_out(checkpoint, tmp_path, capsys):
    _inputs(tmp_path / "in")
    code = run_cli(
        [
            "screen",
            str(tmp_path / "in"),
            "--checkpoint",
            str(checkpoint),
            "--db",
            str(tmp_path / "records.sqlite3"),
            "--dicom-out",
            str(tmp_path / "out"),
            "--no-progress",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert f"DICOM results: 6 object(s) written to {tmp_path / 'out'}" in out
    assert len(list((tmp_path / "out").rglob("*.dcm"))) == 6


@pytest.mark.shared_data
def test_the_objects_of_real_chest_dicoms_pass_dciodvfy(checkpoint, shared_data, dciodvfy, tmp_path):
    """What `screen --dicom-out` writes for real CR headers (pydicom-data's chest CR, SIIM's JPEG chest) has no
    dciodvfy error."""
    import shutil
    import subprocess

    folder = tmp_path / "in"
    folder.mkdir()
    for name in (
        "pydicom-data_RG1_UNCR_chest_CR_MONOCHROME1.dcm",
        "txv-tests_siim_chest_CR_jpegbaseline.dcm",
    ):
        shutil.copy(shared_data / "other" / "dicom" / name, folder / name)
    backend = load_backend(checkpoint)
    database = open_database(str(tmp_path / "records.sqlite3"))
    sink = DicomOutputs(algorithm=algorithm_of(backend), out_dir=tmp_path / "out")
    screen([folder], backend=backend, database=database, progress=False, sink=sink)
    database.close()
    written = sorted((tmp_path / "out").rglob("*.dcm"))
    assert len(written) == 6
    for path in written:
        checked = subprocess.run([dciodvfy, str(path)], capture_output=True, text=True, check=False)
        errors = [line for line in checked.stderr.splitlines() if line.startswith("Error")]
        assert not errors, (path.name, checked.stderr)


def test_invalid_patient_values_are_never_quoted_in_warnings_when_read(tmp_path):
    """pydicom quotes an invalid value in its warning (a birth date, a name): reading must not warn."""
    import io
    import warnings

    from cxreader.data.io import load_image
    from cxreader.dicom.report import evidence_header

    source = pydicom.dcmread(io.BytesIO(dicom_bytes(size=(96, 80))))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # writing the fixture warns too; only reading is under test
        source.add_new(0x00100010, "PN", "SECRETNAME^" + "X" * 70)
        source.add_new(0x00100030, "DA", "SECRETDOB")
        source.add_new(0x00101010, "AS", "62")
        buffer = io.BytesIO()
        source.save_as(buffer)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_image("chest.dcm", data=buffer.getvalue())
        header = evidence_header(pydicom.dcmread(io.BytesIO(buffer.getvalue()), stop_before_pixels=True))
    assert [str(item.message) for item in caught] == []
    assert "PatientAge" not in header  # invalid for AS: left out
