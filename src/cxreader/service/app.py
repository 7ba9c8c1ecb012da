"""The FastAPI application: REST API, web page and documentation over the records database and one model.

``create_app(settings)`` loads the model, opens (and migrates) the database, registers the model's
checkpoint and returns the app; uvicorn serves it (``cxreader serve``). Blocking work (decoding, inference,
database queries) runs in the thread pool, never on the event loop.

Security, in one place:

* every ``/api/`` route and the OpenAPI document need ``Authorization: Bearer KEY`` with a key from
  ``CXREADER_API_KEYS`` (401 otherwise); ``/health``, the page and its static files answer without one;
* uploads are limited in size while they stream (413), sniffed by content (415 when not an image), refused
  when their header declares more pixels than the budget (413, before decoding), decoded a bounded number at
  a time (the memory bound is in :mod:`cxreader.service`), and kept only under server-made names in the data
  directory, their files only together with their record;
* responses carry ``X-Content-Type-Options: nosniff`` and ``Referrer-Policy: no-referrer``; API responses are
  ``Cache-Control: no-store`` (they may hold patient identifiers); every response, the page, the docs and
  their static files included, has one strict Content Security Policy (this server's own scripts, styles and
  images only; no inline script).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import anyio
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from cxreader import DISCLAIMER, __version__
from cxreader.errors import CXReaderError
from cxreader.inference.backends import load_backend
from cxreader.screening.engine import register_backend
from cxreader.service.assets import AssetStore
from cxreader.service.deps import ServiceState
from cxreader.service.routes import health, model, pages, studies
from cxreader.service.settings import Settings
from cxreader.storage.db import open_database

logger = logging.getLogger(__name__)

_DESCRIPTION = f"""
Read chest radiographs (PNG, JPEG, DICOM) with a CheXNet model: the probability of each of its findings
(the 14 ChestX-ray14 findings, or the labels its checkpoint names, `GET /api/model`) against its operating
threshold, a heatmap of where the model looked, and a grounded
description of each positive finding. Every result is stored and searchable.

Authenticate with `Authorization: Bearer <key>` (keys from `CXREADER_API_KEYS`).

{DISCLAIMER}
"""


class RedactQueryFilter(logging.Filter):
    """Drop query strings from uvicorn's access log: ``?patient=...`` is a patient identifier, and logs must
    never hold one."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        # uvicorn.access logs (client, method, path with query, HTTP version, status).
        if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str) and "?" in args[2]:
            record.args = (args[0], args[1], args[2].split("?", 1)[0] + "?…", args[3], args[4])
        return True


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the service: load ``settings.checkpoint``, open ``settings.database_url`` (migrating it).

    Args:
        settings: The configuration; default :meth:`Settings.from_env`.

    Raises:
        ConfigError, CheckpointError: no API key, no model, a database that cannot be opened.
    """
    settings = settings or Settings.from_env()
    backend = load_backend(settings.checkpoint, device=settings.device)
    database = open_database(settings.database_url)
    with database.session() as session:
        checkpoint_id = register_backend(session, backend)
    captioner = None
    if settings.caption_checkpoint is not None:
        from cxreader.captioning.predict import CaptionPredictor

        captioner = CaptionPredictor(settings.caption_checkpoint, device=settings.device)
    state = ServiceState(
        settings=settings,
        backend=backend,
        database=database,
        checkpoint_id=checkpoint_id,
        assets=AssetStore(settings.data_dir),
        decode_limiter=anyio.CapacityLimiter(settings.max_concurrent_decodes),
        captioner=captioner,
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # Installed at startup, after uvicorn has configured its loggers.
        access = logging.getLogger("uvicorn.access")
        if not any(isinstance(item, RedactQueryFilter) for item in access.filters):
            access.addFilter(RedactQueryFilter())
        yield
        database.close()

    app = FastAPI(
        title="cxreader",
        version=__version__,
        description=_DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served by routes.pages: a page over the key-protected OpenAPI document
        redoc_url=None,
        openapi_url=None,
    )
    app.state.cxreader = state
    for routes in (health, pages, model, studies):
        app.include_router(routes.router)
    app.mount("/static", StaticFiles(directory=pages.STATIC_DIR), name="static")
    app.mount(pages.DOCS_ASSETS_PATH, pages.docs_assets(), name="docs-assets")

    @app.exception_handler(CXReaderError)
    async def _project_error(_request: Request, exc: CXReaderError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": str(exc)})

    @app.middleware("http")
    async def _security_headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault("X-Frame-Options", "DENY")
        # Every response, static files included: /static/index.html is the page too.
        response.headers.setdefault("Content-Security-Policy", pages.PAGE_CSP)
        if request.url.path.startswith("/api/") or request.url.path == "/openapi.json":
            response.headers["Cache-Control"] = "no-store"
        return response

    logger.info(
        "cxreader service: model %s (%s%s), records %s, data in %s",
        backend.path.name,
        backend.kind,
        ", SYNTHETIC" if backend.contract.synthetic else "",
        database,
        state.assets.root,
    )
    return app
