"""Patients (FHIR Patient in and out) and their consents (FHIR Consent in and out, withdrawal)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Body, Depends, HTTPException, Path, Query, Request
from pydantic import BaseModel, Field

from medtwin.service.access import authorize, patient_or_404, purpose_for, services
from medtwin.service.auth import User, current_user, require_role

__all__ = ["router", "PATIENT_ID"]

router = APIRouter(tags=["patients"])

#: The patient id path parameter (FHIR id characters only).
PATIENT_ID = Path(..., min_length=1, max_length=64, pattern=r"^[A-Za-z0-9\-.]+$", description="FHIR Patient id")

_PATIENT_EXAMPLE = {"resourceType": "Patient", "id": "icu-1", "name": [{"text": "Ann Example"}],
                    "gender": "female", "birthDate": "1960-04-01"}


class PatientListItem(BaseModel):
    id: str
    display_name: str
    ward: str | None = None
    bed: str | None = None
    origin: str = Field(description="ISO 8601 instant of the patient's time 0 h")


class Withdrawal(BaseModel):
    purpose: Literal["treatment", "decision-support", "research", "model-training", "third-party-sharing"]


@router.get("/patients", response_model=list[PatientListItem], summary="Patients the user may see")
def list_patients(request: Request, user: User = Depends(current_user),
                  limit: int = Query(200, ge=1, le=1000), offset: int = Query(0, ge=0, le=10**6)):
    """The ward list: patients whose demographics the user's purpose may read (consent checked, audited);
    admins see every patient (they register them)."""
    rows = services(request).patients.list(limit=limit, offset=offset)
    if user.role != "admin" and rows:
        purpose = purpose_for(user.role)
        decisions = request.app.state.stores.consents.check_many([r["id"] for r in rows], user.username, purpose,
                                                                 ["demographics"], operation="read")
        allowed = {d.patient for d in decisions if d.permit}
        rows = [r for r in rows if r["id"] in allowed]
    return [PatientListItem(**r) for r in rows]


@router.post("/patients", status_code=201, response_model=dict[str, Any],
             summary="Register a patient (FHIR Patient)")
def create_patient(request: Request, resource: dict[str, Any] = Body(..., examples=[_PATIENT_EXAMPLE]),
                   ward: str | None = Query(None, max_length=100), bed: str | None = Query(None, max_length=40),
                   origin: str | None = Query(None, max_length=40, description="ISO 8601 instant of time 0 h "
                                              "(default: now)"),
                   user: User = Depends(require_role("clinician", "admin"))):
    """Validate and store a FHIR Patient (``id`` required); returns it as stored.  422 names the field."""
    if resource.get("resourceType") != "Patient":
        raise HTTPException(422, detail={"field": "resourceType", "message": "must be 'Patient'"})
    row = services(request).patients.create(resource, user.username, ward=ward, bed=bed, origin=origin)
    request.app.state.stores.log.append(user.username, "patient.create", {"ward": ward, "bed": bed},
                                        patient=row["id"])
    return row["resource"]


@router.get("/patients/{patient_id}", response_model=dict[str, Any], summary="A patient (FHIR Patient)")
def get_patient(request: Request, patient_id: str = PATIENT_ID, user: User = Depends(current_user)):
    """The FHIR Patient, when the user's purpose may read the patient's demographics."""
    if user.role == "admin":
        return patient_or_404(request, patient_id)["resource"]
    authorize(request, user, patient_id, ["demographics"], "read")
    return patient_or_404(request, patient_id)["resource"]


@router.get("/patients/{patient_id}/consents", response_model=list[dict[str, Any]],
            summary="The patient's consents (FHIR Consent)")
def list_consents(request: Request, patient_id: str = PATIENT_ID,
                  user: User = Depends(require_role("clinician", "admin", "auditor"))):
    """Every stored consent of the patient, in the order added (integrity-checked against the audit log)."""
    from medtwin.governance.consent import to_fhir

    patient_or_404(request, patient_id)
    return [to_fhir(p) for p in request.app.state.stores.consents.for_patient(patient_id)]


@router.post("/patients/{patient_id}/consents", status_code=201, response_model=dict[str, Any],
             summary="Record a consent (FHIR Consent)")
def add_consent(request: Request, patient_id: str = PATIENT_ID, resource: dict[str, Any] = Body(...),
                user: User = Depends(require_role("clinician", "admin"))):
    """Validate and store a FHIR Consent whose subject is this patient (audited, the user as actor)."""
    from medtwin.governance.consent import to_fhir

    patient_or_404(request, patient_id)
    if resource.get("resourceType") != "Consent":
        raise HTTPException(422, detail={"field": "resourceType", "message": "must be 'Consent'"})
    subject = (resource.get("subject") or {}).get("reference") if isinstance(resource.get("subject"), dict) else None
    if subject not in (f"Patient/{patient_id}", patient_id):
        raise HTTPException(422, detail={"field": "subject.reference", "message": f"must be Patient/{patient_id}"})
    policy = request.app.state.stores.consents.add(resource, user.username)
    return to_fhir(policy)


@router.post("/patients/{patient_id}/consents/withdraw", status_code=201, response_model=dict[str, Any],
             summary="Withdraw consent to a purpose (from now on)")
def withdraw_consent(request: Request, body: Withdrawal, patient_id: str = PATIENT_ID,
                     user: User = Depends(require_role("clinician", "admin"))):
    """Store a deny for the purpose superseding the patient's consent; returns the new FHIR Consent."""
    from medtwin.governance.consent import to_fhir

    patient_or_404(request, patient_id)
    return to_fhir(request.app.state.stores.consents.withdraw(patient_id, body.purpose, user.username))
