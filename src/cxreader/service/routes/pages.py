"""The web page at ``/``, the API documentation at ``/docs`` and the OpenAPI document at ``/openapi.json``.

The page and the documentation are static shells that hold no records: they load without a key, ask the
user for one, and send it with every API call (``Authorization: Bearer``). The OpenAPI document itself is
behind the key like the rest of the API.

The documentation is Swagger UI served by this server (from the ``fastapi-offline`` package, which ships
Swagger UI's files): it works without a network, under the same Content Security Policy as the page.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from cxreader.service.deps import ApiKeyDep

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
#: Content Security Policy of every response (the page, the docs, their static files; API answers too):
#: this server's own scripts, styles and images only, no inline script, nothing from another origin.
PAGE_CSP = (
    "default-src 'self'; img-src 'self' blob: data:; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
#: Where Swagger UI's own files are served (``swagger-ui-bundle.js``, ``swagger-ui.css``).
DOCS_ASSETS_PATH = "/docs/assets"


def docs_assets() -> StaticFiles:
    """Swagger UI's files as the ``fastapi-offline`` package ships them (its ``static`` folder)."""
    return StaticFiles(packages=[("fastapi_offline", "static")])


router = APIRouter(include_in_schema=False)


@router.get("/")
def index() -> FileResponse:
    """The clinician's page."""
    return FileResponse(
        STATIC_DIR / "index.html", media_type="text/html", headers={"Content-Security-Policy": PAGE_CSP}
    )


@router.get("/docs")
def docs() -> FileResponse:
    """Swagger UI over the key-protected OpenAPI document, all of it served by this server."""
    return FileResponse(
        STATIC_DIR / "docs.html", media_type="text/html", headers={"Content-Security-Policy": PAGE_CSP}
    )


@router.get("/openapi.json", dependencies=[ApiKeyDep])
def openapi(request: Request) -> dict[str, Any]:
    """The OpenAPI document of the REST API."""
    return request.app.openapi()
