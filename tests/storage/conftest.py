"""Database fixtures: every storage test runs on SQLite and on a real PostgreSQL server.

PostgreSQL is the server named by ``CXREADER_TEST_POSTGRES_URL`` (``.ci/postgres.sh`` starts one); without it
the PostgreSQL half of each test is skipped. Each test gets a schema of its own on that server (through the
connection's ``search_path``), dropped afterwards, so tests never see each other's rows.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from cxreader.storage.db import Database, open_database, resolve_database_url

POSTGRES_URL_ENV = "CXREADER_TEST_POSTGRES_URL"
BACKENDS = ("sqlite", "postgresql")


@contextmanager
def backend_url(backend: str, directory: Path) -> Iterator[str]:
    """A URL of an empty database on ``backend``; SQLite lives in ``directory``."""
    if backend == "sqlite":
        yield resolve_database_url(str(directory / "records.sqlite3"))
        return
    server = os.environ.get(POSTGRES_URL_ENV)
    if not server:
        pytest.skip(f"no PostgreSQL server configured (set {POSTGRES_URL_ENV}, e.g. with .ci/postgres.sh)")
    server = resolve_database_url(server)
    schema = f"test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        url = make_url(server).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """URL of an empty database, once per backend."""
    with backend_url(request.param, tmp_path) as url:
        yield url


@pytest.fixture(scope="module", params=BACKENDS)
def module_database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """URL of an empty database shared by the tests of a module, once per backend."""
    with backend_url(request.param, tmp_path_factory.mktemp("db")) as url:
        yield url


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    """An open database at the newest schema revision, once per backend."""
    db = open_database(database_url)
    try:
        yield db
    finally:
        db.close()
