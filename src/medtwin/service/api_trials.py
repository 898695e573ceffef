"""In-silico trials as background jobs: ``POST /trials`` (a job row, run in a worker thread), ``GET /jobs/{id}``.

The job mechanism is generic (:class:`medtwin.service.jobs.JobRunner`: a callable taking a progress callback).
A trial job runs :class:`medtwin.trials.workflow.TrialRequest` through :func:`medtwin.workflows.run` (a signed,
recorded run, as ``medtwin trial`` does) and stores :func:`medtwin.trials.summary.summarise_trial` as its result
(the dashboard draws its strata as a forest plot).  A spec the trial engine refuses is a 422 naming the field.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Path, Request
from pydantic import BaseModel, Field

from medtwin.service.auth import User, require_role

__all__ = ["router", "run_trial", "run_trial_job"]

router = APIRouter(tags=["trials"])


class TrialIn(BaseModel):
    """A trial specification (the trial engine's format), passed through as given."""

    spec: dict[str, Any] = Field(..., description="the trial specification")


class Job(BaseModel):
    id: str
    kind: str
    status: str
    done: int
    total: int | None = None
    result_run_id: str | None = None
    result: dict[str, Any] | None = None
    error: str | None = None
    owner: str
    created_at: str
    updated_at: str


def run_trial_job(spec, progress, stores, actor: str) -> dict:
    """Run the trial *spec* (a TrialSpec) as a recorded run; the job's result: run id + the trial's summary."""
    from medtwin import workflows
    from medtwin.trials.summary import summarise_trial
    from medtwin.trials.workflow import TrialRequest

    result, record = workflows.run(TrialRequest(spec), stores, actor=actor, progress=progress)
    return {"run_id": record.run_id, **summarise_trial(spec, result).as_dict()}


def run_trial(app, spec: dict, actor: str):
    """The job callable for the trial spec *spec* (checked now: a bad spec is a 422 naming the field)."""
    from medtwin.errors import MedtwinError
    from medtwin.trials.spec import TrialSpec

    try:
        trial = TrialSpec.from_dict(spec)
    except MedtwinError as exc:
        raise HTTPException(422, detail={"field": "spec", "message": str(exc)}) from None
    stores = app.state.stores
    return lambda progress: run_trial_job(trial, progress, stores, actor)


@router.post("/trials", response_model=Job, status_code=202, summary="Submit an in-silico trial (a background job)",
             responses={422: {"description": "the trial engine refuses the spec (the field is named)"}})
def submit_trial(request: Request, body: TrialIn, user: User = Depends(require_role("researcher", "admin"))):
    """Store a job and run the trial in a worker thread; poll ``GET /jobs/{id}`` for progress."""
    work = run_trial(request.app, body.spec, user.username)
    job_id = request.app.state.jobs.submit("trial", body.spec, user.username, work)
    return Job(**request.app.state.jobs.get(job_id))


@router.get("/jobs/{job_id}", response_model=Job, summary="A job's status and progress")
def get_job(request: Request, job_id: str = Path(..., min_length=1, max_length=36, pattern=r"^[0-9a-f-]+$"),
            user: User = Depends(require_role("researcher", "admin", "clinician", "pharmacist", "auditor"))):
    """Status (queued, running, done, failed), progress done/total, result run id or error."""
    job = request.app.state.jobs.get(job_id)
    if job is None or (user.role not in ("admin", "auditor") and job["owner"] != user.username):
        raise HTTPException(404, detail={"field": "job_id", "message": f"no job {job_id!r}"})
    return Job(**job)
