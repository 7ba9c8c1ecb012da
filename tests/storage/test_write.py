"""Storing results and reading them back: upserts, failures, resumability and per-image atomicity, on SQLite and
PostgreSQL."""

from __future__ import annotations

import hashlib
import math
import threading
from datetime import date, timezone

import pytest
from sqlalchemy import event, func, select

from cxreader.errors import CheckpointError, DataError
from cxreader.labels import FINDINGS
from cxreader.storage.db import Database
from cxreader.storage.read import get_image, stored_hashes
from cxreader.storage.records import FindingResult, ImageResult, StudyInfo
from cxreader.storage.tables import Finding, Image, Study
from cxreader.storage.write import add_image_result, record_failure, register_checkpoint


def sha(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def result(
    name: str, checkpoint_id: int, *, base: float = 0.1, study: StudyInfo | None = None, **kwargs
) -> ImageResult:
    findings = [
        FindingResult(
            finding=finding,
            probability=round(base + 0.05 * index, 4),
            threshold=0.5,
            description=f"{finding} in the right lower zone" if index == 2 else None,
            box=(10, 20, 30, 40) if index == 2 else None,
        )
        for index, finding in enumerate(FINDINGS)
    ]
    return ImageResult(
        source_path=f"/data/{name}.png",
        content_sha256=sha(name),
        checkpoint_id=checkpoint_id,
        findings=findings,
        study=study or StudyInfo(),
        **kwargs,
    )


def count(session, entity) -> int:
    return session.scalar(select(func.count()).select_from(entity))


@pytest.fixture
def checkpoint_id(database: Database) -> int:
    with database.session() as session:
        return register_checkpoint(
            session=session, sha256=sha("checkpoint"), thresholds=[0.5] * 14, path="m.pt"
        )


def test_add_image_result_stores_the_image_its_study_and_14_findings(
    database: Database, checkpoint_id: int
) -> None:
    info = StudyInfo(
        patient_id="P001", study_instance_uid="1.2.3", study_date=date(2024, 3, 5), study_description="chest"
    )
    stored = result("a", checkpoint_id, study=info, view_position="PA", pixel_spacing=(0.14, 0.15))
    with database.session() as session:
        image_id = add_image_result(session=session, result=stored)
        assert get_image(session=session, image_id=image_id + 1) is None
        # The stored above_threshold column agrees with the one every record derives.
        assert session.scalar(select(func.count()).where(Finding.above_threshold)) == sum(
            f.above_threshold for f in stored.findings
        )
    with database.session() as session:
        image = get_image(session=session, image_id=image_id)
    # A plain record: usable after the session is closed.
    assert (image.image_id, image.checkpoint_id, image.status, image.failure_reason) == (
        image_id,
        checkpoint_id,
        "ok",
        None,
    )
    assert (image.patient_id, image.study_date, image.study_description) == (
        "P001",
        date(2024, 3, 5),
        "chest",
    )
    assert (image.view_position, image.pixel_spacing, image.source_path) == (
        "PA",
        (0.14, 0.15),
        "/data/a.png",
    )
    assert image.created_at.tzinfo is not None and image.created_at.utcoffset() == timezone.utc.utcoffset(
        None
    )
    # The findings come back as they were stored, most probable first.
    assert sorted(image.findings, key=lambda f: FINDINGS.index(f.finding)) == list(stored.findings)
    assert [f.probability for f in image.findings] == sorted(
        (f.probability for f in image.findings), reverse=True
    )
    assert image.score == image.findings[0].probability
    by_name = {f.finding: f for f in image.findings}
    # above_threshold is derived from probability >= threshold, not taken on trust.
    assert by_name["Hernia"].above_threshold and not by_name["Atelectasis"].above_threshold
    assert by_name["Effusion"].box == (10, 20, 30, 40) and by_name["Atelectasis"].box is None


def test_storing_the_same_image_again_replaces_its_result(database: Database, checkpoint_id: int) -> None:
    info = StudyInfo(patient_id="P1", study_instance_uid="1.2.840.1")
    with database.session() as session:
        first = add_image_result(session=session, result=result("a", checkpoint_id, study=info))
        second = add_image_result(session=session, result=result("a", checkpoint_id, base=0.3))
        assert second == first
        assert count(session, Image) == 1 and count(session, Finding) == 14 and count(session, Study) == 1
        image = get_image(session=session, image_id=first)
        assert min(f.probability for f in image.findings) == pytest.approx(0.3)
        assert image.patient_id == "P1"  # a result without study details keeps the stored study

        other = register_checkpoint(session=session, sha256=sha("other checkpoint"))
        assert add_image_result(session=session, result=result("a", other)) != first
        assert count(session, Image) == 2 and count(session, Finding) == 28


def test_images_of_one_study_share_it_and_fill_in_its_details(database: Database, checkpoint_id: int) -> None:
    with database.session() as session:
        a = add_image_result(
            session=session, result=result("a", checkpoint_id, study=StudyInfo(study_instance_uid="9"))
        )
        b = add_image_result(
            session=session,
            result=result("b", checkpoint_id, study=StudyInfo(patient_id="P9", study_instance_uid="9")),
        )
        c = add_image_result(session=session, result=result("c", checkpoint_id))
        images = {image_id: get_image(session=session, image_id=image_id) for image_id in (a, b, c)}
    assert images[a].study_id == images[b].study_id != images[c].study_id
    assert images[a].patient_id == "P9"
    assert images[c].patient_id is None  # a plain image file is a study of its own


def test_failures_are_recorded_and_count_as_stored(database: Database, checkpoint_id: int) -> None:
    with database.session() as session:
        bad = record_failure(
            session=session, source_path="/d/bad.png", content_sha256=sha("bad"), reason="truncated\nPNG"
        )
        again = record_failure(
            session=session, source_path="/d/bad2.png", content_sha256=sha("bad"), reason="still truncated"
        )
        assert again == bad
        image = get_image(session=session, image_id=bad)
        assert (image.status, image.failure_reason, image.source_path) == (
            "failed",
            "still truncated",
            "/d/bad2.png",
        )
        assert image.findings == () and image.study_id is None and image.score is None
        # A file that could not be read at all counts as stored for every checkpoint.
        assert stored_hashes(session=session, checkpoint_id=checkpoint_id) == {sha("bad")}

        model_failure = record_failure(
            session=session,
            source_path="/d/big.png",
            content_sha256=sha("big"),
            reason="out of memory",
            checkpoint_id=checkpoint_id,
        )
        good = add_image_result(session=session, result=result("good", checkpoint_id))
        assert stored_hashes(session=session, checkpoint_id=checkpoint_id) == {
            sha("bad"),
            sha("big"),
            sha("good"),
        }
        other = register_checkpoint(session=session, sha256=sha("other"))
        assert stored_hashes(session=session, checkpoint_id=other) == {sha("bad")}

        # A later success replaces the failure; a failure never replaces a success.
        assert add_image_result(session=session, result=result("big", checkpoint_id)) == model_failure
        assert get_image(session=session, image_id=model_failure).status == "ok"
        assert (
            record_failure(
                session=session,
                source_path="/d/good.png",
                content_sha256=sha("good"),
                reason="flaky disk",
                checkpoint_id=checkpoint_id,
            )
            == good
        )
        assert get_image(session=session, image_id=good).status == "ok"
        assert count(session, Finding) == 28


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda fs: fs[:-1], "missing: Hernia"),
        (lambda fs: [*fs, fs[0]], "Atelectasis is given twice"),
        (
            lambda fs: [
                FindingResult("Effusion", math.nan, 0.5) if f.finding == "Effusion" else f for f in fs
            ],
            "nan",
        ),
        (lambda fs: [FindingResult("Mass", 1.2, 0.5) if f.finding == "Mass" else f for f in fs], "1.2"),
        (lambda fs: [FindingResult("Tumour", 0.2, 0.5), *fs[1:]], "unknown finding"),
    ],
)
def test_malformed_results_are_refused_before_anything_is_written(
    database: Database, checkpoint_id: int, change, message: str
) -> None:
    good = result("a", checkpoint_id)
    bad = ImageResult(**{**good.__dict__, "findings": change(list(good.findings))})
    with database.session() as session:
        with pytest.raises(DataError, match=message) as error:
            add_image_result(session=session, result=bad)
        assert "/data/a.png" in str(error.value)
        assert count(session, Image) == 0 and count(session, Study) == 0


