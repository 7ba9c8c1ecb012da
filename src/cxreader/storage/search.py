"""Searching the stored images: "every X-ray with Effusion >= 0.5 since March", "all studies of patient P"."""

from __future__ import annotations

import re
from datetime import date
from typing import Any

from sqlalchemy import Select, and_, func, or_, select
from sqlalchemy.orm import Session, aliased

from cxreader.errors import ConfigError
from cxreader.labels import NO_FINDING, UnknownFindingError, canonical_finding
from cxreader.storage.names import MAX_SEARCH_LIMIT, SEARCH_ORDERS, SEARCH_STATUSES
from cxreader.storage.read import read_records
from cxreader.storage.records import SearchPage, as_date, is_unit
from cxreader.storage.tables import Checkpoint, Finding, Image, Study

#: Fewest hex digits of a checkpoint's SHA-256 that name it in a search.
MIN_SHA_PREFIX = 8
_HEX = re.compile(r"[0-9a-f]+")


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
    status: str = "ok",
    model: str | None = None,
    latest_only: bool = True,
    limit: int = 100,
    offset: int = 0,
    order: str = "probability_desc",
) -> SearchPage:
    """Search the stored images, one page of records at a time.

    The finding filters (``finding``, ``min_prob``, ``above_threshold``, ``text``) must hold for one and the
    same finding row of an image; the image filters (``since``, ``until``, ``patient``, ``status``) for its
    study and image rows. Each image appears at most once, as an :class:`~cxreader.storage.records.ImageRecord`
    holding the findings that matched (all its checkpoint's findings when no finding filter was given).

    Args:
        finding: A finding of the harmonised label space (any spelling :func:`canonical_finding` accepts); only
            results of checkpoints that have it can match.
        min_prob: Smallest probability, inclusive.
        since: First study date, inclusive. Images whose study has no date never match a date filter.
        until: Last study date, inclusive.
        patient: Patient ID, exact.
        text: Words that the grounded description or the learned caption of one finding contains, each of
            them, anywhere and in any order (case-insensitive): "right lower" finds "lower zone of the right
            lung".
        above_threshold: Only findings above (``True``) or below (``False``) their operating threshold.
        status: ``"ok"`` (default), ``"failed"``, or ``"any"`` for both.
        model: Only results of this model: a checkpoint's SHA-256 or a prefix of it (at least
            :data:`MIN_SHA_PREFIX` hex digits), or a model name (``densenet121``), which may match several.
        latest_only: Each image (content) once, with its newest result among those the status and model
            filters admit (default); ``False``: every model's result.
        limit: Page size (0 counts only), at most :data:`MAX_SEARCH_LIMIT`.
        offset: Matches to skip.
        order: ``"probability_desc"`` (largest matching probability first) or ``"date_desc"`` (newest study
            first, undated last); ties go to the newest image (largest id).

    Raises:
        ConfigError: an unknown finding or order, a probability outside [0, 1], a negative offset, ...
    """
    finding = _search_finding(finding)
    if min_prob is not None and not is_unit(min_prob):
        raise ConfigError(f"min_prob must be a number in [0, 1], got {min_prob!r}")
    if order not in SEARCH_ORDERS:
        raise ConfigError(f"unknown order {order!r}; expected one of: {', '.join(SEARCH_ORDERS)}")
    if status not in SEARCH_STATUSES:
        raise ConfigError(f"unknown status {status!r}; expected one of: {', '.join(SEARCH_STATUSES)}")
    if not 0 <= limit <= MAX_SEARCH_LIMIT:
        raise ConfigError(f"limit must be between 0 and {MAX_SEARCH_LIMIT}, got {limit}")
    if offset < 0:
        raise ConfigError(f"offset must not be negative, got {offset}")
    since, until = as_date(since), as_date(until)
    if since is not None and until is not None and since > until:
        raise ConfigError(f"since ({since.isoformat()}) is after until ({until.isoformat()})")
    words = text.split() if text else []
    patient = patient.strip() if patient else None
    checkpoint_ids = _model_checkpoints(session, model) if model is not None and model.strip() else None

    finding_filters = _finding_filters(finding, min_prob, above_threshold, words)
    matched, image_id, score, ordered_by_index = _matched_images(finding, finding_filters)
    images_joined = not finding_filters
    image_filters = _image_filters(status, checkpoint_ids, latest_only, images_joined)
    study_filters = []
    if patient is not None:
        study_filters.append(Study.patient_id == patient)
    if since is not None:
        study_filters.append(Study.study_date >= since)
    if until is not None:
        study_filters.append(Study.study_date <= until)
    need_study = bool(study_filters) or order == "date_desc"
    if (image_filters or need_study) and not images_joined:
        matched = matched.join(Image, Image.id == image_id)
    if image_filters:
        matched = matched.where(*image_filters)
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
    ids = [row.image_id for row in page]
    # With finding filters a record holds the matched findings only, so its score is this search's score.
    records = read_records(session=session, image_ids=ids, finding_filters=finding_filters)
    return SearchPage(total=total, limit=limit, offset=offset, rows=[records[image_id] for image_id in ids])


