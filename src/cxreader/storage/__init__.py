"""The records database: every screening result, searchable (SQLAlchemy 2 models, Alembic migrations).

``db`` connects (SQLite by default, PostgreSQL through the same URL) and migrates; ``tables`` holds the models;
``records`` the typed records that go in and come out; ``write`` stores results, ``read`` reads them back and
``search`` searches them (keyword-only functions). ``names`` holds what the command line needs without
importing SQLAlchemy. Patient identifiers live only in this database.
"""
