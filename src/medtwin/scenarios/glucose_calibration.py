"""Scoring the ICU glycaemic twin's live forecasts on patients of foreign models: coverage, PIT, RMSE, alarms.

:func:`evaluate_stream` replays one synthetic stream (5-minute readings) through
one *variant* of the ICU twin and, every ``every_h`` hours, forecasts the
reading ``horizon_h`` ahead; it scores the 90 % band of the reading (coverage),
the PIT of the reading under the predictive draws, the error of the median
against the true glucose, and counts regime alarms.

Variants (:data:`VARIANTS`):

- ``"baseline"`` — the shipped twin as it is (``icu_glucose.yaml``; its CUSUM on
  5-minute standardized innovations);
- ``"scale"`` — :class:`~medtwin.twin.calibrated.CalibratedTwin` with the variance
  multiplier (innovation-based covariance matching at the forecast horizon) and
  the hourly detector;
- ``"additive"`` — the same with an additive model-discrepancy variance;
- ``"disturbance"`` (shipped by :func:`calibrated_icu_twin`) — ``"scale"`` on the twin that also estimates
  ICING's endogenous glucose production EGP as a slow log random walk, the input-disturbance state of
  :func:`~medtwin.scenarios.icu.control_twin_spec` (the same spec the closed-loop controller uses): a
  persistent error in the patient's glucose balance is absorbed there instead of driving SI to its
  bounds, so the twin keeps tracking glucose when the patient leaves ICING's range; its variance
  multiplier is two-sided (floor :data:`DISTURBANCE_FLOOR` instead of 1);
- ``"bergman"`` — ``"disturbance"`` on the Bergman-minimal-model twin
  (:func:`~medtwin.scenarios.icu.bergman_twin_spec`, Gb as the disturbance state), alone;
  ``"bergman_variable"`` the same with SI drifting twice as fast (hourly log-SD 0.4,
  :data:`~medtwin.scenarios.icu.FAST_SI_DRIFT`);
- ``"ensemble"`` — :class:`~medtwin.twin.ensemble.EnsembleTwin` of the ``"disturbance"`` (ICING),
  ``"bergman"`` and ``"bergman_variable"`` twins, weighted online by their calibrated 1-h predictive
  likelihood, forecast = the mixture.

Examples
--------
>>> VARIANTS
('baseline', 'scale', 'additive', 'disturbance', 'bergman', 'bergman_variable', 'ensemble')
"""

from __future__ import annotations

import time as _time
from dataclasses import dataclass

import numpy as np

from medtwin.assimilate.calibration import CovarianceMatching, coverage, pit_values
from medtwin.errors import DataError

VARIANTS = ("baseline", "scale", "additive", "disturbance", "bergman", "bergman_variable", "ensemble")
#: Smallest variance multiplier of the ``"disturbance"`` variant: its calibration may narrow the band (the EGP
#: random walk over-states the 1-h spread where the patient's glucose balance is steady), by at most √0.5.
DISTURBANCE_FLOOR = 0.5
#: The members of the ``"ensemble"`` variant (ICING with EGP, Bergman with Gb as disturbance states).
ENSEMBLE_MEMBERS = ("disturbance", "bergman", "bergman_variable")


def calibrated_icu_twin(inputs=None, *, patient: str | None = None, spec: dict | None = None,
                        disturbance: bool = True):
    """The ICU glycaemic twin with calibrated bands: the shipped spec, its 5-minute CUSUM off, wrapped in a
    :class:`~medtwin.twin.calibrated.CalibratedTwin` (variance multiplier, hourly detector with ARL0 720 h).

    With ``disturbance`` (default) the twin also estimates EGP as a disturbance state (variant
    ``"disturbance"``; issue 14: median 1-h RMSE on Hovorka patients 0.85 -> 0.76 mmol/L);
    ``disturbance=False`` gives the previous twin (variant ``"scale"``).  ``spec`` replaces the twin spec.

    Use it like a twin: ``ct = ct.assimilate([reading])``, ``ct.forecast(horizon=1.0)``, ``ct.alarms``.

    Examples
    --------
    >>> ct = calibrated_icu_twin()
    >>> ct.matching.kind, round(ct.detector.arl0())
    ('scale', 720)
    """
    return variant_twin("disturbance" if disturbance else "scale", inputs, patient, spec)


def ensemble_icu_twin(inputs=None, *, patient: str | None = None):
    """The ICU glycaemic forecast ensemble (variant ``"ensemble"``): ICING with EGP and Bergman with Gb as
    disturbance states (Bergman twice: shipped SI drift and twice the hourly log-SD), each a calibrated twin
    (:func:`calibrated_icu_twin`'s settings), weighted online by
    their calibrated 1-h predictive likelihood; its forecast is the mixture
    (:class:`~medtwin.twin.ensemble.EnsembleTwin`; docs/decisions.md, issue 14 robust RMSE).

    The closed-loop controller keeps its single ICING twin (:func:`~medtwin.scenarios.icu.control_twin_spec`).

    Examples
    --------
    >>> ens = ensemble_icu_twin()
    >>> ens.names, [round(float(w), 3) for w in ens.weights]
    (('icing', 'bergman', 'bergman-variable'), [0.333, 0.333, 0.333])
    """
    return variant_twin("ensemble", inputs, patient)