def test_bad_hashes_and_checkpoints_are_refused(database: Database) -> None:
    with database.session() as session:
        with pytest.raises(DataError, match="SHA-256"):
            record_failure(session=session, source_path="/x.png", content_sha256="abc", reason="r")
        with pytest.raises(CheckpointError, match="thresholds"):
            register_checkpoint(session=session, sha256=sha("c"), thresholds=[0.5] * 13)
        first = register_checkpoint(session=session, sha256=sha("c"))
        assert register_checkpoint(session=session, sha256=sha("c")) == first


class FailOnFindingsInsert:
    """Makes the database connection fail when the findings rows are inserted: after the image row."""

    def __init__(self, database: Database):
        self.engine = database.engine
        self.armed = True

    def __call__(self, conn, cursor, statement, parameters, context, executemany) -> None:
        if self.armed and statement.lstrip().upper().startswith("INSERT INTO FINDINGS"):
            raise RuntimeError("disk full (simulated)")

    def __enter__(self) -> FailOnFindingsInsert:
        event.listen(self.engine, "before_cursor_execute", self)
        return self

    def __exit__(self, *exc_info) -> None:
        event.remove(self.engine, "before_cursor_execute", self)


def test_a_failure_mid_insert_leaves_nothing_half_written(database: Database, checkpoint_id: int) -> None:
    study = StudyInfo(patient_id="P5", study_instance_uid="5.5")
    with database.session() as session:
        with FailOnFindingsInsert(database), pytest.raises(RuntimeError, match="disk full"):
            add_image_result(session=session, result=result("a", checkpoint_id, study=study))
        assert count(session, Image) == 0 and count(session, Study) == 0 and count(session, Finding) == 0

        # Replacing a stored result that fails half-way keeps the old result whole.
        image_id = add_image_result(session=session, result=result("a", checkpoint_id, study=study))
        with FailOnFindingsInsert(database), pytest.raises(RuntimeError):
            add_image_result(session=session, result=result("a", checkpoint_id, base=0.3))
    with database.session() as session:
        image = get_image(session=session, image_id=image_id)
        assert len(image.findings) == 14
        assert min(f.probability for f in image.findings) == pytest.approx(0.1)


