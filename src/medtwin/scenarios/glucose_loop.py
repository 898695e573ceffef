"""Closed-loop evaluation of the ICU glycaemic scenario: true patient, delayed measurements, twin, controller.

The loop, for one virtual patient over ``hours``:

* the **true patient** is a Bergman-minimal-model patient
  (:mod:`medtwin.scenarios.glucose_patients`) or a Hovorka / Dalla Man patient
  (:mod:`medtwin.scenarios.foreign_glucose`) with insulin sensitivity changing
  hour by hour, simulated with its own model — deliberately not the twin's (ICING);
* blood glucose is drawn every ``measure_every_h`` hours, with measurement
  error, and its result **arrives** ``delay_h`` later;
* at each arrival (and, with ``decide_every_h``, in between) the **policy** sets
  the insulin infusion rate (U/h), held until the next decision; enteral feeding
  runs at a constant known rate;
* the twin-guided policy assimilates the arrived measurement into the ICU twin
  (UKF), predicts its belief to now and asks the MPC controller
  (:mod:`medtwin.control.mpc`) for the rate; the standard of care is the
  variable-rate intravenous insulin infusion scale of the Joint British
  Diabetes Societies (JBDS-IP, 2014; revised 2023), applied to the latest
  glucose result.

Outcomes (on the true glucose every 5 minutes): time in 4.4–8.0 mmol/L, time
below 4.4 and below 2.2 (hypoglycaemia, severe), time above 10, total insulin,
and violations of the hard input constraints (bounds; rate of change for the
controller).

Examples
--------
>>> jbds_vriii_rate(6.2), jbds_vriii_rate(12.0), jbds_vriii_rate(3.5)
(1.0, 4.0, 0.0)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

from medtwin.core.stream import Measurement
from medtwin.core.events import DoseEvent, Regimen
from medtwin.core.simulate import simulate
from medtwin.errors import DataError
from medtwin.models import get_model

MMOL_PER_G_GLUCOSE = 1000.0 / 180.156
INSULIN_CMT, ENTERAL_CMT = 2, 3

#: JBDS-IP variable-rate intravenous insulin infusion, standard scale: (upper glucose bound mmol/L, rate U/h).
JBDS_VRIII_SCALE = ((4.0, 0.0), (7.0, 1.0), (11.0, 2.0), (17.0, 4.0), (28.0, 6.0), (math.inf, 8.0))


def jbds_vriii_rate(glucose: float) -> float:
    """Insulin rate (U/h) of the JBDS standard VRIII scale for a glucose result (mmol/L); 0 below 4.0."""
    for upper, rate in JBDS_VRIII_SCALE:
        if glucose <= upper:
            return rate
    return JBDS_VRIII_SCALE[-1][1]  # pragma: no cover - inf bound


@dataclass(frozen=True)
class GlucoseScenario:
    """The ICU glycaemic closed-loop set-up (times in h, rates in U/h and g/h, glucose in mmol/L)."""

    hours: int = 72
    measure_every_h: float = 1.0
    delay_h: float = 1.0 / 3.0
    enteral_g_per_h: float = 3.5
    insulin_max: float = 10.0
    max_change: float = 2.0
    target_low: float = 4.4
    target_high: float = 8.0
    reference: float = 6.0
    measurement_cv: float = 0.05
    decide_every_h: float | None = None

    def __post_init__(self):
        if not (self.hours >= 2 and self.measure_every_h > 0 and 0 <= self.delay_h < self.measure_every_h):
            raise DataError("glucose scenario: need hours >= 2, measure_every_h > 0 and 0 <= delay_h < measure_every_h")
        if self.decide_every_h is not None and not (0 < self.decide_every_h <= self.measure_every_h):
            raise DataError("glucose scenario: decide_every_h must be in (0, measure_every_h], got "
                            f"{self.decide_every_h!r}")

    def decision_times(self) -> np.ndarray:
        """When the policy sets the rate, h: at each result's arrival and, with ``decide_every_h``, in between.

        Examples
        --------
        >>> GlucoseScenario(hours=2, decide_every_h=0.5).decision_times().round(3).tolist()
        [0.333, 0.833, 1.333, 1.833]
        """
        arrivals = np.arange(0.0, self.hours, self.measure_every_h) + self.delay_h
        if self.decide_every_h is None:
            return arrivals
        between = np.arange(self.delay_h, self.hours, self.decide_every_h)
        return np.unique(np.round(np.concatenate([arrivals, between]), 10))


@dataclass(frozen=True)
class GlucoseOutcome:
    """One patient's closed-loop outcome (fractions of time on the true 5-min glucose)."""

    patient: int
    policy: str
    time_in_range: float
    time_below_4_4: float
    time_below_2_2: float
    time_above_10: float
    insulin_units: float
    bound_violations: int
    rate_violations: int
    mean_glucose: float
    times: np.ndarray
    glucose: np.ndarray
    rates: np.ndarray
    statuses: tuple[str, ...] = ()


#: Foreign truth models built once per process (one Model object each, so compiled kernels are reused).
_FOREIGN: dict = {}


