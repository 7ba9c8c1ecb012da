"""search_records returns exactly what a brute-force filter over the stored data returns, on both backends."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy import event, select

from cxreader.errors import ConfigError
from cxreader.labels import FINDINGS
from cxreader.storage.db import Database, open_database
from cxreader.storage.records import FindingResult, ImageResult, StudyInfo
from cxreader.storage.search import search_records
from cxreader.storage.tables import Checkpoint
from cxreader.storage.write import add_image_result, record_failure, register_checkpoint

PHRASES = (
    "right lower zone",
    "Right Lower lobe, small",
    "left upper zone",
    "LEFT lower zone, large",
    "bilateral, moderate",
    "covers 50% of the lung",
    "small_nodule near the hilum",
    None,
    None,
    None,
)
TEXT_QUERIES = (
    "right lower",
    "lower right",
    "zone LEFT",
    "LEFT",
    "lower zone",
    "50%",
    "%",
    "_",
    "small_",
    "hilum",
    "nothing like this",
)
PATIENTS = tuple(f"P{n:03d}" for n in range(12))


@dataclass
class Stored:
    """What the test stored for one image: the model of the database the brute-force filter reads."""

    image_id: int
    status: str
    study: StudyInfo | None
    findings: dict[str, FindingResult]
    content: str
    checkpoint_id: int | None
    #: Order of the last write: the newest result of a content is its largest.
    written: int


def _sha(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def _populate(database: Database, seed: int) -> dict[int, Stored]:
    rng = random.Random(seed)
    studies = [
        StudyInfo(
            patient_id=rng.choice((*PATIENTS, None)),
            study_instance_uid=f"1.2.826.0.{n}",
            study_date=rng.choice((None, date(2024, 1, 1) + timedelta(days=rng.randrange(366)))),
        )
        for n in range(60)
    ]
    stored: dict[int, Stored] = {}
    with database.session() as session:
        checkpoints = [register_checkpoint(session=session, sha256=_sha(f"ckpt{n}")) for n in range(2)]
        for n in range(180):
            study = rng.choice(studies) if rng.random() < 0.8 else StudyInfo()
            findings = {
                name: FindingResult(
                    finding=name,
                    # Two decimals: many ties, so the tie-break order is tested too.
                    probability=round(rng.betavariate(0.7, 2.0), 2),
                    threshold=rng.choice((0.2, 0.35, 0.5)),
                    description=rng.choice(PHRASES),
                    caption=rng.choice(PHRASES) if rng.random() < 0.3 else None,
                )
                for name in FINDINGS
            }
            # Some contents are stored under both checkpoints (two rows), some stored twice (one row, replaced).
            name = f"img{n}" if rng.random() < 0.9 else f"img{rng.randrange(max(n, 1))}"
            image = ImageResult(
                source_path=f"/screen/{name}.png",
                content_sha256=_sha(name),
                checkpoint_id=rng.choice(checkpoints),
                findings=list(findings.values()),
                study=study,
                view_position=rng.choice(("PA", "AP", None)),
            )
            image_id = add_image_result(session=session, result=image, commit=False)
            if study.study_instance_uid is None and image_id in stored:
                study = stored[image_id].study or StudyInfo()  # stored again without details: keeps its study
            stored[image_id] = Stored(
                image_id, "ok", study, findings, image.content_sha256, image.checkpoint_id, len(stored) + n
            )
        for n in range(20):
            # Some failures are of contents also read successfully by the other checkpoint.
            name = f"bad{n}" if n % 4 else f"img{n}"
            checkpoint_id = rng.choice(checkpoints) if n % 4 == 0 else rng.choice((None, *checkpoints))
            image_id = record_failure(
                session=session,
                source_path=f"/screen/bad{n}.png",
                content_sha256=_sha(name),
                reason="not an image",
                checkpoint_id=checkpoint_id,
                commit=False,
            )
            if image_id not in stored:
                stored[image_id] = Stored(image_id, "failed", None, {}, _sha(name), checkpoint_id, 1000 + n)
        session.commit()
    return stored


def _brute_force(stored: dict[int, Stored], query: dict) -> tuple[int, list[tuple]]:
    """The search, written the slow and obvious way."""
    finding, min_prob, above = query.get("finding"), query.get("min_prob"), query.get("above_threshold")
    words = query.get("text")
    finding_filtered = any(value is not None for value in (finding, min_prob, above, words))
    status, models = query.get("status", "ok"), query.get("model_ids")
    admitted = [
        record
        for record in stored.values()
        if (status == "any" or record.status == status) and (models is None or record.checkpoint_id in models)
    ]
    if query.get("latest_only", True):
        newest: dict[str, Stored] = {}
        for record in admitted:
            if record.content not in newest or record.written > newest[record.content].written:
                newest[record.content] = record
        admitted = list(newest.values())

    def finding_matches(item: FindingResult) -> bool:
        return (
            (finding is None or item.finding == finding)
            and (min_prob is None or item.probability >= min_prob)
            and (above is None or (item.probability >= item.threshold) == above)
            and (
                words is None
                or all(
                    any(word.lower() in (value or "").lower() for value in (item.description, item.caption))
                    for word in words.split()
                )
            )
        )

    matches = []
    for record in admitted:
        study = record.study or StudyInfo()
        if query.get("patient") is not None and study.patient_id != query["patient"]:
            continue
        if query.get("since") is not None and (study.study_date is None or study.study_date < query["since"]):
            continue
        if query.get("until") is not None and (study.study_date is None or study.study_date > query["until"]):
            continue
        hits = [item for item in record.findings.values() if not finding_filtered or finding_matches(item)]
        if finding_filtered and not hits:
            continue
        hits.sort(key=lambda item: (-item.probability, FINDINGS.index(item.finding)))
        score = hits[0].probability if hits else None
        matches.append((record.image_id, score, study.study_date, [(h.finding, h.probability) for h in hits]))
    if query.get("order", "probability_desc") == "date_desc":
        matches.sort(key=lambda m: -m[0])
        matches.sort(key=lambda m: (m[2] is None, -(m[2].toordinal() if m[2] else 0)))
    else:
        matches.sort(key=lambda m: (m[1] is None, -(m[1] or 0.0), -m[0]))
    limit, offset = query.get("limit", 100), query.get("offset", 0)
    return len(matches), [(m[0], m[1], m[3]) for m in matches[offset : offset + limit]]


def _random_query(rng: random.Random) -> dict:
    query: dict = {}
    if rng.random() < 0.6:
        query["finding"] = rng.choice(FINDINGS)
    if rng.random() < 0.6:
        query["min_prob"] = rng.choice((0.0, 0.05, 0.2, 0.33, 0.5, 0.71, 0.9, 1.0))
    if rng.random() < 0.3:
        query["above_threshold"] = rng.random() < 0.7
    if rng.random() < 0.25:
        query["text"] = rng.choice(TEXT_QUERIES)
    if rng.random() < 0.3:
        query["patient"] = rng.choice((*PATIENTS, "NOBODY"))
    if rng.random() < 0.35:
        query["since"] = date(2024, 1, 1) + timedelta(days=rng.randrange(366))
    if rng.random() < 0.25:
        query["until"] = query.get("since", date(2024, 1, 1)) + timedelta(days=rng.randrange(200))
    if rng.random() < 0.15:
        query["status"] = rng.choice(("any", "failed"))
    if rng.random() < 0.3:
        query["latest_only"] = False
    if rng.random() < 0.3:
        query["model"] = rng.choice((_sha("ckpt0")[:8], _sha("ckpt1")))
    query["order"] = rng.choice(("probability_desc", "date_desc"))
    query["limit"] = rng.choice((0, 1, 7, 50, 400))
    query["offset"] = rng.choice((0, 0, 3, 40))
    return query


@pytest.fixture(scope="module")
def populated(module_database_url: str) -> Iterator[tuple[Database, dict[int, Stored]]]:
    """A database holding a few hundred random records (once per backend), and the model of what it holds."""
    database = open_database(module_database_url)
    try:
        yield database, _populate(database, seed=5)
    finally:
        database.close()


def test_search_matches_a_brute_force_filter(populated) -> None:
    database, stored = populated
    rng = random.Random(11)
    queries = [_random_query(rng) for _ in range(160)]
    nonempty = 0
    with database.session() as session:
        ids = {value.sha256: value.id for value in session.scalars(select(Checkpoint))}
        for query in queries:
            page = search_records(session=session, **query)
            model = query.get("model")
            model_ids = None if model is None else {ids[sha] for sha in ids if sha.startswith(model)}
            expected_total, expected_rows = _brute_force(stored, {**query, "model_ids": model_ids})
            got = [
                (row.image_id, row.score, [(h.finding, h.probability) for h in row.findings])
                for row in page.rows
            ]
            assert (page.total, got) == (expected_total, expected_rows), query
            nonempty += bool(expected_rows)
    assert nonempty > 60  # the random queries are not all trivially empty


def test_rows_carry_the_study_and_image_details(populated) -> None:
    database, stored = populated
    with database.session() as session:
        page = search_records(session=session, finding="Effusion", min_prob=0.0, order="date_desc", limit=400)
    dated = [row for row in page.rows if row.study_date is not None]
    assert dated and all(row.status == "ok" and row.source_path.startswith("/screen/") for row in page.rows)
    for row in page.rows:
        study = stored[row.image_id].study or StudyInfo()
        assert (row.patient_id, row.study_date, row.study_instance_uid) == (
            study.patient_id,
            study.study_date,
            study.study_instance_uid,
        )
        assert [hit.finding for hit in row.findings] == ["Effusion"]


def test_text_search_takes_wildcards_literally(database: Database) -> None:
    with database.session() as session:
        checkpoint_id = register_checkpoint(session=session, sha256=_sha("c"))
        for name, words in (
            ("a", "covers 50% of the lung"),
            ("b", "covers 50 percent"),
            ("c", "small_nodule"),
        ):
            findings = [
                FindingResult(f, 0.9, 0.5, description=words if f == "Mass" else None) for f in FINDINGS
            ]
            add_image_result(
                session=session,
                result=ImageResult(f"/{name}.png", _sha(name), checkpoint_id, findings),
            )
        assert search_records(session=session, text="50%").total == 1
        assert search_records(session=session, text="50").total == 2
        assert search_records(session=session, text="smal_").total == 0  # "_" is not "any character"
        assert search_records(session=session, text="SMALL_NOD").total == 1


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"finding": "Tumour"}, "unknown finding"),
        ({"finding": "No Finding"}, "No Finding"),
        ({"min_prob": 1.5}, "min_prob"),
        ({"order": "random"}, "unknown order"),
        ({"limit": -1}, "limit"),
        ({"limit": 10**6}, "limit"),
        ({"offset": -3}, "offset"),
        ({"status": "pending"}, "unknown status"),
        ({"since": date(2024, 5, 2), "until": date(2024, 5, 1)}, "after"),
    ],
)
def test_invalid_search_arguments_are_refused(database: Database, arguments: dict, message: str) -> None:
    with database.session() as session, pytest.raises(ConfigError, match=message):
        search_records(session=session, **arguments)


def test_finding_search_is_an_index_range_scan_without_a_sort(tmp_path: Path) -> None:
    """The "finding = X and probability >= p, most probable first" query reads the composite index backwards."""
    database = open_database(str(tmp_path / "plan.sqlite3"))
    plans: list[str] = []

    def explain(conn, cursor, statement, parameters, context, executemany) -> None:
        if "ORDER BY" in statement:
            rows = cursor.connection.execute("EXPLAIN QUERY PLAN " + statement, parameters).fetchall()
            plans.append(" | ".join(str(row[-1]) for row in rows))

    event.listen(database.engine, "before_cursor_execute", explain)
    try:
        with database.session() as session:
            search_records(session=session, finding="Effusion", min_prob=0.5, limit=50)
    finally:
        event.remove(database.engine, "before_cursor_execute", explain)
        database.close()
    assert len(plans) == 1
    assert "USING COVERING INDEX ix_findings_finding_probability_image_id" in plans[0], plans[0]
    assert "TEMP B-TREE" not in plans[0], plans[0]  # no sort step: the index order is the result order
