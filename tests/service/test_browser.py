"""The web page in a real browser (Playwright driving Debian's chromium): upload, findings, heatmap, search.

Skipped cleanly when ``/usr/bin/chromium`` or the playwright package is missing (``.ci/chromium.sh`` installs
the browser; ``playwright install`` is never used). Screenshots go to ``test-artifacts/browser/`` (or
``$CXREADER_TEST_ARTIFACTS/browser``).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from tests.screening.factories import ALWAYS_POSITIVE, synthetic_images
from tests.service.conftest import API_KEY

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
REPO_ROOT = Path(__file__).resolve().parents[2]

playwright_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium (run .ci/chromium.sh)")


@pytest.fixture(scope="module")
def artifacts() -> Path:
    root = Path(os.environ.get("CXREADER_TEST_ARTIFACTS", REPO_ROOT / "test-artifacts"))
    folder = root / "browser"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def page(server, browser):
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.errors = errors
    yield page
    context.close()


def test_upload_see_findings_and_heatmap_then_search_and_find_it(server, page, artifacts, tmp_path):
    image = synthetic_images(tmp_path / "synthetic", 1, seed=21)[0]
    # A bigger rendition of the same phantom reads better on screen; the model resizes it to 64 px anyway.
    from cxreader.synthetic.dataset import generate_synthetic_dataset

    generate_synthetic_dataset(tmp_path / "big", images=1, size=320, seed=21)
    image = next((tmp_path / "big" / "images").glob("*.png"))

    page.goto(server.url)
    page.wait_for_selector("#key-panel:not(.hidden)")
    assert "not a certified medical device" in page.inner_text("#disclaimer")
    page.screenshot(path=str(artifacts / "00-api-key.png"))
    page.fill("#api-key", API_KEY)
    page.click("#save-key")
    page.wait_for_selector("#key-panel.hidden", state="attached")
    assert "densenet_small" in page.inner_text("#model-name")
    assert page.is_visible("#synthetic-banner") and "SYNTHETIC" in page.inner_text("#synthetic-banner")

    page.set_input_files("#file-input", str(image))
    page.click("#analyse")
    page.wait_for_selector("#upload-status.ok", timeout=60_000)
    study_id = page.inner_text("#study-title").split("#")[1]
    assert "SYNTHETIC" in page.inner_text("#study-synthetic")
    positives = page.inner_text("#positives")
    assert ALWAYS_POSITIVE in positives and "pneumothorax" in positives.lower()  # name and sentence
    assert page.locator("#findings-body tr").count() == 14
    page.wait_for_function(
        "() => { const l = document.getElementById('heatmap-layer'); "
        "return l.complete && l.naturalWidth > 0 && !l.classList.contains('hidden'); }",
        timeout=30_000,
    )
    page.wait_for_function("() => document.getElementById('viewer-image').naturalWidth > 0")
    assert ALWAYS_POSITIVE in page.inner_text("#heatmap-name")
    page.screenshot(path=str(artifacts / "01-study-with-heatmap.png"), full_page=True)

    # Another finding's heatmap, then the heatmap off.
    page.click("#findings-body tr[data-finding='Effusion'] button")
    page.wait_for_function("() => document.getElementById('heatmap-name').textContent.startsWith('Effusion')")
    assert "below threshold" in page.inner_text("#heatmap-name")
    page.uncheck("#heatmap-toggle")
    assert page.is_hidden("#heatmap-layer")
    page.check("#heatmap-toggle")
    page.wait_for_selector("#heatmap-layer:not(.hidden)")

    page.click("#tab-search")
    page.select_option("#search-finding", ALWAYS_POSITIVE)
    page.check("#search-above")
    page.select_option("#search-limit", "10")
    page.click("#search-button")
    row = page.locator(f"#search-body tr[data-id='{study_id}']")
    page.wait_for_selector("#search-results:not(.hidden)")
    # The newest upload is somewhere in the results: page until it shows up.
    for _ in range(20):
        if row.count():
            break
        page.click("#page-next")
        page.wait_for_timeout(300)
    assert row.count() == 1
    assert ALWAYS_POSITIVE in row.inner_text()
    assert "densenet_small" in row.inner_text()  # the model that produced the result
    assert page.locator("#search-model option").count() >= 2  # "newest" and the stored model(s)
    assert "matching record" in page.inner_text("#search-status-line")
    page.screenshot(path=str(artifacts / "02-search.png"), full_page=True)

    row.locator("button").click()
    page.wait_for_function(
        f"() => document.getElementById('study-title').textContent === 'Study #{study_id}'"
    )
    assert page.is_visible("#panel-read")
    assert page.errors == []


def _open_with_key(page, server) -> None:
    """The page, with the API key entered (this tab may hold it already)."""
    page.goto(server.url)
    page.wait_for_function(
        "() => document.getElementById('model-name').textContent !== 'model: not loaded' "
        "|| !document.getElementById('key-panel').classList.contains('hidden')"
    )
    if page.is_visible("#key-panel"):
        page.fill("#api-key", API_KEY)
        page.click("#save-key")
    page.wait_for_function(
        "() => document.getElementById('model-name').textContent.includes('densenet_small')"
    )


def test_a_failed_upload_clears_the_previous_study(server, page, artifacts, tmp_path):
    _open_with_key(page, server)
    image = synthetic_images(tmp_path / "synthetic", 1, seed=33)[0]
    page.set_input_files("#file-input", str(image))
    page.click("#analyse")
    page.wait_for_selector("#upload-status.ok", timeout=60_000)
    page.wait_for_function("() => document.getElementById('viewer-image').naturalWidth > 0")
    assert page.locator("#findings-body tr").count() == 14 and page.is_visible("#result")

    not_an_image = tmp_path / "notes.txt"
    not_an_image.write_text("a page of notes, not a radiograph")
    page.set_input_files("#file-input", str(not_an_image))
    page.click("#analyse")
    page.wait_for_selector("#upload-status.error", timeout=60_000)
    assert "not an image" in page.inner_text("#upload-status")
    page.screenshot(path=str(artifacts / "03-failed-upload.png"), full_page=True)
    # Nothing of the previous patient's study stays on screen under the error.
    assert page.is_hidden("#result")
    assert page.locator("#findings-body tr").count() == 0
    assert page.locator("#positives li").count() == 0
    assert page.locator("#study-meta dd").count() == 0
    assert page.get_attribute("#viewer-image", "src") is None
    assert page.get_attribute("#heatmap-layer", "src") is None
    assert page.errors == []


def test_the_api_docs_work_offline_under_the_page_csp(server, browser, artifacts):
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    elsewhere: list[str] = []

    def only_this_server(route):
        if route.request.url.startswith(server.url):
            route.continue_()
        else:  # the network: nothing may be fetched from it
            elsewhere.append(route.request.url)
            route.abort()

    try:
        context.route("**/*", only_this_server)
        context.add_init_script(f"sessionStorage.setItem('cxreader.apiKey', '{API_KEY}')")
        page = context.new_page()
        console: list[str] = []
        page.on("console", lambda message: console.append(message.text))
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(f"{server.url}/docs")
        page.wait_for_selector(".opblock", timeout=30_000)
        page.screenshot(path=str(artifacts / "04-api-docs.png"), full_page=True)
        operations = page.locator(".opblock-summary-path").all_inner_texts()
        assert "cxreader" in page.inner_text(".info .title")
        page.locator(".opblock-get .opblock-summary").first.click()  # an operation opens, still offline
        page.wait_for_selector(".opblock.is-open .parameters-container, .opblock.is-open .opblock-body")
    finally:
        context.close()
    assert "/api/studies" in operations and len(operations) >= 6, operations
    assert elsewhere == []
    assert not [line for line in console if "Content Security Policy" in line], console
    assert errors == []
