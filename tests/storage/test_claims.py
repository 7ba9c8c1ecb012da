"""Claims of independent screening workers: one winner per image, stored contents, leases, dead workers."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import threading
import time

from sqlalchemy import func, select

from cxreader.labels import FINDINGS
from cxreader.storage.claims import Worker, claim, release, release_all, renew
from cxreader.storage.db import Database
from cxreader.storage.records import FindingResult, ImageResult
from cxreader.storage.tables import Claim
from cxreader.storage.write import add_image_result, register_checkpoint


def sha(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def _checkpoint(database: Database) -> int:
    with database.session() as session:
        return register_checkpoint(session=session, sha256=sha("model"))


def test_exactly_one_of_many_racing_workers_wins_each_image(database: Database) -> None:
    checkpoint_id = _checkpoint(database)
    workers = [Worker() for _ in range(4)]
    won: dict[str, list[str]] = {sha(f"img{n}"): [] for n in range(20)}
    errors: list[BaseException] = []

    def work(worker: Worker) -> None:
        try:
            with database.session() as session:
                for content in won:
                    outcome = claim(
                        session=session,
                        content_sha256=content,
                        checkpoint_id=checkpoint_id,
                        worker=worker,
                        lease_s=60,
                    )
                    if outcome == "claimed":
                        won[content].append(worker.name)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(worker,)) for worker in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert all(len(names) == 1 for names in won.values()), won


def test_a_stored_content_is_not_claimed_and_release_goes_with_the_store(database: Database) -> None:
    checkpoint_id = _checkpoint(database)
    worker, other = Worker(), Worker()
    content = sha("a")
    with database.session() as session:
        assert (
            claim(
                session=session,
                content_sha256=content,
                checkpoint_id=checkpoint_id,
                worker=worker,
                lease_s=60,
            )
            == "claimed"
        )
        assert (
            claim(
                session=session, content_sha256=content, checkpoint_id=checkpoint_id, worker=other, lease_s=60
            )
            == "elsewhere"
        )
        findings = [FindingResult(name, 0.1, 0.5) for name in FINDINGS]
        add_image_result(
            session=session, result=ImageResult("/a.png", content, checkpoint_id, findings), commit=False
        )
        release(session=session, content_sha256s=[content], checkpoint_id=checkpoint_id, worker=worker)
        session.commit()
        assert session.scalar(select(func.count()).select_from(Claim)) == 0
        assert (
            claim(
                session=session, content_sha256=content, checkpoint_id=checkpoint_id, worker=other, lease_s=60
            )
            == "stored"
        )


def test_an_expired_lease_is_taken_over_and_renewal_keeps_it(database: Database) -> None:
    checkpoint_id = _checkpoint(database)
    holder, other = Worker(host="elsewhere"), Worker()
    kept, lapsed = sha("kept"), sha("lapsed")
    with database.session() as session:
        for content in (kept, lapsed):
            claim(
                session=session,
                content_sha256=content,
                checkpoint_id=checkpoint_id,
                worker=holder,
                lease_s=0.3,
            )
        time.sleep(0.15)
        assert renew(session=session, worker=holder, lease_s=60) == 2
        session.commit()
        release(
            session=session, content_sha256s=[kept], checkpoint_id=checkpoint_id, worker=other
        )  # not its own
        session.commit()
        assert (
            claim(session=session, content_sha256=kept, checkpoint_id=checkpoint_id, worker=other, lease_s=60)
            == "elsewhere"
        )
        session.execute(
            Claim.__table__.update().where(Claim.content_sha256 == lapsed).values(expires_at=Claim.claimed_at)
        )
        session.commit()
        assert (
            claim(
                session=session, content_sha256=lapsed, checkpoint_id=checkpoint_id, worker=other, lease_s=60
            )
            == "claimed"
        )
        release_all(session=session, worker=holder)
        assert session.scalars(select(Claim.worker)).all() == [other.name]


def test_claims_of_a_dead_process_on_this_machine_are_taken_over_at_once(database: Database) -> None:
    checkpoint_id = _checkpoint(database)
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead = Worker(pid=int(finished.stdout))  # that process has exited and been reaped
    alive_elsewhere = Worker(host="another-host", pid=int(finished.stdout))
    with database.session() as session:
        for worker, name in ((dead, "a"), (alive_elsewhere, "b")):
            claim(
                session=session,
                content_sha256=sha(name),
                checkpoint_id=checkpoint_id,
                worker=worker,
                lease_s=600,
            )
        me = Worker()
        assert (
            claim(
                session=session, content_sha256=sha("a"), checkpoint_id=checkpoint_id, worker=me, lease_s=60
            )
            == "claimed"
        )
        # Another machine's process cannot be checked: its claim waits for the lease.
        assert (
            claim(
                session=session, content_sha256=sha("b"), checkpoint_id=checkpoint_id, worker=me, lease_s=60
            )
            == "elsewhere"
        )
