"""Create the table of recorded runs (specification, signed provenance, output digest).

Revision ID: 0003_runs
Revises: 0002_consents
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_runs"
down_revision = "0002_consents"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create ``runs``."""
    op.create_table(
        "runs",
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("operation", sa.Text, nullable=False),
        sa.Column("operator", sa.Text, nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("spec", sa.Text, nullable=False),
        sa.Column("provenance", sa.Text, nullable=False),
        sa.Column("output_digest", sa.String(80), nullable=False),
    )


def downgrade() -> None:
    """Drop ``runs``."""
    op.drop_table("runs")
