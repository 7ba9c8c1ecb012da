"""The web service: a REST API (FastAPI) and a page for clinicians over the records database and one model.

``app.create_app(settings)`` builds it; ``cxreader serve`` runs it with uvicorn. Routes are thin
(``routes/``), dependencies are ``Annotated`` aliases (``deps``), responses are pydantic models (``schemas``),
settings come from the environment (``settings``), and the work is done by the same core functions as
``cxreader screen`` (``analysis``).
"""

from __future__ import annotations

from typing import Any

__all__ = ["Settings", "create_app"]


def __getattr__(name: str) -> Any:
    # Lazy, so that `cxreader --help` and the settings do not import the model stack (torch, FastAPI).
    if name == "create_app":
        from cxreader.service.app import create_app

        return create_app
    if name == "Settings":
        from cxreader.service.settings import Settings

        return Settings
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
