"""Unit tests of the whole-body PBPK model (medtwin.models.pbpk)."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from medtwin import ModelError, Regimen, check_well_posedness, get_model, list_models, simulate
from medtwin.models import pbpk

REQUIRED = ("LUNG", "HEART", "BRAIN", "MUSCLE", "ADIPOSE", "SKIN", "BONE", "GUT", "SPLEEN", "LIVER", "KIDNEY",
            "ART", "VEN")
NON_PORTAL = ("heart", "brain", "muscle", "adipose", "skin", "bone", "kidney", "rest")


@pytest.fixture(scope="module")
def model():
    return get_model("pbpk_whole_body")


def _theta(model, **changes):
    p = model.typical_values()
    for name, value in changes.items():
        p[model.parameter_names.index(name)] = value
    return p


# ------------------------------------------------------------------ structure
def test_registered_and_structure(model):
    assert "pbpk_whole_body" in list_models()
    assert model is pbpk.pbpk_whole_body
    for name in REQUIRED + ("GUTLUMEN", "REST"):
        assert name in model.state_names
    assert model.state_names == pbpk.STATE_NAMES
    assert all(s.unit == "mg" for s in model.states)
    assert model.is_linear
    units = {p.name: p.unit for p in model.parameters}
    assert units["CLINT"] == units["CLR"] == "L/h"
    assert units["FU"] == units["BP"] == units["F1"] == "1"
    assert units["KA"] == "1/h" and units["BW"] == "kg" and units["ALAG1"] == "h"
    for state in REQUIRED[:11] + ("REST",):
        assert units[f"KP_{state}"] == "1"
    assert model.parameter("BW").value == 70.0
    outputs = {o.name: o.unit for o in model.outputs}
    assert outputs["C"] == outputs["C_liver"] == outputs["C_brain"] == "mg/L"


def test_dose_targets(model):
    iv, oral = model.dose_targets
    assert iv.route == "iv" and model.state_names[iv.cmt - 1] == "VEN"
    assert model.default_cmt == iv.cmt == 2  # IV is the default route
    assert oral.route == "oral" and model.state_names[oral.cmt - 1] == "GUTLUMEN" and oral.cmt == 1
    assert oral.bioavailability == "F1" and oral.lag == "ALAG1"


# ------------------------------------------------------------------ reference table
def test_reference_flows_close_on_cardiac_output():
    explicit = sum(t.flow_fraction for t in pbpk.TISSUES if t.key not in ("lung", "rest"))
    # ICRP 89 adult male fractions of the explicit tissues: 92.5 % of cardiac output (documented);
    # "rest" (thyroid, lymph nodes, adrenals, bronchial ...) takes the remaining 7.5 %.
    assert explicit == pytest.approx(0.925, abs=1e-12)
    rest = pbpk.TISSUES[-1]
    assert rest.key == "rest" and 0.0 < rest.flow_fraction <= 0.10
    phys = pbpk.physiology(70.0)
    venous_return = sum(phys[f"Q_{k}"] for k in NON_PORTAL) + phys["Q_liver_total"]
    assert venous_return == pytest.approx(phys["CO"], rel=1e-12)
    assert phys["Q_lung"] == pytest.approx(phys["CO"], rel=1e-15)
    # total liver blood flow = hepatic artery 6.5 % + portal 19 % = 25.5 % of CO (ICRP 89)
    assert pbpk.physiology(73.0)["Q_liver_total"] == pytest.approx(0.255 * 390.0, rel=1e-12)
    assert pbpk.physiology(73.0)["CO"] == pytest.approx(390.0, rel=1e-15)


def test_reference_volumes_sum_to_body_weight():
    explicit = sum(t.volume for t in pbpk.TISSUES if t.key != "rest") + pbpk.BLOOD_VOLUME
    # 72.19 of 73 kg (98.9 %) are explicit ICRP tissues + blood at 1 kg/L; "rest" closes the balance
    assert explicit == pytest.approx(72.19, abs=1e-9)
    assert 0.97 * pbpk.REFERENCE_BODY_WEIGHT <= explicit <= pbpk.REFERENCE_BODY_WEIGHT
    for bw in (50.0, 70.0, 73.0, 120.0):
        phys = pbpk.physiology(bw)
        total = phys["V_blood"] + sum(phys[f"V_{t.key}"] for t in pbpk.TISSUES)
        assert total == pytest.approx(bw, rel=1e-9)
        assert phys["V_art"] + phys["V_ven"] == pytest.approx(phys["V_blood"], rel=1e-14)


def test_weight_scaling():
    ref = pbpk.physiology(70.0)
    for bw in (40.0, 100.0, 150.0):
        phys = pbpk.physiology(bw)
        for key, value in phys.items():
            if key.startswith("V_"):
                assert value == pytest.approx(ref[key] * bw / 70.0, rel=1e-13), key
            else:
                assert value == pytest.approx(ref[key] * (bw / 70.0) ** 0.75, rel=1e-13), key


def test_vector_field_uses_scaled_physiology(model):
    """Unit amount in one tissue: the outflow rate constant is Q_T·BP/(V_T·Kp_T) at the patient's BW."""
    bw, bp = 95.0, 1.4
    p = _theta(model, BW=bw, BP=bp, CLINT=0.0, CLR=0.0)
    phys = pbpk.physiology(bw)
    f = model.rhs()
    n = model.n_states
    for t in pbpk.TISSUES:
        x = [0.0] * n
        j = model.state_names.index(t.state)
        x[j] = 1.0
        d = f(0.0, x, p)
        kp = p[model.parameter_names.index(f"KP_{t.state}")]
        flow = phys["Q_liver_total"] if t.key == "liver" else phys[f"Q_{t.key}"]
        assert d[j] == pytest.approx(-flow * bp / (phys[f"V_{t.key}"] * kp), rel=1e-13), t.key
        target = "ART" if t.key == "lung" else "LIVER" if t.key in pbpk.PORTAL else "VEN"
        assert d[model.state_names.index(target)] == pytest.approx(-d[j], rel=1e-13)
    x = [0.0] * n
    x[model.state_names.index("VEN")] = 1.0
    d = f(0.0, x, p)
    assert d[model.state_names.index("LUNG")] == pytest.approx(phys["CO"] / phys["V_ven"], rel=1e-13)


