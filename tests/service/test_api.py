"""The REST API through real HTTP against a running uvicorn: keys, uploads, limits, concurrency, search."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from tests.screening.factories import ALWAYS_POSITIVE, dicom_bytes, png_bytes
from tests.service.conftest import MAX_UPLOAD_MB, Server

from cxreader.labels import FINDINGS

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def upload(
    server: Server, data: bytes, name: str = "study.png", content_type: str = "image/png"
) -> httpx.Response:
    with server.client() as client:
        return client.post("/api/studies", headers=server.headers, files={"file": (name, data, content_type)})


@pytest.fixture(scope="module")
def png_study(server) -> dict:
    response = upload(server, png_bytes(1000))
    assert response.status_code in (200, 201), response.text
    return response.json()


# --- keys -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/model"),
        ("GET", "/api/studies"),
        ("POST", "/api/studies"),
        ("GET", "/api/studies/1"),
        ("GET", "/api/studies/1/image.png"),
        ("GET", "/api/studies/1/heatmap/Effusion.png"),
        ("GET", "/openapi.json"),
    ],
)
@pytest.mark.parametrize(
    "authorization", [None, "Bearer wrong-key-0123456789", "Basic dGVzdDp0ZXN0", "Bearer"]
)
def test_nothing_but_health_answers_without_a_valid_key(server, method, path, authorization):
    headers = {"Authorization": authorization} if authorization is not None else {}
    with server.client() as client:
        response = client.request(
            method,
            path,
            headers=headers,
            files={"file": ("a.png", png_bytes(1))} if method == "POST" else None,
        )
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert "API key" in response.json()["detail"]


def test_health_and_the_page_answer_without_a_key(server):
    with server.client() as client:
        assert client.get("/health").json()["status"] == "ok"
        page = client.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert "not a certified medical device" in page.text
        assert client.get("/static/app.js").status_code == 200
        assert client.get("/docs").status_code == 200  # the docs shell; its OpenAPI document needs the key


def test_any_configured_key_works_and_openapi_lists_the_routes(server):
    with server.client() as client:
        response = client.get("/openapi.json", headers={"Authorization": "Bearer another-key-0123456789"})
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert {
        "/health",
        "/api/studies",
        "/api/studies/{study_id}",
        "/api/studies/{study_id}/heatmap/{finding}.png",
    } <= set(paths)
    assert "multipart/form-data" in paths["/api/studies"]["post"]["requestBody"]["content"]


# --- uploads --------------------------------------------------------------------------------------------------


def test_upload_returns_findings_descriptions_and_links(server, png_study):
    study = png_study
    assert study["created"] is True and study["status"] == "ok"
    assert study["synthetic"] is True  # the test model is marked as trained on synthetic data
    assert [item["finding"] for item in study["findings"]] != [] and len(study["findings"]) == 14
    assert {item["finding"] for item in study["findings"]} == set(FINDINGS)
    probabilities = [item["probability"] for item in study["findings"]]
    assert probabilities == sorted(probabilities, reverse=True)
    assert study["positive_findings"] == [ALWAYS_POSITIVE]
    positive = next(item for item in study["findings"] if item["finding"] == ALWAYS_POSITIVE)
    assert positive["above_threshold"] and positive["threshold"] == 0.0
    # the server runs with a learned captioner: the positive finding has its caption, the others none
    assert positive["caption"] and all(
        item["caption"] is None for item in study["findings"] if item["finding"] != ALWAYS_POSITIVE
    )
    assert study["links"]["self"] == f"/api/studies/{study['id']}"
    assert "not a certified medical device" in study["disclaimer"]
    assert "pneumothorax" in positive["description"].lower()
    assert positive["heatmap_url"] == f"/api/studies/{study['id']}/heatmap/{ALWAYS_POSITIVE}.png"
    with server.client(headers=server.headers) as client:
        again = client.get(study["links"]["self"]).json()
        image = client.get(study["links"]["image"])
    assert again["id"] == study["id"] and again["findings"] == study["findings"]
    assert image.status_code == 200 and image.content.startswith(PNG_SIGNATURE)
    assert Image.open(io.BytesIO(image.content)).size == (64, 64)


def test_heatmap_overlay_and_layer(server, png_study):
    url = png_study["links"]["self"] + "/heatmap/Pneumothorax.png"
    with server.client(headers=server.headers) as client:
        overlay = client.get(url)
        layer = client.get(url, params={"layer": "true"})
        alias = client.get(png_study["links"]["self"] + "/heatmap/pneumothorax.png")
        unknown = client.get(png_study["links"]["self"] + "/heatmap/Bogus.png")
    assert overlay.status_code == 200 and overlay.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(overlay.content)).size[0] > 300  # a figure, not the bare 64 px map
    layer_image = Image.open(io.BytesIO(layer.content))
    assert layer_image.mode == "RGBA" and layer_image.size == (64, 64)
    alpha = np.asarray(layer_image)[..., 3]
    assert alpha.max() > 0 and alpha.min() == 0  # salient where the map is high, transparent elsewhere
    assert alias.status_code == 200 and unknown.status_code == 404


def test_same_image_again_returns_the_stored_record(server, png_study):
    response = upload(server, png_bytes(1000), name="a-different-name.png")
    assert response.status_code == 200
    assert response.json()["id"] == png_study["id"] and response.json()["created"] is False


def test_dicom_upload_keeps_its_metadata_and_raw_bodies_work(server):
    data = dicom_bytes(patient_id="PAT-API-1", study_date=date(2023, 5, 6), view="AP", seed=7)
    with server.client() as client:
        response = client.post(
            "/api/studies", headers={**server.headers, "Content-Type": "application/dicom"}, content=data
        )
    assert response.status_code == 201, response.text
    study = response.json()
    assert (study["patient_id"], study["study_date"], study["view_position"], study["modality"]) == (
        "PAT-API-1",
        "2023-05-06",
        "AP",
        "CR",
    )
    assert study["pixel_spacing_mm"] == [0.25, 0.2] and (study["width"], study["height"]) == (40, 48)
    assert response.headers["location"] == study["links"]["self"]


@pytest.mark.parametrize(
    ("payload", "content_type", "status", "words"),
    [
        (b"just some text, no image here" * 4, "image/png", 415, "not an image"),
        (b"<html><body>hello</body></html>", "text/html", 415, "not an image"),
        (PNG_SIGNATURE + b"\x00" * 64, "image/png", 422, "cannot be read as a radiograph"),
    ],
)
def test_files_that_are_not_radiographs_are_refused_with_a_readable_reason(
    server, payload, content_type, status, words
):
    # A decodable image the input gate refuses (a CT) is stored as "not read": tests/service/test_models.py.
    response = upload(server, payload, name="upload.bin", content_type=content_type)
    assert response.status_code == status
    assert words in response.json()["detail"]


def test_malformed_uploads(server):
    with server.client(headers=server.headers) as client:
        no_file = client.post(
            "/api/studies", data={"comment": "no file"}, files={"other": ("x.png", png_bytes(2))}
        )
        json_body = client.post("/api/studies", json={"file": "x"})
        empty = client.post("/api/studies", headers={"Content-Type": "application/octet-stream"}, content=b"")
    assert no_file.status_code == 400 and "'file'" in no_file.json()["detail"]
    assert json_body.status_code == 415 and "multipart/form-data" in json_body.json()["detail"]
    assert empty.status_code == 400


def _peak_rss_reset(pid: int) -> bool:
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets VmHWM (Linux >= 4.0)
        return True
    except OSError:
        return False


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc status")


def test_a_100_mb_upload_is_refused_while_streaming_without_filling_memory(server):
    chunk = b"\x00" * (1024 * 1024)

    def body():  # streamed: the client never holds more than 1 MB either
        for _ in range(100):
            yield chunk

    measured = _peak_rss_reset(server.process.pid)
    before = _peak_rss_mb(server.process.pid) if measured else 0.0
    with server.client() as client:
        chunked = client.post(
            "/api/studies",
            headers={**server.headers, "Content-Type": "application/octet-stream"},
            content=body(),
        )
        declared = client.post(
            "/api/studies",
            headers={
                **server.headers,
                "Content-Type": "multipart/form-data; boundary=xyz",
                "Content-Length": str(100 * len(chunk)),
            },
            content=body(),
        )
    for response in (chunked, declared):
        assert response.status_code == 413
        assert f"limit is {MAX_UPLOAD_MB} MB" in response.json()["detail"]
    if measured:
        assert _peak_rss_mb(server.process.pid) - before < 40, "the server's memory grew with the upload"
    with server.client() as client:
        assert client.get("/health").status_code == 200  # and it still serves


def test_twenty_concurrent_uploads_all_succeed(server):
    payloads = [png_bytes(2000 + index) for index in range(20)]

    def send(data: bytes) -> httpx.Response:
        return upload(server, data, name="concurrent.png")

    with ThreadPoolExecutor(max_workers=20) as pool:
        responses = list(pool.map(send, payloads))
    assert [response.status_code for response in responses] == [201] * 20, [
        r.text for r in responses if r.status_code != 201
    ]
    ids = {response.json()["id"] for response in responses}
    assert len(ids) == 20


def test_uploads_are_stored_under_server_names_only(server):
    response = upload(server, png_bytes(3000), name="../../../../tmp/evil-name.png")
    assert response.status_code == 201
    study = response.json()
    everything = [path for path in server.data_dir.rglob("*")]
    assert not any("evil" in path.name for path in everything)
    assert all(path.resolve().is_relative_to(server.data_dir.resolve()) for path in everything)
    assert (server.data_dir / "uploads" / study["content_sha256"]).read_bytes() == png_bytes(3000)


# --- search ---------------------------------------------------------------------------------------------------


def test_search_filters_match_a_brute_force_filter(server):
    uploaded = []
    for index, (patient, day) in enumerate(
        [("PAT-S1", date(2022, 1, 10)), ("PAT-S1", date(2023, 6, 1)), ("PAT-S2", date(2024, 2, 2))]
    ):
        response = upload(
            server,
            dicom_bytes(patient_id=patient, study_date=day, seed=100 + index),
            content_type="application/dicom",
        )
        assert response.status_code in (200, 201)
        uploaded.append(response.json())
    with server.client(headers=server.headers) as client:
        every = []
        offset = 0
        while True:  # page through everything stored
            page = client.get("/api/studies", params={"limit": 7, "offset": offset}).json()
            every.extend(page["items"])
            if not page["links"]["next"]:
                break
            offset += 7
        assert len(every) == page["total"] and len({item["id"] for item in every}) == page["total"]
        details = {item["id"]: client.get(f"/api/studies/{item['id']}").json() for item in every}

        def expected(predicate) -> set[int]:
            return {study_id for study_id, study in details.items() if predicate(study)}

        def found(**params) -> set[int]:
            page = client.get("/api/studies", params={"limit": 100, **params})
            assert page.status_code == 200, page.text
            return {item["id"] for item in page.json()["items"]}

        assert (
            found(patient="PAT-S1")
            == expected(lambda s: s["patient_id"] == "PAT-S1")
            == {s["id"] for s in uploaded[:2]}
        )
        assert found(since="2023-01-01") == expected(
            lambda s: s["study_date"] is not None and s["study_date"] >= "2023-01-01"
        )
        cut = sorted(
            f["probability"] for s in details.values() for f in s["findings"] if f["finding"] == "Effusion"
        )[len(details) // 2]
        assert found(finding="Effusion", min_prob=cut) == expected(
            lambda s: any(f["finding"] == "Effusion" and f["probability"] >= cut for f in s["findings"])
        )
        assert found(above_threshold="true", finding=ALWAYS_POSITIVE) == set(details)
        assert found(finding="Nodule", above_threshold="true") == set()
        bad = client.get("/api/studies", params={"finding": "Bogus"})
        too_many = client.get("/api/studies", params={"limit": 1000})
    assert bad.status_code == 422 and "unknown finding" in bad.json()["detail"]
    assert too_many.status_code == 422


def test_unknown_study_is_404(server):
    with server.client(headers=server.headers) as client:
        assert client.get("/api/studies/999999").status_code == 404
        assert client.get("/api/studies/999999/image.png").status_code == 404


def test_responses_are_not_cached_and_logs_hold_no_patient_ids(server):
    with server.client(headers=server.headers) as client:
        response = client.get("/api/studies", params={"patient": "PAT-SECRET-99"})
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "PAT-SECRET-99" not in server.log.read_text()


# --- integers beyond the databases' range ---------------------------------------------------------------------


def _integer_parameters(server: Server) -> list[tuple[str, str, str]]:
    """Every (path, location, name) of an integer parameter of a GET route in the OpenAPI document."""
    with server.client(headers=server.headers) as client:
        document = client.get("/openapi.json").json()
    found = []
    for path, operations in document["paths"].items():
        for parameter in operations.get("get", {}).get("parameters", []):
            schema = parameter.get("schema", {})
            types = {schema.get("type")} | {item.get("type") for item in schema.get("anyOf", [])}
            if "integer" in types:
                found.append((path, parameter["in"], parameter["name"]))
    return found


@pytest.mark.parametrize("value", [2**63, 2**64])
def test_integers_beyond_64_bits_are_a_clear_404_or_422_never_a_500(server, value):
    parameters = _integer_parameters(server)
    assert {(path, name) for path, _, name in parameters} >= {
        ("/api/studies", "limit"),
        ("/api/studies", "offset"),
        ("/api/studies/{study_id}", "study_id"),
        ("/api/studies/{study_id}/image.png", "study_id"),
        ("/api/studies/{study_id}/heatmap/{finding}.png", "study_id"),
    }
    with server.client(headers=server.headers) as client:
        for path, location, name in parameters:
            named = path.replace("{finding}", "Effusion").replace("{kind}", "sr")
            url = named.replace("{study_id}", "1")
            if location == "path":
                url = named.replace(f"{{{name}}}", str(value))
            response = client.get(url, params={name: value} if location == "query" else None)
            assert response.status_code in (404, 422), (path, name, response.status_code, response.text)
            detail = response.json()["detail"]
            if response.status_code == 404:
                assert detail == f"no study with id {value}"
            else:
                assert any(item["loc"][-1] == name and "less than or equal" in item["msg"] for item in detail)


def test_the_largest_offset_still_answers(server):
    from cxreader.service.routes.studies import MAX_OFFSET

    with server.client(headers=server.headers) as client:
        response = client.get("/api/studies", params={"offset": MAX_OFFSET, "limit": 100})
    assert response.status_code == 200, response.text
    assert response.json()["items"] == [] and response.json()["links"]["previous"]
