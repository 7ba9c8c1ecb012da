"""Many screening workers on one archive: independent processes that claim images, torchrun ranks that split the
files, and a worker killed midway (SQLite; PostgreSQL too when a server is configured)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select
from tests.screening.factories import cli_command, synthetic_images, write_checkpoint
from tests.storage.conftest import BACKENDS, backend_url

from cxreader.storage.db import open_database
from cxreader.storage.tables import Claim, Image

IMAGES = 200
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return write_checkpoint(tmp_path_factory.mktemp("model") / "tiny.pt")


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("archive")
    synthetic_images(root, IMAGES, seed=7)
    return root


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with backend_url(request.param, tmp_path) as url:
        yield url


def _screen_command(archive: Path, checkpoint: Path, db_url: str, summary: Path, *extra: str) -> list[str]:
    return cli_command(
        "screen",
        str(archive),
        "--checkpoint",
        str(checkpoint),
        "--db",
        db_url,
        "--no-describe",
        "--no-progress",
        "--batch-size",
        "8",
        "--workers",
        "1",
        "--summary-json",
        str(summary),
        *extra,
    )


def _rows(db_url: str) -> tuple[int, int, int]:
    """(image rows, distinct contents, claims left) of the records database."""
    database = open_database(db_url)
    try:
        with database.session() as session:
            rows = session.scalar(select(func.count()).select_from(Image))
            distinct = session.scalar(select(func.count(func.distinct(Image.content_sha256))))
            claims = session.scalar(select(func.count()).select_from(Claim))
    finally:
        database.close()
    return rows, distinct, claims


def test_three_workers_at_once_share_the_work(archive, checkpoint, db_url, tmp_path) -> None:
    open_database(db_url).close()  # the schema exists before the workers race
    summaries = [tmp_path / f"summary{n}.json" for n in range(3)]
    workers = [
        subprocess.Popen(
            _screen_command(archive, checkpoint, db_url, summary),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=ENV,
        )
        for summary in summaries
    ]
    outputs = [worker.communicate(timeout=600) for worker in workers]
    for worker, (_out, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, err[-3000:]
        assert "Traceback" not in err
    counts = [json.loads(summary.read_text()) for summary in summaries]
    assert sum(count["inferred"] for count in counts) == IMAGES, counts
    assert all(count["failed"] == 0 for count in counts), counts
    for count in counts:  # every file was either inferred here, or stored or claimed by another worker
        assert count["inferred"] + count["already_stored"] + count["claimed_elsewhere"] == IMAGES
    assert _rows(db_url) == (IMAGES, IMAGES, 0)


def test_a_killed_worker_leaves_nothing_twice_and_a_rerun_finishes(
    archive, checkpoint, db_url, tmp_path
) -> None:
    open_database(db_url).close()
    command = _screen_command(archive, checkpoint, db_url, tmp_path / "killed.json", "--batch-size", "2")
    victim = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV)
    try:
        deadline = time.monotonic() + 120
        while _rows(db_url)[0] < IMAGES // 5:
            assert victim.poll() is None, victim.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "the worker made no progress in 120 s"
            time.sleep(0.05)
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)  # reaped: the re-run sees its process is gone and takes over its claims
    finally:
        if victim.poll() is None:
            victim.kill()
            victim.wait()
    rows, distinct, _claims = _rows(db_url)
    assert rows == distinct < IMAGES
    summary = tmp_path / "rerun.json"
    rerun = subprocess.run(
        _screen_command(archive, checkpoint, db_url, summary),
        capture_output=True,
        text=True,
        env=ENV,
        timeout=600,
    )
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    counts = json.loads(summary.read_text())
    assert counts["inferred"] == IMAGES - rows and counts["already_stored"] == rows
    assert counts["claimed_elsewhere"] == 0
    assert _rows(db_url) == (IMAGES, IMAGES, 0)


@pytest.mark.skipif(shutil.which("torchrun") is None and sys.platform != "linux", reason="needs torchrun")
def test_torchrun_ranks_split_the_files_and_print_the_triage_once(
    archive, checkpoint, db_url, tmp_path
) -> None:
    summary = tmp_path / "ranks.json"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "cxreader",
        *_screen_command(archive, checkpoint, db_url, summary)[3:],
    ]
    done = subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=600)
    errors = [line for line in done.stderr.splitlines() if "cxreader: error" in line or "Error" in line]
    assert done.returncode == 0, "\n".join(errors[:20]) or done.stderr[-3000:]
    assert done.stdout.count("Triage:") == 1
    assert f"Screened {IMAGES} image(s) on 2 ranks" in done.stdout
    counts = json.loads(summary.read_text())
    assert counts["ranks"] == 2 and counts["inferred"] == IMAGES
    assert counts["claimed_elsewhere"] == counts["already_stored"] == 0  # the shares never overlap
    assert _rows(db_url) == (IMAGES, IMAGES, 0)
