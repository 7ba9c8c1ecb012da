"""The records database: every screening result, searchable (SQLAlchemy 2 models, Alembic migrations).

``db`` connects (SQLite by default, PostgreSQL through the same URL) and migrates, ``tables`` holds the models,
``crud`` the keyword-only functions that store and search results. Patient identifiers live only in this
database.
"""

from __future__ import annotations

from typing import Any

_FROM_DB = {"Database", "init_db", "open_database", "resolve_database_url"}

__all__ = [
    "Database",
    "FindingHit",
    "FindingResult",
    "ImageResult",
    "SearchPage",
    "SearchRow",
    "StudyInfo",
    "add_image_result",
    "get_image",
    "has_image",
    "init_db",
    "open_database",
    "record_failure",
    "register_checkpoint",
    "resolve_database_url",
    "search_records",
    "stored_hashes",
]


def __getattr__(name: str) -> Any:
    # Lazy, so that `cxreader --help` and the light constants in cxreader.storage.names do not import
    # SQLAlchemy and Alembic.
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    module = importlib.import_module("cxreader.storage.db" if name in _FROM_DB else "cxreader.storage.crud")
    return getattr(module, name)
