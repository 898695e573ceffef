"""The schedule value (core/schedule.py): segments of a tricky regimen by hand, time-varying θ in closed form."""

import numpy as np
import pytest

from medtwin import Regimen, get_model, simulate
from medtwin.core.events import EV_SS, EV_TIME, DoseEvent
from medtwin.core.schedule import compile_schedule
from medtwin.errors import SimulationError

# pk1_oral: states DEPOT (CMT 1: oral, F1 and ALAG1), CENTRAL (CMT 2: iv); parameters KA, CL, V, F1, ALAG1.
THETA = {"KA": 1.0, "CL": 2.0, "V": 20.0, "F1": 0.5, "ALAG1": 0.5}
TRICKY = Regimen((
    DoseEvent(time=0.0, amount=100.0, cmt=1),                    # oral: F 0.5, lag 0.5 h -> 50 mg into DEPOT at 0.5 h
    DoseEvent(time=1.0, amount=100.0, cmt=2, rate=50.0),         # infusion 1: 1-3 h at 50 mg/h
    DoseEvent(time=2.0, amount=60.0, cmt=2, rate=10.0),          # infusion 2: 2-8 h at 10 mg/h, overlapping, cut by the reset
    DoseEvent(time=6.0, amount=10.0, cmt=2, evid=4),             # reset, then a 10 mg IV bolus
    DoseEvent(time=10.0, amount=120.0, cmt=2, rate=10.0, ii=8.0, ss=1),  # SS infusion of 12 h every 8 h (DUR > II)
))
OBS = np.array([0.5, 0.5, 3.0, 6.0, 12.0])
PRE = np.array([True, False, False, True, False])


def test_segments_of_a_tricky_regimen_match_hand_derived_values():
    seg = compile_schedule(get_model("pk1_oral"), TRICKY, OBS, THETA, pre_dose=PRE)
    # Change points: lagged oral dose, infusion starts/ends, reset, the (ignored) end of the cut infusion at 8 h,
    # the SS record, an output, the end of the earlier SS dose's infusion still running at 10 h (10 + 12 - 8 = 14 h)
    # and the end of the SS record's own infusion (22 h).
    np.testing.assert_array_equal(seg.start, [0.5, 1.0, 2.0, 3.0, 6.0, 8.0, 10.0, 12.0, 14.0, 22.0])
    np.testing.assert_array_equal(seg.end, [1.0, 2.0, 3.0, 6.0, 8.0, 10.0, 12.0, 14.0, 22.0, 22.0])
    np.testing.assert_array_equal(seg.rates[:, 0], 0.0)
    np.testing.assert_array_equal(seg.rates[:, 1], [0.0, 50.0, 60.0, 10.0, 0.0, 0.0, 20.0, 20.0, 10.0, 0.0])
    np.testing.assert_array_equal(seg.reset, [False, False, False, False, True, False, False, False, False, False])
    bolus = np.zeros((10, 2))
    bolus[0, 0], bolus[4, 1] = 50.0, 10.0  # F applied to the oral dose only
    np.testing.assert_array_equal(seg.bolus, bolus)
    dose = np.zeros((10, 2))
    dose[0, 0], dose[4, 1] = 100.0, 10.0
    np.testing.assert_array_equal(seg.bolus_dose, dose)
    assert seg.ss_segment.tolist() == [6]
    assert seg.events[seg.ss_record[0], EV_TIME] == 10.0 and seg.events[seg.ss_record[0], EV_SS] == 1
    assert seg.obs_segment.tolist() == [0, 0, 3, 4, 7]
    assert seg.obs_order.tolist() == [0, 1, 2, 3, 4]  # the pre-dose sample at 0.5 h is read before the bolus
    assert not seg.overflow


def test_segments_follow_theta_for_lag_and_f():
    seg = compile_schedule(get_model("pk1_oral"), Regimen.single(100.0), [], {**THETA, "F1": 0.8, "ALAG1": 1.25})
    assert seg.start.tolist() == [1.25] and seg.bolus[0].tolist() == [80.0, 0.0]


