"""Recorded runs: what was computed, from what, by whom -- stored, signed and re-executable.

A :class:`RunSpec` is everything needed to compute a result again: the
operation, the library model's name, the inputs as plain JSON data (parameter
columns, dose events, output times, or a whole NONMEM dataset) and the solver
settings.  :class:`RunStore` keeps the spec next to the signed
:class:`~medtwin.governance.provenance.ProvenanceRecord` of the result in the
``runs`` table (migration ``0003_runs``) and appends ``run.record`` to the
audit log.  :func:`medtwin.workflows.reproduce` first checks the stored run (signature, run id,
spec digest, columns: :func:`integrity_problems`) and refuses a tampered one
before executing anything, then executes the stored spec again and reports
whether the result is bit-identical (same output digest), and, when the
environment changed, exactly which versions differ.  A malformed stored row is
a one-line :class:`~medtwin.errors.DataError` naming the run and the field.

Inputs are stored as JSON: floats are written with Python's shortest
round-trip ``repr`` and read back to the same doubles, so re-execution sees
the very same numbers.  Patient data in a spec are read and written through
the consent gate (``access``, see :mod:`medtwin.io.access`), like any other
patient data.

Executing a spec (and re-executing it for :func:`medtwin.workflows.reproduce`)
is the workflow layer's job (:mod:`medtwin.workflows`): this module only
encodes, stores, checks and compares.

Examples
--------
>>> import numpy as np
>>> from medtwin.core.events import Regimen
>>> spec = spec_for_simulate("pk1_iv", {"CL": [2.0, 3.0], "V": [20.0, 25.0]}, Regimen.single(100.0),
...                          np.linspace(0.0, 24.0, 5), open_data="synthetic virtual patients")
>>> spec.operation, spec.patients
('simulate', ['1', '2'])
>>> RunSpec.from_dict(spec.as_dict()) == spec
True
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import sys

import numpy as np
import sqlalchemy as sa

from medtwin.core.events import DoseEvent, Regimen
from medtwin.core.status import Vocabulary
from medtwin.errors import DataError, MedtwinError
from medtwin.governance.audit import AuditLog
from medtwin.governance.canonical import digest
from medtwin.governance.provenance import (
    ProvenanceRecord, output_digest, record_for_result, result_view, sign, verify,
)
from medtwin.io.access import authorize, patient_ids
from medtwin.io.storage import runs_table
from medtwin.models import get_model, model_reference, resolve_model

__all__ = ["OPERATIONS", "PERSONALIZE_SETTINGS", "ReproduceReport", "RunIntegrityError", "RunListing", "RunSpec",
           "RunStore", "StoredRun", "dataset_from_json", "environment_differences", "integrity_problems",
           "patient_from_json", "regimen_from_json", "reproduce_report", "spec_data_classes", "spec_for_dataset",
           "spec_for_fit", "spec_for_personalize", "spec_for_recommend", "spec_for_replay", "spec_for_simulate",
           "spec_model", "stored_model"]

#: Operations a spec can describe.
OPERATIONS = ("simulate", "simulate_dataset", "personalize", "forecast", "fit", "recommend", "replay", "credibility",
              "mre", "trial")
#: Settings a spec may carry (keyword arguments of ``simulate`` / ``personalize`` / ``Posterior.predict``,
#: ``check_clocks`` of a replay).
SETTINGS = ("method", "rtol", "atol", "dt", "max_steps", "keep_states", "records", "seed", "chains", "draws",
            "warmup", "n_draws", "covariance", "check_clocks",
            "regularisation", "n_bootstrap", "table", "sigma_px", "maxiter")  # the last five: mre runs
#: Settings of a spec that are keyword arguments of ``personalize``.
PERSONALIZE_SETTINGS = ("method", "seed", "chains", "draws", "warmup")

_T = runs_table


def _json_floats(values) -> list | float | None:
    """Float array (or scalar) as JSON data, NaN (a missing cell) as null: strict JSON, exact doubles."""
    arr = np.asarray(values, dtype=float)
    out = np.where(np.isnan(arr), None, arr.astype(object)).tolist()
    return out


def _columns(values) -> dict[str, list]:
    """A parameter table (mapping of scalars/arrays, or DataFrame) as JSON columns."""
    pd = sys.modules.get("pandas")  # a DataFrame can only come from a process that imported pandas
    if pd is not None and isinstance(values, pd.DataFrame):
        values = {str(c): values[c].to_numpy() for c in values.columns}
    if not isinstance(values, Mapping):
        raise DataError(f"run inputs: parameters must be a mapping or DataFrame to be recorded, "
                        f"not {type(values).__name__}")
    return {str(k): _json_floats(v) for k, v in values.items()}


def _events(regimen: Regimen) -> list[dict]:
    return [{"time": e.time, "amount": e.amount, "cmt": e.cmt, "rate": e.rate, "ii": e.ii, "addl": e.addl,
             "ss": e.ss, "evid": e.evid} for e in regimen.events]


def regimen_from_json(events: Iterable[Mapping]) -> Regimen:
    """The :class:`Regimen` of a spec's dose events (inverse of the encoding in the ``spec_for_*`` builders)."""
    return Regimen(tuple(DoseEvent(**e) for e in events))


