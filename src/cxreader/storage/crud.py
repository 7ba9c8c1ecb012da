"""Keyword-only functions that store screening results and search them.

Writes are atomic per image: the image row, its study and its 14 finding rows are written inside one SAVEPOINT,
so a failure part-way leaves nothing half-written (and, when the call owns the transaction, nothing at all).
Storing an image that is already stored for the same checkpoint (same content SHA-256) replaces its result:
re-running a screening never duplicates records. The same functions serve the CLI, the screening engine and
the web service (the full-stack-fastapi-template split: thin callers, keyword-only crud functions).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import Select, and_, delete, exists, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, selectinload

from cxreader.errors import CheckpointError, ConfigError, DataError
from cxreader.labels import FINDINGS, NO_FINDING, UnknownFindingError, canonical_finding
from cxreader.storage.db import begin_write
from cxreader.storage.names import MAX_SEARCH_LIMIT, SEARCH_ORDERS
from cxreader.storage.tables import Checkpoint, Finding, Image, Study, utc_now

#: Longest failure reason stored; longer ones are cut (a reason is one line, not a traceback).
MAX_REASON_CHARS = 2_000

_SHA256 = re.compile(r"[0-9a-f]{64}")
# DICOM's LO (PatientID, AccessionNumber is SH but fits) and UI value representations hold at most 64 chars.
_MAX_ID_CHARS = 64


@dataclass(frozen=True)
class StudyInfo:
    """What is known about the study an image belongs to (from DICOM, or nothing for a plain image file).

    ``study_instance_uid`` groups images into one study; without it every image gets a study of its own.
    """

    patient_id: str | None = None
    study_instance_uid: str | None = None
    study_date: date | None = None
    accession_number: str | None = None
    study_description: str | None = None


@dataclass(frozen=True)
class FindingResult:
    """The model's output for one finding on one image.

    ``above_threshold`` is not an input: it is derived as ``probability >= threshold``.
    """

    finding: str
    probability: float
    threshold: float
    description: str | None = None
    description_data: Mapping[str, Any] | None = None
    caption: str | None = None
    heatmap_path: str | None = None
    #: (x, y, width, height) in pixels of the image, as in ``BBox_List_2017.csv``.
    box: tuple[int, int, int, int] | None = None


@dataclass(frozen=True)
class ImageResult:
    """Everything stored for one successfully read image: metadata and the results of all 14 findings."""

    source_path: str
    content_sha256: str
    checkpoint_id: int
    findings: Sequence[FindingResult]
    study: StudyInfo = field(default_factory=StudyInfo)
    sop_instance_uid: str | None = None
    view_position: str | None = None
    modality: str | None = None
    width: int | None = None
    height: int | None = None
    #: Millimetres per pixel as (x, y), i.e. (column spacing, row spacing).
    pixel_spacing: tuple[float, float] | None = None
    synthetic: bool = False


@dataclass(frozen=True)
class FindingHit:
    """One finding row of a search result."""

    finding: str
    probability: float
    threshold: float
    above_threshold: bool
    description: str | None
    caption: str | None
    heatmap_path: str | None
    box: tuple[int, int, int, int] | None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "finding": self.finding,
            "probability": self.probability,
            "threshold": self.threshold,
            "above_threshold": self.above_threshold,
            "description": self.description,
            "caption": self.caption,
            "heatmap_path": self.heatmap_path,
            "box": list(self.box) if self.box is not None else None,
        }


@dataclass(frozen=True)
class SearchRow:
    """One image matched by :func:`search_records`.

    ``findings`` holds the image's finding rows that matched the finding filters (all 14 when no finding
    filter was given), most probable first; ``score`` is the largest of their probabilities.
    """

    image_id: int
    study_id: int | None
    patient_id: str | None
    study_instance_uid: str | None
    accession_number: str | None
    study_date: date | None
    source_path: str
    content_sha256: str
    view_position: str | None
    modality: str | None
    status: str
    failure_reason: str | None
    synthetic: bool
    checkpoint_id: int | None
    created_at: datetime
    score: float | None
    findings: list[FindingHit]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (dates in ISO 8601)."""
        return {
            "image_id": self.image_id,
            "study_id": self.study_id,
            "patient_id": self.patient_id,
            "study_instance_uid": self.study_instance_uid,
            "accession_number": self.accession_number,
            "study_date": self.study_date.isoformat() if self.study_date else None,
            "source_path": self.source_path,
            "content_sha256": self.content_sha256,
            "view_position": self.view_position,
            "modality": self.modality,
            "status": self.status,
            "failure_reason": self.failure_reason,
            "synthetic": self.synthetic,
            "checkpoint_id": self.checkpoint_id,
            "created_at": self.created_at.isoformat(),
            "score": self.score,
            "findings": [hit.to_dict() for hit in self.findings],
        }


