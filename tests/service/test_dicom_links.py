"""A study screened with DICOM results links its report, overlay and key object; only recorded files are
served."""

from __future__ import annotations

import io

import pydicom
from sqlalchemy import select
from tests.screening.factories import dicom_bytes, run_cli

from cxreader.storage.db import open_database
from cxreader.storage.tables import Image


def test_study_lists_and_serves_its_dicom_objects(make_service, tiny_checkpoint, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "chest.dcm").write_bytes(dicom_bytes(seed=21, size=(96, 80)))
    database_path = tmp_path / "records.sqlite3"
    assert (
        run_cli(
            [
                "screen",
                str(folder),
                "--checkpoint",
                str(tiny_checkpoint),
                "--db",
                str(database_path),
                "--dicom-out",
                str(tmp_path / "dicom-out"),
                "--no-progress",
            ]
        )
        == 0
    )
    database = open_database(str(database_path))
    with database.session() as session:
        image_id = session.scalars(select(Image.id)).one()
    database.close()

    service = make_service()
    study = service.client.get(f"/api/studies/{image_id}").json()
    kinds = {item["kind"]: item for item in study["dicom_objects"]}
    assert set(kinds) == {"sr", "overlay", "kos"}
    for kind, item in kinds.items():
        assert item["url"] == f"/api/studies/{image_id}/dicom/{kind}.dcm"
        answer = service.client.get(item["url"])
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "application/dicom"
        dataset = pydicom.dcmread(io.BytesIO(answer.content))
        assert dataset.SOPInstanceUID == item["sop_instance_uid"]
    assert service.client.get(f"/api/studies/{image_id}/dicom/other.dcm").status_code == 422
    assert service.client.get(f"/api/studies/{image_id + 1}/dicom/sr.dcm").status_code == 404
    (tmp_path / "dicom-out").rename(tmp_path / "moved")
    assert service.client.get(f"/api/studies/{image_id}/dicom/sr.dcm").status_code == 404
    assert (
        service.client.get(f"/api/studies/{image_id}/dicom/sr.dcm", headers={"Authorization": ""}).status_code
        == 401
    )