def test_a_failed_image_in_a_batch_leaves_the_others(database: Database, checkpoint_id: int) -> None:
    with database.session() as session:
        add_image_result(session=session, result=result("a", checkpoint_id), commit=False)
        with FailOnFindingsInsert(database), pytest.raises(RuntimeError):
            add_image_result(session=session, result=result("b", checkpoint_id), commit=False)
        add_image_result(session=session, result=result("c", checkpoint_id), commit=False)
        session.commit()
    with database.session() as session:
        assert set(stored_hashes(session=session, checkpoint_id=checkpoint_id)) == {sha("a"), sha("c")}
        assert count(session, Finding) == 28


def test_concurrent_writers_all_succeed(database: Database, checkpoint_id: int) -> None:
    errors: list[BaseException] = []

    def write(worker: int) -> None:
        try:
            with database.session() as session:
                for index in range(15):
                    # Every worker also rewrites the shared images: upserts of the same rows race.
                    name = f"shared{index}" if index % 3 == 0 else f"w{worker}-{index}"
                    study = StudyInfo(study_instance_uid=f"study-{index % 4}", patient_id=f"P{index % 4}")
                    add_image_result(session=session, result=result(name, checkpoint_id, study=study))
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(worker,)) for worker in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with database.session() as session:
        assert count(session, Image) == 4 * 10 + 5
        assert count(session, Finding) == 14 * (4 * 10 + 5)
        assert count(session, Study) == 4