def stored_model(model) -> str | dict:
    """How a spec names *model*: a library model (same name and definition) by its name, exactly as runs
    always stored it; any other Model (a user-defined one, or a changed definition under a library name) by
    its reference ``{"name", "digest", "description"}``.  A name (str) is kept as it is.

    Examples
    --------
    >>> stored_model(get_model("pk1_iv"))
    'pk1_iv'
    """
    if isinstance(model, str):
        return model
    try:
        library = get_model(model.name)
    except MedtwinError:
        library = None
    if library is model or (library is not None and library.digest() == model.digest()):
        return model.name
    return model_reference(model)


def _user_models(model) -> dict:
    """``model=`` of the reproduce functions as name -> Model: None, one Model, a mapping or a sequence."""
    from medtwin.core.model import Model

    if model is None:
        return {}
    if isinstance(model, Model):
        return {model.name: model}
    if isinstance(model, Mapping):
        return dict(model)
    if isinstance(model, (list, tuple)):
        return {m.name: m for m in model}
    raise DataError(f"model= must be a Model, a mapping of name -> Model or a sequence of Models, "
                    f"not {type(model).__name__}")


def spec_model(spec, model=None):
    """The Model a spec (or its ``model`` field) names, its digest verified.

    Parameters
    ----------
    spec : RunSpec, str or dict
        A stored spec, or its ``model`` field (a library name or a reference).
    model : Model, mapping of name -> Model, or sequence of Models, optional
        User-defined models: the one named by the spec is used instead of the library (its name and, for a
        reference, its digest must match); others are ignored.

    Raises
    ------
    ModelError
        A model that is neither a library model nor given (the message names it and says to pass it as
        ``model=``).
    ModelDigestError
        The given (or library) model's definition differs from the one the run was made with.

    Examples
    --------
    >>> spec_model("pk1_iv").name
    'pk1_iv'
    """
    field_ = spec.model if isinstance(spec, RunSpec) else spec
    name = field_["name"] if isinstance(field_, Mapping) else field_
    if name == "mre_helmholtz":  # the imaging twin's forward model (an ``mre`` run), not a compartment Model
        from medtwin.imaging.model import FORWARD_MODEL

        return FORWARD_MODEL
    return resolve_model(field_, _user_models(model).get(name))


