"""The web page at ``/``, the API documentation at ``/docs`` and the OpenAPI document at ``/openapi.json``.

The page and the documentation are static shells that hold no records: they load without a key, ask the
user for one, and send it with every API call (``Authorization: Bearer``). The OpenAPI document itself is
behind the key like the rest of the API.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse

from cxreader.service.deps import ApiKeyDep

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
#: Content Security Policy of the page: its own scripts, styles and images only (no inline script).
PAGE_CSP = (
    "default-src 'self'; img-src 'self' blob: data:; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
DOCS_CSP = (
    "default-src 'self'; img-src 'self' data: https://cdn.jsdelivr.net; script-src 'self' https://cdn.jsdelivr.net; "
    "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; connect-src 'self'; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'"
)

router = APIRouter(include_in_schema=False)


@router.get("/")
def index() -> FileResponse:
    """The clinician's page."""
    return FileResponse(
        STATIC_DIR / "index.html", media_type="text/html", headers={"Content-Security-Policy": PAGE_CSP}
    )


@router.get("/docs")
def docs() -> FileResponse:
    """Swagger UI over the key-protected OpenAPI document.

    Swagger UI comes from jsDelivr, the CDN FastAPI's own documentation pages use: this page needs the network.
    """
    return FileResponse(
        STATIC_DIR / "docs.html", media_type="text/html", headers={"Content-Security-Policy": DOCS_CSP}
    )


@router.get("/openapi.json", dependencies=[ApiKeyDep])
def openapi(request: Request) -> dict[str, Any]:
    """The OpenAPI document of the REST API."""
    return request.app.openapi()
