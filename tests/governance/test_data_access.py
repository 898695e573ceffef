"""Every read and write of patient data in medtwin.io goes through the consent gate.

A denied access raises ConsentError, is written to the audit log, and returns
(or writes) no data; withdrawal takes effect at the next access.  Runs on
SQLite and PostgreSQL (fixture ``engine`` in conftest).
"""

from __future__ import annotations

import io
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from medtwin.core.events import Regimen
from medtwin.errors import ConsentError, DataError
from medtwin.governance.audit import AuditLog
from medtwin.governance.consent import PURPOSE_SYSTEMS
from medtwin.governance.consent_store import AccessDenied, ConsentGate, ConsentStore
from medtwin.governance.runs import RunStore, spec_for_simulate
from medtwin.io.access import OpenData
from medtwin.io.dataset_simulation import simulate_dataset, write_simulation
from medtwin.io.nonmem import read_nonmem, validate_nonmem, write_nonmem
from medtwin.models import get_model

T0 = datetime(2026, 6, 1, 8, 0, tzinfo=timezone.utc)
LAB = "Organization/lab"
DATA = "ID,TIME,AMT,DV,WT\n1,0,100,.,70\n1,2,0,3.1,70\n2,0,100,.,80\n2,2,0,2.9,80\n"
SYNTHETIC = OpenData("synthetic records written in the tests")


def research_consent(patient: str, cid: str, data_class: str | None = None) -> dict:
    provision = {"purpose": [{"system": PURPOSE_SYSTEMS["research"], "code": "HRESCH"}]}
    if data_class:
        provision["documentType"] = [{"system": "https://medtwin.org/fhir/CodeSystem/data-class",
                                      "code": data_class}]
    return {"resourceType": "Consent", "id": cid, "status": "active",
            "subject": {"reference": f"Patient/{patient}"}, "date": "2026-01-01",
            "period": {"start": "2026-01-01"}, "decision": "permit", "provision": [provision]}


@pytest.fixture
def key():
    return Ed25519PrivateKey.generate()


@pytest.fixture
def store(engine, key):
    return ConsentStore(engine, AuditLog(engine, key))


def decisions(store, patient):
    return [(e.payload["decision"], e.payload["data_class"], e.payload.get("operation"))
            for e in store.audit_log.entries(patient=patient) if e.action == "consent.decision"]


def test_access_is_required_and_validated():
    with pytest.raises(TypeError):
        read_nonmem(io.StringIO(DATA))  # no silent default
    with pytest.raises(DataError, match="ConsentGate .* or OpenData"):
        read_nonmem(io.StringIO(DATA), access=None)
    with pytest.raises(DataError, match="needs a reason"):
        OpenData("  ")


def test_default_policy_permits_treatment_and_audits_each_patient_and_class(store):
    ds = read_nonmem(io.StringIO(DATA), access=ConsentGate(store, "dr.who", "treatment", T0))
    assert list(ds.ids) == [1, 2]
    assert decisions(store, "1") == [("permit", c, "read") for c in ("observations", "medications", "demographics")]


def test_denied_read_returns_nothing_and_is_audited(store, key):
    gate = ConsentGate(store, LAB, "research", T0)
    with pytest.raises(AccessDenied) as info:
        read_nonmem(io.StringIO(DATA), access=gate)
    assert isinstance(info.value, ConsentError)
    assert {d.patient for d in info.value.denied} == {"1", "2"}
    assert "no data were returned" in str(info.value)
    assert ("deny", "observations", "read") in decisions(store, "2")
    assert store.audit_log.verify([key.public_key()]).ok


def test_one_unconsented_patient_blocks_the_whole_read(store):
    store.add(research_consent("1", "c1"), "dr.who")
    with pytest.raises(AccessDenied) as info:
        read_nonmem(io.StringIO(DATA), access=ConsentGate(store, LAB, "research", T0))
    assert {d.patient for d in info.value.denied} == {"2"}
    store.add(research_consent("2", "c2"), "dr.who")
    assert len(read_nonmem(io.StringIO(DATA), access=ConsentGate(store, LAB, "research", T0))) == 2


def test_data_class_restriction_bites_when_the_file_holds_that_class(store):
    for pid in ("1", "2"):  # research on observations only: the WT column is demographics
        store.add(research_consent(pid, f"c{pid}", "observations"), "dr.who")
    with pytest.raises(AccessDenied) as info:
        read_nonmem(io.StringIO(DATA), access=ConsentGate(store, LAB, "research", T0))
    assert {d.data_class for d in info.value.denied} == {"medications", "demographics"}