@dataclass(frozen=True)
class RunSpec:
    """A re-executable description of one run.

    Attributes
    ----------
    operation : str
        One of :data:`OPERATIONS`.
    model : str or dict
        A library model's name (:func:`medtwin.models.get_model`), or for any other model (a user-defined
        one) its reference ``{"name", "digest", "description"}`` (:func:`medtwin.models.model_reference`,
        as twin files store it): see :func:`stored_model` and :func:`spec_model`.
    inputs : dict
        JSON data: ``params``, ``regimens``, ``times``, ``ids`` (simulate) or
        ``dataset``, ``params`` (simulate_dataset).
    settings : dict
        Keyword arguments of ``simulate`` (see :data:`SETTINGS`).
    patients : list of str
        Patient ids whose data the inputs hold.
    purpose : str or None
        Consent purpose the data were accessed for (None for open data).
    open_data : str or None
        Reason the data are not identifiable patient data (see ``OpenData``).
    seeds : dict
        Random streams that produced the inputs (documentation; the inputs
        themselves are stored, so re-execution draws nothing).
    """

    operation: str
    model: str | dict
    inputs: dict
    settings: dict = field(default_factory=dict)
    patients: list = field(default_factory=list)
    purpose: str | None = None
    open_data: str | None = None
    seeds: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.operation not in OPERATIONS:
            raise DataError(f"run operation must be one of {OPERATIONS}, not {self.operation!r}")
        unknown = sorted(set(self.settings) - set(SETTINGS))
        if unknown:
            raise DataError(f"run settings {unknown} are not recordable; allowed: {SETTINGS}")
        if (self.purpose is None) == (self.open_data is None):
            raise DataError("a run spec needs exactly one of purpose (consented patient data) "
                            "and open_data (the reason the data are not identifiable)")
        if isinstance(self.model, Mapping):
            if not isinstance(self.model.get("name"), str) or not isinstance(self.model.get("digest"), str):
                raise DataError(f"a run spec's model reference needs a name and a digest, got {dict(self.model)!r}")
            object.__setattr__(self, "model", dict(self.model))
        elif not isinstance(self.model, str):
            raise DataError(f"a run spec's model is a library model name or a model reference, not "
                            f"{type(self.model).__name__}")

    @property
    def model_name(self) -> str:
        """The name of the run's model (library or user-defined)."""
        return self.model["name"] if isinstance(self.model, dict) else self.model

    def as_dict(self) -> dict:
        return {"operation": self.operation, "model": self.model, "inputs": self.inputs,
                "settings": self.settings, "patients": list(self.patients), "purpose": self.purpose,
                "open_data": self.open_data, "seeds": self.seeds}

    @classmethod
    def from_dict(cls, data: Mapping) -> RunSpec:
        return cls(**dict(data))

    def to_json(self) -> str:
        try:
            return json.dumps(self.as_dict(), sort_keys=True, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise DataError(f"run spec is not storable as strict JSON: {exc}") from None


def spec_for_simulate(model, params, regimen, times, *, ids=None, settings: Mapping | None = None,
                      purpose: str | None = None, open_data: str | None = None,
                      seeds: Mapping | None = None) -> RunSpec:
    """The spec of ``simulate(model, params, regimen, times, ids=ids, **settings)``.

    ``model`` is a library model's name or a Model (see :func:`stored_model`); ``regimen`` is one
    :class:`Regimen` (shared) or one per patient; ``times`` one array (shared) or one per patient.
    """
    regimens = [_events(regimen)] if isinstance(regimen, Regimen) else [_events(r) for r in regimen]
    times = np.asarray(times, dtype=float) if not isinstance(times, (list, tuple)) else times
    times_json = (times.tolist() if isinstance(times, np.ndarray)
                  else [np.asarray(t, dtype=float).tolist() for t in times])
    columns = _columns(params)
    n = max([len(v) if isinstance(v, list) else 1 for v in columns.values()] + [len(regimens)])
    patients = patient_ids(ids) if ids is not None else [str(i + 1) for i in range(n)]
    inputs = {"params": columns, "regimens": regimens, "times": times_json,
              "ids": None if ids is None else np.asarray(ids).tolist()}
    return RunSpec("simulate", stored_model(model), inputs, dict(settings or {}), patients, purpose, open_data,
                   dict(seeds or {}))


def _dataset_json(dataset) -> dict:
    frame = dataset.to_frame()
    return {str(c): _json_floats(frame[c].to_numpy(dtype=float)) for c in frame.columns}


def dataset_from_json(columns: Mapping, *, access, model):
    """The Dataset of a spec's ``dataset`` columns, read (consent-checked) through *access*."""
    import pandas as pd  # imported here: a replay or a recommendation records runs without pandas

    from medtwin.io.nonmem import read_nonmem

    frame = pd.DataFrame({c: np.array(v, dtype=float) for c, v in columns.items()})
    return read_nonmem(frame, access=access, model=model)


def spec_for_dataset(model, dataset, params=None, *, settings: Mapping | None = None,
                     purpose: str | None = None, open_data: str | None = None) -> RunSpec:
    """The spec of ``simulate_dataset(model, dataset, params, **settings)`` (model: name or Model)."""
    inputs = {"dataset": _dataset_json(dataset), "params": None if params is None else _columns(params)}
    return RunSpec("simulate_dataset", stored_model(model), inputs, dict(settings or {}), patient_ids(dataset.ids),
                   purpose, open_data)


def spec_for_fit(population, dataset, *, covariance: str = "sandwich", purpose: str | None = None,
                 open_data: str | None = None, model=None) -> RunSpec:
    """The spec of ``fit_focei(population, dataset, model, covariance=covariance)`` (a population fit);
    ``model`` (a Model) defaults to the library model the population names."""
    inputs = {"population": population.to_dict(), "dataset": _dataset_json(dataset)}
    named = population.model if model is None else stored_model(model)
    return RunSpec("fit", named, inputs, {"method": "foce", "covariance": covariance},
                   patient_ids(dataset.ids), purpose, open_data)


def _patient_json(data) -> dict:
    return {"regimen": _events(data.regimen), "times": _json_floats(data.times),
            "values": _json_floats(data.values), "covariates": dict(data.covariates), "output": data.output,
            "blq": [bool(b) for b in data.blq], "lloq": None if data.lloq is None else _json_floats(data.lloq),
            "pre_dose": [bool(b) for b in data.pre_dose], "patient": data.patient}


def patient_from_json(d: Mapping):
    """The PatientData of a spec's ``patient`` entry (inverse of the encoding in :func:`spec_for_personalize`)."""
    from medtwin.core.data import PatientData

    return PatientData(regimen_from_json(d["regimen"]), np.array(d["times"], dtype=float), np.array(d["values"], dtype=float),
                       d["covariates"], d["output"], d["blq"],
                       None if d["lloq"] is None else np.array(d["lloq"], dtype=float), d["pre_dose"], d["patient"])


def spec_for_personalize(population, data, *, method: str = "laplace", seed: int = 0, chains: int = 4,
                         draws: int = 1000, warmup: int = 1000, purpose: str | None = None,
                         open_data: str | None = None, regimen: Regimen | None = None, times=None,
                         n_draws: int = 1000, model=None) -> RunSpec:
    """The spec of ``personalize(population, data, model=model, ...)``; with ``regimen`` and ``times`` also of
    ``.predict(regimen, times, n_draws=n_draws, seed=seed)`` (operation ``forecast``).  ``model`` (a Model)
    defaults to the library model the population names."""
    settings = {"method": method, "seed": int(seed), "chains": int(chains), "draws": int(draws),
                "warmup": int(warmup)}
    inputs = {"population": population.to_dict(), "patient": _patient_json(data)}
    operation = "personalize"
    if regimen is not None:
        operation = "forecast"
        inputs.update(regimen=_events(regimen), times=_json_floats(np.asarray(times, dtype=float)))
        settings["n_draws"] = int(n_draws)
    patient = [data.patient or "1"]
    named = population.model if model is None else stored_model(model)
    return RunSpec(operation, named, inputs, settings, patient, purpose, open_data, {"seed": int(seed)})


def spec_for_recommend(population, data, *, target: Mapping, constraints: Mapping, objective: str = "pta",
                       toxic_auc: float | None = None, epsilon: float = 0.1, n_draws: int = 1000,
                       method: str = "laplace", seed: int = 0, chains: int = 4, draws: int = 1000,
                       warmup: int = 1000, purpose: str | None = None, open_data: str | None = None,
                       model=None) -> RunSpec:
    """The spec of a dose recommendation: ``personalize`` then ``recommend_dose`` (operation ``recommend``).

    ``target`` is ``{"kind": "auc24" | "trough" | "peak", "low": ..., "high": ...}`` and ``constraints`` the
    fields of :class:`~medtwin.control.dosing.DoseConstraints` (JSON data).
    """
    spec = spec_for_personalize(population, data, method=method, seed=seed, chains=chains, draws=draws,
                                warmup=warmup, purpose=purpose, open_data=open_data, model=model)
    inputs = {**spec.inputs, "target": dict(target), "constraints": dict(constraints), "objective": objective,
              "toxic_auc": None if toxic_auc is None else float(toxic_auc), "epsilon": float(epsilon)}
    return dataclasses.replace(spec, operation="recommend", inputs=inputs,
                               settings={**spec.settings, "n_draws": int(n_draws)})


def spec_for_replay(model, twin_spec: Mapping, stream: str, *, patient: str | None = None,
                    patients: list | None = None, check_clocks: bool = False, purpose: str | None = None,
                    open_data: str | None = None) -> RunSpec:
    """The spec of a stream replay: the twin specification and the stream CSV's text (operation ``replay``)."""
    inputs = {"twin_spec": dict(twin_spec), "stream": stream, "patient": patient}
    return RunSpec("replay", stored_model(model), inputs, {"check_clocks": bool(check_clocks)},
                   list(patients if patients is not None else ([patient] if patient else [])), purpose, open_data)


@dataclass(frozen=True)
class StoredRun:
    """A run as stored: its spec, its signed provenance record and when it was stored.

    ``run_id`` is the row's key and ``columns`` the row's unsigned columns
    (``operation``, ``operator``, ``created_at``, ``output_digest``); see
    :func:`integrity_problems` for what of it is vouched for by the signature.
    """

    spec: RunSpec
    record: ProvenanceRecord
    created_at: str
    run_id: str | None = None
    columns: dict = field(default_factory=dict)


class RunIntegrityError(MedtwinError):
    """A stored run fails its integrity check (signature, run id, spec digest or columns); nothing was executed."""


class RunStore:
    """Runs in the ``runs`` table, each stored with its signed provenance; every store is audited.

    Parameters
    ----------
    engine : sqlalchemy.engine.Engine
        Database at revision ``0003_runs`` or later.
    audit_log : AuditLog
        Receives a ``run.record`` entry per stored run.
    key : Ed25519PrivateKey
        Signs the provenance records.
    """

    def __init__(self, engine: sa.Engine, audit_log: AuditLog, key):
        self.engine, self.audit_log, self.key = engine, audit_log, key

    def save(self, spec: RunSpec, result, operator: str, *, access,
             env: Mapping | None = None, note: Mapping | None = None, model=None) -> ProvenanceRecord:
        """Sign the provenance of *result* and store it with *spec* (a write of the patients' data).

        *result* is what :func:`medtwin.workflows.execute` returns for the spec (Trajectory, Posterior,
        PredictiveBand, ...). *note* (JSON data) is added to the ``run.record`` audit entry's payload (e.g.
        the content of a recommendation, which a later decision refers to).  *model* is the Model the run
        used (:func:`spec_model` of the spec by default; a user-defined model must be given, and its digest
        must match the spec's reference).
        The row and its ``run.record`` audit entry are committed in one transaction (both or neither).
        """
        authorize(access, spec.patients, spec_data_classes(spec), "write")
        inputs = {"spec": spec.as_dict(), **spec.inputs}
        model = spec_model(spec, model)
        record = sign(record_for_result(spec.operation, model, inputs, result, operator,
                                        spec.seeds, env=env), self.key)
        row = {"run_id": record.run_id, "operation": spec.operation, "operator": operator,
               "created_at": record.time, "spec": spec.to_json(),
               "provenance": json.dumps(record.as_dict(), sort_keys=True), "output_digest": record.output_digest}
        single = spec.patients[0] if len(spec.patients) == 1 and spec.open_data is None else None
        with self.audit_log.transaction() as tx:  # the run and its entry: both or neither
            tx.conn.execute(_T.insert(), row)
            tx.append(operator, "run.record",
                      {"run_id": record.run_id, "operation": spec.operation, "model": spec.model_name,
                       "n_patients": len(spec.patients), "output_digest": record.output_digest,
                       "signer": record.signer, **dict(note or {})}, patient=single)
        return record

    def get(self, run_id: str) -> StoredRun:
        """The stored run, parsed but not verified (see :meth:`verified`).

        Raises :class:`~medtwin.errors.DataError` naming the id when there is none, or naming the
        id and the field when the stored row is malformed (broken JSON, missing fields, wrong types).
        """
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(*_ROW).where(_T.c.run_id == run_id)).first()
        if row is None:
            raise DataError(f"no run {run_id!r} in this database (`medtwin runs` lists the stored runs)")
        return _parse_row(row)

    def verified(self, run_id: str, public_keys) -> StoredRun:
        """The stored run after its integrity check; :class:`RunIntegrityError` naming every problem."""
        stored = self.get(run_id)
        problems = integrity_problems(stored, public_keys)
        if problems:
            raise RunIntegrityError(f"run {run_id} fails its integrity check: {'; '.join(problems)}")
        return stored

    def list(self, limit: int = 50) -> list[tuple[str, str, str, str]]:
        """The most recent runs as (run_id, operation, operator, created_at), newest first.

        These are the row's *unsigned* columns; :meth:`list_checked` shows the signed facts.
        """
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(_T.c.run_id, _T.c.operation, _T.c.operator, _T.c.created_at)
                                .order_by(_T.c.created_at.desc()).limit(limit)).all()
        return [tuple(r) for r in rows]

    def list_checked(self, public_keys, limit: int = 50) -> list[RunListing]:
        """The most recent runs, newest first, each with its integrity verdict.

        The operation, operator and time shown come from the signed record
        (from the unsigned columns only when the record itself is malformed,
        and then with a MALFORMED verdict).
        """
        public_keys = list(public_keys)
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(*_ROW).order_by(_T.c.created_at.desc()).limit(limit)).all()
        out = []
        for row in rows:
            try:
                stored = _parse_row(row)
            except DataError as exc:
                out.append(RunListing(row.run_id, row.operation, row.operator, row.created_at, RunIntegrity.MALFORMED,
                                      (str(exc).removeprefix(f"run {row.run_id}: "),)))
                continue
            problems = tuple(integrity_problems(stored, public_keys))
            r = stored.record
            out.append(RunListing(row.run_id, r.operation, r.operator, r.time,
                                  RunIntegrity.TAMPERED if problems else RunIntegrity.OK,
                                  problems))
        return out