def truth_model(name: str):
    """The Model of a virtual patient's truth: a library glucose model or a foreign one (Hovorka, Dalla Man).

    Examples
    --------
    >>> truth_model("hovorka_icu") is truth_model("hovorka_icu"), truth_model("bergman_insulin").name
    (True, 'bergman_insulin')
    """
    from medtwin.errors import ModelError
    from medtwin.scenarios.glucose_patients import GLUCOSE_MODELS

    if name in GLUCOSE_MODELS:
        return get_model(name)
    if name not in _FOREIGN:
        # the model modules, not medtwin.scenarios.foreign_glucose (which imports this module's JBDS scale)
        if name == "hovorka_icu":
            from medtwin.models.hovorka import hovorka_icu_model as factory
        elif name == "dalla_man_icu":
            from medtwin.models.dallaman import dalla_man_icu_model as factory
        else:
            raise ModelError(f"glucose truth models are {GLUCOSE_MODELS + ('hovorka_icu', 'dalla_man_icu')}, "
                             f"got {name!r}")
        _FOREIGN[name] = factory()
    return _FOREIGN[name]


class _TruePatient:
    """The virtual patient's own model under the inputs given so far, simulated by ``simulate()``.

    The insulin sensitivity (``SI``, or ``SIscale`` for the foreign truths) is a piecewise-constant parameter
    (``SI · si_multipliers[k]`` from hour k on).  The rates given by
    :meth:`advance` become zero-order infusion records; whenever they change, one ``simulate()`` call
    (adaptive Dormand–Prince, rtol 1e-10) from 0 h, with the current rates continued, gives the glucose at
    every remaining query time ``times`` (h), which :meth:`glucose` then reads until the next change.
    """

    def __init__(self, patient, times):
        self.model = truth_model(patient.model)
        self.theta = self.model.parameter_table(dict(patient.parameters))
        multipliers = np.asarray(patient.si_multipliers, dtype=float)
        name = "SIscale" if "SIscale" in patient.parameters else "SI"
        si = float(patient.parameters[name]) * multipliers
        self.changes = {name: (np.arange(len(multipliers), dtype=float), si)}
        self.times = np.unique(np.asarray(times, dtype=float))
        self.given: list[tuple[float, np.ndarray]] = []  # (from h, rates per state)
        self.t = 0.0
        self.known: dict[float, float] = {}

    def advance(self, t0: float, t1: float, rates: np.ndarray) -> None:
        if not self.given or not np.array_equal(self.given[-1][1], rates):
            self.given.append((float(t0), np.array(rates, dtype=float)))
            self.known = {}
        self.t = t1

    def glucose(self) -> float:
        if self.t not in self.known:
            query = np.unique(np.append(self.times[self.times >= self.t], self.t))
            ends = [start for start, _ in self.given[1:]] + [float(query[-1])]
            events = tuple(DoseEvent(time=start, amount=float(r[j]) * (end - start), cmt=int(j) + 1, rate=float(r[j]))
                           for (start, r), end in zip(self.given, ends) if end > start for j in np.flatnonzero(r))
            trajectory = simulate(self.model, self.theta, Regimen(events), query, pre_dose=[np.ones(len(query), bool)],
                                  method="dopri5", rtol=1e-10, atol=1e-10, keep_states=False,
                                  parameter_changes=self.changes)
            self.known = dict(zip(query.tolist(), trajectory.output("G").tolist()))
        return self.known[self.t]


def _rates(scenario: GlucoseScenario, insulin_u_per_h: float, n_states: int) -> np.ndarray:
    rates = np.zeros(n_states)
    rates[INSULIN_CMT - 1] = 1000.0 * insulin_u_per_h
    rates[ENTERAL_CMT - 1] = scenario.enteral_g_per_h * MMOL_PER_G_GLUCOSE
    return rates


def feed_regimen(scenario: GlucoseScenario, extra_h: float = 0.0) -> Regimen:
    """The known background input: enteral glucose at a constant rate (mmol into CMT 3) for the scenario + ``extra_h``.

    The twin is given ``extra_h`` = its controller's horizon, so that the last decisions plan with the feed
    still running (the feeding plan is known ahead).
    """
    rate = scenario.enteral_g_per_h * MMOL_PER_G_GLUCOSE
    return Regimen((DoseEvent(time=0.0, amount=rate * (scenario.hours + extra_h), cmt=ENTERAL_CMT, rate=rate),))


def insulin_event(start: float, end: float, u_per_h: float) -> Regimen:
    """An insulin infusion of ``u_per_h`` U/h from ``start`` to ``end`` h (mU into CMT 2); empty when 0."""
    if u_per_h <= 0 or end <= start:
        return Regimen()
    return Regimen((DoseEvent(time=start, amount=1000.0 * u_per_h * (end - start), cmt=INSULIN_CMT,
                              rate=1000.0 * u_per_h),))