def test_withdrawal_applies_to_the_next_access(store):
    for pid in ("1", "2"):
        store.add(research_consent(pid, f"c{pid}"), "dr.who")
    gate = ConsentGate(store, LAB, "research", T0 + timedelta(days=1))
    assert len(read_nonmem(io.StringIO(DATA), access=gate)) == 2
    store.withdraw("2", "research", "dr.who", T0)
    with pytest.raises(AccessDenied):
        read_nonmem(io.StringIO(DATA), access=gate)


def test_validate_is_gated_too(store):
    with pytest.raises(AccessDenied):
        validate_nonmem(io.StringIO(DATA), access=ConsentGate(store, LAB, "research", T0))


def test_denied_writes_write_nothing(store, tmp_path):
    ds = read_nonmem(io.StringIO(DATA), access=SYNTHETIC)
    gate = ConsentGate(store, LAB, "research", T0)
    path = tmp_path / "out.csv"
    with pytest.raises(AccessDenied, match="no data were written"):
        write_nonmem(ds, path, access=gate)
    assert not path.exists()
    trajectory = simulate_dataset(get_model("pk1_iv"), ds, {"CL": 2.0, "V": 20.0})
    with pytest.raises(AccessDenied):
        write_simulation(trajectory, path, access=gate)
    assert not path.exists()
    assert ("deny", "observations", "write") in decisions(store, "1")
    write_simulation(trajectory, path, access=ConsentGate(store, "dr.who", "treatment", T0))
    assert path.read_text().startswith("ID,TIME")


def test_denied_run_record_stores_nothing(store, engine, key):
    runs = RunStore(engine, store.audit_log, key)
    model = get_model("pk1_iv")
    spec = spec_for_simulate("pk1_iv", {"CL": [2.0], "V": [20.0]}, Regimen.single(100.0), np.array([0.0, 1.0]),
                             ids=[1], purpose="research")
    from medtwin.workflows.engine import execute

    trajectory = execute(spec, access=SYNTHETIC)
    assert trajectory.model == model.name
    with pytest.raises(AccessDenied):
        runs.save(spec, trajectory, LAB, access=ConsentGate(store, LAB, "research", T0))
    assert runs.list() == []


def test_patient_map_translates_dataset_ids(store):
    store.add(research_consent("MRN-001", "c1"), "dr.who")
    store.add(research_consent("MRN-002", "c2"), "dr.who")
    gate = ConsentGate(store, LAB, "research", T0, patient_map={"1": "MRN-001", "2": "MRN-002"})
    assert len(read_nonmem(io.StringIO(DATA), access=gate)) == 2
    assert decisions(store, "MRN-001")[-1] == ("permit", "demographics", "read")


def test_gate_rejects_unknown_purpose(store):
    with pytest.raises(DataError, match="purpose must be one of"):
        ConsentGate(store, LAB, "marketing")


def test_denied_fit_report_writes_nothing(store, tmp_path):
    from medtwin.core.observation import ResidualError
    from medtwin.core.population import Population, Theta
    from medtwin.infer.foce import fit_focei
    from medtwin.io.fit_report import write_fit_report

    rows = "ID TIME AMT DV\n" + "".join(f"{i} 0 100 0\n{i} 1 0 {a}\n{i} 6 0 {b}\n" for i, a, b in
                                        [(1, 4.6, 2.9), (2, 5.5, 2.8), (3, 4.1, 2.0), (4, 5.2, 3.3)])
    data = read_nonmem(io.StringIO(rows), access=SYNTHETIC)
    pop = Population(name="t", model="pk1_iv", thetas=(Theta("TVCL", 2.0, "L/h", lower=0),
                     Theta("TVV", 20.0, "L", lower=0)), typical={"CL": "TVCL", "V": "TVV"}, iiv=("CL",),
                     omega=((0.1,),), residual=ResidualError("proportional", proportional=0.1))
    fit = fit_focei(pop, data, covariance="none")
    with pytest.raises(AccessDenied):
        write_fit_report(fit, data, tmp_path / "report", access=ConsentGate(store, LAB, "research", T0))
    assert not (tmp_path / "report").exists()
