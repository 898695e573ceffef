"""A model defined here (not in the library) goes through simulate -> personalize -> Twin -> forecast -> recommend
-> save/load, each step checked against an independent closed form or brute-force solve.

The model: one-compartment IV PK with an effect compartment (link model, Sheiner 1979),
dA/dt = -CL/V·A, dCe/dt = KE0·(A/V - Ce); outputs C = A/V and CE = Ce (mg/L).  For a bolus D at 0:
C = D/V·e^(-kt), Ce = D/V·KE0/(KE0 - k)·(e^(-kt) - e^(-KE0·t)), k = CL/V.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.optimize import minimize

from medtwin.control.dosing import DoseConstraints
from medtwin.control.policy import DoseOptimizer, propose
from medtwin.control.targets import AUC24Window, Threshold
from medtwin.core.events import Regimen
from medtwin.core.model import DoseTarget, Model, Output, Parameter, State
from medtwin.core.observation import ResidualError
from medtwin.core.population import Population, Theta
from medtwin.core.simulate import simulate
from medtwin.errors import DataError, ModelDigestError, ModelError
from medtwin.infer.personalize import PatientData, personalize
from medtwin.infer.posterior_codec import posterior_from_dict, posterior_to_dict
from medtwin.io.access import OpenData
from medtwin.io.twin_file import load_twin, save_twin
from medtwin.models import list_models
from medtwin.twin import Twin

ACCESS = OpenData("unit test: synthetic patient")


def _matrix(p):
    cl, v, ke0 = p[0], p[1], p[2]
    return ((-cl / v, 0.0), (ke0 / v, -ke0))


def _concentration(x, p):
    return x[0] / p[1]


def _effect_site(x, p):
    return x[1]


def effect_model(ke0: float = 0.7) -> Model:
    return Model(
        name="user_pk1_effect", description="1-compartment IV with an effect compartment (defined in a test)",
        states=(State("CENTRAL", "mg", "central amount"), State("CE", "mg/L", "effect-site concentration")),
        parameters=(Parameter("CL", "L/h", 5.0, 1e-6, float("inf"), "log", "clearance"),
                    Parameter("V", "L", 30.0, 1e-6, float("inf"), "log", "volume"),
                    Parameter("KE0", "1/h", ke0, 1e-6, float("inf"), "log", "effect-site rate constant")),
        outputs=(Output("C", "mg/L", _concentration, "plasma concentration", linear=True),
                 Output("CE", "mg/L", _effect_site, "effect-site concentration", linear=True)),
        dose_targets=(DoseTarget(1, "iv"),), linear_matrix=_matrix)


MODEL = effect_model()
OMEGA = np.diag([0.09, 0.04])
POPULATION = Population(name="user-effect", model=MODEL.name,
                        thetas=(Theta("TVCL", 5.0, "L/h", lower=0.0), Theta("TVV", 30.0, "L", lower=0.0)),
                        typical={"CL": "TVCL", "V": "TVV"}, iiv=("CL", "V"), omega=tuple(map(tuple, OMEGA)),
                        residual=ResidualError("proportional", proportional=0.1, output="C"))
TRUTH = {"CL": 6.5, "V": 26.0, "KE0": 0.7}
GIVEN = Regimen.every(12.0, "h", 600.0, "mg", n=3, duration=1.0)
TIMES = np.array([2.0, 6.0, 11.5, 14.0, 23.5])


def _bolus(t, d, cl, v, ke0):
    k = cl / v
    return d / v * np.exp(-k * t), d / v * ke0 / (ke0 - k) * (np.exp(-k * t) - np.exp(-ke0 * t))


def _infusions(t, regimen, cl, v, ke0):
    """Superposition of the closed form of each infusion (start s, duration u, rate r) for C (plasma)."""
    out = np.zeros((np.size(cl), t.size))
    cl, v = np.reshape(cl, (-1, 1)), np.reshape(v, (-1, 1))
    k = cl / v
    for e in regimen.expanded():
        u = e.amount / e.rate
        on = np.clip(t - e.time, 0.0, None)
        during = np.minimum(on, u)
        after = np.clip(on - u, 0.0, None)
        out += e.rate / cl * (1 - np.exp(-k * during)) * np.exp(-k * after)
    return out


def _data(seed: int = 3) -> PatientData:
    rng = np.random.default_rng(seed)
    f = _infusions(TIMES, GIVEN, TRUTH["CL"], TRUTH["V"], TRUTH["KE0"])[0]
    return PatientData(GIVEN, TIMES, f * (1 + 0.1 * rng.standard_normal(f.size)), {}, patient="user-1")


@pytest.fixture(scope="module")
def posterior():
    return personalize(POPULATION, _data(), method="laplace", model=MODEL)


def test_the_model_is_not_a_library_model_and_simulates_its_closed_form():
    assert MODEL.name not in list_models()
    t = np.linspace(0.0, 24.0, 49)
    tr = simulate(MODEL, TRUTH, Regimen.single(500.0), t)
    c, ce = _bolus(t, 500.0, TRUTH["CL"], TRUTH["V"], TRUTH["KE0"])
    np.testing.assert_allclose(tr.output("C")[0], c, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(tr.output("CE")[0], ce, rtol=1e-9, atol=1e-12)


def test_personalize_finds_the_brute_force_mode(posterior, brute_force_mode):
    assert posterior.ok and posterior.model is MODEL
    np.testing.assert_allclose(posterior.mean, brute_force_mode, atol=1e-5)


def test_twin_forecast_is_the_closed_form_on_the_posterior_draws(posterior):
    twin = Twin.from_posterior(posterior)
    assert twin.model is MODEL and twin.time == pytest.approx(23.5) and twin.inputs == GIVEN
    later = Regimen.every(12.0, "h", 600.0, "mg", n=2, duration=1.0, start=36.0)
    band = twin.forecast(later, horizon=24.0, step=0.5, n_draws=64, seed=5)
    assert band.times[-1] == pytest.approx(47.5) and set(band.draws) == {"C", "CE"}
    cl, v = np.exp(posterior.sample(64, 5)).T
    np.testing.assert_allclose(band.draws["C"], _infusions(band.times, GIVEN + later, cl, v, 0.7), rtol=1e-8,
                               atol=1e-10)


def test_recommend_on_the_user_model_matches_steady_state_auc(posterior):
    twin = Twin.from_posterior(posterior)
    policy = DoseOptimizer(AUC24Window(400.0, 600.0), DoseConstraints(dose_step_mg=250.0, max_dose_mg=3000.0,
                                                                       intervals_h=(12.0, 24.0)),
                           toxic=Threshold(AUC24Window(), above=600.0), n_draws=400, seed=2, sensitivity=False)
    rec = twin.recommend(policy)
    assert rec.kind == "regimen" and rec.feasible and not policy.constraints.violations(rec.action)
    # Independent: at steady state AUC24 = daily dose / CL for a linear model (window = third day of the regimen).
    cl = np.exp(posterior.sample(400, 2)[:, 0])
    auc = rec.action["daily_mg"] / cl
    assert rec.probabilities["target"] == pytest.approx(np.mean((auc >= 400) & (auc <= 600)), abs=0.02)
    assert rec.probabilities["toxic"] == pytest.approx(np.mean(auc > 600), abs=0.02)


def test_save_and_load_need_the_same_user_model(posterior, tmp_path):
    twin = Twin.from_posterior(posterior)
    path = tmp_path / "twin.json"
    save_twin(path, twin, access=ACCESS)
    stored = json.loads(path.read_text())
    assert stored["model"]["name"] == MODEL.name and stored["model"]["digest"] == MODEL.digest()
    with pytest.raises(ModelError, match="not a library model"):
        load_twin(path, access=ACCESS)
    with pytest.raises(ModelDigestError):
        load_twin(path, access=ACCESS, model=effect_model(ke0=0.9))     # a different definition, same name
    loaded = load_twin(path, access=ACCESS, model=MODEL)
    np.testing.assert_array_equal(loaded.posterior.mean, posterior.mean)
    np.testing.assert_array_equal(loaded.posterior.covariance, posterior.covariance)
    a = twin.forecast(horizon=12.0, n_draws=32, seed=1)
    b = loaded.forecast(horizon=12.0, n_draws=32, seed=1)
    np.testing.assert_array_equal(a.draws["CE"], b.draws["CE"])
    assert loaded.posterior.update(_data(4)).mean.tolist() == posterior.update(_data(4)).mean.tolist()


def test_the_posterior_refuses_a_model_name_and_the_codec_verifies_the_digest(posterior):
    from dataclasses import replace

    with pytest.raises(ModelError, match="Model object"):
        replace(posterior, model=MODEL.name)
    stored = posterior_to_dict(posterior)
    assert posterior_from_dict(stored, model=MODEL).mean.tolist() == posterior.mean.tolist()
    stored["model"]["digest"] = "0" * 64
    with pytest.raises(DataError, match="definition changed"):   # ModelDigestError is a DataError too
        posterior_from_dict(stored, model=MODEL)


def test_a_policy_whose_proposal_breaks_its_hard_constraints_is_refused(posterior):
    from dataclasses import dataclass

    from medtwin.control.recommendation import Recommendation

    @dataclass(frozen=True)
    class Reckless:
        constraints: DoseConstraints = DoseConstraints(max_dose_mg=1000.0)

        def propose(self, twin):
            return Recommendation(kind="regimen", status="optimal", target={},
                                  action={"dose_mg": 5000.0, "interval_h": 12.0, "infusion_h": 1.0})

    with pytest.raises(DataError, match="hard constraints"):
        propose(Reckless(), Twin.from_posterior(posterior))


def test_continual_adaptation_runs_on_the_twin_of_the_user_model(posterior):
    from medtwin.twin.adaptation import Consolidation
    from medtwin.infer.posterior import Posterior

    # Consolidation of a first batch from the population prior (no elapsed time, no process noise) is the
    # plain personalization of that batch: the prior is the population's and the likelihood the same.
    start = Twin.from_posterior(Posterior.from_prior(POPULATION.prior_for({}), model=MODEL))
    adapted = start.adapt(Consolidation(), _data(), POPULATION)
    assert adapted.posterior.model is MODEL and adapted.adaptation.posterior is adapted.posterior
    np.testing.assert_allclose(adapted.posterior.mean, posterior.mean, atol=1e-6)
    assert start.posterior.data == () and adapted.inputs == GIVEN


def test_a_posterior_twin_assimilates_measurements_like_the_batch(posterior):
    from medtwin.core.stream import Measurement
    from medtwin.infer.posterior import Posterior

    data = _data()
    levels = [Measurement(float(t), "C", float(v) / 10.0, "mg/dL", source_id=f"l{k}")   # 1 mg/dL = 10 mg/L
              for k, (t, v) in enumerate(zip(data.times, data.values))]
    start = Twin.from_posterior(Posterior.from_prior(POPULATION.prior_for({}), model=MODEL), inputs=GIVEN)
    bad = Measurement(3.0, "C", -1.0, "mg/L", source_id="bad")
    twin = start.assimilate(levels[::-1] + [levels[0], bad])          # any order, a duplicate, a negative value
    assert [r.item.source_id for r in twin.rejected] == ["bad"] and twin.posterior.data[-1].n_observations == 5
    np.testing.assert_allclose(twin.posterior.mean, posterior.mean, atol=1e-6)
    assert twin.assimilate(levels).posterior is twin.posterior         # the same levels again: nothing new
    from medtwin.twin.codec import twin_from_dict, twin_to_dict

    loaded = twin_from_dict(json.loads(json.dumps(twin_to_dict(twin))), model=MODEL)
    assert loaded.assimilate(levels).posterior is loaded.posterior and len(loaded.rejected) == 1


# --- the same user model through the workflow layer: run (signed record + audit entry) -> reproduce_run ---

SYNTHETIC = "unit test: synthetic patient"


@pytest.fixture(scope="module")
def brute_force_mode():
    """The posterior mode by Nelder-Mead on the closed-form log posterior (independent of the JAX path)."""
    data, prior = _data(), POPULATION.prior_for({})
    mean, precision = np.asarray(prior.log_mean), np.linalg.inv(np.asarray(prior.covariance))

    def neg_log_post(z):
        cl, v = np.exp(z)
        f = _infusions(data.times, data.regimen, cl, v, TRUTH["KE0"])[0]
        sd = 0.1 * f
        r = (data.values - f) / sd
        return 0.5 * np.sum(r**2) + np.sum(np.log(sd)) + 0.5 * (z - mean) @ precision @ (z - mean)

    return minimize(neg_log_post, mean, method="Nelder-Mead",
                    options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 4000}).x


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """simulate, personalize, forecast and recommend on the user model, each through workflows.run."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from medtwin import workflows
    from medtwin.io.storage import make_engine

    engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('user-model') / 'runs.db'}")
    stores = workflows.Stores.for_engine(engine, Ed25519PrivateKey.generate())
    data, later = _data(), Regimen.every(12.0, "h", 600.0, "mg", n=2, duration=1.0, start=36.0)
    common = {"model": MODEL, "open_data": SYNTHETIC}
    requests = {
        "simulate": workflows.SimulateRequest(MODEL, TRUTH, Regimen.single(500.0), np.linspace(0.0, 24.0, 25),
                                              open_data=SYNTHETIC),
        "personalize": workflows.PersonalizeRequest(POPULATION, data, **common),
        "forecast": workflows.ForecastRequest(POPULATION, data, regimen=GIVEN + later,
                                              times=np.arange(0.0, 48.0, 0.5), n_draws=64, seed=5, **common),
        "recommend": workflows.RecommendRequest(
            POPULATION, data, target={"kind": "auc24", "low": 440.0, "high": 480.0}, n_draws=400, seed=2,
            constraints=DoseConstraints(dose_step_mg=250.0, max_dose_mg=3000.0, intervals_h=(12.0, 24.0)),
            **common),
    }
    runs = {op: workflows.run(request, stores, actor="alice") for op, request in requests.items()}
    yield stores, requests, runs
    engine.dispose()


