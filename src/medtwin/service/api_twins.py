"""Twins (create, state, forecast with bands), recommendations and the clinician's decisions.

Population-based work (personalize, forecast, recommend) goes through :func:`medtwin.workflows.run` with the
acting user as operator: every result is a recorded, signed run (``run_id``) that ``POST /runs/{id}/reproduce``
re-executes.  A decision (accept / modify / override, a reason required to modify or override) is a
:class:`medtwin.workflows.DecideRequest` recorded in the decision store with the user as clinician.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Literal

import numpy as np
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from medtwin.errors import DataError
from medtwin.service.access import authorize, services
from medtwin.service.api_patients import PATIENT_ID
from medtwin.service.auth import User, current_user, require_role

__all__ = ["router"]

router = APIRouter(tags=["twins"])
_CARE = ("clinician", "pharmacist")


class TwinIn(BaseModel):
    """A new twin: ``live`` (a shipped twin ``name`` such as icu_glucose, or a ``spec`` mapping) or
    ``posterior`` (personalized on the patient's records for a shipped ``population`` with ``covariates``)."""

    kind: Literal["live", "posterior"] = "live"
    name: str | None = Field(None, max_length=64, examples=["icu_glucose"])
    spec: dict[str, Any] | None = None
    population: str | None = Field(None, max_length=64, examples=["vancomycin_goti2018"])
    covariates: dict[str, float] = Field(default_factory=dict, examples=[{"WT": 75.0, "CRCL": 80.0, "DIAL": 0.0}])
    method: Literal["laplace", "nuts"] = "laplace"


class TwinOut(BaseModel):
    patient: str
    name: str
    version: int
    updated_at: str
    spec: dict[str, Any]
    summary: dict[str, Any]


class ForecastOut(BaseModel):
    """Predictive bands: per output, the 5 / 50 / 95 % quantiles at ``times_h`` (output unit)."""

    times_h: list[float]
    outputs: dict[str, dict[str, Any]]
    run_id: str | None = Field(None, description="the recorded forecast run (population twins)")


class RecommendIn(BaseModel):
    target: Literal["auc24", "trough", "peak"] = "auc24"
    low: float = Field(400.0, ge=0, le=1e6)
    high: float = Field(600.0, ge=0, le=1e6)
    objective: Literal["window", "pta", "median"] = "pta"
    toxic_auc: float | None = Field(600.0, ge=0, le=1e6)
    epsilon: float = Field(0.1, ge=0, le=1)
    n_draws: int = Field(500, ge=10, le=4000)


class DecisionIn(BaseModel):
    recommendation: str = Field(min_length=1, max_length=80, description="the recommendation's run id")
    choice: Literal["accept", "modify", "override"]
    reason: str = Field("", max_length=2000, description="required to modify or override")
    dose_mg: float | None = Field(None, gt=0, le=1e5)
    interval_h: float | None = Field(None, gt=0, le=168)


def _plain(value):
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def _twin_out(pid: str, row: dict, summary: dict) -> TwinOut:
    return TwinOut(patient=pid, name=row["name"], version=row["version"], updated_at=row["updated_at"],
                   spec=row["spec"], summary=_plain(summary))


def _twin_or_404(request, pid, gate):
    twin, row = services(request).twins.get(pid, gate)
    if twin is None:
        raise HTTPException(404, detail={"field": "patient_id", "message": f"patient {pid!r} has no twin yet "
                                         "(POST /patients/{id}/twin)"})
    return twin, row


@router.post("/patients/{patient_id}/twin", response_model=TwinOut, status_code=201,
             summary="Create (or replace) the patient's twin")
def create_twin(request: Request, body: TwinIn, patient_id: str = PATIENT_ID,
                user: User = Depends(require_role(*_CARE))):
    """Build the twin on every stored record of the patient (a posterior twin: a recorded personalize run)."""
    gate = authorize(request, user, patient_id, ["observations", "medications"], "read")
    update = services(request).twins.create(patient_id, body.model_dump(), access=gate,
                                            stores=request.app.state.stores, actor=user.username)
    row = services(request).twins.row(patient_id)
    request.app.state.broker.publish({"type": "state", "patient": patient_id, "data": _plain(update.summary)})
    return _twin_out(patient_id, row, update.summary)


@router.get("/patients/{patient_id}/twin", response_model=TwinOut, summary="The twin's current state")
def get_twin(request: Request, patient_id: str = PATIENT_ID, user: User = Depends(current_user)):
    """States and parameters with 90 % bands, output bands now, alarms (live twin); posterior summary."""
    gate = authorize(request, user, patient_id, ["observations", "medications"], "read")
    twin, row = _twin_or_404(request, patient_id, gate)
    from medtwin.service.livetwin import twin_summary

    return _twin_out(patient_id, row, twin_summary(twin))


def _band_out(band, outputs) -> dict:
    out = {}
    for name in outputs:
        try:
            q = band.quantiles(name, residual=name in getattr(band, "observed", {}), q=(0.05, 0.5, 0.95))
        except (KeyError, DataError):
            continue
        out[name] = {"p05": np.asarray(q[0]).tolist(), "p50": np.asarray(q[1]).tolist(),
                     "p95": np.asarray(q[2]).tolist()}
    return out


@router.get("/patients/{patient_id}/twin/forecast", response_model=ForecastOut,
            summary="Forecast with 90 % predictive bands")
def forecast(request: Request, patient_id: str = PATIENT_ID, user: User = Depends(current_user),
             horizon_h: float = Query(6.0, gt=0, le=168), step_h: float = Query(0.25, gt=0.01, le=24),
             n_draws: int = Query(200, ge=10, le=2000)):
    """Live twin: draws from the belief propagated with process noise (``Twin.forecast``); posterior twin: a
    recorded forecast run (:class:`medtwin.workflows.ForecastRequest`) on the patient's records."""
    if horizon_h / step_h > 2000:
        raise HTTPException(422, detail={"field": "step_h", "message": "at most 2000 steps per forecast"})
    gate = authorize(request, user, patient_id, ["observations", "medications"], "read")
    twin, row = _twin_or_404(request, patient_id, gate)
    if twin.belief is not None:
        band = twin.forecast(None, horizon=horizon_h, step=step_h, n_draws=n_draws, seed=0)
        outputs = {name: twin.model.output(name).unit for name in twin.errors}
        bands = _band_out(band, outputs)
        for name, unit in outputs.items():
            if name in bands:
                bands[name]["unit"] = unit
        return ForecastOut(times_h=np.asarray(band.times).tolist(), outputs=bands)
    from medtwin import workflows

    data, population = _patient_data(request, patient_id, row, gate)
    result, record = workflows.run(workflows.ForecastRequest.continued(
        population, data, horizon_h, step=step_h, n_draws=n_draws, purpose=gate.purpose), request.app.state.stores,
        actor=user.username)
    output = population.residual.output
    bands = _band_out(result.band, [output])
    bands.setdefault(output, {})["unit"] = twin.model.output(output).unit
    return ForecastOut(times_h=np.asarray(result.band.times).tolist(), outputs=bands, run_id=record.run_id)


def _patient_data(request, pid, row, gate):
    """(PatientData, Population) of a posterior twin: the patient's records and the twin's covariates."""
    from medtwin.core.data import PatientData
    from medtwin.io.population_file import load_population, shipped_population_path
    from medtwin.models import get_model
    from medtwin.service.livetwin import records_stream

    spec = row["spec"]
    population = load_population(shipped_population_path(spec["population"]))
    stream = records_stream(services(request).records.list(pid), get_model(population.model), gate, pid)
    output = population.residual.output
    levels = sorted((m for m in stream.measurements if m.output == output), key=lambda m: m.time)
    if not levels:
        raise DataError(f"records: patient {pid!r} has no {output} level")
    dose_times = stream.regimen.jump_times() if len(stream.regimen) else np.array([])
    data = PatientData(stream.regimen, [m.time for m in levels], [m.value for m in levels], spec["covariates"],
                       output, pre_dose=[bool(np.any(np.abs(dose_times - m.time) < 1e-9)) for m in levels],
                       patient=pid)
    return data, population


@router.post("/patients/{patient_id}/recommendations", response_model=dict[str, Any], status_code=201,
             summary="Recommend a dose and interval (population twins): a recorded run")
def recommend(request: Request, body: RecommendIn, patient_id: str = PATIENT_ID,
              user: User = Depends(require_role(*_CARE))):
    """:class:`medtwin.workflows.RecommendRequest` on the patient's records (decision support); returns the
    recommendation (action, probabilities, constraints, explanation) and its id (the run id) to decide on."""
    from medtwin import workflows
    from medtwin.control.decisions import recommendation_content

    if body.low >= body.high:
        raise HTTPException(422, detail={"field": "high", "message": "high must exceed low"})
    gate = authorize(request, user, patient_id, ["observations", "medications"], "read")
    twin, row = _twin_or_404(request, patient_id, gate)
    if row["spec"].get("kind") != "posterior":
        raise HTTPException(422, detail={"field": "twin", "message": "dose recommendations need a population "
                                         "(posterior) twin; the live ICU twin forecasts and alarms"})
    data, population = _patient_data(request, patient_id, row, gate)
    result, record = workflows.run(workflows.RecommendRequest(
        population, data, target={"kind": body.target, "low": body.low, "high": body.high},
        objective=body.objective, toxic_auc=body.toxic_auc, epsilon=body.epsilon, n_draws=body.n_draws,
        purpose=gate.purpose), request.app.state.stores, actor=user.username)
    content = _plain(recommendation_content(result.recommendation))
    out = {"id": record.run_id, "patient": patient_id, "recommendation": content}
    request.app.state.broker.publish({"type": "recommendation", "patient": patient_id, "data": out})
    return out


@router.post("/patients/{patient_id}/decisions", response_model=dict[str, Any], status_code=201,
             summary="Accept, modify or override a recommendation (a reason is required to modify or override)")
def decide(request: Request, body: DecisionIn, patient_id: str = PATIENT_ID,
           user: User = Depends(require_role(*_CARE))):
    """The clinician's decision, recorded with the recommendation and signed provenance (user = clinician)."""
    from medtwin import workflows

    if body.choice != "accept" and not body.reason.strip():
        raise HTTPException(422, detail={"field": "reason", "message": f"a reason is required to {body.choice} "
                                         "a recommendation"})
    authorize(request, user, patient_id, ["observations", "medications"], "read")
    stored = _recommendation_run(request, body.recommendation, patient_id)
    decision, record = workflows.run(workflows.DecideRequest(
        body.recommendation, body.choice, user.username, reason=body.reason, dose_mg=body.dose_mg,
        interval_h=body.interval_h, purpose=stored.spec.purpose, open_data=stored.spec.open_data),
        request.app.state.stores, actor=user.username)
    out = {"id": record.run_id, "patient": patient_id, "decision": _plain(decision)}
    request.app.state.broker.publish({"type": "decision", "patient": patient_id, "data": out})
    return out


def _recommendation_run(request, run_id: str, pid: str):
    from medtwin.governance.runs import RunIntegrityError

    try:
        stored = request.app.state.stores.runs.get(run_id)
    except (DataError, RunIntegrityError, KeyError):
        stored = None
    if stored is None or stored.spec.operation != "recommend" or pid not in list(stored.spec.patients or []):
        raise HTTPException(404, detail={"field": "recommendation", "message": f"no recommendation {run_id!r} "
                                         f"for patient {pid!r}"})
    return stored


@router.get("/patients/{patient_id}/decisions", response_model=list[dict[str, Any]],
            summary="The patient's decisions on recommendations")
def list_decisions(request: Request, patient_id: str = PATIENT_ID, user: User = Depends(current_user)):
    """Every recorded decision (choice, reason, clinician, what was proposed and what was given)."""
    gate = authorize(request, user, patient_id, ["observations", "medications"], "read")
    rows = request.app.state.stores.decisions.for_patient(patient_id, access=gate)
    return [{"id": d.record.run_id, "decision": _plain(d.decision), "recommendation": _plain(d.recommendation),
             "created_at": d.created_at} for d in rows]
