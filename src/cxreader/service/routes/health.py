"""``GET /health``: liveness, answered without an API key (and telling nothing about the records)."""

from __future__ import annotations

from fastapi import APIRouter

from cxreader import __version__
from cxreader.service.schemas import HealthOut

router = APIRouter(tags=["health"])


@router.get("/health", summary="Liveness check (no API key needed)")
def health() -> HealthOut:
    """The service is up and its model is loaded (the app does not start without one)."""
    return HealthOut(status="ok", version=__version__)
