"""ICU glycaemic models (ICING, Bergman + insulin kinetics) and the synthetic-patient helpers."""

import math

import numpy as np
import pytest

from medtwin import simulate
from medtwin.core.events import Regimen
from medtwin.errors import DataError, ModelError
from medtwin.models import get_model, list_models
from medtwin.models.glucose import MMOL_PER_G_GLUCOSE
from medtwin.scenarios.glucose_patients import (
    SyntheticICUPatient,
    icu_regimen,
    sample_icu_patients,
    si_walk,
    simulate_truth,
)

MODELS = ("icing", "bergman_insulin")


@pytest.mark.parametrize("name", MODELS)
def test_registered_well_posed_and_shared_layout(name):
    assert name in list_models()
    m = get_model(name)
    assert m.check_well_posedness().ok
    assert m.state_names[:3] == ("GLU", "INS", "P1") and m.state_names[4] == "P2"
    assert [(t.cmt, t.route) for t in m.dose_targets] == [(1, "pn"), (2, "iv_insulin"), (3, "enteral")]
    assert [(o.name, o.unit) for o in m.outputs] == [("G", "mmol/L"), ("I", "mU/L")]
    si = m.parameter("SI")
    assert si.transform == "log" and si.unit == "L/(mU*h)"


def test_icing_si_default_is_the_per_minute_value_times_60():
    assert get_model("icing").parameter("SI").value == pytest.approx(3e-4 * 60)
    assert get_model("icing").parameter("pG").value == pytest.approx(0.006 * 60)


@pytest.mark.parametrize("g0", [0.5, 4.0, 8.0, 25.0])
def test_icing_initial_insulin_is_at_steady_state(g0):
    # g0 = 0.5 and 25 exercise the lower (umin) and upper (umax) clamps of the secretion.
    m = get_model("icing")
    p = m.parameter_table({"G0": g0})[0]
    x0 = m.init()(p)
    f = m.rhs()(0.0, x0, p)
    assert x0[0] == pytest.approx(g0 * p[m.parameter_names.index("VG")])
    assert x0[2] == 0.0 and x0[4] == 0.0
    assert abs(f[1]) < 1e-9 * x0[1] and abs(f[3]) < 1e-9 * max(x0[3], 1.0)
    # the plasma insulin scales with the clamped secretion: it is larger at higher glucose
    assert x0[1] > 0


def test_bergman_initial_state_is_basal():
    m = get_model("bergman_insulin")
    p = m.parameter_table({"Gb": 9.0, "Ib": 20.0})[0]
    x0 = m.init()(p)
    assert np.allclose(m.rhs()(0.0, x0, p), 0.0, atol=1e-12)
    tr = simulate(m, {"Gb": 9.0, "Ib": 20.0}, None, [0.0, 10.0, 48.0])
    assert np.allclose(tr.output("G"), 9.0, rtol=1e-10) and np.allclose(tr.output("I"), 20.0, rtol=1e-10)


@pytest.mark.parametrize("name", MODELS)
def test_glucose_stays_in_icu_range_under_icu_inputs(name):
    times = np.arange(0.0, 49.0, 4.0)
    for insulin, feed in ((0.0, 80.0 / 24), (3.0, 80.0 / 24), (6.0, 100.0 / 24), (6.0, 0.0)):
        tr = simulate(get_model(name), None, icu_regimen(48, insulin_u_per_h=insulin, enteral_g_per_h=feed,
                                                        change_every_h=48), times)
        g = tr.output("G")[0]
        assert tr.ok and np.all((g > 3.0) & (g < 12.0)), (insulin, feed, g)


def test_more_insulin_lowers_glucose():
    times = [24.0]
    lows = [simulate(get_model(n), None, icu_regimen(24, insulin_u_per_h=u, enteral_g_per_h=3.0), times)
            .output("G")[0, 0] for n in MODELS for u in (1.0, 4.0)]
    assert lows[1] < lows[0] and lows[3] < lows[2]


def test_icu_regimen_amounts_units_and_blocks():
    r = icu_regimen(2.5, insulin_u_per_h=[1.0, 2.0, 4.0], enteral_g_per_h=0.0, pn_mmol_per_h=10.0)
    ins = [e for e in r.events if e.cmt == 2]
    pn = [e for e in r.events if e.cmt == 1]
    assert [e.rate for e in ins] == [1000.0, 2000.0, 4000.0]
    assert [e.amount for e in ins] == [1000.0, 2000.0, 2000.0]  # the last block lasts 0.5 h
    assert sum(e.amount for e in pn) == pytest.approx(25.0)
    assert not [e for e in r.events if e.cmt == 3]
    feed = icu_regimen(1, enteral_g_per_h=180.156).events[0]
    assert feed.cmt == 3 and feed.rate == pytest.approx(1000.0)
    assert MMOL_PER_G_GLUCOSE == pytest.approx(5.5507, rel=1e-4)


