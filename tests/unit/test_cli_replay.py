"""`medtwin replay` as a user runs it: a recorded, messy stream through a twin specification."""

import json

import numpy as np
import pandas as pd
import yaml
from typer.testing import CliRunner

from medtwin.cli import app
from medtwin.core.events import Regimen
from medtwin.core.simulate import simulate
from medtwin.io.twin_file import load_twin
from medtwin.io.access import OpenData
from medtwin.models import get_model

runner = CliRunner()
SPEC = {"model": "pk1_iv", "parameters": {"CL": 2.0, "V": 20.0}, "estimated": ["CL"],
        "parameter_drift": {"CL": 0.001}, "initial_sd": {"CL": 0.4}, "observer": {"kind": "ukf"},
        "errors": {"C": {"model": "proportional", "proportional": 0.08}}}


def _write_stream(path):
    model = get_model("pk1_iv")
    times = np.array([1.0, 4.0, 7.5, 9.0, 13.0, 19.5, 22.0])
    c = np.asarray(simulate(model, {"CL": 3.0, "V": 20.0}, Regimen.every(12.0, "h", 500.0, n=2, duration=0.5),
                            times).outputs["C"]).reshape(-1)
    rows = ["time_h,kind,name,value,unit,duration_h,device,source_id",
            "0,infusion,CENTRAL,1000,mg/h,0.5,pump,d1", "12,infusion,CENTRAL,1000,mg/h,0.5,pump,d2"]
    order = [0, 1, 3, 2, 4, 6, 5]  # two arrive out of order
    for k in order:
        rows.append(f"{times[k]},obs,C,{c[k]},mg/L,,lab,s{k}")
    rows.append(f"{times[1]},obs,C,{c[1] * 1000},ng/mL,,lab,s1-again")  # the same value in other units
    rows.append(f"{times[1]},obs,C,{c[1]},mg/L,,lab,s1")  # an exact duplicate
    rows.append("20,obs,C,ERR,mg/L,,lab,s9")  # a corrupt value
    path.write_text("\n".join(rows) + "\n")


def test_replay_writes_tracked_state_alarms_and_a_plot(tmp_path):
    spec, stream, out = tmp_path / "twin.yaml", tmp_path / "stream.csv", tmp_path / "out"
    spec.write_text(yaml.safe_dump(SPEC))
    _write_stream(stream)
    result = runner.invoke(app, ["replay", str(spec), "--stream", str(stream), "--out", str(out),
                                 "--open-data", "synthetic test patient", "--no-progress"])
    assert result.exit_code == 0, result.output
    tracked = pd.read_csv(out / "tracked.csv")
    assert len(tracked) == 9 and tracked["accepted"].sum() == 8  # the duplicate is dropped, the rest assimilated
    assert {"CL_median", "CL_p05", "CL_p95", "estimate_mean", "predicted", "predicted_sd"} <= set(tracked.columns)
    final = tracked.iloc[-1]
    assert final["CL_p05"] < 3.0 < final["CL_p95"] and abs(final["CL_median"] - 3.0) < 0.4
    rejected = pd.read_csv(out / "rejected.csv")
    assert rejected["reason"].str.contains("ERR|finite|number", regex=True).any()
    alarms = json.loads((out / "alarms.json").read_text())
    assert set(alarms) == {"raised", "active", "clock_offsets"}
    assert (out / "replay.png").stat().st_size > 10_000
    twin = load_twin(out / "twin.json", access=OpenData("test"))
    assert len(twin.history) == 8 and twin.time == 22.0
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["operation"] == "replay" and provenance["signature"]


def test_replay_refuses_a_bad_spec_with_the_field_named(tmp_path):
    spec, stream = tmp_path / "twin.yaml", tmp_path / "stream.csv"
    spec.write_text(yaml.safe_dump({**SPEC, "estimated": ["CL"], "obsever": {"kind": "ukf"}}))
    _write_stream(stream)
    result = runner.invoke(app, ["replay", str(spec), "--stream", str(stream), "--out", str(tmp_path / "o"),
                                 "--open-data", "synthetic"])
    assert result.exit_code == 2 and "obsever" in result.output


def test_replay_check_clocks_writes_the_verdict_and_names_the_device(tmp_path):
    model = get_model("pk1_iv")
    regimen = Regimen.every(8.0, "h", 600.0, n=3, duration=0.5)
    poc, lab = np.arange(0.25, 24.0, 0.5), np.arange(2.1, 24.0, 1.5)
    rng = np.random.default_rng(3)
    rows = ["time_h,kind,name,value,unit,duration_h,device,source_id"]
    rows += [f"{8.0 * k},infusion,CENTRAL,1200,mg/h,0.5,pump,d{k}" for k in range(3)]
    for device, times, ahead in (("poc", poc, 0.5), ("lab", lab, 0.0)):   # the poc clock runs 30 min ahead
        c = np.asarray(simulate(model, {"CL": 3.2, "V": 24.0}, regimen, times).outputs["C"]).reshape(-1)
        rows += [f"{t + ahead},obs,C,{v * (1 + 0.08 * rng.standard_normal())},mg/L,,{device},{device}{k}"
                 for k, (t, v) in enumerate(zip(times, c))]
    spec, stream, out = tmp_path / "twin.yaml", tmp_path / "stream.csv", tmp_path / "out"
    spec.write_text(yaml.safe_dump({"model": "pk1_iv", "parameters": {"CL": 3.2, "V": 24.0},
                                    "observer": {"kind": "ukf"},
                                    "errors": {"C": {"model": "proportional", "proportional": 0.08}}}))
    stream.write_text("\n".join(rows) + "\n")
    result = runner.invoke(app, ["replay", str(spec), "--stream", str(stream), "--out", str(out), "--check-clocks",
                                 "--open-data", "synthetic test patient", "--no-progress"])
    assert result.exit_code == 0, result.output
    alarms = json.loads((out / "alarms.json").read_text())
    assert alarms["clock_verdict"]["verdict"] == "device" and alarms["clock_verdict"]["suspect"] == "poc"
    assert {c["device"] for c in alarms["clock_offsets"]} == {"lab", "poc"}
    assert "device 'poc''s clock is most likely wrong: offset +30 min" in " ".join(result.output.split())
