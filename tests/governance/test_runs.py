"""Recorded runs and `medtwin reproduce`: bit-identical re-execution, tampering, environment differences.

Runs on SQLite and PostgreSQL (fixture ``engine`` in conftest).
"""

from __future__ import annotations

import dataclasses
import io
import json

import numpy as np
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from medtwin.cli import app
from medtwin.core.events import Regimen
from medtwin.errors import DataError
from medtwin.governance.audit import AuditLog
from medtwin.governance.interchange import from_prov_json
from medtwin.governance.provenance import environment, verify
from medtwin.governance.runs import (
    RunIntegrityError, RunSpec, RunStore, environment_differences, spec_for_dataset, spec_for_simulate,
)
from medtwin.workflows.engine import execute, reproduce, run_and_record
from medtwin.io.access import OpenData
from medtwin.io.nonmem import read_nonmem
from medtwin.io.storage import runs_table

SYNTHETIC = OpenData("synthetic records written in the tests")
DATA = ("ID,TIME,AMT,DV,RATE,WT\n1,0,1000,.,500,70\n1,3,0,30,0,70\n1,12,0,10,0,70\n"
        "2,0,500,.,0,80\n2,1,0,20,0,80\n2,6,0,5,0,80\n")


@pytest.fixture
def key():
    return Ed25519PrivateKey.generate()


@pytest.fixture
def store(engine, key):
    return RunStore(engine, AuditLog(engine, key), key)


def _check(store, key, record):
    report = reproduce(store, record.run_id, access=SYNTHETIC, public_keys=[key.public_key()])
    assert report.identical and report.signature_ok and report.inputs_ok and not report.model_changed, \
        report.summary()
    assert report.environment_differences == ()
    return report


def test_simulate_run_reproduces_bit_for_bit(store, key):
    spec = spec_for_simulate("pk2_oral", {"CL": [3.0, 5.5], "V1": [30.0, 41.0], "KA": [1.1, 0.7]},
                             Regimen.every(12.0, "h", 250.0, "mg", n=4), np.linspace(0.0, 48.0, 97),
                             open_data=SYNTHETIC.reason, seeds={"seed": 11})
    trajectory, record = run_and_record(store, spec, "alice", access=SYNTHETIC)
    assert verify(record, key.public_key()) and record.seeds == {"seed": 11}
    assert set(record.input_digests) == {"spec", "params", "regimens", "times", "ids"}
    _check(store, key, record)


def test_nonlinear_per_patient_regimens_and_times(store, key):
    regimens = [Regimen.single(100.0), Regimen.every(8.0, "h", 50.0, "mg", n=3)]
    times = [np.array([0.5, 1.0, 4.0]), np.array([0.25, 2.0, 9.0, 20.0])]
    spec = spec_for_simulate("pk1_iv_mm", {"VMAX": [10.0, 20.0]}, regimens, times, ids=[7, 9],
                             settings={"method": "dopri5", "rtol": 1e-9, "atol": 1e-12},
                             open_data=SYNTHETIC.reason)
    trajectory, record = run_and_record(store, spec, "alice", access=SYNTHETIC)
    assert trajectory.solver.method == "dopri5" and list(trajectory.ids) == [7, 9]
    _check(store, key, record)


def test_dataset_run_reproduces_and_stores_the_records(store, key):
    ds = read_nonmem(io.StringIO(DATA), access=SYNTHETIC)
    spec = spec_for_dataset("pk1_iv", ds, {"ID": [1, 2], "CL": [4.0, 2.0], "V": [40.0, 20.0]},
                            settings={"method": "exact"}, open_data=SYNTHETIC.reason)
    assert spec.patients == ["1", "2"] and spec.inputs["dataset"]["WT"] == [70.0] * 3 + [80.0] * 3
    _, record = run_and_record(store, spec, "alice", access=SYNTHETIC)
    assert store.get(record.run_id).spec == spec
    _check(store, key, record)


def _tamper(engine, run_id, column, edit):
    with engine.begin() as conn:
        text = conn.execute(sa.select(runs_table.c[column]).where(runs_table.c.run_id == run_id)).scalar()
        data = json.loads(text)
        edit(data)
        conn.execute(runs_table.update().where(runs_table.c.run_id == run_id).values({column: json.dumps(data)}))


def _simple_run(store):
    spec = spec_for_simulate("pk1_iv", {"CL": [2.0], "V": [20.0]}, Regimen.single(100.0),
                             np.array([1.0, 2.0, 5.0]), open_data=SYNTHETIC.reason)
    return run_and_record(store, spec, "alice", access=SYNTHETIC)[1]


