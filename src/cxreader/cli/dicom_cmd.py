"""``cxreader dicom listen`` (a DICOM node that screens what it receives) and ``cxreader dicom pull`` (screen a
PACS's radiographs over DICOMweb)."""

from __future__ import annotations

import argparse
import logging
import signal
from datetime import date
from pathlib import Path
from typing import Any

from cxreader import DISCLAIMER
from cxreader.cli import arguments
from cxreader.errors import ConfigError

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    group = arguments.add_command_group(
        subparsers, "dicom", help="the hospital side: a DICOM node, pulling from a PACS over DICOMweb"
    )
    listen = group.add_parser(
        "listen",
        help="a DICOM node (C-STORE SCP) that screens every chest radiograph it receives",
        description="Listen for C-STORE requests, keep each CR or DX instance received (answered only once it "
        "is on disk), screen it through the same engine as `cxreader screen` (records, input gate, triage), "
        "write the results as DICOM in the source study and send them on. Instances of other SOP classes get "
        "the failure status 0x0122 and a failed record. SIGTERM or Ctrl-C stops accepting, waits for the "
        "associations in flight and screens what they delivered. " + DISCLAIMER,
    )
    listen.add_argument("--port", type=int, default=11112, help="TCP port (default 11112; 0: any free port)")
    listen.add_argument("--host", default="0.0.0.0", help="address to listen on (default all)")
    listen.add_argument(
        "--spool",
        metavar="DIR",
        help="folder for received instances and those not screened yet (default: DICOM_OUT/../spool, or "
        "./cxreader-spool)",
    )
    _add_model_arguments(listen)
    arguments.add_dicom_outputs(listen)
    listen.add_argument(
        "--ready-file", metavar="FILE", help="write the port to this file once listening (for scripts)"
    )
    listen.set_defaults(func=run_listen)

    pull = group.add_parser(
        "pull",
        help="query a PACS over DICOMweb, retrieve its radiographs, screen them, optionally STOW the results",
        description="QIDO-RS query of the series of the given modalities (and study dates), WADO-RS retrieve "
        "of the instances not yet stored for the checkpoint, screening, and with --stow STOW-RS of the "
        "results (report, overlay, key object selection) into each image's study on the same server. "
        "Re-running skips what is stored. " + DISCLAIMER,
    )
    pull.add_argument(
        "--dicomweb", required=True, metavar="URL", help="the DICOMweb root (http://pacs/dicom-web)"
    )
    pull.add_argument("--since", type=date.fromisoformat, metavar="YYYY-MM-DD", help="studies on or after")
    pull.add_argument(
        "--modality",
        default="CR,DX",
        metavar="LIST",
        help="modalities of the series to read, comma-separated (default CR,DX)",
    )
    pull.add_argument(
        "--spool", metavar="DIR", default="cxreader-spool", help="folder the retrieved instances are kept in"
    )
    _add_model_arguments(pull)
    arguments.add_dicom_outputs(pull, stow_back=True)
    pull.set_defaults(func=run_pull)
    pull.add_argument("--summary-json", metavar="FILE", help="write the run's counts as JSON")


def _add_model_arguments(parser: argparse.ArgumentParser) -> None:
    arguments.add_checkpoint(parser, arguments.CHECKPOINT_OR_ONNX_HELP)
    arguments.add_db(parser)
    arguments.add_batch_size(parser, 16)
    arguments.add_device(parser)
    parser.add_argument(
        "--describe",
        action=argparse.BooleanOptionalAction,
        help="heatmap descriptions and boxes in the reports (default for PyTorch checkpoints)",
    )


