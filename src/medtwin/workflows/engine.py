"""Execute a request, record it (signed provenance + audit entry, one transaction), reproduce it.

:func:`run` is the one way an operation is executed and recorded, for the
command line, the coming service and :func:`reproduce` alike: it executes
the request (:func:`execute`), signs the provenance of the result, and stores
it with the request's spec and a ``run.record`` audit entry in one
transaction (:meth:`~medtwin.governance.runs.RunStore.save`).  A decision is
recorded in the decision store (``decision.record``) the same way.
:func:`reproduce` checks a stored run, rebuilds its request from the stored
spec and executes it with the same :func:`execute`, then compares digests.

Examples
--------
>>> import os, tempfile
>>> import numpy as np
>>> from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
>>> from medtwin.core.events import Regimen
>>> from medtwin.io.storage import make_engine
>>> from medtwin.workflows import SimulateRequest, Stores
>>> engine = make_engine("sqlite:///" + os.path.join(tempfile.mkdtemp(), "w.db"))
>>> stores = Stores.for_engine(engine, Ed25519PrivateKey.generate())
>>> request = SimulateRequest("pk1_iv", {"CL": [2.0, 3.0], "V": [20.0, 25.0]}, Regimen.single(100.0),
...                           np.linspace(0.0, 24.0, 5), open_data="synthetic virtual patients")
>>> trajectory, record = run(request, stores, actor="alice")
>>> report = reproduce_run(stores, record.run_id, actor="alice")
>>> report.identical, report.signature_ok, report.inputs_ok
(True, True, True)
>>> engine.dispose()
"""

from __future__ import annotations

import importlib
import io
import json
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from medtwin.errors import DataError
from medtwin.governance import runs as _runs
from medtwin.governance.provenance import environment
from medtwin.workflows import requests as rq
from medtwin.workflows.results import Forecast, Recommended, Replayed, recommendation_from_content
from medtwin.workflows.stores import Stores, data_access, default_actor

__all__ = ["execute", "reproduce", "reproduce_run", "run", "run_and_record"]

Progress = Callable[[int, int], None]


#: The Laplace engine of the personalize, forecast and recommend operations: NumPy for a linear model (no JAX
#: to import or trace in a one-shot process), JAX otherwise; fixed here, so ``reproduce`` runs the same arithmetic.
LAPLACE_ENGINE = "auto"


def _personalize(request: rq.PersonalizeRequest, progress: Progress | None):
    personalize_module = importlib.import_module("medtwin.infer.personalize")  # looked up at call time

    if progress is not None:
        progress(0, 1)
    if getattr(request, "candidates", ()):  # several candidate priors (medtwin.workflows.averaging)
        posterior = request.personalize_averaged(engine=LAPLACE_ENGINE)
    else:
        posterior = personalize_module.personalize(request.population, request.data, model=request.model,
                                                   engine=LAPLACE_ENGINE, **request.options())
    if progress is not None:
        progress(1, 1)
    return posterior


def _forecast(request: rq.ForecastRequest, progress) -> Forecast:
    from medtwin.infer.exposure import exposure

    posterior = _personalize(request, progress)
    band = posterior.predict(request.regimen, np.asarray(request.times, dtype=float), n_draws=request.n_draws,
                             seed=request.seed)
    output = posterior.prior.residual.output
    summary = exposure(band, output, end=request.end, window_h=request.window_h, auc_target=request.auc_target,
                       trough_range=request.trough_range)
    return Forecast(posterior, band, summary)


def _target(target: Mapping):
    from medtwin.control.targets import AUC24Window, PeakWindow, TroughWindow

    kinds = {"auc24": AUC24Window, "trough": TroughWindow, "peak": PeakWindow}
    return kinds[target["kind"]](float(target["low"]), float(target["high"]))


def _recommend(request: rq.RecommendRequest, progress) -> Recommended:
    from medtwin.control import dosing
    from medtwin.control.targets import AUC24Window, Threshold

    posterior = _personalize(request, progress)
    toxic = Threshold(AUC24Window(), above=request.toxic_auc) if request.toxic_auc else None
    recommendation = dosing.recommend_dose(posterior, _target(request.target), constraints=request.constraints,
                                           objective=request.objective, toxic=toxic,
                                           max_toxic_probability=request.epsilon, history=request.data.regimen,
                                           n_draws=request.n_draws, seed=request.seed)
    return Recommended(posterior, recommendation)


def _one_shot(twin_spec) -> dict:
    """The twin spec a replay runs: a UKF advances its sigma points in NumPy unless the spec says otherwise.

    A replay is one pass over a recorded stream in a process of its own, where importing JAX and tracing its
    programs (≈ 1 s) costs more than the NumPy transition's slower steps (≈ 0.7 ms more per reading);
    the choice depends on the request alone, so ``reproduce`` runs the same arithmetic.
    """
    spec = dict(twin_spec)
    observer = dict(spec.get("observer") or {"kind": "ukf"})
    if observer.get("kind", "ukf") == "ukf":
        observer.setdefault("transition", "numpy")
    spec["observer"] = observer
    return spec


