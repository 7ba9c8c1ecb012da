"""Uploads and their records: files only together with a record, one analysis per content, and a client that
goes away mid-upload."""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from tests.screening.factories import dicom_bytes, png_bytes
from tests.service.conftest import API_KEY, Server

from cxreader.files import sha256_bytes
from cxreader.service import analysis


def _files(root) -> list:
    return sorted(path for path in root.rglob("*") if path.is_file())


def _post(client, data: bytes, name: str = "x.png"):
    return client.post("/api/studies", files={"file": (name, data, "application/octet-stream")})


# --- files only together with their record --------------------------------------------------------------------


def test_a_failed_insert_leaves_no_files_behind(make_service, monkeypatch):
    service = make_service()

    def refuse(**kwargs):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(analysis, "add_image_result", refuse)
    response = _post(service.client, png_bytes(41))
    assert response.status_code == 500
    assert _files(service.data_dir) == []
    assert not list((service.data_dir / "heatmaps").glob("*/*"))  # the content's heatmap folder too

    monkeypatch.undo()  # the same upload once the database works: stored, with its files
    response = _post(service.client, png_bytes(41))
    assert response.status_code == 201, response.text
    sha256 = response.json()["content_sha256"]
    assert (service.data_dir / "uploads" / sha256).read_bytes() == png_bytes(41)
    assert len(list((service.data_dir / "heatmaps").glob(f"*/{sha256}/*.png"))) == 14


def test_a_failed_insert_keeps_the_files_another_record_of_the_content_uses(make_service, monkeypatch):
    service = make_service()
    data = png_bytes(42)
    sha256 = sha256_bytes(data)
    # As a record of the same content under another model left them: the upload and its display image.
    kept = {
        service.data_dir / "uploads" / sha256: data,
        service.data_dir / "display" / f"{sha256}.png": b"the display image of another record",
    }
    for path, content in kept.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)

    def refuse(**kwargs):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(analysis, "add_image_result", refuse)
    assert _post(service.client, data).status_code == 500
    assert _files(service.data_dir) == sorted(kept)
    assert all(path.read_bytes() == content for path, content in kept.items())


def test_an_undecodable_upload_writes_no_files(make_service):
    service = make_service()
    response = _post(service.client, dicom_bytes(seed=3)[:400], name="cut.dcm")  # cut off before its pixels
    assert response.status_code == 422
    assert _files(service.data_dir) == []


# --- one analysis per content ---------------------------------------------------------------------------------


def test_thirty_concurrent_uploads_of_one_new_image_analyse_it_once(make_service, monkeypatch):
    service = make_service(max_concurrent_decodes=4)
    calls, guard = [], threading.Lock()
    real_classify = analysis.classify_batch

    def counting_classify(*args, **kwargs):
        with guard:
            calls.append(1)
        return real_classify(*args, **kwargs)

    monkeypatch.setattr(analysis, "classify_batch", counting_classify)
    data = png_bytes(4242)
    with ThreadPoolExecutor(max_workers=30) as pool:
        responses = list(pool.map(lambda _: _post(service.client, data), range(30)))
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [200] * 29 + [201], [r.text for r in responses if r.status_code not in (200, 201)]
    assert [response.json()["created"] for response in responses].count(True) == 1
    assert len({response.json()["id"] for response in responses}) == 1
    assert len(calls) == 1, f"the model read the same image {len(calls)} times"
    assert len(service.app.state.cxreader.content_locks) == 0  # no lock outlives its uploads


def test_thirty_concurrent_uploads_of_one_new_image_on_the_real_server(server: Server):
    data = png_bytes(4343)

    def send(_):
        with server.client() as client:
            return client.post("/api/studies", headers=server.headers, files={"file": ("x.png", data)})

    with ThreadPoolExecutor(max_workers=30) as pool:
        responses = list(pool.map(send, range(30)))
    assert sorted(response.status_code for response in responses) == [200] * 29 + [201]
    assert [response.json()["created"] for response in responses].count(True) == 1


# --- a client that goes away ----------------------------------------------------------------------------------


def _disconnecting_upload(app, content_type: str, first_part: bytes) -> list[dict]:
    """Send the app an upload whose client disconnects after ``first_part``; returns what the app sent."""
    messages = [
        {"type": "http.request", "body": first_part, "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[dict] = []

    async def receive() -> dict:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/studies",
        "raw_path": b"/api/studies",
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"testserver"),
            (b"authorization", f"Bearer {API_KEY}".encode()),
            (b"content-type", content_type.encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    asyncio.run(app(scope, receive, send))
    return sent


@pytest.mark.parametrize("content_type", ["application/dicom", "multipart/form-data; boundary=XyZ"])
def test_a_client_that_disconnects_mid_upload_is_one_log_line(make_service, caplog, content_type):
    service = make_service()
    data = dicom_bytes(patient_id="PAT-GONE-77", seed=9)
    if content_type.startswith("multipart"):
        data = (
            b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="study.dcm"\r\n'
            b"Content-Type: application/dicom\r\n\r\n" + data
        )
    with caplog.at_level(logging.DEBUG):
        _disconnecting_upload(service.app, content_type, data[: len(data) - 100])
    assert [record.levelno for record in caplog.records if record.levelno >= logging.ERROR] == []
    lines = [record for record in caplog.records if "disconnected" in record.getMessage()]
    assert len(lines) == 1 and lines[0].levelno in (logging.INFO, logging.WARNING)
    assert lines[0].exc_info is None and "\n" not in lines[0].getMessage()
    assert "PAT-GONE-77" not in caplog.text
    assert _files(service.data_dir) == []
