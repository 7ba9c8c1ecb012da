"""A real ``cxreader serve`` (uvicorn) on a free loopback port, shared by the service tests of a session."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from tests.screening.factories import (
    cli_command,
    synthetic_images,
    write_caption_checkpoint,
    write_checkpoint,
)

API_KEY = "test-key-0123456789abcdef"
#: Upload limit of the test server (small, so the 413 test needs no huge body to cross it).
MAX_UPLOAD_MB = 2


@dataclass(frozen=True)
class Server:
    """A running service: its base URL, process, data directory and database file."""

    url: str
    process: subprocess.Popen
    data_dir: Path
    database: Path
    log: Path

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {API_KEY}"}

    def client(self, **kwargs) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=120, **kwargs)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def server(tmp_path_factory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("service")
    checkpoint = write_checkpoint(root / "tiny.pt")
    captioner = write_caption_checkpoint(
        root / "captioner", checkpoint, synthetic_images(root / "caption-images", 8, seed=5)
    )
    port = _free_port()
    env = {
        **os.environ,
        "CXREADER_API_KEYS": f"{API_KEY}, another-key-0123456789",
        "CXREADER_MAX_UPLOAD_MB": str(MAX_UPLOAD_MB),
        "CXREADER_DATA_DIR": str(root / "data"),
        "CXREADER_DEVICE": "cpu",
        "OMP_NUM_THREADS": "1",
    }
    env.pop("CXREADER_DATABASE_URL", None)
    log = root / "server.log"
    command = cli_command(
        "serve",
        "--checkpoint",
        str(checkpoint),
        "--caption",
        str(captioner),
        "--port",
        str(port),
        "--db",
        str(root / "records.sqlite3"),
        "--log-level",
        "info",
    )
    with open(log, "wb") as handle:
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                pytest.fail(f"cxreader serve exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"cxreader serve did not answer within 120 s:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield Server(
            url=url, process=process, data_dir=root / "data", database=root / "records.sqlite3", log=log
        )
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
