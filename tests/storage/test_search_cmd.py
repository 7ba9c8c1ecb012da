"""``cxreader search`` and ``cxreader db upgrade``: argument handling and the table, CSV and JSON outputs."""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
from datetime import date
from pathlib import Path

import pytest

from cxreader import DISCLAIMER
from cxreader.cli import db_cmd, search_cmd
from cxreader.errors import ConfigError
from cxreader.labels import FINDINGS
from cxreader.storage.db import head_revision, open_database
from cxreader.storage.records import FindingResult, ImageResult, StudyInfo
from cxreader.storage.write import add_image_result, record_failure, register_checkpoint


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="cxreader")
    subparsers = parser.add_subparsers(dest="command")
    search_cmd.register(subparsers)
    db_cmd.register(subparsers)
    args = parser.parse_args(argv)
    return args.func(args)


def _sha(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


@pytest.fixture
def records_url(database_url: str) -> str:
    """A database with three screened images (one synthetic) and one failure."""
    assert run(["db", "upgrade", "--db", database_url]) == 0
    database = open_database(database_url, upgrade=False)
    effusion = {"a": 0.91, "b": 0.62, "c": 0.10}
    with database.session() as session:
        checkpoint_id = register_checkpoint(session=session, sha256=_sha("ckpt"), model_name="densenet121")
        for name, probability in effusion.items():
            findings = [
                FindingResult(
                    finding,
                    probability if finding == "Effusion" else 0.05,
                    0.4,
                    description="Effusion, right lower zone, moderate" if finding == "Effusion" else None,
                )
                for finding in FINDINGS
            ]
            study = StudyInfo(
                patient_id=f"PAT-{name}", study_instance_uid=f"1.{name}", study_date=date(2024, 3, 4)
            )
            add_image_result(
                session=session,
                result=ImageResult(
                    f"/screen/{name}.dcm",
                    _sha(name),
                    checkpoint_id,
                    findings,
                    study=study,
                    synthetic=name == "b",
                ),
            )
        record_failure(
            session=session, source_path="/screen/x.dcm", content_sha256=_sha("x"), reason="CT, not CR"
        )
    database.close()
    return database_url


def test_db_upgrade_reports_the_revision(database_url: str, capsys: pytest.CaptureFixture) -> None:
    assert run(["db", "upgrade", "--db", database_url]) == 0
    assert f"revision {head_revision()}" in capsys.readouterr().out


def test_table_output(records_url: str, capsys: pytest.CaptureFixture) -> None:
    assert run(["search", "--finding", "effusion", "--min-prob", "0.5", "--db", records_url]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["image", "study", "date", "patient", "view", "model", "source", "findings"]
    assert f"densenet121 {_sha('ckpt')[:8]}" in out[1]
    assert (
        "/screen/a.dcm" in out[1]
        and "Effusion 0.91 (>= 0.40): Effusion, right lower zone, moderate" in out[1]
    )
    assert "/screen/b.dcm [synthetic]" in out[2] and "PAT-b" in out[2] and "2024-03-04" in out[2]
    assert out[3:] == ["records 1-2 of 2", DISCLAIMER]

    assert run(["search", "--status", "failed", "--db", records_url]) == 0
    out = capsys.readouterr().out
    assert "FAILED: CT, not CR" in out and "records 1-1 of 1" in out

    assert run(["search", "--patient", "PAT-c", "--db", records_url]) == 0
    assert "nothing above threshold" in capsys.readouterr().out

    assert run(["search", "--finding", "Hernia", "--min-prob", "0.5", "--db", records_url]) == 0
    assert "no matching records" in capsys.readouterr().out


def test_csv_output(records_url: str, capsys: pytest.CaptureFixture) -> None:
    assert (
        run(["search", "--text", "RIGHT LOWER", "--format", "csv", "--limit", "2", "--db", records_url]) == 0
    )
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [row["source_path"] for row in rows] == ["/screen/a.dcm", "/screen/b.dcm"]
    assert tuple(rows[0]) == search_cmd.CSV_COLUMNS
    assert rows[0]["finding"] == "Effusion" and float(rows[0]["probability"]) == 0.91
    assert rows[0]["above_threshold"] == "True" and rows[1]["synthetic"] == "True"

    # Without finding filters each image lists all 14 findings.
    assert run(["search", "--patient", "PAT-a", "--format", "csv", "--db", records_url]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [row["finding"] for row in rows][0] == "Effusion" and len(rows) == len(FINDINGS)


def test_json_output(records_url: str, capsys: pytest.CaptureFixture) -> None:
    argv = ["search", "--since", "2024-03-01", "--order", "date_desc", "--offset", "1", "--format", "json"]
    assert run([*argv, "--db", records_url]) == 0
    document = json.loads(capsys.readouterr().out)
    assert (document["total"], document["offset"], len(document["rows"])) == (3, 1, 2)
    assert document["disclaimer"] == DISCLAIMER
    row = document["rows"][0]
    assert row["study_date"] == "2024-03-04" and row["status"] == "ok" and len(row["findings"]) == 14
    # The stored record as it is, with what it derives: the score and each finding's side of its threshold.
    assert row["score"] == row["findings"][0]["probability"] == max(f["probability"] for f in row["findings"])
    assert row["findings"][0]["above_threshold"] is (row["findings"][0]["probability"] >= 0.4)
    assert row["created_at"].endswith("+00:00") and isinstance(row["image_id"], int)
    assert {row["patient_id"] for row in document["rows"]} <= {"PAT-a", "PAT-b", "PAT-c"}


def test_bad_arguments_are_clear_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(ConfigError, match="no records database"):
        run(["search", "--db", str(tmp_path / "none.sqlite3")])
    with pytest.raises(SystemExit):
        run(["search", "--since", "March"])
    assert "expected a date as YYYY-MM-DD" in capsys.readouterr().err
    url = str(tmp_path / "r.sqlite3")
    run(["db", "upgrade", "--db", url])
    with pytest.raises(ConfigError, match="unknown finding 'Tumour'"):
        run(["search", "--finding", "Tumour", "--db", url])
    with pytest.raises(ConfigError, match="min_prob"):
        run(["search", "--min-prob", "7", "--db", url])


def test_a_second_model_does_not_double_the_images(records_url: str, capsys: pytest.CaptureFixture) -> None:
    """Search shows each image's newest result unless asked for all, and filters by model."""
    database = open_database(records_url, upgrade=False)
    with database.session() as session:
        second = register_checkpoint(
            session=session, sha256=_sha("ckpt2"), model_name="resnet50", synthetic=True
        )
        for name in ("a", "b", "c"):
            findings = [FindingResult(finding, 0.3, 0.5) for finding in FINDINGS]
            add_image_result(
                session=session, result=ImageResult(f"/screen/{name}.dcm", _sha(name), second, findings)
            )
    database.close()

    def csv_rows(*argv: str) -> list[dict]:
        assert run(["search", "--format", "csv", "--finding", "Effusion", *argv, "--db", records_url]) == 0
        return list(csv.DictReader(io.StringIO(capsys.readouterr().out)))

    newest = csv_rows()
    assert len(newest) == 3 and {row["model_name"] for row in newest} == {"resnet50"}
    assert {row["model_synthetic"] for row in newest} == {"True"}
    assert len(csv_rows("--all-results")) == 6
    first = csv_rows("--model", _sha("ckpt")[:8])
    assert [row["checkpoint_sha256"] for row in first] == [_sha("ckpt")] * 3
    assert len(csv_rows("--model", "RESNET50")) == 3
    with pytest.raises(ConfigError, match="no stored model matches 'vgg'.*resnet50"):
        run(["search", "--model", "vgg", "--db", records_url])
    assert run(["search", "--db", records_url]) == 0
    assert "resnet50" in capsys.readouterr().out


def test_csv_cells_that_a_spreadsheet_would_run_are_neutralised(database_url: str, capsys) -> None:
    database = open_database(database_url)
    with database.session() as session:
        checkpoint_id = register_checkpoint(session=session, sha256=_sha("ckpt"))
        findings = [FindingResult(finding, 0.9, 0.5) for finding in FINDINGS]
        study = StudyInfo(patient_id='=HYPERLINK("http://evil","x")', study_instance_uid="1.2")
        add_image_result(
            session=session, result=ImageResult("/s/a.png", _sha("a"), checkpoint_id, findings, study=study)
        )
    database.close()
    assert run(["search", "--format", "csv", "--db", database_url]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert {row["patient_id"] for row in rows} == {'\'=HYPERLINK("http://evil","x")'}
