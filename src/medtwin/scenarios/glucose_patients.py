"""Synthetic ICU patients for the glycaemic-control twin: sampling, regimens and a "truth" simulator.

A :class:`SyntheticICUPatient` is one virtual critically ill patient: a model
of :mod:`medtwin.models.glucose` (``bergman_insulin`` by default, so that an
ICING twin is tested under deliberate misspecification), individual parameter
values, and an hour-by-hour insulin-sensitivity path ``SI(t) = SI · m_k`` for
t in [k, k + 1) h.  :func:`simulate_truth` simulates it (SI as a
piecewise-constant parameter of :func:`medtwin.core.simulate.simulate`) and adds
blood-glucose measurement error.

Distributions (documented assumptions, each configurable):

- **Baseline insulin sensitivity** SI: log-normal, median the model's typical
  value, log-SD ``SI_OMEGA`` = 0.5.  For ICING (median 3e-4 L/(mU·min)) this
  puts ≈ 85 % of patients below 0.5e-3 L/(mU·min), matching the report that
  over 80 % of SI values were below 0.5e-3 L/(mU·min) in the first 18 h of ICU
  stay (Pretty CG et al. Reducing the impact of insulin sensitivity variability
  on glycaemic outcomes using separate stochastic models within the STAR
  glycaemic protocol. BioMed Eng OnLine 2014;13:43, doi:10.1186/1475-925X-13-43).
- **Hour-to-hour variability**: ICU SI varies hour to hour (Lin J et al.
  Stochastic modelling of insulin sensitivity variability in critical care.
  Biomed Signal Process Control 2006;1:229-242; Pretty CG et al. Variability of
  insulin sensitivity during the first 4 days of critical illness. Ann Intensive
  Care 2012;2:17, doi:10.1186/2110-5820-2-17, who report hour-to-hour percent
  changes of SI, largest on day 1).  Here log m follows a mean-reverting AR(1)
  walk z_0 = 0, z_{k+1} = φ·z_k + σ·ε_k, ε ~ N(0, 1), with σ = ``SI_STEP_SD`` =
  0.2 (hour-to-hour changes of roughly ±20 %; an assumption of the order of
  the published spread, not a fitted value) and φ = ``SI_REVERSION`` = 0.95
  (about a 20-h memory, which keeps SI within a plausible range over days).
- **Glucose production**: the ICING population EGP (1.16 mmol/min) is not
  identifiable and is known to be elevated in severe insulin resistance (Yahia A
  et al. J Diabetes Sci Technol 2022;16(5):1208-1219); we draw EGP (ICING) or the
  stress basal glucose Gb (Bergman) log-normally with log-SD ``EGP_OMEGA`` = 0.2
  (assumption), and ICING's starting glucose G0 with log-SD 0.2 around 8 mmol/L.
- **Measurement error**: y = G·(1 + cv·ε₁) + sd·ε₂ with cv =
  ``MEASUREMENT_CV`` = 0.05 (blood-gas/laboratory-grade analysers; ISO
  15197:2013 lets meters err up to ±15 % for 95 % of readings ≥ 5.55 mmol/L,
  i.e. a CV up to ≈ 7.5 %: pass ``measurement_cv=0.07`` for glucometers) and
  sd = 0 mmol/L by default; readings are floored at 0.

Examples
--------
>>> import numpy as np
>>> patients = sample_icu_patients(2, hours=6, seed=1)
>>> patients[0].model, patients[0].si_multipliers.shape
('bergman_insulin', (6,))
>>> regimen = icu_regimen(6, insulin_u_per_h=2.0, enteral_g_per_h=3.0)
>>> truth = simulate_truth(patients[0], regimen, np.arange(0.0, 6.5, 1.0))
>>> truth.glucose_true.shape, bool(np.all((truth.glucose_true > 2) & (truth.glucose_true < 15)))
((7,), True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from medtwin.core.events import DoseEvent, Regimen
from medtwin.errors import DataError, ModelError, ParameterError
from medtwin.models.glucose import MMOL_PER_G_GLUCOSE

#: Log-SD of the baseline insulin sensitivity between patients (assumption, see module docstring).
SI_OMEGA = 0.5
#: Log-SD of endogenous glucose production (ICING EGP) or stress basal glucose (Bergman Gb) between patients.
EGP_OMEGA = 0.2
#: Log-SD of ICING's starting glucose G0 between patients.
G0_OMEGA = 0.2
#: Innovation SD σ of the hourly AR(1) walk of log SI.
SI_STEP_SD = 0.2
#: Autoregression φ of the hourly walk of log SI (1: pure random walk).
SI_REVERSION = 0.95
#: Proportional blood-glucose measurement error (coefficient of variation).
MEASUREMENT_CV = 0.05
#: Additive blood-glucose measurement error SD, mmol/L.
MEASUREMENT_SD = 0.0

GLUCOSE_MODELS = ("bergman_insulin", "icing")


@dataclass(frozen=True, eq=False)
class SyntheticICUPatient:
    """One virtual ICU patient.

    Attributes
    ----------
    id : int
        Patient number (0-based within a sample).
    model : str
        Library model name, ``"bergman_insulin"`` or ``"icing"``.
    parameters : mapping of str to float
        Individual parameter values (model units; the baseline SI included).
    si_multipliers : ndarray, shape (hours,)
        Factor m_k on SI during hour [k, k + 1) h; m_0 = 1.
    measurement_cv : float
        Proportional measurement error (fraction).
    measurement_sd : float
        Additive measurement error, mmol/L.
    seed : int
        Seed of this patient's measurement-noise stream.
    """

    id: int
    model: str
    parameters: Mapping[str, float]
    si_multipliers: np.ndarray
    measurement_cv: float = MEASUREMENT_CV
    measurement_sd: float = MEASUREMENT_SD
    seed: int = 0

    @property
    def hours(self) -> int:
        """Number of hours with a defined insulin sensitivity."""
        return int(len(self.si_multipliers))

    def si_at(self, t) -> np.ndarray:
        """Insulin sensitivity (model unit of ``SI``) in effect at times ``t`` h, shape like ``t``."""
        k = np.clip(np.floor(np.asarray(t, dtype=float)).astype(int), 0, self.hours - 1)
        return self.parameters["SI"] * self.si_multipliers[k]


@dataclass(frozen=True, eq=False)
class TruthResult:
    """What :func:`simulate_truth` returns.

    Attributes
    ----------
    times : ndarray, shape (n_times,)
        Output times, h.
    glucose_true : ndarray, shape (n_times,)
        Plasma glucose without error, mmol/L.
    glucose_measured : ndarray, shape (n_times,)
        Glucose with measurement error, mmol/L.
    states : ndarray, shape (n_times, 5)
        Model states at the output times (units of the model's states).
    si : ndarray, shape (n_times,)
        Insulin sensitivity in effect at each time (model unit).
    """

    times: np.ndarray
    glucose_true: np.ndarray
    glucose_measured: np.ndarray
    states: np.ndarray
    si: np.ndarray


def _model(name: str):
    from medtwin.models import get_model

    if name not in GLUCOSE_MODELS:
        raise ModelError(f"synthetic ICU patients use one of {GLUCOSE_MODELS}, got {name!r}")
    return get_model(name)


def si_walk(rng: np.random.Generator, hours: int, *, step_sd: float = SI_STEP_SD,
            reversion: float = SI_REVERSION) -> np.ndarray:
    """Hourly SI multipliers exp(z_k) of the AR(1) walk z_0 = 0, z_{k+1} = φ·z_k + σ·ε_k.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of the innovations ε_k ~ N(0, 1).
    hours : int
        Number of hours (length of the result).
    step_sd, reversion : float
        σ (log units per hour) and φ (0 < φ <= 1).

    Returns
    -------
    ndarray, shape (hours,)
        Multipliers, the first equal to 1.

    Examples
    --------
    >>> si_walk(np.random.default_rng(0), 3, step_sd=0.0)
    array([1., 1., 1.])
    """
    if hours < 1:
        raise DataError(f"hours must be >= 1, got {hours}")
    if not (step_sd >= 0 and math.isfinite(step_sd)):
        raise ParameterError(f"step_sd must be a finite number >= 0, got {step_sd}")
    if not (0 < reversion <= 1):
        raise ParameterError(f"reversion must be in (0, 1], got {reversion}")
    eps = rng.standard_normal(hours - 1)
    z = np.zeros(hours)
    for k in range(hours - 1):
        z[k + 1] = reversion * z[k] + step_sd * eps[k]
    return np.exp(z)


def sample_icu_patients(n: int, *, model: str = "bergman_insulin", hours: int = 72, seed: int = 0,
                        si_omega: float = SI_OMEGA, egp_omega: float = EGP_OMEGA,
                        si_step_sd: float = SI_STEP_SD, si_reversion: float = SI_REVERSION,
                        measurement_cv: float = MEASUREMENT_CV,
                        measurement_sd: float = MEASUREMENT_SD) -> list[SyntheticICUPatient]:
    """Draw ``n`` virtual ICU patients (distributions in the module docstring).

    Parameters
    ----------
    n : int
        Number of patients.
    model : {"bergman_insulin", "icing"}
        Model that generates the truth.
    hours : int
        Length of each patient's hourly SI path.
    seed : int
        Seed; the same seed gives the same patients (each patient has its own stream).
    si_omega, egp_omega : float
        Between-patient log-SDs of SI and of EGP (ICING) / Gb (Bergman).
    si_step_sd, si_reversion : float
        σ and φ of the hourly log-SI walk (see :func:`si_walk`).
    measurement_cv, measurement_sd : float
        Measurement error carried by every patient.

    Returns
    -------
    list of SyntheticICUPatient

    Examples
    --------
    >>> [round(p.parameters["SI"], 5) for p in sample_icu_patients(2, model="icing", hours=4, seed=3)]
    [0.02339, 0.0094]
    """
    if n < 0 or int(n) != n:
        raise DataError(f"n must be a non-negative integer, got {n}")
    if measurement_cv < 0 or measurement_sd < 0:
        raise ParameterError("measurement error SDs must be >= 0")
    m = _model(model)
    typical = {p.name: p.value for p in m.parameters}
    children = np.random.SeedSequence(seed).spawn(int(n))
    patients = []
    for k, child in enumerate(children):
        rng = np.random.default_rng(child)
        params = dict(typical)
        params["SI"] = typical["SI"] * math.exp(si_omega * rng.standard_normal())
        if model == "icing":
            params["EGP"] = typical["EGP"] * math.exp(egp_omega * rng.standard_normal())
            params["G0"] = typical["G0"] * math.exp(G0_OMEGA * rng.standard_normal())
        else:
            params["Gb"] = typical["Gb"] * math.exp(egp_omega * rng.standard_normal())
        multipliers = si_walk(rng, hours, step_sd=si_step_sd, reversion=si_reversion)
        m.parameter_table(params)  # raises ParameterError for a draw outside the bounds
        patients.append(SyntheticICUPatient(
            id=k, model=model, parameters=params, si_multipliers=multipliers,
            measurement_cv=float(measurement_cv), measurement_sd=float(measurement_sd),
            seed=int(child.generate_state(1)[0]),
        ))
    return patients


def _hourly(values, n_blocks: int, what: str) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if arr.ndim == 0:
        arr = np.full(n_blocks, float(arr))
    if arr.ndim != 1 or len(arr) != n_blocks:
        raise DataError(f"{what}: give a scalar or {n_blocks} values (one per block), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise DataError(f"{what}: rates must be finite and >= 0")
    return arr


def icu_regimen(hours: float, *, insulin_u_per_h=0.0, enteral_g_per_h=0.0, pn_mmol_per_h=0.0,
                change_every_h: float = 1.0, start: float = 0.0) -> Regimen:
    """Consecutive constant infusions of insulin, enteral feed and parenteral glucose.

    Parameters
    ----------
    hours : float
        Total duration, h.
    insulin_u_per_h : float or array_like, shape (n_blocks,)
        IV insulin, U/h (dosed into CMT 2 in mU: 1 U = 1000 mU).
    enteral_g_per_h : float or array_like, shape (n_blocks,)
        Enteral glucose (carbohydrate as glucose), g/h, into CMT 3 in mmol
        (1 g = 1000/180.156 mmol).
    pn_mmol_per_h : float or array_like, shape (n_blocks,)
        Parenteral nutrition / IV dextrose glucose, mmol/h, into CMT 1.
    change_every_h : float
        Block length, h; n_blocks = ceil(hours / change_every_h), the last may be shorter.
    start : float
        Time of the first block, h.

    Returns
    -------
    Regimen
        One DoseEvent per non-zero (block, route), ``amount = rate · duration``.

    Examples
    --------
    >>> r = icu_regimen(2, insulin_u_per_h=[1.0, 0.0], enteral_g_per_h=1.80156)
    >>> [(e.time, e.cmt, round(e.rate, 3)) for e in r.events]
    [(0.0, 2, 1000.0), (0.0, 3, 10.0), (1.0, 3, 10.0)]
    """
    if not (hours > 0 and math.isfinite(hours)):
        raise DataError(f"hours must be a finite number > 0, got {hours}")
    if not (change_every_h > 0 and math.isfinite(change_every_h)):
        raise DataError(f"change_every_h must be > 0, got {change_every_h}")
    if not (start >= 0 and math.isfinite(start)):
        raise DataError(f"start must be >= 0, got {start}")
    n_blocks = int(math.ceil(hours / change_every_h - 1e-12))
    routes = (
        (2, 1000.0 * _hourly(insulin_u_per_h, n_blocks, "insulin_u_per_h")),
        (3, MMOL_PER_G_GLUCOSE * _hourly(enteral_g_per_h, n_blocks, "enteral_g_per_h")),
        (1, _hourly(pn_mmol_per_h, n_blocks, "pn_mmol_per_h")),
    )
    events = []
    for k in range(n_blocks):
        t0 = k * change_every_h
        duration = min(change_every_h, hours - t0)
        for cmt, rates in routes:
            if rates[k] > 0:
                rate = float(rates[k])
                events.append(DoseEvent(time=float(start + t0), amount=rate * duration, cmt=cmt, rate=rate))
    return Regimen(tuple(events))


def path_times(times, hours: float) -> np.ndarray:
    """Output times (h) as a float array, checked: 1-D, finite, >= 0, non-decreasing, within the
    patient's ``hours`` of insulin-sensitivity path; a DataError names what is wrong.

    >>> path_times([0, 1.5], 2).tolist()
    [0.0, 1.5]
    """
    times = np.asarray(times, dtype=float)
    if times.ndim != 1 or times.size == 0 or not np.all(np.isfinite(times)):
        raise DataError("times must be a non-empty 1-D array of finite hours")
    if times[0] < 0 or np.any(np.diff(times) < 0):
        raise DataError("times must be >= 0 and non-decreasing")
    if times[-1] > hours:
        raise DataError(f"times reach {times[-1]} h but the patient's sensitivity path covers {hours} h")
    return times


def simulate_truth(patient: SyntheticICUPatient, regimen: Regimen | None, times, *, seed: int | None = None,
                   rtol: float = 1e-8, atol: float = 1e-8) -> TruthResult:
    """Integrate ``patient`` under ``regimen`` with hourly SI and add measurement error.

    One call of :func:`medtwin.core.simulate.simulate` (adaptive Dormand–Prince
    5(4), NONMEM semantics for the inputs) with SI a piecewise-constant
    parameter: ``SI · si_multipliers[k]`` from hour k on (``parameter_changes``).
    A glucose reading taken at the time of a bolus sees the pre-dose state.

    Parameters
    ----------
    patient : SyntheticICUPatient
    regimen : Regimen or None
        Insulin / nutrition inputs (see :func:`icu_regimen`).
    times : array_like, shape (n_times,)
        Output times, h, non-decreasing, within [0, patient.hours].
    seed : int, optional
        Seed of the measurement noise; default: the patient's own seed.
    rtol, atol : float
        Tolerances of the Dormand–Prince step controller (state units).

    Returns
    -------
    TruthResult

    Examples
    --------
    >>> p = sample_icu_patients(1, hours=2, seed=0)[0]
    >>> r = simulate_truth(p, None, [0.0, 2.0])
    >>> bool(np.allclose(r.glucose_true, p.parameters["Gb"]))
    True
    """
    from medtwin.core.simulate import simulate

    model = _model(patient.model)
    theta = model.parameter_table(dict(patient.parameters))[0]
    times = path_times(times, patient.hours)
    si = theta[model.parameter_names.index("SI")] * np.asarray(patient.si_multipliers, dtype=float)
    trajectory = simulate(model, theta[None, :], regimen if regimen is not None else Regimen(()), times,
                          pre_dose=[np.ones(len(times), bool)], method="dopri5", rtol=rtol, atol=atol,
                          parameter_changes={"SI": (np.arange(patient.hours, dtype=float), si)})
    if not trajectory.ok:  # pragma: no cover - smooth model, tight tolerances
        raise DataError(f"truth integration failed: {trajectory.statuses()[0].name}")
    states = trajectory.states
    glucose = states[:, 0] / theta[model.parameter_names.index("VG")]
    rng = np.random.default_rng(patient.seed if seed is None else seed)
    noise = rng.standard_normal((2, len(times)))
    measured = glucose * (1.0 + patient.measurement_cv * noise[0]) + patient.measurement_sd * noise[1]
    return TruthResult(times=times, glucose_true=glucose, glucose_measured=np.maximum(measured, 0.0),
                       states=states, si=patient.si_at(times))