class RunIntegrity(Vocabulary):
    """Integrity verdict of a stored run (:meth:`RunStore.list_checked`)."""

    #: the record, its signature and its stored inputs and outputs agree
    OK = "ok"
    #: the row parses but a digest or the signature does not match: ``problems`` says which
    TAMPERED = "TAMPERED"
    #: the row cannot be read as a run record at all
    MALFORMED = "MALFORMED"


@dataclass(frozen=True)
class RunListing:
    """One line of :meth:`RunStore.list_checked`: the signed facts of a run and its integrity.

    ``status`` is ``"ok"``, ``"TAMPERED"`` or ``"MALFORMED"`` (then operation,
    operator and time are the unsigned columns) and ``problems`` says why.
    """

    run_id: str
    operation: str
    operator: str
    time: str
    status: str
    problems: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.status == RunIntegrity.OK

    @property
    def verdict(self) -> str:
        """``"ok"``, or the status and every problem in one line."""
        return self.status if self.ok else f"{self.status}: {'; '.join(self.problems)}"


_ROW = (_T.c.run_id, _T.c.operation, _T.c.operator, _T.c.created_at, _T.c.output_digest, _T.c.spec,
        _T.c.provenance)
_SPEC_TYPES = {"operation": str, "model": (str, dict), "inputs": dict, "settings": dict, "patients": list,
               "purpose": (str, type(None)), "open_data": (str, type(None)), "seeds": dict}


