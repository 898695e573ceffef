"""Live ingest: idempotent by source id, durable before the answer, late/out-of-order readings assimilated
exactly as ``Twin.assimilate`` does; FHIR and stream-CSV input; live events; forecast bands."""

from __future__ import annotations

import json
import threading

import pytest

from tests.service.conftest import PK_SPEC, new_patient, token

READINGS = [(1.0, 21.0), (2.0, 17.5), (3.0, 15.2), (4.0, 12.9), (5.0, 11.1)]


def _m(k, t, v):
    return {"source_id": f"lab-{k}", "time_h": t, "name": "C", "value": v, "unit": "mg/L"}


def _reference_twin():
    """The twin built directly with the library, readings assimilated in time order."""
    from medtwin.core.events import Regimen
    from medtwin.core.stream import Measurement
    from medtwin.twin.codec import twin_from_spec

    twin = twin_from_spec(PK_SPEC, inputs=Regimen.single(500.0), patient="p1")
    return twin.assimilate([Measurement(t, "C", v, "mg/L", device="lab", source_id=f"lab-{k}")
                            for k, (t, v) in enumerate(READINGS)])


def test_ingest_idempotent_out_of_order_exact(service):
    c = service
    h = token(c, "clinician")
    new_patient(c, h, "p1")
    r = c.post("/patients/p1/doses", json={"source_id": "d1", "time_h": 0, "kind": "bolus", "name": "1",
                                           "value": 500, "unit": "mg"}, headers=h)
    assert r.status_code == 201 and r.json()["twin"] is None  # no twin yet: stored only
    assert c.post("/patients/p1/twin", json={"kind": "live", "spec": PK_SPEC}, headers=h).status_code == 201
    # arrival order: 3, 1, 5 as a batch with a re-send inside it, then 2 (late), then 4, then re-sends
    order = [2, 0, 4, 2]
    r = c.post("/patients/p1/measurements", json=[_m(k, *READINGS[k]) for k in order], headers=h)
    assert r.status_code == 201 and r.json()["created"] == 3 and r.json()["duplicates"] == 1
    for k in (1, 3):
        assert c.post("/patients/p1/measurements", json=_m(k, *READINGS[k]), headers=h).status_code == 201
    again = c.post("/patients/p1/measurements", json=_m(1, *READINGS[1]), headers=h)
    assert again.status_code == 200 and again.json()["records"][0]["created"] is False
    first_id = next(row["id"] for row in r.json()["records"] if row["source_id"] == "lab-0")
    assert again.json()["records"][0]["source_id"] == "lab-1" and again.json()["records"][0]["id"] > first_id
    rows = c.get("/patients/p1/measurements", headers=h).json()
    assert [row["source_id"] for row in rows] == [f"lab-{k}" for k in range(5)]  # time order, one row each
    state = c.get("/patients/p1/twin", headers=h).json()["summary"]
    ref = _reference_twin().state()
    assert state["n_measurements"] == 5
    for name, st in ref.states.items():
        assert state["states"][name]["mean"] == pytest.approx(st["mean"], rel=1e-9, abs=1e-12)
        assert state["states"][name]["sd"] == pytest.approx(st["sd"], rel=1e-9, abs=1e-12)
    for name, p in ref.parameters.items():
        assert state["parameters"][name]["median"] == pytest.approx(p["median"], rel=1e-9)
        assert state["parameters"][name]["p95"] == pytest.approx(p["p95"], rel=1e-9)
    band = c.get("/patients/p1/twin/forecast", params={"horizon_h": 4, "step_h": 1, "n_draws": 100},
                 headers=h).json()
    c_band = band["outputs"]["C"]
    assert len(band["times_h"]) == len(c_band["p50"]) and c_band["unit"] == "mg/L"
    assert all(lo <= mid <= hi for lo, mid, hi in zip(c_band["p05"], c_band["p50"], c_band["p95"]))


