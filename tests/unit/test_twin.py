"""The Twin value: messy streams (order, lateness, duplicates, units, corruption), storage, replay, alarms."""

import json
import math
from dataclasses import replace

import numpy as np
import pytest

from medtwin.assimilate.alarms import detect_clock_offset, learning_weights
from medtwin.assimilate.observers import ParticleFilter, UnscentedKalmanFilter
from medtwin.assimilate.statespace import StateSpace
from medtwin.core.stream import Measurement
from medtwin.twin.codec import twin_from_dict, twin_to_dict
from medtwin.core.events import DoseEvent, Regimen
from medtwin.core.observation import ResidualError
from medtwin.core.simulate import simulate
from medtwin.errors import DataError
from medtwin.models import get_model
from medtwin.twin import Twin, TwinSettings

MODEL = get_model("pk1_iv")
REGIMEN = Regimen.every(8.0, "h", 600.0, n=6, duration=0.5)
ERROR = ResidualError("proportional", proportional=0.08, output="C")
TRUE = {"CL": 3.2, "V": 24.0}


def _stream(times, seed=0, params=TRUE, device="lab"):
    traj = simulate(MODEL, params, REGIMEN, times)
    c = np.asarray(traj.outputs["C"]).reshape(-1)
    rng = np.random.default_rng(seed)
    values = c * (1 + 0.08 * rng.standard_normal(len(c)))
    return [Measurement(float(t), "C", float(v), "mg/L", device=device) for t, v in zip(times, values)]


def _twin(observer="ukf", settings=None, drift=1e-3, **kw):
    space = StateSpace.build(MODEL, {"CL": 2.0, "V": 20.0}, estimated=("CL", "V"),
                             parameter_drift={"CL": drift, "V": drift})
    obs = UnscentedKalmanFilter(space) if observer == "ukf" else ParticleFilter(space, n_particles=500)
    return Twin.create(obs, {"C": ERROR}, cov=np.diag([0.0, 0.4**2, 0.3**2]), inputs=REGIMEN,
                       settings=settings or TwinSettings(), **kw)


TIMES = np.array([1.0, 3.5, 7.9, 9.0, 12.0, 15.9, 17.0, 23.9, 25.0, 30.0, 39.9])


@pytest.mark.parametrize("observer", ["ukf", "particle"])
def test_out_of_order_arrival_gives_exactly_the_in_order_belief(observer):
    stream = _stream(TIMES)
    in_order = _twin(observer).assimilate(stream)
    shuffled = [stream[i] for i in np.random.default_rng(4).permutation(len(stream))]
    twin = _twin(observer)
    for batch in (shuffled[:4], shuffled[4:7], shuffled[7:]):  # late data in every later batch
        twin = twin.assimilate(batch)
    np.testing.assert_array_equal(twin.belief.mean, in_order.belief.mean)
    np.testing.assert_array_equal(twin.belief.cov, in_order.belief.cov)
    assert [e.measurement.time for e in twin.history] == sorted(TIMES.tolist())


def test_data_older_than_the_rewind_horizon_are_rejected_with_the_reason():
    stream = _stream(TIMES)
    twin = _twin(settings=TwinSettings(checkpoint_every_h=2.0, rewind_h=6.0)).assimilate(stream[1:])
    late = twin.assimilate([stream[0]])
    assert late.belief is twin.belief or np.array_equal(late.belief.mean, twin.belief.mean)
    assert "too late" in late.rejected[-1].reason and late.rejected[-1].item.time == 1.0
    assert len(late.history) == len(twin.history)


def test_exact_duplicates_are_dropped_idempotently():
    stream = _stream(TIMES)
    once = _twin().assimilate(stream)
    twice = once.assimilate(stream).assimilate(stream[:3] + stream[:3])
    np.testing.assert_array_equal(twice.belief.mean, once.belief.mean)
    assert len(twice.history) == len(once.history)


def test_units_are_converted_and_unconvertible_or_corrupt_values_never_enter_the_belief():
    stream = _stream(TIMES[:5])
    in_ug_ml = [replace(m, unit="µg/mL") for m in stream]
    in_ng_ml = [replace(m, value=m.value * 1000.0, unit="ng/mL") for m in stream]
    reference = _twin().assimilate(stream)
    np.testing.assert_allclose(_twin().assimilate(in_ug_ml).belief.mean, reference.belief.mean, rtol=1e-12)
    np.testing.assert_allclose(_twin().assimilate(in_ng_ml).belief.mean, reference.belief.mean, rtol=1e-12)
    bad = [Measurement(20.0, "C", 5.0, "mmol/L"), Measurement(21.0, "C", float("nan"), "mg/L"),
           Measurement(22.0, "C", -3.0, "mg/L"), Measurement(23.0, "C", float("inf"), "mg/L")]
    twin = reference.assimilate(bad)
    assert twin.belief is reference.belief
    reasons = [r.reason for r in twin.rejected]
    assert len(reasons) == 4
    assert "mmol/L" in reasons[0] and "mg/L" in reasons[0]
    assert all("finite" in r for r in (reasons[1], reasons[3])) and "negative" in reasons[2]