def run_listen(args: argparse.Namespace) -> int:
    """Handler of ``cxreader dicom listen``: runs until SIGTERM or SIGINT, then exits 0."""
    from cxreader.dicom.node import DicomNode
    from cxreader.inference.backends import load_backend
    from cxreader.storage.db import open_database

    if not 0 <= args.port < 65536:
        raise ConfigError(f"--port must be 0 to 65535, got {args.port}")
    backend = load_backend(args.checkpoint, device=args.device)
    sink = arguments.dicom_outputs(args, backend)
    spool = Path(args.spool) if args.spool else _default_spool(args)
    database = open_database(args.db)
    node = DicomNode(
        backend=backend,
        database=database,
        spool=spool,
        sink=sink,
        ae_title=args.ae_title,
        host=args.host,
        port=args.port,
        batch_size=args.batch_size,
        describe=args.describe,
        on_screened=_log_batch,
    )
    stop = _StopOnSignal()
    try:
        node.start()
        if args.ready_file:
            from cxreader.files import write_text_atomic

            write_text_atomic(args.ready_file, f"{node.port}\n")
        print(f"DICOM node {args.ae_title} listening on port {node.port}; records: {database}", flush=True)
        stop.install(node)
        node.serve_forever()
    finally:
        node.stop()
        stop.restore()
        database.close()
    counts = node.counts
    print(
        f"Stopped. Received {counts.received} radiograph(s) over {counts.associations} association(s); "
        f"refused {counts.refused_sop_class} instance(s) of other SOP classes; screened "
        f"{counts.report.screened}, not read {counts.report.refused}, failed {counts.report.failed}."
    )
    if sink is not None:
        from cxreader.cli.screen_cmd import dicom_summary

        print(dicom_summary(sink))
    return 0


def run_pull(args: argparse.Namespace) -> int:
    """Handler of ``cxreader dicom pull``."""
    from dicomweb_client.api import DICOMwebClient

    from cxreader.cli.screen_cmd import dicom_summary
    from cxreader.dicom.pull import pull
    from cxreader.inference.backends import load_backend
    from cxreader.storage.db import open_database

    modalities = [item.strip().upper() for item in args.modality.split(",") if item.strip()]
    backend = load_backend(args.checkpoint, device=args.device)
    sink = arguments.dicom_outputs(args, backend, stow_url=args.dicomweb if args.stow else None)
    database = open_database(args.db)
    try:
        report = pull(
            client=DICOMwebClient(url=args.dicomweb),
            backend=backend,
            database=database,
            spool=Path(args.spool),
            modalities=modalities,
            since=args.since,
            sink=sink,
            batch_size=args.batch_size,
            describe=args.describe,
            source=args.dicomweb,
            on_batch=_log_batch,
        )
    finally:
        database.close()
    screening = report.screening
    print(
        f"Listed {report.listed} instance(s): {report.already_stored} already stored, {report.retrieved} "
        f"retrieved, {report.retrieve_failed} could not be retrieved, {report.not_radiographs} not radiographs. "
        f"Screened {screening.screened}, not read {screening.refused}, failed {screening.failed}. "
        f"Records: {database}"
    )
    if sink is not None:
        print(dicom_summary(sink))
    if backend.contract.synthetic:
        print(arguments.SYNTHETIC_MODEL_NOTE)
    if args.summary_json:
        arguments.write_json(args.summary_json, report.summary())
    return 0


def _default_spool(args: argparse.Namespace) -> Path:
    return Path(args.dicom_out).parent / "cxreader-spool" if args.dicom_out else Path("cxreader-spool")


def _log_batch(report: Any) -> None:
    logger.info(
        "screened %d, not read %d, failed %d, already stored %d",
        report.screened,
        report.refused,
        report.failed,
        report.skipped,
    )


class _StopOnSignal:
    """SIGTERM and SIGINT stop the node cleanly (the handlers before are put back afterwards)."""

    def __init__(self) -> None:
        self._previous: dict[int, Any] = {}

    def install(self, node: Any) -> None:
        def handler(signum: int, frame: Any) -> None:
            logger.info("signal %d: stopping after the instances in flight", signum)
            node.request_stop()

        for signum in (signal.SIGTERM, signal.SIGINT):
            self._previous[signum] = signal.signal(signum, handler)

    def restore(self) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