def _search_finding(finding: str | None) -> str | None:
    if finding is None:
        return None
    try:
        name = canonical_finding(finding)
    except UnknownFindingError as exc:
        raise ConfigError(str(exc)) from None
    if name == NO_FINDING:
        raise ConfigError(
            f"{NO_FINDING!r} is not a finding a model predicts; search with above_threshold=False"
        )
    return name


def _model_checkpoints(session: Session, model: str) -> list[int]:
    """The ids of the checkpoints ``model`` names (see :func:`search_records`).

    Raises:
        ConfigError: a name or hash prefix no stored checkpoint has, with the ones there are.
    """
    model = model.strip()
    prefix = model.lower()
    if _HEX.fullmatch(prefix) and len(prefix) >= MIN_SHA_PREFIX:
        condition = Checkpoint.sha256.startswith(prefix, autoescape=True)
    else:
        condition = func.lower(Checkpoint.model_name) == model.lower()
    ids = list(session.scalars(select(Checkpoint.id).where(condition)))
    if not ids:
        known = session.execute(
            select(Checkpoint.sha256, Checkpoint.model_name).order_by(Checkpoint.id)
        ).all()
        listed = ", ".join(f"{row.sha256[:12]} ({row.model_name or 'unnamed'})" for row in known[:10])
        raise ConfigError(
            f"no stored model matches {model!r} (a checkpoint SHA-256, at least {MIN_SHA_PREFIX} hex digits of "
            f"it, or a model name); stored: {listed or 'none'}"
        )
    return ids


def _image_filters(
    status: str, checkpoint_ids: list[int] | None, latest_only: bool, images_joined: bool
) -> list[Any]:
    """Conditions on the image row: its status, its model, and being its content's newest admitted result."""

    def admitted(image: Any, *, status_holds: bool = False) -> list[Any]:
        conditions = []
        if status != "any" and not status_holds:
            conditions.append(image.status == status)
        if checkpoint_ids is not None:
            conditions.append(image.checkpoint_id.in_(checkpoint_ids))
        return conditions

    # Finding rows exist only for images read successfully, so with finding filters status "ok" holds already
    # for the matched image (not for the newer rows it is compared with).
    filters = admitted(Image, status_holds=not images_joined and status == "ok")
    if latest_only:
        newer = aliased(Image)
        filters.append(
            ~select(newer.id)
            .where(
                newer.content_sha256 == Image.content_sha256,
                newer.id != Image.id,
                *admitted(newer),
                or_(
                    newer.updated_at > Image.updated_at,
                    and_(newer.updated_at == Image.updated_at, newer.id > Image.id),
                ),
            )
            .exists()
        )
    return filters


def _finding_filters(
    finding: str | None, min_prob: float | None, above_threshold: bool | None, words: list[str]
) -> list[Any]:
    filters: list[Any] = []
    if finding is not None:
        filters.append(Finding.finding == finding)
    if min_prob is not None:
        filters.append(Finding.probability >= float(min_prob))
    if above_threshold is not None:
        filters.append(Finding.above_threshold == bool(above_threshold))
    for word in words:
        filters.append(
            or_(
                Finding.description.icontains(word, autoescape=True),
                Finding.caption.icontains(word, autoescape=True),
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