def test_vector_field_matches_matrix_and_batches(model):
    rng = np.random.default_rng(3)
    f, a = model.rhs(), model.linear_matrix
    m_pts = 7
    p = np.array([model.typical_values() * rng.uniform(0.5, 1.5, len(model.parameters)) for _ in range(m_pts)]).T
    p[model.parameter_names.index("FU")] = rng.uniform(0.05, 0.9, m_pts)
    p[model.parameter_names.index("F1")] = 1.0
    x = rng.uniform(0.0, 50.0, (model.n_states, m_pts))
    batched = np.array(f(0.0, x, p))  # trailing batch axis: (n_states, M)
    assert batched.shape == (model.n_states, m_pts)
    for k in range(m_pts):
        single = np.array(f(0.0, x[:, k], p[:, k]))
        dense = np.array(a(p[:, k])) @ x[:, k]
        np.testing.assert_allclose(batched[:, k], single, rtol=1e-14, atol=1e-12)
        np.testing.assert_allclose(single, dense, rtol=1e-12, atol=1e-10)


def test_matrix_columns_conserve_mass_except_elimination(model):
    p = _theta(model, CLINT=30.0, CLR=4.0, FU=0.3, BP=1.2)
    a = np.array(model.linear_matrix(p))
    sums = a.sum(axis=0)
    scale = np.abs(np.diag(a))
    phys = pbpk.physiology(70.0)
    liver, art = model.state_names.index("LIVER"), model.state_names.index("ART")
    expected = np.zeros(model.n_states)
    expected[liver] = -0.3 * 30.0 / (phys["V_liver"] * p[model.parameter_names.index("KP_LIVER")])
    expected[art] = -4.0 / (1.2 * phys["V_art"])
    np.testing.assert_allclose(sums, expected, rtol=1e-12, atol=1e-12 * scale.max())


def test_well_posed(model):
    report = check_well_posedness(model)
    assert report.ok, report.summary()