def _no_execution(monkeypatch):
    import medtwin.workflows.engine as runs

    calls = []
    monkeypatch.setattr(runs, "execute", lambda *a, **k: calls.append(a) or pytest.fail("executed"))
    return calls


def test_changed_stored_inputs_are_refused_before_executing(store, key, engine, monkeypatch):
    record = _simple_run(store)
    _tamper(engine, record.run_id, "spec", lambda d: d["inputs"]["params"].update(CL=[2.5]))
    calls = _no_execution(monkeypatch)
    with pytest.raises(RunIntegrityError, match=f"run {record.run_id} .*spec digest mismatch"):
        reproduce(store, record.run_id, access=SYNTHETIC, public_keys=[key.public_key()])
    assert calls == []


def test_a_different_result_is_reported_not_identical(store, key, monkeypatch):
    import medtwin.workflows.engine as runs

    record = _simple_run(store)
    real = runs.execute
    monkeypatch.setattr(runs, "execute", lambda spec, access: real(dataclasses.replace(
        spec, inputs={**spec.inputs, "params": {"CL": [2.5], "V": [20.0]}}), access=access))
    report = reproduce(store, record.run_id, access=SYNTHETIC, public_keys=[key.public_key()])
    assert not report.identical and report.signature_ok and report.inputs_ok
    assert report.differing_outputs == ("C",)
    assert "NOT identical" in report.summary()


def test_changed_record_fails_its_signature(store, key, engine, monkeypatch):
    record = _simple_run(store)
    other = _simple_run(store)
    _tamper(engine, record.run_id, "provenance", lambda d: d.update(operator="mallory"))
    calls = _no_execution(monkeypatch)
    with pytest.raises(RunIntegrityError, match="signature does not verify"):
        reproduce(store, record.run_id, access=SYNTHETIC, public_keys=[key.public_key()])
    with pytest.raises(RunIntegrityError, match="signature does not verify"):  # signed, by a key we do not trust
        reproduce(store, other.run_id, access=SYNTHETIC, public_keys=[Ed25519PrivateKey.generate().public_key()])
    assert calls == []


def test_environment_differences_are_named(store, key):
    record = _simple_run(store)
    env = environment()
    changed = {**env, "dependencies": {**env["dependencies"], "numpy": "0.0.1"},
               "platform": {**env["platform"], "python": "2.7.18"}}
    report = reproduce(store, record.run_id, access=SYNTHETIC, public_keys=[key.public_key()], env=changed)
    names = [name for name, _, _ in report.environment_differences]
    assert names == ["dependencies.numpy", "platform.python"]
    assert dict((n, (old, new)) for n, old, new in report.environment_differences)["dependencies.numpy"] == \
        (env["dependencies"]["numpy"], "0.0.1")
    assert "dependencies.numpy" in report.summary()
    assert environment_differences(record, env) == []


def test_unknown_run_and_bad_specs_are_clear_errors(store):
    with pytest.raises(DataError, match="no run 'nope'"):
        store.get("nope")
    with pytest.raises(DataError, match="exactly one of purpose"):
        spec_for_simulate("pk1_iv", {"CL": [2.0]}, Regimen.single(1.0), [1.0])
    with pytest.raises(DataError, match="not recordable"):
        RunSpec("simulate", "pk1_iv", {}, {"progress": True}, open_data="x")
    with pytest.raises(DataError, match="operation"):
        RunSpec("train", "pk1_iv", {}, open_data="x")
    spec = spec_for_simulate("pk1_iv", {"CL": [2.0]}, Regimen.single(1.0), [1.0], open_data="x")
    assert RunSpec.from_dict(json.loads(spec.to_json())) == spec
    assert dataclasses.replace(spec, model="pk1_iv").model == "pk1_iv"
    assert execute(spec, access=SYNTHETIC).outputs["C"].shape == (1, 1)


# ------------------------------------------------------------------------------------------ CLI
runner = CliRunner()


