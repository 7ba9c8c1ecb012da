"""SQLAlchemy 2 models of the records database: checkpoints, studies, images and their findings.

One row per study (patient identifiers live here and nowhere else), one row per image and checkpoint (the
content hash makes screening resumable: an image already stored for a checkpoint is skipped), and one row per
finding of a successfully read image (each finding of the checkpoint's labels, the 14 CheXNet findings or any
ordered subset of the harmonised label space, with its probability, the checkpoint's operating threshold, the
grounded description, the learned caption and the heatmap location).

The schema is created and upgraded by the Alembic migrations in ``cxreader/storage/migrations``; a test checks
that these models and the migrated schema agree.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Dialect,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from cxreader.labels import HARMONISED_LABELS
from cxreader.storage.names import IMAGE_STATUSES

#: Constraint and index names follow one convention so that migrations name them the same on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: The columns of a finding's box, in the order of :attr:`cxreader.storage.records.FindingResult.box`.
BOX_COLUMNS = ("box_x", "box_y", "box_width", "box_height")


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every backend.

    PostgreSQL keeps the offset (``timestamp with time zone``); SQLite has no such type, so values are stored as
    naive UTC and the UTC offset is attached again when they are read back.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value.isoformat()} given; timestamps must be timezone-aware")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def utc_now() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    """Declarative base of the records tables."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Checkpoint(Base):
    """A model checkpoint that produced results: identified by the SHA-256 of its file."""

    __tablename__ = "checkpoints"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    #: Label order of the checkpoint's outputs (its contract's ``labels``): :data:`cxreader.labels.FINDINGS`
    #: for a CheXNet checkpoint, any ordered subset of :data:`cxreader.labels.HARMONISED_LABELS` otherwise.
    labels: Mapped[list[str]] = mapped_column(JSON)
    #: Per-class operating thresholds in label order, when the checkpoint carries them.
    thresholds: Mapped[list[float] | None] = mapped_column(JSON(none_as_null=True))
    model_name: Mapped[str | None] = mapped_column(String(64))
    version: Mapped[str | None] = mapped_column(String(64))
    path: Mapped[str | None] = mapped_column(Text)
    #: Trained on synthetic data (its contract says so); ``None`` for checkpoints registered before this was kept.
    synthetic: Mapped[bool | None] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now)


