"""SCM: graph queries against networkx/pgmpy, do() immutability, sampling moments against closed forms,
counterfactuals against hand-computed abduction, refusals; the PK-exposure node against AUC = dose / CL."""

import math

import networkx as nx
import numpy as np
import pytest

from medtwin.causal import SCM, Additive, Bernoulli, Function, Linear, Noise, PKExposure, Variable
from medtwin.errors import DataError, ModelError


def chain_scm():
    # age -> dose -> level -> aki ; age -> level ; frailty (latent) -> aki
    return SCM([
        Variable("age", Linear({}, intercept=60.0), Noise.normal(10.0), unit="year"),
        Variable("dose", Linear({"age": -5.0}, intercept=1000.0), Noise.normal(50.0), unit="mg"),
        Variable("level", Additive(("dose", "age"), lambda v: 0.02 * v["dose"] + 0.001 * v["age"] ** 2),
                 Noise.normal(1.0), unit="mg/L"),
        Variable("frailty", Linear({}), Noise.normal(1.0), latent=True),
        Variable("aki", Bernoulli({"level": 0.3, "frailty": 1.0}, intercept=-8.0), Noise.uniform()),
    ])


def test_graph_queries_match_networkx_and_pgmpy():
    scm = chain_scm()
    assert scm.parents("level") == ("dose", "age")
    assert scm.descendants("dose") == {"level", "aki"}
    assert scm.ancestors("aki") == {"age", "dose", "level", "frailty"}
    assert scm.latent == {"frailty"}
    from pgmpy.base import DAG

    dag = DAG(list(scm.graph.edges))
    names = list(scm.names)
    for i, x in enumerate(names):
        for y in names[i + 1:]:
            for z in ([], ["level"], ["dose"], ["age", "level"], ["aki"]):
                if x in z or y in z:
                    continue
                ours = scm.d_separated(x, y, z)
                assert ours == (not dag.is_dconnected(x, y, observed=z)), (x, y, z)


def test_do_returns_a_new_model_and_shares_units():
    scm = chain_scm()
    world = scm.do(dose=800.0)
    assert scm.variables["dose"].equation.describe() != world.variables["dose"].equation.describe()
    assert scm.parents("dose") == ("age",) and world.parents("dose") == ()
    factual = scm.sample(1000, seed=5)
    treated = world.sample(1000, seed=5)
    np.testing.assert_array_equal(factual["age"], treated["age"])          # same units (common noise)
    assert np.all(treated["dose"] == 800.0)
    # level differs by exactly 0.02 * (800 - dose) for every unit: the same noise
    np.testing.assert_allclose(treated["level"] - factual["level"], 0.02 * (800.0 - factual["dose"]), atol=1e-9)
    with pytest.raises(ModelError, match="no variable 'weight'"):
        scm.do(weight=1.0)


def test_sampling_moments_match_closed_form():
    scm = chain_scm()
    s = scm.sample(40_000, seed=1, frame=False)
    # E[dose] = 1000 - 5 * 60 = 700, Var = 25 * 100 + 2500 = 5000
    assert abs(s["dose"].mean() - 700.0) < 4 * math.sqrt(5000 / 40_000)
    assert abs(s["dose"].var() - 5000.0) / 5000.0 < 0.05
    # interventional mean of level under do(dose=800): 16 + 0.001 * E[age^2] = 16 + 0.001 * (3600 + 100)
    w = scm.do(dose=800.0).sample(40_000, seed=2, frame=False)
    assert abs(w["level"].mean() - (16.0 + 3.7)) < 4 * math.sqrt((1 + 0.001**2 * 4 * 3600 * 100) / 40_000) + 0.01


