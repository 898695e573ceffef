"""Shipped trial specs (tiny, cheap settings), the ``medtwin trial`` command and ``medtwin reproduce`` of a trial."""

import json

import numpy as np
import yaml
from typer.testing import CliRunner

from medtwin.cli import app
from medtwin.trials.engine import PK_EXAMPLE, run_trial
from medtwin.trials.spec import TrialSpec, load_trial_spec, shipped_trial_path, shipped_trials


def _cheap(name: str, patients: int, **settings) -> TrialSpec:
    spec = load_trial_spec(shipped_trial_path(name))
    data = {**spec.data, "patients": patients, "chunk_size": 2, "settings": {**spec.settings, **settings}}
    data["arms"] = [{**a, "n_draws": 20} if "n_draws" in a else a for a in spec.data["arms"]]
    return TrialSpec.from_dict(data)


def test_shipped_specs_run_tiny():
    assert shipped_trials() == ["glucose_mpc_vs_protocol", "vancomycin_twin_vs_label"]
    vanco = run_trial(_cheap("vancomycin_twin_vs_label", 4, days=2))
    assert set(vanco.table["status"]) == {"ok"} and set(vanco.table["arm_name"]) == {"label", "twin"}
    assert np.all((vanco.table["attainment"] >= 0) & (vanco.table["attainment"] <= 1))
    assert np.all((vanco.table["CRCL"] >= 20) & (vanco.table["CRCL"] <= 150))
    glucose = run_trial(_cheap("glucose_mpc_vs_protocol", 2, hours=3))
    assert set(glucose.table["status"]) == {"ok"}
    assert np.all(np.isfinite(glucose.table["tir"])) and np.all(glucose.table["mean_glucose"] > 2)


def test_trial_command_writes_outputs_and_reproduces(tmp_path):
    spec_file = tmp_path / "pk.yaml"
    spec_file.write_text(yaml.safe_dump({**PK_EXAMPLE, "patients": 40, "analysis": {"bootstrap": 50}}))
    runner = CliRunner()
    out = tmp_path / "out"
    result = runner.invoke(app, ["trial", str(spec_file), "--patients", "24", "--seed", "5", "--out", str(out),
                                 "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "ATE high − low" in result.output and "by baseline strata" in result.output
    for name in ("patients.csv", "ate.csv", "strata.csv", "forest.png", "summary.json", "provenance.json"):
        assert (out / name).exists(), name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["patients"] == 24 and summary["seed"] == 5 and summary["statuses"] == {"ok": 24}
    assert "boot_low" in summary["ate"]["auc"]
    run_id = json.loads((out / "provenance.json").read_text())["run_id"]
    again = runner.invoke(app, ["reproduce", run_id])
    assert again.exit_code == 0 and "bit-identical" in again.output, again.output
    refused = runner.invoke(app, ["trial", str(spec_file), "--out", str(tmp_path / "o2"), "--scheduler", "nowhere:1",
                                  "--no-progress"])
    assert refused.exit_code == 2 and not (tmp_path / "o2").exists()
