"""Mechanistic SCM nodes: a structural equation that is a medtwin PK simulation.

:class:`PKExposure` is the equation of an exposure variable (e.g. vancomycin AUC24 in mg·h/L)::

    covariates (SCM variables) ─► typical PK parameters (Population: θ, covariate effects)
                                   × exp(η),  η ~ N(0, Ω)  (the node's exogenous noise)
    dose (an SCM variable, mg) ─► Regimen.every(interval, dose, infusion) ─► simulate ─► exposure

Its noise is the patient's η vector (``Noise.mvnormal(Ω)``), so the node is a genuine structural equation:
the same unit (same η) under do(dose = d) gets the exposure the model predicts for d.  A PD/outcome
variable downstream is an ordinary equation of the exposure (e.g. a logistic AKI risk).  Counterfactuals
through the node are refused: several η components cannot be recovered from one exposure value.

For linear models (``Model.is_linear``) the exposure is proportional to the dose (superposition), so each
unit is simulated once with a reference dose and scaled; nonlinear models are simulated with every unit's
own regimen.

Examples
--------
>>> from medtwin.core.population import CovariateEffect, Population, Theta
>>> from medtwin.core.observation import ResidualError
>>> pop = Population(name="demo", model="pk1_iv",
...     thetas=(Theta("TVCL", 5.0, "L/h", lower=0.0), Theta("TVV", 50.0, "L", lower=0.0)),
...     typical={"CL": "TVCL", "V": "TVV"},
...     effects=(CovariateEffect("CL", "CRCL", "power", 0.8, reference=100.0),),
...     iiv=("CL",), omega=((0.09,),), residual=ResidualError("additive", additive=1.0))
>>> node = PKExposure(pop, covariates={"CRCL": "crcl"}, dose="dose", interval=24.0, n_doses=10,
...                   window=(192.0, 216.0))
>>> scm = SCM([Variable("crcl", Linear({}, intercept=100.0), Noise.normal(0.0)),
...            Variable("dose", Linear({}, intercept=1000.0)),
...            Variable("auc", node, node.noise(), unit="mg·h/L")])
>>> world = scm.do(dose=2000.0).sample(1, seed=0, frame=False)
>>> cl = 5.0 * np.exp(scm.noise(1, 0)["auc"][0, 0])   # this unit's clearance, L/h
>>> bool(abs(world["auc"][0] - 2000.0 / cl) < 0.01 * 2000.0 / cl)   # steady state: AUC24 = daily dose / CL
True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

import numpy as np

from medtwin.causal.scm import Equation, Linear, Noise, SCM, Variable  # noqa: F401  (doctest names)
from medtwin.core.events import Regimen
from medtwin.core.population import Population
from medtwin.core.simulate import simulate
from medtwin.errors import ModelError

__all__ = ["PKExposure"]

EXPOSURES = ("auc", "cmax", "cmin", "cavg")


@dataclass(frozen=True)
class PKExposure(Equation):
    """Structural equation exposure = simulate(population model, covariates, η, regimen(dose)).

    Parameters
    ----------
    population : Population
        The population model (typical values, covariate effects, Ω); its ``model`` names a library model.
    covariates : mapping
        Population covariate name -> SCM variable name (a parent) or a fixed number (e.g. ``{"DIAL": 0.0}``).
    dose : str or float
        SCM variable holding the dose per administration in mg (a parent, so do(dose=...) acts), or a
        fixed dose.
    interval : float
        Dosing interval, h.
    n_doses : int
        Number of doses from t = 0.
    infusion : float, optional
        Infusion duration, h (None: bolus).
    window : (float, float)
        Exposure window [t0, t1] in h (e.g. the last 24 h of the regimen for AUC24).
    exposure : {"auc", "cmax", "cmin", "cavg"}
        AUC over the window (mg·h/L, trapezoid on a ``step`` h grid), the max / min / mean concentration
        (mg/L).
    output : str, optional
        Model output (default: the model's first output, a concentration in mg/L).
    step : float
        Grid spacing in h (0.05 h: AUC within ~0.1 % of the exact integral for hour-long infusions).
    """

    population: Population
    covariates: Mapping[str, str | float]
    dose: str | float
    interval: float = 12.0
    n_doses: int = 14
    infusion: float | None = 1.0
    window: tuple[float, float] = (144.0, 168.0)
    exposure: str = "auc"
    output: str | None = None
    step: float = 0.05
    _model: object = field(default=None, repr=False, compare=False)

    def __post_init__(self):
        from medtwin.models import get_model

        if not isinstance(self.population, Population):
            raise ModelError(f"PKExposure: population must be a Population, got {type(self.population).__name__}")
        object.__setattr__(self, "covariates", MappingProxyType(dict(self.covariates)))
        missing = sorted(set(self.population.covariates) - set(self.covariates))
        if missing:
            raise ModelError(f"PKExposure: population {self.population.name} needs covariates {missing}; map each "
                             "to an SCM variable or a fixed number in covariates=")
        if self.exposure not in EXPOSURES:
            raise ModelError(f"PKExposure: exposure must be one of {EXPOSURES}, got {self.exposure!r}")
        t0, t1 = (float(t) for t in self.window)
        if not 0.0 <= t0 < t1:
            raise ModelError(f"PKExposure: window must be 0 <= t0 < t1 h, got {self.window}")
        object.__setattr__(self, "window", (t0, t1))
        if not (self.interval > 0 and self.n_doses >= 1 and self.step > 0):
            raise ModelError("PKExposure: interval and step must be > 0 h and n_doses >= 1")
        model = get_model(self.population.model)
        out = self.output or model.output_names[0]
        if out not in model.output_names:
            raise ModelError(f"PKExposure: model {model.name} has no output {out!r}; outputs: {model.output_names}")
        object.__setattr__(self, "output", out)
        object.__setattr__(self, "_model", model)

    @property
    def parents(self) -> tuple[str, ...]:  # type: ignore[override]
        names = [v for v in self.covariates.values() if isinstance(v, str)]
        if isinstance(self.dose, str):
            names.append(self.dose)
        return tuple(dict.fromkeys(names))

    def noise(self) -> Noise:
        """The node's exogenous noise: η ~ N(0, Ω) over the population's IIV parameters."""
        return Noise.mvnormal(self.population.omega, names=self.population.iiv)

    def _regimen(self, dose: float) -> Regimen:
        return Regimen.every(self.interval, "h", float(dose), "mg", n=int(self.n_doses), duration=self.infusion)

    def evaluate(self, values, u):
        u = np.asarray(u, dtype=float)
        n = u.shape[0]
        if u.ndim != 2 or u.shape[1] != len(self.population.iiv):
            raise ModelError(f"PKExposure: noise must have shape (n, {len(self.population.iiv)}) "
                             f"(η of {list(self.population.iiv)}), got {u.shape}")
        cov = {c: (np.broadcast_to(np.asarray(values[v], dtype=float), (n,)) if isinstance(v, str)
                   else np.full(n, float(v))) for c, v in self.covariates.items()}
        params = self.population.individual_parameters(cov, u)
        dose = np.asarray(values[self.dose], dtype=float) if isinstance(self.dose, str) else np.full(n, self.dose)
        dose = np.broadcast_to(dose, (n,))
        if np.any(~np.isfinite(dose)) or np.any(dose < 0):
            raise ModelError("PKExposure: doses must be finite and >= 0 mg")
        times = np.arange(self.window[0], self.window[1] + 0.5 * self.step, self.step)
        if self._model.is_linear:  # superposition: exposure ∝ dose
            trajectory = simulate(self._model, params, self._regimen(1.0), times, keep_states=False)
            conc = trajectory.output(self.output) * dose[:, None]
        else:
            regimens = [self._regimen(d) for d in dose]
            trajectory = simulate(self._model, params, regimens, times, keep_states=False)
            conc = trajectory.output(self.output)
        if self.exposure == "auc":
            return np.trapezoid(conc, times, axis=1)
        if self.exposure == "cmax":
            return conc.max(axis=1)
        if self.exposure == "cmin":
            return conc.min(axis=1)
        return np.trapezoid(conc, times, axis=1) / (times[-1] - times[0])

    def abduct(self, x, values):
        raise ModelError(f"the exposure's noise has {len(self.population.iiv)} components (η of "
                         f"{list(self.population.iiv)}), which one observed exposure cannot recover")

    def describe(self) -> str:
        return f"{self.exposure}[{self.window[0]:g}-{self.window[1]:g} h](simulate {self.population.model})"