@pytest.mark.parametrize("kwargs", [
    {"insulin_u_per_h": -1.0},
    {"insulin_u_per_h": [1.0, 2.0]},
    {"enteral_g_per_h": float("nan")},
    {"change_every_h": 0.0},
])
def test_icu_regimen_rejects_bad_input(kwargs):
    with pytest.raises(DataError):
        icu_regimen(3, **kwargs)


def test_sampling_is_reproducible_and_documented_shape():
    a = sample_icu_patients(3, model="icing", hours=10, seed=5)
    b = sample_icu_patients(3, model="icing", hours=10, seed=5)
    c = sample_icu_patients(3, model="icing", hours=10, seed=6)
    for pa, pb in zip(a, b):
        assert pa.parameters == pb.parameters and np.array_equal(pa.si_multipliers, pb.si_multipliers)
        assert pa.si_multipliers[0] == 1.0 and pa.si_multipliers.shape == (10,)
    assert a[0].parameters["SI"] != c[0].parameters["SI"]
    assert len({p.seed for p in a}) == 3
    with pytest.raises(ModelError):
        sample_icu_patients(1, model="pk1_iv")


def test_si_walk_without_noise_is_flat_and_rejects_bad_settings():
    assert np.array_equal(si_walk(np.random.default_rng(0), 4, step_sd=0.0), np.ones(4))
    with pytest.raises(Exception):
        si_walk(np.random.default_rng(0), 4, reversion=1.5)


def test_truth_rejects_times_beyond_the_si_path_and_is_reproducible():
    p = sample_icu_patients(1, hours=3, seed=0)[0]
    with pytest.raises(DataError):
        simulate_truth(p, None, [0.0, 4.0])
    reg = icu_regimen(3, insulin_u_per_h=1.0, enteral_g_per_h=2.0)
    r1 = simulate_truth(p, reg, [0.0, 1.0, 2.0, 3.0])
    r2 = simulate_truth(p, reg, [0.0, 1.0, 2.0, 3.0])
    r3 = simulate_truth(p, reg, [0.0, 1.0, 2.0, 3.0], seed=123)
    assert np.array_equal(r1.glucose_measured, r2.glucose_measured)
    assert not np.array_equal(r1.glucose_measured, r3.glucose_measured)
    assert np.array_equal(r1.glucose_true, r3.glucose_true)
    assert r1.states.shape == (4, 5) and r1.si.shape == (4,)


def test_measurement_error_has_the_configured_cv():
    p = sample_icu_patients(1, hours=200, seed=1, measurement_cv=0.07)[0]
    times = np.linspace(0.0, 200.0, 2001)
    r = simulate_truth(p, icu_regimen(200, insulin_u_per_h=1.0, enteral_g_per_h=3.0, change_every_h=200), times)
    ratio = r.glucose_measured / r.glucose_true - 1.0
    # SD of an SD estimate from 2001 normal draws: 0.07/sqrt(2·2001) ≈ 0.0011
    assert abs(ratio.std(ddof=1) - 0.07) < 0.005
    assert abs(ratio.mean()) < 0.006


@pytest.mark.slow  # JAX compilation: ~15-25 s per model
@pytest.mark.parametrize("name", MODELS)
def test_diffrax_gradient_is_finite_and_matches_finite_differences(name):
    pytest.importorskip("diffrax")
    from medtwin.core.jax_solve import diffrax_solver

    m = get_model(name)
    reg = icu_regimen(4, insulin_u_per_h=[3.0, 1.0], enteral_g_per_h=3.0, change_every_h=2.0)
    times = np.array([1.0, 4.0])
    solver = diffrax_solver(m, reg, times, rtol=1e-9, atol=1e-9)
    jac = solver.jacobian()
    assert np.all(np.isfinite(jac))
    i = m.parameter_names.index("SI")
    theta = solver.reference
    h = 1e-5 * theta[i]
    up, down = theta.copy(), theta.copy()
    up[i] += h
    down[i] -= h
    fd = (simulate(m, up, reg, times, rtol=1e-12, atol=1e-12).output("G")[0]
          - simulate(m, down, reg, times, rtol=1e-12, atol=1e-12).output("G")[0]) / (2 * h)
    assert np.all(fd < 0)  # more insulin sensitivity, less glucose
    assert np.allclose(jac[:, 0, i], fd, rtol=1e-4, atol=1e-6 * np.abs(fd).max())


def test_patient_si_at_uses_the_hourly_path():
    p = SyntheticICUPatient(id=0, model="icing", parameters={"SI": 0.02}, si_multipliers=np.array([1.0, 2.0, 0.5]))
    assert np.allclose(p.si_at([0.0, 0.99, 1.0, 2.5, 3.0]), [0.02, 0.02, 0.04, 0.01, 0.01])
    assert p.hours == 3 and math.isclose(p.measurement_cv, 0.05)
