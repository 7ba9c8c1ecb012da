"""Migrations build the schema the ORM models describe, on SQLite and PostgreSQL; URLs resolve as documented."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from cxreader.errors import ConfigError
from cxreader.storage.db import (
    DATABASE_URL_ENV,
    alembic_config,
    create_db_engine,
    current_revision,
    default_database_path,
    head_revision,
    init_db,
    open_database,
    resolve_database_url,
)
from cxreader.storage.tables import Base

TABLES = {"checkpoints", "studies", "images", "findings"}


def _schema_diff(engine) -> list:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return compare_metadata(context, Base.metadata)


def test_upgrade_creates_the_schema_from_empty_and_matches_the_models(database_url: str) -> None:
    engine = create_db_engine(database_url)
    try:
        assert current_revision(engine) is None
        assert not TABLES & set(inspect(engine).get_table_names())

        assert init_db(engine) == head_revision()

        assert current_revision(engine) == head_revision()
        assert set(inspect(engine).get_table_names()) >= TABLES | {"alembic_version"}
        # The `alembic check` condition: autogenerate finds nothing between the models and the migrated schema.
        assert _schema_diff(engine) == []
        indexes = {index["name"] for index in inspect(engine).get_indexes("findings")}
        assert "ix_findings_finding_probability_image_id" in indexes
    finally:
        engine.dispose()


def test_downgrade_to_base_and_upgrade_again(database_url: str) -> None:
    engine = create_db_engine(database_url)
    try:
        init_db(engine)
        with engine.begin() as connection:
            command.downgrade(alembic_config(connection), "base")
        assert not TABLES & set(inspect(engine).get_table_names())
        assert current_revision(engine) is None

        init_db(engine)
        init_db(engine)  # at head already: nothing to do, no error
        assert current_revision(engine) == head_revision()
        assert _schema_diff(engine) == []
    finally:
        engine.dispose()


def test_open_database_for_reading_refuses_missing_or_unmigrated_databases(tmp_path: Path) -> None:
    missing = tmp_path / "missing.sqlite3"
    with pytest.raises(ConfigError, match="no records database"):
        open_database(str(missing), upgrade=False)
    assert not missing.exists()

    empty = tmp_path / "empty.sqlite3"
    create_db_engine(resolve_database_url(str(empty))).connect().close()  # an existing file without schema
    with pytest.raises(ConfigError, match="cxreader db upgrade"):
        open_database(str(empty), upgrade=False)

    database = open_database(str(empty))  # a writer migrates it
    database.close()
    database = open_database(str(empty), upgrade=False)
    assert current_revision(database.engine) == head_revision()
    database.close()


def test_a_database_from_a_newer_cxreader_is_refused(tmp_path: Path) -> None:
    url = resolve_database_url(str(tmp_path / "newer.sqlite3"))
    init_db(url)
    engine = create_db_engine(url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = 'ffff_from_the_future'"))
    engine.dispose()
    with pytest.raises(ConfigError, match="ffff_from_the_future"):
        open_database(url)


def test_sqlite_connections_enforce_foreign_keys_and_use_wal(tmp_path: Path) -> None:
    database = open_database(str(tmp_path / "pragmas.sqlite3"))
    with database.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    database.close()


def test_resolve_database_url(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(DATABASE_URL_ENV, raising=False)
    assert resolve_database_url() == f"sqlite:///{default_database_path()}"
    assert default_database_path().name == "records.sqlite3"

    monkeypatch.setenv(DATABASE_URL_ENV, "postgresql://reader:secret@db.example:5433/records")
    assert resolve_database_url() == "postgresql+psycopg://reader:secret@db.example:5433/records"
    assert resolve_database_url(str(tmp_path / "x.db")) == f"sqlite:///{tmp_path / 'x.db'}"  # --db wins
    assert resolve_database_url("postgres://h/db") == "postgresql+psycopg://h/db"
    assert resolve_database_url("sqlite:///relative.db") == "sqlite:///relative.db"

    with pytest.raises(ConfigError, match="not supported") as error:
        resolve_database_url("mysql://user:hunter2@host/db")
    assert "hunter2" not in str(error.value)  # passwords never reach messages
