"""Runs, provenance and reproduction; the audit trail and its verification (auditor/admin)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from pydantic import BaseModel

from medtwin.errors import DataError
from medtwin.service.access import authorize
from medtwin.service.auth import User, require_role

__all__ = ["router"]

router = APIRouter(tags=["governance"])
RUN_ID = Path(..., min_length=1, max_length=80, pattern=r"^[A-Za-z0-9:._-]+$")


class AuditVerify(BaseModel):
    ok: bool
    n_entries: int
    first_bad_seq: int | None = None
    reason: str = ""


def _stored(request, run_id: str):
    try:
        return request.app.state.stores.runs.get(run_id)
    except DataError:
        raise HTTPException(404, detail={"field": "run_id", "message": f"no run {run_id!r}"}) from None


def _check_patients(request, user, stored) -> None:
    """A run about patients is shown only to a user whose purpose may read their data (consent, audited)."""
    for pid in list(stored.spec.patients or []):
        if user.role in ("auditor", "admin"):
            continue
        if request.app.state.services.patients.get(pid) is None:
            continue  # a run on a dataset outside the service: the run store's own gate applies when re-run
        authorize(request, user, pid, ["observations", "medications"], "read")


@router.get("/runs", response_model=list[dict[str, Any]], summary="Recorded runs (newest first)")
def list_runs(request: Request, limit: int = Query(50, ge=1, le=500),
              user: User = Depends(require_role("clinician", "pharmacist", "auditor", "admin"))):
    """Run id, operation, operator, time and whether its signature and spec check out."""
    rows = request.app.state.stores.runs.list_checked(request.app.state.stores.public_keys(), limit=limit)
    return [{k: v for k, v in (r._asdict() if hasattr(r, "_asdict") else vars(r)).items()} for r in rows]


@router.get("/runs/{run_id}", response_model=dict[str, Any], summary="A run's spec and signed provenance")
def get_run(request: Request, run_id: str = RUN_ID,
            user: User = Depends(require_role("clinician", "pharmacist", "auditor", "admin"))):
    """The stored spec (what was run) and the signed provenance record (W3C PROV content, signature)."""
    stored = _stored(request, run_id)
    _check_patients(request, user, stored)
    record = stored.record
    return {"run_id": run_id, "created_at": stored.created_at, "spec": stored.spec.as_dict(),
            "provenance": record.to_dict() if hasattr(record, "to_dict") else str(record)}


@router.post("/runs/{run_id}/reproduce", response_model=dict[str, Any], summary="Re-execute a run; compare digests")
def reproduce(request: Request, run_id: str = RUN_ID,
              user: User = Depends(require_role("clinician", "pharmacist", "auditor", "admin"))):
    """Verify the stored run, re-execute it (the user as actor, the run's own purpose) and compare outputs."""
    from medtwin import workflows

    stored = _stored(request, run_id)
    _check_patients(request, user, stored)
    report = workflows.reproduce_run(request.app.state.stores, run_id, actor=user.username)
    return {"run_id": report.run_id, "identical": report.identical, "recorded_digest": report.recorded_digest,
            "reproduced_digest": report.reproduced_digest, "differing_outputs": list(report.differing_outputs),
            "signature_ok": report.signature_ok, "inputs_ok": report.inputs_ok, "summary": report.summary()}


@router.get("/audit/verify", response_model=AuditVerify, summary="Verify the audit chain (auditor, admin)")
def audit_verify(request: Request, user: User = Depends(require_role("auditor", "admin"))):
    """Every entry's link, hash and signature, and the signed head checkpoint."""
    stores = request.app.state.stores
    report = stores.log.verify(stores.public_keys(), workers=1)
    stores.log.append(user.username, "audit.verify", {"ok": bool(report.ok), "n_entries": report.n_entries})
    return AuditVerify(ok=bool(report.ok), n_entries=report.n_entries, first_bad_seq=report.first_bad_seq,
                       reason=report.reason)


@router.get("/audit/entries", response_model=list[dict[str, Any]], summary="Audit entries (auditor, admin)")
def audit_entries(request: Request, patient: str | None = Query(None, max_length=64),
                  action: str | None = Query(None, max_length=64), limit: int = Query(100, ge=1, le=5000),
                  user: User = Depends(require_role("auditor", "admin"))):
    """The most recent entries (optionally of one patient and/or one action), newest last."""
    entries = [e for e in request.app.state.stores.log.entries(patient=patient)
               if action is None or e.action == action][-limit:]
    return [{"seq": e.seq, "time": e.time, "actor": e.actor, "action": e.action, "patient": e.patient,
             "payload": e.payload} for e in entries]
