"""Connecting to the records database: URL resolution, engines, sessions and schema migrations.

The database is named by a SQLAlchemy URL: ``--db`` on the command line, else ``CXREADER_DATABASE_URL``, else a
SQLite file in the user's data directory (platformdirs). SQLite and PostgreSQL (driver psycopg 3) are
supported; a plain file path stands for a SQLite file and ``postgresql://`` URLs get the psycopg driver.

The schema belongs to Alembic: :func:`init_db` upgrades a database to the newest revision (creating it when
empty), and :func:`open_database` refuses a database whose schema is older than the code unless asked to
upgrade it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import platformdirs
from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.script.revision import RevisionError
from alembic.util import CommandError
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from cxreader.errors import ConfigError
from cxreader.storage.names import DATABASE_URL_ENV

#: File name of the default SQLite database inside the user data directory.
DEFAULT_DATABASE_FILE = "records.sqlite3"
#: Execution option asking the SQLite ``begin`` hook for ``BEGIN IMMEDIATE`` (see :func:`begin_write`).
WRITE_OPTION = "cxreader_write"
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SUPPORTED_BACKENDS = ("sqlite", "postgresql")

# Seconds a SQLite connection waits for another writer's lock before giving up.
_SQLITE_BUSY_TIMEOUT_S = 30.0
# Alembic announces each of its plugins at INFO on every migration: noise on a user's terminal.
logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
# Any constant: the key of the PostgreSQL advisory lock that serialises concurrent migrations.
_MIGRATION_LOCK_KEY = 0x6378_7264


def default_database_path() -> Path:
    """The default SQLite file: ``records.sqlite3`` in the user data directory of ``cxreader``."""
    return platformdirs.user_data_path("cxreader", appauthor=False) / DEFAULT_DATABASE_FILE


def resolve_database_url(url: str | None = None) -> str:
    """The database URL to use: ``url``, else ``$CXREADER_DATABASE_URL``, else the default SQLite file.

    Args:
        url: A SQLAlchemy URL, or a file path standing for a SQLite database.

    Raises:
        ConfigError: when the URL cannot be parsed or names a backend other than SQLite or PostgreSQL.
    """
    raw = url or os.environ.get(DATABASE_URL_ENV) or str(default_database_path())
    if "://" not in raw:
        return URL.create("sqlite", database=str(Path(raw).expanduser().resolve())).render_as_string()
    try:
        parsed = make_url(raw)
    except ArgumentError as exc:
        raise ConfigError(f"database URL {_redact(raw)!r} cannot be parsed: {exc}") from None
    backend = parsed.get_backend_name()
    if backend == "postgres" or parsed.drivername == "postgresql":
        # "postgres" is the spelling of Heroku-style URLs; psycopg 3 is the driver cxreader installs.
        parsed, backend = parsed.set(drivername="postgresql+psycopg"), "postgresql"
    if backend not in SUPPORTED_BACKENDS:
        raise ConfigError(
            f"database URL {_redact(raw)!r}: backend {backend!r} is not supported "
            f"(use {' or '.join(SUPPORTED_BACKENDS)})"
        )
    return parsed.render_as_string(hide_password=False)


def display_url(url: str | URL) -> str:
    """A URL fit for messages and logs: the password is masked."""
    return make_url(url).render_as_string(hide_password=True)


def _redact(raw: str) -> str:
    try:
        return display_url(raw)
    except ArgumentError:
        return "<unparseable URL>"


def sqlite_path(url: str | URL) -> Path | None:
    """The file of a SQLite URL; ``None`` for other backends and in-memory databases."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def create_db_engine(url: str) -> Engine:
    """An engine for ``url`` configured for cxreader's access pattern.

    SQLite gets foreign keys enforced, write-ahead logging (readers never block the writer, so a search runs
    while a screening run writes) and real transactions: the ``sqlite3`` module's legacy mode would neither
    begin a transaction before a SELECT nor make SAVEPOINTs part of the enclosing transaction, so SQLAlchemy
    emits ``BEGIN`` itself, as its SQLite dialect documentation recommends.
    """
    parsed = make_url(url)
    # hide_parameters: an error message never carries a statement's values (they may identify a patient).
    if parsed.get_backend_name() != "sqlite":
        return create_engine(parsed, pool_pre_ping=True, hide_parameters=True)

    path = sqlite_path(parsed)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(parsed, connect_args={"timeout": _SQLITE_BUSY_TIMEOUT_S}, hide_parameters=True)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN (below), not the sqlite3 module
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA foreign_keys = ON")
            if path is not None:
                cursor.execute("PRAGMA journal_mode = WAL")
                # In WAL mode NORMAL stays consistent after a crash; only the last commits may be lost.
                cursor.execute("PRAGMA synchronous = NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        # A writer takes the write lock up front: a deferred transaction that reads first and writes later
        # fails at once with "database is locked" when another writer got in between, instead of waiting.
        immediate = connection.get_execution_options().get(WRITE_OPTION, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def begin_write(session: Session) -> None:
    """Start the session's transaction as a write transaction, if it has not started yet.

    On SQLite this takes the database's write lock at ``BEGIN`` (waiting for other writers up to the busy
    timeout); elsewhere it is a no-op. Call it before the first statement of a read-then-write transaction.
    """
    if not session.in_transaction():
        session.connection(execution_options={WRITE_OPTION: True})


def database_error_reason(exc: BaseException) -> str | None:
    """One line for a database error (locked, unreachable, disk full, ...); ``None`` when ``exc`` is not one.

    The driver's first line says what happened; the SQL statement and its parameters (which may hold patient
    identifiers) are left out.
    """
    if not isinstance(exc, SQLAlchemyError):
        return None
    original = getattr(exc, "orig", None) or exc
    first = (str(original).strip().splitlines() or [type(original).__name__])[0]
    hint = ""
    if "database is locked" in first:
        hint = f" (another process held the write lock longer than {_SQLITE_BUSY_TIMEOUT_S:g} s)"
    return f"database error: {first}{hint}"


@contextmanager
def writing(session: Session, *, commit: bool) -> Iterator[None]:
    """A write transaction (:func:`begin_write`): committed at the end when ``commit`` (else the caller
    commits), rolled back on any error when the call owns it."""
    begin_write(session)
    try:
        yield
        if commit:
            session.commit()
    except BaseException:
        if commit:
            session.rollback()
        raise


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic configuration pointing at cxreader's migrations, optionally bound to a connection."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest migration revision shipped with this version of cxreader."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:  # only possible when the package data was not installed
        raise ConfigError(f"{MIGRATIONS_DIR}: no database migrations found; reinstall cxreader")
    return head


def _is_known_revision(revision: str) -> bool:
    try:
        return ScriptDirectory.from_config(alembic_config()).get_revision(revision) is not None
    except (RevisionError, CommandError):
        return False


def current_revision(engine: Engine) -> str | None:
    """The migration revision the database is at; ``None`` for an empty database."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def init_db(url_or_engine: str | Engine) -> str:
    """Create the schema in an empty database, or upgrade an older one, to the newest revision; return it.

    Safe to call from several processes at once: SQLite serialises the writers, and on PostgreSQL an
    advisory lock does.

    Args:
        url_or_engine: A database URL (see :func:`resolve_database_url`) or an engine.
    """
    engine = url_or_engine if isinstance(url_or_engine, Engine) else create_db_engine(url_or_engine)
    try:
        with engine.connect() as connection:
            connection.execution_options(**{WRITE_OPTION: True})
            with connection.begin():
                if engine.dialect.name == "postgresql":
                    connection.execute(
                        text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY}
                    )
                command.upgrade(alembic_config(connection), "head")
    except (SQLAlchemyError, CommandError) as exc:
        raise ConfigError(f"database {display_url(engine.url)}: migration failed: {exc}") from exc
    finally:
        if engine is not url_or_engine:
            engine.dispose()
    return head_revision()


@dataclass(frozen=True)
class Database:
    """An open records database: its URL, engine and session factory."""

    url: str
    engine: Engine
    sessions: sessionmaker[Session]

    def session(self) -> Session:
        """A new session, for a ``with`` block: it is closed (and its open transaction rolled back) on exit."""
        return self.sessions()

    def close(self) -> None:
        """Close the pooled connections."""
        self.engine.dispose()

    def __str__(self) -> str:
        return display_url(self.url)


def open_database(url: str | None = None, *, upgrade: bool = True) -> Database:
    """Open the records database, checking that its schema matches this version of cxreader.

    Args:
        url: Database URL or SQLite file path; ``None`` resolves ``$CXREADER_DATABASE_URL`` or the default file.
        upgrade: Create or upgrade the schema when it is missing or older (writers do this). When ``False``
            (readers), a missing SQLite file or an out-of-date schema is an error instead.

    Raises:
        ConfigError: when the database cannot be reached, does not exist (``upgrade=False``) or is at another
            schema revision than this code.
    """
    resolved = resolve_database_url(url)
    path = sqlite_path(resolved)
    if not upgrade and path is not None and not path.is_file():
        raise ConfigError(f"{path}: no records database here; run `cxreader screen` or `cxreader db upgrade`")
    engine = create_db_engine(resolved)
    try:
        head = head_revision()
        current = current_revision(engine)
        if current is not None and not _is_known_revision(current):
            raise ConfigError(
                f"database {display_url(resolved)} is at schema revision {current}, which this cxreader does not "
                "know (written by a newer version?)"
            )
        if current != head:
            if not upgrade:
                raise ConfigError(
                    f"database {display_url(resolved)} is at schema revision {current or 'none (empty)'}, "
                    f"this cxreader needs {head}; run `cxreader db upgrade`"
                )
            init_db(engine)
    except SQLAlchemyError as exc:
        engine.dispose()
        raise ConfigError(f"database {display_url(resolved)}: cannot be opened: {exc}") from exc
    except ConfigError:
        engine.dispose()
        raise
    return Database(url=resolved, engine=engine, sessions=sessionmaker(engine, expire_on_commit=False))
