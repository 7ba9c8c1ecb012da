"""The memory ceiling of uploads: a pixel budget read from the header before decoding, and a bounded number of
decodes at once (waiting uploads wait; they are not refused)."""

from __future__ import annotations

import io
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.uid import DeflatedExplicitVRLittleEndian
from tests.screening.factories import dicom_bytes, png_bytes
from tests.service.conftest import Server

from cxreader.data.io import declared_pixel_count
from cxreader.errors import ConfigError
from cxreader.service import analysis
from cxreader.service.settings import DEFAULT_MAX_UPLOAD_MEGAPIXELS, Settings, default_concurrency


def flat_png(width: int, height: int, *, seed: int = 0) -> bytes:
    """A nearly constant 8-bit PNG: millions of pixels in a few kilobytes (one pixel differs per seed)."""
    image = Image.new("L", (width, height), 40)
    image.putpixel((seed % width, seed // width % height), 200)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=9)
    return buffer.getvalue()


def flat_dicom(rows: int, columns: int, *, deflated: bool, frames: int = 1) -> bytes:
    """A nearly constant 16-bit DICOM; ``deflated``: Deflated Explicit VR Little Endian (a few hundred KB)."""
    ds = pydicom.dcmread(io.BytesIO(dicom_bytes(size=(rows, columns))))
    pixels = np.full((frames, rows, columns), 1000, dtype=np.uint16)
    pixels[0, 0, 0] = 3000
    ds.PixelData = pixels.tobytes()
    if frames > 1:
        ds.NumberOfFrames = frames
    if deflated:
        ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _peak_rss_mb(pid: int) -> float | None:
    """The process's peak RSS since the last reset (VmHWM), or None where Linux does not report it."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return None
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return None


def _hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


# --- the header peek ------------------------------------------------------------------------------------------


def test_declared_pixel_count_reads_sizes_from_headers_only():
    jpeg = io.BytesIO()
    Image.new("RGB", (300, 200)).save(jpeg, format="JPEG")
    assert declared_pixel_count(png_bytes(1)) == 64 * 64
    assert declared_pixel_count(jpeg.getvalue()) == 300 * 200
    assert declared_pixel_count(dicom_bytes(size=(48, 40))) == 48 * 40
    assert declared_pixel_count(flat_dicom(30, 20, deflated=True)) == 600
    assert declared_pixel_count(flat_dicom(30, 20, deflated=False, frames=3)) == 1800
    # Not an image, or a header that cannot be read: no count (the decoder says why).
    assert declared_pixel_count(b"just text") is None
    assert declared_pixel_count(png_bytes(1)[:20]) is None
    assert declared_pixel_count(dicom_bytes()[:140]) is None


def test_declared_pixel_count_of_a_header_pillow_would_refuse_to_open():
    # 20,000 x 20,000 is past twice Image.MAX_IMAGE_PIXELS: Image.open raises before telling the size.
    png = flat_png(64, 64)
    ihdr_data = (20_000).to_bytes(4, "big") * 2 + png[24:29]  # width, height, then depth, colour, ...
    ihdr = b"IHDR" + ihdr_data
    patched = png[:8] + len(ihdr_data).to_bytes(4, "big") + ihdr + zlib.crc32(ihdr).to_bytes(4, "big")
    assert declared_pixel_count(patched + png[33:]) == 400_000_000


def test_a_deflated_dicom_header_is_read_without_inflating_its_pixels():
    data = flat_dicom(6000, 6000, deflated=True)  # 72 MB of pixels in about 100 KB
    assert len(data) < 200_000
    started = time.perf_counter()
    assert declared_pixel_count(data) == 36_000_000
    assert time.perf_counter() - started < 0.5


# --- settings -------------------------------------------------------------------------------------------------


def test_settings_read_the_budget_and_the_concurrency_from_the_environment(tiny_checkpoint):
    env = {"CXREADER_CHECKPOINT": str(tiny_checkpoint), "CXREADER_API_KEYS": "k" * 16}
    default = Settings.from_env(env)
    assert default.max_upload_pixels == int(DEFAULT_MAX_UPLOAD_MEGAPIXELS * 1_000_000)
    assert default.max_concurrent_decodes == default_concurrency() >= 1
    configured = Settings.from_env(
        {**env, "CXREADER_MAX_UPLOAD_MEGAPIXELS": "12.5", "CXREADER_MAX_CONCURRENT_DECODES": "3"}
    )
    assert (configured.max_upload_pixels, configured.max_concurrent_decodes) == (12_500_000, 3)
    for name, value in [
        ("CXREADER_MAX_UPLOAD_MEGAPIXELS", "0"),
        ("CXREADER_MAX_UPLOAD_MEGAPIXELS", "lots"),
        ("CXREADER_MAX_CONCURRENT_DECODES", "0"),
        ("CXREADER_MAX_CONCURRENT_DECODES", "1.5"),
    ]:
        with pytest.raises(ConfigError, match=name):
            Settings.from_env({**env, name: value})


# --- the budget -----------------------------------------------------------------------------------------------


def test_an_image_over_the_pixel_budget_is_refused_before_decoding(make_service, monkeypatch):
    client = make_service(max_upload_pixels=3000).client

    def no_decoding(*args, **kwargs):
        raise AssertionError("the image was decoded")

    monkeypatch.setattr(analysis, "prepare_image", no_decoding)
    for data in (png_bytes(1), dicom_bytes(size=(60, 60)), flat_dicom(60, 60, deflated=True)):
        response = client.post("/api/studies", files={"file": ("x", data, "application/octet-stream")})
        assert response.status_code == 413, response.text
        detail = response.json()["detail"]
        assert "header declares" in detail and "0.003 megapixels per upload" in detail
        assert "pixels" in detail and "\n" not in detail
    assert client.get("/api/studies", params={"status": "any"}).json()["total"] == 0


def test_an_image_within_the_budget_is_read(make_service):
    client = make_service(max_upload_pixels=64 * 64).client
    response = client.post("/api/studies", files={"file": ("x.png", png_bytes(1), "image/png")})
    assert response.status_code == 201, response.text


@pytest.mark.parametrize("kind", ["png", "deflated-dicom"])
def test_the_real_server_refuses_a_decompression_bomb_without_growing(server: Server, kind):
    # 9,400 x 9,400 (88 MP) in about 100 KB: decoding it took 1.0 to 1.8 GB; the default budget is 36 MP.
    data = flat_png(9400, 9400) if kind == "png" else flat_dicom(7000, 7000, deflated=True)
    assert len(data) < 300_000
    before = _peak_rss_mb(server.process.pid)
    with server.client() as client:
        response = client.post(
            "/api/studies", headers=server.headers, files={"file": ("big", data, "application/octet-stream")}
        )
    assert response.status_code == 413, response.text
    assert "megapixels" in response.json()["detail"]
    if before is not None:
        assert _hwm_mb(server.process.pid) - before < 60, "the server decoded the refused image"


# --- concurrency ----------------------------------------------------------------------------------------------


def test_uploads_beyond_the_concurrency_limit_wait_and_all_succeed(make_service, monkeypatch):
    client = make_service(max_concurrent_decodes=2).client
    active, peak, guard = 0, 0, threading.Lock()
    real_prepare = analysis.prepare_image

    def counting_prepare(*args, **kwargs):
        nonlocal active, peak
        with guard:
            active += 1
            peak = max(peak, active)
        try:
            time.sleep(0.15)  # long enough for the other uploads to pile up behind the limit
            return real_prepare(*args, **kwargs)
        finally:
            with guard:
                active -= 1

    monkeypatch.setattr(analysis, "prepare_image", counting_prepare)

    def send(seed: int):
        return client.post("/api/studies", files={"file": ("x.png", png_bytes(500 + seed), "image/png")})

    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(pool.map(send, range(8)))
    assert [response.status_code for response in responses] == [201] * 8
    assert peak == 2, f"{peak} decodes ran at once with a limit of 2"