def test_workflow_results_on_the_user_model_match_the_closed_forms(recorded, brute_force_mode):
    _, requests, runs = recorded
    trajectory = runs["simulate"][0]
    t = requests["simulate"].times
    c, ce = _bolus(t, 500.0, TRUTH["CL"], TRUTH["V"], TRUTH["KE0"])
    np.testing.assert_allclose(trajectory.output("C")[0], c, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(trajectory.output("CE")[0], ce, rtol=1e-9, atol=1e-12)
    posterior = runs["personalize"][0]
    assert posterior.model is MODEL
    np.testing.assert_allclose(posterior.mean, brute_force_mode, atol=1e-5)
    forecast = runs["forecast"][0]
    np.testing.assert_array_equal(forecast.posterior.mean, posterior.mean)
    cl, v = np.exp(forecast.posterior.sample(64, 5)).T
    np.testing.assert_allclose(forecast.band.draws["C"],
                               _infusions(forecast.band.times, requests["forecast"].regimen, cl, v, 0.7),
                               rtol=1e-8, atol=1e-10)
    rec = runs["recommend"][0].recommendation
    assert rec.feasible and not requests["recommend"].constraints.violations(rec.action)
    # linear model: AUC24 over the third day of the new regimen (steady state) = daily dose / CL
    cl = np.exp(runs["recommend"][0].posterior.sample(400, 2)[:, 0])
    auc = rec.action["daily_mg"] / cl
    assert 0.2 < rec.probabilities["target"] < 0.9      # a narrow window: not trivially certain
    assert rec.probabilities["target"] == pytest.approx(np.mean((auc >= 440) & (auc <= 480)), abs=0.03)
    assert rec.probabilities["toxic"] == pytest.approx(np.mean(auc > 600), abs=0.03)


def test_user_model_runs_are_signed_audited_and_store_the_model_reference(recorded):
    from medtwin.governance.provenance import verify
    from medtwin.models import model_reference

    stores, requests, runs = recorded
    keys = stores.public_keys()
    entries = {e.payload["run_id"]: e for e in stores.log.entries() if e.action == "run.record"}
    for op, (_, record) in runs.items():
        assert record.operation == op and any(verify(record, key) for key in keys)
        assert record.model_digest == "sha256:" + MODEL.digest()
        stored = stores.runs.verified(record.run_id, keys)
        assert stored.spec.model == model_reference(MODEL) and stored.spec.model_name == MODEL.name
        assert entries[record.run_id].payload["model"] == MODEL.name


def test_reproduce_run_needs_the_same_user_model_and_is_bit_for_bit(recorded):
    from medtwin import workflows

    stores, _, runs = recorded
    altered = effect_model(ke0=0.9)        # same name, different definition
    for op, (_, record) in runs.items():
        report = workflows.reproduce_run(stores, record.run_id, actor="alice", model=MODEL)
        assert report.identical and not report.model_changed and not report.differing_outputs, op
        assert report.reproduced_digest == record.output_digest
        with pytest.raises(ModelError, match=f"run {record.run_id}: .*{MODEL.name}.*not a library model"):
            workflows.reproduce_run(stores, record.run_id, actor="alice")
        with pytest.raises(ModelDigestError, match=f"run {record.run_id}: .*{MODEL.name}.*definition changed"):
            workflows.reproduce_run(stores, record.run_id, actor="alice", model=altered)
    # a mapping of user models works too (the run picks its own by name)
    report = workflows.reproduce_run(stores, runs["simulate"][1].run_id, actor="alice",
                                     model={MODEL.name: MODEL, "other": altered})
    assert report.identical


def test_a_decision_on_a_user_model_recommendation_needs_the_model(recorded):
    from medtwin import workflows

    stores, _, runs = recorded
    run_id = runs["recommend"][1].run_id
    with pytest.raises(ModelError, match="not a library model"):
        workflows.run(workflows.DecideRequest(run_id, "accept", "dr-who"), stores, actor="alice")
    decision, record = workflows.run(workflows.DecideRequest(run_id, "accept", "dr-who", model=MODEL), stores,
                                     actor="alice")
    assert decision.choice == "accept" and record.model_digest == "sha256:" + MODEL.digest()


def test_a_population_for_another_model_is_refused_and_library_specs_keep_the_name():
    from medtwin import workflows

    with pytest.raises(DataError, match="population is for model 'user_pk1_effect'"):
        workflows.PersonalizeRequest(POPULATION, _data(), model=get_model_pk1(), open_data=SYNTHETIC)
    spec = workflows.SimulateRequest("pk1_iv", {"CL": [2.0], "V": [20.0]}, Regimen.single(1.0), [1.0],
                                     open_data=SYNTHETIC).spec()
    assert spec.model == "pk1_iv"                    # stored exactly as before the user-model change


def get_model_pk1():
    from medtwin.models import get_model

    return get_model("pk1_iv")


def test_a_stream_replay_on_the_user_model_is_recorded_and_reproduced(recorded):
    """Replay (one arrival at a time through the twin built from a spec) on the user model: equal to a hand loop
    over Twin.assimilate, reproduced bit for bit with the model, refused without it."""
    import io

    from medtwin import workflows
    from medtwin.governance.provenance import output_digest
    from medtwin.io.stream_file import read_stream
    from medtwin.twin.codec import twin_from_spec

    stores = recorded[0]
    spec = {"model": MODEL.name, "parameters": {"CL": 5.0, "V": 30.0, "KE0": 0.7}, "estimated": ["CL"],
            "parameter_drift": {"CL": 0.001}, "initial_sd": {"CL": 0.4}, "observer": {"kind": "ukf"},
            "errors": {"C": {"model": "proportional", "proportional": 0.1}}}
    data = _data()
    rows = ["time_h,kind,name,value,unit,duration_h,device,source_id"]
    rows += [f"{e.time},infusion,CENTRAL,{e.rate},mg/h,{e.amount / e.rate},pump,d{k}"
             for k, e in enumerate(GIVEN.expanded())]
    rows += [f"{t},obs,C,{v},mg/L,,lab,s{k}" for k, (t, v) in enumerate(zip(data.times, data.values))]
    stream = "\n".join(rows) + "\n"
    with pytest.raises(ModelError, match="not a library model"):
        workflows.ReplayRequest(spec, stream, open_data=SYNTHETIC)
    result, record = workflows.run(workflows.ReplayRequest(spec, stream, open_data=SYNTHETIC, model=MODEL), stores,
                                   actor="alice")
    assert result.n_measurements == TIMES.size and result.twin.model is MODEL
    parsed = read_stream(io.StringIO(stream), model=MODEL, access=ACCESS)
    as_replayed = {**spec, "observer": {"kind": "ukf", "transition": "numpy"}}  # a replay's UKF steps in NumPy
    twin = twin_from_spec(as_replayed, inputs=parsed.regimen, model=MODEL)
    for m in parsed.measurements:
        twin = twin.assimilate([m])
    assert output_digest(result.twin) == output_digest(twin)
    assert workflows.reproduce_run(stores, record.run_id, actor="alice", model=MODEL).identical
    with pytest.raises(ModelError, match=f"run {record.run_id}: .*not a library model"):
        workflows.reproduce_run(stores, record.run_id, actor="alice")
    with pytest.raises(ModelDigestError):
        workflows.reproduce_run(stores, record.run_id, actor="alice", model=effect_model(ke0=0.9))


def _bolus_dataset():
    """Two subjects, a 500-mg bolus each, plasma levels at 1, 3, 6 and 12 h (NONMEM records)."""
    import pandas as pd

    from medtwin.io.nonmem import read_nonmem

    rows = []
    for i in (1, 2):
        rows.append(dict(ID=i, TIME=0.0, AMT=500.0, DV=".", EVID=1))
        rows += [dict(ID=i, TIME=t, AMT=0.0, DV=1.0 + i, EVID=0) for t in (1.0, 3.0, 6.0, 12.0)]
    return read_nonmem(pd.DataFrame(rows), access=ACCESS, model=MODEL)


def test_dataset_simulation_and_fit_requests_carry_the_user_model(recorded):
    from medtwin import workflows
    from medtwin.models import model_reference
    from medtwin.workflows.requests import request_from_spec

    stores, dataset = recorded[0], _bolus_dataset()
    params = {"CL": np.array([6.5, 4.0]), "V": np.array([26.0, 35.0]), "KE0": np.array([0.7, 0.7])}
    request = workflows.SimulateDatasetRequest(MODEL, dataset, params, open_data=SYNTHETIC)
    trajectory, record = workflows.run(request, stores, actor="alice")
    t = np.array([1.0, 3.0, 6.0, 12.0])
    expected = [500.0 / v * np.exp(-cl / v * t) for cl, v in zip(params["CL"], params["V"])]   # observation rows
    np.testing.assert_allclose(np.asarray(trajectory.outputs["C"]), np.concatenate(expected), rtol=1e-9)
    assert workflows.reproduce_run(stores, record.run_id, actor="alice", model=MODEL).identical
    with pytest.raises(ModelError, match="not a library model"):
        workflows.reproduce_run(stores, record.run_id, actor="alice")
    # a fit request (not executed here: FOCEI costs ~15 s) stores the reference and is rebuilt with the model
    fit = workflows.FitRequest(POPULATION, dataset, model=MODEL, open_data=SYNTHETIC)
    assert fit.spec().model == model_reference(MODEL)
    again = request_from_spec(fit.spec(), access=ACCESS, model=[MODEL])
    assert again.model is MODEL and again.spec() == fit.spec()
    with pytest.raises(ModelDigestError):
        request_from_spec(fit.spec(), access=ACCESS, model=effect_model(ke0=0.9))
