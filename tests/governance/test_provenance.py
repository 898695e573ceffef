"""Provenance records: signatures, key store, PROV-JSON and FHIR exports, simulation records."""

import dataclasses
import json
import os
import stat

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fhir.resources.provenance import Provenance

from medtwin import Regimen, get_model, simulate
from medtwin.errors import DataError
from medtwin.governance import (
    KEY_FILENAME,
    KeyFileError,
    ProvenanceRecord,
    digest,
    environment,
    from_prov_json,
    key_id,
    load_or_create_key,
    now,
    record_for_simulation,
    sign,
    to_fhir_provenance,
    to_prov_json,
    verify,
)

RUN_ID = "3f2c9a1e-8b7d-4c6e-9f10-2a3b4c5d6e7f"
TIME = "2026-11-25T15:37:00.123456+00:00"


@pytest.fixture
def record():
    return ProvenanceRecord(
        run_id=RUN_ID,
        operation="simulate",
        time=TIME,
        operator="dr.alice",
        input_digests={"params": digest({"CL": 5.0}), "times": digest([0.0, 1.0])},
        model_digest=digest("model"),
        output_digest=digest({"C": [1.0]}),
        output_digests={"C": digest([1.0]), "AUC": digest([2.0])},
        code_version={"package": "medtwin", "version": "0.1.0", "commit": "ab" * 20, "dirty": False},
        dependencies={"numpy": "2.4.6", "scipy": "1.17.1"},
        solver={"method": "exact", "rtol": 1e-08, "atol": 1e-10, "dt": None, "max_steps": 1000000},
        platform={"system": "Linux", "python": "3.11.7", "cpu_count": 2},
        seeds={"seed": 20261125},
    )


@pytest.fixture(scope="module")
def key():
    return Ed25519PrivateKey.generate()


# ------------------------------------------------------------------ record value
def test_time_must_be_utc_iso(record):
    with pytest.raises(DataError):
        dataclasses.replace(record, time="yesterday")
    with pytest.raises(DataError):
        dataclasses.replace(record, time="2026-11-25T15:37:00+01:00")
    assert dataclasses.replace(record, time="2026-11-25T15:37:00Z").time.endswith("Z")
    assert dataclasses.replace(record, time=now()).time.endswith("+00:00")


def test_environment_parts():
    env = environment()
    assert env["code_version"]["package"] == "medtwin"
    assert "numpy" in env["dependencies"] and "scipy" in env["dependencies"]
    assert env["platform"]["python"].count(".") == 2
    if "commit" in env["code_version"]:
        assert len(env["code_version"]["commit"]) == 40
        assert isinstance(env["code_version"]["dirty"], bool)


def test_code_version_without_git(monkeypatch):
    from medtwin.governance.provenance import code_version

    monkeypatch.setenv("PATH", "")  # no git executable: commit and dirty are simply absent
    assert set(code_version()) == {"package", "version"}


# ------------------------------------------------------------------ signatures
def test_sign_verify_round_trip(record, key):
    signed = sign(record, key)
    assert signed.signer == key_id(key.public_key()) and len(signed.signer) == 16
    assert len(bytes.fromhex(signed.signature)) == 64
    assert verify(signed, key.public_key())
    assert not verify(record, key.public_key())  # unsigned


_TAMPERED = {
    "run_id": "00000000-0000-4000-8000-000000000000",
    "operation": "forecast",
    "time": "2026-11-25T15:37:01.123456+00:00",
    "operator": "mallory",
    "input_digests": {"params": digest({"CL": 5.1}), "times": digest([0.0, 1.0])},
    "model_digest": digest("other model"),
    "output_digest": digest({"C": [1.1]}),
    "output_digests": {"C": digest([1.0])},
    "code_version": {"package": "medtwin", "version": "0.1.0", "commit": "ab" * 20, "dirty": True},
    "dependencies": {"numpy": "2.4.7", "scipy": "1.17.1"},
    "solver": {"method": "exact", "rtol": 1e-07, "atol": 1e-10, "dt": None, "max_steps": 1000000},
    "platform": {"system": "Darwin", "python": "3.11.7", "cpu_count": 2},
    "seeds": {"seed": 20261126},
    "schema": "medtwin.provenance/2",
    "signer": "0123456789abcdef",
}


