"""Searching the stored images: "every X-ray with Effusion >= 0.5 since March", "all studies of patient P"."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import Session

from cxreader.errors import ConfigError
from cxreader.labels import NO_FINDING, UnknownFindingError, canonical_finding
from cxreader.storage.names import MAX_SEARCH_LIMIT, SEARCH_ORDERS, SEARCH_STATUSES
from cxreader.storage.read import read_records
from cxreader.storage.records import SearchPage, as_date, is_unit
from cxreader.storage.tables import Finding, Image, Study


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
    limit: int = 100,
    offset: int = 0,
    order: str = "probability_desc",
) -> SearchPage:
    """Search the stored images, one page of records at a time.

    The finding filters (``finding``, ``min_prob``, ``above_threshold``, ``text``) must hold for one and the
    same finding row of an image; the image filters (``since``, ``until``, ``patient``, ``status``) for its
    study and image rows. Each image appears at most once, as an :class:`~cxreader.storage.records.ImageRecord`
    holding the findings that matched (all 14 when no finding filter was given).

    Args:
        finding: One of the 14 findings (any spelling :func:`canonical_finding` accepts).
        min_prob: Smallest probability, inclusive.
        since: First study date, inclusive. Images whose study has no date never match a date filter.
        until: Last study date, inclusive.
        patient: Patient ID, exact.
        text: Words that the grounded description or the learned caption contains (case-insensitive).
        above_threshold: Only findings above (``True``) or below (``False``) their operating threshold.
        status: ``"ok"`` (default), ``"failed"``, or ``"any"`` for both.
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
    text = text.strip() if text else None
    patient = patient.strip() if patient else None

    finding_filters = _finding_filters(finding, min_prob, above_threshold, text)
    matched, image_id, score, ordered_by_index = _matched_images(finding, finding_filters)
    images_joined = not finding_filters
    # Finding rows exist only for images read successfully, so with finding filters status "ok" (or any
    # status) holds already and needs no join with images.
    status_filter = status != "any" and (images_joined or status != "ok")
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
