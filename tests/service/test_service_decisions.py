"""The clinician in the loop over HTTP: a population twin personalized on the patient's records, a recorded
recommendation, accept / override with a mandatory reason, the decisions in the audit trail, reproduction;
trial jobs (the mechanism; no trial engine installed yet)."""

from __future__ import annotations

import pytest

from svc_helpers import make_service, new_patient, token


@pytest.fixture(scope="module")
def ward(tmp_path_factory):
    """A service with one vancomycin patient (4 infusions, 2 levels), a posterior twin and a recommendation."""
    home = tmp_path_factory.mktemp("ward")
    c = make_service(f"sqlite:///{home / 'w.db'}", home)
    h = token(c, "clinician")
    new_patient(c, h, "v1")
    doses = [{"source_id": f"d{k}", "time_h": 12.0 * k, "kind": "infusion", "name": "1", "value": 1000.0,
              "unit": "mg/h", "duration_h": 1.0} for k in range(4)]
    assert c.post("/patients/v1/doses", json=doses, headers=h).status_code == 201
    levels = [{"source_id": "l1", "time_h": 11.5, "name": "C", "value": 8.0, "unit": "mg/L"},
              {"source_id": "l2", "time_h": 37.0, "name": "C", "value": 27.0, "unit": "mg/L"}]
    assert c.post("/patients/v1/measurements", json=levels, headers=h).status_code == 201
    from medtwin.io.population_file import load_population, shipped_population_path

    content = load_population(shipped_population_path("vancomycin_goti2018")).to_dict()  # a population file
    r = c.post("/patients/v1/twin", json={"kind": "posterior", "population": {"thetas": "nope"}}, headers=h)
    assert r.status_code == 422 and r.json()["detail"]["field"] == "population"
    r = c.post("/patients/v1/twin", json={"kind": "posterior", "population": content,
                                          "covariates": {"WT": 70.0, "CRCL": 55.0, "DIAL": 0.0}}, headers=h)
    assert r.status_code == 201, r.text
    r = c.post("/patients/v1/recommendations", json={"n_draws": 200}, headers=h)
    assert r.status_code == 201, r.text
    yield c, h, r.json()
    c.__exit__(None, None, None)


def test_recommendation_is_a_recorded_run(ward):
    c, h, rec = ward
    assert rec["recommendation"]["action"]["dose_mg"] > 0 and rec["recommendation"]["summary"]
    run = c.get(f"/runs/{rec['id']}", headers=h).json()
    assert run["spec"]["operation"] == "recommend" and run["spec"]["patients"] == ["v1"]
    assert run["provenance"]["signature"] and run["provenance"]["run_id"] == rec["id"]  # signed record
    fhir = c.get(f"/runs/{rec['id']}", params={"format": "fhir"}, headers=h).json()["provenance"]
    assert fhir["resourceType"] == "Provenance"
    report = c.post(f"/runs/{rec['id']}/reproduce", headers=h).json()
    assert report["identical"] is True and report["signature_ok"] is True


def test_accept_and_override_with_reason(ward):
    c, h, rec = ward
    r = c.post("/patients/v1/decisions", json={"recommendation": rec["id"], "choice": "override",
                                               "dose_mg": 750.0, "interval_h": 12.0}, headers=h)
    assert r.status_code == 422 and r.json()["detail"]["field"] == "reason"
    r = c.post("/patients/v1/decisions", json={"recommendation": "nope", "choice": "accept"}, headers=h)
    assert r.status_code == 404 and r.json()["detail"]["field"] == "recommendation"
    accepted = c.post("/patients/v1/decisions", json={"recommendation": rec["id"], "choice": "accept"}, headers=h)
    assert accepted.status_code == 201, accepted.text
    assert accepted.json()["decision"]["given"]["dose_mg"] == rec["recommendation"]["action"]["dose_mg"]
    override = c.post("/patients/v1/decisions", json={
        "recommendation": rec["id"], "choice": "override", "reason": "creatinine rising since this morning",
        "dose_mg": 750.0, "interval_h": 12.0}, headers=h)
    assert override.status_code == 201, override.text
    d = override.json()["decision"]
    assert d["choice"] == "override" and d["reason"] == "creatinine rising since this morning"
    assert d["clinician"] == "clinician"
    listed = c.get("/patients/v1/decisions", headers=h).json()
    assert [x["decision"]["choice"] for x in listed] == ["accept", "override"]
    audit = c.get("/audit/entries", params={"patient": "v1", "action": "decision.record"},
                  headers=token(c, "auditor")).json()
    assert [e["payload"]["choice"] for e in audit] == ["accept", "override"]
    assert all(e["actor"] == "clinician" for e in audit)
    assert c.get("/audit/verify", headers=token(c, "auditor")).json()["ok"] is True


def test_forecast_of_a_population_twin_is_recorded(ward):
    c, h, _ = ward
    band = c.get("/patients/v1/twin/forecast", params={"horizon_h": 12, "step_h": 2, "n_draws": 100},
                 headers=h).json()
    out = band["outputs"]["C"]
    assert band["run_id"] and out["unit"] == "mg/L"
    assert all(lo <= mid <= hi for lo, mid, hi in zip(out["p05"], out["p50"], out["p95"]))


def test_trial_jobs(ward):
    c, h, _ = ward
    r = c.post("/trials", json={"spec": {"arms": 2}}, headers=token(c, "researcher"))
    assert r.status_code == 422 and r.json()["detail"]["field"] == "spec"  # the trial engine refuses it
    assert c.post("/trials", json={"spec": {}}, headers=h).status_code == 403  # clinicians do not run trials

    def work(progress):
        for k in range(1, 4):
            progress(k, 3)
        return {"run_id": "run-xyz", "arms": 2}

    jobs = c.app.state.jobs
    job_id = jobs.submit("trial", {"arms": 2}, "researcher", work)
    assert jobs.wait(job_id, timeout=20)["status"] == "done"
    got = c.get(f"/jobs/{job_id}", headers=token(c, "researcher")).json()
    assert (got["done"], got["total"], got["result_run_id"]) == (3, 3, "run-xyz")
    assert c.get(f"/jobs/{job_id}", headers=h).status_code == 404  # another user's job
    failing = jobs.submit("trial", {}, "researcher", lambda progress: 1 / 0)
    assert jobs.wait(failing, timeout=20)["error"].startswith("ZeroDivisionError")


def test_a_trial_job_is_a_recorded_run_with_its_strata(ward):
    from medtwin.trials.engine import PK_EXAMPLE

    c, _, _ = ward
    researcher = token(c, "researcher")
    spec = {**PK_EXAMPLE, "patients": 12, "chunk_size": 6}
    r = c.post("/trials", json={"spec": spec}, headers=researcher)
    assert r.status_code == 202, r.text
    job = c.app.state.jobs.wait(r.json()["id"], timeout=120)
    assert job["status"] == "done", job["error"]
    assert (job["done"], job["total"]) == (12, 12)
    result = job["result"]
    assert result["run_id"] == job["result_run_id"] and result["patients"] == 12
    assert {row["variable"] for row in result["strata"]} >= {"CRCL", "AGE", "WT"}
    # high (1,500 mg) vs low (1,000 mg) on a linear model: the AUC ratio is 1.5, so the ATE is positive
    assert result["ate"]["auc"]["estimate"] > 0
    run = c.get(f"/runs/{result['run_id']}", headers=token(c, "auditor"))
    assert run.status_code == 200 and "trial" in run.text
