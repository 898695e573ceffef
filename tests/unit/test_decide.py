"""`medtwin decide` and workflows.run(DecideRequest): a clinician accepts, modifies or overrides a recorded
recommendation, with a reason; each decision is stored with signed provenance and a decision.record audit entry."""

import math

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from medtwin import workflows
from medtwin.cli import app
from medtwin.control.decisions import recommendation_id
from medtwin.control.dosing import DoseConstraints
from medtwin.core.events import Regimen
from medtwin.errors import DataError
from medtwin.governance.provenance import verify
from medtwin.infer.personalize import PatientData
from medtwin.io.access import OpenData
from medtwin.io.population_file import load_population, shipped_population_path
from medtwin.io.storage import make_engine

SYNTHETIC = "synthetic test patient"
CONSTRAINTS = DoseConstraints(dose_step_mg=250.0, min_dose_mg=250.0, max_dose_mg=2000.0, max_daily_mg=4000.0,
                              intervals_h=(8.0, 12.0, 24.0), max_rate_mg_per_h=1000.0)
runner = CliRunner()


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """One real recommendation (personalize + recommend_dose), recorded through workflows.run."""
    engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('decide') / 'd.db'}")
    stores = workflows.Stores.for_engine(engine, Ed25519PrivateKey.generate())
    population = load_population(shipped_population_path("vancomycin_goti2018"))
    regimen = Regimen.every(12.0, "h", 1000.0, "mg", n=4, duration=1.0)
    data = PatientData(regimen, [11.5, 35.5, 37.0], [8.0, 11.0, 27.0], {"CRCL": 55.0, "WT": 70.0, "DIAL": 0.0},
                       blq=[False, False, False], pre_dose=[True, True, False], patient="v1")
    request = workflows.RecommendRequest(population, data, constraints=CONSTRAINTS, n_draws=200, open_data=SYNTHETIC)
    result, record = workflows.run(request, stores, actor="alice")
    yield stores, result.recommendation, record
    engine.dispose()


def _decide(stores, run_id, choice, **options):
    return workflows.run(workflows.DecideRequest(run_id, choice, "dr.who", **options), stores, actor="bob")


def _stored(stores, decision_record):
    return stores.decisions.get(decision_record.run_id, access=OpenData(SYNTHETIC))


def test_the_recommendation_is_recorded_and_read_back_unchanged(recorded):
    stores, recommendation, record = recorded
    assert record.operation == "recommend" and "recommendation" in record.output_digests
    stored, again = workflows.stored_recommendation(stores, record.run_id)
    assert again.summary() == recommendation.summary() and dict(again.action) == dict(recommendation.action)
    assert recommendation_id(again) == recommendation_id(recommendation)


def test_accept_gives_the_proposal_and_is_signed_and_audited(recorded):
    stores, recommendation, record = recorded
    decision, signed = _decide(stores, record.run_id, "accept")
    assert decision.choice == "accept" and decision.given == dict(recommendation.action)
    assert decision.recommendation_id == recommendation_id(recommendation)
    assert decision.patient == "v1" and decision.time == 37.0  # default: the last level the recommendation used
    stored = _stored(stores, signed)
    assert stored.intact(stores.public_keys()) and verify(signed, stores.key.public_key())
    entries = [e for e in stores.log.entries(patient="v1") if e.action == "decision.record"]
    assert any(e.payload["decision_id"] == signed.run_id and e.payload["choice"] == "accept" for e in entries)
    assert stores.log.verify([stores.key.public_key()]).ok


def test_modify_a_dose_within_the_constraints(recorded):
    stores, recommendation, record = recorded
    proposed = recommendation.action
    dose = proposed["dose_mg"] - 250.0 if proposed["dose_mg"] > 250.0 else 500.0
    decision, signed = _decide(stores, record.run_id, "modify", dose_mg=dose, reason="rising creatinine")
    given = decision.given
    # independent arithmetic: 1-h minimum infusion, else dose / 1000 mg/h rounded up to 0.5 h; daily = dose * 24 / tau
    assert given["dose_mg"] == dose and given["interval_h"] == proposed["interval_h"]
    assert given["infusion_h"] == max(1.0, math.ceil(dose / 1000.0 / 0.5) * 0.5)
    assert given["daily_mg"] == pytest.approx(dose * 24.0 / proposed["interval_h"], rel=1e-15)
    assert decision.choice == "modify" and decision.reason == "rising creatinine"
    assert _stored(stores, signed).decision.given == given


@pytest.mark.parametrize("dose, interval, broken", [(333.0, None, "not a multiple of 250"),
                                                     (2250.0, None, "outside [250.0, 2000.0]"),
                                                     (2000.0, 8.0, "daily dose 6000.0 mg above 4000.0"),
                                                     (None, 6.0, "interval 6.0 h not allowed")])
