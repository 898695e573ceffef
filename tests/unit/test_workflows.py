"""The workflow layer: run records what it executed, reproduce re-executes it bit for bit; the CLI stays thin."""

import ast
import io
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from medtwin import workflows
from medtwin.core.events import Regimen
from medtwin.core.simulate import simulate
from medtwin.errors import DataError
from medtwin.governance.provenance import output_digest
from medtwin.io.storage import make_engine
from medtwin.models import get_model

SYNTHETIC = "synthetic test patient"
SPEC = {"model": "pk1_iv", "parameters": {"CL": 2.0, "V": 20.0}, "estimated": ["CL"],
        "parameter_drift": {"CL": 0.001}, "initial_sd": {"CL": 0.4}, "observer": {"kind": "ukf"},
        "errors": {"C": {"model": "proportional", "proportional": 0.08}}}


@pytest.fixture
def stores(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'w.db'}")
    yield workflows.Stores.for_engine(engine, Ed25519PrivateKey.generate())
    engine.dispose()


def _stream() -> str:
    times = np.array([1.0, 4.0, 7.5, 9.0, 13.0])
    c = np.asarray(simulate(get_model("pk1_iv"), {"CL": 3.0, "V": 20.0},
                            Regimen.every(12.0, "h", 500.0, n=2, duration=0.5), times).outputs["C"]).reshape(-1)
    rows = ["time_h,kind,name,value,unit,duration_h,device,source_id",
            "0,infusion,CENTRAL,1000,mg/h,0.5,pump,d1", "12,infusion,CENTRAL,1000,mg/h,0.5,pump,d2"]
    rows += [f"{t},obs,C,{v},mg/L,,lab,s{k}" for k, (t, v) in enumerate(zip(times, c))]
    rows.append("10,obs,C,ERR,mg/L,,lab,bad")
    return "\n".join(rows) + "\n"


def test_a_replay_is_recorded_and_reproduces_bit_for_bit(stores):
    request = workflows.ReplayRequest(SPEC, _stream(), open_data=SYNTHETIC)
    result, record = workflows.run(request, stores, actor="alice")
    assert record.operation == "replay" and result.n_measurements == 5 and len(result.rows) == 5
    assert len(result.twin.history) == 5 and len(result.rejected) == 1
    report = workflows.reproduce_run(stores, record.run_id, actor="alice")
    assert report.identical and report.recorded_digest == record.output_digest
    entries = [e for e in stores.log.entries() if e.action == "run.record"]
    assert [e.payload["run_id"] for e in entries] == [record.run_id]


def test_replay_trace_matches_assimilating_one_measurement_at_a_time(stores):
    """The library loop equals a hand-written loop over Twin.assimilate (an independent reference)."""
    from medtwin.assimilate.replay import replay_stream
    from medtwin.twin.codec import twin_from_spec
    from medtwin.io.access import OpenData
    from medtwin.io.stream_file import read_stream

    data = read_stream(io.StringIO(_stream()), model=get_model("pk1_iv"), access=OpenData(SYNTHETIC))
    start = twin_from_spec(SPEC, inputs=data.regimen)
    trace = replay_stream(start, list(data.measurements))
    twin = start
    for m in data.measurements:
        twin = twin.assimilate([m])
    assert trace.twin.time == twin.time and len(trace.twin.history) == len(twin.history)
    assert output_digest(trace.twin) == output_digest(twin)  # state, covariance, history: bit for bit
    assert [r["CL_median"] for r in trace.rows][-1] == twin.state().parameters["CL"]["median"]


def test_a_stream_error_names_its_source_and_nothing_is_recorded(stores):
    request = workflows.ReplayRequest(SPEC, "time_h,kind\n", open_data=SYNTHETIC, source="--stream s.csv")
    with pytest.raises(DataError, match="^--stream s.csv: "):
        workflows.run(request, stores, actor="alice")
    assert stores.runs.list() == []


def test_requests_need_exactly_one_consent_basis():
    with pytest.raises(DataError, match="exactly one of purpose"):
        workflows.SimulateRequest("pk1_iv", {"CL": [2.0], "V": [20.0]}, Regimen.single(1.0), [1.0])
    with pytest.raises(DataError, match="exactly one of purpose"):
        workflows.SimulateRequest("pk1_iv", {"CL": [2.0], "V": [20.0]}, Regimen.single(1.0), [1.0],
                                  purpose="treatment", open_data="x")


def _imports(path: Path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            yield node.module, [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, []


def test_the_cli_package_has_no_private_cross_imports_and_no_cycles():
    import medtwin.cli

    root = Path(medtwin.cli.__file__).parent
    graph = {}
    for path in root.glob("*.py"):
        name = f"medtwin.cli.{path.stem}" if path.stem != "__init__" else "medtwin.cli"
        graph[name] = set()
        for module, names in _imports(path):
            targets = [module] + [f"{module}.{n}" for n in names]
            for target in targets:
                if target.startswith("medtwin.cli.") and target.count(".") == 2:
                    graph[name].add(target)
            if module.startswith("medtwin.cli"):
                assert not [n for n in names if n.startswith("_")], (path.name, module, names)
    graph = {k: {t for t in v if t in graph} for k, v in graph.items()}

    def reaches(start, goal, seen=()):
        return any(t == goal or (t not in seen and reaches(t, goal, seen + (t,))) for t in graph.get(start, ()))

    cycles = [m for m in graph if m != "medtwin.cli" and reaches(m, m)]
    assert cycles == []


def test_a_forecast_window_ends_at_the_horizon_not_at_the_last_grid_point():
    """Last level at 11.73 h + 48 h: the 0.1-h grid ends at 59.7 h, the AUC24 window at 59.73 h (as before)."""
    from medtwin.infer.personalize import PatientData
    from medtwin.io.access import OpenData
    from medtwin.io.population_file import load_population, shipped_population_path
    from medtwin.workflows.requests import request_from_spec

    population = load_population(shipped_population_path("vancomycin_goti2018"))
    data = PatientData(Regimen.every(12.0, "h", 1000.0, "mg", n=2, duration=1.0), [11.73], [9.0],
                       {"CRCL": 55.0, "WT": 70.0, "DIAL": 0.0}, patient="v1")
    request = workflows.ForecastRequest.continued(population, data, 48.0, open_data=SYNTHETIC)
    assert request.times[-1] == 59.7 and request.end == pytest.approx(59.73, abs=1e-12)
    again = request_from_spec(request.spec(), access=OpenData(SYNTHETIC))
    assert again.end == request.end and again.auc_target == (400.0, 600.0)
