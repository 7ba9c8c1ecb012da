"""The input gate's verdict: status ``refused`` and the gate's reasons, score and threshold per image.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Admit the status ``refused`` (which, like ``failed``, carries its reason) and add the gate columns."""
    with op.batch_alter_table("images") as batch:
        batch.drop_constraint(op.f("ck_images_status"), type_="check")
        batch.drop_constraint(op.f("ck_images_failure_reason"), type_="check")
        batch.create_check_constraint("status", "status IN ('ok', 'failed', 'refused')")
        batch.create_check_constraint(
            "failure_reason",
            "(status = 'ok' AND failure_reason IS NULL) OR (status <> 'ok' AND failure_reason IS NOT NULL)",
        )
        batch.add_column(sa.Column("gate_reasons", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("gate_score", sa.Double(), nullable=True))
        batch.add_column(sa.Column("gate_threshold", sa.Double(), nullable=True))


def downgrade() -> None:
    """Drop the gate columns and the status ``refused`` (refused rows are removed)."""
    op.execute("DELETE FROM images WHERE status = 'refused'")
    with op.batch_alter_table("images") as batch:
        batch.drop_column("gate_threshold")
        batch.drop_column("gate_score")
        batch.drop_column("gate_reasons")
        batch.drop_constraint(op.f("ck_images_failure_reason"), type_="check")
        batch.drop_constraint(op.f("ck_images_status"), type_="check")
        batch.create_check_constraint("status", "status IN ('ok', 'failed')")
        batch.create_check_constraint(
            "failure_reason",
            "(status = 'ok' AND failure_reason IS NULL) OR (status = 'failed' AND failure_reason IS NOT NULL)",
        )
