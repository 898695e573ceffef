"""PD models attached to PK models: structure, composition, errors, well-posedness, simulation."""

import doctest
import json

import numpy as np
import pytest

from medtwin import Model, ModelError, Regimen, State, Status, get_model, list_models, simulate
from medtwin.core.model import DoseTarget, Output, Parameter
from medtwin.models import pd
from medtwin.models.pd import KINDS, attach_pd

LIBRARY_PD = [
    "pk1_iv_emax",
    "pk1_iv_sigmoid_emax",
    "pk1_iv_effect",
    "pk1_iv_idr1",
    "pk1_iv_idr2",
    "pk1_iv_idr3",
    "pk1_iv_idr4",
    "pk2_oral_effect",
    "pk2_oral_mm_effect_idr3",
]


def test_library_models_are_registered():
    names = set(list_models())
    assert set(LIBRARY_PD) <= names
    assert {m.name for m in pd.library_models()} >= set(LIBRARY_PD)


def test_module_docstring_examples_run():
    result = doctest.testmod(pd, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0


@pytest.mark.parametrize(
    "kind, states, params, outputs",
    [
        ("emax", ("CENTRAL",), ("E0", "EMAX", "EC50"), ("E",)),
        ("sigmoid_emax", ("CENTRAL",), ("E0", "EMAX", "EC50", "HILL"), ("E",)),
        ("effect_compartment", ("CENTRAL", "CE"), ("KE0", "E0", "EMAX", "EC50", "HILL"), ("CE", "E")),
        ("idr1", ("CENTRAL", "R"), ("R0", "KOUT", "IMAX", "IC50"), ("R",)),
        ("idr2", ("CENTRAL", "R"), ("R0", "KOUT", "IMAX", "IC50"), ("R",)),
        ("idr3", ("CENTRAL", "R"), ("R0", "KOUT", "SMAX", "SC50"), ("R",)),
        ("idr4", ("CENTRAL", "R"), ("R0", "KOUT", "SMAX", "SC50"), ("R",)),
    ],
)
def test_structure_of_each_kind(kind, states, params, outputs):
    base = get_model("pk1_iv")
    m = attach_pd(base, kind)
    assert m.state_names == states
    assert m.parameter_names == ("CL", "V") + params
    assert m.output_names == ("C",) + outputs
    assert m.parameters[:2] == base.parameters  # the PK part is unchanged, in place
    assert m.dose_targets == base.dose_targets
    assert m.is_linear == (kind in ("emax", "sigmoid_emax"))
    for p in m.parameters:
        assert p.unit and p.description, p.name
    for o in m.outputs:
        assert o.unit, o.name
    assert base.citation in m.citation
    assert ("Dayneka" in m.citation) == kind.startswith("idr")


def test_units_follow_driver_and_response_unit():
    m = attach_pd(get_model("pk1_iv"), "effect_compartment", response_unit="mmHg")
    units = {p.name: p.unit for p in m.parameters}
    assert units == {"CL": "L/h", "V": "L", "KE0": "1/h", "E0": "mmHg", "EMAX": "mmHg", "EC50": "mg/L", "HILL": "1"}
    assert [s.unit for s in m.states] == ["mg", "mg/L"]
    assert [o.unit for o in m.outputs] == ["mg/L", "mg/L", "mmHg"]
    r = attach_pd(get_model("pk1_iv"), "idr2", response_unit="10^9/L")
    assert r.states[-1].unit == "10^9/L"
    assert r.output("R").unit == "10^9/L"
    assert {p.name: p.unit for p in r.parameters}["IC50"] == "mg/L"
    assert r.parameter("R0").unit == "10^9/L"


def test_parameter_bounds_and_transforms():
    for kind in ("idr1", "idr2"):
        imax = attach_pd(get_model("pk1_iv"), kind).parameter("IMAX")
        assert (imax.lower, imax.upper, imax.transform) == (0.0, 1.0, "logit")
    smax = attach_pd(get_model("pk1_iv"), "idr3").parameter("SMAX")
    assert smax.lower == 0.0 and smax.transform == "log"
    e0 = attach_pd(get_model("pk1_iv"), "emax").parameter("E0")
    assert e0.transform == "identity" and e0.lower < -1e6 and e0.upper > 1e6
    json.dumps(get_model("pk2_oral_mm_effect_idr3").describe(), allow_nan=False)  # strict JSON


def test_default_names():
    base = get_model("pk1_iv")
    assert attach_pd(base, "effect_compartment").name == "pk1_iv_effect"
    assert attach_pd(base, "idr2").name == "pk1_iv_idr2"
    assert attach_pd(base, "emax", name="my_model").name == "my_model"


def test_w2_model_structure():
    base = get_model("pk2_oral_mm")
    w2 = get_model("pk2_oral_mm_effect_idr3")
    assert w2.state_names == ("DEPOT", "CENTRAL", "PERIPHERAL", "CE", "R")
    assert w2.parameter_names == base.parameter_names + (
        "KE0", "E0", "EMAX", "EC50", "HILL", "R0", "KOUT", "SMAX", "SC50",
    )
    assert w2.output_names == ("C", "CE", "E", "R")
    assert w2.dose_targets == base.dose_targets  # oral CMT 1 with F1/ALAG1, IV CMT 2
    assert w2.default_cmt == 1
    assert w2.dose_target(1).bioavailability == "F1"
    assert not w2.is_linear
    typical = dict(zip(w2.parameter_names, w2.typical_values()))
    assert typical["KE0"] == 0.5 and typical["HILL"] == 2.0 and typical["KOUT"] == 0.05
    assert typical["R0"] == 100.0 and typical["SMAX"] == 2.0 and typical["SC50"] == 5.0
    assert "driven by CE" in w2.states[-1].description


def test_idr_on_effect_compartment_with_driver_c_or_ce():
    effect = get_model("pk1_iv_effect")
    by_c = attach_pd(effect, "idr1", driver="C")
    by_ce = attach_pd(effect, "idr1", driver="CE")
    assert by_c.state_names == by_ce.state_names == ("CENTRAL", "CE", "R")
    x = (100.0, 1.0, 50.0)
    p = tuple(by_c.typical_values())
    f_c, f_ce = by_c.rhs()(0.0, x, p), by_ce.rhs()(0.0, x, p)
    assert f_c[:2] == f_ce[:2]
    r0, kout, imax, ic50 = 100.0, 0.1, 0.9, 5.0
    for conc, value in ((100.0 / 50.0, f_c[2]), (1.0, f_ce[2])):
        assert value == pytest.approx(r0 * kout * (1 - imax * conc / (ic50 + conc)) - kout * 50.0, rel=1e-14)


def test_composed_rhs_extends_the_base_rhs():
    base = get_model("pk2_oral_mm")
    w2 = get_model("pk2_oral_mm_effect_idr3")
    x = (30.0, 60.0, 20.0, 1.5, 120.0)
    p = tuple(w2.typical_values())
    f = w2.rhs()(0.0, x, p)
    assert f[:3] == base.rhs()(0.0, x[:3], p[: len(base.parameters)])
    c = x[1] / p[3]
    assert f[3] == pytest.approx(0.5 * (c - 1.5), rel=1e-14)
    assert f[4] == pytest.approx(100.0 * 0.05 * (1 + 2.0 * 1.5 / (5.0 + 1.5)) - 0.05 * 120.0, rel=1e-14)


def test_rhs_and_outputs_evaluate_on_a_batch_axis():
    m = get_model("pk2_oral_mm_effect_idr3")
    rng = np.random.default_rng(0)
    x = rng.uniform(0.0, 100.0, (m.n_states, 7))
    p = np.repeat(m.typical_values()[:, None], 7, axis=1)
    f = m.rhs()(0.0, x, p)
    assert len(f) == m.n_states
    assert all(np.shape(v) == (7,) for v in f)
    for k in range(7):
        single = m.rhs()(0.0, tuple(x[:, k]), tuple(p[:, k]))
        assert np.allclose([v[k] for v in f], single, rtol=1e-14, atol=0)
    for fn in m.output_functions():
        assert np.shape(fn(x, p)) == (7,)


def test_initial_state():
    idr = get_model("pk1_iv_idr3")
    p = idr.typical_values()
    p[idr.parameter_names.index("R0")] = 42.0
    assert idr.init()(p) == (0.0, 42.0)
    assert get_model("pk1_iv_effect").init()(get_model("pk1_iv_effect").typical_values()) == (0.0, 0.0)


def test_effect_site_starts_at_the_driver_of_a_non_zero_base_state():
    base = Model(
        name="pk1_iv_with_baseline",
        description="1-compartment IV with 10 mg present at time 0",
        states=(State("CENTRAL", "mg"),),
        parameters=(
            Parameter("CL", "L/h", 5.0, description="clearance"),
            Parameter("V", "L", 50.0, description="volume"),
        ),
        outputs=(Output("C", "mg/L", lambda x, p: x[0] / p[1]),),
        dose_targets=(DoseTarget(1, "iv"),),
        vector_field=lambda t, x, p: (-p[0] / p[1] * x[0],),
        initial_state=lambda p: (10.0,),
    )
    m = attach_pd(base, "effect_compartment")
    x0 = m.init()(m.typical_values())
    assert x0 == (10.0, 10.0 / 50.0)


def test_values_override_and_prefix():
    m = attach_pd(get_model("pk1_iv"), "emax", values={"EC50": 2.5, "EMAX": -0.8})
    assert m.parameter("EC50").value == 2.5
    assert m.parameter("EMAX").value == -0.8
    twice = attach_pd(m, "emax", prefix="B_", values={"EC50": 7.0})
    assert twice.parameter_names == ("CL", "V", "E0", "EMAX", "EC50", "B_E0", "B_EMAX", "B_EC50")
    assert twice.output_names == ("C", "E", "B_E")
    assert twice.parameter("B_EC50").value == 7.0
    assert twice.name == "pk1_iv_emax_b_emax"
    two_biomarkers = attach_pd(get_model("pk1_iv_idr1"), "idr3", prefix="B_")
    assert two_biomarkers.state_names == ("CENTRAL", "R", "B_R")
    assert two_biomarkers.output_names == ("C", "R", "B_R")


def test_name_collision_raises_a_clear_error():
    with pytest.raises(ModelError, match=r"parameter name\(s\) \['E0', 'EC50', 'EMAX'\].*already exist.*prefix"):
        attach_pd(get_model("pk1_iv_emax"), "sigmoid_emax")
    with pytest.raises(ModelError, match=r"state name\(s\) \['R'\]"):
        attach_pd(get_model("pk1_iv_idr1"), "idr2")


def test_bad_kind_driver_and_values():
    base = get_model("pk1_iv")
    with pytest.raises(ModelError, match="unknown PD kind"):
        attach_pd(base, "idr5")
    with pytest.raises(ModelError, match=r"'CE' is not one of \['C'\]"):
        attach_pd(base, "idr1", driver="CE")
    with pytest.raises(ModelError, match="unknown PD parameter"):
        attach_pd(base, "emax", values={"KE0": 1.0})
    with pytest.raises(ModelError, match="outside its bounds"):
        attach_pd(base, "idr1", values={"IMAX": 1.5})
    with pytest.raises(ModelError, match="not an identifier"):
        attach_pd(base, "emax", prefix="1-")


@pytest.mark.parametrize("name", LIBRARY_PD)
def test_library_pd_models_are_well_posed(name):
    report = get_model(name).check_well_posedness()
    assert report.ok, report.summary()


@pytest.mark.parametrize("kind", KINDS)
def test_attached_to_every_pk_family_is_well_posed(kind):
    for base_name in ("pk1_oral", "pk2_iv", "pk2_oral_mm", "pk1_oral_transit"):
        report = attach_pd(get_model(base_name), kind).check_well_posedness()
        assert report.ok, (base_name, report.summary())


@pytest.mark.parametrize("name", LIBRARY_PD)
def test_library_pd_models_simulate(name):
    m = get_model(name)
    rng = np.random.default_rng(1)
    n = 8
    params = {"V" if "V" in m.parameter_names else "V1": m.typical_values()[m.parameter_names.index(
        "V" if "V" in m.parameter_names else "V1")] * rng.uniform(0.5, 2.0, n)}
    times = np.linspace(0.0, 96.0, 25)
    tr = simulate(m, params, Regimen.every(12, "h", 500, "mg", n=6), times)
    assert tr.ok
    assert all(s == Status.OK for s in tr.statuses())
    for o in m.output_names:
        values = tr.output(o)
        assert values.shape == (n, len(times))
        assert np.all(np.isfinite(values)), o
    assert tr.states.shape == (n * len(times), m.n_states)


@pytest.mark.parametrize("name", [n for n in LIBRARY_PD if "idr" in n or "effect" in n])
def test_no_drug_keeps_the_pd_part_at_baseline(name):
    m = get_model(name)
    tr = simulate(m, None, None, [0.0, 10.0, 100.0])
    assert tr.ok
    if "R" in m.output_names:
        assert np.all(tr.output("R") == m.parameter("R0").value)
    if "CE" in m.output_names:
        assert np.all(tr.output("CE") == 0.0)
        assert np.all(tr.output("E") == m.parameter("E0").value)


def test_direct_effect_models_keep_the_exact_solver():
    m = get_model("pk1_iv_sigmoid_emax")
    times = np.linspace(0.0, 48.0, 13)
    regimen = Regimen.every(8, "h", 250, "mg", n=6, duration=1)
    exact = simulate(m, None, regimen, times)
    assert exact.solver.method == "exact"
    ode = simulate(m, None, regimen, times, method="dopri5", rtol=1e-10, atol=1e-12)
    for o in ("C", "E"):
        assert np.allclose(exact.output(o), ode.output(o), rtol=1e-8, atol=1e-12)


def test_oral_dose_targets_still_work():
    m = get_model("pk2_oral_effect")
    oral = simulate(m, {"ALAG1": 0.5, "F1": 0.5}, Regimen.single(500.0), [0.25, 1.0, 24.0])
    iv = simulate(m, None, Regimen.single(500.0, cmt=2), [0.25, 1.0, 24.0])
    assert oral.ok and iv.ok
    assert oral.output("C")[0, 0] == 0.0  # inside the lag time
    assert iv.output("C")[0, 0] > 0.0
    with pytest.raises(Exception, match="CMT 4"):
        simulate(m, None, Regimen.single(500.0, cmt=4), [1.0])


def test_effect_lags_and_sigmoid_handles_tiny_negative_drivers():
    m = get_model("pk1_iv_effect")
    tr = simulate(m, None, Regimen.single(500.0), np.linspace(0.0, 24.0, 49))
    c, ce = tr.output("C")[0], tr.output("CE")[0]
    assert np.argmax(ce) > np.argmax(c)  # hysteresis: the effect site peaks later
    e_fn = m.output("E").lifted()
    p = m.typical_values()
    assert e_fn((0.0, -1e-15), p) == p[m.parameter_names.index("E0")]


def test_jax_evaluates_the_same_definition():
    jax = pytest.importorskip("jax")
    jnp = pytest.importorskip("jax.numpy")
    jax.config.update("jax_enable_x64", True)
    m = get_model("pk2_oral_mm_effect_idr3")
    p = jnp.asarray(m.typical_values())
    x = jnp.array([100.0, 50.0, 10.0, 1.0, 100.0])
    f = jnp.stack(m.rhs()(0.0, x, p))
    assert np.allclose(np.asarray(f), m.rhs()(0.0, tuple(np.asarray(x)), tuple(m.typical_values())), rtol=1e-14)
    jac = jax.jacfwd(lambda y: jnp.stack(m.rhs()(0.0, y, p)))(x)
    assert jac.shape == (5, 5)
    assert float(jac[3, 3]) == pytest.approx(-0.5)
    assert float(jac[4, 4]) == pytest.approx(-0.05)


def test_digest_is_deterministic_and_differs_between_kinds():
    a = attach_pd(get_model("pk1_iv"), "idr1").digest()
    assert a == attach_pd(get_model("pk1_iv"), "idr1").digest()
    assert a != attach_pd(get_model("pk1_iv"), "idr2").digest()
    effect = get_model("pk1_iv_effect")
    assert attach_pd(effect, "idr1", driver="C").digest() != attach_pd(effect, "idr1", driver="CE").digest()
    assert attach_pd(get_model("pk2_oral"), "idr1").digest() != attach_pd(get_model("pk2_oral_mm"), "idr1").digest()
    describe = get_model("pk2_oral_mm_effect_idr3").describe()
    assert [c["name"] for c in describe["compartments"]] == ["DEPOT", "CENTRAL", "PERIPHERAL", "CE", "R"]
    assert "Dayneka" in describe["citation"] and "Sheiner" in describe["citation"]
