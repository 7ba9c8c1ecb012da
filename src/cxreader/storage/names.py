"""Names of the records database that the command line needs before it opens one (no SQLAlchemy import)."""

#: Environment variable naming the records database.
DATABASE_URL_ENV = "CXREADER_DATABASE_URL"
#: Orders :func:`cxreader.storage.crud.search_records` accepts.
SEARCH_ORDERS = ("probability_desc", "date_desc")
#: Largest page :func:`cxreader.storage.crud.search_records` returns.
MAX_SEARCH_LIMIT = 10_000