def test_concurrent_model_free_failures_of_one_content_leave_one_row(database: Database) -> None:
    """NULLs never conflict in a unique constraint: a partial unique index keeps one model-free failure."""
    errors: list[BaseException] = []

    def write(worker: int) -> None:
        try:
            with database.session() as session:
                for index in range(10):
                    record_failure(
                        session=session,
                        source_path=f"/w{worker}/bad{index}.png",
                        content_sha256=sha(f"bad{index}"),
                        reason="not an image",
                    )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(worker,)) for worker in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with database.session() as session:
        assert count(session, Image) == 10


def test_a_success_removes_the_failures_it_supersedes(database: Database, checkpoint_id: int) -> None:
    with database.session() as session:
        # A corrupt file later replaced by a good one at the same path (other content).
        record_failure(
            session=session, source_path="/data/a.png", content_sha256=sha("corrupt"), reason="bad"
        )
        # A content unreadable for every model, later read (e.g. by a newer decoder).
        record_failure(session=session, source_path="/old/b.png", content_sha256=sha("b"), reason="bad")
        # A failure of another model at an unrelated path stays.
        other = register_checkpoint(session=session, sha256=sha("other"))
        record_failure(
            session=session,
            source_path="/data/c.png",
            content_sha256=sha("c"),
            reason="x",
            checkpoint_id=other,
        )
        add_image_result(session=session, result=result("a", checkpoint_id))
        add_image_result(session=session, result=result("b", checkpoint_id))
        rows = session.execute(select(Image.source_path, Image.status).order_by(Image.source_path)).all()
    assert [tuple(row) for row in rows] == [
        ("/data/a.png", "ok"),
        ("/data/b.png", "ok"),
        ("/data/c.png", "failed"),
    ]


def test_a_study_left_without_images_is_removed(database: Database, checkpoint_id: int) -> None:
    with database.session() as session:
        add_image_result(
            session=session, result=result("a", checkpoint_id, study=StudyInfo(study_instance_uid="1.2"))
        )
        add_image_result(
            session=session, result=result("a", checkpoint_id, study=StudyInfo(study_instance_uid="1.3"))
        )
        assert session.scalars(select(Study.study_instance_uid)).all() == ["1.3"]


def test_checkpoints_keep_their_synthetic_flag(database: Database) -> None:
    with database.session() as session:
        first = register_checkpoint(session=session, sha256=sha("s"))
        again = register_checkpoint(session=session, sha256=sha("s"), synthetic=True)
        add_image_result(session=session, result=result("a", first))
        record = get_image(session=session, image_id=session.scalar(select(Image.id)))
    assert first == again
    assert (record.checkpoint_sha256, record.model_synthetic) == (sha("s"), True)


def test_stored_models_count_their_images(database: Database, checkpoint_id: int) -> None:
    from cxreader.storage.read import stored_models

    with database.session() as session:
        other = register_checkpoint(session=session, sha256=sha("other"), model_name="resnet", synthetic=True)
        add_image_result(session=session, result=result("a", checkpoint_id))
        add_image_result(session=session, result=result("b", checkpoint_id))
        add_image_result(session=session, result=result("a", other))
        record_failure(
            session=session, source_path="/x", content_sha256=sha("x"), reason="r", checkpoint_id=other
        )
        models = stored_models(session=session)
    assert [(model.checkpoint_id, model.images) for model in models] == [(other, 1), (checkpoint_id, 2)]
    assert (models[0].model_name, models[0].synthetic, models[0].sha256) == ("resnet", True, sha("other"))