def test_a_late_dose_rewinds_and_equals_knowing_it_from_the_start():
    extra = Regimen((DoseEvent(time=20.0, amount=300.0),))
    stream = _stream(TIMES)
    informed = _twin().assimilate(stream, inputs=extra)
    late = _twin().assimilate(stream).assimilate([], inputs=extra)
    np.testing.assert_array_equal(late.belief.mean, informed.belief.mean)


@pytest.mark.parametrize("observer", ["ukf", "particle"])
def test_save_load_and_replay_are_bit_identical(observer):
    stream = _stream(TIMES)
    first = _twin(observer).assimilate(stream[:6])
    stored = json.loads(json.dumps(twin_to_dict(first)))
    restored = twin_from_dict(stored)
    np.testing.assert_array_equal(restored.belief.mean, first.belief.mean)
    a = first.assimilate(stream[6:])
    b = restored.assimilate(stream[6:])
    c = _twin(observer).assimilate(stream[:6]).assimilate(stream[6:])
    for other in (b, c):
        np.testing.assert_array_equal(other.belief.mean, a.belief.mean)
        np.testing.assert_array_equal(other.belief.cov, a.belief.cov)


def test_a_changed_model_refuses_to_load():
    data = twin_to_dict(_twin())
    data["space"]["model_digest"] = "0" * 64
    with pytest.raises(DataError, match="digest"):
        twin_from_dict(data)


def test_misspecification_alarm_fires_on_a_wrong_model_and_not_on_the_right_one():
    times = np.arange(0.5, 48.0, 1.5)
    space_fixed = StateSpace.build(MODEL, TRUE)
    right = Twin.create(UnscentedKalmanFilter(space_fixed), {"C": ERROR}, inputs=REGIMEN)
    quiet = right.assimilate(_stream(times, seed=2))
    assert not [a for a in quiet.alarms if a.kind == "misspecification"]
    wrong = right.assimilate(_stream(times, seed=2, params={"CL": 6.0, "V": 24.0}))
    alarm = [a for a in wrong.alarms if a.kind == "misspecification"]
    assert alarm and alarm[0].statistic["nis_sum"] > alarm[0].statistic["high"]


def test_clock_offset_is_detected_and_zero_offset_is_not_flagged():
    times = np.arange(0.25, 24.0, 0.5)
    space = StateSpace.build(MODEL, TRUE)
    twin = Twin.create(UnscentedKalmanFilter(space), {"C": ResidualError("proportional", proportional=0.03,
                                                                         output="C")}, inputs=REGIMEN)
    honest = _stream(times, seed=5, device="poc")
    shifted = [replace(m, time=m.time + 0.5) for m in honest]  # the device clock runs 30 min ahead
    grid = np.arange(-4, 5) / 4.0
    report = detect_clock_offset(twin, shifted, "poc", offsets_h=grid)
    assert report.offset_h == pytest.approx(0.5) and report.alarm is not None
    assert detect_clock_offset(twin, honest, "poc", offsets_h=grid).alarm is None


def test_measurements_under_the_twins_own_advice_are_flagged_for_learning():
    stream = _stream(TIMES)
    advised = [replace(m, under_advice=m.time > 20) for m in stream]
    twin = _twin().assimilate(advised)
    alarm = [a for a in twin.alarms if a.kind == "feedback-loop"]
    assert alarm and alarm[0].statistic["n_flagged"] == sum(m.time > 20 for m in stream)
    weights = learning_weights(twin.history, policy="exclude")
    assert weights.tolist() == [0.0 if e.measurement.time > 20 else 1.0 for e in twin.history]


