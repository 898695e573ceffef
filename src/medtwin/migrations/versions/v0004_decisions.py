"""Create the table of clinicians' decisions on recommendations (decision, recommendation, signed provenance).

Revision ID: 0004_decisions
Revises: 0003_runs
Create Date: 2026-12-08
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_decisions"
down_revision = "0003_runs"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create ``decisions`` and its patient index."""
    op.create_table(
        "decisions",
        sa.Column("decision_id", sa.String(64), primary_key=True),
        sa.Column("patient", sa.Text, nullable=False),
        sa.Column("recommendation_id", sa.String(80), nullable=False),
        sa.Column("choice", sa.String(16), nullable=False),
        sa.Column("clinician", sa.Text, nullable=False),
        sa.Column("operator", sa.Text, nullable=False),
        sa.Column("time_h", sa.Float(precision=53), nullable=False),
        sa.Column("decided_at", sa.String(40), nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("decision", sa.Text, nullable=False),
        sa.Column("recommendation", sa.Text, nullable=False),
        sa.Column("provenance", sa.Text, nullable=False),
    )
    op.create_index("ix_decisions_patient", "decisions", ["patient"])


def downgrade() -> None:
    """Drop ``decisions``."""
    op.drop_index("ix_decisions_patient", table_name="decisions")
    op.drop_table("decisions")
