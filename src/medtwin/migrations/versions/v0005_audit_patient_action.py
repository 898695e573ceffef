"""Index the audit log by (patient, action): the consent checks read a patient's consent entries at every decision.

Revision ID: 0005_audit_patient_action
Revises: 0004_decisions
Create Date: 2026-12-04
"""

from alembic import op

revision = "0005_audit_patient_action"
down_revision = "0004_decisions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create ``ix_audit_log_patient_action``."""
    op.create_index("ix_audit_log_patient_action", "audit_log", ["patient", "action"])


def downgrade() -> None:
    """Drop ``ix_audit_log_patient_action``."""
    op.drop_index("ix_audit_log_patient_action", table_name="audit_log")
