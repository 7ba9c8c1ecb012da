"""The harmonised label space: a finding row may name any finding of cxreader's label space.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06

A checkpoint's labels are any ordered subset of the harmonised label space (the 14 CheXNet findings, then Lung
Opacity, Lung Lesion, Enlarged Cardiomediastinum, Fracture and Support Devices; ``cxreader.labels``), so the
``findings.finding`` check admits all of them. The names are spelled out here: a migration is frozen in time.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
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
_EXTRA_FINDINGS = (
    "Lung_Opacity",
    "Lung_Lesion",
    "Enlarged_Cardiomediastinum",
    "Fracture",
    "Support_Devices",
)


def _names(findings: Sequence[str]) -> str:
    return ", ".join(f"'{name}'" for name in findings)


def upgrade() -> None:
    """Admit every finding of the harmonised label space in ``findings.finding``."""
    with op.batch_alter_table("findings") as batch:
        batch.drop_constraint(op.f("ck_findings_finding"), type_="check")
        batch.create_check_constraint("finding", f"finding IN ({_names(_FINDINGS + _EXTRA_FINDINGS)})")


def downgrade() -> None:
    """Admit the 14 CheXNet findings only again (the rows of the other findings are removed)."""
    op.execute(f"DELETE FROM findings WHERE finding IN ({_names(_EXTRA_FINDINGS)})")
    with op.batch_alter_table("findings") as batch:
        batch.drop_constraint(op.f("ck_findings_finding"), type_="check")
        batch.create_check_constraint("finding", f"finding IN ({_names(_FINDINGS)})")
