"""Forecast and recommend over several candidate priors (model averaging), as recorded, reproducible requests.

:class:`AveragedForecastRequest` and :class:`AveragedRecommendRequest` are a
:class:`~medtwin.workflows.requests.ForecastRequest` / ``RecommendRequest`` whose patient is personalized
under every population of ``candidates`` and weighted by the patient's levels
(:func:`medtwin.infer.model_averaging.personalize_averaged`); the forecast band and the dose search then
use the mixture.  ``population`` is the first candidate (what a single-model reader of the spec sees).

The stored spec is the single-model spec (operation ``forecast`` / ``recommend``) plus
``inputs["model_averaging"] = {"populations": [every candidate's to_dict()], "weighting", "mode"}``:
everything :func:`medtwin.workflows.reproduce` needs to execute the same fits and draws again, bit for bit.
Candidates are library models (the model each population names); a user-defined model is refused.

Examples
--------
>>> from medtwin.io.population_file import drug_populations
>>> from medtwin.core.data import PatientData
>>> from medtwin.core.events import Regimen
>>> data = PatientData(Regimen.every(12.0, "h", 1000.0, "mg", n=4, duration=1.0), [11.5, 35.5], [9.0, 12.5],
...                    {"CRCL": 60.0, "WT": 75.0, "DIAL": 0.0})
>>> r = forecast_request(drug_populations("vancomycin"), data, 24.0, open_data="synthetic")
>>> type(r).__name__, r.spec().inputs["model_averaging"]["weighting"]
('AveragedForecastRequest', 'laplace')
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

from medtwin.errors import DataError, ModelError
from medtwin.workflows.requests import SPEC_EXTENSIONS, ForecastRequest, RecommendRequest

__all__ = ["AveragedForecastRequest", "AveragedRecommendRequest", "averaged_from_spec", "forecast_request",
           "recommend_request"]


def _default_weighting() -> str:
    from medtwin.infer.model_averaging import DEFAULT_WEIGHTING

    return DEFAULT_WEIGHTING


@dataclass(frozen=True, eq=False)
class _Averaged:
    """Fields, checks, spec and execution shared by the averaged requests; mixed in before the request class
    (its fields come after the request's, its ``__post_init__``/``spec`` extend the request's)."""

    averaging_key: ClassVar[str] = "model_averaging"

    candidates: tuple = ()
    weighting: str = dataclasses.field(default_factory=_default_weighting)
    mode: str = "average"
    sources: tuple = ()

    def __post_init__(self):
        super().__post_init__()
        self._check_averaging()

    def spec(self):
        return self._with_averaging(super().spec())

    def _check_averaging(self) -> None:
        from medtwin.infer.model_averaging import MODES, WEIGHTINGS, check_candidates
        from medtwin.models import get_model

        candidates = tuple(self.candidates)
        object.__setattr__(self, "candidates", candidates)
        if self.method != "laplace":
            raise DataError(f"model averaging personalizes each candidate by MAP + Laplace; --method {self.method} "
                            "is for one population file")
        if self.weighting not in WEIGHTINGS:
            raise DataError(f"model weighting must be one of {WEIGHTINGS}, not {self.weighting!r}")
        if self.mode not in MODES:
            raise DataError(f"model averaging mode must be one of {MODES}, not {self.mode!r}")
        if not candidates or candidates[0] is not self.population:
            raise DataError("an averaged request's population is its first candidate")
        check_candidates(candidates, list(self.sources) or None)
        for p in candidates:
            try:
                get_model(p.model)
            except ModelError as exc:
                raise ModelError(f"population {p.name}: model averaging uses library models only ({exc})") from None

    def personalize_averaged(self, engine: str = "jax"):
        from medtwin.infer.model_averaging import personalize_averaged

        return personalize_averaged(self.candidates, self.data, weighting=self.weighting, mode=self.mode,
                                    sources=list(self.sources) or None, engine=engine)

    def _with_averaging(self, spec):
        extra = {"populations": [p.to_dict() for p in self.candidates], "weighting": self.weighting,
                 "mode": self.mode}
        return dataclasses.replace(spec, inputs={**spec.inputs, self.averaging_key: extra})


@dataclass(frozen=True, eq=False)
class AveragedForecastRequest(_Averaged, ForecastRequest):
    """A forecast on the model-averaged posterior over ``candidates`` (Populations, >= 2, one drug)."""


@dataclass(frozen=True, eq=False)
class AveragedRecommendRequest(_Averaged, RecommendRequest):
    """A dose recommendation on the model-averaged posterior over ``candidates`` (Populations, >= 2, one drug)."""


def _averaging(populations, weighting, mode, sources) -> dict:
    populations = list(populations)
    return {"candidates": tuple(populations), "weighting": weighting or _default_weighting(), "mode": mode,
            "sources": tuple(str(s) for s in (sources or ()))}


def forecast_request(populations, data, hours: float, *, weighting: str | None = None, mode: str = "average",
                     sources=None, **options):
    """``ForecastRequest.continued`` for one population; :class:`AveragedForecastRequest` for several."""
    populations = list(populations)
    if len(populations) == 1:
        return ForecastRequest.continued(populations[0], data, hours, **options)
    base = ForecastRequest.continued(populations[0], data, hours, **options)
    return AveragedForecastRequest(**_fields(base), **_averaging(populations, weighting, mode, sources))


def recommend_request(populations, data, *, weighting: str | None = None, mode: str = "average", sources=None,
                      **options):
    """``RecommendRequest`` for one population; :class:`AveragedRecommendRequest` for several."""
    populations = list(populations)
    if len(populations) == 1:
        return RecommendRequest(populations[0], data, **options)
    return AveragedRecommendRequest(populations[0], data, **options,
                                    **_averaging(populations, weighting, mode, sources))


def _fields(request) -> dict:
    return {f.name: getattr(request, f.name) for f in dataclasses.fields(request)}


def averaged_from_spec(spec, request):
    """The averaged request of a stored spec whose single-model part rebuilt as ``request``."""
    from medtwin.core.population import Population

    stored = spec.inputs[_Averaged.averaging_key]
    populations = [Population.from_dict(p) for p in stored["populations"]]
    fields = {**_fields(request), "population": populations[0]}
    cls = AveragedForecastRequest if isinstance(request, ForecastRequest) else AveragedRecommendRequest
    return cls(**{**fields, "candidates": tuple(populations), "weighting": stored["weighting"],
                  "mode": stored["mode"], "sources": ()})


SPEC_EXTENSIONS[_Averaged.averaging_key] = averaged_from_spec
