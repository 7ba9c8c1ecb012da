"""The records of a checkpoint of another label space: its labels are stored with it, its results hold exactly
its findings in its label order, search finds any finding of the harmonised label space, and migration 0005
admits them (its downgrade removes them again); on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib

import pytest
from alembic import command
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError

from cxreader.errors import CheckpointError, DataError
from cxreader.labels import EXTRA_FINDINGS, FINDINGS, HARMONISED_LABELS
from cxreader.storage.db import Database, alembic_config, create_db_engine, current_revision, head_revision
from cxreader.storage.read import get_image
from cxreader.storage.records import FindingResult, ImageResult
from cxreader.storage.search import search_records
from cxreader.storage.tables import Checkpoint, Finding
from cxreader.storage.write import add_image_result, register_checkpoint

SUBSET = ("Support_Devices", "Effusion", "Fracture", "Lung_Opacity", "Pneumothorax", "Cardiomegaly")


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def result(
    name: str, checkpoint_id: int, labels, probabilities: dict[str, float] | None = None
) -> ImageResult:
    """A read image with one finding per label (0.2 unless ``probabilities`` says), given in reverse order."""
    probabilities = probabilities or {}
    findings = [FindingResult(label, probabilities.get(label, 0.2), 0.5) for label in reversed(labels)]
    return ImageResult(
        source_path=f"/data/{name}.png",
        content_sha256=sha(name),
        checkpoint_id=checkpoint_id,
        findings=findings,
    )


def test_a_checkpoint_keeps_its_labels_and_its_results_their_order(database: Database) -> None:
    with database.session() as session:
        subset = register_checkpoint(
            session=session, sha256=sha("subset"), labels=SUBSET, thresholds=[0.5] * 6
        )
        chexnet = register_checkpoint(session=session, sha256=sha("chexnet"))
        stored = {row.id: row.labels for row in session.execute(select(Checkpoint.id, Checkpoint.labels))}
        assert tuple(stored[subset]) == SUBSET and tuple(stored[chexnet]) == FINDINGS

        image_id = add_image_result(session=session, result=result("a", subset, SUBSET))
        rows = session.scalars(
            select(Finding.finding).where(Finding.image_id == image_id).order_by(Finding.id)
        )
        assert tuple(rows) == SUBSET
        # Equal probabilities: the record lists them in the checkpoint's label order.
        record = get_image(session=session, image_id=image_id)
        assert tuple(item.finding for item in record.findings) == SUBSET
        ranked = get_image(
            session=session,
            image_id=add_image_result(session=session, result=result("b", subset, SUBSET, {"Fracture": 0.9})),
        )
        assert ranked.findings[0].finding == "Fracture" and ranked.findings[0].above_threshold


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (FINDINGS, "Atelectasis.*not among the checkpoint's findings"),
        (SUBSET[1:], "missing: Support_Devices"),
        ((*SUBSET, "Hernia"), "Hernia: not among the checkpoint's findings"),
    ],
)
def test_results_that_are_not_the_checkpoints_findings_are_refused(
    database: Database, labels, message
) -> None:
    with database.session() as session:
        checkpoint_id = register_checkpoint(session=session, sha256=sha("subset"), labels=SUBSET)
        with pytest.raises(DataError, match=message):
            add_image_result(session=session, result=result("a", checkpoint_id, labels))
        assert session.scalar(select(func.count()).select_from(Finding)) == 0


def test_labels_and_thresholds_of_a_checkpoint_are_checked(database: Database) -> None:
    with database.session() as session:
        with pytest.raises(CheckpointError, match="not a finding of cxreader's label space"):
            register_checkpoint(session=session, sha256=sha("a"), labels=("Effusion", "Tumour"))
        with pytest.raises(CheckpointError, match="named twice"):
            register_checkpoint(session=session, sha256=sha("a"), labels=("Effusion", "Effusion"))
        with pytest.raises(CheckpointError, match="thresholds must be 6 numbers"):
            register_checkpoint(session=session, sha256=sha("a"), labels=SUBSET, thresholds=[0.5] * 14)


def test_search_finds_any_finding_of_the_label_space(database: Database) -> None:
    with database.session() as session:
        everything = register_checkpoint(session=session, sha256=sha("all"), labels=HARMONISED_LABELS)
        chexnet = register_checkpoint(session=session, sha256=sha("chexnet"))
        add_image_result(
            session=session, result=result("x", everything, HARMONISED_LABELS, {"Lung_Opacity": 0.8})
        )
        add_image_result(session=session, result=result("y", chexnet, FINDINGS, {"Effusion": 0.7}))
        opacity = search_records(session=session, finding="Lung Opacity", min_prob=0.5)
        assert [row.source_path for row in opacity.rows] == ["/data/x.png"]
        assert [item.finding for item in opacity.rows[0].findings] == ["Lung_Opacity"]
        both = search_records(session=session, finding="Effusion")
        assert sorted(row.source_path for row in both.rows) == ["/data/x.png", "/data/y.png"]
        whole = {row.source_path: row for row in search_records(session=session).rows}
        assert len(whole["/data/x.png"].findings) == 19 and len(whole["/data/y.png"].findings) == 14


def test_migration_0005_admits_the_extra_findings_and_its_downgrade_removes_them(database_url: str) -> None:
    from cxreader.storage.db import open_database

    database = open_database(database_url)
    try:
        assert current_revision(database.engine) == head_revision() == "0005"
        with database.session() as session:
            checkpoint_id = register_checkpoint(session=session, sha256=sha("all"), labels=HARMONISED_LABELS)
            image_id = add_image_result(session=session, result=result("x", checkpoint_id, HARMONISED_LABELS))
    finally:
        database.close()

    engine = create_db_engine(database_url)
    try:
        with engine.begin() as connection:
            command.downgrade(alembic_config(connection), "0004")
        with engine.connect() as connection:
            kept = connection.execute(
                text("SELECT finding FROM findings WHERE image_id = :id ORDER BY id"), {"id": image_id}
            ).scalars()
            assert tuple(kept) == FINDINGS  # the rows of the extra findings are gone
        with pytest.raises(IntegrityError), engine.begin() as connection:
            connection.execute(
                text("UPDATE findings SET finding = :name WHERE finding = 'Hernia'"),
                {"name": EXTRA_FINDINGS[0]},
            )
        with engine.begin() as connection:
            command.upgrade(alembic_config(connection), "head")
        with engine.begin() as connection:  # admitted again
            connection.execute(
                text("UPDATE findings SET finding = :name WHERE finding = 'Hernia'"),
                {"name": EXTRA_FINDINGS[0]},
            )
        with pytest.raises(IntegrityError), engine.begin() as connection:
            connection.execute(text("UPDATE findings SET finding = 'Tumour' WHERE finding = 'Effusion'"))
    finally:
        engine.dispose()
