"""``cxreader screen``: screen folders of PNG/JPEG/DICOM radiographs, store every result, print a triage list."""

from __future__ import annotations

import argparse
import datetime
import json
from typing import TYPE_CHECKING

from cxreader import DISCLAIMER
from cxreader.cli import arguments
from cxreader.storage.names import DEFAULT_LEASE_S

if TYPE_CHECKING:
    from cxreader.dicom.outputs import DicomOutputs
    from cxreader.screening.engine import ScreeningReport

#: How long torchrun ranks that finished their share wait for the others before the triage list.
_RANKS_WAIT = datetime.timedelta(days=7)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "screen",
        help="screen folders of radiographs, store every result, print a triage list",
        description="Walk folders of PNG, JPEG and DICOM files (DICOM without extension too), classify every "
        "radiograph in batches, store one record per image in the records database, and print the images with "
        "findings above threshold, most urgent first. Re-running skips what is already stored for the "
        "checkpoint (by content hash), so an interrupted run resumes. Any number of screen processes, on one "
        "machine or many, may work on the same folders and database at once: each claims an image before "
        "reading it, so none infers an image another has taken. Under torchrun (torchrun --nnodes=N "
        "--nproc_per_node=G -m cxreader screen ...) each rank screens its share of the files on its own "
        "accelerator (CPU where there is none) and rank 0 prints the triage list once all ranks are done. "
        + DISCLAIMER,
    )
    parser.add_argument(
        "paths", nargs="+", metavar="PATH", help="image files and folders (searched recursively)"
    )
    arguments.add_checkpoint(parser, arguments.CHECKPOINT_OR_ONNX_HELP)
    arguments.add_db(parser)
    arguments.add_batch_size(parser, 16)
    parser.add_argument(
        "--workers",
        type=int,
        default=2,
        help="threads reading files ahead of the model (default 2; 0 = none)",
    )
    arguments.add_device(parser)
    parser.add_argument("--triage-csv", metavar="OUT", help="write the whole triage list to this CSV file")
    parser.add_argument(
        "--triage-limit",
        type=int,
        default=50,
        metavar="N",
        help="lines of the printed triage list (default 50)",
    )
    parser.add_argument(
        "--describe",
        action=argparse.BooleanOptionalAction,
        help="grounded descriptions of positive findings (default when available); --no-describe: "
        "probabilities only (faster)",
    )
    parser.add_argument(
        "--caption",
        metavar="CKPT",
        help="a learned captioner (RUN/caption.pt): store its caption for every positive finding",
    )
    parser.add_argument(
        "--summary-json",
        metavar="FILE",
        help='write the run\'s counts as JSON: {"inferred": n, "already_stored": n, "claimed_elsewhere": n, '
        '"failed": n, ...} (under torchrun: all ranks together, written by rank 0)',
    )
    parser.add_argument(
        "--claim-lease",
        type=float,
        default=DEFAULT_LEASE_S,
        metavar="SECONDS",
        help="how long another worker waits before taking over the images a killed worker had claimed "
        f"(default {DEFAULT_LEASE_S:g}; claims are renewed after every batch, and a dead process on the same "
        "machine is noticed at once)",
    )
    parser.add_argument(
        "--max-megapixels",
        type=float,
        default=100.0,
        metavar="MP",
        help="largest image a file may declare in its header; larger files are recorded as failed before "
        "they are decoded (default 100)",
    )
    arguments.add_dicom_outputs(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run_screen)


def run_screen(args: argparse.Namespace) -> int:
    """Handler of ``cxreader screen``: exit code 0 when the run completed (failed files are recorded)."""
    from cxreader.inference.backends import load_backend
    from cxreader.screening.engine import add_triage, merge_reports, screen
    from cxreader.service.settings import megapixels
    from cxreader.storage.db import open_database
    from cxreader.training import distributed

    # Under torchrun: one process per rank, gloo only for the final exchange of counts (never a tensor).
    info = distributed.init_distributed(args.device, backend="gloo", timeout=_RANKS_WAIT)
    try:
        device = str(info.device) if info.is_distributed else args.device
        backend = load_backend(args.checkpoint, device=device)
        captioner = None
        if args.caption:
            from cxreader.captioning.predict import CaptionPredictor

            captioner = CaptionPredictor(args.caption, device=device)
        sink = arguments.dicom_outputs(args, backend)
        if info.is_distributed and not info.is_primary:
            distributed.barrier(info)  # rank 0 creates or upgrades the schema first
        database = open_database(args.db)
        if info.is_distributed and info.is_primary:
            distributed.barrier(info)
        try:
            report = screen(
                args.paths,
                backend=backend,
                database=database,
                batch_size=args.batch_size,
                workers=args.workers,
                describe=args.describe,
                captioner=captioner,
                progress=not args.no_progress and info.is_primary,
                share=(info.rank, info.world_size),
                lease_s=args.claim_lease,
                triage=not info.is_distributed,
                max_pixels=megapixels(args.max_megapixels, "--max-megapixels"),
                sink=sink,
            )
            if info.is_distributed:
                reports = distributed.all_gather_objects(info, report)
                if not info.is_primary:
                    return 0
                report = add_triage(merge_reports(reports), database)  # type: ignore[arg-type]
        finally:
            database.close()
    finally:
        distributed.cleanup_distributed()
    _print_report(report, args, str(database))
    if sink is not None:
        print(dicom_summary(sink))
    return 0


def dicom_summary(sink: DicomOutputs) -> str:
    """One line on the DICOM objects a run wrote and sent."""
    where = f" to {sink.out_dir}" if sink.out_dir is not None else ""
    line = f"DICOM results: {sink.written} object(s) written{where}"
    if sink.senders:
        line += f", {sink.sent} sent, {sink.send_failures} not sent"
    if sink.skipped:
        line += f"; {sink.skipped} image(s) without DICOM results (see the warnings above)"
    return line


def _print_report(report: ScreeningReport, args: argparse.Namespace, database: str) -> None:
    from cxreader.files import write_text_atomic
    from cxreader.screening.triage import format_triage, write_triage_csv

    ranks = f" on {report.ranks} ranks" if report.ranks > 1 else ""
    print(
        f"Screened {report.screened} image(s){ranks} in {report.seconds:.1f} s "
        f"({report.images_per_second:.1f} images/s); {report.skipped} already stored, "
        f"{report.claimed_elsewhere} claimed by other workers, {report.refused} not read (input gate), "
        f"{report.failed} failed, "
        f"{report.duplicates} duplicate(s), {report.ignored} non-image file(s) ignored. Records: {database}"
    )
    for path, reason in report.failures[:20]:
        print(f"  failed: {path}: {reason}")
    if len(report.failures) > 20:
        print(f"  ... and {len(report.failures) - 20} more (cxreader search --status failed)")
    if report.refusals:
        print(f"Not read ({report.refused}): the input gate refused them; they are not on the triage list")
    for path, reasons in report.refusals[:20]:
        print(f"  not read: {path}: {reasons}")
    if len(report.refusals) > 20:
        print(f"  ... and {len(report.refusals) - 20} more (cxreader search --status refused)")
    if report.synthetic_model:
        print(arguments.SYNTHETIC_MODEL_NOTE)
    print(format_triage(report.triage, limit=args.triage_limit if args.triage_limit > 0 else None), end="")
    if args.triage_csv:
        path = write_triage_csv(report.triage, args.triage_csv)
        print(f"Triage list written to {path} ({len(report.triage)} image(s))")
    if args.summary_json:
        write_text_atomic(args.summary_json, json.dumps(report.summary(), indent=2) + "\n")
