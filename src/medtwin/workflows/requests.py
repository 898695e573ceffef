"""One frozen request per operation, each convertible to the stored :class:`~medtwin.governance.runs.RunSpec`.

A request holds the operation's inputs as library values (Regimen, Dataset,
Population, PatientData, DoseConstraints, ...), the consent basis (exactly
one of ``purpose`` and ``open_data``) and the settings.  :meth:`spec` is what
is stored and signed with the result; :func:`request_from_spec` rebuilds the
request from a stored spec (reading its patient data through ``access``), so
that :func:`medtwin.workflows.reproduce` executes exactly what
:func:`medtwin.workflows.run` executed.

==================  ===================  =========================================
request             stored operation     result
==================  ===================  =========================================
SimulateRequest     simulate             Trajectory
SimulateDataset...  simulate_dataset     Trajectory
FitRequest          fit                  FOCEIResult
PersonalizeRequest  personalize          Posterior
ForecastRequest     forecast             Forecast (posterior, band, exposure)
RecommendRequest    recommend            Recommended (posterior, recommendation)
ReplayRequest       replay               Replayed (twin, rows, alarms, ...)
DecideRequest       (decision store)     Decision
==================  ===================  =========================================

Examples
--------
>>> import numpy as np
>>> from medtwin.core.events import Regimen
>>> r = SimulateRequest("pk1_iv", {"CL": [2.0], "V": [20.0]}, Regimen.single(100.0), np.array([1.0, 2.0]),
...                     open_data="synthetic")
>>> from medtwin.io.access import OpenData
>>> r.spec().operation, request_from_spec(r.spec(), access=OpenData("synthetic")).model.name
('simulate', 'pk1_iv')

Every request holds its Model object (``model``): a library model may be named by its name (resolved with
:func:`~medtwin.models.get_model`), a user-defined model is given as the object (for the operations on a
population, ``model=`` next to the population that names it).  The stored spec names a library model by its
name, as always, and any other model by its reference (name, digest, description), so that
:func:`request_from_spec` with ``model=`` (the user model, or a mapping of them) rebuilds the request with
the model's digest verified.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from medtwin.errors import DataError, ModelError
from medtwin.governance import runs as _runs

__all__ = ["DecideRequest", "FitRequest", "ForecastRequest", "PersonalizeRequest", "RecommendRequest",
           "ReplayRequest", "Request", "SimulateDatasetRequest", "SimulateRequest", "request_from_spec"]

_CHOICES = ("accept", "modify", "override")
#: Extensions of a stored forecast/recommend spec: input key -> ``extend(spec, request) -> request``, registered
#: by the module that defines the extended request (``"model_averaging"``: :mod:`medtwin.workflows.averaging`,
#: imported with the package), so that this module does not import it back.
SPEC_EXTENSIONS: dict = {}


def _model_object(request, name: str | None = None):
    """Set ``request.model`` to a Model: a library name is resolved; a Model must be called ``name``."""
    from medtwin.core.model import Model
    from medtwin.models import get_model

    model = request.model
    if model is None or isinstance(model, str):
        wanted = name if model is None else model
        try:
            model = get_model(wanted)
        except ModelError as exc:
            raise ModelError(f"{type(request).__name__}: {wanted!r} is not a library model: give the "
                             f"user-defined Model object as model= ({exc})") from None
    elif not isinstance(model, Model):
        raise DataError(f"{type(request).__name__}: model must be a Model or a library model name, not "
                        f"{type(model).__name__}")
    if name is not None and model.name != name:
        raise DataError(f"{type(request).__name__}: the population is for model {name!r}, but model= is "
                        f"{model.name!r}")
    object.__setattr__(request, "model", model)


def _basis(request) -> None:
    if (request.purpose is None) == (request.open_data is None):
        raise DataError(f"{type(request).__name__}: give exactly one of purpose (consented patient data) and "
                        "open_data (the reason the data are not identifiable)")


@dataclass(frozen=True, eq=False)
class SimulateRequest:
    """``simulate(model, params, regimen, times, ids=ids, **settings)`` (model: a Model or a library name)."""

    model: Any
    params: Mapping
    regimen: Any
    times: Any
    ids: Any = None
    settings: Mapping = field(default_factory=dict)
    purpose: str | None = None
    open_data: str | None = None
    seeds: Mapping = field(default_factory=dict)
    operation: ClassVar[str] = "simulate"

    def __post_init__(self):
        _basis(self)
        _model_object(self)

    def spec(self) -> _runs.RunSpec:
        return _runs.spec_for_simulate(self.model, self.params, self.regimen, self.times, ids=self.ids,
                                       settings=self.settings, purpose=self.purpose, open_data=self.open_data,
                                       seeds=self.seeds)


@dataclass(frozen=True, eq=False)
class SimulateDatasetRequest:
    """``simulate_dataset(model, dataset, params, **settings)`` (a NONMEM-style dataset; model: a Model or a
    library name)."""

    model: Any
    dataset: Any
    params: Any = None
    settings: Mapping = field(default_factory=dict)
    purpose: str | None = None
    open_data: str | None = None
    operation: ClassVar[str] = "simulate_dataset"

    def __post_init__(self):
        _basis(self)
        _model_object(self)

    def spec(self) -> _runs.RunSpec:
        return _runs.spec_for_dataset(self.model, self.dataset, self.params, settings=self.settings,
                                      purpose=self.purpose, open_data=self.open_data)


@dataclass(frozen=True, eq=False)
class FitRequest:
    """``fit_focei(population, dataset, model, covariance=covariance)``: a population fit (FOCE with
    interaction); ``model`` defaults to the library model the population names."""

    population: Any
    dataset: Any
    covariance: str = "sandwich"
    purpose: str | None = None
    open_data: str | None = None
    model: Any = None
    operation: ClassVar[str] = "fit"

    def __post_init__(self):
        _basis(self)
        _model_object(self, self.population.model)

    def spec(self) -> _runs.RunSpec:
        return _runs.spec_for_fit(self.population, self.dataset, covariance=self.covariance, purpose=self.purpose,
                                  open_data=self.open_data, model=self.model)


@dataclass(frozen=True, eq=False)
class PersonalizeRequest:
    """``personalize(population, data, model=model, method=..., seed=..., chains=..., draws=..., warmup=...)``.

    ``model`` is the Model the population names: the library model by default, or a user-defined one (its
    name must be ``population.model``).
    """

    population: Any
    data: Any
    method: str = "laplace"
    seed: int = 0
    chains: int = 4
    draws: int = 1000
    warmup: int = 1000
    purpose: str | None = None
    open_data: str | None = None
    model: Any = None
    operation: ClassVar[str] = "personalize"

    def __post_init__(self):
        _basis(self)
        _model_object(self, self.population.model)
        if self.method not in ("laplace", "nuts"):
            raise DataError(f"method must be laplace or nuts, not {self.method!r}")

    def options(self) -> dict:
        return {"method": self.method, "seed": int(self.seed), "chains": int(self.chains), "draws": int(self.draws),
                "warmup": int(self.warmup)}

    def spec(self) -> _runs.RunSpec:
        return _runs.spec_for_personalize(self.population, self.data, purpose=self.purpose,
                                          open_data=self.open_data, model=self.model, **self.options())


@dataclass(frozen=True, eq=False)
class ForecastRequest(PersonalizeRequest):
    """Personalize, then ``posterior.predict(regimen, times, n_draws=n_draws, seed=seed)``; the exposure over
    the last ``window_h`` h of ``times`` (AUC in ``auc_target``, trough in ``trough_range``) is summarised.

    Build it from a horizon with :meth:`continued` (the current regimen continued ``hours`` past the last
    level, on a 0.1-h grid), as ``medtwin forecast`` does.
    """

    regimen: Any = None
    times: Any = None
    n_draws: int = 1000
    window_h: float = 24.0
    auc_target: tuple = (400.0, 600.0)
    trough_range: tuple = (10.0, 20.0)
    window_end: float | None = None
    operation: ClassVar[str] = "forecast"

    def __post_init__(self):
        super().__post_init__()
        if self.regimen is None or self.times is None:
            raise DataError("ForecastRequest needs the regimen and the output times (see ForecastRequest.continued)")

    @classmethod
    def continued(cls, population, data, hours: float, *, step: float = 0.1, **options) -> ForecastRequest:
        """The patient's regimen continued ``hours`` h past their last level, on a ``step``-h grid from 0."""
        if not hours > 0.0:
            raise DataError(f"forecast horizon must be positive, got {hours!r} h")
        end = float(np.max(data.times)) + float(hours)
        grid = np.round(np.arange(0.0, end + 1e-9, step), 10)
        return cls(population, data, regimen=data.regimen.continued(end), times=grid, window_end=end, **options)

    @property
    def end(self) -> float:
        """End of the exposure window, h: ``window_end``, or the last output time."""
        last = float(np.max(np.asarray(self.times, dtype=float)))
        return last if self.window_end is None else float(self.window_end)

    def spec(self) -> _runs.RunSpec:
        spec = _runs.spec_for_personalize(self.population, self.data, purpose=self.purpose,
                                          open_data=self.open_data, regimen=self.regimen, times=self.times,
                                          n_draws=self.n_draws, model=self.model, **self.options())
        exposure = {"window_h": float(self.window_h), "auc_target": [float(v) for v in self.auc_target],
                    "trough_range": [float(v) for v in self.trough_range]}
        if self.end != float(np.max(np.asarray(self.times, dtype=float))):
            exposure["window_end"] = self.end
        if exposure == {"window_h": 24.0, "auc_target": [400.0, 600.0], "trough_range": [10.0, 20.0]}:
            return spec  # the defaults: the spec stays as every earlier forecast run stored it
        return dataclasses.replace(spec, inputs={**spec.inputs, "exposure": exposure})


