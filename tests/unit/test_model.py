"""Model definition: validation, parameter tables, well-posedness, descriptions."""

import json
import math

import numpy as np
import pytest

from medtwin import (
    DoseTarget, Model, ModelError, Output, Parameter, ParameterError, Regimen, State, Status,
    WellPosednessError, check_well_posedness, get_model, list_models, simulate,
)


def test_parameter_rejects_value_outside_bounds():
    with pytest.raises(ModelError, match="outside its bounds"):
        Parameter("CL", "L/h", -1.0)


def test_parameter_needs_identifier_and_known_transform():
    with pytest.raises(ModelError):
        Parameter("C L", "L/h", 1.0)
    with pytest.raises(ModelError, match="transform"):
        Parameter("CL", "L/h", 1.0, transform="sqrt")


def test_model_rejects_dose_target_without_state():
    with pytest.raises(ModelError, match="CMT 3"):
        Model("m", "", (State("A", "mg"),), (Parameter("K", "1/h", 1.0),), (), (DoseTarget(3, "iv"),),
              vector_field=lambda t, x, p: (-p[0] * x[0],))


def test_parameter_table_fills_typical_values_and_checks_domain():
    m = get_model("pk2_iv")
    table = m.parameter_table({"CL": [1.0, 2.0]})
    assert table.shape == (2, 4)
    np.testing.assert_array_equal(table[:, 1], m.parameter("V1").value)
    with pytest.raises(ParameterError, match="patient 1: parameter CL"):
        m.parameter_table({"CL": [1.0, -2.0]})
    with pytest.raises(ParameterError, match="unknown parameter"):
        m.parameter_table({"CLX": 1.0})
    with pytest.raises(ParameterError, match="patient 0: parameter V1"):
        m.parameter_table({"V1": math.nan})


def test_every_library_model_is_well_posed_and_described():
    for name in list_models():
        model = get_model(name)
        report = check_well_posedness(model)
        assert report.ok, (name, report.summary())
        info = json.loads(json.dumps(model.describe()))
        assert info["name"] == name
        assert all(p["unit"] for p in info["parameters"])
        assert all(o["unit"] for o in info["outputs"])
        assert [c["cmt"] for c in info["compartments"]] == list(range(1, model.n_states + 1))


def _ill_posed():
    # dx/dt = -K·x / (K - 1): singular at K = 1 inside the parameter domain.
    return Model(
        "ill_posed", "division by (K - 1)", (State("A", "mg"),),
        (Parameter("K", "1/h", 1.0, 0.5, 2.0, "identity"),),
        (Output("A", "mg", lambda x, p: x[0]),), (DoseTarget(1, "iv"),),
        vector_field=lambda t, x, p: (-p[0] * x[0] / (p[0] - 1.0),),
    )


def test_ill_posed_model_is_reported_and_cannot_be_simulated():
    model = _ill_posed()
    report = check_well_posedness(model)
    assert not report.ok
    assert report.bad_points and "K" in report.bad_points[0]["parameters"]
    with pytest.raises(WellPosednessError, match="not well posed"):
        simulate(model, None, Regimen.single(1.0), [1.0])


def test_stiff_explosion_is_flagged_by_the_lipschitz_bound():
    model = Model(
        "explosive", "x^3 growth", (State("A", "mg"),), (Parameter("K", "1/h", 1.0),),
        (Output("A", "mg", lambda x, p: x[0]),), (DoseTarget(1, "iv"),),
        vector_field=lambda t, x, p: (p[0] * x[0] ** 3,),
    )
    report = check_well_posedness(model)
    assert not report.ok and report.max_jacobian_norm > report.lipschitz_limit


def test_failed_patient_is_a_status_not_an_exception():
    m = get_model("pk1_oral_mm")
    tr = simulate(m, {"KA": [1.0, 1.0], "VMAX": [50.0, 50.0]}, Regimen.single(100.0), np.linspace(0, 48, 5),
                  method="dopri5", max_steps=5)
    assert set(tr.statuses()) == {Status.MAX_STEPS}
    assert np.isnan(tr.output("C")[:, -1]).all()
    ok = simulate(m, {"KA": [1.0, 1.0]}, Regimen.single(100.0), np.linspace(0, 48, 5), method="dopri5")
    assert ok.ok and np.isfinite(ok.output("C")).all()


def test_digest_changes_with_definition():
    a = get_model("pk1_iv")
    b = a.with_changes(parameters=(Parameter("CL", "L/h", 6.0, 1e-6), a.parameters[1]))
    assert a.digest() != b.digest()
    assert a.digest() == get_model("pk1_iv").digest()