def variant_twin(variant: str, regimen, patient: str | None = None, spec: dict | None = None):
    """The twin of one variant for a stream with inputs ``regimen`` (a Twin or a CalibratedTwin).

    ``spec`` (default: :func:`~medtwin.scenarios.icu.icu_twin_spec`, or
    :func:`~medtwin.scenarios.icu.control_twin_spec` for ``"disturbance"``) is the wrapped twin's spec.
    """
    from medtwin.scenarios.icu import control_twin_spec, icu_twin_spec
    from medtwin.twin.calibrated import CalibratedTwin, default_matching
    from medtwin.twin.codec import twin_from_spec

    if variant not in VARIANTS:
        raise DataError(f"variant must be one of {VARIANTS}, got {variant!r}")
    if variant == "ensemble":
        from medtwin.twin.ensemble import EnsembleTwin

        members = [variant_twin(v, regimen, patient) for v in ENSEMBLE_MEMBERS]
        return EnsembleTwin.create(members, names=("icing", "bergman", "bergman-variable"))
    if variant in ("bergman", "bergman_variable"):
        from medtwin.scenarios.icu import FAST_SI_DRIFT, bergman_twin_spec

        spec = spec or bergman_twin_spec(si_drift=FAST_SI_DRIFT if variant == "bergman_variable" else None)
    spec = dict(spec or (control_twin_spec() if variant == "disturbance" else icu_twin_spec()))
    if variant == "baseline":
        return twin_from_spec(spec, inputs=regimen, patient=patient)
    spec["settings"] = dict(spec.get("settings") or {}, regime_detector=None)
    twin = twin_from_spec(spec, inputs=regimen, patient=patient)
    matching = {"scale": default_matching(), "disturbance": default_matching(DISTURBANCE_FLOOR),
                "bergman": default_matching(DISTURBANCE_FLOOR), "bergman_variable": default_matching(DISTURBANCE_FLOOR),
                "additive": CovarianceMatching("additive", forgetting=0.95, prior_weight=4.0, floor=0.0,
                                               ceiling=100.0)}[variant]
    return CalibratedTwin.create(twin, matching=matching, detector="default")


@dataclass(frozen=True)
class CalibrationResult:
    """One patient under one variant (glucose in mmol/L).

    Attributes
    ----------
    patient, variant : str
    rmse_1h : float
        RMSE of the forecast median against the true glucose (the acceptance figure).
    rmse_reading : float
        RMSE of the forecast median against the reading (includes the 5 % CV measurement error).
    coverage_90 : float
        Share of readings inside the 90 % band (measurement error included).
    pit : ndarray, shape (n_forecasts,)
        PIT of each reading under its predictive draws.
    band_sd : float
        Median half-width of the 90 % band / 1.645 (mmol/L).
    alarms : int
        Regime alarms over the stream.
    hours : float
        Stream length, h.
    seconds : float
        Wall time of the replay.
    """

    patient: str
    variant: str
    rmse_1h: float
    coverage_90: float
    pit: np.ndarray
    band_sd: float
    alarms: int
    hours: float
    seconds: float
    rmse_reading: float = float("nan")

    @property
    def alarms_per_72h(self) -> float:
        return 72.0 * self.alarms / self.hours


def evaluate_stream(synthetic, variant: str = "scale", *, every_h: float = 1.0, horizon_h: float = 1.0,
                    n_draws: int = 200, spec: dict | None = None) -> CalibrationResult:
    """Replay ``synthetic`` (a :class:`~medtwin.scenarios.icu.SyntheticStream`) through one twin variant.

    Forecasts are made right after the reading at each ``every_h`` mark (from
    ``every_h`` on) for the reading ``horizon_h`` later, on the inputs recorded
    in the stream (the rates the protocol chose).
    """
    from medtwin.scenarios.icu import stream_forecasts

    twin = variant_twin(variant, synthetic.stream.regimen, synthetic.stream.patient, spec)
    times = synthetic.times
    errors, lows, highs, ys, pits, sds, js = [], [], [], [], [], [], []
    start = _time.perf_counter()
    for twin, band, j in stream_forecasts(twin, synthetic, every_h=every_h, horizon_h=horizon_h, n_draws=n_draws):
        if band is not None:
            lo, hi = band.interval("G", 0.9, residual=True)
            errors.append(float(band.median("G")[-1]) - synthetic.glucose_true[j])
            lows.append(lo[-1])
            highs.append(hi[-1])
            ys.append(synthetic.glucose_measured[j])
            js.append(j)
            pits.append(pit_values(band.observed["G"][:, -1][None, :], [synthetic.glucose_measured[j]])[0])
            sds.append((hi[-1] - lo[-1]) / (2 * 1.6448536269514722))
    seconds = _time.perf_counter() - start
    if variant == "baseline":
        alarms = sum(1 for e in twin.history if e.regime_change is not None)
    else:
        alarms = len(twin.alarms)
    hours = float(times[-1] - (times[0] - (times[1] - times[0]) if len(times) > 1 else 0.0))
    reading_errors = np.asarray(errors) + synthetic.glucose_true[js] - synthetic.glucose_measured[js]
    return CalibrationResult(synthetic.stream.patient or "", variant, float(np.sqrt(np.mean(np.square(errors)))),
                             coverage(lows, highs, ys), np.asarray(pits), float(np.median(sds)), int(alarms),
                             hours, seconds, float(np.sqrt(np.mean(np.square(reading_errors)))))
