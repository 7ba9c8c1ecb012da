"""Alembic environment of the records database.

Run by :func:`cxreader.storage.db.init_db` (``cxreader db upgrade``), always with an open connection in
``config.attributes["connection"]``. A new revision is written against a database at head with::

    from alembic import command
    from cxreader.storage.db import alembic_config, create_db_engine, resolve_database_url

    with create_db_engine(resolve_database_url(URL)).begin() as connection:
        command.revision(alembic_config(connection), message="...", autogenerate=True)
"""

from __future__ import annotations

from alembic import context

from cxreader.storage.tables import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    # SQLite cannot ALTER most things in place: later revisions copy-and-move its tables instead.
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