def test_counterfactual_abduction_action_prediction():
    scm = chain_scm()
    unit = {"age": 70.0, "dose": 600.0, "level": 20.0, "frailty": 0.0, "aki": 0.0}
    with pytest.raises(ModelError, match="noise of aki is not identifiable"):
        scm.counterfactual(unit, {"dose": 800.0})
    without_aki = SCM([v for v in chain_scm().variables.values() if v.name not in ("aki",)])
    cf = without_aki.counterfactual({"age": 70.0, "dose": 600.0, "level": 20.0}, {"dose": 800.0})
    # u_level = 20 - (12 + 4.9) = 3.1; counterfactual level = 16 + 4.9 + 3.1 = 24
    assert cf["level"] == pytest.approx(24.0, abs=1e-12) and cf["age"] == 70.0 and cf["dose"] == 800.0
    with pytest.raises(ModelError, match=r"observed values of \['level'\]"):
        without_aki.counterfactual({"age": 70.0, "dose": 600.0}, {"dose": 800.0})
    # an invertible non-additive equation: y = exp(x) * u (u > 0), inverse u = y / exp(x)
    mult = SCM([Variable("x", Linear({}), Noise.normal(1.0)),
                Variable("y", Function(("x",), lambda v, u: np.exp(v["x"]) * u, lambda y, v: y / np.exp(v["x"])),
                         Noise.uniform(0.5, 1.5))])
    assert mult.counterfactual({"x": 0.0, "y": 1.2}, {"x": 1.0})["y"] == pytest.approx(1.2 * math.e)
    opaque = SCM([Variable("x", Linear({}), Noise.normal(1.0)),
                  Variable("y", Function(("x",), lambda v, u: v["x"] + u ** 2), Noise.normal(1.0))])
    with pytest.raises(ModelError, match="noise of y is not identifiable.*no inverse"):
        opaque.counterfactual({"x": 0.0, "y": 1.0}, {"x": 1.0})


def test_bad_models_are_refused():
    with pytest.raises(ModelError, match="cycle"):
        SCM([Variable("a", Linear({"b": 1.0})), Variable("b", Linear({"a": 1.0}))])
    with pytest.raises(ModelError, match="parent 'c'"):
        SCM([Variable("a", Linear({"c": 1.0}))])
    with pytest.raises(ModelError, match="unique"):
        SCM([Variable("a", Linear({})), Variable("a", Linear({}))])
    with pytest.raises(DataError, match="positive integer"):
        chain_scm().sample(0, seed=1)


def _vanco_population():
    from medtwin.io.population_file import load_population, shipped_population_path

    return load_population(shipped_population_path("vancomycin_goti2018"))


def test_pk_exposure_node_matches_steady_state_auc():
    pop = _vanco_population()
    node = PKExposure(pop, covariates={"CRCL": "crcl", "WT": "weight", "DIAL": 0.0}, dose="dose",
                      interval=12.0, n_doses=360, infusion=1.0, window=(4296.0, 4320.0))
    scm = SCM([
        Variable("crcl", Linear({}, intercept=100.0), Noise.normal(15.0), unit="mL/min"),
        Variable("weight", Linear({}, intercept=80.0), Noise.normal(12.0), unit="kg"),
        Variable("dose", Linear({"crcl": 8.0}, intercept=400.0), Noise.normal(50.0), unit="mg"),
        Variable("auc24", node, node.noise(), unit="mg·h/L"),
        Variable("aki", Bernoulli({"auc24": 0.004}, intercept=-4.0), Noise.uniform()),
    ])
    assert scm.parents("auc24") == ("crcl", "weight", "dose")
    s = scm.do(dose=1000.0).sample(200, seed=3, frame=False)
    eta = scm.noise(200, 3)["auc24"]
    cl = pop.individual_parameters({"CRCL": s["crcl"], "WT": s["weight"], "DIAL": np.zeros(200)}, eta)["CL"]
    # steady state (180 days of q12h dosing): AUC over one day = daily dose / CL (exact for a linear model)
    np.testing.assert_allclose(s["auc24"], 2000.0 / cl, rtol=2e-3)
    assert s["aki"].mean() == pytest.approx(np.mean(1 / (1 + np.exp(4.0 - 0.004 * s["auc24"]))), abs=0.1)
    with pytest.raises(ModelError, match="3 components"):
        scm.counterfactual({"crcl": 80.0, "weight": 80.0, "dose": 1000.0, "auc24": 500.0, "aki": 0.0},
                           {"dose": 1500.0})
    with pytest.raises(ModelError, match="needs covariates"):
        PKExposure(pop, covariates={"CRCL": "crcl"}, dose="dose")
