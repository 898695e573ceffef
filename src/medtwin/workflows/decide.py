"""A clinician's decision on a recorded recommendation: accept, modify or override, with a reason.

The recommendation is the one a ``recommend`` run recorded (its content is
kept in the run's signed ``run.record`` audit entry and checked against the
run's signed output digest).  A *modified* action must still respect the
recommendation's hard constraints (:meth:`~medtwin.control.dosing.DoseConstraints.violations`);
an *override* is the clinician's own plan.  The decision is built by
:func:`medtwin.control.decisions.decide` and stored by
:class:`~medtwin.governance.decision_store.DecisionStore` (signed provenance and
a ``decision.record`` audit entry, one transaction).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping

from medtwin.errors import DataError
from medtwin.governance import runs as _runs
from medtwin.workflows.requests import DecideRequest
from medtwin.workflows.results import recommendation_from_content
from medtwin.workflows.stores import Stores, data_access

__all__ = ["decide_and_record", "given_action"]


def _positive(option: str, value) -> float:
    number = float(value)
    if not math.isfinite(number) or number <= 0.0:
        raise DataError(f"{option} must be a positive number, got {value!r}")
    return number


def given_action(request: DecideRequest, proposed: Mapping, constraints) -> dict:
    """The action given: the proposal with ``dose_mg``/``interval_h`` (or ``given``) changed; infusion time and
    daily amount follow the constraints' rules; a modification must respect every hard constraint.

    Raises
    ------
    DataError
        A non-positive dose or interval; a modification breaking a constraint (each one named).
    """
    if request.choice == "accept":
        return dict(proposed)
    given = dict(proposed)
    given.update(dict(request.given or {}))
    if request.dose_mg is not None:
        given["dose_mg"] = _positive("--dose", request.dose_mg)
    if request.interval_h is not None:
        given["interval_h"] = _positive("--interval", request.interval_h)
    if "dose_mg" in given and "interval_h" in given and (request.dose_mg is not None or request.interval_h is not None):
        given["infusion_h"] = constraints.infusion_h(given["dose_mg"])
        given["daily_mg"] = given["dose_mg"] * 24.0 / given["interval_h"]
    if request.choice == "modify":
        broken = constraints.violations(given)
        if broken:
            raise DataError("the modified action breaks the recommendation's hard constraints: "
                            + "; ".join(broken) + " (override it, with a reason, to give it anyway)")
    return given


def decide_and_record(request: DecideRequest, stores: Stores, *, actor: str, env=None):
    """Decide on the recorded recommendation ``request.recommendation`` and store the decision.

    Returns
    -------
    (Decision, ProvenanceRecord)
        The decision as stored (timestamped) and its signed record (``run_id`` = decision id).
    """
    from dataclasses import replace

    from medtwin.control.decisions import decide
    from medtwin.control.dosing import DoseConstraints

    stored, recommendation = stored_recommendation(stores, request.recommendation)
    spec = stored.spec
    c = dict(spec.inputs["constraints"])
    c["intervals_h"] = tuple(c["intervals_h"])
    given = given_action(request, recommendation.action, DoseConstraints(**c))
    times = [t for t in spec.inputs["patient"]["times"] if t is not None]
    time = request.time if request.time is not None else max(times)
    patient = spec.patients[0]
    decision = decide(recommendation, request.choice, given=None if request.choice == "accept" else given,
                      reason=request.reason, patient=patient, clinician=request.clinician, time=time,
                      subgroup=dict(request.subgroup))
    purpose, open_data = request.purpose, request.open_data
    if purpose is None and open_data is None:
        purpose, open_data = spec.purpose, spec.open_data
    access = data_access(stores, actor, purpose, open_data)
    model = _runs.spec_model(spec, request.model)
    record = stores.decisions.record(decision, recommendation, actor, access=access, model=model, env=env)
    return replace(decision, timestamp=decision.timestamp or record.time), record


def stored_recommendation(stores: Stores, run_id: str):
    """(stored run, Recommendation) of a recorded ``recommend`` run, checked against its signed digest.

    Raises
    ------
    DataError
        No such run, or a run that is not a recommendation.
    RunIntegrityError
        The run, or the recommendation kept in its audit entry, fails its integrity check.
    """
    from medtwin.governance.canonical import digest

    try:
        stored = stores.runs.verified(run_id, stores.public_keys())
    except DataError as exc:
        if str(exc).startswith(f"no run {run_id!r}"):
            raise DataError(f"no recommendation {run_id!r} in this database (`medtwin runs` lists the recorded "
                            "runs; `medtwin recommend` records one)") from None
        raise
    if stored.spec.operation != "recommend":
        raise DataError(f"run {run_id} is a {stored.spec.operation} run, not a recommendation")
    content = None
    spec = stored.spec  # the run.record entry names the patient when the run holds one consented patient's data
    single = spec.patients[0] if len(spec.patients) == 1 and spec.open_data is None else None
    for entry in stores.log.entries(patient=single):
        if entry.action == "run.record":
            payload = entry.payload
            if payload.get("run_id") == run_id and "recommendation" in payload:
                content = json.loads(payload["recommendation"])
                break
    if content is None or digest(content, root="outputs.recommendation") != \
            stored.record.output_digests.get("recommendation"):
        raise _runs.RunIntegrityError(f"run {run_id}: the recorded recommendation is missing or differs from "
                                      "the signed one")
    return stored, recommendation_from_content(content)