def test_every_field_is_covered_by_the_tamper_test():
    names = {f.name for f in dataclasses.fields(ProvenanceRecord)}
    assert names - set(_TAMPERED) == {"signature"}


@pytest.mark.parametrize("name", sorted(_TAMPERED))
def test_tampering_with_any_field_breaks_verify(record, key, name):
    signed = sign(record, key)
    tampered = dataclasses.replace(signed, **{name: _TAMPERED[name]})
    assert not verify(tampered, key.public_key())


def test_tampered_signature_and_float_formatting(record, key):
    signed = sign(record, key)
    sig = bytearray(bytes.fromhex(signed.signature))
    sig[0] ^= 1
    assert not verify(dataclasses.replace(signed, signature=sig.hex()), key.public_key())
    assert not verify(dataclasses.replace(signed, signature="zz"), key.public_key())
    # the same float written differently is the same record
    same = dataclasses.replace(signed, solver={**signed.solver, "rtol": float("1.0000000000000000e-08")})
    assert verify(same, key.public_key())


def test_signature_by_another_key_fails(record, key):
    other = Ed25519PrivateKey.generate()
    signed = sign(record, other)
    assert verify(signed, other.public_key())
    assert not verify(signed, key.public_key())
    # even when the signer id is forged to name the expected key
    forged = dataclasses.replace(signed, signer=key_id(key.public_key()))
    assert not verify(forged, key.public_key())


# ------------------------------------------------------------------ key store
def test_key_created_with_private_permissions(tmp_path):
    directory = tmp_path / "keys"
    key = load_or_create_key(directory)
    path = directory / KEY_FILENAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    again = load_or_create_key(directory)
    assert key_id(again.public_key()) == key_id(key.public_key())


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_key_mode_ignores_umask(tmp_path):
    old = os.umask(0)
    try:
        load_or_create_key(tmp_path / "k")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "k" / KEY_FILENAME).stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "k").stat().st_mode) == 0o700


def test_concurrent_creation_gives_one_key(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        keys = list(pool.map(lambda _: load_or_create_key(tmp_path), range(16)))
    assert len({key_id(k.public_key()) for k in keys}) == 1
    assert [p.name for p in tmp_path.iterdir()] == [KEY_FILENAME]  # no temporary files left


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_key_readable_by_others_is_refused(tmp_path, mode):
    load_or_create_key(tmp_path)
    os.chmod(tmp_path / KEY_FILENAME, mode)
    with pytest.raises(KeyFileError, match="chmod 600"):
        load_or_create_key(tmp_path)


def test_garbage_key_file_is_refused(tmp_path):
    path = tmp_path / KEY_FILENAME
    path.write_bytes(b"not a key")
    os.chmod(path, 0o600)
    with pytest.raises(KeyFileError):
        load_or_create_key(tmp_path)


# ------------------------------------------------------------------ exports
def test_prov_json_round_trip(record, key):
    for rec in (record, sign(record, key)):
        text = to_prov_json(rec)
        doc = json.loads(text)
        assert doc["prefix"]["medtwin"] == "urn:medtwin:"
        assert {"activity", "entity", "agent", "used", "wasGeneratedBy", "wasAssociatedWith"} <= set(doc)
        back = from_prov_json(text)
        assert back == rec
    assert verify(from_prov_json(to_prov_json(sign(record, key))), key.public_key())


def test_prov_json_round_trip_minimal():
    rec = ProvenanceRecord(run_id=RUN_ID, operation="simulate", time=TIME, operator="svc")
    assert from_prov_json(to_prov_json(rec)) == rec


texts = st.text(min_size=1, max_size=12).filter(str.strip)
json_leaves = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=6))


