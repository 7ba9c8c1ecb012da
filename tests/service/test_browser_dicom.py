"""The page links a study's DICOM results, and the report downloads as a DICOM file (Playwright, Debian's
chromium; skipped cleanly without them)."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from tests.screening.factories import ALWAYS_POSITIVE, dicom_bytes, run_cli
from tests.service.conftest import API_KEY

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]

playwright_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium (run .ci/chromium.sh)")


def test_the_page_offers_the_report_overlay_and_key_object_of_a_study(
    make_service, tiny_checkpoint, tmp_path
):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "chest.dcm").write_bytes(dicom_bytes(seed=31, size=(96, 80)))
    screened = run_cli(
        [
            "screen",
            str(folder),
            "--checkpoint",
            str(tiny_checkpoint),
            "--db",
            str(tmp_path / "records.sqlite3"),  # the database make_service opens
            "--dicom-out",
            str(tmp_path / "dicom-out"),
            "--no-progress",
        ]
    )
    assert screened == 0
    service = make_service()
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(accept_downloads=True)
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(str(service.client.base_url))
            page.wait_for_selector("#api-key")
            if page.is_visible("#key-panel"):
                page.fill("#api-key", API_KEY)
                page.click("#save-key")
            page.click("#tab-search")
            page.select_option("#search-finding", ALWAYS_POSITIVE)
            page.click("#search-button")
            page.wait_for_selector("#search-body tr[data-id] button")
            page.locator("#search-body tr[data-id] button").first.click()
            page.wait_for_selector(".dicom-links button")
            labels = page.locator(".dicom-links button").all_inner_texts()
            assert labels == ["Report (SR)", "Overlay (Secondary Capture)", "Key object (triage)"]
            with page.expect_download() as download:
                page.click(".dicom-links button >> text=Report (SR)")
            saved = tmp_path / "downloaded-sr.dcm"
            download.value.save_as(saved)
            assert pydicom.dcmread(saved).SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34"
            assert errors == []
        finally:
            browser.close()
