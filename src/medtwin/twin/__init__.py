"""The twin: model object + posterior + live belief + history + provenance, one immutable value.

A :class:`Twin` is an immutable value.  ``twin.assimilate(measurements)``,
``twin.forecast(regimen, horizon)``, ``twin.recommend(policy)`` and
``twin.state()`` return new values and never change the twin they are called
on, so a twin at any moment can be kept, compared, stored
(:meth:`Twin.to_dict`, :mod:`medtwin.io.twin_file`) and replayed bit for bit.

Two parts, either or both present, on the one model object (a library model
or the user's own; never a name):

* the **posterior** (treatment twin, :meth:`Twin.from_posterior`): a patient's
  personalized posterior (:func:`medtwin.infer.personalize.personalize`);
  ``assimilate(PatientData)`` updates it (today's posterior is tomorrow's
  prior), :meth:`Twin.adapt` runs continual adaptation on it, ``forecast``
  is its posterior predictive band;
* the **live belief** (real-time twin, :meth:`Twin.create`): an observer
  (EKF/UKF/particle) tracks states and parameters from a measurement stream,
  as below.

``twin.recommend(policy)`` asks any :class:`medtwin.control.policy.Policy`
(dose optimisation, MPC) for a :class:`~medtwin.control.recommendation.Recommendation`
and checks it against the policy's hard constraints.

What ``assimilate`` does with a batch of measurements (and, optionally, new
inputs such as a dose or an infusion-rate change):

1. corrects each device's clock by its known offset (``settings.clock_offsets``);
2. screens the batch (:func:`medtwin.core.stream.screen`): exact duplicates
   are dropped idempotently, non-finite, implausible or unconvertible values are
   rejected with a reason and never reach the belief; units are converted.  New
   inputs identical to a dose the twin already holds (same time, amount, rate,
   target) are dropped the same way, so applying a stream twice is idempotent
   (a re-sent dose is one dose; give a really repeated dose its own record);
3. processes everything in time order.  A measurement (or dose) older than
   the current belief is *late*: the twin rewinds to the newest stored
   checkpoint at or before it and re-filters the stored measurements after it
   together with the new one, so the result is exactly what in-order arrival
   would have given.  Checkpoints are taken every ``checkpoint_every_h`` hours of
   stream time and kept for ``rewind_h`` hours (a bounded history); data later
   than that are rejected with the reason;
4. re-evaluates the alarms (:mod:`medtwin.assimilate.alarms`).

Examples
--------
>>> import numpy as np
>>> from medtwin.models import get_model
>>> from medtwin.core.events import Regimen
>>> from medtwin.core.observation import ResidualError
>>> from medtwin.assimilate.observers import UnscentedKalmanFilter
>>> from medtwin.assimilate.statespace import StateSpace
>>> from medtwin.core.stream import Measurement
>>> space = StateSpace.build(get_model("pk1_iv"), {"CL": 2.0, "V": 20.0}, estimated=("CL",),
...                          parameter_drift={"CL": 1e-3})
>>> twin = Twin.create(UnscentedKalmanFilter(space), {"C": ResidualError("proportional", proportional=0.1, output="C")},
...                    cov=np.diag([0.0, 0.3**2]), inputs=Regimen.single(500.0))
>>> later = twin.assimilate([Measurement(4.0, "C", 12.0, "mg/L"), Measurement(2.0, "C", 19.0, "mg/L")])
>>> [e.measurement.time for e in later.history], twin.belief.time   # time order; the old twin is unchanged
([2.0, 4.0], 0.0)
>>> later.state().parameters["CL"]["median"] > 2.0
True
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from medtwin.assimilate import alarms as alarm_rules
from medtwin.assimilate.beliefs import OK, Belief, GaussianBelief, Innovation
from medtwin.assimilate.detectors import Cusum
from medtwin.assimilate.inflation import inflate_covariance, inflation_scale
from medtwin.core.inputs import input_schedule
from medtwin.core.stream import Measurement, Rejection, screen
from medtwin.core.events import Regimen
from medtwin.core.observation import ResidualError
from medtwin.errors import DataError

__all__ = ["Checkpoint", "Entry", "Twin", "TwinSettings", "TwinState"]


@dataclass(frozen=True)
class TwinSettings:
    """How a twin handles its stream.

    Parameters
    ----------
    checkpoint_every_h : float
        Stream time (h) between stored beliefs used for rewinding.
    rewind_h : float
        How far back (h before the newest measurement) late data can still be processed exactly.
    nis_window : int
        Number of recent innovations in the misspecification test.
    nis_level : float
        Two-sided level of the χ² band of that test.
    clock_offsets : mapping
        Device -> offset (h) of its clock: true time = device time − offset.
    substances : mapping
        Output -> substance for mass/molar unit conversion (e.g. ``{"G": "glucose"}``).
    plausible : mapping
        Output -> (low, high) plausible range in model units.
    regime_detector : Cusum, optional
        Regime-change detector on the standardized innovations
        (:class:`~medtwin.assimilate.detectors.Cusum`); None switches it off.
    regime_inflation : float
        On a detected regime change the variance of every estimated log
        parameter is multiplied by this (the twin re-personalizes: old data
        keep anchoring the belief, but the parameters become plastic again).
    """

    checkpoint_every_h: float = 1.0
    rewind_h: float = 24.0
    nis_window: int = 12
    nis_level: float = 0.99
    clock_offsets: Mapping[str, float] = field(default_factory=dict)
    substances: Mapping[str, str] = field(default_factory=dict)
    plausible: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    regime_detector: Cusum | None = None
    regime_inflation: float = 4.0

    def __post_init__(self):
        if not (math.isfinite(self.regime_inflation) and self.regime_inflation >= 1.0):
            raise DataError(f"twin settings: regime_inflation must be >= 1, got {self.regime_inflation!r}")
        for name in ("checkpoint_every_h", "rewind_h"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise DataError(f"twin settings: {name} must be a positive number of hours, got {value!r}")
        if self.nis_window < 1 or not 0 < self.nis_level < 1:
            raise DataError("twin settings: nis_window must be >= 1 and nis_level in (0, 1)")


@dataclass(frozen=True)
class Entry:
    """One processed measurement: the measurement (aligned, converted), its innovation and the update status."""

    measurement: Measurement
    innovation: Innovation
    status: str
    regime_change: float | None = None  # onset (h) of a regime change detected at this measurement


@dataclass(frozen=True)
class Checkpoint:
    """A stored belief (and regime-detector state) after the first ``index`` history entries."""

    index: int
    belief: Any
    detector: Any = None


@dataclass(frozen=True)
class TwinState:
    """The twin's current estimate, in model units.

    Attributes
    ----------
    time : float
        h.
    states : dict
        State name -> {"mean", "sd", "p05", "p95"} (state unit; Gaussian approximation of the belief).
    parameters : dict
        Estimated parameter -> {"median", "p05", "p95"} (parameter unit; log-normal).
    units : dict
        Name -> unit.
    """

    time: float
    states: Mapping[str, Mapping[str, float]]
    parameters: Mapping[str, Mapping[str, float]]
    units: Mapping[str, str]


Z90 = 1.6448536269514722


@dataclass(frozen=True, eq=False)
class Twin:
    """One patient's twin: model + posterior + live belief + history + provenance (see the module docstring).

    Build with :meth:`create` (a live twin: an observer tracks a belief over states and parameters) or
    :meth:`from_posterior` (a treatment twin: a personalized posterior over the parameters); a twin may hold
    both.  ``model`` is the Model object itself (never a name): a twin of a user-defined model assimilates,
    forecasts, recommends, saves and loads like one of a library model.

    Attributes
    ----------
    model : Model
        Set from the observer's state space or the posterior when not given.
    observer, belief : optional
        The live part (observer and its current belief); None for a posterior-only twin.
    posterior : Posterior, optional
        The personalized posterior of the parameters with inter-individual variability.
    inputs : Regimen
        Every dose or input the twin knows of (model units).
    history, checkpoints, rejected, seen, alarms : tuple
        What the live part has processed (see the module docstring).
    adaptation : AdaptationState, optional
        The continual-adaptation state (:meth:`adapt`).
    provenance : callable, optional
        ``provenance(operation, twin)`` after every operation that changes the twin.
    """

    observer: Any = None
    errors: Mapping[str, ResidualError] = field(default_factory=dict)
    inputs: Regimen = field(default_factory=Regimen)
    belief: Belief | None = None
    history: tuple[Entry, ...] = ()
    checkpoints: tuple[Checkpoint, ...] = ()
    rejected: tuple[Rejection, ...] = ()
    seen: frozenset = frozenset()
    alarms: tuple = ()
    settings: TwinSettings = field(default_factory=TwinSettings)
    patient: str | None = None
    provenance: Callable | None = None
    detector_state: Any = None
    reference_variance: Any = None  # initial variance of each estimated log parameter: the cap of a re-personalization
    model: Any = None
    posterior: Any = None
    adaptation: Any = None
    _cache: dict = field(default_factory=dict, repr=False, compare=False)  # the input schedule of ``inputs``

    # ------------------------------------------------------------------ construction
    @classmethod
    def create(cls, observer, errors: Mapping[str, ResidualError], *, mean=None, cov=None, time: float = 0.0,
               inputs: Regimen | None = None, settings: TwinSettings | None = None, patient: str | None = None,
               seed: int = 0, provenance: Callable | None = None) -> "Twin":
        """A twin whose belief starts at N(mean, cov) at ``time`` h.

        ``errors`` maps each measured output to its residual error; ``provenance``
        (optional) is called as ``provenance(operation, twin)`` after every
        operation that changes the belief (e.g. to append to an audit log).
        """
        for output, error in errors.items():
            observer.space.output_index(output)
            if not isinstance(error, ResidualError):
                raise DataError(f"twin: error model of {output} must be a ResidualError")
        kwargs = {"seed": seed} if observer.name == "particle" else {}
        belief = observer.init(mean, cov, time, **kwargs)
        settings = settings or TwinSettings()
        detector = settings.regime_detector.init() if settings.regime_detector is not None else None
        return cls(observer=observer, errors=dict(errors), inputs=inputs or Regimen(), belief=belief,
                   checkpoints=(Checkpoint(0, belief, detector),), settings=settings, patient=patient,
                   provenance=provenance, detector_state=detector,
                   reference_variance=tuple(float(v) for v in np.diag(np.atleast_2d(belief.cov))[observer.space.n_states:]))

    def __post_init__(self):
        from medtwin.core.model import Model

        models = [m for m in (self.model, None if self.observer is None else self.observer.space.model,
                              None if self.posterior is None else self.posterior.model) if m is not None]
        if not models:
            raise DataError("twin: give an observer (live twin), a posterior (treatment twin) or both")
        if not isinstance(models[0], Model):
            raise DataError(f"twin: model must be a Model object, not {type(models[0]).__name__}")
        for other in models[1:]:
            if other is not models[0] and other.digest() != models[0].digest():
                raise DataError(f"twin: the observer's and the posterior's models differ ({models[0].name} vs "
                                f"{other.name}, digests differ)")
        object.__setattr__(self, "model", models[0])
        if (self.observer is None) != (self.belief is None):
            raise DataError("twin: an observer needs a belief and a belief an observer")

    @classmethod
    def from_posterior(cls, posterior, *, inputs: Regimen | None = None, patient: str | None = None,
                       provenance: Callable | None = None) -> "Twin":
        """A treatment twin on a personalized posterior (:func:`medtwin.infer.personalize.personalize`).

        ``inputs`` defaults to the regimen of the posterior's latest data batch (the doses given so far).

        Examples
        --------
        >>> from medtwin.io.population_file import load_population, shipped_population_path
        >>> from medtwin.infer.posterior import Posterior
        >>> pop = load_population(shipped_population_path("vancomycin_goti2018"))
        >>> twin = Twin.from_posterior(Posterior.from_prior(pop.prior_for({"CRCL": 60.0, "WT": 75.0, "DIAL": 0.0})))
        >>> twin.model.name, twin.belief is None, twin.time
        ('vancomycin_goti2018', True, 0.0)
        """
        from medtwin.infer.posterior import Posterior

        if not isinstance(posterior, Posterior) and not hasattr(posterior, "component_draws"):
            raise DataError(f"twin: posterior must be a Posterior (or a ModelAveragedPosterior), got "
                            f"{type(posterior).__name__}")
        if inputs is None:
            inputs = posterior.data[-1].regimen if posterior.data else Regimen()
        if not isinstance(inputs, Regimen):
            raise DataError("twin: inputs must be a Regimen")
        if patient is None and posterior.data:
            patient = posterior.data[-1].patient
        return cls(posterior=posterior, inputs=inputs, patient=patient, provenance=provenance)

    @property
    def space(self):
        if self.observer is None:
            raise DataError("twin: a posterior-only twin has no observer state space")
        return self.observer.space

    @property
    def time(self) -> float:
        """Now for the twin (h): the belief's time, else the latest observation the posterior has seen."""
        if self.belief is not None:
            return self.belief.time
        times = [float(np.max(d.times)) for d in self.posterior.data if np.size(d.times)]
        return max(times) if times else 0.0

    # ------------------------------------------------------------------ assimilation
    def assimilate(self, measurements, inputs: Regimen | None = None) -> "Twin":
        """A new twin that has seen ``measurements`` and, optionally, new ``inputs``.

        ``measurements``: Measurement values (any order) for the live part, or a ``PatientData`` batch for
        the posterior (today's posterior becomes tomorrow's prior, :meth:`Posterior.update`; its regimen
        holds every dose so far and becomes the twin's inputs).  A posterior-only twin takes Measurement
        values too: screened and converted as for a live twin, then one batch (:meth:`_assimilate_levels`).
        """
        from medtwin.core.data import PatientData

        if isinstance(measurements, PatientData):
            return self._assimilate_batch(measurements, inputs)
        if self.observer is None:
            return self._assimilate_levels(measurements, inputs)
        offsets = self.settings.clock_offsets
        aligned = [replace(m, time=m.time - float(offsets.get(m.device, 0.0))) if m.device in offsets else m
                   for m in measurements]
        units = {name: self.model.output(name).unit for name in self.errors}
        result = screen(aligned, units, substances=self.settings.substances, plausible=self.settings.plausible,
                        seen_keys=self.seen)
        inputs = None if inputs is None else _new_inputs(self.inputs, inputs)
        new_inputs = self.inputs if inputs is None else self.inputs + inputs
        earliest_dose = None if inputs is None else _earliest_new_dose(self.inputs, new_inputs)
        checkpoint, late = self._rewind_point(result.accepted, earliest_dose)
        rejected = list(self.rejected) + list(result.rejected)
        accepted = []
        for m in result.accepted:
            if m in late:
                rejected.append(Rejection(m, f"arrived too late: {m.time:g} h is before the oldest stored checkpoint "
                                             f"({checkpoint.belief.time:g} h; rewind horizon {self.settings.rewind_h:g} h)"))
            else:
                accepted.append(m)
        redo = list(self.history[checkpoint.index:])
        times = [e.measurement.time for e in redo]
        for m in sorted(accepted, key=lambda m: m.time):  # stable: stored entries first at equal times
            k = bisect.bisect_right(times, m.time)
            times.insert(k, m.time)
            redo.insert(k, m)
        history = list(self.history[: checkpoint.index])
        checkpoints = [c for c in self.checkpoints if c.index <= checkpoint.index]
        belief, detector_state = checkpoint.belief, checkpoint.detector
        detector = self.settings.regime_detector
        cache = self._cache if new_inputs is self.inputs else {}
        if "schedule" not in cache:
            cache["schedule"] = input_schedule(self.model, new_inputs, self.space.theta)
        schedule = cache["schedule"]
        for item in redo:
            m = item.measurement if isinstance(item, Entry) else item
            belief = self.observer.predict(belief, m.time, schedule)
            belief, status, innovation = self.observer.update(belief, m.time, m.value, m.output, self.errors[m.output])
            onset = None
            if detector is not None and status == OK and math.isfinite(innovation.standardized):
                previous = detector_state
                detector_state, alarm, _ = detector.update(previous, innovation.standardized, m.time)
                if alarm:
                    onset = detector.onset_of(previous, innovation.standardized, m.time)
                    belief = inflate_parameters(belief, self.space.n_states, self.settings.regime_inflation,
                                                self.reference_variance)
            history.append(Entry(m, innovation, status, onset))
            if belief.time >= checkpoints[-1].belief.time + self.settings.checkpoint_every_h:
                checkpoints.append(Checkpoint(len(history), belief, detector_state))
        horizon = belief.time - self.settings.rewind_h  # keep the window covered: the last checkpoint before it too
        checkpoints = [c for c in checkpoints if c.belief.time < horizon][-1:] + [c for c in checkpoints
                                                                                  if c.belief.time >= horizon]
        twin = replace(self, inputs=new_inputs, belief=belief, history=tuple(history),
                       checkpoints=tuple(checkpoints), rejected=tuple(rejected), seen=result.seen_keys,
                       detector_state=detector_state, _cache=cache)
        twin = replace(twin, alarms=alarm_rules.evaluate(twin))
        if self.provenance is not None:
            self.provenance("assimilate", twin)
        return twin

    def _assimilate_batch(self, data, inputs: Regimen | None) -> "Twin":
        if self.posterior is None:
            raise DataError("twin: a PatientData batch updates the posterior, and this twin has none")
        if inputs is not None:
            raise DataError("twin: a PatientData batch carries its own regimen; do not give inputs too")
        twin = replace(self, posterior=self.posterior.update(data), inputs=data.regimen)
        if self.provenance is not None:
            self.provenance("assimilate", twin)
        return twin

    def _assimilate_levels(self, measurements, inputs: Regimen | None) -> "Twin":
        """Measurements into a posterior-only twin: screened and converted as for a live twin, then one batch.

        Only the posterior's observed output is accepted; a level at a dose time is taken as drawn before that
        dose (a trough).  Rejections and the duplicate keys are kept as for a live twin.
        """
        from medtwin.core.data import PatientData

        if self.posterior is None:
            raise DataError("twin: no posterior and no observer to assimilate into")
        output = self.posterior.prior.residual.output
        offsets = self.settings.clock_offsets
        aligned = [replace(m, time=m.time - float(offsets.get(m.device, 0.0))) if m.device in offsets else m
                   for m in measurements]
        result = screen(aligned, {output: self.model.output(output).unit}, substances=self.settings.substances,
                        plausible=self.settings.plausible, seen_keys=self.seen)
        new_inputs = self.inputs if inputs is None else self.inputs + (_new_inputs(self.inputs, inputs) or Regimen())
        twin = replace(self, inputs=new_inputs, seen=result.seen_keys,
                       rejected=self.rejected + tuple(result.rejected))
        if not result.accepted:
            return twin
        levels = sorted(result.accepted, key=lambda m: m.time)
        dose_times = new_inputs.jump_times() if len(new_inputs) else np.array([])
        covariates = self.posterior.data[-1].covariates if self.posterior.data else {}
        data = PatientData(new_inputs, [m.time for m in levels], [m.value for m in levels], covariates, output,
                           pre_dose=[bool(np.any(np.abs(dose_times - m.time) < 1e-9)) for m in levels],
                           patient=self.patient)
        twin = replace(twin, posterior=self.posterior.update(data))
        if self.provenance is not None:
            self.provenance("assimilate", twin)
        return twin

    def adapt(self, strategy, data, population, *, detector="default") -> "Twin":
        """A new twin after one batch of continual adaptation (:func:`medtwin.twin.adaptation.adapt`).

        The adaptation state is kept on the twin; its posterior becomes the twin's posterior.  ``detector``:
        the regime detector (default the adaptation's own default; None switches it off).
        """
        from medtwin.twin.adaptation import AdaptationState, adapt

        state = self.adaptation if self.adaptation is not None else AdaptationState(posterior=self.posterior)
        options = {} if isinstance(detector, str) and detector == "default" else {"detector": detector}
        state = adapt(strategy, state, data, population, self.model, **options)
        twin = replace(self, adaptation=state, posterior=state.posterior, inputs=data.regimen)
        if self.provenance is not None:
            self.provenance("adapt", twin)
        return twin

    def _rewind_point(self, accepted, earliest_dose) -> tuple[Checkpoint, set]:
        """The checkpoint to restart from, and the measurements older than the bounded history."""
        now, oldest = self.belief.time, self.checkpoints[0].belief.time
        dose_is_late = earliest_dose is not None and earliest_dose < now
        if dose_is_late and earliest_dose < oldest:
            raise DataError(f"a dose at {earliest_dose:g} h is older than the oldest stored checkpoint "
                            f"({oldest:g} h): rebuild the twin from its start")
        late = {m for m in accepted if m.time < oldest}
        starts = [m.time for m in accepted if m.time < now and m not in late] + ([earliest_dose] if dose_is_late else [])
        if not starts:
            return Checkpoint(len(self.history), self.belief, self.detector_state), late
        earliest = min(starts)
        return [c for c in self.checkpoints if c.belief.time <= earliest][-1], late

    # ------------------------------------------------------------------ queries
    def state(self) -> TwinState:
        """The current estimate: states (mean, sd, 90 % band) and estimated parameters (median, 90 % band)."""
        if self.belief is None:
            raise DataError("twin: state() reads the live belief; a posterior-only twin has none (see .posterior)")
        mean, sd = np.asarray(self.belief.mean), np.asarray(self.belief.sd)
        model, n_x = self.model, self.space.n_states
        states = {name: {"mean": float(mean[i]), "sd": float(sd[i]), "p05": float(mean[i] - Z90 * sd[i]),
                         "p95": float(mean[i] + Z90 * sd[i])} for i, name in enumerate(model.state_names)}
        parameters = {name: {"median": float(np.exp(mean[n_x + j])), "p05": float(np.exp(mean[n_x + j] - Z90 * sd[n_x + j])),
                             "p95": float(np.exp(mean[n_x + j] + Z90 * sd[n_x + j]))}
                      for j, name in enumerate(self.space.estimated)}
        units = {s.name: s.unit for s in model.states} | {p: model.parameter(p).unit for p in self.space.estimated}
        return TwinState(self.belief.time, states, parameters, units)

    def forecast(self, regimen: Regimen | None = None, horizon: float = 24.0, *, step: float = 0.25,
                 n_draws: int = 500, seed: int = 0, process_noise: bool = True, times=None, pre_dose=None):
        """Predictive band of every output from now to now + ``horizon`` h under ``regimen`` (added to the inputs).

        Live twin: draws of z come from the belief; each is propagated through
        the model with the process noise of every ``step`` (the same stochastic
        model the observer assumes, so the band widens with the parameter
        drift), and the measured outputs get their residual error in
        ``band.observed``.  Posterior-only twin: :meth:`Posterior.predict` of the
        inputs plus ``regimen`` at ``times`` (default every ``step`` h from 0 to
        now + ``horizon``), ``pre_dose`` marking levels drawn before a dose.
        """
        from medtwin.assimilate.forecast import forecast_band

        inputs = self.inputs if regimen is None else self.inputs + regimen
        if self.belief is None:
            if times is None:
                end = self.time + float(horizon)
                times = np.unique(np.round(np.append(np.arange(0.0, end + 1e-9, float(step)), end), 9))
            return self.posterior.predict(inputs, times, n_draws=n_draws, seed=seed, pre_dose=pre_dose)
        if times is not None or pre_dose is not None:
            raise DataError("twin: times= and pre_dose= apply to a posterior-only twin's forecast")
        return forecast_band(self.observer, self.belief, inputs, self.errors, horizon=horizon, step=step,
                             n_draws=n_draws, seed=seed, process_noise=process_noise)

    def recommend(self, policy, **options):
        """The policy's proposal for this twin, checked against the policy's hard constraints.

        ``policy`` implements :class:`medtwin.control.policy.Policy` (``propose(twin, **options)`` and
        ``constraints``): dose optimisation (:class:`~medtwin.control.policy.DoseOptimizer`) and model
        predictive control (:class:`~medtwin.control.mpc.MPCController`) alike.  Returns a new
        :class:`~medtwin.control.recommendation.Recommendation`; the twin is unchanged.
        """
        from medtwin.control.policy import propose

        return propose(policy, self, **options)

    def output_band(self, output: str) -> tuple[float, float, float]:
        """(p05, mean, p95) of ``output`` now under the belief (output unit), from the observer's own moments.

        Gaussian beliefs use the unscented transform of the belief (13 sigma points
        for 6 states), particle beliefs the weighted particles; the band is
        mean ± 1.645 sd.
        """
        if self.observer is None:
            raise DataError("twin: output_band reads the live belief; a posterior-only twin has none (use forecast)")
        mean, sd = self.observer.output_moments(self.belief, output)
        return mean - Z90 * sd, mean, mean + Z90 * sd

    def provenance_content(self) -> dict:
        """Digest-able content (see :func:`medtwin.governance.provenance.result_view`)."""
        if self.belief is None:
            content = self.posterior.provenance_content()
            content["content"] = {"model": self.model.name, "model_digest": self.model.digest(), **content["content"]}
            return content
        belief = self.belief.to_dict()
        arrays = {k: np.asarray(v) for k, v in belief.items() if k in ("mean", "cov", "particles", "log_weights")}
        return {"content": {"time": self.belief.time, "n_measurements": len(self.history),
                            "n_rejected": len(self.rejected), **arrays},
                "outputs": arrays, "solver": {"method": f"{self.observer.name} + rk4",
                                              "max_step_h": self.space.max_step}}

    # ------------------------------------------------------------------ storage
    def to_dict(self) -> dict:
        """JSON-ready content; :func:`twin_from_dict` restores a twin with the same belief bit for bit."""
        from medtwin.twin.codec import twin_to_dict

        return twin_to_dict(self)


