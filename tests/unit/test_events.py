"""Dosing events and regimens: NONMEM field rules, expansion, units."""

import numpy as np
import pytest

from medtwin import DataError, DoseEvent, Regimen, SimulationError, get_model, simulate


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"time": -1.0, "amount": 1.0}, "TIME"),
        ({"time": 0.0, "amount": -1.0}, "AMT"),
        ({"time": 0.0, "amount": 1.0, "rate": -3.0}, "RATE"),
        ({"time": 0.0, "amount": 1.0, "ss": 1}, "II"),
        ({"time": 0.0, "amount": 1.0, "addl": 2}, "II"),
        ({"time": 0.0, "amount": 1.0, "ss": 3, "ii": 12}, "SS"),
        ({"time": 0.0, "amount": 1.0, "evid": 3}, "AMT"),
        ({"time": 0.0, "amount": 0.0}, "AMT"),
        ({"time": float("nan"), "amount": 1.0}, "TIME"),
        ({"time": 0.0, "amount": 1.0, "cmt": 0}, "CMT"),
    ],
)
def test_invalid_dose_fields_name_the_field(kwargs, field):
    with pytest.raises(DataError, match=field):
        DoseEvent(**kwargs)


def test_every_expands_addl_and_converts_units():
    r = Regimen.every(0.5, "d", 1, "g", n=3, duration=30, duration_unit="min")
    events = r.expanded()
    assert [e.time for e in events] == [0.0, 12.0, 24.0]
    assert all(e.amount == 1000.0 for e in events)
    assert events[0].rate == pytest.approx(2000.0)
    assert r.total_amount() == 3000.0


def test_unknown_units_are_rejected():
    with pytest.raises(DataError, match="time unit"):
        Regimen.every(12, "fortnights", 100, n=2)
    with pytest.raises(DataError, match="amount unit"):
        Regimen.every(12, "h", 100, "grains", n=2)


def test_dose_into_non_dose_compartment_is_rejected():
    with pytest.raises(DataError, match="CMT 3"):
        simulate(get_model("pk2_oral"), None, Regimen.single(100.0, cmt=3), [1.0])


def test_times_must_be_valid():
    m = get_model("pk1_iv")
    with pytest.raises(SimulationError, match="non-decreasing"):
        simulate(m, None, Regimen.single(1.0), [2.0, 1.0])
    with pytest.raises(SimulationError, match=">= 0"):
        simulate(m, None, Regimen.single(1.0), [-1.0])


def test_batch_with_per_patient_regimens_and_times():
    m = get_model("pk1_iv")
    regs = [Regimen.single(100.0), Regimen.single(200.0, time=1.0)]
    times = [np.array([0.0, 1.0]), np.array([1.0, 2.0, 3.0])]
    tr = simulate(m, {"CL": [1.0, 2.0], "V": [10.0, 20.0]}, regs, times)
    assert tr.shape is None and tr.output("C").shape == (5,)
    np.testing.assert_allclose(tr.output("C")[:2], 10.0 * np.exp(-0.1 * np.array([0.0, 1.0])))
    np.testing.assert_allclose(tr.output("C")[2:], 10.0 * np.exp(-0.1 * np.array([0.0, 1.0, 2.0])))
    frame = tr.to_frame()
    assert list(frame.columns) == ["ID", "TIME", "C"] and list(frame.ID) == [1, 1, 2, 2, 2]


def test_modelled_rate_and_duration_use_parameters():
    from medtwin import DoseTarget, Parameter
    base = get_model("pk1_iv")
    m = base.with_changes(
        name="pk1_iv_rd",
        parameters=base.parameters + (Parameter("R1", "mg/h", 100.0), Parameter("D1", "h", 2.0)),
        dose_targets=(DoseTarget(1, "iv", rate="R1", duration="D1"),),
    )
    t = np.array([1.0, 5.0])
    by_rate = simulate(m, None, Regimen((DoseEvent(time=0.0, amount=500.0, rate=-1),)), t).output("C")
    explicit = simulate(base, None, Regimen((DoseEvent(time=0.0, amount=500.0, rate=100.0),)), t).output("C")
    np.testing.assert_allclose(by_rate, explicit, rtol=1e-12)
    by_dur = simulate(m, None, Regimen((DoseEvent(time=0.0, amount=500.0, rate=-2),)), t).output("C")
    explicit = simulate(base, None, Regimen((DoseEvent(time=0.0, amount=500.0, rate=250.0),)), t).output("C")
    np.testing.assert_allclose(by_dur, explicit, rtol=1e-12)
