"""The records database: every screening result, searchable (SQLAlchemy 2 models, Alembic migrations).

SQLite by default, PostgreSQL through the same URL. Patient identifiers live only in this database.
"""