@settings(max_examples=60, deadline=None)
@given(
    operator=texts,
    operation=texts,
    inputs=st.dictionaries(st.text(max_size=8), texts, max_size=3),
    outputs=st.dictionaries(st.text(max_size=8), texts, max_size=3),
    solver=st.dictionaries(st.text(max_size=6), json_leaves, max_size=4),
    seeds=st.dictionaries(st.text(max_size=6), st.integers(), max_size=2),
)
def test_prov_json_round_trip_property(operator, operation, inputs, outputs, solver, seeds):
    rec = ProvenanceRecord(run_id=RUN_ID, operation=operation, time=TIME, operator=operator,
                           input_digests=inputs, output_digests=outputs, solver=solver, seeds=seeds)
    back = from_prov_json(to_prov_json(rec))
    assert back == rec and hash(back) == hash(rec)
    Provenance.model_validate(to_fhir_provenance(rec))


def test_record_rejects_empty_names():
    with pytest.raises(DataError):
        ProvenanceRecord(run_id=RUN_ID, operation="simulate", time=TIME, operator=" ")


def test_prov_json_rejects_foreign_documents():
    with pytest.raises(DataError):
        from_prov_json('{"prefix": {}}')


def test_fhir_provenance_validates(record, key):
    signed = sign(record, key)
    resource = to_fhir_provenance(signed)
    prov = Provenance.model_validate(resource)
    assert prov.recorded is not None
    assert len(prov.target) == 3  # two outputs + the whole result
    assert {e.role for e in prov.entity} == {"source", "instantiates"}
    sources = {e.what.display: e.what.identifier.value for e in prov.entity if e.role == "source"}
    assert sources == record.input_digests
    assert prov.agent[0].who.display == "dr.alice"
    (sig,) = prov.signature
    assert sig.type[0].code == "1.2.840.10065.1.12.1.14"
    assert sig.who.identifier.value == signed.signer
    assert bytes(sig.data).hex() == signed.signature  # base64 in JSON, decoded by fhir.resources
    minimal = ProvenanceRecord(run_id=RUN_ID, operation="simulate", time=TIME, operator="svc")
    Provenance.model_validate(to_fhir_provenance(minimal))


# ------------------------------------------------------------------ simulation records
ENV = {"code_version": {"package": "medtwin", "version": "0.1.0"}, "dependencies": {}, "platform": {}}


def _run(cl):
    model = get_model("pk1_iv")
    regimen = Regimen.every(12, "h", 1000, "mg", n=3, duration=1)
    times = np.linspace(0.0, 48.0, 13)
    params = {"CL": cl, "V": 50.0}
    trajectory = simulate(model, params, regimen, times)
    return record_for_simulation(model, params, regimen, times, trajectory, "dr.alice", seed=1,
                                 time=TIME, run_id=RUN_ID, env=ENV)


def test_record_for_simulation_is_deterministic(key):
    a, b = _run(5.0), _run(5.0)
    assert a == b
    assert a.input_digests.keys() == {"params", "regimen", "times"}
    assert a.output_digests.keys() == set(get_model("pk1_iv").outputs[i].name
                                          for i in range(len(get_model("pk1_iv").outputs)))
    assert a.model_digest == "sha256:" + get_model("pk1_iv").digest()
    assert a.solver["method"] and "rtol" in a.solver
    assert a.seeds == {"seed": 1}
    c = _run(6.0)
    assert c.input_digests["params"] != a.input_digests["params"]
    assert c.output_digest != a.output_digest
    assert c.output_digests != a.output_digests
    assert c.input_digests["times"] == a.input_digests["times"]
    assert c.model_digest == a.model_digest
    signed = sign(a, key)
    assert verify(signed, key.public_key())
    assert from_prov_json(to_prov_json(signed)) == signed
    Provenance.model_validate(to_fhir_provenance(signed))


def test_record_for_simulation_defaults_read_the_environment():
    model = get_model("pk1_iv")
    regimen = Regimen.single(100.0)
    times = [0.0, 1.0]
    traj = simulate(model, None, regimen, times)
    rec = record_for_simulation(model, None, regimen, times, traj, "svc")
    assert rec.seeds == {} and rec.code_version["package"] == "medtwin"
    assert rec.dependencies.get("numpy") == np.__version__
    assert rec.time.endswith("+00:00") and len(rec.run_id) == 36