def test_ingest_validation_names_the_field(sqlite_service):
    c = sqlite_service
    h = token(c, "clinician")
    new_patient(c, h, "v1")
    r = c.post("/patients/v1/measurements", json={"source_id": "x", "time_h": "soon", "name": "C", "value": 1,
                                                  "unit": "mg/L"}, headers=h)
    assert r.status_code == 422 and any(e["field"].endswith("time_h") for e in r.json()["detail"])
    r = c.post("/patients/nobody/measurements", json=_m(0, 1.0, 2.0), headers=h)
    assert r.status_code == 404 and r.json()["detail"]["field"] == "patient_id"
    csv = "time_h,kind,name,value,unit,source_id\n1,obs,C,12,mg/L,s1\nlater,obs,C,11,mg/L,s2\n"
    r = c.post("/patients/v1/stream", content=csv, headers={**h, "content-type": "text/csv"})
    assert r.status_code == 422 and "row 2: time_h" in r.json()["detail"]["message"]
    assert c.get("/patients/v1/measurements", headers=h).json() == []  # nothing of a refused batch stored


def test_fhir_and_csv_ingest_and_events(sqlite_service):
    c = sqlite_service
    h = token(c, "clinician")
    new_patient(c, h, "f1")
    admin = {"resourceType": "MedicationAdministration", "status": "completed", "identifier": [{"value": "ma-1"}],
             "subject": {"reference": "Patient/f1"}, "medication": {"concept": {"coding": [{"code": "1"}]}},
             "occurenceDateTime": "2026-01-01T00:00:00Z", "dosage": {"dose": {"value": 500, "unit": "mg"}}}
    assert c.post("/patients/f1/medication-administrations", json=admin, headers=h).status_code == 201
    assert c.post("/patients/f1/twin", json={"kind": "live", "spec": PK_SPEC}, headers=h).status_code == 201
    obs = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": {
        "resourceType": "Observation", "status": "final", "identifier": [{"value": "o-1"}],
        "code": {"coding": [{"code": "C"}]}, "valueQuantity": {"value": 21.0, "unit": "mg/L"},
        "effectiveDateTime": "2026-01-01T01:00:00Z"}}]}
    r = c.post("/patients/f1/observations", json=obs, headers=h)
    assert r.status_code == 201 and r.json()["records"][0]["time_h"] == 1.0
    bad = json.loads(json.dumps(obs))
    del bad["entry"][0]["resource"]["identifier"]
    r = c.post("/patients/f1/observations", json=bad, headers=h)
    assert r.status_code == 422 and r.json()["detail"]["field"] == "entry[0].resource.identifier"
    csv = "time_h,kind,name,value,unit,source_id\n2,obs,C,17.5,mg/L,s-2\n"
    assert c.post("/patients/f1/stream", content=csv, headers={**h, "content-type": "text/csv"}).status_code == 201
    bundle = c.get("/patients/f1/measurements", params={"format": "fhir"}, headers=h).json()
    assert [e["resource"]["effectiveDateTime"][:19] for e in bundle["entry"]] == ["2026-01-01T01:00:00",
                                                                                  "2026-01-01T02:00:00"]
    doses = c.get("/patients/f1/doses", params={"format": "fhir"}, headers=h).json()
    assert doses["entry"][0]["resource"]["dosage"]["dose"]["value"] == 500

    # live events: the stream opens with the twin's state, then a posted reading arrives as events
    def post_later():
        import time

        time.sleep(0.5)
        c.post("/patients/f1/measurements", json=_m(9, 3.0, 15.0), headers=h)

    poster = threading.Thread(target=post_later)
    events = []
    with c.stream("GET", "/patients/f1/events", params={"limit": 3}, headers=h) as response:
        assert response.status_code == 200
        poster.start()
        for line in response.iter_lines():
            if line.startswith("event:"):
                events.append(line.split(":", 1)[1].strip())
    poster.join()
    assert events == ["state", "measurement", "state"]


def test_durable_before_answer(sqlite_service, tmp_path):
    """An acknowledged reading is in the database (another engine sees it at once)."""
    from medtwin.io.storage import make_engine
    from medtwin.service.store import RecordStore

    c = sqlite_service
    h = token(c, "clinician")
    new_patient(c, h, "d1")
    assert c.post("/patients/d1/measurements", json=_m(0, 1.0, 3.0), headers=h).status_code == 201
    other = make_engine(str(c.app.state.stores.engine.url))
    try:
        assert RecordStore(other).count("d1") == 1
    finally:
        other.dispose()
