"""Initial schema: checkpoints, studies, images and findings.

Revision ID: 0001
Revises:
Create Date: 2026-11-22

Migrations are frozen in time: they spell out plain SQLAlchemy types and literal values instead of importing
them from ``cxreader.storage.tables``, which will move on.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_FINDINGS = (
    "Atelectasis",
    "Cardiomegaly",
    "Effusion",
    "Infiltration",
    "Mass",
    "Nodule",
    "Pneumonia",
    "Pneumothorax",
    "Consolidation",
    "Edema",
    "Emphysema",
    "Fibrosis",
    "Pleural_Thickening",
    "Hernia",
)


def _timestamp(name: str) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False)


def upgrade() -> None:
    """Create the four tables and the indexes of the common searches."""
    op.create_table(
        "checkpoints",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("thresholds", sa.JSON(), nullable=True),
        sa.Column("model_name", sa.String(length=64), nullable=True),
        sa.Column("version", sa.String(length=64), nullable=True),
        sa.Column("path", sa.Text(), nullable=True),
        _timestamp("created_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_checkpoints")),
        sa.UniqueConstraint("sha256", name=op.f("uq_checkpoints_sha256")),
    )
    op.create_table(
        "studies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.String(length=64), nullable=True),
        sa.Column("study_instance_uid", sa.String(length=64), nullable=True),
        sa.Column("study_date", sa.Date(), nullable=True),
        sa.Column("accession_number", sa.String(length=64), nullable=True),
        sa.Column("study_description", sa.Text(), nullable=True),
        _timestamp("created_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_studies")),
        sa.UniqueConstraint("study_instance_uid", name=op.f("uq_studies_study_instance_uid")),
    )
    op.create_index("ix_studies_patient_id_study_date", "studies", ["patient_id", "study_date"])
    op.create_index("ix_studies_study_date", "studies", ["study_date"])

    op.create_table(
        "images",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=True),
        sa.Column("checkpoint_id", sa.Integer(), nullable=True),
        sa.Column("source_path", sa.Text(), nullable=False),
        sa.Column("content_sha256", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("failure_reason", sa.Text(), nullable=True),
        sa.Column("sop_instance_uid", sa.String(length=64), nullable=True),
        sa.Column("view_position", sa.String(length=16), nullable=True),
        sa.Column("modality", sa.String(length=16), nullable=True),
        sa.Column("width", sa.Integer(), nullable=True),
        sa.Column("height", sa.Integer(), nullable=True),
        sa.Column("pixel_spacing_x", sa.Double(), nullable=True),
        sa.Column("pixel_spacing_y", sa.Double(), nullable=True),
        sa.Column("synthetic", sa.Boolean(), nullable=False),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.CheckConstraint(
            "(status = 'ok' AND failure_reason IS NULL) OR (status = 'failed' AND failure_reason IS NOT NULL)",
            name=op.f("ck_images_failure_reason"),
        ),
        sa.CheckConstraint("status IN ('ok', 'failed')", name=op.f("ck_images_status")),
        sa.ForeignKeyConstraint(
            ["checkpoint_id"],
            ["checkpoints.id"],
            name=op.f("fk_images_checkpoint_id_checkpoints"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["study_id"], ["studies.id"], name=op.f("fk_images_study_id_studies"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_images")),
        sa.UniqueConstraint(
            "content_sha256", "checkpoint_id", name=op.f("uq_images_content_sha256_checkpoint_id")
        ),
    )
    op.create_index("ix_images_study_id", "images", ["study_id"])

    finding_names = ", ".join(f"'{name}'" for name in _FINDINGS)
    op.create_table(
        "findings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.Column("finding", sa.String(length=32), nullable=False),
        sa.Column("probability", sa.Double(), nullable=False),
        sa.Column("threshold", sa.Double(), nullable=False),
        sa.Column("above_threshold", sa.Boolean(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("description_data", sa.JSON(), nullable=True),
        sa.Column("caption", sa.Text(), nullable=True),
        sa.Column("heatmap_path", sa.Text(), nullable=True),
        sa.Column("box_x", sa.Integer(), nullable=True),
        sa.Column("box_y", sa.Integer(), nullable=True),
        sa.Column("box_width", sa.Integer(), nullable=True),
        sa.Column("box_height", sa.Integer(), nullable=True),
        sa.CheckConstraint(f"finding IN ({finding_names})", name=op.f("ck_findings_finding")),
        sa.CheckConstraint("probability >= 0 AND probability <= 1", name=op.f("ck_findings_probability")),
        sa.CheckConstraint("threshold >= 0 AND threshold <= 1", name=op.f("ck_findings_threshold")),
        sa.ForeignKeyConstraint(
            ["image_id"], ["images.id"], name=op.f("fk_findings_image_id_images"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_findings")),
        sa.UniqueConstraint("image_id", "finding", name=op.f("uq_findings_image_id_finding")),
    )
    op.create_index(
        "ix_findings_finding_probability_image_id", "findings", ["finding", "probability", "image_id"]
    )


def downgrade() -> None:
    """Drop everything :func:`upgrade` created."""
    op.drop_index("ix_findings_finding_probability_image_id", table_name="findings")
    op.drop_table("findings")
    op.drop_index("ix_images_study_id", table_name="images")
    op.drop_table("images")
    op.drop_index("ix_studies_study_date", table_name="studies")
    op.drop_index("ix_studies_patient_id_study_date", table_name="studies")
    op.drop_table("studies")
    op.drop_table("checkpoints")
