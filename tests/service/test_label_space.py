"""The service with a model of another label space (all 19 findings of the harmonised label space, or six in an
order of their own): the API answers with the model's labels and findings, heatmaps and search work for any of
them, and the page's finding list and findings table come from the model."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.screening.factories import png_bytes, synthetic_images, write_checkpoint
from tests.service.conftest import API_KEY

from cxreader.labels import HARMONISED_LABELS

SUBSET = ("Support_Devices", "Effusion", "Fracture", "Lung_Opacity", "Pneumothorax", "Cardiomegaly")
#: Each model: its labels and the finding it calls positive on every image.
MODELS = {"all": (HARMONISED_LABELS, "Lung_Opacity"), "subset": (SUBSET, "Fracture")}
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@pytest.fixture(scope="module", params=sorted(MODELS))
def model(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory, model) -> Path:
    """The service's model in this module (overrides the 14-finding one of ``conftest.py``)."""
    labels, positive = MODELS[model]
    return write_checkpoint(
        tmp_path_factory.mktemp(model) / "model.pt", labels=labels, always_positive=positive
    )


def test_the_api_answers_with_the_models_labels_and_findings(make_service, model):
    labels, positive = MODELS[model]
    client = make_service().client
    described = client.get("/api/model").json()
    assert described["labels"] == list(labels)
    assert list(described["thresholds"]) == list(labels) and described["thresholds"][positive] == 0.0
    assert described["label_space"] == list(HARMONISED_LABELS)

    response = client.post("/api/studies", files={"file": ("study.png", png_bytes(7), "image/png")})
    assert response.status_code == 201, response.text
    study = client.get(f"/api/studies/{response.json()['id']}").json()
    assert sorted(item["finding"] for item in study["findings"]) == sorted(labels)
    assert len(study["findings"]) == len(labels)
    assert study["positive_findings"] == [positive]
    found = next(item for item in study["findings"] if item["finding"] == positive)
    assert found["above_threshold"] and found["description"] and found["heatmap_url"]
    for item in study["findings"]:  # the maps of all the model's findings are there
        heatmap = client.get(item["heatmap_url"], params={"layer": "true"})
        assert heatmap.status_code == 200 and heatmap.content.startswith(b"\x89PNG")
    if model == "subset":  # a finding the model does not have: no heatmap
        assert client.get(f"/api/studies/{study['id']}/heatmap/Hernia.png").status_code == 404

    matches = client.get("/api/studies", params={"finding": positive, "above_threshold": "true"}).json()
    assert [item["id"] for item in matches["items"]] == [study["id"]]
    assert [finding["finding"] for finding in matches["items"][0]["findings"]] == [positive]
    absent = "Hernia" if model == "subset" else "Support Devices"
    none = client.get("/api/studies", params={"finding": absent, "above_threshold": "true"}).json()
    assert none["total"] == 0


@pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium (run .ci/chromium.sh)")
def test_the_page_shows_the_models_label_space(make_service, model, tmp_path):
    playwright_api = pytest.importorskip(
        "playwright.sync_api", reason="the playwright package is not installed"
    )
    labels, positive = MODELS[model]
    service = make_service()
    url = str(service.client.base_url).rstrip("/")
    image = synthetic_images(tmp_path / "synthetic", 1, seed=8)[0]
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(url)
            page.wait_for_selector("#key-panel:not(.hidden)")
            page.fill("#api-key", API_KEY)
            page.click("#save-key")
            page.wait_for_function(
                "() => document.getElementById('model-name').textContent.includes('densenet')"
            )
            values = page.eval_on_selector_all(
                "#search-finding option", "items => items.map(item => item.value)"
            )
            others = [name for name in HARMONISED_LABELS if name not in labels]
            assert values == ["", *labels, *others]  # this model's findings first, in its order
            groups = page.eval_on_selector_all(
                "#search-finding optgroup", "items => items.map(item => item.label)"
            )
            assert groups == (["this model's findings", "other models' findings"] if others else [])

            page.set_input_files("#file-input", str(image))
            page.click("#analyse")
            page.wait_for_selector("#upload-status.ok", timeout=60_000)
            assert page.locator("#findings-body tr").count() == len(labels)
            assert page.text_content("#findings-heading") == f"All {len(labels)} findings"
            assert positive.replace("_", " ") in page.inner_text("#positives")
            page.click(f"#findings-body tr[data-finding='{labels[-1]}'] button")
            page.wait_for_function(
                "name => document.getElementById('heatmap-name').textContent.startsWith(name)",
                arg=labels[-1].replace("_", " "),
            )

            page.click("#tab-search")
            page.select_option("#search-finding", positive)
            page.check("#search-above")
            page.click("#search-button")
            page.wait_for_selector("#search-results:not(.hidden)")
            page.wait_for_selector("#search-body tr")
            assert page.locator("#search-body tr").count() == 1
            assert positive.replace("_", " ") in page.inner_text("#search-body tr")
            assert errors == []
        finally:
            browser.close()