def inflate_parameters(belief, n_states: int, factor: float, cap=None):
    """The belief with the variance of every estimated log parameter multiplied by ``factor`` (states untouched).

    ``cap`` (one variance per estimated parameter, e.g. the prior's) bounds the
    result: a parameter's variance becomes min(f·var, max(var, cap)), so
    repeated alarms re-open the parameters up to the prior's uncertainty and
    never beyond it (an unbounded inflation would let the filter diverge).
    Gaussian: cov ← D cov D with D diagonal (correlations kept).
    Particles: parameter coordinates spread about their weighted mean.
    The one inflation of the package (:mod:`medtwin.assimilate.inflation`).
    """
    indices = np.arange(n_states, len(belief.names))
    if isinstance(belief, GaussianBelief):
        return replace(belief, cov=inflate_covariance(belief.cov, factor, indices=indices, cap=cap))
    scale = inflation_scale(np.diag(np.atleast_2d(belief.cov)), factor, indices, cap)
    mean = belief.mean
    return replace(belief, particles=mean + (belief.particles - mean) * scale)


def _new_inputs(held: Regimen, given: Regimen) -> Regimen | None:
    """``given`` less the doses ``held`` already has (expanded, counted: two equal held bags drop two); None if
    nothing is new."""
    if not isinstance(given, Regimen):
        return given  # refused below, where the types are checked
    left = Counter(held.expanded())
    fresh = []
    for event in given.expanded():
        if left[event] > 0:
            left[event] -= 1
        else:
            fresh.append(event)
    if len(fresh) == len(given.expanded()):
        return given
    return Regimen(tuple(fresh)) if fresh else None


def _earliest_new_dose(old: Regimen, new: Regimen) -> float | None:
    old_events = set(old.events)
    added = [e.time for e in new.events if e not in old_events]
    return min(added) if added else None