def _replay(request: rq.ReplayRequest, access, progress) -> Replayed:
    from medtwin.assimilate.replay import clock_check, replay_stream
    from medtwin.twin.codec import twin_from_spec
    from medtwin.io.stream_file import read_stream

    model = request.model
    try:
        data = read_stream(io.StringIO(request.stream), model=model, access=access, patient=request.patient)
    except DataError as exc:
        if request.source is None:
            raise
        raise DataError(f"{request.source}: {exc}") from exc
    start = twin_from_spec(_one_shot(request.twin_spec), inputs=data.regimen, patient=data.patient, model=model)
    measurements = list(data.measurements)
    trace = replay_stream(start, measurements, progress)
    raised, clocks, verdict = list(trace.raised), (), None
    if request.check_clocks and measurements:
        check = clock_check(start, measurements)
        clocks, verdict = check.rows, check.verdict
        if check.alarm is not None:
            raised.append(check.alarm)
    rejected = tuple(data.rejected) + tuple(data.duplicates) + tuple(trace.twin.rejected)
    return Replayed(trace.twin, start, model, trace.rows, tuple(raised), clocks, verdict, rejected,
                    len(measurements), data.patient)


def execute(request, *, access, progress: Progress | None = None, model=None, requests: Mapping | None = None):
    """Compute what *request* asks (a request of :mod:`medtwin.workflows.requests`, or a stored RunSpec).

    A RunSpec is first turned into its request (:func:`~medtwin.workflows.requests.request_from_spec`, which
    reads its patient data through *access*, and resolves a user-defined model from *model*: a Model, a
    mapping name -> Model or a sequence of Models, digest verified).  ``progress(done, total)`` is called as
    the work advances.

    Returns a Trajectory (simulate), FOCEIResult (fit), Posterior (personalize), :class:`Forecast`,
    :class:`Recommended` or :class:`Replayed`; for a stored forecast *spec*, the PredictiveBand its record
    digests (a :class:`Forecast` digests as its band).

    ``requests``: operation -> request class of a layer above this one (e.g. ``{"trial": TrialRequest}``),
    passed by the caller: a stored spec of that operation becomes ``cls.from_spec(spec, access=access)``, and
    any request with its own ``execute(access=..., progress=...)`` runs that.
    """
    if isinstance(request, _runs.RunSpec) and request.operation in (requests or {}):
        request = requests[request.operation].from_spec(request, access=access)
    if isinstance(request, _runs.RunSpec):
        result = _execute(rq.request_from_spec(request, access=access, model=model), access, progress)
        return result.band if isinstance(result, Forecast) else result  # what a forecast run records
    return _execute(request, access, progress)


def _execute(request, access, progress):
    if callable(getattr(request, "execute", None)):  # a request of a higher layer (e.g. medtwin.trials)
        return request.execute(access=access, progress=progress)
    from medtwin.workflows.credibility import CredibilityRequest, execute_credibility

    if isinstance(request, CredibilityRequest):
        return execute_credibility(request, access, progress)
    from medtwin.workflows import imaging as _imaging

    if isinstance(request, _imaging.MRERequest):
        return _imaging.execute_mre(request, progress, access=access)
    if isinstance(request, rq.ForecastRequest):
        return _forecast(request, progress)
    if isinstance(request, rq.RecommendRequest):
        return _recommend(request, progress)
    if isinstance(request, rq.PersonalizeRequest):
        return _personalize(request, progress)
    if isinstance(request, rq.ReplayRequest):
        return _replay(request, access, progress)
    if isinstance(request, rq.FitRequest):
        from medtwin.infer.foce import fit_focei

        if progress is not None:
            progress(0, 1)
        fit = fit_focei(request.population, request.dataset, request.model, covariance=request.covariance)
        if progress is not None:
            progress(1, 1)
        return fit
    if isinstance(request, rq.SimulateDatasetRequest):
        from medtwin.io.dataset_simulation import simulate_dataset

        settings = {k: v for k, v in request.settings.items() if k != "records"}
        params = request.params
        return simulate_dataset(request.model, request.dataset, params,
                                records=request.settings.get("records", "observations"), progress=progress,
                                **settings)
    if isinstance(request, rq.SimulateRequest):
        from medtwin.core.simulate import simulate

        settings = {k: v for k, v in request.settings.items() if k != "records"}
        extra = {} if progress is None else {"progress": progress}
        return simulate(request.model, request.params, request.regimen, request.times,
                        ids=request.ids, **settings, **extra)
    raise DataError(f"execute: not a request: {type(request).__name__}")


def _note(request, result) -> dict:
    """Extra payload of the run.record audit entry: what a later step needs from it."""
    if isinstance(result, Recommended):
        from medtwin.control.decisions import recommendation_content

        # as text: the audit log stores payloads with sorted keys, and a recommendation's summary (hence its id)
        # follows the order of its action's fields
        return {"recommendation": json.dumps(recommendation_content(result.recommendation), allow_nan=False)}
    if isinstance(result, Replayed):
        return {"n_measurements": result.n_measurements}
    return {}


