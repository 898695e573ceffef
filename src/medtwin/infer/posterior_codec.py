"""A :class:`~medtwin.infer.posterior.Posterior` as JSON-ready content, and back.

The model is stored by reference (:func:`medtwin.models.model_reference`:
name, digest, description), never by value: loading resolves a library model
by name and verifies the digest, or takes ``model=`` (a user-defined model,
digest verified too).  Everything else (prior, mean, covariance, draws, data
batches, status, diagnostics) is stored so that the loaded posterior predicts
bit for bit like the saved one.

Examples
--------
>>> from medtwin.io.population_file import load_population, shipped_population_path
>>> from medtwin.infer.posterior import Posterior
>>> pop = load_population(shipped_population_path("vancomycin_goti2018"))
>>> post = Posterior.from_prior(pop.prior_for({"CRCL": 60.0, "WT": 75.0, "DIAL": 0.0}))
>>> back = posterior_from_dict(posterior_to_dict(post))
>>> back.model is post.model, back.mean.tolist() == post.mean.tolist()
(True, True)
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from medtwin.core.events import DoseEvent, Regimen
from medtwin.core.observation import ResidualError
from medtwin.core.population import IndividualPrior
from medtwin.errors import DataError
from medtwin.models import model_reference, resolve_model

__all__ = ["FORMAT", "posterior_from_dict", "posterior_to_dict", "regimen_from_list", "regimen_to_list"]

FORMAT = "medtwin-posterior/1"


def regimen_to_list(regimen: Regimen) -> list[dict]:
    """Every dose event of ``regimen`` as a mapping of its fields."""
    return [{k: getattr(e, k) for k in DoseEvent.__dataclass_fields__} for e in regimen.events]


def regimen_from_list(events) -> Regimen:
    """The regimen written by :func:`regimen_to_list`."""
    return Regimen(tuple(DoseEvent(**e) for e in events))


def _array(value) -> Any:
    return None if value is None else np.asarray(value, dtype=float).tolist()


def _jsonable(value):
    if isinstance(value, np.ndarray):
        return {"__array__": value.tolist()}
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value


def _restored(value):
    if isinstance(value, Mapping):
        if set(value) == {"__array__"}:
            return np.asarray(value["__array__"], dtype=float)
        return {k: _restored(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_restored(v) for v in value]
    return value


def _residual_dict(r: ResidualError) -> dict:
    return {"model": r.model, "additive": r.additive, "proportional": r.proportional, "output": r.output,
            "unit": r.unit}


def _data_dict(d) -> dict:
    return {"regimen": regimen_to_list(d.regimen), "times": _array(d.times), "values": _array(d.values),
            "covariates": {k: float(v) for k, v in d.covariates.items()}, "output": d.output,
            "blq": None if d.blq is None else np.asarray(d.blq, dtype=bool).tolist(), "lloq": _array(d.lloq),
            "pre_dose": None if d.pre_dose is None else np.asarray(d.pre_dose, dtype=bool).tolist(),
            "patient": d.patient}


def _data_from(data: Mapping[str, Any]):
    from medtwin.core.data import PatientData

    fields = dict(data)
    fields["regimen"] = regimen_from_list(fields["regimen"])
    return PatientData(**fields)


def posterior_to_dict(posterior) -> dict:
    """JSON-ready content of ``posterior`` (see the module docstring)."""
    prior = posterior.prior
    return {
        "format": FORMAT,
        "model": model_reference(posterior.model),
        "prior": {"model": prior.model, "parameters": list(prior.parameters), "log_mean": _array(prior.log_mean),
                  "covariance": _array(prior.covariance), "fixed": {k: float(v) for k, v in prior.fixed.items()},
                  "residual": _residual_dict(prior.residual), "units": dict(prior.units)},
        "method": posterior.method,
        "parameters": list(posterior.parameters),
        "mean": _array(posterior.mean),
        "covariance": _array(posterior.covariance),
        "draws": _array(posterior.draws),
        "data": [_data_dict(d) for d in posterior.data],
        "prior_mean": _array(posterior.prior_mean),
        "prior_covariance": _array(posterior.prior_covariance),
        "status": posterior.status,
        "message": posterior.message,
        "diagnostics": _jsonable(dict(posterior.diagnostics)),
    }


def posterior_from_dict(data: Mapping[str, Any], *, model=None):
    """The posterior written by :func:`posterior_to_dict`.

    Parameters
    ----------
    data : mapping
    model : Model, optional
        The model of a posterior built on a user-defined model; a library model is resolved by name.

    Raises
    ------
    DataError
        A foreign format or a missing field.
    ModelError
        Unknown model without ``model=``, or a digest that differs from the stored one.
    """
    from medtwin.infer.posterior import Posterior

    if not isinstance(data, Mapping) or data.get("format") != FORMAT:
        raise DataError(f"stored posterior: format {getattr(data, 'get', lambda k: None)('format')!r} is not "
                        f"{FORMAT!r}")
    try:
        resolved = resolve_model(data["model"], model)
        p = data["prior"]
        prior = IndividualPrior(p["model"], tuple(p["parameters"]), np.asarray(p["log_mean"], dtype=float),
                                np.asarray(p["covariance"], dtype=float), dict(p["fixed"]),
                                ResidualError(**p["residual"]), dict(p.get("units", {})))
        draws = None if data["draws"] is None else np.asarray(data["draws"], dtype=float)
        return Posterior(model=resolved, prior=prior, method=data["method"], parameters=tuple(data["parameters"]),
                         mean=np.asarray(data["mean"], dtype=float), covariance=np.asarray(data["covariance"], float),
                         draws=draws, data=tuple(_data_from(d) for d in data["data"]),
                         prior_mean=np.asarray(data["prior_mean"], dtype=float),
                         prior_covariance=np.asarray(data["prior_covariance"], dtype=float),
                         status=data["status"], message=data["message"],
                         diagnostics=_restored(data.get("diagnostics", {})))
    except KeyError as exc:
        raise DataError(f"stored posterior: field {exc} is missing") from None
