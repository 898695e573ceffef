"""The tables of the web service (``medtwin serve``): users, patients, clinical records, stored twins, jobs.

Schema description only, matching Alembic revision ``0006_service`` (the migration, not
``metadata.create_all``, creates them).  The records table is the durable copy of every dose and measurement
received by the service: ``source_id`` is UNIQUE, so a re-sent reading is recognised and never stored twice
(idempotent ingest); ``time_h`` is the event time on the patient's clock (h), ``received_at`` when the service
committed it (ISO 8601 UTC).

==================  =====================================================================================
table               holds
==================  =====================================================================================
``users``           login name, display name, role (clinician | pharmacist | researcher | auditor | admin),
                    argon2 password hash, active flag
``patients``        id, display name, ward/bed, the FHIR Patient resource (JSON)
``clinical_records`` doses and measurements in the stream-file columns (:mod:`medtwin.io.stream_file`)
``stored_twins``    one live twin per patient: its specification and its state
                    (:func:`medtwin.twin.codec.twin_to_dict` JSON), version counter
``jobs``            background work (trials): kind, status, progress done/total, result run id, error
==================  =====================================================================================

Examples
--------
>>> sorted(t for t in service_metadata.tables)
['clinical_records', 'jobs', 'patients', 'stored_twins', 'users']
"""

from __future__ import annotations

import sqlalchemy as sa

__all__ = ["ROLES", "JOB_STATUSES", "service_metadata", "users_table", "patients_table", "records_table",
           "twins_table", "jobs_table"]

#: The roles a user can have.
ROLES = ("clinician", "pharmacist", "researcher", "auditor", "admin")
#: The states of a job, in order.
JOB_STATUSES = ("queued", "running", "done", "failed")

service_metadata = sa.MetaData()

users_table = sa.Table(
    "users",
    service_metadata,
    sa.Column("username", sa.String(64), primary_key=True),
    sa.Column("display_name", sa.Text, nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("password_hash", sa.Text, nullable=False),
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("created_at", sa.String(40), nullable=False),
)

patients_table = sa.Table(
    "patients",
    service_metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("display_name", sa.Text, nullable=False),
    sa.Column("ward", sa.Text, nullable=True),
    sa.Column("bed", sa.Text, nullable=True),
    sa.Column("origin", sa.String(40), nullable=False),
    sa.Column("resource", sa.Text, nullable=False),
    sa.Column("created_at", sa.String(40), nullable=False),
    sa.Column("created_by", sa.Text, nullable=False),
)

records_table = sa.Table(
    "clinical_records",
    service_metadata,
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
    sa.Index("ix_clinical_records_patient_time", "patient", "time_h"),
)

twins_table = sa.Table(
    "stored_twins",
    service_metadata,
    sa.Column("patient", sa.String(64), primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("spec", sa.Text, nullable=False),
    sa.Column("state", sa.Text, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("last_record", sa.Integer, nullable=False),
    sa.Column("updated_at", sa.String(40), nullable=False),
)

jobs_table = sa.Table(
    "jobs",
    service_metadata,
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
