"""FastAPI dependencies (``Annotated`` aliases, as in the full-stack-fastapi-template): the service state
(settings, model, database, file store), a database session, and the API key check.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Annotated, Any

import anyio
from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from cxreader.inference.backends import ModelBackend
from cxreader.service.assets import AssetStore
from cxreader.service.locks import ContentLocks
from cxreader.service.settings import Settings
from cxreader.storage.db import Database


@dataclass(frozen=True)
class ServiceState:
    """What the running service holds: its settings, model, database and file store.

    Attributes:
        checkpoint_id: The model's id in the records database (results are stored under it).
        decode_limiter: The slots for decoding and model work (``settings.max_concurrent_decodes``); a
            request waits for a free slot without holding a thread.
        content_locks: One lock per content hash: each new image is read and stored once.
        captioner: The learned captioner (:class:`~cxreader.captioning.predict.CaptionPredictor`), or None.
    """

    settings: Settings
    backend: ModelBackend
    database: Database
    checkpoint_id: int
    assets: AssetStore
    decode_limiter: anyio.CapacityLimiter
    content_locks: ContentLocks = field(default_factory=ContentLocks)
    captioner: Any = None


def get_state(request: Request) -> ServiceState:
    """The state :func:`cxreader.service.app.create_app` put on the application."""
    return request.app.state.cxreader


StateDep = Annotated[ServiceState, Depends(get_state)]


def get_session(state: StateDep) -> Iterator[Session]:
    """A database session for one request, closed afterwards."""
    with state.database.session() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]

# auto_error=False: a missing header must give our 401 (with WWW-Authenticate), not FastAPI's 403.
_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="API key",
    description="An API key from CXREADER_API_KEYS, sent as `Authorization: Bearer KEY`.",
)


def require_api_key(
    state: StateDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    """Let the request through only with ``Authorization: Bearer KEY`` for a configured key.

    Every configured key is compared in constant time (``hmac.compare_digest``), so the response time says
    nothing about how much of a key was right.

    Raises:
        HTTPException: 401 with ``WWW-Authenticate: Bearer`` (RFC 6750) when the key is missing or wrong.
    """
    supplied = credentials.credentials.encode() if credentials is not None else b""
    matched = False
    for key in state.settings.api_keys:
        matched |= hmac.compare_digest(supplied, key.encode())
    if not supplied or not matched:
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="a valid API key is required: send the header 'Authorization: Bearer <key>'",
            headers={"WWW-Authenticate": 'Bearer realm="cxreader"'},
        )


ApiKeyDep = Depends(require_api_key)