@dataclass(frozen=True, eq=False)
class RecommendRequest(PersonalizeRequest):
    """Personalize, then ``recommend_dose``: ``target`` ``{"kind": "auc24"|"trough"|"peak", "low", "high"}``,
    hard ``constraints`` (DoseConstraints), objective, a toxic-AUC24 threshold (None: none) and its largest
    acceptable probability ``epsilon``."""

    target: Mapping = field(default_factory=lambda: {"kind": "auc24", "low": 400.0, "high": 600.0})
    constraints: Any = None
    objective: str = "pta"
    toxic_auc: float | None = 600.0
    epsilon: float = 0.1
    n_draws: int = 1000
    operation: ClassVar[str] = "recommend"

    def __post_init__(self):
        super().__post_init__()
        from medtwin.control.dosing import DoseConstraints

        if self.constraints is None:
            object.__setattr__(self, "constraints", DoseConstraints())
        if self.objective not in ("window", "pta", "median"):
            raise DataError(f"objective must be window, pta or median, not {self.objective!r}")
        if self.target.get("kind") not in ("auc24", "trough", "peak"):
            raise DataError(f"target kind must be auc24, trough or peak, not {self.target.get('kind')!r}")

    def spec(self) -> _runs.RunSpec:
        constraints = dataclasses.asdict(self.constraints)
        constraints["intervals_h"] = list(constraints["intervals_h"])
        return _runs.spec_for_recommend(self.population, self.data, target=self.target, constraints=constraints,
                                        objective=self.objective, toxic_auc=self.toxic_auc, epsilon=self.epsilon,
                                        n_draws=self.n_draws, purpose=self.purpose, open_data=self.open_data,
                                        model=self.model, **self.options())


