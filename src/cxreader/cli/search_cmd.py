"""``cxreader search``: query the stored screening records, print them as a table, CSV or JSON."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from dataclasses import asdict
from datetime import date
from typing import TYPE_CHECKING, TextIO

from cxreader import DISCLAIMER
from cxreader.cli import arguments
from cxreader.files import spreadsheet_safe
from cxreader.labels import HARMONISED_LABELS
from cxreader.storage.names import MAX_SEARCH_LIMIT, SEARCH_ORDERS, SEARCH_STATUSES

if TYPE_CHECKING:
    from cxreader.storage.records import FindingResult, ImageRecord, SearchPage

#: Columns of ``--format csv``: one line per matched finding of each image.
CSV_COLUMNS = (
    "image_id",
    "study_id",
    "patient_id",
    "study_instance_uid",
    "accession_number",
    "study_date",
    "view_position",
    "modality",
    "status",
    "failure_reason",
    "synthetic",
    "checkpoint_id",
    "checkpoint_sha256",
    "model_name",
    "model_synthetic",
    "source_path",
    "finding",
    "probability",
    "threshold",
    "above_threshold",
    "description",
    "caption",
    "heatmap_path",
)
_MAX_SOURCE_CHARS = 48


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "search",
        help="search the stored screening records",
        description="Search the records database: every image with a finding at or above a probability, in a "
        "date range, of a patient, or whose description mentions some words. " + DISCLAIMER,
    )
    parser.add_argument(
        "--finding", help=f"a finding of the stored models' labels ({', '.join(HARMONISED_LABELS)})"
    )
    parser.add_argument("--min-prob", type=float, metavar="P", help="smallest probability, 0-1 (inclusive)")
    parser.add_argument("--since", type=_parse_date, metavar="DATE", help="first study date, YYYY-MM-DD")
    parser.add_argument("--until", type=_parse_date, metavar="DATE", help="last study date, YYYY-MM-DD")
    parser.add_argument("--patient", metavar="ID", help="patient ID (exact)")
    parser.add_argument("--text", help="words the finding's description or caption contains")
    threshold = parser.add_mutually_exclusive_group()
    threshold.add_argument(
        "--above-threshold",
        dest="above_threshold",
        action="store_const",
        const=True,
        help="only findings at or above the checkpoint's operating threshold",
    )
    threshold.add_argument(
        "--below-threshold", dest="above_threshold", action="store_const", const=False, help="only below it"
    )
    parser.add_argument(
        "--status",
        choices=SEARCH_STATUSES,
        default="ok",
        help="images read successfully (default), those that failed, or both",
    )
    parser.add_argument(
        "--model",
        metavar="SHA|NAME",
        help="only results of this model: its checkpoint's SHA-256 (or at least its first 8 hex digits), or "
        "a model name such as densenet121",
    )
    parser.add_argument(
        "--all-results",
        dest="latest_only",
        action="store_false",
        help="every model's result for an image (default: each image once, its newest result)",
    )
    parser.add_argument(
        "--order",
        choices=SEARCH_ORDERS,
        default="probability_desc",
        help="most probable first (default) or newest study first",
    )
    parser.add_argument("--limit", type=int, default=100, help=f"rows per page, at most {MAX_SEARCH_LIMIT}")
    parser.add_argument("--offset", type=int, default=0, help="rows to skip (paging)")
    parser.add_argument(
        "--format", choices=("table", "csv", "json"), default="table", help="output format (default: table)"
    )
    arguments.add_db(parser)
    parser.set_defaults(func=run_search)


def _parse_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date as YYYY-MM-DD, got {text!r}") from None


def run_search(args: argparse.Namespace) -> int:
    """Handler of ``cxreader search``: prints one page of matches; exit code 0 (also when nothing matched)."""
    from cxreader.storage.db import open_database
    from cxreader.storage.search import search_records

    database = open_database(args.db, upgrade=False)
    try:
        with database.session() as session:
            page = search_records(
                session=session,
                finding=args.finding,
                min_prob=args.min_prob,
                since=args.since,
                until=args.until,
                patient=args.patient,
                text=args.text,
                above_threshold=args.above_threshold,
                status=args.status,
                model=args.model,
                latest_only=args.latest_only,
                limit=args.limit,
                offset=args.offset,
                order=args.order,
            )
    finally:
        database.close()
    if args.format == "json":
        write_json(page, sys.stdout)
    elif args.format == "csv":
        write_csv(page, sys.stdout)
    else:
        matched_only = any(
            value is not None
            for value in (args.finding, args.min_prob, args.above_threshold, args.text or None)
        )
        write_table(page, sys.stdout, matched_only=matched_only)
    return 0


def write_json(page: SearchPage, stream: TextIO) -> None:
    """The page as one JSON object: ``total``, ``limit``, ``offset``, ``rows`` (the records, dates in ISO 8601)
    and the disclaimer."""
    # json's fallback for what it cannot write itself: in a record, only dates and timestamps.
    json.dump(
        {**asdict(page), "disclaimer": DISCLAIMER}, stream, indent=2, default=lambda value: value.isoformat()
    )
    stream.write("\n")


def write_csv(page: SearchPage, stream: TextIO) -> None:
    """The page as CSV, one line per matched finding of each image (one line for an image without any); text
    cells a spreadsheet would run as a formula are neutralised (:func:`~cxreader.files.spreadsheet_safe`)."""
    writer = csv.DictWriter(stream, fieldnames=CSV_COLUMNS, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for record in map(asdict, page.rows):
        for finding in record["findings"] or [{}]:
            writer.writerow({key: spreadsheet_safe(value) for key, value in {**record, **finding}.items()})


def write_table(page: SearchPage, stream: TextIO, *, matched_only: bool = True) -> None:
    """A fixed-width table for people: one line per image, its findings last, most probable first.

    Args:
        matched_only: The search had finding filters, so each row holds just its matching findings: show them
            all. Otherwise rows hold all of the model's findings and only those above threshold are shown.
    """
    header = ("image", "study date", "patient", "view", "model", "source", "findings")
    lines = []
    for row in page.rows:
        if row.status == "failed":
            findings = f"FAILED: {row.failure_reason}"
        else:
            shown = row.findings if matched_only else [hit for hit in row.findings if hit.above_threshold]
            findings = "; ".join(_describe_hit(hit) for hit in shown) or "nothing above threshold"
        lines.append(
            (
                str(row.image_id),
                row.study_date.isoformat() if row.study_date else "-",
                row.patient_id or "-",
                row.view_position or "-",
                _model_label(row),
                _fit_left(row.source_path, _MAX_SOURCE_CHARS) + (" [synthetic]" if row.synthetic else ""),
                findings,
            )
        )
    widths = [max([len(header[i])] + [len(line[i]) for line in lines]) for i in range(len(header) - 1)]
    for cells in (header, *lines):
        padded = [cell.ljust(width) for cell, width in zip(cells[:-1], widths, strict=True)]
        stream.write("  ".join([*padded, cells[-1]]) + "\n")
    if page.total == 0:
        stream.write("no matching records\n")
    elif page.rows:
        stream.write(f"records {page.offset + 1}-{page.offset + len(page.rows)} of {page.total}\n")
    else:
        stream.write(f"no records past offset {page.offset} ({page.total} in all)\n")
    stream.write(DISCLAIMER + "\n")


def _model_label(row: ImageRecord) -> str:
    """The model of a result, short: its architecture and the first 8 hex digits of its checkpoint's SHA-256."""
    if row.checkpoint_sha256 is None:
        return "-"
    synthetic = " SYNTHETIC" if row.model_synthetic else ""
    return f"{row.model_name or 'model'} {row.checkpoint_sha256[:8]}{synthetic}"


def _describe_hit(hit: FindingResult) -> str:
    mark = ">=" if hit.above_threshold else "<"
    text = f"{hit.finding.replace('_', ' ')} {hit.probability:.2f} ({mark} {hit.threshold:.2f})"
    return f"{text}: {hit.description}" if hit.description else text


def _fit_left(text: str, width: int) -> str:
    # The end of a path (the file name) says more than its beginning.
    return text if len(text) <= width else "…" + text[len(text) - width + 1 :]
