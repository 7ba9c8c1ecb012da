"""Arguments and output shared by the commands: each common flag is defined here once, with its help."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from cxreader import DISCLAIMER
from cxreader.files import write_text_atomic
from cxreader.storage.names import DATABASE_HELP

CHECKPOINT_HELP = "a cxreader checkpoint (RUN/best.pt)"
CHECKPOINT_OR_ONNX_HELP = (
    "a cxreader checkpoint (RUN/best.pt) or a model exported with `cxreader export` (.onnx)"
)
#: Printed under the text output of a model trained on synthetic images.
SYNTHETIC_MODEL_NOTE = "Model trained on SYNTHETIC data: its outputs mean nothing for real patients."


def add_command_group(
    subparsers: argparse._SubParsersAction, name: str, **kwargs: Any
) -> argparse._SubParsersAction:
    """Add ``cxreader NAME`` with commands of its own; given none, it prints its help and exits with 2.

    Returns:
        The sub-parsers to add the group's commands to (``args.NAME_command`` names the one given).
    """
    parser = subparsers.add_parser(name, **kwargs)
    parser.set_defaults(func=lambda args: print_help(parser))
    dest = f"{name}_command"
    return parser.add_subparsers(dest=dest, metavar=dest.upper())


def print_help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def add_checkpoint(
    parser: argparse.ArgumentParser, help: str = CHECKPOINT_HELP, *, required: bool = True, **kwargs: Any
) -> None:
    parser.add_argument("--checkpoint", required=required, help=help, **kwargs)


def add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (PyTorch checkpoints)")


def add_batch_size(parser: argparse.ArgumentParser, default: int) -> None:
    parser.add_argument(
        "--batch-size", type=int, default=default, help=f"images per forward pass (default {default})"
    )


def add_split_lists(parser: argparse.ArgumentParser, help: str, **kwargs: Any) -> None:
    """``--list NAME=FILE`` (repeatable): splits given by list files; ``kwargs`` as for ``add_argument``."""
    parser.add_argument("--list", action="append", type=name_value, metavar="NAME=FILE", help=help, **kwargs)


def add_db(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", metavar="URL", help=DATABASE_HELP)


def positive_int(text: str) -> int:
    """Argument type of counts that must be at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def name_value(text: str) -> tuple[str, str]:
    """Argument type of ``NAME=VALUE`` options (``--list train=FILE``, ``--set KEY=VALUE``)."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip() or not value.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name.strip(), value.strip()


def print_json_results(results: list[dict], synthetic: bool, **extra: object) -> None:
    """The ``--json`` output of a command over image files (``extra``: more top-level keys)."""
    payload = {"results": results, "checkpoint_synthetic": synthetic, **extra, "disclaimer": DISCLAIMER}
    print(json.dumps(payload, indent=2))


def print_footer(synthetic: bool) -> None:
    """The end of a command's text output: the synthetic-model note where it applies, then the disclaimer."""
    if synthetic:
        print(SYNTHETIC_MODEL_NOTE)
    print(DISCLAIMER)


def write_json(path: str | Path, payload: dict) -> None:
    """Write a ``--json OUT`` report (its folder is created when missing)."""
    write_text_atomic(path, json.dumps(payload, indent=2) + "\n")


def add_dicom_outputs(parser: argparse.ArgumentParser, *, stow_back: bool = False) -> None:
    """``--dicom-out DIR``, ``--send-to AE@HOST:PORT`` (repeatable) and ``--stow``: results as DICOM.

    ``stow_back``: ``--stow`` is a switch that sends the results back to the DICOMweb server the command reads
    from, instead of taking a URL.
    """
    parser.add_argument(
        "--dicom-out",
        metavar="DIR",
        help="write the results of DICOM inputs as DICOM in the source study: a TID 1500 report (SR), the "
        "heatmap overlay (Secondary Capture) and, for images on the triage list, a Key Object Selection "
        "(DIR/<StudyInstanceUID>/)",
    )
    parser.add_argument(
        "--send-to",
        action="append",
        default=[],
        metavar="AE@HOST:PORT",
        help="send those objects to a DICOM node by C-STORE (repeatable)",
    )
    if stow_back:
        parser.add_argument(
            "--stow", action="store_true", help="send those objects back to the same server by STOW-RS"
        )
    else:
        parser.add_argument(
            "--stow",
            metavar="URL",
            help="send those objects to a DICOMweb server by STOW-RS (its root, e.g. http://pacs/dicom-web)",
        )
    parser.add_argument("--ae-title", default="CXREADER", help="this node's AE title (default CXREADER)")


def dicom_outputs(args: argparse.Namespace, backend: Any, *, stow_url: str | None = None) -> Any:
    """The :class:`~cxreader.dicom.outputs.DicomOutputs` sink the flags of :func:`add_dicom_outputs` ask for,
    or ``None`` when they ask for nothing (``stow_url`` overrides ``--stow``)."""
    stow = stow_url or (args.stow if isinstance(args.stow, str) else None)
    if not (args.dicom_out or args.send_to or stow):
        return None
    from cxreader.dicom.outputs import DicomOutputs, algorithm_of
    from cxreader.dicom.senders import CStoreSender, Destination, StowSender

    senders: list[Any] = [
        CStoreSender(Destination.parse(text), calling_ae_title=args.ae_title) for text in args.send_to
    ]
    if stow:
        senders.append(StowSender(stow))
    return DicomOutputs(
        algorithm=algorithm_of(backend),
        out_dir=Path(args.dicom_out) if args.dicom_out else None,
        senders=senders,
    )