def test_cli_simulate_provenance_and_reproduce(tmp_path):
    data = tmp_path / "data.csv"
    data.write_text(DATA)
    out = tmp_path / "out.csv"
    result = runner.invoke(app, ["simulate", "pk1_iv", "--data", str(data), "--param", "CL=2", "--param", "V=20",
                                 "--out", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    listed = runner.invoke(app, ["runs"])
    run_id = result.output.split("run ")[1].split()[0]
    assert run_id in listed.output.replace("\n", "")
    prov = runner.invoke(app, ["provenance", run_id])
    assert prov.exit_code == 0, prov.output
    record = from_prov_json(prov.output)
    assert record.run_id == run_id and record.operation == "simulate_dataset"
    fhir = json.loads(runner.invoke(app, ["provenance", run_id, "--format", "fhir"]).output)
    assert fhir["resourceType"] == "Provenance"
    again = runner.invoke(app, ["reproduce", run_id])
    assert again.exit_code == 0, again.output
    assert "bit-identical" in again.output
    bad = runner.invoke(app, ["provenance", run_id, "--format", "xml"])
    assert bad.exit_code == 2 and "--format" in bad.output


def test_cli_reproduce_refuses_a_broken_run(tmp_path):
    from medtwin.cli.edge import open_stores as _open_stores

    result = runner.invoke(app, ["demo", "--out", str(tmp_path), "--patients", "2"])
    assert result.exit_code == 0, result.output
    run_id = result.output.split("recorded with signed provenance")[0].split("run ")[-1].split()[0]
    stores = _open_stores()
    _tamper(stores.engine, run_id, "spec", lambda d: d["inputs"]["params"].update(
        CL=[v * 1.01 for v in d["inputs"]["params"]["CL"]]))
    broken = runner.invoke(app, ["reproduce", run_id])
    assert broken.exit_code == 1
    assert "refused" in broken.output and "spec digest mismatch" in broken.output
    assert "identical" not in broken.output  # nothing was executed
    stores.engine.dispose()


def test_cli_simulate_is_denied_without_consent(tmp_path):
    data = tmp_path / "data.csv"
    data.write_text(DATA)
    result = runner.invoke(app, ["simulate", "pk1_iv", "--data", str(data), "--out", str(tmp_path / "o.csv"),
                                 "--purpose", "research", "--no-progress"])
    assert result.exit_code == 2
    assert "denied" in result.output and not (tmp_path / "o.csv").exists()
    shown = runner.invoke(app, ["audit", "show", "--patient", "1"])
    assert "consent.decision" in shown.output


# ------------------------------------------------------------------------ personalize and forecast runs
def _vancomycin_patient():
    from medtwin.core.data import PatientData
    from medtwin.io.population_file import load_population, shipped_population_path

    population = load_population(shipped_population_path("vancomycin_goti2018"))
    regimen = Regimen.every(12.0, "h", 1000.0, "mg", n=4, duration=1.0)
    data = PatientData(regimen, [11.5, 35.5, 37.0], [8.0, 11.0, 27.0], {"CRCL": 55.0, "WT": 70.0, "DIAL": 0.0},
                       blq=[False, False, False], pre_dose=[True, True, False], patient="v1")
    return population, data


def test_personalize_and_forecast_runs_reproduce(store, key):
    from medtwin.governance.runs import spec_for_personalize

    population, data = _vancomycin_patient()
    options = dict(method="laplace", seed=5, open_data=SYNTHETIC.reason)
    spec = spec_for_personalize(population, data, **options)
    posterior, record = run_and_record(store, spec, "alice", access=SYNTHETIC)
    assert record.operation == "personalize" and set(record.output_digests) == {"mean", "covariance"}
    assert record.solver["method"] == "laplace"
    _check(store, key, record)
    forecast = spec_for_personalize(population, data, regimen=data.regimen.continued(96.0),
                                    times=np.arange(0.0, 96.01, 0.5), n_draws=200, **options)
    band, record = run_and_record(store, forecast, "alice", access=SYNTHETIC)
    assert band.draws["C"].shape == (200, 193) and "draws.C" in record.output_digests
    _check(store, key, record)


@pytest.mark.slow
def test_nuts_personalize_run_reproduces_bit_for_bit(tmp_path, key, fresh_jax_compilation):
    """NUTS with a seed is deterministic: the re-run (a fresh compilation) gives the same draws, bit for bit."""
    from medtwin.governance.runs import spec_for_personalize
    from medtwin.io.storage import make_engine, upgrade

    engine = make_engine(f"sqlite:///{tmp_path / 'nuts.db'}")
    upgrade(engine)
    runs = RunStore(engine, AuditLog(engine, key), key)
    population, data = _vancomycin_patient()
    spec = spec_for_personalize(population, data, method="nuts", seed=5, chains=2, draws=150, warmup=150,
                                open_data=SYNTHETIC.reason)
    posterior, record = run_and_record(runs, spec, "alice", access=SYNTHETIC)
    assert posterior.draws.shape == (2, 150, 3) and "draws" in record.output_digests
    _check(runs, key, record)
    engine.dispose()