def run_glucose_patient(patient, policy: Callable, scenario: GlucoseScenario = GlucoseScenario(), *,
                        name: str = "policy", seed: int = 0) -> GlucoseOutcome:
    """Simulate the loop for one patient under ``policy``.

    ``policy(state, now, results, current_rate) -> (rate U/h, state, status)`` is called at each result's
    arrival with every result arrived so far (list of Measurement); ``state`` is the policy's own value
    (None at the start), passed back in.
    """
    rng = np.random.default_rng([seed, int(patient.id)])
    sample_times = np.arange(0.0, scenario.hours, scenario.measure_every_h)
    decisions = scenario.decision_times()
    grid = np.arange(0.0, scenario.hours + 1e-9, 5.0 / 60.0)
    events = sorted(set(np.round(np.concatenate([grid, sample_times, decisions]), 10).tolist()))
    truth = _TruePatient(patient, events)
    n_states = truth.model.n_states
    pending, arrived, state, rate = [], [], None, 0.0
    glucose, rates, statuses = {}, [], []
    bound_violations = rate_violations = 0
    insulin = 0.0
    t = 0.0
    for event in events:
        if event > t:
            truth.advance(t, event, _rates(scenario, rate, n_states))
            insulin += rate * (event - t)
            t = event
        g = truth.glucose()
        if np.any(np.abs(grid - event) < 1e-9):
            glucose[event] = g
        for s in sample_times[np.abs(sample_times - event) < 1e-9]:
            value = g * (1.0 + scenario.measurement_cv * rng.standard_normal())
            pending.append(Measurement(float(s), "G", float(value), "mmol/L", device="blood-gas",
                                       source_id=f"bg{len(pending)}"))
        if np.any(np.abs(decisions - event) < 1e-9):
            arrived = [m for m in pending if m.time + scenario.delay_h <= event + 1e-9]
            new_rate, state, status = policy(state, event, arrived, rate)
            if not (0.0 - 1e-9 <= new_rate <= scenario.insulin_max + 1e-9):
                bound_violations += 1
            if abs(new_rate - rate) > scenario.max_change + 1e-9:
                rate_violations += 1
            rate = float(new_rate)
            rates.append((event, rate))
            statuses.append(status)
    values = np.array([glucose[k] for k in sorted(glucose)])
    return GlucoseOutcome(
        patient=int(patient.id), policy=name,
        time_in_range=float(np.mean((values >= scenario.target_low) & (values <= scenario.target_high))),
        time_below_4_4=float(np.mean(values < 4.4)), time_below_2_2=float(np.mean(values < 2.2)),
        time_above_10=float(np.mean(values > 10.0)), insulin_units=float(insulin),
        bound_violations=bound_violations, rate_violations=rate_violations, mean_glucose=float(values.mean()),
        times=np.array(sorted(glucose)), glucose=values, rates=np.array(rates), statuses=tuple(statuses))


def sliding_scale_policy(state, now, results, current_rate):
    """Standard of care: the JBDS VRIII rate for the latest glucose result (0 U/h before the first)."""
    if not results:
        return 0.0, state, "no result yet"
    latest = max(results, key=lambda m: m.time)
    return jbds_vriii_rate(latest.value), state, "sliding scale"


def twin_policy(scenario: GlucoseScenario, controller_factory: Callable, spec: dict | None = None, *,
                stop_below: float | None = None) -> Callable:
    """The twin-guided policy: assimilate arrived results, predict to now, ask the MPC controller.

    ``controller_factory(space)`` builds the controller for the twin's state space (so that every patient's
    twin shares one compiled controller).  Results taken while the twin's advice was followed are flagged
    ``under_advice`` (the feedback-loop alarm of the live twin sees them).  ``stop_below`` (mmol/L): a
    measurement-level safety rule over the model — while the latest result is below it, the rate may only
    fall (to at most the running rate minus the rate limit, never below 0), whatever the twin believes.
    """
    from medtwin.scenarios.icu import icu_twin_spec
    from medtwin.twin.codec import space_from_spec, twin_from_spec

    spec = spec or icu_twin_spec()

    def policy(state, now, results, current_rate):
        if state is None:
            controller = controller_factory(space_from_spec(spec))
            twin = twin_from_spec(spec, inputs=feed_regimen(scenario, controller.horizon * controller.step_h))
            state = {"twin": twin, "seen": set(), "controller": controller, "since": 0.0, "advised": False,
                     "last": None}
        twin = state["twin"]
        new = [replace(m, under_advice=state["advised"]) for m in results if m.source_id not in state["seen"]]
        given = insulin_event(state["since"], now, current_rate)
        twin = twin.assimilate(new, inputs=given if len(given) else None)
        state["seen"].update(m.source_id for m in new)
        recommendation = twin.recommend(state["controller"], time=now, reference=scenario.reference,
                                        current_rate=current_rate, warm_start=state["last"])
        rate, status = float(recommendation.action["apply_now_u_per_h"]), recommendation.status
        latest = max(results, key=lambda m: m.time).value if results else None
        if stop_below is not None and latest is not None and latest < stop_below:
            cap = max(0.0, current_rate - scenario.max_change)
            if rate > cap:
                rate, status = cap, f"{status}; safety: latest glucose {latest:.2f} < {stop_below:g} mmol/L"
        state.update(twin=twin, since=now, advised=True, last=recommendation)
        return rate, state, status

    return policy
