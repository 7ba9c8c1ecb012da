"""The ``cxreader`` console script.

Each command lives in its own module of this package. A module may define ``register(subparsers)`` for
top-level commands and ``register_data(data_subparsers)`` for ``cxreader data …`` commands; each command sets
``func`` (``args -> int`` exit code) with ``set_defaults``. Project errors (:class:`CXReaderError`) are printed
as one line naming the file and the reason, never as a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from cxreader import DISCLAIMER, __version__
from cxreader.cli import arguments
from cxreader.errors import CXReaderError

#: Command modules, in the order their commands appear in ``--help``.
COMMAND_MODULES = (
    "cxreader.cli.stats_cmd",
    "cxreader.cli.synth_cmd",
    "cxreader.cli.openi_cmd",
    "cxreader.cli.cache_cmd",
    "cxreader.cli.train_cmd",
    "cxreader.cli.evaluate_cmd",
    "cxreader.cli.calibrate_cmd",
    "cxreader.cli.predict_cmd",
    "cxreader.cli.localize_cmd",
    "cxreader.cli.caption_cmd",
    "cxreader.cli.export_cmd",
    "cxreader.cli.screen_cmd",
    "cxreader.cli.dicom_cmd",
    "cxreader.cli.search_cmd",
    "cxreader.cli.db_cmd",
    "cxreader.cli.serve_cmd",
    "cxreader.cli.demo_cmd",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cxreader",
        description="Chest X-ray reader: ChestX-ray14 data, CheXNet training and evaluation, prediction. "
        + DISCLAIMER,
    )
    parser.add_argument("--version", action="version", version=f"cxreader {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.set_defaults(func=lambda args: arguments.print_help(parser))
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    data_subparsers = arguments.add_command_group(
        subparsers, "data", help="datasets: statistics, synthetic data, caches"
    )
    for module in (importlib.import_module(name) for name in COMMAND_MODULES):
        if hasattr(module, "register"):
            module.register(subparsers)
        if hasattr(module, "register_data"):
            module.register_data(data_subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        return int(args.func(args) or 0)
    except CXReaderError as exc:
        print(f"cxreader: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cxreader: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `cxreader … | head`: the reader went away; stop quietly
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except Exception as exc:
        reason = _environment_error(exc)
        if reason is None or args.verbose:
            raise  # a bug (or --verbose): the traceback is what a report needs
        print(f"cxreader: error: {reason}", file=sys.stderr)
        return 1


def _environment_error(exc: Exception) -> str | None:
    """One line for an error of the surroundings rather than of cxreader (a database that is locked, gone or
    full; a full disk), or ``None`` for anything else."""
    if "sqlalchemy" in sys.modules:
        from cxreader.storage.db import database_error_reason

        reason = database_error_reason(exc)
        if reason is not None:
            return reason
    if isinstance(exc, OSError) and exc.strerror:
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{exc.strerror}"
    return None


if __name__ == "__main__":
    sys.exit(main())
