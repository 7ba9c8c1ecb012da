"""Reading stored images back as :class:`~cxreader.storage.records.ImageRecord` (keyword-only functions).

Records are built from plain column rows, not ORM objects: tracking entities would cost more than the queries,
and a record stays usable after its session is closed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.orm import Session

from cxreader.labels import HARMONISED_LABELS
from cxreader.storage.records import FindingResult, ImageRecord, ModelRecord
from cxreader.storage.tables import BOX_COLUMNS, Checkpoint, Finding, Image, Study

# What an ImageRecord reads: columns named as its fields, except the two of the pixel spacing.
_IMAGE_COLUMNS = (
    Image.id.label("image_id"),
    Image.study_id,
    Image.checkpoint_id,
    Image.source_path,
    Image.content_sha256,
    Image.status,
    Image.failure_reason,
    Image.synthetic,
    Image.created_at,
    Study.patient_id,
    Study.study_instance_uid,
    Study.study_date,
    Study.accession_number,
    Study.study_description,
    Image.sop_instance_uid,
    Image.view_position,
    Image.modality,
    Image.width,
    Image.height,
    Image.pixel_spacing_x,
    Image.pixel_spacing_y,
    Checkpoint.sha256.label("checkpoint_sha256"),
    Checkpoint.model_name,
    Checkpoint.synthetic.label("model_synthetic"),
    Image.gate_reasons,
    Image.gate_score,
    Image.gate_threshold,
    Checkpoint.labels.label("checkpoint_labels"),
)
# What a FindingResult reads, with the image it belongs to and the four columns of its box.
_FINDING_COLUMNS = (
    Finding.image_id,
    Finding.finding,
    Finding.probability,
    Finding.threshold,
    Finding.description,
    Finding.description_data,
    Finding.caption,
    Finding.heatmap_path,
    *(Finding.__table__.c[name] for name in BOX_COLUMNS),
)
# Ties of probability go by the checkpoint's label order; a name it lacks (never stored) after the others.
_CANONICAL_ORDER = {name: index for index, name in enumerate(HARMONISED_LABELS)}


def stored_for(checkpoint_id: int) -> ColumnElement[bool]:
    """The condition on an image row that it is stored for a checkpoint (a result or a failure).

    A failure recorded without a checkpoint (the file could not be read at all) counts for every checkpoint:
    reading it again would fail again.
    """
    return or_(
        Image.checkpoint_id == checkpoint_id,
        and_(Image.status == "failed", Image.checkpoint_id.is_(None)),
    )


def stored_hashes(*, session: Session, checkpoint_id: int) -> set[str]:
    """Content hashes of every file stored for a checkpoint (:func:`stored_for`), for resuming a run."""
    return set(session.scalars(select(Image.content_sha256).where(stored_for(checkpoint_id))))


def get_image(*, session: Session, image_id: int) -> ImageRecord | None:
    """The stored image with its study's details and all its findings, or ``None`` when there is none."""
    return read_records(session=session, image_ids=[image_id]).get(image_id)


def read_records(
    *, session: Session, image_ids: Sequence[int], finding_filters: Sequence[Any] = ()
) -> dict[int, ImageRecord]:
    """The records of these images, by id (ids that are not stored are left out).

    Args:
        finding_filters: SQL conditions on :class:`~cxreader.storage.tables.Finding` rows: a record then
            holds only the findings that meet them (a search's matches). Without any: all of them.
    """
    if not image_ids:
        return {}
    findings: dict[int, list[FindingResult]] = {image_id: [] for image_id in image_ids}
    for row in session.execute(
        select(*_FINDING_COLUMNS).where(Finding.image_id.in_(image_ids), *finding_filters)
    ):
        values = row._asdict()
        image_id = values.pop("image_id")
        box = tuple(values.pop(name) for name in BOX_COLUMNS)
        findings[image_id].append(FindingResult(**values, box=None if None in box else box))
    records = {}
    for row in session.execute(
        select(*_IMAGE_COLUMNS)
        .outerjoin(Study, Study.id == Image.study_id)
        .outerjoin(Checkpoint, Checkpoint.id == Image.checkpoint_id)
        .where(Image.id.in_(image_ids))
    ):
        values = row._asdict()
        spacing = (values.pop("pixel_spacing_x"), values.pop("pixel_spacing_y"))
        reasons = values.pop("gate_reasons")
        order = {name: index for index, name in enumerate(values.pop("checkpoint_labels") or ())}
        ordered = sorted(
            findings[row.image_id],
            key=lambda item: (
                -item.probability,
                order.get(item.finding, len(order)),
                _CANONICAL_ORDER.get(item.finding, len(_CANONICAL_ORDER)),
            ),
        )
        records[row.image_id] = ImageRecord(
            **values,
            pixel_spacing=None if None in spacing else spacing,
            gate_reasons=tuple(reasons) if reasons is not None else None,
            findings=tuple(ordered),
        )
    return records


def stored_models(*, session: Session) -> list[ModelRecord]:
    """Every registered checkpoint with the number of images it has results for, newest first."""
    images = (
        select(Image.checkpoint_id, func.count().label("images"))
        .where(Image.status == "ok")
        .group_by(Image.checkpoint_id)
        .subquery()
    )
    rows = session.execute(
        select(
            Checkpoint.id.label("checkpoint_id"),
            Checkpoint.sha256,
            Checkpoint.model_name,
            Checkpoint.version,
            Checkpoint.synthetic,
            Checkpoint.created_at,
            func.coalesce(images.c.images, 0).label("images"),
        )
        .outerjoin(images, images.c.checkpoint_id == Checkpoint.id)
        .order_by(Checkpoint.created_at.desc(), Checkpoint.id.desc())
    )
    return [ModelRecord(**row._asdict()) for row in rows]
