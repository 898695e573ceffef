"""Create the web service's tables: users, patients, clinical records (UNIQUE source id), stored twins, jobs.

Mirrors :mod:`medtwin.io.service_tables`.

Revision ID: 0006_service
Revises: 0005_audit_patient_action
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_service"
down_revision = "0005_audit_patient_action"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create ``users``, ``patients``, ``clinical_records``, ``stored_twins`` and ``jobs``."""
    op.create_table(
        "users",
        sa.Column("username", sa.String(64), primary_key=True),
        sa.Column("display_name", sa.Text, nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("password_hash", sa.Text, nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
    )
    op.create_table(
        "patients",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("display_name", sa.Text, nullable=False),
        sa.Column("ward", sa.Text, nullable=True),
        sa.Column("bed", sa.Text, nullable=True),
        sa.Column("origin", sa.String(40), nullable=False),
        sa.Column("resource", sa.Text, nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("created_by", sa.Text, nullable=False),
    )
    op.create_table(
        "clinical_records",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("source_id", sa.String(200), nullable=False, unique=True),
        sa.Column("patient", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("time_h", sa.Float(precision=53), nullable=False),
        sa.Column("value", sa.Float(precision=53), nullable=False),
        sa.Column("unit", sa.String(32), nullable=False),
        sa.Column("duration_h", sa.Float(precision=53), nullable=True),
        sa.Column("device", sa.String(64), nullable=False),
        sa.Column("under_advice", sa.Boolean, nullable=False),
        sa.Column("received_at", sa.String(40), nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("resource", sa.Text, nullable=True),
    )
    op.create_table(
        "stored_twins",
        sa.Column("patient", sa.String(64), primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("spec", sa.Text, nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("last_record", sa.Integer, nullable=False),
        sa.Column("updated_at", sa.String(40), nullable=False),
    )
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("done", sa.Integer, nullable=False),
        sa.Column("total", sa.Integer, nullable=True),
        sa.Column("spec", sa.Text, nullable=False),
        sa.Column("result_run_id", sa.String(64), nullable=True),
        sa.Column("result", sa.Text, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("owner", sa.Text, nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("updated_at", sa.String(40), nullable=False),
    )
    op.create_index("ix_clinical_records_patient_time", "clinical_records", ["patient", "time_h"])


def downgrade() -> None:
    """Drop the service's tables."""
    op.drop_index("ix_clinical_records_patient_time", table_name="clinical_records")
    for table in ("jobs", "stored_twins", "clinical_records", "patients", "users"):
        op.drop_table(table)