def test_a_modification_breaking_a_constraint_is_refused_and_nothing_stored(recorded, dose, interval, broken):
    stores, _, record = recorded
    before = len(stores.log)
    with pytest.raises(DataError, match="hard constraints") as info:
        _decide(stores, record.run_id, "modify", dose_mg=dose, interval_h=interval, reason="my plan")
    assert broken in str(info.value)
    assert len(stores.log) == before


def test_override_is_the_clinicians_own_plan(recorded):
    stores, recommendation, record = recorded
    decision, signed = _decide(stores, record.run_id, "override", dose_mg=2500.0, interval_h=24.0, reason="haemofiltration")
    assert decision.choice == "override" and decision.given["dose_mg"] == 2500.0
    assert decision.proposed == dict(recommendation.action) and not decision.twin_guided
    assert _stored(stores, signed).intact(stores.public_keys())


@pytest.mark.parametrize("choice", ["modify", "override"])
def test_a_missing_reason_is_refused(recorded, choice):
    stores, _, record = recorded
    before = len(stores.log)
    with pytest.raises(DataError, match=f"reason is required to {choice}"):
        _decide(stores, record.run_id, choice, dose_mg=500.0)
    assert len(stores.log) == before


def test_an_unknown_recommendation_or_another_run_is_refused(recorded):
    stores, _, record = recorded
    with pytest.raises(DataError, match="no recommendation 'nope'"):
        _decide(stores, "nope", "accept")
    import numpy as np

    simulated = workflows.SimulateRequest("pk1_iv", {"CL": [2.0], "V": [20.0]}, Regimen.single(100.0),
                                          np.array([1.0, 2.0]), open_data=SYNTHETIC)
    _, other = workflows.run(simulated, stores, actor="alice")
    with pytest.raises(DataError, match="is a simulate run, not a recommendation"):
        _decide(stores, other.run_id, "accept")


def test_cli_recommend_then_decide(tmp_path):
    from test_cli_infer import _vancomycin_csv

    data = tmp_path / "patient.csv"
    _vancomycin_csv(data)
    result = runner.invoke(app, ["recommend", "--population", str(shipped_population_path("vancomycin_goti2018")),
                                 "--data", str(data), "--out", str(tmp_path / "rec"), "--draws", "200",
                                 "--open-data", SYNTHETIC])
    assert result.exit_code == 0, result.output
    run_id = result.output.split("recommendation run ")[1].split()[0]
    accepted = runner.invoke(app, ["decide", run_id, "accept", "--clinician", "dr.who"])
    assert accepted.exit_code == 0, accepted.output
    assert "accept recommendation" in accepted.output and "dr.who" in accepted.output
    no_reason = runner.invoke(app, ["decide", run_id, "override", "--dose", "500"])
    assert no_reason.exit_code == 2 and "reason is required to override" in no_reason.output
    unknown = runner.invoke(app, ["decide", "no-such-run", "accept"])
    assert unknown.exit_code == 2 and "no recommendation 'no-such-run'" in unknown.output
    shown = runner.invoke(app, ["audit", "show"])
    assert "decision.record" in shown.output and "run.record" in shown.output


def test_a_consented_recommendation_is_decided_under_the_patients_consent(tmp_path):
    """Purpose treatment (permitted by default): decided and audited under the patient; after the patient
    withdraws treatment consent, a decision (a write of their medication data) is refused and nothing stored."""
    from medtwin.errors import ConsentError

    engine = make_engine(f"sqlite:///{tmp_path / 'c.db'}")
    stores = workflows.Stores.for_engine(engine, Ed25519PrivateKey.generate())
    population = load_population(shipped_population_path("vancomycin_goti2018"))
    data = PatientData(Regimen.every(12.0, "h", 1000.0, "mg", n=4, duration=1.0), [11.5, 35.5], [8.0, 11.0],
                       {"CRCL": 55.0, "WT": 70.0, "DIAL": 0.0}, pre_dose=[True, True], patient="p7")
    request = workflows.RecommendRequest(population, data, constraints=CONSTRAINTS, n_draws=100, purpose="treatment")
    _, record = workflows.run(request, stores, actor="dr.who")
    decision, signed = _decide(stores, record.run_id, "accept")
    assert decision.patient == "p7" and decision.time == 35.5
    assert any(e.action == "decision.record" for e in stores.log.entries(patient="p7"))
    stores.consents.withdraw("p7", "treatment", "p7")
    before = len(stores.decisions.all(access=OpenData("test read")))
    with pytest.raises(ConsentError):
        _decide(stores, record.run_id, "override", dose_mg=500.0, reason="my plan")
    assert len(stores.decisions.all(access=OpenData("test read"))) == before
    engine.dispose()
