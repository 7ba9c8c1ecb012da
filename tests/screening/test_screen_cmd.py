"""``cxreader screen`` through the real CLI, and a run killed half way (SIGKILL) that resumes without duplicates."""

from __future__ import annotations

import csv
import os
import signal
import sqlite3
import subprocess
import time

import pytest
from tests.screening.factories import (
    ALWAYS_POSITIVE,
    cli_command,
    run_cli,
    synthetic_images,
    write_checkpoint,
)

from cxreader.screening.triage import CSV_COLUMNS

KILL_IMAGES = 100


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return write_checkpoint(tmp_path_factory.mktemp("model") / "tiny.pt")


def test_screen_command_prints_and_writes_the_triage_list(checkpoint, tmp_path, capsys):
    images = synthetic_images(tmp_path / "data", 6)
    (tmp_path / "data" / "images" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    out_csv = tmp_path / "triage.csv"
    db = tmp_path / "records.sqlite3"
    argv = [
        "screen",
        str(tmp_path / "data"),
        "--checkpoint",
        str(checkpoint),
        "--db",
        str(db),
        "--batch-size",
        "4",
        "--no-progress",
        "--no-describe",
        "--triage-csv",
        str(out_csv),
    ]
    assert run_cli(argv) == 0
    out = capsys.readouterr().out
    assert f"Screened {len(images)} image(s)" in out and "1 failed" in out
    assert "broken.png" in out and "SYNTHETIC" in out and "not a certified medical device" in out
    assert "Triage: 6 image(s)" in out
    with open(out_csv, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == CSV_COLUMNS and len(rows) == len(images)
    assert {row["leading_finding"] for row in rows} == {ALWAYS_POSITIVE}
    # A second run finds everything stored.
    assert run_cli(argv) == 0
    assert "Screened 0 image(s)" in capsys.readouterr().out


def test_missing_checkpoint_is_one_line(tmp_path, capsys):
    assert (
        run_cli(
            [
                "screen",
                str(tmp_path),
                "--checkpoint",
                str(tmp_path / "nope.pt"),
                "--db",
                str(tmp_path / "r.db"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "nope.pt" in err and "Traceback" not in err


def _stored(db) -> tuple[int, int]:
    """(image rows, distinct contents) of a SQLite records file, 0 while it does not exist yet."""
    if not db.exists():
        return 0, 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as connection:
            return connection.execute(
                "SELECT count(*), count(DISTINCT content_sha256) FROM images"
            ).fetchone()
    except sqlite3.OperationalError:  # the schema is being created
        return 0, 0


def test_a_run_killed_half_way_resumes_without_duplicates(checkpoint, tmp_path):
    synthetic_images(tmp_path / "data", KILL_IMAGES, seed=3)
    db = tmp_path / "records.sqlite3"
    command = cli_command(
        "screen",
        str(tmp_path / "data"),
        "--checkpoint",
        str(checkpoint),
        "--db",
        str(db),
        "--batch-size",
        "2",
        "--workers",
        "1",
        "--no-describe",
        "--no-progress",
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        deadline = time.monotonic() + 120
        while _stored(db)[0] < KILL_IMAGES // 4:
            assert process.poll() is None, f"screening ended early: {process.stderr.read().decode()[-2000:]}"
            assert time.monotonic() < deadline, "screening made no progress in 120 s"
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == -signal.SIGKILL
    rows_at_kill, distinct = _stored(db)
    assert rows_at_kill == distinct, "duplicates after the kill"
    assert KILL_IMAGES // 4 <= rows_at_kill < KILL_IMAGES, "the run was not killed half way"

    resumed = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"Screened {KILL_IMAGES - rows_at_kill} image(s)" in resumed.stdout
    assert f"{rows_at_kill} already stored" in resumed.stdout
    rows, distinct = _stored(db)
    assert rows == distinct == KILL_IMAGES


def test_a_locked_database_is_one_line_not_a_traceback(checkpoint, tmp_path, capsys, monkeypatch):
    import cxreader.storage.db as db_module
    from cxreader.storage.db import open_database

    synthetic_images(tmp_path / "data", 2)
    db = tmp_path / "records.sqlite3"
    open_database(str(db)).close()
    monkeypatch.setattr(db_module, "_SQLITE_BUSY_TIMEOUT_S", 0.2)
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process writing, for longer than the busy timeout
    try:
        argv = [
            "screen",
            str(tmp_path / "data"),
            "--checkpoint",
            str(checkpoint),
            "--db",
            str(db),
            "--no-progress",
        ]
        assert run_cli(argv) == 1
    finally:
        holder.rollback()
        holder.close()
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].startswith("cxreader: error: database error: database is locked")
    assert "Traceback" not in err
