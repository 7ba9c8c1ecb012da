"""Claims: how independent screening workers share one archive without inferring an image twice.

Any number of ``cxreader screen`` processes, on one machine or many, may screen the same folders into the same
database. Before a worker decodes an image it claims the image's content for its checkpoint
(:func:`claim`), in a short write transaction of its own:

* content already stored for the checkpoint (a result, or a failure that holds for every model): ``stored``;
* no claim, or an expired one, or one of a worker on this machine whose process is gone: the worker takes it
  (``claimed``); an ``INSERT ... ON CONFLICT DO UPDATE ... WHERE`` decides atomically on both PostgreSQL and
  SQLite, so of two workers racing for one image exactly one wins;
* a live claim of another worker: ``elsewhere`` (that worker will store it).

The claim is released (:func:`release`) in the transaction that stores the result, so a crash between the two
never loses the image: its claim expires after the lease and another worker (or a re-run) takes it over. A
worker renews its claims after every stored batch (:func:`renew`), so the lease only needs to outlast one
batch. The lease is the usual way to hand work on in distributed queues (Gray and Cheriton, "Leases: an
efficient fault-tolerant mechanism for distributed file cache consistency", SOSP 1989).

On SQLite each claim is one ``BEGIN IMMEDIATE`` transaction that waits for the write lock (busy timeout), never
a read transaction upgraded to a write, which is what made concurrent SQLite writers fail with "database is
locked" at once.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal

from sqlalchemy import delete, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from cxreader.storage.db import begin_write, writing
from cxreader.storage.read import stored_for
from cxreader.storage.tables import Claim, Image, utc_now

ClaimOutcome = Literal["claimed", "stored", "elsewhere"]


@dataclass(frozen=True)
class Worker:
    """Who holds a claim: ``host:pid:token`` (the token tells apart two runs that reuse a pid)."""

    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    token: str = field(default_factory=lambda: secrets.token_hex(4))

    @property
    def name(self) -> str:
        return f"{self.host}:{self.pid}:{self.token}"[:255]


def claim(
    *, session: Session, content_sha256: str, checkpoint_id: int, worker: Worker, lease_s: float
) -> ClaimOutcome:
    """Claim one image content for a checkpoint, committed (see the module docstring)."""
    begin_write(session)
    try:
        outcome = _claim(session, content_sha256.lower(), checkpoint_id, worker, lease_s)
        if outcome == "claimed":
            session.commit()
        else:
            session.rollback()  # nothing of this worker's is left behind
    except BaseException:
        session.rollback()
        raise
    return outcome


def _claim(session: Session, sha256: str, checkpoint_id: int, worker: Worker, lease_s: float) -> ClaimOutcome:
    stored = select(Image.id).where(Image.content_sha256 == sha256, stored_for(checkpoint_id)).limit(1)
    if session.scalar(stored):
        return "stored"
    taken = _take(session, sha256, checkpoint_id, worker, lease_s)
    # Checked again after taking the claim: on PostgreSQL (read committed) another worker may have stored the
    # image and dropped its claim between the check above and the insert, which then waited for that commit,
    # so this statement's snapshot sees the stored image. (SQLite runs the whole transaction alone.)
    if session.scalar(stored):
        return "stored"
    return "claimed" if taken else "elsewhere"


def _take(session: Session, sha256: str, checkpoint_id: int, worker: Worker, lease_s: float) -> bool:
    """Insert or take over the claim row; whether this worker holds it now."""
    now = utc_now()
    expires = now + timedelta(seconds=lease_s)
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    statement = dialect.insert(Claim).values(
        content_sha256=sha256,
        checkpoint_id=checkpoint_id,
        worker=worker.name,
        claimed_at=now,
        expires_at=expires,
    )
    columns = Claim.__table__.c
    statement = statement.on_conflict_do_update(
        index_elements=[Claim.content_sha256, Claim.checkpoint_id],
        set_={"worker": worker.name, "claimed_at": now, "expires_at": expires},
        where=or_(columns.expires_at < now, columns.worker == worker.name),
    ).returning(Claim.worker)
    if session.scalar(statement) is not None:
        return True
    holder = session.scalar(
        select(Claim.worker).where(Claim.content_sha256 == sha256, Claim.checkpoint_id == checkpoint_id)
    )
    if holder is not None and _is_gone(holder, worker):
        taken = session.execute(
            update(Claim)
            .where(
                Claim.content_sha256 == sha256, Claim.checkpoint_id == checkpoint_id, Claim.worker == holder
            )
            .values(worker=worker.name, claimed_at=now, expires_at=expires)
        )
        return taken.rowcount == 1
    return False


def _is_gone(holder: str, me: Worker) -> bool:
    """Whether the claim's worker ran on this machine and its process no longer exists."""
    parts = holder.rsplit(":", 2)
    if len(parts) != 3 or parts[0] != me.host or not parts[1].isdigit():
        return False
    pid = int(parts[1])
    if pid == me.pid:
        return (
            False  # this process (another run of it, or a pid reused since: that claim waits for its lease)
        )
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # the process exists, under another user
        return False
    return False


def release(*, session: Session, content_sha256s: Iterable[str], checkpoint_id: int, worker: Worker) -> None:
    """Remove this worker's claims on these contents (in the caller's transaction, which stores them)."""
    hashes = sorted({value.lower() for value in content_sha256s})
    for start in range(0, len(hashes), 500):
        session.execute(
            delete(Claim).where(
                Claim.checkpoint_id == checkpoint_id,
                Claim.worker == worker.name,
                Claim.content_sha256.in_(hashes[start : start + 500]),
            )
        )


def renew(*, session: Session, worker: Worker, lease_s: float) -> int:
    """Extend the lease of every claim this worker holds (in the caller's transaction); return how many."""
    result = session.execute(
        update(Claim)
        .where(Claim.worker == worker.name)
        .values(expires_at=utc_now() + timedelta(seconds=lease_s))
    )
    return result.rowcount


def release_all(*, session: Session, worker: Worker) -> None:
    """Remove every claim this worker still holds, committed (end of a run, also after an error)."""
    with writing(session, commit=True):
        session.execute(delete(Claim).where(Claim.worker == worker.name))