@dataclass(frozen=True, eq=False)
class ReplayRequest:
    """Feed a recorded stream (CSV text) through the twin built from ``twin_spec``, one arrival at a time.

    ``source`` names where the stream came from (prefixes its data errors, e.g. ``"--stream s.csv"``);
    ``model`` is the Model ``twin_spec["model"]`` names (default: that library model).
    """

    twin_spec: Mapping
    stream: str
    patient: str | None = None
    check_clocks: bool = False
    purpose: str | None = None
    open_data: str | None = None
    source: str | None = None
    model: Any = None
    operation: ClassVar[str] = "replay"

    def __post_init__(self):
        _basis(self)
        if not isinstance(self.twin_spec, Mapping) or "model" not in self.twin_spec:
            raise DataError("a twin specification is a mapping with at least 'model' and 'errors'")
        _model_object(self, str(self.twin_spec["model"]))

    def spec(self, patients=None) -> _runs.RunSpec:
        return _runs.spec_for_replay(self.model, self.twin_spec, self.stream,
                                     patient=self.patient, patients=patients, check_clocks=self.check_clocks,
                                     purpose=self.purpose, open_data=self.open_data)


@dataclass(frozen=True)
class DecideRequest:
    """A clinician's decision on a recorded recommendation (the ``recommend`` run ``recommendation``).

    ``choice`` is accept, modify or override; ``dose_mg``/``interval_h`` (or a whole ``given`` action) say what
    is given instead (modify: must still respect the recommendation's hard constraints); ``reason`` is
    required to modify or override.  ``time`` (h, the patient's clock) defaults to the last level of the
    recommendation's data.  ``purpose``/``open_data`` default to those of the recommendation's run.  ``model``:
    the user-defined model(s) of a recommendation made on one (a Model or a mapping name -> Model; digest
    verified against the recommendation's run).
    """

    recommendation: str
    choice: str
    clinician: str
    reason: str = ""
    dose_mg: float | None = None
    interval_h: float | None = None
    given: Mapping | None = None
    time: float | None = None
    subgroup: Mapping = field(default_factory=dict)
    purpose: str | None = None
    open_data: str | None = None
    model: Any = field(default=None, compare=False)
    operation: ClassVar[str] = "decide"

    def __post_init__(self):
        if self.choice not in _CHOICES:
            raise DataError(f"choice must be one of {' | '.join(_CHOICES)}, not {self.choice!r}")
        if not isinstance(self.recommendation, str) or not self.recommendation.strip():
            raise DataError("give the id of a recorded recommendation (`medtwin runs` lists them)")
        if self.choice != "accept" and not str(self.reason).strip():
            raise DataError(f"a reason is required to {self.choice} a recommendation (--reason)")
        if self.choice == "accept" and (self.dose_mg is not None or self.interval_h is not None or self.given):
            raise DataError("an accepted recommendation is given as proposed: no --dose or --interval "
                            "(use modify or override)")
        if self.choice != "accept" and self.dose_mg is None and self.interval_h is None and not self.given:
            raise DataError(f"say what is given instead to {self.choice} a recommendation (--dose and/or "
                            "--interval)")


