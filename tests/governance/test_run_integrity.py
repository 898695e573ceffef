"""Stored runs edited behind medtwin's back (SQL on the ``runs`` table): listed, printed and re-executed safely.

Library tests run on SQLite and PostgreSQL (fixture ``engine``); the CLI tests use the per-test SQLite home.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

import medtwin.workflows.engine as runs
from medtwin.cli import app
from medtwin.core.events import Regimen
from medtwin.errors import DataError
from medtwin.governance.audit import AuditLog
from medtwin.governance.runs import RunIntegrityError, RunStore, spec_for_simulate
from medtwin.workflows.engine import reproduce, run_and_record
from medtwin.io.access import OpenData
from medtwin.io.storage import runs_table

SYNTHETIC = OpenData("synthetic records written in the tests")
runner = CliRunner()


class _Allow:
    """Stands for a consent gate that allowed the original, consented run."""

    def authorize(self, patients, data_classes, operation):
        return None


@pytest.fixture
def key():
    return Ed25519PrivateKey.generate()


@pytest.fixture
def store(engine, key):
    return RunStore(engine, AuditLog(engine, key), key)


def _run(store, operator="alice", purpose=None):
    spec = spec_for_simulate("pk1_iv", {"CL": [2.0], "V": [20.0]}, Regimen.single(100.0), np.array([1.0, 2.0]),
                             purpose=purpose, open_data=None if purpose else SYNTHETIC.reason)
    return run_and_record(store, spec, operator, access=_Allow() if purpose else SYNTHETIC)[1]


def _set(engine, run_id, **values):
    with engine.begin() as conn:
        conn.execute(runs_table.update().where(runs_table.c.run_id == run_id).values(**values))


def _edit(engine, run_id, column, edit):
    with engine.begin() as conn:
        data = json.loads(conn.execute(sa.select(runs_table.c[column]).where(runs_table.c.run_id == run_id)).scalar())
    edit(data)
    _set(engine, run_id, **{column: json.dumps(data)})


def _no_execution(monkeypatch):
    calls = []
    monkeypatch.setattr(runs, "execute", lambda *a, **k: calls.append(a) or pytest.fail("executed"))
    return calls


def test_listing_shows_signed_facts_and_flags_tampered_rows(store, key, engine):
    good, column, signed, malformed = (_run(store) for _ in range(4))
    _set(engine, column.run_id, operator="mallory", operation="fit")
    _edit(engine, signed.run_id, "provenance", lambda d: d.update(operator="mallory"))
    _set(engine, malformed.run_id, spec="{not json")
    rows = {row.run_id: row for row in store.list_checked([key.public_key()])}
    assert rows[good.run_id].ok and rows[good.run_id].operator == "alice"
    assert rows[column.run_id].operator == "alice" and rows[column.run_id].operation == "simulate"  # signed facts
    assert rows[column.run_id].verdict.startswith("TAMPERED") and "operation, operator" in rows[column.run_id].verdict
    assert not rows[signed.run_id].ok and "signature does not verify" in rows[signed.run_id].verdict
    assert rows[malformed.run_id].verdict.startswith("MALFORMED") and "not valid JSON" in rows[malformed.run_id].verdict
    assert all(r.ok for r in store.list_checked([key.public_key()]) if r.run_id == good.run_id)
    assert not any(r.ok for r in store.list_checked([Ed25519PrivateKey.generate().public_key()]))


def test_relabelled_open_data_is_refused_before_the_consent_gate(store, key, engine, monkeypatch):
    record = _run(store, purpose="treatment")

    def relabel(spec):
        spec.update(purpose=None, open_data="not patient data, honest")

    _edit(engine, record.run_id, "spec", relabel)
    calls = _no_execution(monkeypatch)
    with pytest.raises(RunIntegrityError, match="spec digest mismatch"):
        reproduce(store, record.run_id, access=SYNTHETIC, public_keys=[key.public_key()])
    assert calls == []


def test_a_valid_record_of_another_run_is_refused(store, key, engine, monkeypatch):
    victim, donor = _run(store), _run(store, operator="bob")
    with engine.connect() as conn:
        spec, prov = conn.execute(sa.select(runs_table.c.spec, runs_table.c.provenance)
                                  .where(runs_table.c.run_id == donor.run_id)).one()
    _set(engine, victim.run_id, spec=spec, provenance=prov, operator="bob")
    _no_execution(monkeypatch)
    with pytest.raises(RunIntegrityError, match=f"belongs to run {donor.run_id}"):
        reproduce(store, victim.run_id, access=SYNTHETIC, public_keys=[key.public_key()])


@pytest.mark.parametrize(("column", "edit", "message"), [
    ("spec", lambda d: "[1, 2", "stored spec is not valid JSON"),
    ("spec", lambda d: [d], "stored spec must be a JSON object, not list"),
    ("spec", lambda d: {k: v for k, v in d.items() if k != "model"}, "stored spec lacks field(s) model"),
    ("spec", lambda d: {**d, "inputs": [1]}, "stored spec has field inputs of type list"),
    ("spec", lambda d: {**d, "operation": "train"}, "stored spec is malformed: run operation must be one of"),
    ("spec", lambda d: {**d, "extra": 1}, "stored spec has unknown field(s) extra"),
    ("provenance", lambda d: {k: v for k, v in d.items() if k != "operator"}, "stored provenance lacks field(s) "
                                                                             "operator"),
    ("provenance", lambda d: {**d, "time": 5}, "stored provenance is malformed: time 5"),
    ("provenance", lambda d: {**d, "seeds": [1]}, "stored provenance is malformed: ProvenanceRecord.seeds"),
])
def test_malformed_rows_are_one_line_errors(store, key, engine, monkeypatch, column, edit, message):
    record = _run(store)
    with engine.connect() as conn:
        data = json.loads(conn.execute(sa.select(runs_table.c[column])
                                       .where(runs_table.c.run_id == record.run_id)).scalar())
    new = edit(data)
    _set(engine, record.run_id, **{column: new if isinstance(new, str) else json.dumps(new)})
    _no_execution(monkeypatch)
    for call in (lambda: store.get(record.run_id),
                 lambda: reproduce(store, record.run_id, access=SYNTHETIC, public_keys=[key.public_key()])):
        with pytest.raises(DataError) as info:
            call()
        text = str(info.value)
        assert text.startswith(f"run {record.run_id}: ") and message in text and "\n" not in text
    [row] = [r for r in store.list_checked([key.public_key()]) if r.run_id == record.run_id]
    assert row.verdict.startswith("MALFORMED") and message in row.verdict


# ------------------------------------------------------------------------------------------ CLI
def _cli_store():
    from medtwin.cli.edge import open_stores as _open_stores

    return _open_stores()


def test_cli_runs_provenance_reproduce_on_tampered_rows(monkeypatch):
    stores = _cli_store()
    good, forged, relabelled, malformed = (_run(stores.runs, purpose="treatment") for _ in range(4))
    _edit(stores.engine, forged.run_id, "provenance", lambda d: d.update(operator="mallory"))
    _set(stores.engine, forged.run_id, operator="mallory")
    _edit(stores.engine, relabelled.run_id, "spec", lambda d: d.update(purpose=None, open_data="synthetic, honest"))
    _set(stores.engine, malformed.run_id, provenance='{"run_id": 1')
    stores.engine.dispose()
    monkeypatch.setenv("COLUMNS", "400")  # rich's width: whole rows and messages on one line

    listed = runner.invoke(app, ["runs"])
    assert listed.exit_code == 0, listed.output
    rows = {line.split()[1]: line for line in listed.output.splitlines() if line.startswith("│")}
    assert rows[good.run_id].split("│")[-2].strip() == "ok"
    assert rows[forged.run_id].split("│")[-2].strip() == "TAMPERED" and "mallory" in rows[forged.run_id]
    assert rows[relabelled.run_id].split("│")[-2].strip() == "TAMPERED"
    assert rows[malformed.run_id].split("│")[-2].strip() == "MALFORMED"
    why = {line.split()[2].rstrip(":"): line for line in listed.output.splitlines() if line.startswith(("TAMP", "MAL"))}
    assert "signature does not verify" in why[forged.run_id] and "spec digest mismatch" in why[relabelled.run_id]
    assert "stored provenance is not valid JSON" in why[malformed.run_id] and good.run_id not in why
    assert "3 of the 4 runs shown fail their integrity check" in listed.output

    printed = runner.invoke(app, ["provenance", forged.run_id])
    assert printed.exit_code == 1 and "mallory" not in printed.output
    assert printed.output.count("\n") == 1 and "signature does not verify" in printed.output
    forced = runner.invoke(app, ["provenance", forged.run_id, "--unverified", "--format", "json"])
    assert forced.exit_code == 1 and "mallory" in forced.output and "UNVERIFIED" in forced.output
    assert runner.invoke(app, ["provenance", good.run_id]).exit_code == 0
    broken = runner.invoke(app, ["provenance", malformed.run_id])
    assert broken.exit_code == 2 and "stored provenance is not valid JSON" in broken.output
    assert "Traceback" not in broken.output

    calls = _no_execution(monkeypatch)
    refused = runner.invoke(app, ["reproduce", relabelled.run_id])
    assert refused.exit_code == 1 and "spec digest mismatch" in refused.output and "refused" in refused.output
    assert refused.output.count("\n") == 1
    assert runner.invoke(app, ["reproduce", forged.run_id]).exit_code == 1
    malformed_run = runner.invoke(app, ["reproduce", malformed.run_id])
    assert malformed_run.exit_code == 2 and f"run {malformed.run_id}: the stored provenance" in malformed_run.output
    assert calls == []
