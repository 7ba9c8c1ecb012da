"""The records database: every screening result, searchable (SQLAlchemy 2 models, Alembic migrations).

``db`` connects (SQLite by default, PostgreSQL through the same URL) and migrates, ``tables`` holds the models,
``crud`` the keyword-only functions that store and search results. Patient identifiers live only in this
database.
"""

from __future__ import annotations

from cxreader.storage.crud import (
    FindingHit,
    FindingResult,
    ImageResult,
    SearchPage,
    SearchRow,
    StudyInfo,
    add_image_result,
    get_image,
    has_image,
    record_failure,
    register_checkpoint,
    search_records,
    stored_hashes,
)
from cxreader.storage.db import Database, init_db, open_database, resolve_database_url

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