Request = (SimulateRequest | SimulateDatasetRequest | FitRequest | PersonalizeRequest | ForecastRequest
           | RecommendRequest | ReplayRequest | DecideRequest)


def _times(times):
    return (np.asarray(times, dtype=float) if not times or not isinstance(times[0], list)
            else [np.asarray(t, dtype=float) for t in times])


def _personalize_fields(spec, access) -> dict:
    from medtwin.core.population import Population
    from medtwin.io.access import authorize

    authorize(access, spec.patients, _runs.spec_data_classes(spec), "read")
    basis = {"purpose": spec.purpose, "open_data": spec.open_data}
    options = {k: spec.settings[k] for k in _runs.PERSONALIZE_SETTINGS}
    return {"population": Population.from_dict(spec.inputs["population"]),
            "data": _runs.patient_from_json(spec.inputs["patient"]), **options, **basis}


def request_from_spec(spec: _runs.RunSpec, *, access, model=None):
    """The request a stored spec describes; its patient data are read through *access* (a consented ``read``).

    ``model``: user-defined models (a Model, a mapping name -> Model, or a sequence of Models); the one the
    spec names replaces the library lookup, its digest checked against the spec's model reference.  The
    model is resolved before any data are read.

    Raises
    ------
    DataError
        An operation no request describes.
    ModelError
        The spec names a model that is neither a library model nor given in ``model``.
    ModelDigestError
        The given model's definition differs from the one the run was made with.
    ConsentError
        The read is denied.
    """
    if spec.operation == "mre":  # the imaging twin (medtwin.workflows.imaging)
        from medtwin.workflows.imaging import mre_request_from_spec

        return mre_request_from_spec(spec, access=access)
    model = _runs.spec_model(spec, model)
    basis = {"purpose": spec.purpose, "open_data": spec.open_data}
    op = spec.operation
    if op in ("personalize", "forecast", "recommend"):
        fields = {**_personalize_fields(spec, access), "model": model}
        if op == "personalize":
            return PersonalizeRequest(**fields)
        request = _forecast_or_recommend(spec, fields)
        for key, extend in SPEC_EXTENSIONS.items():  # e.g. several candidate priors (workflows.averaging)
            if key in spec.inputs:
                request = extend(spec, request)
        return request
    return _other_from_spec(spec, access, model, basis)