def _stored_object(run_id: str, what: str, text, required, types: Mapping | None = None) -> dict:
    """The JSON object stored in column *what*, with its fields checked; DataError naming run and field."""
    where = f"run {run_id}: the stored {what}"
    try:
        data = json.loads(text)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{where} is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise DataError(f"{where} must be a JSON object, not {type(data).__name__}")
    missing = sorted(set(required) - set(data))
    if missing:
        raise DataError(f"{where} lacks field(s) {', '.join(missing)}")
    for name, kind in (types or {}).items():
        if name in data and not isinstance(data[name], kind):
            raise DataError(f"{where} has field {name} of type {type(data[name]).__name__}")
    return data


def _parse_row(row) -> StoredRun:
    """A ``runs`` row as a :class:`StoredRun`; DataError (one line, run id and field) when malformed."""
    run_id = row.run_id
    spec_fields = [f.name for f in dataclasses.fields(RunSpec)]
    record_fields = [f.name for f in dataclasses.fields(ProvenanceRecord)]
    spec_data = _stored_object(run_id, "spec", row.spec, ("operation", "model", "inputs"), _SPEC_TYPES)
    record_data = _stored_object(run_id, "provenance", row.provenance, ("run_id", "operation", "time", "operator"))
    for what, data, known in (("spec", spec_data, spec_fields), ("provenance", record_data, record_fields)):
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise DataError(f"run {run_id}: the stored {what} has unknown field(s) {', '.join(unknown)}")
    try:
        spec = RunSpec.from_dict(spec_data)
    except (DataError, TypeError, ValueError) as exc:
        raise DataError(f"run {run_id}: the stored spec is malformed: {exc}") from None
    try:
        record = ProvenanceRecord.from_dict(record_data)
    except (DataError, TypeError, ValueError) as exc:
        raise DataError(f"run {run_id}: the stored provenance is malformed: {exc}") from None
    columns = {"operation": row.operation, "operator": row.operator, "created_at": row.created_at,
               "output_digest": row.output_digest}
    return StoredRun(spec, record, row.created_at, run_id, columns)


