"""Storing screening results: checkpoints, image results and failures (keyword-only functions).

Writes are atomic per image: the image row, its study and its finding rows (one per label of the checkpoint, in
the checkpoint's label order) are written inside one SAVEPOINT,
so a failure part-way leaves nothing half-written (and, when the call owns the transaction, nothing at all).
Storing an image that is already stored for the same checkpoint (same content SHA-256) replaces its result:
re-running a screening never duplicates records. The same functions serve the CLI, the screening engine and
the web service (the full-stack-fastapi-template split: thin callers, keyword-only crud functions).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, delete, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from cxreader.errors import CheckpointError, DataError, one_line
from cxreader.labels import (
    FINDINGS,
    NO_FINDING,
    UnknownFindingError,
    canonical_finding,
    check_label_space,
)
from cxreader.storage.db import writing
from cxreader.storage.records import ImageResult, StudyInfo, as_date, is_unit
from cxreader.storage.tables import BOX_COLUMNS, Checkpoint, Finding, Image, Study, utc_now

#: Longest failure reason stored; longer ones are cut (a reason is one line, not a traceback).
MAX_REASON_CHARS = 2_000

_SHA256 = re.compile(r"[0-9a-f]{64}")
# DICOM's LO (PatientID, AccessionNumber is SH but fits) and UI value representations hold at most 64 chars.
_MAX_ID_CHARS = 64


def register_checkpoint(
    *,
    session: Session,
    sha256: str,
    thresholds: Sequence[float] | None = None,
    model_name: str | None = None,
    version: str | None = None,
    path: str | None = None,
    synthetic: bool | None = None,
    labels: Sequence[str] = FINDINGS,
) -> int:
    """Store a checkpoint (once per file content), committed, and return its id.

    Its label order (its contract's ``labels``) is stored with it: the findings of every result stored for it
    are exactly these, and are stored and read back in this order.

    Args:
        sha256: SHA-256 of the checkpoint file, lower-case hex.
        thresholds: Per-class operating thresholds in label order, when the checkpoint carries them.
        model_name: Architecture name (``"densenet121"``).
        version: cxreader version or training run that wrote the checkpoint.
        synthetic: The checkpoint was trained on synthetic data (kept where an earlier registration lacked it).
        labels: The checkpoint's label order (default: the 14 CheXNet findings): an ordered subset of
            :data:`~cxreader.labels.HARMONISED_LABELS`, each once.

    Raises:
        CheckpointError: labels that are not cxreader findings, or thresholds that are not one number in
            [0, 1] per label.
    """
    where = path or sha256
    sha256 = _check_sha256(sha256, where)
    try:
        labels = list(check_label_space(labels))
    except UnknownFindingError as exc:
        raise CheckpointError(f"{where}: {exc}") from None
    if thresholds is not None:
        thresholds = [float(value) for value in thresholds]
        if len(thresholds) != len(labels) or not all(is_unit(value) for value in thresholds):
            raise CheckpointError(f"{where}: thresholds must be {len(labels)} numbers in [0, 1]")
    with writing(session, commit=True):
        statement = _dialect_insert(session, Checkpoint).values(
            sha256=sha256,
            labels=labels,
            thresholds=thresholds,
            model_name=model_name,
            version=version,
            path=path,
            synthetic=synthetic,
            created_at=utc_now(),
        )
        statement = statement.on_conflict_do_update(
            index_elements=[Checkpoint.sha256],
            set_={"synthetic": func.coalesce(Checkpoint.__table__.c.synthetic, statement.excluded.synthetic)},
        )
        session.execute(statement)
        return session.scalars(select(Checkpoint.id).where(Checkpoint.sha256 == sha256)).one()


def add_image_result(*, session: Session, result: ImageResult, commit: bool = True) -> int:
    """Store (or replace) the result of one image for one checkpoint, atomically; return the image's id.

    The study is found by StudyInstanceUID (or the one the image already belongs to) and its missing fields
    are filled in; the image row is inserted or updated on ``(content_sha256, checkpoint_id)``; its finding
    rows are replaced. All of it happens inside one SAVEPOINT: an error rolls back this image entirely.

    Args:
        commit: Commit when done (each image its own transaction). With ``False`` the caller commits, e.g.
            once per batch; an error still undoes only this image.

    Raises:
        DataError: the result is malformed (not exactly the findings of its checkpoint's labels, a probability
            outside [0, 1], a bad hash, ...); nothing is written.
        sqlalchemy.exc.SQLAlchemyError: the database refused the write; nothing of this image is written.
    """
    finding_rows = _finding_rows(result)
    image_values = _image_values(result)
    with writing(session, commit=commit):
        # Read inside the write transaction: on SQLite a read transaction cannot become a write one safely.
        labels = checkpoint_labels(session=session, checkpoint_id=result.checkpoint_id)
        finding_rows = _in_label_order(result, finding_rows, labels)
        with session.begin_nested():
            existing_study_id = session.scalar(
                select(Image.study_id).where(
                    Image.content_sha256 == image_values["content_sha256"],
                    Image.checkpoint_id == result.checkpoint_id,
                )
            )
            study_id = image_values["study_id"] = _upsert_study(session, result.study, existing_study_id)
            image_id = _upsert_image(session, image_values)
            session.execute(delete(Finding).where(Finding.image_id == image_id))
            if finding_rows:
                session.execute(insert(Finding), [{**row, "image_id": image_id} for row in finding_rows])
            _drop_superseded_failures(session, result, image_id)
            if existing_study_id is not None and existing_study_id != study_id:
                _drop_if_empty(session, existing_study_id)
    return image_id


def _drop_superseded_failures(session: Session, result: ImageResult, image_id: int) -> None:
    """Remove the failure records this success supersedes: the same file read before (same path, e.g. a
    corrupt copy since replaced) or the same content found unreadable for every model."""
    same_model = or_(Image.checkpoint_id.is_(None), Image.checkpoint_id == result.checkpoint_id)
    same_file = or_(
        Image.source_path == str(result.source_path),
        and_(Image.content_sha256 == result.content_sha256.strip().lower(), Image.checkpoint_id.is_(None)),
    )
    session.execute(
        delete(Image)
        .where(Image.status == "failed", Image.id != image_id, same_model, same_file)
        .execution_options(synchronize_session=False)
    )


def _drop_if_empty(session: Session, study_id: int) -> None:
    """Remove a study none of whose images is left (the only image moved to another study)."""
    remaining = select(Image.id).where(Image.study_id == study_id).exists()
    session.execute(
        delete(Study).where(Study.id == study_id, ~remaining).execution_options(synchronize_session=False)
    )


def record_failure(
    *,
    session: Session,
    source_path: str,
    content_sha256: str,
    reason: str,
    checkpoint_id: int | None = None,
    synthetic: bool = False,
    commit: bool = True,
) -> int:
    """Record that a file could not be read or screened, so the run goes on and the reason stays on record.

    A stored successful result for the same content and checkpoint is never replaced by a failure; a stored
    failure is updated (path and reason).

    Args:
        content_sha256: SHA-256 of the file's bytes.
        reason: Why it failed, one line (cut at :data:`MAX_REASON_CHARS`).
        checkpoint_id: The checkpoint of the run; ``None`` for a failure that does not depend on the model
            (an unreadable file), which then counts as stored for every checkpoint in
            :func:`cxreader.storage.read.stored_hashes`.
        synthetic: The file came from the synthetic data generator.

    Returns:
        The id of the image row holding the failure (or the stored success).
    """
    content_sha256 = _check_sha256(content_sha256, source_path)
    reason = _one_line(reason)
    same_checkpoint = (
        Image.checkpoint_id.is_(None) if checkpoint_id is None else Image.checkpoint_id == checkpoint_id
    )
    stored = select(Image.id, Image.status).where(Image.content_sha256 == content_sha256, same_checkpoint)
    with writing(session, commit=commit), session.begin_nested():
        now = utc_now()
        existing = session.execute(stored).first()
        if existing is not None:
            image_id = existing.id
            if existing.status == "failed":
                session.execute(
                    update(Image)
                    .where(Image.id == image_id)
                    .values(
                        source_path=source_path,
                        failure_reason=reason,
                        synthetic=synthetic,
                        updated_at=now,
                    )
                )
        else:
            statement = _dialect_insert(session, Image).values(
                study_id=None,
                checkpoint_id=checkpoint_id,
                source_path=source_path,
                content_sha256=content_sha256,
                status="failed",
                failure_reason=reason,
                synthetic=synthetic,
                created_at=now,
                updated_at=now,
            )
            # Another writer may have stored the same file since the SELECT (PostgreSQL, read committed). A
            # model-free failure conflicts on the partial unique index (NULLs never conflict in the other).
            if checkpoint_id is None:
                statement = statement.on_conflict_do_nothing(
                    index_elements=[Image.content_sha256], index_where=Image.checkpoint_id.is_(None)
                )
            else:
                statement = statement.on_conflict_do_nothing(
                    index_elements=[Image.content_sha256, Image.checkpoint_id]
                )
            statement = statement.returning(Image.id)
            image_id = session.scalar(statement)
            if image_id is None:
                image_id = session.execute(stored).one().id
    return image_id


def _check_sha256(value: str, where: str) -> str:
    normalised = str(value).strip().lower()
    if not _SHA256.fullmatch(normalised):
        raise DataError(where, f"content hash {value!r} is not a SHA-256 hex digest (64 hex digits)")
    return normalised


def _check_identifier(value: str | None, name: str, where: str) -> str | None:
    if value is None:
        return None
    value = str(value).strip()
    if len(value) > _MAX_ID_CHARS:
        # The value itself stays out of the message: it may identify a patient.
        raise DataError(where, f"{name} is longer than {_MAX_ID_CHARS} characters")
    return value or None


def checkpoint_labels(*, session: Session, checkpoint_id: int) -> tuple[str, ...]:
    """The label order of a registered checkpoint (:data:`FINDINGS` for one that is not registered: storing
    its result then fails on the foreign key, as it always did).

    A checkpoint's labels never change (its row is keyed by the file's content), so they are remembered for
    the session's lifetime: a screening run stores many images of one checkpoint.
    """
    cache: dict[int, tuple[str, ...]] = session.info.setdefault("cxreader.checkpoint_labels", {})
    if checkpoint_id not in cache:
        stored = session.scalar(select(Checkpoint.labels).where(Checkpoint.id == checkpoint_id))
        if stored is None:
            return FINDINGS
        cache[checkpoint_id] = tuple(stored)
    return cache[checkpoint_id]


def _finding_rows(result: ImageResult) -> dict[str, dict[str, Any]]:
    """The finding rows of a result by canonical name, each checked (:func:`_in_label_order` checks that they
    are the checkpoint's findings)."""
    where = result.source_path
    if result.refused:
        if result.findings:
            raise DataError(where, "an image the input gate refused has no findings")
        return {}
    rows: dict[str, dict[str, Any]] = {}
    for item in result.findings:
        try:
            name = canonical_finding(item.finding)
        except UnknownFindingError as exc:
            raise DataError(where, str(exc)) from None
        if name == NO_FINDING:
            raise DataError(where, f"{NO_FINDING!r} is not a finding of the model")
        if name in rows:
            raise DataError(where, f"finding {name} is given twice")
        for label, value in (("probability", item.probability), ("threshold", item.threshold)):
            if not is_unit(value):
                raise DataError(where, f"{label} of {name} is {value!r}, expected a number in [0, 1]")
        box = item.box
        if box is not None:
            if len(box) != 4 or any(int(v) != v or v < 0 for v in box):
                raise DataError(
                    where, f"box of {name} must be four non-negative integers (x, y, width, height)"
                )
            box = tuple(int(v) for v in box)
        rows[name] = {
            "finding": name,
            "probability": float(item.probability),
            "threshold": float(item.threshold),
            "above_threshold": item.above_threshold,
            "description": item.description,
            "description_data": dict(item.description_data) if item.description_data is not None else None,
            "caption": item.caption,
            "heatmap_path": item.heatmap_path,
            **dict(zip(BOX_COLUMNS, box if box is not None else (None,) * len(BOX_COLUMNS), strict=True)),
        }
    return rows


def _in_label_order(
    result: ImageResult, rows: dict[str, dict[str, Any]], labels: Sequence[str]
) -> list[dict[str, Any]]:
    """The rows of exactly the checkpoint's findings, in its label order (none for a refused image).

    Raises:
        DataError: a finding the checkpoint does not have, or one of its findings missing.
    """
    where = result.source_path
    if result.refused:
        return []
    unknown = [name for name in rows if name not in labels]
    if unknown:
        raise DataError(
            where, f"{', '.join(unknown)}: not among the checkpoint's findings ({', '.join(labels)})"
        )
    missing = [name for name in labels if name not in rows]
    if missing:
        raise DataError(
            where,
            f"results for all {len(labels)} findings of the checkpoint are needed; missing: "
            + ", ".join(missing),
        )
    return [rows[name] for name in labels]


def _image_values(result: ImageResult) -> dict[str, Any]:
    where = result.source_path
    spacing = result.pixel_spacing
    if spacing is not None and (
        len(spacing) != 2 or not all(math.isfinite(float(v)) and float(v) > 0 for v in spacing)
    ):
        raise DataError(where, f"pixel spacing {spacing!r} must be two positive numbers (x, y) in mm")
    for name, size in (("width", result.width), ("height", result.height)):
        if size is not None and (int(size) != size or size <= 0):
            raise DataError(where, f"image {name} {size!r} must be a positive integer")
    return {
        "checkpoint_id": result.checkpoint_id,
        "source_path": str(result.source_path),
        "content_sha256": _check_sha256(result.content_sha256, where),
        "status": "refused" if result.refused else "ok",
        "failure_reason": _one_line("; ".join(result.refused)) if result.refused else None,
        "gate_reasons": [str(reason) for reason in result.refused],
        "gate_score": _finite(result.gate_score, "gate score", where),
        "gate_threshold": _finite(result.gate_threshold, "gate threshold", where),
        "sop_instance_uid": _check_identifier(result.sop_instance_uid, "SOPInstanceUID", where),
        "view_position": _check_identifier(result.view_position, "ViewPosition", where),
        "modality": _check_identifier(result.modality, "Modality", where),
        "width": result.width,
        "height": result.height,
        "pixel_spacing_x": float(spacing[0]) if spacing else None,
        "pixel_spacing_y": float(spacing[1]) if spacing else None,
        "synthetic": bool(result.synthetic),
    }


def _one_line(reason: str) -> str:
    """A reason as one line of at most :data:`MAX_REASON_CHARS` characters."""
    return one_line(reason, MAX_REASON_CHARS) or "unknown reason"


def _finite(value: float | None, name: str, where: str) -> float | None:
    if value is None:
        return None
    if not math.isfinite(float(value)):
        raise DataError(where, f"{name} {value!r} is not a finite number")
    return float(value)


def _dialect_insert(session: Session, entity: Any) -> Any:
    """The backend's INSERT construct, which has ``ON CONFLICT`` (both SQLite and PostgreSQL spell it so).

    :func:`cxreader.storage.db.resolve_database_url` admits no other backend.
    """
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    return dialect.insert(entity)


def _upsert_study(session: Session, info: StudyInfo, existing_id: int | None) -> int:
    where = "study"
    values = {
        "patient_id": _check_identifier(info.patient_id, "PatientID", where),
        "study_instance_uid": _check_identifier(info.study_instance_uid, "StudyInstanceUID", where),
        "study_date": as_date(info.study_date),
        "accession_number": _check_identifier(info.accession_number, "AccessionNumber", where),
        "study_description": info.study_description,
    }
    known = {key: value for key, value in values.items() if value is not None}
    if values["study_instance_uid"] is not None:
        statement = _dialect_insert(session, Study).values(**values, created_at=utc_now())
        # The newest non-empty details win; an image that lacks some detail never erases what is stored.
        fill = {
            key: func.coalesce(statement.excluded[key], Study.__table__.c[key])
            for key in values
            if key != "study_instance_uid"
        }
        statement = statement.on_conflict_do_update(
            index_elements=[Study.study_instance_uid], set_=fill
        ).returning(Study.id)
        return session.scalars(statement).one()
    if existing_id is not None:
        if known:
            session.execute(update(Study).where(Study.id == existing_id).values(**known))
        return existing_id
    statement = insert(Study).values(**values, created_at=utc_now()).returning(Study.id)
    return session.scalars(statement).one()


def _upsert_image(session: Session, values: dict[str, Any]) -> int:
    now = utc_now()
    statement = _dialect_insert(session, Image).values(**values, created_at=now, updated_at=now)
    replaced = {
        key: statement.excluded[key] for key in values if key not in ("content_sha256", "checkpoint_id")
    }
    statement = statement.on_conflict_do_update(
        index_elements=[Image.content_sha256, Image.checkpoint_id], set_={**replaced, "updated_at": now}
    ).returning(Image.id)
    return session.scalars(statement).one()
