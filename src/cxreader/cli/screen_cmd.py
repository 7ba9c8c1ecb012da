"""``cxreader screen``: screen folders of PNG/JPEG/DICOM radiographs, store every result, print a triage list."""

from __future__ import annotations

import argparse

from cxreader import DISCLAIMER
from cxreader.cli import arguments


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "screen",
        help="screen folders of radiographs, store every result, print a triage list",
        description="Walk folders of PNG, JPEG and DICOM files (DICOM without extension too), classify every "
        "radiograph in batches, store one record per image in the records database, and print the images with "
        "findings above threshold, most urgent first. Re-running skips what is already stored for the "
        "checkpoint (by content hash), so an interrupted run resumes. " + DISCLAIMER,
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
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run_screen)


def run_screen(args: argparse.Namespace) -> int:
    """Handler of ``cxreader screen``: exit code 0 when the run completed (failed files are recorded)."""
    from cxreader.inference.backends import load_backend
    from cxreader.screening.engine import screen
    from cxreader.screening.triage import format_triage, write_triage_csv
    from cxreader.storage.db import open_database

    backend = load_backend(args.checkpoint, device=args.device)
    captioner = None
    if args.caption:
        from cxreader.captioning.predict import CaptionPredictor

        captioner = CaptionPredictor(args.caption, device=args.device)
    database = open_database(args.db)
    try:
        report = screen(
            args.paths,
            backend=backend,
            database=database,
            batch_size=args.batch_size,
            workers=args.workers,
            describe=args.describe,
            captioner=captioner,
            progress=not args.no_progress,
        )
    finally:
        database.close()
    print(
        f"Screened {report.screened} image(s) in {report.seconds:.1f} s ({report.images_per_second:.1f} images/s); "
        f"{report.skipped} already stored, {report.failed} failed, {report.duplicates} duplicate(s), "
        f"{report.ignored} non-image file(s) ignored. Records: {database}"
    )
    for path, reason in report.failures[:20]:
        print(f"  failed: {path}: {reason}")
    if len(report.failures) > 20:
        print(f"  ... and {len(report.failures) - 20} more (cxreader search --status failed)")
    if report.synthetic_model:
        print(arguments.SYNTHETIC_MODEL_NOTE)
    print(format_triage(report.triage, limit=args.triage_limit if args.triage_limit > 0 else None), end="")
    if args.triage_csv:
        path = write_triage_csv(report.triage, args.triage_csv)
        print(f"Triage list written to {path} ({len(report.triage)} image(s))")
    return 0