def integrity_problems(stored: StoredRun, public_keys) -> list[str]:
    """Why *stored* cannot be trusted, in words (empty when it can).

    Checks that the provenance record carries a valid signature by one of
    *public_keys*, that it is the record of this very run id, that the stored
    spec is the signed one (its digest is ``input_digests["spec"]``), and that
    the row's free columns agree with the signed record.
    """
    record, spec = stored.record, stored.spec
    problems = []
    if not any(verify(record, key) for key in public_keys):
        problems.append("its provenance signature does not verify with this installation's key")
    if stored.run_id is not None and record.run_id != stored.run_id:
        problems.append(f"its signed record belongs to run {record.run_id}")
    try:
        spec_ok = digest(spec.as_dict(), root="inputs.spec") == record.input_digests.get("spec")
    except DataError:
        spec_ok = False
    if not spec_ok:
        problems.append("its stored spec differs from the signed one (spec digest mismatch)")
    signed = {"operation": record.operation, "operator": record.operator, "created_at": record.time,
              "output_digest": record.output_digest}
    changed = [name for name, value in stored.columns.items() if signed.get(name) != value]
    if spec.operation != record.operation:
        changed.append("spec operation")
    if changed:
        problems.append(f"column(s) {', '.join(changed)} differ from the signed record")
    return problems


