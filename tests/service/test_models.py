"""Results that name their model: the study's ``model``, ``GET /api/models``, and search by model or newest."""

from __future__ import annotations

import hashlib

from tests.screening.factories import png_bytes

from cxreader.labels import FINDINGS
from cxreader.storage.db import open_database
from cxreader.storage.records import FindingResult, ImageResult
from cxreader.storage.write import add_image_result, register_checkpoint


def test_search_shows_the_newest_result_per_image_and_filters_by_model(make_service, tmp_path) -> None:
    service = make_service()
    first = service.client.post("/api/studies", files={"file": ("a.png", png_bytes(7), "image/png")}).json()
    served = first["model"]
    assert served["sha256"] and served["name"] == "densenet_small" and served["synthetic"] is True

    # A second model reads the same image later (e.g. a screening run with a newer checkpoint).
    database = open_database(str(tmp_path / "records.sqlite3"))
    other_sha = hashlib.sha256(b"other model").hexdigest()
    with database.session() as session:
        other = register_checkpoint(session=session, sha256=other_sha, model_name="resnet50", synthetic=False)
        findings = [FindingResult(name, 0.2, 0.5) for name in FINDINGS]
        add_image_result(
            session=session, result=ImageResult("/archive/a.png", first["content_sha256"], other, findings)
        )
    database.close()

    def items(**params) -> list[dict]:
        response = service.client.get("/api/studies", params=params)
        assert response.status_code == 200, response.text
        return response.json()["items"]

    newest = items()
    assert [item["model"]["sha256"] for item in newest] == [other_sha]
    assert {item["model"]["sha256"] for item in items(all_results="true")} == {served["sha256"], other_sha}
    assert [item["id"] for item in items(model=served["sha256"][:8])] == [first["id"]]
    assert [item["model"]["name"] for item in items(model="resnet50")] == ["resnet50"]
    unknown = service.client.get("/api/studies", params={"model": "vgg16"})
    assert unknown.status_code == 422 and "no stored model matches" in unknown.json()["detail"]
    models = service.client.get("/api/models").json()
    assert [(model["sha256"], model["name"], model["images"]) for model in models] == [
        (other_sha, "resnet50", 1),
        (served["sha256"], "densenet_small", 1),
    ]


def test_uploads_the_gate_refuses_are_stored_as_not_read(make_service, tmp_path) -> None:
    from tests.screening.factories import refused_inputs

    service = make_service()
    expected = refused_inputs(tmp_path / "bad")
    for name, reason in expected.items():
        data = (tmp_path / "bad" / name).read_bytes()
        response = service.client.post(
            "/api/studies", files={"file": (name, data, "application/octet-stream")}
        )
        assert response.status_code == 201, response.text
        study = response.json()
        assert study["status"] == "refused" and study["findings"] == [] and study["positive_findings"] == []
        assert study["gate"]["accepted"] is False and study["gate"]["reasons"][0].startswith(reason)
        again = service.client.post("/api/studies", files={"file": (name, data, "application/octet-stream")})
        assert again.status_code == 200 and again.json()["id"] == study["id"]
    listed = service.client.get("/api/studies", params={"status": "refused"}).json()
    assert listed["total"] == len(expected)
    assert service.client.get("/api/studies").json()["total"] == 0  # not among the studies read


def test_the_model_says_how_it_gates_and_where_its_thresholds_come_from(make_service) -> None:
    model = make_service().client.get("/api/model").json()
    # The tiny test checkpoint predates calibration, operating points and the detector: rules only.
    assert model["gate"] == {"rules": True, "out_of_distribution": False}
    assert model["operating_point"] is None and model["calibrated"] is False
