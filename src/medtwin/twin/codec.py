"""A twin as plain JSON-ready data and back, and a twin built from a specification.

``twin_to_dict`` / ``twin_from_dict`` keep everything needed to continue the
twin exactly where it was: the model by reference (name, digest, description:
a library model is resolved by name, a user-defined one is passed as
``model=``; the digest is checked either way), the posterior
(:mod:`medtwin.infer.posterior_codec`), the state space, the observer and its settings, residual errors, inputs,
the belief and the checkpoints (floats round-trip exactly through Python's
shortest repr), the history with its innovations, rejections and the keys
already seen.  Alarms are recomputed from the history.

``twin_from_spec`` builds a new twin from a specification (a mapping, e.g. a
YAML file; see the ``medtwin replay`` documentation)::

    model: icing
    parameters: {SI: 0.03}            # reference values (model units); others typical
    estimated: [SI]                   # tracked as log random walks
    parameter_drift: {SI: 0.04}       # (log units)^2 per hour
    state_noise: {GLUCOSE: 0.5}       # (state unit)^2 per hour
    initial_sd: {SI: 0.5}             # log-scale SD of estimated parameters; state SDs in state units
    observer: {kind: ukf}             # ukf (alpha, beta, kappa, transition) | ekf | particle (n_particles, seed)
    errors: {G: {model: proportional, proportional: 0.06}}
    settings: {checkpoint_every_h: 1, rewind_h: 24, substances: {G: glucose}}

Examples
--------
>>> spec = {"model": "pk1_iv", "parameters": {"CL": 2.0, "V": 20.0}, "estimated": ["CL"],
...         "initial_sd": {"CL": 0.3}, "errors": {"C": {"model": "additive", "additive": 0.5}}}
>>> twin = twin_from_spec(spec)
>>> twin_from_dict(twin_to_dict(twin)).belief.cov.tolist() == twin.belief.cov.tolist()
True
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from medtwin.assimilate.beliefs import Innovation, belief_from_dict
from medtwin.assimilate.observers import OBSERVERS
from medtwin.assimilate.statespace import StateSpace
from medtwin.core.stream import Measurement, Rejection
from medtwin.core.events import DoseEvent, Regimen
from medtwin.core.observation import ResidualError
from medtwin.errors import DataError
from medtwin.models import model_reference, resolve_model

FORMAT = "medtwin-twin/2"
#: Formats :func:`twin_from_dict` reads (/1: a live twin, the model by name and digest in ``space``).
READABLE = ("medtwin-twin/1", FORMAT)
_OBSERVER_FIELDS = {"ukf": ("alpha", "beta", "kappa", "transition"), "ekf": (), "particle": ("n_particles", "resample_below",
                                                                                  "nonnegative")}


def _space_dict(space: StateSpace) -> dict:
    ref = model_reference(space.model)
    return {"model": ref["name"], "model_digest": ref["digest"], "model_description": ref["description"],
            "parameters": dict(zip(space.model.parameter_names, space.theta.tolist())),
            "estimated": list(space.estimated),
            "state_noise": dict(zip(space.model.state_names, space.state_noise.tolist())),
            "parameter_drift": dict(zip(space.estimated, space.parameter_drift.tolist())),
            "max_step": space.max_step}


def _measurement_dict(m: Measurement) -> dict:
    return {k: getattr(m, k) for k in Measurement.__dataclass_fields__}


def _detector_dict(state) -> dict | None:
    from dataclasses import asdict

    return None if state is None else asdict(state)


def _detector_from(data):
    from medtwin.assimilate.detectors import CusumState

    return None if data is None else CusumState(**data)


def twin_to_dict(twin) -> dict:
    """JSON-ready content of a twin (see the module docstring).

    The model is stored by reference (name, digest, description); a live twin's observer part and a
    treatment twin's posterior (:mod:`medtwin.infer.posterior_codec`) are stored when present.
    """
    from dataclasses import asdict

    from medtwin.infer.posterior_codec import posterior_to_dict, regimen_to_list

    settings = asdict(twin.settings)
    settings["plausible"] = {k: list(v) for k, v in settings["plausible"].items()}
    out = {"format": FORMAT, "model": model_reference(twin.model),
           "posterior": None if twin.posterior is None else posterior_to_dict(twin.posterior),
           "inputs": regimen_to_list(twin.inputs), "settings": settings, "patient": twin.patient,
           "rejected": [{"reason": r.reason, "row": r.row,
                         "measurement": _measurement_dict(r.item) if isinstance(r.item, Measurement) else None,
                         "raw": None if isinstance(r.item, Measurement)
                         else {str(k): str(v) for k, v in dict(r.item).items()}} for r in twin.rejected],
           "seen": sorted([list(k) for k in twin.seen], key=repr)}
    if twin.observer is None:
        return out
    observer = twin.observer
    out.update({
        "space": _space_dict(observer.space),
        "observer": {"kind": observer.name, **{f: getattr(observer, f) for f in _OBSERVER_FIELDS[observer.name]}},
        "errors": {k: {"model": e.model, "additive": e.additive, "proportional": e.proportional, "unit": e.unit}
                   for k, e in twin.errors.items()},
        "belief": twin.belief.to_dict(),
        "checkpoints": [{"index": c.index, "belief": c.belief.to_dict(), "detector": _detector_dict(c.detector)}
                        for c in twin.checkpoints],
        "detector_state": _detector_dict(twin.detector_state),
        "reference_variance": None if twin.reference_variance is None else list(twin.reference_variance),
        "history": [{"measurement": _measurement_dict(e.measurement), "status": e.status,
                     "regime_change": e.regime_change,
                     "innovation": {k: getattr(e.innovation, k) for k in Innovation.__dataclass_fields__}}
                    for e in twin.history],
    })
    return out


def space_from_spec(data: Mapping[str, Any], model=None) -> StateSpace:
    """The state space of a twin specification (or a stored twin's ``space``), model digest checked.

    ``model`` (a Model object) is used instead of the library model named in ``data`` (a user-defined model);
    its name and, when ``data`` holds one, its digest must match.
    """
    model = resolve_model({"name": data["model"], "digest": data.get("model_digest")}, model)
    return StateSpace.build(model, data.get("parameters"), estimated=tuple(data.get("estimated", ())),
                            state_noise=data.get("state_noise"), parameter_drift=data.get("parameter_drift"),
                            max_step=data.get("max_step"))


def _observer_from(space: StateSpace, data: Mapping[str, Any]):
    data = dict(data or {"kind": "ukf"})
    kind = data.pop("kind", "ukf")
    data.pop("seed", None)
    if kind not in OBSERVERS:
        raise DataError(f"observer.kind must be one of {sorted(OBSERVERS)}, not {kind!r}")
    unknown = set(data) - set(_OBSERVER_FIELDS[kind])
    if unknown:
        raise DataError(f"observer: unknown setting(s) {sorted(unknown)} for {kind}")
    return OBSERVERS[kind](space, **data)


def _errors_from(data: Mapping[str, Any], space: StateSpace) -> dict:
    errors = {}
    for output, spec in dict(data).items():
        spec = dict(spec)
        spec.setdefault("unit", space.model.output(output).unit)
        errors[output] = ResidualError(spec.pop("model"), output=output, **spec)
    return errors


def _settings_from(data: Mapping[str, Any] | None):
    from medtwin.twin import TwinSettings

    from medtwin.assimilate.detectors import Cusum

    data = dict(data or {})
    detector = data.get("regime_detector")
    if detector is not None and not isinstance(detector, Cusum):
        if not isinstance(detector, Mapping) or set(detector) - {"k", "h"}:
            raise DataError(f"twin settings: regime_detector must be a mapping with k and h, got {detector!r}")
        data["regime_detector"] = Cusum(**{k: float(v) for k, v in detector.items()})
    if "plausible" in data:
        data["plausible"] = {k: tuple(v) for k, v in data["plausible"].items()}
    try:
        return TwinSettings(**data)
    except TypeError as exc:
        raise DataError(f"twin settings: {exc}") from None


def twin_from_dict(data: Mapping[str, Any], *, model=None):
    """Restore a twin written by :func:`twin_to_dict` (raises DataError for a foreign format or a changed model).

    ``model``: the Model object of a twin built on a user-defined model (not in the library); its digest must
    equal the stored one (ModelError otherwise).
    """
    from dataclasses import replace

    from medtwin.assimilate.alarms import evaluate
    from medtwin.infer.posterior_codec import posterior_from_dict
    from medtwin.twin import Checkpoint, Entry, Twin

    if data.get("format") not in READABLE:
        raise DataError(f"stored twin: format {data.get('format')!r} is not one of {READABLE}")
    if data.get("model") is not None:
        model = resolve_model(data["model"], model)
    posterior = None if data.get("posterior") is None else posterior_from_dict(data["posterior"], model=model)
    inputs = Regimen(tuple(DoseEvent(**e) for e in data["inputs"]))
    settings = _settings_from(data["settings"])
    rejected = tuple(Rejection(Measurement(**r["measurement"]) if r["measurement"] else r["raw"], r["reason"], r["row"])
                     for r in data["rejected"])
    seen = frozenset(tuple(k) for k in data["seen"])
    if data.get("space") is None:
        return Twin(posterior=posterior, model=model, inputs=inputs, settings=settings, patient=data.get("patient"),
                    rejected=rejected, seen=seen)
    space = space_from_spec(data["space"], model)
    observer = _observer_from(space, data["observer"])
    history = tuple(Entry(Measurement(**e["measurement"]), Innovation(**e["innovation"]), e["status"],
                          e.get("regime_change")) for e in data["history"])
    twin = Twin(observer=observer, errors=_errors_from(data["errors"], space), inputs=inputs,
                belief=belief_from_dict(data["belief"]), history=history,
                checkpoints=tuple(Checkpoint(c["index"], belief_from_dict(c["belief"]), _detector_from(c.get("detector")))
                                  for c in data["checkpoints"]),
                detector_state=_detector_from(data.get("detector_state")),
                reference_variance=None if data.get("reference_variance") is None else tuple(data["reference_variance"]),
                rejected=rejected, seen=seen, settings=settings, patient=data.get("patient"), posterior=posterior)
    return replace(twin, alarms=evaluate(twin))


#: Largest |number| accepted in a twin specification (as in a dataset: medtwin.io.nonmem.MAX_VALUE).
_MAX_SPEC_VALUE = 1e9
_NUMBER_MAPS = ("parameters", "state_noise", "parameter_drift", "initial_sd", "initial_state")


def _spec_number(value, where: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
        raise DataError(f"twin spec: {where} must be a number, got {value!r}")
    if abs(value) > _MAX_SPEC_VALUE:
        raise DataError(f"twin spec: {where} = {value:g} is beyond the largest accepted magnitude {_MAX_SPEC_VALUE:g}")


def _check_shapes(spec: Mapping[str, Any]) -> None:
    """Each field of a twin specification has the right kind of value (names the field), before anything is built."""
    if not isinstance(spec["model"], str):
        raise DataError(f"twin spec: model must be a model name (text), got {spec['model']!r}")
    for name in (*_NUMBER_MAPS, "observer", "errors", "settings"):
        value = spec.get(name)
        if value is not None and not isinstance(value, Mapping):
            raise DataError(f"twin spec: {name} must be a mapping (NAME: value), got {type(value).__name__}")
    for name in _NUMBER_MAPS:
        for key, value in dict(spec.get(name) or {}).items():
            _spec_number(value, f"{name}.{key}")
    for output, value in dict(spec["errors"] or {}).items():
        if not isinstance(value, Mapping) or "model" not in value:
            raise DataError(f"twin spec: errors.{output} must be a mapping with at least 'model' "
                            "(e.g. {model: proportional, proportional: 0.1})")
    estimated = spec.get("estimated", ())
    if not isinstance(estimated, (list, tuple)) or not all(isinstance(e, str) for e in estimated):
        raise DataError(f"twin spec: estimated must be a list of parameter names, got {estimated!r}")
    for name in ("max_step", "start_time"):
        if spec.get(name) is not None:
            _spec_number(spec[name], name)


def twin_from_spec(spec: Mapping[str, Any], *, inputs: Regimen | None = None, patient: str | None = None,
                   model=None):
    """A new twin from a specification mapping (see the module docstring); errors name the field.

    ``model``: a user-defined Model object to use for the model named in ``spec`` (names must match).
    """
    from medtwin.twin import Twin

    spec = dict(spec)
    for required in ("model", "errors"):
        if required not in spec:
            raise DataError(f"twin spec: field {required!r} is required")
    known = {"model", "parameters", "estimated", "state_noise", "parameter_drift", "max_step", "initial_sd",
             "initial_state", "observer", "errors", "settings", "start_time"}
    unknown = set(spec) - known
    if unknown:
        raise DataError(f"twin spec: unknown field(s) {sorted(unknown)}; known: {sorted(known)}")
    _check_shapes(spec)
    space = space_from_spec(spec, model)
    observer = _observer_from(space, spec.get("observer"))
    mean = space.initial_mean()
    for name, value in dict(spec.get("initial_state") or {}).items():
        if name not in space.model.state_names:
            raise DataError(f"twin spec: initial_state has unknown state {name!r}; states: {list(space.model.state_names)}")
        mean[space.model.state_names.index(name)] = float(value)
    sd = np.zeros(space.n)
    names = list(space.model.state_names) + list(space.estimated)
    for name, value in dict(spec.get("initial_sd") or {}).items():
        if name not in names:
            raise DataError(f"twin spec: initial_sd has unknown name {name!r}; expected one of {names}")
        sd[names.index(name)] = float(value)
    seed = int(dict(spec.get("observer") or {}).get("seed", 0))
    return Twin.create(observer, _errors_from(spec["errors"], space), mean=mean, cov=np.diag(sd**2),
                       time=float(spec.get("start_time", 0.0)), inputs=inputs, settings=_settings_from(spec.get("settings")),
                       patient=patient, seed=seed)
