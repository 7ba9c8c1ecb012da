"""Workers' claims, the checkpoint's synthetic flag, one model-free failure per content, failures by path.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06

Before the unique index on model-free failures is created, duplicates written by concurrent workers of older
versions are folded (the newest row of each content is kept), and studies left without images are removed.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the claims table and the checkpoint's synthetic flag; fold duplicates; add the two indexes."""
    with op.batch_alter_table("checkpoints") as batch:
        batch.add_column(sa.Column("synthetic", sa.Boolean(), nullable=True))
    op.create_table(
        "claims",
        sa.Column("content_sha256", sa.String(length=64), nullable=False),
        sa.Column("checkpoint_id", sa.Integer(), nullable=False),
        sa.Column("worker", sa.String(length=255), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["checkpoint_id"],
            ["checkpoints.id"],
            name=op.f("fk_claims_checkpoint_id_checkpoints"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("content_sha256", "checkpoint_id", name=op.f("pk_claims")),
    )
    op.execute(
        "DELETE FROM images WHERE checkpoint_id IS NULL AND id NOT IN "
        "(SELECT MAX(id) FROM images WHERE checkpoint_id IS NULL GROUP BY content_sha256)"
    )
    op.execute("DELETE FROM studies WHERE id NOT IN (SELECT study_id FROM images WHERE study_id IS NOT NULL)")
    op.create_index(
        "uq_images_content_sha256_unread",
        "images",
        ["content_sha256"],
        unique=True,
        sqlite_where=sa.text("checkpoint_id IS NULL"),
        postgresql_where=sa.text("checkpoint_id IS NULL"),
    )
    op.create_index(
        "ix_images_failed_source_path",
        "images",
        ["source_path"],
        postgresql_using="hash",
        sqlite_where=sa.text("status = 'failed'"),
        postgresql_where=sa.text("status = 'failed'"),
    )


def downgrade() -> None:
    """Drop what :func:`upgrade` added (folded duplicates stay folded)."""
    op.drop_index("ix_images_failed_source_path", table_name="images")
    op.drop_index("uq_images_content_sha256_unread", table_name="images")
    op.drop_table("claims")
    with op.batch_alter_table("checkpoints") as batch:
        batch.drop_column("synthetic")