def test_simulate_with_clearance_changing_at_5h_matches_the_piecewise_closed_form():
    model = get_model("pk1_iv")
    v, cl1, cl2, dose = 20.0, 2.0, np.array([0.5, 4.0]), 100.0
    times = np.array([0.0, 2.0, 5.0, 7.5, 12.0])
    c5 = dose / v * np.exp(-cl1 / v * 5.0)
    expected = np.where(times[None, :] < 5.0, dose / v * np.exp(-cl1 / v * times[None, :]),
                        c5 * np.exp(-cl2[:, None] / v * (times[None, :] - 5.0)))
    changes = {"CL": ([5.0], cl2[:, None])}  # one value per patient
    params = {"CL": np.full(2, cl1), "V": np.full(2, v)}
    for method in ("exact", "dopri5"):
        tr = simulate(model, params, Regimen.single(dose), times, method=method, rtol=1e-11, atol=1e-13,
                      parameter_changes=changes)
        assert tr.ok
        np.testing.assert_allclose(tr.output("C"), expected, rtol=1e-9)
    # per-patient schedules (the per-patient kernel path) give the same
    tr = simulate(model, params, Regimen.single(dose), [times, times], parameter_changes=changes)
    np.testing.assert_allclose(tr.output("C"), expected.reshape(-1), rtol=1e-12)


def test_parameter_change_applies_to_an_output_read_at_the_change_time():
    model = get_model("pk1_iv")
    tr = simulate(model, {"CL": 2.0, "V": 20.0}, Regimen.single(100.0), [5.0],
                  parameter_changes={"V": ([5.0], [40.0])})
    np.testing.assert_allclose(tr.output("C")[0, 0], 100.0 * np.exp(-0.5) / 40.0, rtol=1e-12)


def test_parameter_changes_are_checked():
    model = get_model("pk1_iv")
    with pytest.raises(SimulationError, match="unknown parameter"):
        simulate(model, None, Regimen.single(1.0), [1.0], parameter_changes={"XX": ([1.0], [1.0])})
    with pytest.raises(SimulationError, match="values must have shape"):
        simulate(model, None, Regimen.single(1.0), [1.0], parameter_changes={"CL": ([1.0, 2.0], [1.0])})


def _assert_same_segments(a, b):
    for name in ("start", "end", "reset", "bolus", "bolus_dose", "rates", "ss_segment", "ss_record", "obs_segment",
                 "obs_pre", "obs_order", "change_segment"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype, name
        np.testing.assert_array_equal(x, y, err_msg=name)
    assert a.overflow == b.overflow


def test_plain_python_and_numba_schedules_are_identical(monkeypatch):
    """compile_schedule's plain-Python path (small schedules) gives the numba path's arrays, bit for bit."""
    import sys

    import medtwin.core.schedule as schedule
    from medtwin.core import schedule_jit

    model = get_model("pk1_oral")
    changes = {"CL": ([5.0, 11.0], [4.0, 3.0])}
    ss_cut = Regimen((DoseEvent(time=0.0, amount=100.0, cmt=2, rate=1.0, ii=8.0, ss=1),))  # > MAX_SS_RESIDUALS
    cases = [(TRICKY, OBS, PRE, None), (TRICKY, OBS, PRE, changes), (None, OBS, None, None), (ss_cut, OBS, None, None),
             (Regimen(tuple(DoseEvent(time=12.0 * k, amount=500.0, cmt=2, rate=250.0) for k in range(40))),
              np.arange(0.0, 480.0, 0.5), None, None)]
    for regimen, obs, pre, ch in cases:
        monkeypatch.setattr(schedule, "JIT_ABOVE", 10**9)
        monkeypatch.setattr(schedule, "JIT_AFTER", 10**9)
        monkeypatch.delitem(sys.modules, "medtwin.core.schedule_jit")  # else the compiled copies are used
        plain = compile_schedule(model, regimen, obs, THETA, pre_dose=pre, parameter_changes=ch)
        monkeypatch.undo()
        monkeypatch.setattr(schedule, "JIT_ABOVE", -1)
        compiled = compile_schedule(model, regimen, obs, THETA, pre_dose=pre, parameter_changes=ch)
        monkeypatch.undo()
        _assert_same_segments(plain, compiled)
    ev = compiled.events
    args = (compiled.reference, ev, np.zeros(0), np.zeros(0, bool), schedule.dose_parameter_index(model))
    for a, b in zip(schedule.build_schedule(*args), schedule_jit.build_schedule(*args)):
        np.testing.assert_array_equal(a, b)
