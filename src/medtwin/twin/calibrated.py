"""A live twin whose forecast bands are calibrated online on its own forecast errors.

:class:`CalibratedTwin` wraps a live :class:`~medtwin.twin.Twin` (e.g. the ICU
glycaemic twin).  Every ``every_h`` hours it stores its own ``horizon_h``-ahead
predictive distribution of the measured output (mean and variance of
``band.observed``, measurement error included); when the reading at that time
arrives, the forecast error e and the predicted variance s² feed an online
:class:`~medtwin.assimilate.calibration.CovarianceMatching` estimate — a
variance multiplier λ̂ (``kind="scale"``) or a model-discrepancy variance σ̂²
(``kind="additive"``).  :meth:`CalibratedTwin.forecast` then widens the
twin's band accordingly:

- scale: every draw's deviation from the per-time draw mean is multiplied by √λ̂
  (the same λ̂ at every lead time);
- additive: independent N(0, σ̂²·τ/horizon) is added to every draw at lead time τ
  (a discrepancy growing like a random walk, σ̂² at the matched horizon).

Regime changes: the optional ``detector`` (a two-sided
:class:`~medtwin.assimilate.detectors.Cusum`) runs on the *calibrated*
standardized errors of the forecasts made on the hour, z = e/√(calibrated s²),
one per hour, instead of on the 5-minute innovations, whose errors are
autocorrelated whenever the model is not the patient's.  The calibration used
there is the one learnt up to ``detector_lag_h`` (3 h) before, so that a regime
change is not absorbed into λ̂ before the chart sees it.  An alarm re-opens the
estimated parameters' variances (``inflation``, capped at the twin's initial
variances, as the twin itself does) and is recorded in ``alarms``.  The
wrapped twin's own detector should then be off (``regime_detector: null``).

Examples
--------
>>> from medtwin.scenarios.icu import icu_twin_spec
>>> from medtwin.twin.codec import twin_from_spec
>>> spec = icu_twin_spec()
>>> spec["settings"]["regime_detector"] = None
>>> ct = CalibratedTwin.create(twin_from_spec(spec))
>>> ct.calibration_value(), ct.pending
(1.0, ())
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from medtwin.assimilate.calibration import CovarianceMatching, MatchingState
from medtwin.assimilate.detectors import Cusum
from medtwin.core.events import Regimen
from medtwin.errors import DataError

__all__ = ["CalibratedTwin", "Prediction", "default_matching"]


def default_matching(floor: float = 1.0) -> CovarianceMatching:
    """The shipped choice: a variance multiplier with a 20-forecast memory and a 4-forecast prior at 1.

    Chosen in docs/decisions.md (issue 14, glucose calibration) against the additive discrepancy.
    ``floor`` is the smallest multiplier used: 1 never narrows the twin's band (the twin without a
    disturbance state); below 1 the calibration is two-sided, for a twin whose disturbance random walk
    deliberately over-states the 1-h uncertainty (0.5 for the ICU twin with EGP, docs/decisions.md).

    Examples
    --------
    >>> default_matching().floor, default_matching(0.5).floor
    (1.0, 0.5)
    """
    return CovarianceMatching("scale", forgetting=0.95, prior_weight=4.0, floor=float(floor), ceiling=100.0)


@dataclass(frozen=True)
class Prediction:
    """A stored forecast: made at ``made`` h for ``target`` h, predictive mean and variance of the reading."""

    made: float
    target: float
    mean: float
    variance: float
    hourly: bool


@dataclass(frozen=True, eq=False)
class CalibratedTwin:
    """A live twin plus online band calibration and an hourly regime detector (see the module docstring).

    Attributes
    ----------
    twin : Twin
        The wrapped live twin.
    output : str
        The measured output calibrated (``"G"`` for the ICU twin).
    horizon_h, every_h : float
        Lead time of the matched forecasts and how often one is stored, h.
    matching : CovarianceMatching or None
        The calibration (None: the twin's own band, for baselines).
    detector : Cusum or None
        Regime detector on the hourly calibrated standardized errors.
    inflation : float
        Variance factor on the estimated parameters at a regime alarm.
    match_within_h : float
        A stored forecast is scored on the first reading within this many hours after its target time.
    n_draws : int
        Draws of the stored forecasts.
    """

    twin: object
    output: str = "G"
    horizon_h: float = 1.0
    every_h: float = 0.25
    matching: CovarianceMatching | None = field(default_factory=default_matching)
    detector: Cusum | None = None
    inflation: float = 4.0
    match_within_h: float = 0.25
    n_draws: int = 200
    detector_lag_h: float = 3.0
    state: MatchingState | None = None
    detector_state: object = None
    pending: tuple = ()
    alarms: tuple = ()
    next_prediction: float = 0.0
    scored: tuple = ()
    lagged: tuple = ()
    detector_slot: int = -1

    @classmethod
    def create(cls, twin, **options) -> "CalibratedTwin":
        """Wrap ``twin``; ``options`` set the attributes above (``detector="default"``: ARL0 = 720 hours)."""
        if twin.observer is None:
            raise DataError("CalibratedTwin: needs a live twin (observer and belief)")
        if options.get("detector") == "default":
            options["detector"] = Cusum.calibrate(720.0)
        ct = cls(twin, **options)
        if not (ct.horizon_h > 0 and ct.every_h > 0 and ct.match_within_h >= 0 and ct.inflation >= 1):
            raise DataError("CalibratedTwin: horizon_h, every_h > 0, match_within_h >= 0 and inflation >= 1 needed")
        return replace(ct, state=None if ct.matching is None else ct.matching.init(),
                       detector_state=None if ct.detector is None else ct.detector.init(),
                       next_prediction=float(twin.belief.time), detector_slot=math.floor(twin.belief.time + 1e-9))

    # ------------------------------------------------------------------ calibration
    def calibration_value(self) -> float:
        """λ̂ (scale) or σ̂² (additive) now; 1.0 / 0.0 without a matching."""
        if self.matching is None:
            return 1.0
        return self.matching.value(self.state)

    def _predict(self, twin, seed: int, hourly: bool) -> Prediction:
        band = twin.forecast(None, horizon=self.horizon_h, step=self.horizon_h, n_draws=self.n_draws, seed=seed)
        y = band.observed[self.output][:, -1]
        y = y[np.isfinite(y)]
        t = float(twin.belief.time)
        return Prediction(t, t + self.horizon_h, float(np.mean(y)), float(np.var(y, ddof=1)), hourly)

    def assimilate(self, measurements, inputs: Regimen | None = None) -> "CalibratedTwin":
        """Assimilate into the twin, score the stored forecasts the new readings resolve, store new ones."""
        before = len(self.twin.history)
        twin = self.twin.assimilate(measurements, inputs)
        state, det_state, pending, alarms, scored = self.state, self.detector_state, list(self.pending), \
            list(self.alarms), list(self.scored)
        lagged = list(self.lagged)  # (time, matching state) kept for the detector's lagged calibration
        for entry in twin.history[before:]:
            m = entry.measurement
            if m.output != self.output or entry.status != "ok":
                continue
            keep = []
            for p in pending:
                if p.target - 1e-9 <= m.time <= p.target + self.match_within_h + 1e-9:
                    e = float(m.value) - p.mean
                    calibrated = p.variance if self.matching is None else float(self.matching.variance(state, p.variance))
                    if p.hourly and self.detector is not None:
                        z = e / math.sqrt(self._lagged_variance(lagged, m.time, p.variance))
                        det_state, alarm, _ = self.detector.update(det_state, z, m.time)
                        if alarm:
                            alarms.append(float(m.time))
                            twin = _reopen(twin, self.inflation)
                    if self.matching is not None:
                        state = self.matching.update(state, e, p.variance)
                        lagged = [x for x in lagged if x[0] >= m.time - self.detector_lag_h - 1.0] + [(m.time, state)]
                    scored.append((p.target, e, p.variance, calibrated))
                elif m.time <= p.target + self.match_within_h:
                    keep.append(p)
            pending = keep
        nxt = self.next_prediction
        now = float(twin.belief.time)
        slot = self.detector_slot
        if now + 1e-9 >= nxt:
            hour = math.floor(now + 1e-9)  # the first stored forecast of each clock hour feeds the detector
            pending.append(self._predict(twin, seed=len(twin.history), hourly=hour > slot))
            slot = max(slot, hour)
            nxt = (math.floor((now + 1e-9) / self.every_h) + 1) * self.every_h
        return replace(self, twin=twin, state=state, detector_state=det_state, pending=tuple(pending),
                       alarms=tuple(alarms), next_prediction=nxt, scored=tuple(scored), lagged=tuple(lagged),
                       detector_slot=slot)

    def _lagged_variance(self, lagged, time: float, variance: float) -> float:
        """Calibrated variance with the matching as it was ``detector_lag_h`` ago (the prior before that).

        A regime change shows as a run of large errors; the matching would absorb it within a few forecasts, so
        the detector standardizes with a calibration learnt on errors older than its own window.
        """
        if self.matching is None:
            return variance
        old = [st for t, st in lagged if t <= time - self.detector_lag_h + 1e-9]
        return float(self.matching.variance(old[-1] if old else self.matching.init(), variance))

    # ------------------------------------------------------------------ forecast
    def forecast(self, regimen: Regimen | None = None, horizon: float = 1.0, *, step: float = 0.25,
                 n_draws: int = 500, seed: int = 0):
        """The twin's predictive band with the calibration applied (see the module docstring)."""
        from medtwin.core.data import PredictiveBand

        band = self.twin.forecast(regimen, horizon=horizon, step=step, n_draws=n_draws, seed=seed)
        if self.matching is None:
            return band
        value = self.calibration_value()
        lead = band.times - band.times[0]
        rng = np.random.default_rng([seed, 14])
        draws, observed = dict(band.draws), dict(band.observed)
        if self.matching.kind == "scale":
            root = math.sqrt(value)
            for source in (draws, observed):
                for name in (self.output,):
                    f = source[name]
                    centre = np.nanmean(f, axis=0)
                    source[name] = centre + root * (f - centre)
        else:
            sd = np.sqrt(value * lead / self.horizon_h)
            noise = rng.standard_normal(band.draws[self.output].shape) * sd
            draws[self.output] = band.draws[self.output] + noise
            if self.output in observed:
                observed[self.output] = band.observed[self.output] + noise
        return PredictiveBand(times=band.times, draws=draws, observed=observed, units=band.units, failed=band.failed)


def _reopen(twin, factor: float):
    from medtwin.twin import inflate_parameters

    belief = inflate_parameters(twin.belief, twin.space.n_states, factor, twin.reference_variance)
    return replace(twin, belief=belief)
