"""The service's rows: patients (FHIR Patient) and clinical records (doses and measurements, idempotent).

Every query uses SQLAlchemy Core with bound parameters (no SQL is built from text).  A record is committed
before :meth:`RecordStore.add` returns (acknowledged = durable); a record whose ``source_id`` is already stored
is not stored again: the stored row is returned with ``created=False`` (a re-sent reading).

Times: ``time_h`` is hours on the patient's clock, whose zero is the patient's ``origin`` (ISO 8601 UTC,
default: when the patient was created); FHIR resources carry absolute ``effectiveDateTime`` values, converted
with :func:`hours_since` / :func:`instant_at`.

Examples
--------
>>> import os, tempfile
>>> from medtwin.io.storage import make_engine, upgrade
>>> engine = make_engine("sqlite:///" + os.path.join(tempfile.mkdtemp(), "s.db")); upgrade(engine)
>>> patients, records = PatientStore(engine), RecordStore(engine)
>>> _ = patients.create({"resourceType": "Patient", "id": "p1", "name": [{"text": "Ann Example"}]}, "dr")
>>> row = {"kind": "obs", "name": "G", "time_h": 0.5, "value": 6.1, "unit": "mmol/L", "source_id": "bg-1"}
>>> [created for _, created in records.add("p1", [row, row], "dr")]
[True, False]
>>> len(records.list("p1"))
1
>>> engine.dispose()
"""

from __future__ import annotations

import contextlib
import json
import math
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa

from medtwin.errors import DataError
from medtwin.io.service_tables import patients_table, records_table

__all__ = ["PatientStore", "RecordStore", "hours_since", "instant_at", "now_iso", "RECORD_KINDS",
           "write_transaction"]

#: Kinds of clinical records (the stream file's ``kind``).
RECORD_KINDS = ("obs", "bolus", "infusion")


@contextlib.contextmanager
def write_transaction(engine):
    """A connection in a write transaction; on SQLite ``BEGIN IMMEDIATE`` (the write lock at once), so a
    read-then-write transaction waits for another writer instead of failing with "database is locked"."""
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            conn = conn.execution_options(sqlite_begin="IMMEDIATE")
        with conn.begin():
            yield conn