def run(request, stores: Stores, *, actor: str | None = None, progress: Progress | None = None,
        before_record: Callable[[Any, Any], None] | None = None, env: Mapping | None = None):
    """Execute *request*, sign its provenance, store it and append its audit entry (one transaction).

    Parameters
    ----------
    request : a request of :mod:`medtwin.workflows.requests`
    stores : Stores
    actor : str, optional
        Who runs it (default: the login name); the consent gate asks for this actor.
    progress : callable, optional
        ``progress(done, total)``.
    before_record : callable, optional
        ``before_record(result, access)`` after executing and before recording (e.g. write outputs aside):
        when it raises, nothing is recorded.
    env : mapping, optional
        :func:`~medtwin.governance.provenance.environment` (read from this process when omitted).

    Returns
    -------
    (result, ProvenanceRecord)
        The result (see :func:`execute`; a Decision for a DecideRequest) and its signed record.

    Raises
    ------
    ConsentError
        The data may not be read or the run not written for this actor and purpose (nothing recorded).
    DataError, ModelError
        Bad inputs.
    """
    actor = actor or default_actor()
    if isinstance(request, rq.DecideRequest):
        from medtwin.workflows.decide import decide_and_record

        return decide_and_record(request, stores, actor=actor, env=env)
    access = data_access(stores, actor, request.purpose, request.open_data)
    result = execute(request, access=access, progress=progress)
    spec = request.spec(patients=[result.patient] if result.patient else []) if isinstance(
        result, Replayed) else request.spec()
    if before_record is not None:
        before_record(result, access)
    record = stores.runs.save(spec, result, actor, access=access, env=env, note=_note(request, result),
                              model=request.model)
    return result, record


def run_and_record(store, spec: _runs.RunSpec, operator: str, *, access, env: Mapping | None = None,
                   model=None):
    """Execute a RunSpec (:func:`execute`) and store it (:meth:`RunStore.save`): (result, signed record).

    ``model``: the user-defined model(s) the spec names (see :func:`execute`)."""
    resolved = _runs.spec_model(spec, model)
    result = execute(spec, access=access, model=resolved)
    return result, store.save(spec, result, operator, access=access, env=env, model=resolved)


def reproduce(store, run_id: str, *, access, public_keys, env: Mapping | None = None, model=None,
              requests: Mapping | None = None):
    """Re-execute a stored run with :func:`execute` and compare its output digest with the recorded one.

    The stored run is checked first (:meth:`~medtwin.governance.runs.RunStore.verified`): a record whose
    signature does not verify with *public_keys*, or a spec that is not the signed one, raises
    :class:`~medtwin.governance.runs.RunIntegrityError` and nothing is executed, so an edited spec (say,
    patient data relabelled ``open_data``) never reaches the consent gate with a forged purpose.

    A run made on a user-defined model (its spec holds the model's reference: name, digest, description)
    needs that model as ``model=`` (a Model, a mapping name -> Model or a sequence of Models); its digest
    must be the recorded one.  The model is resolved after the integrity check and before anything is read
    or executed.

    Returns
    -------
    ReproduceReport

    Raises
    ------
    RunIntegrityError
        The stored run fails its integrity check.
    DataError
        The stored row is malformed, or there is no such run.
    ModelError
        The run's model is neither a library model nor given as ``model=`` (the message names it).
    ModelDigestError
        The given model's definition is not the one the run was made with (also a DataError).
    """
    stored = store.verified(run_id, list(public_keys))  # before anything is executed
    resolved = _user_model(stored, model)
    env = environment() if env is None else env
    extra = {} if model is None else {"model": resolved}  # a library run executes exactly as it always did
    if requests:
        extra["requests"] = requests  # request classes of higher layers (see execute)
    result = execute(stored.spec, access=access, **extra)
    return _runs.reproduce_report(stored, result, env=env, model=resolved)


def _user_model(stored, model):
    """The model of a verified stored run; a refusal names the run and its model."""
    from medtwin.errors import ModelDigestError, ModelError

    try:
        return _runs.spec_model(stored.spec, model)
    except ModelDigestError as exc:
        raise ModelDigestError(f"run {stored.run_id}: {exc}") from None
    except ModelError as exc:
        raise ModelError(f"run {stored.run_id}: {exc}") from None


def reproduce_run(stores: Stores, run_id: str, *, actor: str | None = None, env: Mapping | None = None,
                  model=None, requests: Mapping | None = None):
    """:func:`reproduce` with this installation's key, reading the stored data for the run's own purpose
    (``model``: the user-defined model(s) of a run made on one, see :func:`reproduce`; ``requests``: request
    classes of higher layers by operation, see :func:`execute`)."""
    actor = actor or default_actor()
    keys = stores.public_keys()
    spec = stores.runs.verified(run_id, keys).spec  # before the spec chooses how its data are read
    access = data_access(stores, actor, spec.purpose or "treatment", spec.open_data)
    return reproduce(stores.runs, run_id, access=access, public_keys=keys, env=env, model=model, requests=requests)
