"""Virtual ICU patients from glucose–insulin models the twin does not use (Hovorka 2004, Dalla Man 2007).

The ICU glycaemic twin runs ICING; :mod:`medtwin.scenarios.glucose_patients`
already tests it on Bergman-minimal-model patients.  This module adds two more
*foreign* truths written from their papers: :mod:`medtwin.models.hovorka`
(``hovorka_icu``) and :mod:`medtwin.models.dallaman` (``dalla_man_icu``).  Each
virtual patient carries individual parameters and an hour-by-hour path of its
model's insulin-sensitivity factor ``SIscale`` (which scales all the model's
insulin sensitivities: SIT, SID, SIE in Hovorka; Vmx, kp3 in Dalla Man).

Distributions (the same documented assumptions as the Bergman/ICING patients of
:mod:`medtwin.scenarios.glucose_patients`, reused from there):

- baseline ``SIscale``: log-normal around the model's typical value, log-SD
  ``SI_OMEGA`` = 0.5;
- hour-to-hour: ``SIscale·m_k`` with log m an AR(1) walk, σ = ``SI_STEP_SD`` =
  0.2, φ = ``SI_REVERSION`` = 0.95 (:func:`~medtwin.scenarios.glucose_patients.si_walk`);
- glucose production: Hovorka ``EGP0`` or Dalla Man ``kp1`` log-normal with
  log-SD ``EGP_OMEGA`` = 0.2; starting glucose ``G0`` log-SD ``G0_OMEGA`` = 0.2;
- measurement error: 5 % CV (``MEASUREMENT_CV``).

Streams (:func:`foreign_stream`) follow a **protocol**: enteral feed at a
constant rate and an IV insulin rate decided every hour from the latest reading,
by the JBDS-IP variable-rate scale (:func:`medtwin.scenarios.glucose_loop.jbds_vriii_rate`,
as a ward would; the default) or by the open-loop random walk of
:func:`medtwin.scenarios.icu.icu_protocol_regimen`.  The twin receives the
inputs as given, so its forecasts are scored on data like a real ICU record.

Examples
--------
>>> p = sample_foreign_patients(1, model="dalla_man_icu", hours=4, seed=2)[0]
>>> p.model, p.si_multipliers.shape, foreign_model(p.model).parameter("Vmx").unit
('dalla_man_icu', (4,), 'mg/(kg*h) per pmol/L')

``foreign_stream(p, hours=4)`` then gives 48 readings under the JBDS protocol
(tests/unit/test_foreign_glucose_models.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from medtwin.core.events import DoseEvent, Regimen
from medtwin.core.stream import Measurement, Stream
from medtwin.errors import DataError, ModelError, ParameterError
from medtwin.scenarios.glucose_patients import (EGP_OMEGA, G0_OMEGA, MEASUREMENT_CV, SI_OMEGA, SI_REVERSION,
                                                SI_STEP_SD, TruthResult, path_times, si_walk)

#: The foreign truth models and the parameter drawn as "glucose production" for each.
FOREIGN_MODELS = {"hovorka_icu": "EGP0", "dalla_man_icu": "kp1"}
#: The parameter that carries the hour-by-hour insulin-sensitivity path.
SENSITIVITY = "SIscale"
#: Constant enteral glucose of the streams, g/h (≈ 84 g/day, the range the ICU twin's docs assume).
FEED_G_PER_H = 3.5


def foreign_model(name: str):
    """The medtwin Model of a foreign truth (``"hovorka_icu"`` or ``"dalla_man_icu"``)."""
    if name == "hovorka_icu":
        from medtwin.models.hovorka import hovorka_icu_model

        return _cached(name, hovorka_icu_model)
    if name == "dalla_man_icu":
        from medtwin.models.dallaman import dalla_man_icu_model

        return _cached(name, dalla_man_icu_model)
    raise ModelError(f"foreign glucose models are {tuple(FOREIGN_MODELS)}, got {name!r}")


_MODELS: dict = {}


def _cached(name, factory):
    if name not in _MODELS:
        _MODELS[name] = factory()
    return _MODELS[name]


@dataclass(frozen=True, eq=False)
class ForeignICUPatient:
    """One virtual ICU patient of a foreign model.

    Attributes
    ----------
    id : int
        Patient number within a sample.
    model : str
        ``"hovorka_icu"`` or ``"dalla_man_icu"``.
    parameters : mapping of str to float
        Individual parameter values in the model's units (baseline ``SIscale`` included).
    si_multipliers : ndarray, shape (hours,)
        Factor m_k on ``SIscale`` during hour [k, k + 1) h; m_0 = 1.
    measurement_cv : float
        Proportional measurement error (fraction).
    seed : int
        Seed of this patient's measurement noise.
    """

    id: int
    model: str
    parameters: Mapping[str, float]
    si_multipliers: np.ndarray
    measurement_cv: float = MEASUREMENT_CV
    seed: int = 0

    @property
    def hours(self) -> int:
        """Number of hours with a defined insulin sensitivity."""
        return int(len(self.si_multipliers))


def sample_foreign_patients(n: int, *, model: str = "hovorka_icu", hours: int = 72, seed: int = 0,
                            si_omega: float = SI_OMEGA, egp_omega: float = EGP_OMEGA,
                            si_step_sd: float = SI_STEP_SD, si_reversion: float = SI_REVERSION,
                            measurement_cv: float = MEASUREMENT_CV) -> list[ForeignICUPatient]:
    """Draw ``n`` virtual ICU patients of a foreign model (distributions in the module docstring).

    Parameters
    ----------
    n : int
        Number of patients.
    model : {"hovorka_icu", "dalla_man_icu"}
        Truth model.
    hours : int
        Length of each patient's hourly sensitivity path.
    seed : int
        Seed; the same seed gives the same patients.
    si_omega, egp_omega : float
        Between-patient log-SDs of ``SIscale`` and of the glucose-production parameter.
    si_step_sd, si_reversion : float
        σ and φ of the hourly log-sensitivity walk.
    measurement_cv : float
        Proportional measurement error.

    Returns
    -------
    list of ForeignICUPatient

    Examples
    --------
    >>> [round(p.parameters["SIscale"], 3) for p in sample_foreign_patients(2, hours=3, seed=1)]
    [0.182, 0.866]
    """
    if n < 0 or int(n) != n:
        raise DataError(f"n must be a non-negative integer, got {n}")
    if measurement_cv < 0:
        raise ParameterError("measurement_cv must be >= 0")
    m = foreign_model(model)
    egp_name = FOREIGN_MODELS[model]
    typical = {p.name: p.value for p in m.parameters}
    patients = []
    for k, child in enumerate(np.random.SeedSequence(seed).spawn(int(n))):
        rng = np.random.default_rng(child)
        params = dict(typical)
        params[SENSITIVITY] = typical[SENSITIVITY] * math.exp(si_omega * rng.standard_normal())
        params[egp_name] = typical[egp_name] * math.exp(egp_omega * rng.standard_normal())
        params["G0"] = typical["G0"] * math.exp(G0_OMEGA * rng.standard_normal())
        multipliers = si_walk(rng, hours, step_sd=si_step_sd, reversion=si_reversion)
        m.parameter_table(params)  # ParameterError for a draw outside the bounds
        patients.append(ForeignICUPatient(k, model, params, multipliers, float(measurement_cv),
                                          int(child.generate_state(1)[0])))
    return patients


def simulate_foreign(patient: ForeignICUPatient, regimen: Regimen | None, times, *, seed: int | None = None,
                     rtol: float = 1e-8, atol: float = 1e-8) -> TruthResult:
    """Integrate a foreign patient under ``regimen`` (hourly ``SIscale``) and add measurement error.

    One :func:`medtwin.core.simulate.simulate` call (Dormand–Prince 5(4)) with
    ``SIscale·si_multipliers[k]`` from hour k on; readings at a dose time see
    the pre-dose state; readings are floored at 0.

    Parameters
    ----------
    patient : ForeignICUPatient
    regimen : Regimen or None
        Inputs (CMT 1 parenteral glucose mmol, CMT 2 IV insulin mU, CMT 3 enteral glucose mmol).
    times : array_like, shape (n_times,)
        Output times, h, non-decreasing, within [0, patient.hours].
    seed : int, optional
        Measurement-noise seed; default the patient's own.
    rtol, atol : float
        Step-control tolerances.

    Returns
    -------
    TruthResult
        ``si`` holds the ``SIscale`` in effect.

    Examples
    --------
    >>> p = sample_foreign_patients(1, hours=2, seed=0)[0]
    >>> try:
    ...     simulate_foreign(p, None, [0.0, 3.0])        # the sensitivity path covers 2 h only
    ... except DataError as exc:
    ...     print(str(exc)[:40])
    times reach 3.0 h but the patient's sens
    """
    from medtwin.core.simulate import simulate

    model = foreign_model(patient.model)
    theta = model.parameter_table(dict(patient.parameters))[0]
    times = path_times(times, patient.hours)
    j = model.parameter_names.index(SENSITIVITY)
    path = theta[j] * np.asarray(patient.si_multipliers, dtype=float)
    trajectory = simulate(model, theta[None, :], regimen if regimen is not None else Regimen(()), times,
                          pre_dose=[np.ones(len(times), bool)], method="dopri5", rtol=rtol, atol=atol,
                          parameter_changes={SENSITIVITY: (np.arange(patient.hours, dtype=float), path)})
    if not trajectory.ok:  # pragma: no cover - smooth models, tight tolerances
        raise DataError(f"truth integration failed: {trajectory.statuses()[0].name}")
    glucose = np.asarray(trajectory.outputs["G"]).reshape(-1)
    rng = np.random.default_rng(patient.seed if seed is None else seed)
    measured = glucose * (1.0 + patient.measurement_cv * rng.standard_normal(len(times)))
    k = np.clip(np.floor(times).astype(int), 0, patient.hours - 1)
    return TruthResult(times=times, glucose_true=glucose, glucose_measured=np.maximum(measured, 0.0),
                       states=np.asarray(trajectory.states), si=path[k])


def _hour_events(hour: int, insulin_u_per_h: float, feed_g_per_h: float) -> list[DoseEvent]:
    from medtwin.models.glucose import MMOL_PER_G_GLUCOSE

    events = []
    if insulin_u_per_h > 0:
        rate = 1000.0 * insulin_u_per_h
        events.append(DoseEvent(time=float(hour), amount=rate, cmt=2, rate=rate))
    if feed_g_per_h > 0:
        rate = MMOL_PER_G_GLUCOSE * feed_g_per_h
        events.append(DoseEvent(time=float(hour), amount=rate, cmt=3, rate=rate))
    return events


def foreign_stream(patient: ForeignICUPatient, hours: int = 72, *, every_min: float = 5.0,
                   protocol: str = "jbds", feed_g_per_h: float = FEED_G_PER_H, seed: int = 0):
    """``hours`` of glucose readings every ``every_min`` minutes under an ICU insulin protocol.

    Parameters
    ----------
    patient : ForeignICUPatient
    hours : int
        Length, h (at most ``patient.hours``).
    every_min : float
        Reading interval, minutes (a multiple-of-an-hour grid is not required).
    protocol : {"jbds", "random"}
        ``"jbds"``: each hour the insulin rate is the JBDS-IP scale's rate for the
        latest reading (the reading at the start of the hour; ``G0`` for hour 0);
        ``"random"``: the open-loop walk of :func:`medtwin.scenarios.icu.icu_protocol_regimen`.
    feed_g_per_h : float
        Constant enteral glucose, g/h (``"jbds"`` only; the random protocol has its own 3.5 g/h).
    seed : int
        Seed of the random protocol.

    Returns
    -------
    medtwin.scenarios.icu.SyntheticStream
        The recorded stream (readings, the regimen actually given) and the truth.
    """
    from medtwin.scenarios.glucose_loop import jbds_vriii_rate
    from medtwin.scenarios.icu import SyntheticStream, icu_protocol_regimen

    if not (1 <= hours <= patient.hours) or every_min <= 0:
        raise DataError(f"foreign_stream: 1 <= hours <= {patient.hours} and every_min > 0 needed, "
                        f"got {hours}, {every_min}")
    times = np.arange(1, int(round(hours * 60 / every_min)) + 1) * every_min / 60.0
    times = times[times <= hours + 1e-9]
    if protocol == "random":
        regimen = icu_protocol_regimen(hours, seed=seed)
    elif protocol == "jbds":
        events: list[DoseEvent] = []
        latest = float(patient.parameters["G0"])
        for hour in range(hours):
            events.extend(_hour_events(hour, jbds_vriii_rate(latest), feed_g_per_h))
            upto = times[times <= hour + 1 + 1e-9]
            truth = simulate_foreign(patient, Regimen(tuple(events)), upto)
            latest = float(truth.glucose_measured[-1])
        regimen = Regimen(tuple(events))
    else:
        raise DataError(f"protocol must be 'jbds' or 'random', got {protocol!r}")
    truth = simulate_foreign(patient, regimen, times)
    measurements = tuple(Measurement(float(t), "G", float(y), "mmol/L", device="blood-gas", source_id=f"bg{k}")
                         for k, (t, y) in enumerate(zip(times, truth.glucose_measured)))
    return SyntheticStream(Stream(measurements, regimen, (), f"{patient.model}-{patient.id}"), times,
                           np.asarray(truth.glucose_true), np.asarray(truth.glucose_measured))
