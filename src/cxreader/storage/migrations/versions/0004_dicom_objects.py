"""The DICOM objects written for stored results (report, overlay, key object selection).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the ``dicom_objects`` table, one row per image and kind."""
    op.create_table(
        "dicom_objects",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("sop_class_uid", sa.String(length=64), nullable=False),
        sa.Column("sop_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("series_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("path", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("kind IN ('sr', 'overlay', 'kos')", name=op.f("ck_dicom_objects_kind")),
        sa.ForeignKeyConstraint(
            ["image_id"], ["images.id"], name=op.f("fk_dicom_objects_image_id_images"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dicom_objects")),
        sa.UniqueConstraint("image_id", "kind", name=op.f("uq_dicom_objects_image_id_kind")),
    )


def downgrade() -> None:
    """Drop the ``dicom_objects`` table."""
    op.drop_table("dicom_objects")
