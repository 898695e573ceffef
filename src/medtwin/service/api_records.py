"""Live ingest of doses and measurements (JSON, FHIR, stream CSV), reading them back, and the live events.

Ingest semantics (every ingest endpoint):

1. the user's role and the patient's consent are checked for writing (audited);
2. the rows are validated (422 names ``records[i].field``) and stored in one transaction that is committed
   before the response: an acknowledged reading is durable.  A row whose ``source_id`` is stored already is a
   re-send: nothing is stored again and the stored row is returned (``created: false``); status 201 when
   anything was new, else 200;
3. the patient's twin (if any) takes every record it has not seen, in one ``Twin.assimilate`` call
   (:meth:`medtwin.service.livetwin.LiveTwins.catch_up`): late and out-of-order readings are sorted into place,
   re-sent ones dropped.  A twin that fails on the data is reported in ``twin_error``; the records stay stored;
4. events go to the patient's subscribers: ``measurement`` (the new rows), ``state`` (the twin's summary) and
   one ``alarm`` per new alarm.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from fastapi import APIRouter, Body, Depends, Query, Request, Response
from pydantic import BaseModel, Field

from medtwin.errors import MedtwinError
from medtwin.service.access import authorize, patient_or_404, services
from medtwin.service.api_patients import PATIENT_ID
from medtwin.service.auth import User, current_user, require_role

__all__ = ["router", "ingest"]

router = APIRouter(tags=["records"])
_WRITERS = ("clinician", "pharmacist")


class MeasurementIn(BaseModel):
    """One reading, in the stream-file columns."""

    source_id: str = Field(min_length=1, max_length=200, description="the sender's id of the reading (idempotency)")
    time_h: float = Field(ge=-1e6, le=1e6, description="sampling time, h on the patient's clock")
    name: str = Field(min_length=1, max_length=64, description="model output, e.g. G (glucose) or C (concentration)")
    value: float = Field(allow_inf_nan=False)
    unit: str = Field(min_length=1, max_length=32, description="unit as measured, e.g. mmol/L, mg/dL, mg/L")
    device: str = Field("lab", min_length=1, max_length=64)
    under_advice: bool = False


class DoseIn(BaseModel):
    """One dose: a bolus (amount) or an infusion (rate per hour for duration_h)."""

    source_id: str = Field(min_length=1, max_length=200)
    time_h: float = Field(ge=-1e6, le=1e6, description="start, h on the patient's clock")
    kind: Literal["bolus", "infusion"]
    name: str = Field(min_length=1, max_length=64, description="dose target: CMT number, state name or route")
    value: float = Field(allow_inf_nan=False, description="bolus: amount; infusion: rate per hour")
    unit: str = Field(min_length=1, max_length=32, description="e.g. mg, U, g/h, U/h")
    duration_h: float | None = Field(None, gt=0, le=1e4, description="infusion only")
    device: str = Field("emr", min_length=1, max_length=64)
    under_advice: bool = False


class StoredRecord(BaseModel):
    id: int
    source_id: str
    kind: str
    name: str
    time_h: float
    value: float
    unit: str
    duration_h: float | None = None
    device: str
    received_at: str
    created: bool | None = Field(None, description="false: a re-send of a stored reading (not stored again)")


class IngestResult(BaseModel):
    created: int
    duplicates: int
    records: list[StoredRecord]
    twin: dict[str, Any] | None = Field(None, description="the twin's summary after assimilating (if any)")
    twin_error: str | None = None


def _stored(row: dict, created: bool | None = None) -> StoredRecord:
    return StoredRecord(**{k: row[k] for k in StoredRecord.model_fields if k in row}, created=created)


def ingest(request: Request, user: User, pid: str, rows: list[dict], data_classes) -> tuple[IngestResult, bool]:
    """Authorize, store (committed), update the twin, publish; (result, anything created)."""
    gate = authorize(request, user, pid, data_classes, "write")
    svc = services(request)
    stored = svc.records.add(pid, rows, user.username)
    created = [row for row, new in stored if new]
    update, twin_error = None, None
    if created:
        try:
            update = svc.twins.catch_up(pid, gate)
        except MedtwinError as exc:  # the records are stored; the twin's failure is a status, not a refusal
            twin_error = f"{type(exc).__name__}: {exc}"
    broker = request.app.state.broker
    if created:
        broker.publish({"type": "measurement", "patient": pid,
                        "data": {"records": [_stored(r).model_dump() for r in created]}})
    if update is not None:
        broker.publish({"type": "state", "patient": pid, "data": update.summary})
        for alarm in update.new_alarms:
            broker.publish({"type": "alarm", "patient": pid, "data": {"kind": alarm.kind, "time_h": alarm.time,
                                                                      "message": alarm.message}})
    result = IngestResult(created=len(created), duplicates=len(stored) - len(created),
                          records=[_stored(r, new) for r, new in stored],
                          twin=None if update is None else update.summary, twin_error=twin_error)
    return result, bool(created)


def _respond(response: Response, result: tuple[IngestResult, bool]) -> IngestResult:
    response.status_code = 201 if result[1] else 200
    return result[0]


@router.post("/patients/{patient_id}/measurements", response_model=IngestResult, status_code=201,
             responses={200: {"model": IngestResult, "description": "only re-sent readings"}},
             summary="Ingest measurements (one or a batch; late, out of order or re-sent)")
def post_measurements(request: Request, response: Response,
                      body: MeasurementIn | list[MeasurementIn] = Body(...), patient_id: str = PATIENT_ID,
                      user: User = Depends(require_role(*_WRITERS))):
    """Store the readings (idempotent by ``source_id``), committed before the answer; update the twin."""
    items = body if isinstance(body, list) else [body]
    rows = [{"kind": "obs", **m.model_dump()} for m in items]
    return _respond(response, ingest(request, user, patient_id, rows, ["observations"]))


@router.post("/patients/{patient_id}/doses", response_model=IngestResult, status_code=201,
             responses={200: {"model": IngestResult}}, summary="Ingest doses (one or a batch)")
def post_doses(request: Request, response: Response, body: DoseIn | list[DoseIn] = Body(...),
               patient_id: str = PATIENT_ID, user: User = Depends(require_role(*_WRITERS))):
    """Store the doses (idempotent by ``source_id``); the twin takes them as new inputs."""
    items = body if isinstance(body, list) else [body]
    return _respond(response, ingest(request, user, patient_id, [d.model_dump() for d in items], ["medications"]))


@router.post("/patients/{patient_id}/observations", response_model=IngestResult, status_code=201,
             responses={200: {"model": IngestResult}},
             summary="Ingest FHIR Observations (one, or a Bundle of them)")
def post_observations(request: Request, response: Response, patient_id: str = PATIENT_ID,
                      body: dict[str, Any] = Body(...), user: User = Depends(require_role(*_WRITERS))):
    """FHIR Observation(s) -> measurements (see :mod:`medtwin.service.fhir_records`)."""
    from medtwin.service.fhir_records import bundle_resources, observation_row

    origin = patient_or_404(request, patient_id)["origin"]
    rows = [observation_row(r, origin, where) for r, where in bundle_resources(body, "Observation")]
    return _respond(response, ingest(request, user, patient_id, rows, ["observations"]))


@router.post("/patients/{patient_id}/medication-administrations", response_model=IngestResult, status_code=201,
             responses={200: {"model": IngestResult}},
             summary="Ingest FHIR MedicationAdministrations (one, or a Bundle)")
def post_administrations(request: Request, response: Response, patient_id: str = PATIENT_ID,
                         body: dict[str, Any] = Body(...), user: User = Depends(require_role(*_WRITERS))):
    """FHIR MedicationAdministration(s) -> doses."""
    from medtwin.service.fhir_records import administration_row, bundle_resources

    origin = patient_or_404(request, patient_id)["origin"]
    rows = [administration_row(r, origin, where) for r, where in bundle_resources(body, "MedicationAdministration")]
    return _respond(response, ingest(request, user, patient_id, rows, ["medications"]))


@router.post("/patients/{patient_id}/stream", response_model=IngestResult, status_code=201,
             responses={200: {"model": IngestResult}},
             openapi_extra={"requestBody": {"required": True, "content": {"text/csv": {"schema": {"type": "string"}}}}},
             summary="Ingest a measurement-stream CSV (docs: medtwin.io.stream_file)")
async def post_stream(request: Request, response: Response, patient_id: str = PATIENT_ID,
                      user: User = Depends(require_role(*_WRITERS))):
    """Rows ``time_h,kind,name,value,unit[,duration_h,device,source_id,under_advice]``; every row needs a
    ``source_id`` (idempotency).  422 names the row and column."""
    from starlette.concurrency import run_in_threadpool

    text = (await request.body()).decode("utf-8-sig", errors="replace")
    rows = _csv_rows(text)
    return _respond(response, await run_in_threadpool(ingest, request, user, patient_id, rows,
                                                      ["observations", "medications"]))


def _csv_rows(text: str) -> list[dict]:
    import csv
    import io

    from medtwin.errors import DataError
    from medtwin.io.textfile import parse_number

    reader = csv.DictReader(io.StringIO(text))
    missing = {"time_h", "kind", "name", "value", "unit", "source_id"} - set(reader.fieldnames or ())
    if missing:
        raise DataError(f"header: missing column(s) {', '.join(sorted(missing))}")
    rows = []
    for n, r in enumerate(reader, start=1):
        row: dict = {"kind": r["kind"].strip(), "name": r["name"].strip(), "unit": r["unit"].strip(),
                     "source_id": r["source_id"].strip(), "device": (r.get("device") or "lab").strip() or "lab",
                     "under_advice": (r.get("under_advice") or "0").strip().lower() in ("1", "true", "yes")}
        for col in ("time_h", "value", "duration_h"):
            cell = (r.get(col) or "").strip()
            if col == "duration_h" and not cell:
                continue
            try:
                row[col] = float(parse_number(cell))
            except (ValueError, TypeError, DataError):
                raise DataError(f"row {n}: {col}: {cell!r} is not a number") from None
        rows.append(row)
    return rows


@router.get("/patients/{patient_id}/measurements", response_model=list[StoredRecord] | dict[str, Any],
            summary="The patient's measurements (JSON rows, or format=fhir: a Bundle of Observations)")
def get_measurements(request: Request, patient_id: str = PATIENT_ID, format: Literal["json", "fhir"] = "json",
                     user: User = Depends(current_user)):
    """Measurements in time order, when the user's purpose may read the patient's observations."""
    from medtwin.service.fhir_records import observation_resource

    authorize(request, user, patient_id, ["observations"], "read")
    rows = services(request).records.list(patient_id, kind="obs")
    if format == "fhir":
        origin = patient_or_404(request, patient_id)["origin"]
        return {"resourceType": "Bundle", "type": "searchset", "total": len(rows),
                "entry": [{"resource": observation_resource(r, origin)} for r in rows]}
    return [_stored(r) for r in rows]


@router.get("/patients/{patient_id}/doses", response_model=list[StoredRecord] | dict[str, Any],
            summary="The patient's doses (JSON rows, or format=fhir: MedicationAdministrations)")
def get_doses(request: Request, patient_id: str = PATIENT_ID, format: Literal["json", "fhir"] = "json",
              user: User = Depends(current_user)):
    """Doses in time order, when the user's purpose may read the patient's medications."""
    from medtwin.service.fhir_records import administration_resource

    authorize(request, user, patient_id, ["medications"], "read")
    rows = services(request).records.list(patient_id, kind="dose")
    if format == "fhir":
        origin = patient_or_404(request, patient_id)["origin"]
        return {"resourceType": "Bundle", "type": "searchset", "total": len(rows),
                "entry": [{"resource": administration_resource(r, origin)} for r in rows]}
    return [_stored(r) for r in rows]


@router.get("/patients/{patient_id}/events", summary="Server-sent events: new records, twin state, alarms",
            response_class=Response, responses={200: {"content": {"text/event-stream": {}}}})
async def events(request: Request, patient_id: str = PATIENT_ID, user: User = Depends(current_user),
                 limit: int | None = Query(None, ge=1, le=10000, description="close after this many events")):
    """An SSE stream (``event: measurement | state | alarm``, ``data:`` JSON) for the patient; the first event
    is the twin's current ``state`` when it has one."""
    from sse_starlette.sse import EventSourceResponse
    from starlette.concurrency import run_in_threadpool

    gate = await run_in_threadpool(authorize, request, user, patient_id, ["observations"], "read")
    broker = request.app.state.broker
    first = await run_in_threadpool(services(request).twins.catch_up, patient_id, gate)

    async def stream():
        sent = 0
        async with broker.subscribe(patient_id) as queue:
            if first is not None:
                yield {"event": "state", "data": json.dumps(first.summary)}
                sent += 1
            while limit is None or sent < limit:
                event = await queue.get()
                yield {"event": event["type"], "data": json.dumps(event["data"], default=str)}
                sent += 1

    return EventSourceResponse(stream(), ping=15)
