"""Search latency over 1,000,000 stored finding rows in SQLite: "finding = X and probability >= p".

Generates the records straight into a fresh database (schema by the real migrations, rows by Core bulk inserts
with ``executemany``), then times :func:`cxreader.storage.search.search_records` as the CLI and the service call
it: the total count plus the first page of 50, most probable first. The median over 20 queries with varied
finding and threshold is reported with the composite index ``(finding, probability, image_id)`` and, in the same
run, after dropping it (the planner then scans the table), with their ratio.

Run: ``python benchmarks/search_latency.py [--rows 1000000] [--queries 20] [--db PATH]``. The records are
synthetic (random probabilities, no patient data); the goal the issue sets is < 50 ms per search.
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy import Engine, insert, text

from cxreader.labels import FINDINGS
from cxreader.storage.db import open_database
from cxreader.storage.search import search_records
from cxreader.storage.tables import Checkpoint, Finding, Image, Study

INDEX_NAME = "ix_findings_finding_probability_image_id"
PAGE = 50
CHUNK_IMAGES = 5_000  # even: the two images of a study always land in the same chunk
MIN_PROBS = (0.1, 0.3, 0.5, 0.7, 0.9)


def generate(engine: Engine, rows: int, seed: int) -> tuple[int, float]:
    """Bulk-insert ``rows`` finding rows (14 per image, two images per study); returns (images, seconds)."""
    rng = random.Random(seed)
    images = rows // len(FINDINGS)
    thresholds = {name: round(0.25 + 0.03 * index, 2) for index, name in enumerate(FINDINGS)}
    now = datetime.now(timezone.utc)
    started = time.perf_counter()
    with engine.begin() as connection:
        connection.execute(
            insert(Checkpoint),
            [{"sha256": "0" * 64, "labels": list(FINDINGS), "model_name": "densenet121", "created_at": now}],
        )
    for first in range(0, images, CHUNK_IMAGES):
        image_ids = range(first + 1, min(first + CHUNK_IMAGES, images) + 1)
        study_ids = sorted({(image_id + 1) // 2 for image_id in image_ids})
        studies = [
            {
                "id": study_id,
                "patient_id": f"SYN{study_id // 3:07d}",
                "study_instance_uid": f"2.25.{study_id}",
                "study_date": date(2020, 1, 1) + timedelta(days=rng.randrange(5 * 365)),
                "created_at": now,
            }
            for study_id in study_ids
        ]
        image_rows = [
            {
                "id": image_id,
                "study_id": (image_id + 1) // 2,
                "checkpoint_id": 1,
                "source_path": f"/synthetic/{image_id:08d}.png",
                "content_sha256": f"{image_id:064x}",
                "status": "ok",
                "view_position": "PA",
                "synthetic": True,
                "created_at": now,
                "updated_at": now,
            }
            for image_id in image_ids
        ]
        finding_rows = []
        for image_id in image_ids:
            for name in FINDINGS:
                # Skewed towards 0 like a screening population's probabilities.
                probability = round(rng.betavariate(0.6, 3.0), 4)
                finding_rows.append(
                    {
                        "image_id": image_id,
                        "finding": name,
                        "probability": probability,
                        "threshold": thresholds[name],
                        "above_threshold": probability >= thresholds[name],
                    }
                )
        with engine.begin() as connection:  # one transaction per chunk; executemany per table
            connection.execute(insert(Study), studies)
            connection.execute(insert(Image), image_rows)
            connection.execute(insert(Finding), finding_rows)
    return images, time.perf_counter() - started


def time_queries(database, queries: list[tuple[str, float]]) -> tuple[list[float], list[int]]:
    """Seconds per search (count + first page) and the totals found, one per query."""
    seconds, totals = [], []
    with database.session() as session:
        search_records(session=session, finding=queries[0][0], min_prob=queries[0][1], limit=PAGE)  # warm-up
        for finding, min_prob in queries:
            started = time.perf_counter()
            page = search_records(session=session, finding=finding, min_prob=min_prob, limit=PAGE)
            seconds.append(time.perf_counter() - started)
            totals.append(page.total)
            assert len(page.rows) == min(PAGE, page.total)
            assert all(a.score >= b.score for a, b in zip(page.rows, page.rows[1:], strict=False))
    return seconds, totals


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="finding rows to generate")
    parser.add_argument("--queries", type=int, default=20, help="searches per timing")
    parser.add_argument("--db", type=Path, help="SQLite file to create (default: a temporary one)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="cxreader-bench-") as scratch:
        path = args.db or Path(scratch) / "records.sqlite3"
        if path.exists():
            parser.error(f"{path} exists; give a new file")
        database = open_database(str(path))  # creates the schema through the migrations
        images, load_s = generate(database.engine, args.rows, args.seed)
        with database.engine.connect() as connection:
            stored = connection.execute(text("SELECT count(*) FROM findings")).scalar_one()
        size_mb = path.stat().st_size / 1e6

        rng = random.Random(args.seed + 1)
        queries = [(FINDINGS[i % len(FINDINGS)], rng.choice(MIN_PROBS)) for i in range(args.queries)]
        indexed, totals = time_queries(database, queries)
        with database.engine.begin() as connection:
            connection.execute(text(f"DROP INDEX {INDEX_NAME}"))
        unindexed, totals_scan = time_queries(database, queries)
        database.close()
        assert totals == totals_scan, "the index changed the results"

    median_indexed, median_scan = statistics.median(indexed), statistics.median(unindexed)
    print(f"Python {sys.version.split()[0]}, SQLite {sqlite3.sqlite_version}")
    print(
        f"generated {stored:,} finding rows ({images:,} images) in {load_s:.1f} s; database {size_mb:.0f} MB"
    )
    print(
        f"{len(queries)} searches 'finding = X and probability >= p' (count + first {PAGE}, most probable first)"
    )
    print(
        f"  matches per search: median {statistics.median(totals):,.0f}, range {min(totals):,}-{max(totals):,}"
    )
    print(f"  with index {INDEX_NAME}: median {median_indexed * 1e3:.2f} ms, max {max(indexed) * 1e3:.2f} ms")
    print(f"  without it (table scan):  median {median_scan * 1e3:.2f} ms, max {max(unindexed) * 1e3:.2f} ms")
    print(f"  speed-up from the index: {median_scan / median_indexed:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
