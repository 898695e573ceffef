"""The ICU glycaemic twin (flagship 2): shipped specification, synthetic streams, tracking evaluation.

The twin is the ICING model with insulin sensitivity tracked as a log random
walk (``medtwin/data/twins/icu_glucose.yaml``).  To test it honestly the
synthetic patients can come from a *different* model (the Bergman minimal
model with insulin kinetics, :mod:`medtwin.scenarios.glucose_patients`), so the
twin is deliberately misspecified, as it always is at a real bedside.

:func:`tracking_evaluation` replays each patient's 5-minute glucose stream
through the twin and, every ``every_h`` hours, forecasts glucose one hour ahead
(median and 90 % predictive interval with measurement error); it reports the
RMSE of the median against the true glucose and the share of the next
measurements inside the interval (coverage).

Examples
--------
>>> spec = icu_twin_spec()
>>> spec["model"], spec["estimated"]
('icing', ['SI'])
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from importlib import resources

import numpy as np

from medtwin.core.stream import Measurement, Stream
from medtwin.core.events import Regimen
from medtwin.errors import DataError


def icu_twin_spec() -> dict:
    """The shipped ICU glycaemic twin specification (a fresh copy)."""
    import yaml

    text = resources.files("medtwin.data.twins").joinpath("icu_glucose.yaml").read_text()
    return copy.deepcopy(yaml.safe_load(text))


#: Random-walk variance of log EGP in the control twin, (log units)²/h: an hourly log-SD of 0.1 (assumption).
EGP_DRIFT = 0.01
#: Prior log-SD of EGP in the control twin (assumption: wider than the 0.2 between-patient log-SD of the
#: synthetic cohorts, since a foreign patient's glucose balance differs from ICING's by more than its EGP).
EGP_PRIOR_SD = 0.3


def control_twin_spec(*, egp_drift: float = EGP_DRIFT, egp_sd: float = EGP_PRIOR_SD) -> dict:
    """The ICU twin for closed-loop control: :func:`icu_twin_spec` with a disturbance state.

    Besides SI, the twin estimates ICING's endogenous glucose production EGP as a slow log random walk.  It is
    the offset-free formulation of model predictive control (an input-disturbance state estimated with the
    plant state, Muske KR, Badgwell TA. J Process Control 2002;12:617-632; Pannocchia G, Rawlings JB. AIChE J
    2003;49:426-437): a constant error in the patient's glucose balance (a different basal production, feed
    absorption or non-insulin uptake than ICING's) is absorbed by EGP instead of being misread as insulin
    sensitivity, so the predicted response to insulin is not biased by it.  The model stays ICING.

    Examples
    --------
    >>> spec = control_twin_spec()
    >>> spec["model"], spec["estimated"], spec["parameter_drift"]["EGP"]
    ('icing', ['SI', 'EGP'], 0.01)
    """
    if not (egp_drift >= 0 and egp_sd > 0):
        raise DataError(f"control_twin_spec: egp_drift >= 0 and egp_sd > 0 needed, got {egp_drift}, {egp_sd}")
    spec = icu_twin_spec()
    spec["estimated"] = list(spec["estimated"]) + ["EGP"]
    spec["parameter_drift"] = {**spec["parameter_drift"], "EGP": float(egp_drift)}
    spec["initial_sd"] = {**spec["initial_sd"], "EGP": float(egp_sd)}
    return spec


#: Prior SD of the Bergman twin's remote insulin action X, 1/h (assumption: the shipped Bergman model's X at
#: the JBDS scale's largest rate, 6 U/h, is SI·ΔI ≈ 0.0063·90 ≈ 0.57 1/h, covered at two SD).
BERGMAN_X_PRIOR_SD = 0.3
#: SI random-walk variance of the ensemble's "variable patient" member, (log units)²/h: an hourly log-SD of 0.4,
#: twice the shipped twin's 0.2 (assumption: a member for patients whose sensitivity moves faster, or looks so
#: to a model that is not theirs; multiple-model adaptive estimation, Magill DT. IEEE Trans Autom Control
#: 1965;10:434-439, lets the readings choose).
FAST_SI_DRIFT = 0.16


def bergman_twin_spec(*, gb_drift: float = EGP_DRIFT, gb_sd: float = EGP_PRIOR_SD,
                      si_drift: float | None = None) -> dict:
    """A second ICU twin for the model ensemble: the Bergman minimal model with insulin kinetics.

    The shipped ``bergman_insulin`` model (:mod:`medtwin.models.glucose`, its ICU parameter values), with
    the ICU twin's noise, errors and settings (:func:`icu_twin_spec`): SI tracked as the same log random walk,
    and the basal glucose Gb — the model's insulin-independent glucose balance p1·VG·(Gb − G) — as the
    disturbance state, the role EGP plays in :func:`control_twin_spec` (same drift and prior log-SD).  Its
    insulin acts through one remote compartment X with p2 = 1.7 1/h (35 min; Fisher 1991) and without
    saturation, where ICING's interstitial insulin Q responds in about an hour and saturates.  ``si_drift``
    replaces the SI random-walk variance ((log units)²/h; default the shipped twin's).

    Examples
    --------
    >>> spec = bergman_twin_spec()
    >>> spec["model"], spec["estimated"], sorted(spec["initial_sd"])
    ('bergman_insulin', ['SI', 'Gb'], ['GLU', 'Gb', 'INS', 'SI', 'X'])
    """
    if not (gb_drift >= 0 and gb_sd > 0) or (si_drift is not None and not si_drift >= 0):
        raise DataError(f"bergman_twin_spec: gb_drift, si_drift >= 0 and gb_sd > 0 needed, got {gb_drift}, "
                        f"{si_drift}, {gb_sd}")
    spec = icu_twin_spec()
    if si_drift is not None:
        spec["parameter_drift"] = {**spec["parameter_drift"], "SI": float(si_drift)}
    sd = {k: v for k, v in spec["initial_sd"].items() if k != "Q"}
    spec.update(model="bergman_insulin", estimated=["SI", "Gb"],
                parameter_drift={**spec["parameter_drift"], "Gb": float(gb_drift)},
                initial_sd={**sd, "X": BERGMAN_X_PRIOR_SD, "Gb": float(gb_sd)})
    return spec


def icu_protocol_regimen(hours: int, *, seed: int = 0) -> Regimen:
    """A plausible ICU input history: enteral feed 3.5 g/h and insulin 0–6 U/h changed every hour.

    The insulin rates are a seeded random walk around 2 U/h (not a controller:
    the observer is tested on the inputs as given).
    """
    from medtwin.scenarios.glucose_patients import icu_regimen

    rng = np.random.default_rng([seed, 7])
    rates = np.clip(2.0 + np.cumsum(rng.normal(0.0, 0.5, hours)) * 0.5, 0.0, 6.0)
    return icu_regimen(hours, insulin_u_per_h=rates, enteral_g_per_h=3.5)


@dataclass(frozen=True)
class SyntheticStream:
    """A patient's recorded stream and the truth behind it (glucose in mmol/L, times in h)."""

    stream: Stream
    times: np.ndarray
    glucose_true: np.ndarray
    glucose_measured: np.ndarray


def synthetic_stream(patient, hours: int = 72, *, every_min: float = 5.0, seed: int = 0) -> SyntheticStream:
    """``hours`` of glucose every ``every_min`` minutes for a synthetic patient under :func:`icu_protocol_regimen`."""
    from medtwin.scenarios.glucose_patients import simulate_truth

    if hours < 1 or every_min <= 0:
        raise DataError(f"synthetic_stream: hours >= 1 and every_min > 0 needed, got {hours}, {every_min}")
    regimen = icu_protocol_regimen(hours, seed=seed)
    times = np.arange(1, int(round(hours * 60 / every_min)) + 1) * every_min / 60.0
    truth = simulate_truth(patient, regimen, times, seed=patient.seed)
    measurements = tuple(Measurement(float(t), "G", float(y), "mmol/L", device="blood-gas", source_id=f"bg{k}")
                         for k, (t, y) in enumerate(zip(times, truth.glucose_measured)))
    return SyntheticStream(Stream(measurements, regimen, (), f"synthetic-{patient.id}"), times,
                           np.asarray(truth.glucose_true), np.asarray(truth.glucose_measured))


@dataclass(frozen=True)
class TrackingResult:
    """One patient's tracking figures: RMSE (mmol/L) of the 1-h-ahead median, 90 % coverage, counts."""

    patient: str
    rmse_1h: float
    coverage_90: float
    n_forecasts: int
    seconds: float
    alarms: tuple[str, ...]


def stream_forecasts(twin, synthetic: SyntheticStream, *, every_h: float = 1.0, horizon_h: float = 1.0,
                     n_draws: int = 200):
    """Assimilate ``synthetic``'s readings one by one; after each, yield ``(twin, band, j)``.

    ``band`` is the ``horizon_h``-ahead forecast (recorded inputs, seed = the reading's index) made right
    after the reading at each ``every_h`` mark from ``every_h`` on, else None; ``j`` is the index in
    ``synthetic.times`` of the reading it forecasts (None without a band).
    """
    times = synthetic.times
    next_forecast = every_h
    for k, m in enumerate(synthetic.stream.measurements):
        twin = twin.assimilate([m])
        if m.time + 1e-9 >= next_forecast and m.time + horizon_h <= times[-1] + 1e-9:
            next_forecast += every_h
            band = twin.forecast(None, horizon=horizon_h, step=horizon_h, n_draws=n_draws, seed=k)
            yield twin, band, int(np.argmin(np.abs(times - (m.time + horizon_h))))
        else:
            yield twin, None, None


def tracking_evaluation(synthetic: SyntheticStream, spec: dict | None = None, *, every_h: float = 1.0,
                        horizon_h: float = 1.0, n_draws: int = 200) -> TrackingResult:
    """Replay one synthetic stream through the twin of ``spec``; score its ``horizon_h``-ahead forecasts."""
    import time

    from medtwin.twin.codec import twin_from_spec

    twin = twin_from_spec(spec or icu_twin_spec(), inputs=synthetic.stream.regimen, patient=synthetic.stream.patient)
    errors, inside, kinds = [], [], set()
    start = time.perf_counter()
    for twin, band, j in stream_forecasts(twin, synthetic, every_h=every_h, horizon_h=horizon_h, n_draws=n_draws):
        kinds.update(a.kind for a in twin.alarms)
        if band is not None:
            lo, hi = band.interval("G", 0.9, residual=True)
            errors.append(float(band.median("G")[-1]) - synthetic.glucose_true[j])
            inside.append(bool(lo[-1] <= synthetic.glucose_measured[j] <= hi[-1]))
    seconds = time.perf_counter() - start
    return TrackingResult(synthetic.stream.patient or "", float(np.sqrt(np.mean(np.square(errors)))),
                          float(np.mean(inside)), len(errors), seconds, tuple(sorted(kinds)))