def test_forecast_band_covers_the_truth_and_state_reports_units():
    stream = _stream(TIMES)
    twin = _twin().assimilate(stream)
    band = twin.forecast(None, horizon=8.0, step=0.5, n_draws=400, seed=1)
    truth = np.asarray(simulate(MODEL, TRUE, REGIMEN, band.times).outputs["C"]).reshape(-1)
    lo, hi = band.interval("C", 0.95)
    assert np.mean((truth >= lo) & (truth <= hi)) >= 0.9
    state = twin.state()
    assert state.units["CL"] == "L/h" and math.isfinite(state.parameters["CL"]["median"])
    assert abs(math.log(state.parameters["CL"]["median"] / TRUE["CL"])) < 0.2


def test_a_regime_change_is_detected_and_makes_the_parameters_plastic_again():
    from medtwin.assimilate.detectors import Cusum

    times = np.arange(0.5, 48.0, 0.5)
    before = _stream(times[times < 24], seed=3)
    after = _stream(times[times >= 24], seed=4, params={"CL": 6.4, "V": 24.0})  # clearance doubles at 24 h
    space = StateSpace.build(MODEL, {"CL": 2.0, "V": 24.0}, estimated=("CL",), parameter_drift={"CL": 1e-5})

    def twin(settings=None):
        return Twin.create(UnscentedKalmanFilter(space), {"C": ERROR}, cov=np.diag([0.0, 0.5**2]), inputs=REGIMEN,
                           settings=settings)

    plain = twin().assimilate(before + after)
    detecting = twin(TwinSettings(regime_detector=Cusum(k=0.5, h=5.0))).assimilate(before + after)
    changes = [e for e in detecting.history if e.regime_change is not None]
    assert changes and 24.0 <= changes[0].measurement.time <= 30.0
    assert not [e for e in detecting.history if e.regime_change is not None and e.measurement.time < 24]
    assert [a for a in detecting.alarms if a.kind == "regime-change"]
    err = lambda twin: abs(math.log(twin.state().parameters["CL"]["median"] / 6.4))  # noqa: E731
    assert err(detecting) < err(plain)
    restored = twin_from_dict(json.loads(json.dumps(twin_to_dict(detecting))))
    more = _stream(np.array([48.5, 49.0]), seed=5, params={"CL": 6.4, "V": 24.0})
    np.testing.assert_array_equal(restored.assimilate(more).belief.mean, detecting.assimilate(more).belief.mean)


def test_applying_the_same_doses_twice_is_idempotent():
    extra = Regimen((DoseEvent(time=13.0, amount=300.0, cmt=1, rate=600.0),
                     DoseEvent(time=13.0, amount=300.0, cmt=1, rate=600.0)))   # two bags given together: both count
    stream = _stream(TIMES)
    once = _twin().assimilate(stream[:5]).assimilate(stream[5:], inputs=extra)
    twice = once.assimilate(stream[5:], inputs=extra)                          # the same stream re-sent
    assert twice.inputs == once.inputs and len(once.inputs.expanded()) == len(REGIMEN.expanded()) + 2
    np.testing.assert_array_equal(twice.belief.mean, once.belief.mean)
    np.testing.assert_array_equal(twice.belief.cov, once.belief.cov)
    third = once.assimilate([], inputs=Regimen((DoseEvent(time=13.0, amount=300.0, cmt=1, rate=600.0),
                                                DoseEvent(time=20.0, amount=100.0, cmt=1))))
    assert len(third.inputs.expanded()) == len(once.inputs.expanded()) + 1    # only the new dose is added


def test_check_clocks_names_the_device_whose_clock_is_off():
    from medtwin.assimilate.alarms import check_clocks

    twin = Twin.create(UnscentedKalmanFilter(StateSpace.build(MODEL, TRUE)), {"C": ERROR}, inputs=REGIMEN)
    poc = _stream(np.arange(0.25, 24.0, 0.5), seed=0, device="poc")          # bedside, every 30 min
    lab = _stream(np.arange(2.1, 24.0, 1.5), seed=100, device="lab")         # central lab, every 90 min
    grid = np.arange(-2, 4) / 4.0
    late = lambda ms: [replace(m, time=m.time + 0.5) for m in ms]            # noqa: E731  (clock 30 min ahead)
    assert check_clocks(twin, poc + lab, offsets_h=grid).verdict == "no offset"
    one = check_clocks(twin, late(poc) + lab, offsets_h=grid)
    assert (one.verdict, one.suspect, one.reports["poc"].offset_h) == ("device", "poc", 0.5)
    assert "device 'poc''s clock is most likely wrong: offset +30 min" in one.message
    assert one.reports["lab"].alarm is None
    every = check_clocks(twin, late(poc) + late(lab), offsets_h=grid)        # the pumps' clock, not a device's
    assert (every.verdict, every.suspect) == ("dose records", None) and "dose records" in every.message
