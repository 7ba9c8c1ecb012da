"""Independent ``cxreader screen`` workers sharing one archive and one database: 1, 2 and 4 at once.

Every worker is a plain ``cxreader screen`` process over the same folder and the same records database (the
issue asks for PostgreSQL); they claim images in the database, so together they infer each image once. For each
worker count the benchmark empties the records, starts the workers at once, and reports:

* the wall time from the first start to the last exit, and its ratio to one worker (the baseline, same run);
* the sum of the workers' ``inferred`` counts (``--summary-json``), which must equal the number of images, and
  the image rows stored (one per image).

Each worker gets ``cores / workers`` compute threads (``OMP_NUM_THREADS``), as a department would run them:
on N machines each worker has a machine's cores, and the same command runs on each (see the README).

The model is a DenseNet-121 at 224 px with random weights (a SYNTHETIC model: its outputs mean nothing; the
work per image is CheXNet's) unless ``--checkpoint`` names one; the images are SYNTHETIC radiographs.

Run: ``python benchmarks/screen_workers.py --db postgresql://... [--images 2000] [--workers 1,2,4]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import delete, func, select

from _rounds import random_checkpoint
from cxreader.storage.db import open_database
from cxreader.storage.names import DATABASE_URL_ENV
from cxreader.storage.tables import Claim, Finding, Image, Study
from cxreader.synthetic.dataset import generate_synthetic_dataset


def empty_records(url: str) -> None:
    database = open_database(url)
    try:
        with database.session() as session:
            for table in (Claim, Finding, Image, Study):
                session.execute(delete(table))
            session.commit()
    finally:
        database.close()


def stored_rows(url: str) -> tuple[int, int]:
    database = open_database(url)
    try:
        with database.session() as session:
            rows = session.scalar(select(func.count()).select_from(Image)) or 0
            distinct = session.scalar(select(func.count(func.distinct(Image.content_sha256)))) or 0
    finally:
        database.close()
    return rows, distinct


def run_workers(
    count: int, folder: Path, checkpoint: Path, url: str, scratch: Path
) -> tuple[float, int, int]:
    """Start ``count`` workers at once; (wall seconds, summed inferred, image rows)."""
    empty_records(url)
    threads = max(1, (os.cpu_count() or 1) // count)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    summaries = [scratch / f"w{count}-{n}.json" for n in range(count)]
    command = [sys.executable, "-m", "cxreader", "screen", str(folder), "--checkpoint", str(checkpoint),
               "--db", url, "--no-describe", "--no-progress", "--workers", "1"]  # fmt: skip
    started = time.perf_counter()
    processes = [
        subprocess.Popen(
            [*command, "--summary-json", str(summary)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
        )  # fmt: skip
        for summary in summaries
    ]
    for process in processes:
        _out, err = process.communicate()
        if process.returncode != 0:
            raise SystemExit(f"a worker failed: {err.decode()[-2000:]}")
    seconds = time.perf_counter() - started
    inferred = sum(json.loads(summary.read_text())["inferred"] for summary in summaries)
    rows, distinct = stored_rows(url)
    if rows != distinct:
        raise SystemExit(f"{count} workers stored {rows} rows for {distinct} images")
    return seconds, inferred, rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", default=os.environ.get(DATABASE_URL_ENV), help="records database URL")
    parser.add_argument("--checkpoint", type=Path, help="model (default: a random DenseNet-121, SYNTHETIC)")
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--size", type=int, default=256, help="side of the synthetic images in pixels")
    parser.add_argument("--workers", default="1,2,4", help="worker counts, the first is the baseline")
    parser.add_argument("--rounds", type=int, default=1, help="runs of every worker count, interleaved")
    args = parser.parse_args(argv)
    if not args.db:
        parser.error(f"name the records database with --db or ${DATABASE_URL_ENV}")
    counts = [int(value) for value in args.workers.split(",")]
    with tempfile.TemporaryDirectory(prefix="cxreader-workers-") as tmp:
        scratch = Path(tmp)
        generate_synthetic_dataset(scratch / "archive", images=args.images, size=args.size, seed=21)
        checkpoint = args.checkpoint or random_checkpoint(scratch / "densenet121.pt", args.input_size)
        walls: dict[int, list[float]] = {count: [] for count in counts}
        for round_index in range(args.rounds):
            order = counts if round_index % 2 == 0 else list(reversed(counts))
            for count in order:
                seconds, inferred, rows = run_workers(
                    count, scratch / "archive", checkpoint, args.db, scratch
                )
                walls[count].append(seconds)
                print(
                    f"  {count} worker(s): {seconds:.1f} s, inferred {inferred}, rows {rows}", file=sys.stderr
                )
                if inferred != args.images or rows != args.images:
                    raise SystemExit(
                        f"{count} workers inferred {inferred} and stored {rows} of {args.images}"
                    )
    base = statistics.median(walls[counts[0]])
    print(f"{args.images} SYNTHETIC images, {os.cpu_count()} cores, median of {args.rounds} round(s)")
    print("| workers | wall s | images/s | x baseline wall | inferred (sum) |")
    print("|---:|---:|---:|---:|---:|")
    for count in counts:
        wall = statistics.median(walls[count])
        print(f"| {count} | {wall:.1f} | {args.images / wall:.1f} | {wall / base:.3f} | {args.images} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