class Study(Base):
    """One imaging study (DICOM StudyInstanceUID), or one stand-alone image file when there is no DICOM study.

    This is the only table holding patient identifiers.
    """

    __tablename__ = "studies"
    __table_args__ = (
        # "all studies of patient P" and "patient P since D" use the same index.
        Index("ix_studies_patient_id_study_date", "patient_id", "study_date"),
        Index("ix_studies_study_date", "study_date"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[str | None] = mapped_column(String(64))
    study_instance_uid: Mapped[str | None] = mapped_column(String(64), unique=True)
    study_date: Mapped[date | None] = mapped_column(Date)
    accession_number: Mapped[str | None] = mapped_column(String(64))
    study_description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now)


class Image(Base):
    """One image file read (or refused) for one checkpoint.

    ``(content_sha256, checkpoint_id)`` is unique: a screening run skips the images already stored, and storing
    the same image again replaces its result instead of adding a second one. A failure that holds for every
    model (``checkpoint_id`` NULL: the file could not be read) is unique per content by a partial index, since
    SQL's unique constraints treat NULLs as distinct.
    """

    __tablename__ = "images"
    __table_args__ = (
        UniqueConstraint("content_sha256", "checkpoint_id"),
        CheckConstraint(f"status IN ({', '.join(repr(s) for s in IMAGE_STATUSES)})", name="status"),
        CheckConstraint(
            "(status = 'ok' AND failure_reason IS NULL) OR (status <> 'ok' AND failure_reason IS NOT NULL)",
            name="failure_reason",
        ),
        Index("ix_images_study_id", "study_id"),
        Index(
            "uq_images_content_sha256_unread",
            "content_sha256",
            unique=True,
            sqlite_where=text("checkpoint_id IS NULL"),
            postgresql_where=text("checkpoint_id IS NULL"),
        ),
        # Failures are looked up by path when the file is later read successfully. A hash index on PostgreSQL:
        # a B-tree entry cannot hold a path of several kilobytes.
        Index(
            "ix_images_failed_source_path",
            "source_path",
            postgresql_using="hash",
            sqlite_where=text("status = 'failed'"),
            postgresql_where=text("status = 'failed'"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int | None] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"))
    checkpoint_id: Mapped[int | None] = mapped_column(ForeignKey("checkpoints.id", ondelete="RESTRICT"))
    source_path: Mapped[str] = mapped_column(Text)
    content_sha256: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(8))
    failure_reason: Mapped[str | None] = mapped_column(Text)
    sop_instance_uid: Mapped[str | None] = mapped_column(String(64))
    view_position: Mapped[str | None] = mapped_column(String(16))
    modality: Mapped[str | None] = mapped_column(String(16))
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    #: Millimetres between pixel centres along x (columns) and y (rows), when the file says.
    pixel_spacing_x: Mapped[float | None] = mapped_column(Double)
    pixel_spacing_y: Mapped[float | None] = mapped_column(Double)
    #: Generated by cxreader's synthetic data generator: never a real patient.
    synthetic: Mapped[bool] = mapped_column(Boolean, default=False)
    #: The input gate's verdict: why it refused the image (status ``refused``; also in ``failure_reason``),
    #: its out-of-distribution score and the threshold, where the model has the detector.
    gate_reasons: Mapped[list[str] | None] = mapped_column(JSON(none_as_null=True))
    gate_score: Mapped[float | None] = mapped_column(Double)
    gate_threshold: Mapped[float | None] = mapped_column(Double)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now)


class Finding(Base):
    """The result for one finding of the checkpoint's labels on one image."""

    __tablename__ = "findings"
    __table_args__ = (
        UniqueConstraint("image_id", "finding"),
        # "finding = X and probability >= p, most probable first" is an index range scan, read backwards;
        # image_id in the key makes it covering and gives the deterministic tie-break its order.
        Index("ix_findings_finding_probability_image_id", "finding", "probability", "image_id"),
        CheckConstraint(
            f"finding IN ({', '.join(repr(name) for name in HARMONISED_LABELS)})", name="finding"
        ),
        CheckConstraint("probability >= 0 AND probability <= 1", name="probability"),
        CheckConstraint("threshold >= 0 AND threshold <= 1", name="threshold"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    finding: Mapped[str] = mapped_column(String(32))
    probability: Mapped[float] = mapped_column(Double)
    threshold: Mapped[float] = mapped_column(Double)
    above_threshold: Mapped[bool] = mapped_column(Boolean)
    #: Grounded description (from the heatmap and the probability), as one sentence ...
    description: Mapped[str | None] = mapped_column(Text)
    #: ... and as its structured parts (side, zone, size, severity, organ, ...).
    description_data: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    #: Caption written by the learned captioner, where one ran.
    caption: Mapped[str | None] = mapped_column(Text)
    heatmap_path: Mapped[str | None] = mapped_column(Text)
    #: Box derived from the heatmap, in pixels of the stored image, as (x, y, width, height) like
    #: ``BBox_List_2017.csv``.
    box_x: Mapped[int | None] = mapped_column(Integer)
    box_y: Mapped[int | None] = mapped_column(Integer)
    box_width: Mapped[int | None] = mapped_column(Integer)
    box_height: Mapped[int | None] = mapped_column(Integer)


class Claim(Base):
    """A worker's claim on one image content for one checkpoint, held while the worker reads and infers it.

    Independent screening workers (on one machine or many) claim an image before decoding it, so no two of them
    infer the same image; the claim is removed in the transaction that stores the result. A claim whose lease
    has expired (its worker was killed) may be taken over by any other worker
    (:mod:`cxreader.storage.claims`).
    """

    __tablename__ = "claims"

    content_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    checkpoint_id: Mapped[int] = mapped_column(
        ForeignKey("checkpoints.id", ondelete="CASCADE"), primary_key=True
    )
    #: ``host:pid:token`` of the worker holding it (no patient data).
    worker: Mapped[str] = mapped_column(String(255))
    claimed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())


class DicomObject(Base):
    """A DICOM object cxreader wrote for a stored result (the TID 1500 report, the overlay Secondary Capture,
    the triage Key Object Selection), so the page can link it and a PACS copy can be traced to its record.

    No patient data: the UIDs are the objects' own, the path is where the file was written (``None`` when the
    object was only sent to a PACS).
    """

    __tablename__ = "dicom_objects"
    __table_args__ = (
        UniqueConstraint("image_id", "kind"),
        CheckConstraint("kind IN ('sr', 'overlay', 'kos')", name="kind"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    sop_class_uid: Mapped[str] = mapped_column(String(64))
    sop_instance_uid: Mapped[str] = mapped_column(String(64))
    series_instance_uid: Mapped[str] = mapped_column(String(64))
    path: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now)