# ------------------------------------------------------------------ factory
def test_factory_typical_values_and_kp_mapping():
    m = pbpk.pbpk_model(85.0, kp={"adipose": 12.0, "KP_LIVER": 3.0}, clint=40.0, fu=0.1, bp=0.8)
    assert m.parameter("BW").value == 85.0
    assert m.parameter("KP_ADIPOSE").value == 12.0 and m.parameter("KP_LIVER").value == 3.0
    assert m.parameter("KP_BRAIN").value == pbpk.pbpk_whole_body.parameter("KP_BRAIN").value
    assert (m.parameter("CLINT").value, m.parameter("FU").value, m.parameter("BP").value) == (40.0, 0.1, 0.8)
    with pytest.raises(ModelError):
        pbpk.pbpk_model(kp={"pancreas": 2.0})
    # one generated definition with retrievable source: digests are reproducible
    assert pbpk.pbpk_model().digest() == pbpk.pbpk_whole_body.digest()
    assert "def pbpk_vector_field" in inspect.getsource(m.vector_field)
    assert "def pbpk_matrix" in inspect.getsource(m.linear_matrix)


def test_clearance_and_vss_helpers():
    cl = pbpk.clearance({"CLINT": 0.0, "CLR": 0.0})
    assert cl["CL"] == 0.0 and cl["F_H"] == 1.0
    high = pbpk.clearance({"CLINT": 1e9, "FU": 1.0, "BP": 0.9})
    assert high["CL_H"] == pytest.approx(high["Q_H"] * 0.9, rel=1e-6)  # flow limited: plasma CL = Q_H·BP
    typical = pbpk.clearance()
    assert typical["CL"] == pytest.approx(typical["CL_H"] + 0.096)
    vss = pbpk.steady_state_volume()
    assert 300.0 < vss < 450.0  # ≈ 5.5 L/kg for the illustrative lipophilic drug
    heavy = pbpk.pbpk_model(100.0)
    assert pbpk.steady_state_volume(model=heavy) == pytest.approx(vss * 100.0 / 70.0, rel=1e-12)
    assert pbpk.clearance(model=heavy)["Q_H"] == pytest.approx(typical["Q_H"] * (100.0 / 70.0) ** 0.75)
    with pytest.raises(ModelError):
        pbpk.clearance({"CL": 1.0})


# ------------------------------------------------------------------ simulate
def test_simulate_iv_bolus_and_oral(model):
    times = np.array([0.0, 0.25, 1.0, 4.0, 12.0, 24.0])
    iv = simulate(model, None, Regimen.single(100.0), times)
    assert iv.ok
    c = iv.output("C")[0]
    phys = pbpk.physiology(70.0)
    assert c[0] == pytest.approx(100.0 / phys["V_ven"], rel=1e-12)  # BP = 1: bolus into venous blood
    assert np.all(c > 0) and np.all(np.diff(c) < 0)
    oral = simulate(model, None, Regimen.single(200.0, cmt=1), times)
    assert oral.ok
    co = oral.output("C")[0]
    assert co[0] == 0.0 and np.all(co[1:] > 0)
    assert oral.state("GUTLUMEN")[0, 2] == pytest.approx(200.0 * np.exp(-1.0), rel=1e-10)
    assert np.all(oral.output("C_liver")[0, 1:] > 0) and np.all(oral.output("C_brain")[0, 1:] > 0)
    dp = simulate(model, None, Regimen.single(100.0), times, method="dopri5")
    assert dp.ok
    np.testing.assert_allclose(dp.output("C"), iv.output("C"), rtol=1e-6)


def test_batched_patients_scale_with_their_own_weight(model):
    weights = np.array([45.0, 70.0, 110.0])
    tr = simulate(model, {"BW": weights, "BP": 1.25}, Regimen.single(100.0), [0.0, 2.0])
    assert tr.ok and tr.n_patients == 3
    c0 = tr.output("C")[:, 0]
    expected = [100.0 / (pbpk.physiology(w)["V_ven"] * 1.25) for w in weights]
    np.testing.assert_allclose(c0, expected, rtol=1e-12)
    assert tr.output("C")[0, 1] > tr.output("C")[2, 1]  # lighter patient, higher concentration