def spec_data_classes(spec: RunSpec) -> tuple[str, ...]:
    """Consent data classes a spec's inputs hold."""
    if spec.operation in ("simulate_dataset", "fit"):
        from medtwin.io.nonmem import data_classes

        return data_classes(spec.inputs["dataset"])
    if spec.operation in ("personalize", "forecast", "recommend"):
        return ("observations", "medications", "demographics")
    if spec.operation == "mre":
        return ("imaging",)
    return ("observations", "medications")


def environment_differences(record: ProvenanceRecord, env: Mapping) -> list[tuple[str, object, object]]:
    """Every (field, recorded, current) that differs between a record's environment and *env*."""
    out = []
    for part in ("code_version", "dependencies", "platform"):
        recorded, current = getattr(record, part) or {}, env.get(part, {}) or {}
        for name in sorted(set(recorded) | set(current)):
            if recorded.get(name) != current.get(name):
                out.append((f"{part}.{name}", recorded.get(name), current.get(name)))
    return out


@dataclass(frozen=True)
class ReproduceReport:
    """Outcome of :func:`reproduce`.

    ``identical`` is True when the new output digest equals the recorded one
    (every output, status and solver setting bit for bit). ``signature_ok``
    and ``inputs_ok`` are always True: :func:`reproduce` refuses (raises
    :class:`RunIntegrityError`) a run failing either check before executing it.
    """

    run_id: str
    identical: bool
    recorded_digest: str
    reproduced_digest: str
    differing_outputs: tuple[str, ...]
    signature_ok: bool
    inputs_ok: bool
    model_changed: bool
    environment_differences: tuple[tuple[str, object, object], ...]

    def summary(self) -> str:
        """A few lines for people: verdict, checks, then every environment difference."""
        lines = [f"run {self.run_id}: " + ("bit-identical" if self.identical else "NOT identical") +
                 f" (recorded {self.recorded_digest}, reproduced {self.reproduced_digest})"]
        if self.differing_outputs:
            lines.append("outputs that differ: " + ", ".join(self.differing_outputs))
        lines.append(f"provenance signature: {'valid' if self.signature_ok else 'INVALID or unknown key'}; "
                     f"stored inputs match the signed digest: {'yes' if self.inputs_ok else 'NO'}")
        if self.model_changed:
            lines.append("the model definition differs from the recorded one (model digest changed)")
        if self.environment_differences:
            lines.append("environment differences (recorded -> now):")
            lines += [f"  {name}: {old} -> {new}" for name, old, new in self.environment_differences]
        else:
            lines.append("environment: same code, dependency versions and platform as recorded")
        return "\n".join(lines)


