"""``cxreader db upgrade``: create the records database, or migrate its schema to this version of cxreader."""

from __future__ import annotations

import argparse

from cxreader.cli import arguments


def register(subparsers: argparse._SubParsersAction) -> None:
    db_subparsers = arguments.add_command_group(
        subparsers, "db", help="the records database: schema migrations"
    )
    upgrade = db_subparsers.add_parser(
        "upgrade", help="create the records database, or upgrade its schema to this version of cxreader"
    )
    arguments.add_db(upgrade)
    upgrade.set_defaults(func=run_upgrade)


def run_upgrade(args: argparse.Namespace) -> int:
    from cxreader.storage.db import display_url, init_db, resolve_database_url

    url = resolve_database_url(args.db)
    revision = init_db(url)
    print(f"database {display_url(url)} is at schema revision {revision} (newest)")
    return 0
