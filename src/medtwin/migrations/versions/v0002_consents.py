"""Create the table of stored FHIR Consents (dynamic consent).

Revision ID: 0002_consents
Revises: 0001_audit_log
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_consents"
down_revision = "0001_audit_log"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create ``consents`` and its patient index."""
    op.create_table(
        "consents",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("patient", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("date", sa.Text, nullable=True),
        sa.Column("resource", sa.Text, nullable=False),
        sa.Column("added_at", sa.Text, nullable=False),
    )
    op.create_index("ix_consents_patient", "consents", ["patient"])


def downgrade() -> None:
    """Drop ``consents``."""
    op.drop_index("ix_consents_patient", table_name="consents")
    op.drop_table("consents")
