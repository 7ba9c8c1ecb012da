"""Alembic environment of the records database.

Run by :func:`cxreader.storage.db.init_db` (``cxreader db upgrade``) with an open connection in
``config.attributes["connection"]``. Without one it connects to ``sqlalchemy.url`` from the Alembic
configuration, else to the URL cxreader resolves (``$CXREADER_DATABASE_URL`` or the default SQLite file). A new
revision is written against a database at head with::

    from alembic import command
    from cxreader.storage.db import alembic_config, create_db_engine, resolve_database_url

    with create_db_engine(resolve_database_url(URL)).begin() as connection:
        command.revision(alembic_config(connection), message="...", autogenerate=True)
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from cxreader.storage.db import create_db_engine, resolve_database_url
from cxreader.storage.tables import Base

config = context.config
target_metadata = Base.metadata


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things in place: later revisions copy-and-move its tables instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )


def run_migrations_offline() -> None:
    """Write the migration SQL for a URL without connecting (``alembic upgrade --sql``)."""
    url = config.get_main_option("sqlalchemy.url") or resolve_database_url()
    context.configure(url=url, target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Migrate through the connection cxreader passed in, or through a new one."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_db_engine(config.get_main_option("sqlalchemy.url") or resolve_database_url())
    try:
        with engine.connect() as connection:
            _configure(connection)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
