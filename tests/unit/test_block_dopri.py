"""The nonlinear cohort block kernel (medtwin.core.block_dopri) against the per-patient kernel and scipy.

The block kernel steps patients side by side with per-patient step-size control; it must agree with the
per-patient Dormand–Prince kernel to rounding and with a tight independent solve (scipy DOP853) to the
tolerance, and fall back to the per-patient kernel where it does not apply.
"""

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from medtwin import Regimen, get_model, simulate
from medtwin.core import block_dopri
from medtwin.core.events import DoseEvent
from medtwin.core.status import Status
from medtwin.errors import SimulationError

W2 = "pk2_oral_mm_effect_idr3"


def _cohort(model, n, rng, names):
    return {k: model.parameter(k).value * rng.lognormal(0.0, 0.3, n) for k in names}


def _scipy_reference(model, theta, dose_times, amount, times):
    """Tight DOP853 solve of one patient (bolus into the first dose compartment), outputs at ``times``."""
    f = model.rhs()
    x = np.array(model.init()(theta), dtype=float)
    cmt = model.default_cmt - 1
    out = np.empty((len(times), len(model.outputs)))
    edges = list(dose_times) + [times[-1] + 1.0]
    funcs = model.output_functions()
    for k, t0 in enumerate(dose_times):
        x[cmt] += amount
        t1 = edges[k + 1]
        mask = (times >= t0) & (times < t1)
        sol = solve_ivp(lambda t, y: np.array(f(t, y, theta)), (t0, t1), x, method="DOP853", rtol=1e-12,
                        atol=1e-14, t_eval=np.append(times[mask], t1))
        for o, fn in enumerate(funcs):
            out[mask, o] = [fn(sol.y[:, i], theta) for i in range(mask.sum())]
        x = sol.y[:, -1].copy()
    return out


def test_w2_block_matches_patient_kernel_and_scipy(rng):
    model = get_model(W2)
    n = 37  # one full block of 32 and a short one
    params = _cohort(model, n, rng, ("KA", "VMAX", "KM", "V1", "Q", "V2", "KE0", "EC50", "KOUT", "SC50"))
    regimen = Regimen.every(12, "h", 100, "mg", n=4)
    times = np.arange(0.0, 61.0)
    block = simulate(model, params, regimen, times, rtol=1e-7, atol=1e-9, kernel="block")
    patient = simulate(model, params, regimen, times, rtol=1e-7, atol=1e-9, kernel="patient")
    assert block.extra["kernel"] == "block" and patient.extra["kernel"] == "patient"
    assert block.ok and patient.ok
    for name in model.output_names:
        np.testing.assert_allclose(block.output(name), patient.output(name), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(block.states, patient.states, rtol=1e-10, atol=1e-12)
    table = model.parameter_table(params)
    for i in (0, 33):
        ref = _scipy_reference(model, table[i], [0.0, 12.0, 24.0, 36.0], 100.0, times)
        for o, name in enumerate(model.output_names):
            got, want = block.output(name)[i], ref[:, o]
            keep = np.abs(want) > 1e-6 * np.abs(want).max()
            assert np.max(np.abs(got - want)[keep] / np.abs(want)[keep]) < 1e-5, name


def test_second_model_with_infusion_reset_and_lag(rng):
    model = get_model("pk1_oral_mm")  # Michaelis–Menten, oral (lag, F) and iv doses
    n = 5
    regimen = Regimen((DoseEvent(time=0.0, amount=100.0, cmt=1),
                       DoseEvent(time=2.0, amount=50.0, cmt=2, rate=25.0),  # a 2 h infusion
                       DoseEvent(time=9.0, amount=0.0, cmt=1, evid=3),  # reset
                       DoseEvent(time=10.0, amount=80.0, cmt=1)))
    times = np.linspace(0.0, 14.0, 29)
    params = {**_cohort(model, n, rng, ("KA", "VMAX", "KM", "V")), "ALAG1": 0.25, "F1": 0.8}
    block = simulate(model, params, regimen, times, kernel="block")
    patient = simulate(model, params, regimen, times, kernel="patient")
    assert block.extra["kernel"] == "block" and block.ok and patient.ok
    np.testing.assert_allclose(block.output("C"), patient.output("C"), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(block.states, patient.states, rtol=1e-10, atol=1e-12)
    assert block.output("C")[0, times.tolist().index(9.0)] == 0.0  # the reset emptied every compartment


def test_unsupported_cases_fall_back_to_the_patient_kernel(rng):
    model = get_model("pk1_oral_mm")
    times = np.arange(0.0, 25.0)
    n = block_dopri.MIN_PATIENTS
    params = {"VMAX": model.parameter("VMAX").value * rng.lognormal(0.0, 0.3, n)}
    assert simulate(model, params, Regimen.single(100.0), times).extra["kernel"] == "block"  # a cohort: auto
    small = {"VMAX": params["VMAX"][:4]}
    assert simulate(model, small, Regimen.single(100.0), times).extra["kernel"] == "patient"  # a few: no compile
    ss = Regimen((DoseEvent(time=0.0, amount=100.0, ii=12.0, ss=1),))
    assert simulate(model, params, ss, times).extra["kernel"] == "patient"  # steady-state record
    unsupported = [
        dict(regimen=ss),
        dict(regimen=Regimen.single(100.0), parameter_changes={"VMAX": ([6.0], [1.0])}),
        dict(regimen=[Regimen.single(100.0 + i) for i in range(4)]),  # a schedule per patient
        dict(regimen=Regimen.single(100.0), method="rk4", dt=0.1),
    ]
    for case in unsupported:
        with pytest.raises(SimulationError, match="kernel='block'"):
            simulate(model, small, times=times, kernel="block", **case)
    with pytest.raises(SimulationError, match="unknown kernel"):
        simulate(model, small, ss, times, kernel="fast")


def test_a_failed_patient_is_a_status_and_does_not_disturb_its_block(rng):
    model = get_model("pk1_oral_mm")
    n = 6
    vmax = model.parameter("VMAX").value * rng.lognormal(0.0, 0.3, n)
    times = np.arange(0.0, 49.0)
    regimen = Regimen.every(12, "h", 100, n=4)
    full = simulate(model, {"VMAX": vmax}, regimen, times, kernel="block")
    budget = simulate(model, {"VMAX": vmax}, regimen, times, max_steps=40, kernel="block")
    patient = simulate(model, {"VMAX": vmax}, regimen, times, max_steps=40, kernel="patient")
    np.testing.assert_array_equal(budget.status, patient.status)
    assert (budget.status == Status.MAX_STEPS).any()
    failed = budget.status != Status.OK
    assert np.isnan(budget.output("C")[failed, -1]).all()
    np.testing.assert_allclose(budget.output("C")[~failed], full.output("C")[~failed], rtol=1e-12)