def now_iso() -> str:
    """Now, ISO 8601 UTC with milliseconds."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _parse(instant: str | datetime, field: str) -> datetime:
    if isinstance(instant, datetime):
        t = instant
    else:
        try:
            t = datetime.fromisoformat(str(instant).replace("Z", "+00:00"))
        except ValueError:
            raise DataError(f"{field}: {instant!r} is not an ISO 8601 date-time") from None
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def hours_since(origin: str, instant: str | datetime, field: str = "effectiveDateTime") -> float:
    """Hours from *origin* to *instant* (both ISO 8601; naive = UTC).

    >>> hours_since("2026-01-01T00:00:00Z", "2026-01-01T01:30:00+00:00")
    1.5
    """
    return (_parse(instant, field) - _parse(origin, "origin")).total_seconds() / 3600.0


def instant_at(origin: str, time_h: float) -> str:
    """The ISO 8601 instant *time_h* hours after *origin*.

    >>> instant_at("2026-01-01T00:00:00Z", 1.5)
    '2026-01-01T01:30:00+00:00'
    """
    return (_parse(origin, "origin") + timedelta(hours=float(time_h))).isoformat()


def _display_name(resource: dict) -> str:
    for name in resource.get("name") or []:
        if name.get("text"):
            return str(name["text"])
        parts = [*(name.get("given") or []), name.get("family") or ""]
        if any(parts):
            return " ".join(p for p in parts if p)
    return str(resource.get("id"))


class PatientStore:
    """The ``patients`` table: FHIR Patient resources with a display name, ward, bed and clock origin."""

    def __init__(self, engine):
        self.engine = engine

    def create(self, resource: dict, actor: str, *, ward: str | None = None, bed: str | None = None,
               origin: str | None = None) -> dict:
        """Validate *resource* (FHIR Patient, with an ``id``) and store it; DataError naming the field."""
        from fhir.resources.patient import Patient
        from pydantic import ValidationError

        try:
            patient = Patient.model_validate(resource)
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = ".".join(str(p) for p in first.get("loc", ())) or "resource"
            raise DataError(f"{loc}: {first.get('msg')} (FHIR Patient)") from None
        pid = patient.id
        if not pid or len(pid) > 64:
            raise DataError("id: a Patient needs an id of 1-64 characters (FHIR id: letters, digits, '-', '.')")
        origin = now_iso() if origin is None else _parse(origin, "origin").isoformat()
        doc = patient.model_dump(mode="json", exclude_none=True)
        row = {"id": pid, "display_name": _display_name(doc), "ward": ward, "bed": bed, "origin": origin,
               "resource": json.dumps(doc), "created_at": now_iso(), "created_by": actor}
        try:
            with self.engine.begin() as conn:
                conn.execute(patients_table.insert().values(**row))
        except sa.exc.IntegrityError:
            raise DataError(f"id: patient {pid!r} already exists") from None
        return self._out(row)

    @staticmethod
    def _out(row) -> dict:
        row = dict(row)
        row["resource"] = json.loads(row["resource"])
        return row

    def get(self, pid: str) -> dict | None:
        """The patient row (resource parsed) or None."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(patients_table).where(patients_table.c.id == pid)).mappings().first()
        return None if row is None else self._out(row)

    def list(self, *, limit: int = 500, offset: int = 0) -> list[dict]:
        """Patients by id."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(patients_table).order_by(patients_table.c.id).limit(limit)
                                .offset(offset)).mappings().all()
        return [self._out(r) for r in rows]


def _check_row(row: dict, i: int) -> dict:
    """A record row with its fields checked; DataError naming ``records[i].field``."""
    where = f"records[{i}]"
    kind = row.get("kind")
    if kind not in RECORD_KINDS:
        raise DataError(f"{where}.kind: must be one of {', '.join(RECORD_KINDS)}, not {kind!r}")
    out = {"kind": kind}
    for name in ("time_h", "value"):
        v = row.get(name)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise DataError(f"{where}.{name}: a finite number is required, not {v!r}")
        out[name] = float(v)
    if abs(out["time_h"]) > 1e6:
        raise DataError(f"{where}.time_h: {out['time_h']:g} h is out of range (|t| <= 1e6 h)")
    for name, limit in (("name", 64), ("unit", 32), ("source_id", 200), ("device", 64)):
        v = row.get(name, "lab" if name == "device" else None)
        if not isinstance(v, str) or not v.strip() or len(v) > limit:
            raise DataError(f"{where}.{name}: a non-empty text of at most {limit} characters is required")
        out[name] = v
    duration = row.get("duration_h")
    if kind == "infusion":
        if isinstance(duration, bool) or not isinstance(duration, (int, float)) or not (
                math.isfinite(duration) and duration > 0):
            raise DataError(f"{where}.duration_h: an infusion needs a duration > 0 h")
        out["duration_h"] = float(duration)
    else:
        out["duration_h"] = None
    out["under_advice"] = bool(row.get("under_advice", False))
    out["resource"] = json.dumps(row["resource"]) if row.get("resource") is not None else None
    return out


class RecordStore:
    """The ``clinical_records`` table: doses and measurements, idempotent by ``source_id``."""

    def __init__(self, engine):
        self.engine = engine

    def add(self, patient: str, rows: list[dict], actor: str) -> list[tuple[dict, bool]]:
        """Store *rows* of *patient* (one transaction, committed on return); ``(row, created)`` for each.

        A row whose ``source_id`` is stored already (for this patient) is returned as stored with
        ``created=False``; the same ``source_id`` stored for another patient is refused (DataError).
        """
        checked = [_check_row(r, i) for i, r in enumerate(rows)]
        ids = [r["source_id"] for r in checked]
        if len(set(ids)) != len(ids):  # one batch re-sending a reading: keep the first
            seen: dict = {}
            checked = [seen.setdefault(r["source_id"], r) for r in checked]
        received = now_iso()
        out: list[tuple[dict, bool]] = []
        with write_transaction(self.engine) as conn:
            existing = {r["source_id"]: dict(r) for r in conn.execute(
                sa.select(records_table).where(records_table.c.source_id.in_(sorted(set(ids))))).mappings()}
            for sid, row in existing.items():
                if row["patient"] != patient:
                    raise DataError(f"source_id: {sid!r} is already stored for another patient")
            new_rows = []
            for r in checked:
                if r["source_id"] in existing:
                    out.append((existing[r["source_id"]], False))
                else:
                    stored = {**r, "patient": patient, "received_at": received, "actor": actor}
                    existing[r["source_id"]] = stored
                    new_rows.append(stored)
                    out.append((stored, True))
            if new_rows:
                conn.execute(records_table.insert(), new_rows)
                ids_by_source = dict(conn.execute(
                    sa.select(records_table.c.source_id, records_table.c.id)
                    .where(records_table.c.source_id.in_([r["source_id"] for r in new_rows]))).all())
                for r in new_rows:
                    r["id"] = ids_by_source[r["source_id"]]
        return out

    def list(self, patient: str, *, kind: str | None = None, after_id: int = 0, limit: int | None = None) -> list[dict]:
        """The patient's records (time order; *kind*: obs | dose | one kind; only ids > *after_id*)."""
        q = sa.select(records_table).where(records_table.c.patient == patient, records_table.c.id > after_id)
        if kind == "dose":
            q = q.where(records_table.c.kind.in_(("bolus", "infusion")))
        elif kind is not None:
            q = q.where(records_table.c.kind == kind)
        q = q.order_by(records_table.c.time_h, records_table.c.id)
        if limit is not None:
            q = q.limit(limit)
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(q).mappings()]

    def count(self, patient: str | None = None) -> int:
        """How many records (of *patient*)."""
        q = sa.select(sa.func.count()).select_from(records_table)
        if patient is not None:
            q = q.where(records_table.c.patient == patient)
        with self.engine.connect() as conn:
            return conn.execute(q).scalar_one()