@dataclass(frozen=True)
class SearchPage:
    """One page of search results and the number of matches over all pages."""

    total: int
    limit: int
    offset: int
    rows: list[SearchRow]


# --- writing -------------------------------------------------------------------------------------------------


def register_checkpoint(
    *,
    session: Session,
    sha256: str,
    labels: Sequence[str] = FINDINGS,
    thresholds: Sequence[float] | None = None,
    model_name: str | None = None,
    version: str | None = None,
    path: str | None = None,
    commit: bool = True,
) -> int:
    """Store a checkpoint (once per file content) and return its id.

    Args:
        session: Database session.
        sha256: SHA-256 of the checkpoint file, lower-case hex.
        labels: The checkpoint's output order; must be the 14 findings of :data:`FINDINGS`, in that order.
        thresholds: Per-class operating thresholds in label order, when the checkpoint carries them.
        model_name: Architecture name (``"densenet121"``).
        version: cxreader version or training run that wrote the checkpoint.
        path: Where the file was read from.
        commit: Commit the transaction (else the caller does).

    Raises:
        CheckpointError: labels other than :data:`FINDINGS`, or thresholds that are not 14 numbers in [0, 1].
    """
    where = path or sha256
    sha256 = _check_sha256(sha256, where)
    try:
        canonical = tuple(canonical_finding(name) for name in labels)
    except UnknownFindingError as exc:
        raise CheckpointError(f"{where}: {exc}") from None
    if canonical != FINDINGS:
        raise CheckpointError(
            f"{where}: labels {list(labels)} differ from the 14 findings in cxreader's order"
        )
    if thresholds is not None:
        thresholds = [float(value) for value in thresholds]
        if len(thresholds) != len(FINDINGS) or not all(_is_unit(value) for value in thresholds):
            raise CheckpointError(f"{where}: thresholds must be {len(FINDINGS)} numbers in [0, 1]")
    begin_write(session)
    try:
        statement = (
            _dialect_insert(session, Checkpoint)
            .values(
                sha256=sha256,
                labels=list(FINDINGS),
                thresholds=thresholds,
                model_name=model_name,
                version=version,
                path=path,
                created_at=utc_now(),
            )
            .on_conflict_do_nothing(index_elements=[Checkpoint.sha256])
        )
        session.execute(statement)
        checkpoint_id = session.scalars(select(Checkpoint.id).where(Checkpoint.sha256 == sha256)).one()
        if commit:
            session.commit()
    except BaseException:
        if commit:
            session.rollback()
        raise
    return checkpoint_id