def _forecast_or_recommend(spec, fields):
    """The ForecastRequest or RecommendRequest of a stored forecast/recommend spec (``fields``: personalize's)."""
    if spec.operation == "forecast":
        e = spec.inputs.get("exposure", {})
        return ForecastRequest(**fields, regimen=_runs.regimen_from_json(spec.inputs["regimen"]),
                               times=np.array(spec.inputs["times"], dtype=float),
                               n_draws=spec.settings["n_draws"], window_h=e.get("window_h", 24.0),
                               auc_target=tuple(e.get("auc_target", (400.0, 600.0))),
                               trough_range=tuple(e.get("trough_range", (10.0, 20.0))),
                               window_end=e.get("window_end"))
    from medtwin.control.dosing import DoseConstraints

    c = dict(spec.inputs["constraints"])
    c["intervals_h"] = tuple(c["intervals_h"])
    return RecommendRequest(**fields, target=dict(spec.inputs["target"]), constraints=DoseConstraints(**c),
                            objective=spec.inputs["objective"], toxic_auc=spec.inputs["toxic_auc"],
                            epsilon=spec.inputs["epsilon"], n_draws=spec.settings["n_draws"])


def _other_from_spec(spec, access, model, basis):
    from medtwin.io.access import authorize

    op = spec.operation
    if op == "credibility":
        from medtwin.workflows.credibility import request_from_credibility_spec

        return request_from_credibility_spec(spec, model=model)
    if op == "replay":
        return ReplayRequest(spec.inputs["twin_spec"], spec.inputs["stream"], patient=spec.inputs["patient"],
                             check_clocks=bool(spec.settings.get("check_clocks", False)), model=model, **basis)
    if op == "fit":
        from medtwin.core.population import Population

        dataset = _runs.dataset_from_json(spec.inputs["dataset"], access=access, model=model)
        return FitRequest(Population.from_dict(spec.inputs["population"]), dataset,
                          covariance=spec.settings["covariance"], model=model, **basis)
    if op == "simulate_dataset":
        dataset = _runs.dataset_from_json(spec.inputs["dataset"], access=access, model=model)
        params = spec.inputs["params"]
        params = None if params is None else {k: np.array(v, dtype=float) for k, v in params.items()}
        return SimulateDatasetRequest(model, dataset, params, dict(spec.settings), **basis)
    if op == "simulate":
        authorize(access, spec.patients, _runs.spec_data_classes(spec), "read")
        regimens = [_runs.regimen_from_json(events) for events in spec.inputs["regimens"]]
        params = {k: np.array(v, dtype=float) for k, v in spec.inputs["params"].items()}
        ids = spec.inputs.get("ids")
        return SimulateRequest(model, params, regimens[0] if len(regimens) == 1 else regimens,
                               _times(spec.inputs["times"]), None if ids is None else np.asarray(ids),
                               dict(spec.settings), seeds=dict(spec.seeds), **basis)
    raise DataError(f"no request describes a stored {op!r} run")
