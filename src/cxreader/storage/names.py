"""Names of the records database that the command line needs before it opens one (no SQLAlchemy import)."""

#: Environment variable naming the records database.
DATABASE_URL_ENV = "CXREADER_DATABASE_URL"
#: Orders :func:`cxreader.storage.search.search_records` accepts.
SEARCH_ORDERS = ("probability_desc", "date_desc")
#: Statuses of a stored image (read, could not be read, refused by the input gate), and those :func:`cxreader.storage.search.search_records` filters on.
IMAGE_STATUSES = ("ok", "failed", "refused")
SEARCH_STATUSES = (*IMAGE_STATUSES, "any")
#: Largest page :func:`cxreader.storage.search.search_records` returns.
MAX_SEARCH_LIMIT = 10_000
#: Help of the commands' ``--db`` option.
DATABASE_HELP = (
    f"database URL or SQLite file (default: ${DATABASE_URL_ENV}, else records.sqlite3 in the user data dir)"
)
#: Default seconds a worker's claim on an image lasts without renewal (see :mod:`cxreader.storage.claims`).
DEFAULT_LEASE_S = 300.0