def add_image_result(*, session: Session, result: ImageResult, commit: bool = True) -> int:
    """Store (or replace) the result of one image for one checkpoint, atomically.

    The study is found by StudyInstanceUID (or the one the image already belongs to) and its missing fields
    are filled in; the image row is inserted or updated on ``(content_sha256, checkpoint_id)``; its finding
    rows are replaced. All of it happens inside one SAVEPOINT: an error rolls back this image entirely.

    Args:
        session: Database session.
        result: The image and its 14 findings.
        commit: Commit when done (each image its own transaction). With ``False`` the caller commits, e.g.
            once per batch; an error still undoes only this image.

    Returns:
        The image's id.

    Raises:
        DataError: the result is malformed (not exactly the 14 findings, a probability outside [0, 1], a bad
            hash, ...); nothing is written.
        sqlalchemy.exc.SQLAlchemyError: the database refused the write; nothing of this image is written.
    """
    finding_rows = _finding_rows(result)
    image_values = _image_values(result)
    begin_write(session)
    try:
        with session.begin_nested():
            existing_study_id = session.scalar(
                select(Image.study_id).where(
                    Image.content_sha256 == image_values["content_sha256"],
                    Image.checkpoint_id == result.checkpoint_id,
                )
            )
            image_values["study_id"] = _upsert_study(session, result.study, existing_study_id)
            image_id = _upsert_image(session, image_values)
            session.execute(delete(Finding).where(Finding.image_id == image_id))
            session.execute(insert(Finding), [{**row, "image_id": image_id} for row in finding_rows])
        if commit:
            session.commit()
    except BaseException:
        if commit:
            session.rollback()
        raise
    return image_id


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
        session: Database session.
        source_path: The file.
        content_sha256: SHA-256 of the file's bytes.
        reason: Why it failed, one line (cut at :data:`MAX_REASON_CHARS`).
        checkpoint_id: The checkpoint of the run; ``None`` for a failure that does not depend on the model
            (an unreadable file), which then counts as stored for every checkpoint in :func:`has_image`.
        synthetic: The file came from the synthetic data generator.
        commit: Commit when done.

    Returns:
        The id of the image row holding the failure (or the stored success).
    """
    content_sha256 = _check_sha256(content_sha256, source_path)
    reason = " ".join(str(reason).split())[:MAX_REASON_CHARS] or "unknown reason"
    same_checkpoint = (
        Image.checkpoint_id.is_(None) if checkpoint_id is None else Image.checkpoint_id == checkpoint_id
    )
    begin_write(session)
    try:
        with session.begin_nested():
            now = utc_now()
            existing = session.execute(
                select(Image.id, Image.status).where(Image.content_sha256 == content_sha256, same_checkpoint)
            ).first()
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
                # Another writer may have stored the same file since the SELECT (PostgreSQL, read committed).
                statement = statement.on_conflict_do_nothing(
                    index_elements=[Image.content_sha256, Image.checkpoint_id]
                ).returning(Image.id)
                image_id = session.scalar(statement)
                if image_id is None:
                    image_id = session.scalars(
                        select(Image.id).where(Image.content_sha256 == content_sha256, same_checkpoint)
                    ).one()
        if commit:
            session.commit()
    except BaseException:
        if commit:
            session.rollback()
        raise
    return image_id


# --- reading -------------------------------------------------------------------------------------------------


def has_image(*, session: Session, content_sha256: str, checkpoint_id: int) -> bool:
    """Whether a file with this content is already stored for this checkpoint (result or failure).

    A failure recorded without a checkpoint (the file could not be read at all) counts for every checkpoint:
    reading it again would fail again.
    """
    statement = select(
        exists().where(Image.content_sha256 == content_sha256.lower(), _stored_for(checkpoint_id))
    )
    return bool(session.scalar(statement))


def stored_hashes(*, session: Session, checkpoint_id: int) -> set[str]:
    """Content hashes of every file stored for a checkpoint, in the sense of :func:`has_image`.

    One query instead of one per file, for resuming a run over many files.
    """
    return set(session.scalars(select(Image.content_sha256).where(_stored_for(checkpoint_id))))


def get_image(*, session: Session, image_id: int) -> Image | None:
    """The image with its study, checkpoint and findings loaded (safe to use after the session closes)."""
    statement = (
        select(Image)
        .where(Image.id == image_id)
        .options(selectinload(Image.study), selectinload(Image.checkpoint), selectinload(Image.findings))
        .execution_options(populate_existing=True)
    )
    return session.scalars(statement).one_or_none()


def search_records(
    *,
    session: Session,
    finding: str | None = None,
    min_prob: float | None = None,
    since: date | None = None,
    until: date | None = None,
    patient: str | None = None,
    text: str | None = None,
    above_threshold: bool | None = None,
    status: str | None = "ok",
    limit: int = 100,
    offset: int = 0,
    order: str = "probability_desc",
) -> SearchPage:
    """Search the stored images: "every X-ray with Effusion >= 0.5 since March", "all studies of patient P".

    The finding filters (``finding``, ``min_prob``, ``above_threshold``, ``text``) must hold for one and the
    same finding row of an image; the image filters (``since``, ``until``, ``patient``, ``status``) for its
    study and image rows. Each image appears at most once.

    Args:
        session: Database session.
        finding: One of the 14 findings (any spelling :func:`canonical_finding` accepts).
        min_prob: Smallest probability, inclusive.
        since: First study date, inclusive. Images whose study has no date never match a date filter.
        until: Last study date, inclusive.
        patient: Patient ID, exact.
        text: Words that the grounded description or the learned caption contains (case-insensitive).
        above_threshold: Only findings above (``True``) or below (``False``) their operating threshold.
        status: ``"ok"`` (default), ``"failed"``, or ``None`` for both.
        limit: Page size (0 counts only), at most :data:`MAX_SEARCH_LIMIT`.
        offset: Matches to skip.
        order: ``"probability_desc"`` (largest matching probability first) or ``"date_desc"`` (newest study
            first, undated last); ties go to the newest image (largest id).

    Raises:
        ConfigError: an unknown finding or order, a probability outside [0, 1], a negative offset, ...
    """
    finding = _search_finding(finding)
    if min_prob is not None and not _is_unit(min_prob):
        raise ConfigError(f"min_prob must be a number in [0, 1], got {min_prob!r}")
    if order not in SEARCH_ORDERS:
        raise ConfigError(f"unknown order {order!r}; expected one of: {', '.join(SEARCH_ORDERS)}")
    if status not in (None, "ok", "failed"):
        raise ConfigError(f"unknown status {status!r}; expected 'ok', 'failed' or None")
    if not 0 <= limit <= MAX_SEARCH_LIMIT:
        raise ConfigError(f"limit must be between 0 and {MAX_SEARCH_LIMIT}, got {limit}")
    if offset < 0:
        raise ConfigError(f"offset must not be negative, got {offset}")
    since, until = _as_date(since), _as_date(until)
    if since is not None and until is not None and since > until:
        raise ConfigError(f"since ({since.isoformat()}) is after until ({until.isoformat()})")
    text = text.strip() if text else None
    patient = patient.strip() if patient else None

    finding_filters = _finding_filters(finding, min_prob, above_threshold, text)
    matched, image_id, score, ordered_by_index = _matched_images(finding, finding_filters)
    images_joined = not finding_filters
    # Finding rows exist only for images read successfully, so with finding filters status "ok" (or any
    # status) holds already and needs no join with images.
    status_filter = status is not None and (images_joined or status != "ok")
    study_filters = []
    if patient is not None:
        study_filters.append(Study.patient_id == patient)
    if since is not None:
        study_filters.append(Study.study_date >= since)
    if until is not None:
        study_filters.append(Study.study_date <= until)
    need_study = bool(study_filters) or order == "date_desc"
    if (status_filter or need_study) and not images_joined:
        matched = matched.join(Image, Image.id == image_id)
    if status_filter:
        matched = matched.where(Image.status == status)
    if need_study:
        matched = (
            matched.join(Study, Study.id == Image.study_id).where(*study_filters)
            if study_filters
            else matched.outerjoin(Study, Study.id == Image.study_id)
        )

    # Counting needs no score: the image ids alone spare the per-image MAX of the unfiltered search.
    counted = matched.with_only_columns(image_id).subquery()
    total = session.scalar(select(func.count()).select_from(counted)) or 0
    if order == "date_desc":
        order_by = [Study.study_date.desc().nulls_last(), image_id.desc()]
    elif ordered_by_index:
        # Same direction as the (finding, probability, image_id) index, read backwards: no sort step.
        order_by = [score.desc(), image_id.desc()]
    else:
        order_by = [score.desc().nulls_last(), image_id.desc()]
    page = session.execute(matched.order_by(*order_by).limit(limit).offset(offset)).all() if limit else []
    rows = _load_rows(session, [(row.image_id, row.score) for row in page], finding_filters)
    return SearchPage(total=total, limit=limit, offset=offset, rows=rows)


# --- helpers -------------------------------------------------------------------------------------------------


def _is_unit(value: Any) -> bool:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return False
    return math.isfinite(number) and 0.0 <= number <= 1.0


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


def _finding_rows(result: ImageResult) -> list[dict[str, Any]]:
    where = result.source_path
    rows: dict[str, dict[str, Any]] = {}
    for item in result.findings:
        try:
            name = canonical_finding(item.finding)
        except UnknownFindingError as exc:
            raise DataError(where, str(exc)) from None
        if name == NO_FINDING:
            raise DataError(where, f"{NO_FINDING!r} is not one of the 14 findings")
        if name in rows:
            raise DataError(where, f"finding {name} is given twice")
        for label, value in (("probability", item.probability), ("threshold", item.threshold)):
            if not _is_unit(value):
                raise DataError(where, f"{label} of {name} is {value!r}, expected a number in [0, 1]")
        box = item.box
        if box is not None:
            if len(box) != 4 or any(int(v) != v or v < 0 for v in box):
                raise DataError(
                    where, f"box of {name} must be four non-negative integers (x, y, width, height)"
                )
            box = tuple(int(v) for v in box)
        probability, threshold = float(item.probability), float(item.threshold)
        rows[name] = {
            "finding": name,
            "probability": probability,
            "threshold": threshold,
            "above_threshold": probability >= threshold,
            "description": item.description,
            "description_data": dict(item.description_data) if item.description_data is not None else None,
            "caption": item.caption,
            "heatmap_path": item.heatmap_path,
            "box_x": box[0] if box else None,
            "box_y": box[1] if box else None,
            "box_width": box[2] if box else None,
            "box_height": box[3] if box else None,
        }
    missing = [name for name in FINDINGS if name not in rows]
    if missing:
        raise DataError(where, f"results for all 14 findings are needed; missing: {', '.join(missing)}")
    return [rows[name] for name in FINDINGS]


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
        "status": "ok",
        "failure_reason": None,
        "sop_instance_uid": _check_identifier(result.sop_instance_uid, "SOPInstanceUID", where),
        "view_position": _check_identifier(result.view_position, "ViewPosition", where),
        "modality": _check_identifier(result.modality, "Modality", where),
        "width": result.width,
        "height": result.height,
        "pixel_spacing_x": float(spacing[0]) if spacing else None,
        "pixel_spacing_y": float(spacing[1]) if spacing else None,
        "synthetic": bool(result.synthetic),
    }


def _dialect_insert(session: Session, entity: Any) -> Any:
    """The backend's INSERT construct, which has ``ON CONFLICT`` (both SQLite and PostgreSQL spell it so)."""
    name = session.get_bind().dialect.name
    if name == "sqlite":
        return sqlite.insert(entity)
    if name == "postgresql":
        return postgresql.insert(entity)
    raise ConfigError(f"database backend {name!r} is not supported (use sqlite or postgresql)")