def reproduce_report(stored: StoredRun, result, *, env: Mapping, model=None) -> ReproduceReport:
    """Compare a re-executed *result* with the verified *stored* run (see :func:`medtwin.workflows.reproduce`).

    Parameters
    ----------
    stored : StoredRun
        From :meth:`RunStore.verified` (the report states signature and inputs as checked).
    result : Trajectory, Posterior, PredictiveBand, ... (anything :func:`result_view` reads)
        The re-executed result.
    env : mapping
        The current :func:`~medtwin.governance.provenance.environment`.
    model : Model, optional
        The model the run names (default: :func:`spec_model` of the stored spec).
    """
    record, spec = stored.record, stored.spec
    new_digest = output_digest(result)
    differing = tuple(name for name, arr in result_view(result)["outputs"].items()
                      if digest(arr, root=f"outputs.{name}") != record.output_digests.get(name))
    model = spec_model(spec) if model is None else model
    return ReproduceReport(
        run_id=stored.run_id if stored.run_id is not None else record.run_id,
        identical=new_digest == record.output_digest, recorded_digest=record.output_digest,
        reproduced_digest=new_digest, differing_outputs=differing,
        signature_ok=True, inputs_ok=True,  # checked before executing (else RunIntegrityError)
        model_changed="sha256:" + model.digest() != record.model_digest,
        environment_differences=tuple(environment_differences(record, env)))
