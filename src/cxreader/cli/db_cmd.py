"""``cxreader db upgrade``: create the records database, or migrate its schema to this version of cxreader."""

from __future__ import annotations

import argparse

from cxreader.storage.names import DATABASE_HELP


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``db`` (with its ``upgrade`` command) to the top-level commands."""
    db_parser = subparsers.add_parser("db", help="the records database: schema migrations")
    db_subparsers = db_parser.add_subparsers(dest="db_command", metavar="DB_COMMAND")
    upgrade = db_subparsers.add_parser(
        "upgrade", help="create the records database, or upgrade its schema to this version of cxreader"
    )
    upgrade.add_argument("--db", metavar="URL", help=DATABASE_HELP)
    upgrade.set_defaults(func=run_upgrade)
    db_parser.set_defaults(func=lambda args: _print_help(db_parser))


def _print_help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def run_upgrade(args: argparse.Namespace) -> int:
    """Handler of ``cxreader db upgrade``: migrates the database and prints the revision it is at."""
    from cxreader.storage.db import display_url, init_db, resolve_database_url

    url = resolve_database_url(args.db)
    revision = init_db(url)
    print(f"database {display_url(url)} is at schema revision {revision} (newest)")
    return 0