def _upsert_study(session: Session, info: StudyInfo, existing_id: int | None) -> int:
    where = "study"
    values = {
        "patient_id": _check_identifier(info.patient_id, "PatientID", where),
        "study_instance_uid": _check_identifier(info.study_instance_uid, "StudyInstanceUID", where),
        "study_date": _as_date(info.study_date),
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


def _stored_for(checkpoint_id: int) -> Any:
    return or_(
        Image.checkpoint_id == checkpoint_id,
        and_(Image.status == "failed", Image.checkpoint_id.is_(None)),
    )


def _as_date(value: date | None) -> date | None:
    # A datetime is a date too, but compares as a timestamp against DATE columns on some backends.
    return value.date() if isinstance(value, datetime) else value


def _search_finding(finding: str | None) -> str | None:
    if finding is None:
        return None
    try:
        name = canonical_finding(finding)
    except UnknownFindingError as exc:
        raise ConfigError(str(exc)) from None
    if name == NO_FINDING:
        raise ConfigError(f"{NO_FINDING!r} is not one of the 14 findings; search with above_threshold=False")
    return name


def _finding_filters(
    finding: str | None, min_prob: float | None, above_threshold: bool | None, text: str | None
) -> list[Any]:
    filters: list[Any] = []
    if finding is not None:
        filters.append(Finding.finding == finding)
    if min_prob is not None:
        filters.append(Finding.probability >= float(min_prob))
    if above_threshold is not None:
        filters.append(Finding.above_threshold == bool(above_threshold))
    if text:
        filters.append(
            or_(
                Finding.description.icontains(text, autoescape=True),
                Finding.caption.icontains(text, autoescape=True),
            )
        )
    return filters


def _matched_images(finding: str | None, finding_filters: list[Any]) -> tuple[Select, Any, Any, bool]:
    """The query of matching (image_id, score) pairs before joins, its two columns, and whether the
    ``(finding, probability, image_id)`` index yields its order."""
    if finding is not None:
        # (image_id, finding) is unique: one row per image, no grouping, and the composite index serves
        # both the filter and the order.
        query = select(Finding.image_id.label("image_id"), Finding.probability.label("score")).where(
            *finding_filters
        )
        return query, Finding.image_id, Finding.probability, True
    if finding_filters:
        grouped = (
            select(Finding.image_id.label("image_id"), func.max(Finding.probability).label("score"))
            .where(*finding_filters)
            .group_by(Finding.image_id)
            .subquery()
        )
        return select(grouped.c.image_id, grouped.c.score), grouped.c.image_id, grouped.c.score, False
    best = (
        select(func.max(Finding.probability))
        .where(Finding.image_id == Image.id)
        .correlate(Image)
        .scalar_subquery()
        .label("score")
    )
    return select(Image.id.label("image_id"), best), Image.id, best, False


def _load_rows(
    session: Session, page: list[tuple[int, float | None]], finding_filters: list[Any]
) -> list[SearchRow]:
    if not page:
        return []
    ids = [image_id for image_id, _ in page]
    # Plain column rows, not ORM objects: building and tracking entities would cost more than the queries.
    details = {
        row.image_id: row
        for row in session.execute(
            select(
                Image.id.label("image_id"),
                Image.study_id,
                Image.source_path,
                Image.content_sha256,
                Image.view_position,
                Image.modality,
                Image.status,
                Image.failure_reason,
                Image.synthetic,
                Image.checkpoint_id,
                Image.created_at,
                Study.patient_id,
                Study.study_instance_uid,
                Study.accession_number,
                Study.study_date,
            )
            .outerjoin(Study, Study.id == Image.study_id)
            .where(Image.id.in_(ids))
        )
    }
    hits: dict[int, list[FindingHit]] = {image_id: [] for image_id in ids}
    finding_rows = session.execute(
        select(
            Finding.image_id,
            Finding.finding,
            Finding.probability,
            Finding.threshold,
            Finding.above_threshold,
            Finding.description,
            Finding.caption,
            Finding.heatmap_path,
            Finding.box_x,
            Finding.box_y,
            Finding.box_width,
            Finding.box_height,
        ).where(Finding.image_id.in_(ids), *finding_filters)
    )
    for item in finding_rows:
        box = (item.box_x, item.box_y, item.box_width, item.box_height)
        hits[item.image_id].append(
            FindingHit(
                finding=item.finding,
                probability=item.probability,
                threshold=item.threshold,
                above_threshold=item.above_threshold,
                description=item.description,
                caption=item.caption,
                heatmap_path=item.heatmap_path,
                box=None if None in box else box,
            )
        )
    order = {name: index for index, name in enumerate(FINDINGS)}
    rows = []
    for image_id, score in page:
        detail = details[image_id]
        rows.append(
            SearchRow(
                image_id=image_id,
                study_id=detail.study_id,
                patient_id=detail.patient_id,
                study_instance_uid=detail.study_instance_uid,
                accession_number=detail.accession_number,
                study_date=detail.study_date,
                source_path=detail.source_path,
                content_sha256=detail.content_sha256,
                view_position=detail.view_position,
                modality=detail.modality,
                status=detail.status,
                failure_reason=detail.failure_reason,
                synthetic=detail.synthetic,
                checkpoint_id=detail.checkpoint_id,
                created_at=detail.created_at,
                score=score,
                findings=sorted(hits[image_id], key=lambda hit: (-hit.probability, order[hit.finding])),
            )
        )
    return rows
