"""A real ``cxreader serve`` (uvicorn) on a free loopback port, shared by the service tests of a session, and
services in the test process (``create_app`` under uvicorn in a thread) for tests that need their own
settings or patch the service's functions."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
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
def tiny_checkpoint(tmp_path_factory) -> Path:
    """The tiny test model (see :func:`tests.screening.factories.write_checkpoint`)."""
    return write_checkpoint(tmp_path_factory.mktemp("checkpoint") / "tiny.pt")


@dataclass
class LocalService:
    """A service app of this process served by uvicorn on a loopback port (its functions can be patched).

    Attributes:
        app: The FastAPI app (for calls at the ASGI level).
        client: An HTTP client to it that sends the API key with every request.
        data_dir: Its data directory.
    """

    app: Any
    client: httpx.Client
    data_dir: Path


@pytest.fixture
def make_service(tiny_checkpoint, tmp_path) -> Iterator[Callable[..., LocalService]]:
    """``make_service(**settings)``: the service in this process over its own SQLite file and data directory
    (``tmp_path / "data"``), with the tiny model and the given :class:`Settings` fields."""
    from cxreader.service.app import create_app
    from cxreader.service.settings import Settings

    servers: list[tuple[uvicorn.Server, threading.Thread, httpx.Client]] = []

    def make(**overrides) -> LocalService:
        settings = Settings(
            checkpoint=tiny_checkpoint,
            api_keys=frozenset({API_KEY}),
            database_url=str(tmp_path / "records.sqlite3"),
            data_dir=tmp_path / "data",
            device="cpu",
            **overrides,
        )
        app = create_app(settings)
        port = _free_port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                pytest.fail("the in-process service did not start")
            time.sleep(0.02)
        # No kept-alive connections: uvicorn closes one after a 500, and a test may send more after it.
        client = httpx.Client(
            base_url=f"http://127.0.0.1:{port}",
            timeout=120,
            headers={"Authorization": f"Bearer {API_KEY}"},
            limits=httpx.Limits(max_keepalive_connections=0),
        )
        servers.append((server, thread, client))
        return LocalService(app=app, client=client, data_dir=settings.data_dir)

    yield make
    for server, thread, client in servers:
        client.close()
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture(scope="session")
def server(tmp_path_factory, tiny_checkpoint) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("service")
    checkpoint = tiny_checkpoint
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
