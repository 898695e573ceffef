"""In-silico trials as background jobs: ``POST /trials`` (a job row, run in a worker thread), ``GET /jobs/{id}``.

The job mechanism is generic (:class:`medtwin.service.jobs.JobRunner`: a callable taking a progress callback).
The trial engine itself is not part of this service yet: :func:`run_trial` answers 501 ("trials not
installed") until it is wired to the trial runner.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Path, Request
from pydantic import BaseModel, Field

from medtwin.service.auth import User, require_role

__all__ = ["router", "run_trial", "trial_runner"]

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


def trial_runner():
    """The trial engine's entry point ``run(spec, progress, stores, actor) -> {"run_id": ...}``, or None while
    no trial engine is installed."""
    try:
        from medtwin.workflows import trials  # noqa: F401 - wired when the trial engine lands
    except ImportError:
        return None
    return getattr(trials, "run_trial_job", None)


def run_trial(app, spec: dict, actor: str):
    """The job callable for *spec*; 501 "trials not installed" while there is no trial engine."""
    runner = trial_runner()
    if runner is None:
        raise HTTPException(501, detail={"field": "spec", "message": "trials not installed: this medtwin has no "
                                         "trial engine yet"})
    stores = app.state.stores
    return lambda progress: runner(spec, progress, stores, actor)


@router.post("/trials", response_model=Job, status_code=202, summary="Submit an in-silico trial (a background job)",
             responses={501: {"description": "no trial engine installed"}})
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
