"""``medtwin forecast`` / ``recommend`` with ``--population vancomycin`` (every shipped vancomycin prior,
averaged per patient) or repeated ``--population FILE``; the recorded runs reproduce bit for bit."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from medtwin.cli import app
from medtwin.io.population_file import drug_population_paths, load_population, save_population

runner = CliRunner()
SYNTH = ["--open-data", "synthetic test patients"]


def _patient_csv(path):
    rows = [dict(ID=1, TIME=12.0 * k, AMT=1000.0, RATE=1000.0, DV=".", EVID=1, CRCL=60, WT=75, DIAL=0)
            for k in range(4)]
    rows += [dict(ID=1, TIME=35.5, AMT=0, RATE=0, DV=12.0, EVID=0, CRCL=60, WT=75, DIAL=0),
             dict(ID=1, TIME=38.0, AMT=0, RATE=0, DV=31.0, EVID=0, CRCL=60, WT=75, DIAL=0)]
    pd.DataFrame(rows).sort_values("TIME", kind="stable").to_csv(path, index=False)
    return str(path)


def _run_id(output: str) -> str:
    line = next(l for l in output.splitlines() if "recorded with signed provenance" in l)
    return line.split("run ")[1].split()[0]


def test_forecast_and_recommend_average_the_drugs_priors_and_reproduce(tmp_path):
    data = _patient_csv(tmp_path / "patient.csv")
    out = tmp_path / "f"
    result = runner.invoke(app, ["forecast", "--population", "vancomycin", "--data", data, "--hours", "24",
                                 "--out", str(out), *SYNTH])
    assert result.exit_code == 0, result.output
    weights = pd.read_csv(out / "model_weights.csv")
    assert list(weights.population) == ["vancomycin_buelga2005", "vancomycin_goti2018", "vancomycin_thomson2009"]
    assert weights.weight.sum() == pytest.approx(1.0) and "model averaging (laplace weights)" in result.output
    assert "P(AUC24 in 400–600)" in result.output
    run_id = _run_id(result.output)
    again = runner.invoke(app, ["reproduce", run_id])
    assert again.exit_code == 0, again.output
    assert "identical" in again.output.lower()

    out = tmp_path / "r"
    paths = [str(p) for p in drug_population_paths("vancomycin")]
    result = runner.invoke(app, ["recommend", "--population", paths[0], "--population", paths[2], "--data", data,
                                 "--draws", "200", "--select-model", "--model-weighting", "map", "--out",
                                 str(out), *SYNTH])
    assert result.exit_code in (0, 3), result.output
    weights = pd.read_csv(out / "model_weights.csv")
    assert sorted(weights.weight.tolist()) == [0.0, 1.0] and "model selection (map weights)" in result.output
    rec = json.loads((out / "recommendation.json").read_text())
    assert rec["action"]["dose_mg"] > 0
    run_id = result.output.split("recommendation run ")[1].split()[0]
    again = runner.invoke(app, ["reproduce", run_id])
    assert again.exit_code == 0, again.output


def test_bad_population_choices_name_the_option_file_and_field(tmp_path):
    data = _patient_csv(tmp_path / "patient.csv")
    out = ["--out", str(tmp_path / "o"), *SYNTH]
    result = runner.invoke(app, ["forecast", "--population", "vancomycine", "--data", data, *out])
    assert result.exit_code == 2 and "--population" in result.output and "vancomycin (3 files)" in result.output
    goti = load_population(drug_population_paths("vancomycin")[1])
    other = tmp_path / "genta.yaml"
    save_population(type(goti).from_dict({**goti.to_dict(), "name": "g2", "drug": "gentamicin"}), other)
    result = runner.invoke(app, ["recommend", "--population", str(drug_population_paths("vancomycin")[0]),
                                 "--population", str(other), "--data", data, *out])
    assert result.exit_code == 2 and f"--population {other}: drug: 'gentamicin'" in result.output, result.output
    cp = tmp_path / "cp.yaml"
    d = goti.to_dict()
    save_population(type(goti).from_dict({**d, "name": "g3", "residual": {**d["residual"], "output": "CP"}}), cp)
    result = runner.invoke(app, ["forecast", "--population", str(drug_population_paths("vancomycin")[0]),
                                 "--population", str(cp), "--data", data, *out])
    assert result.exit_code == 2 and f"--population {cp}: residual.output: 'CP'" in result.output, result.output
    result = runner.invoke(app, ["forecast", "--population", "vancomycin", "--data", data, "--method", "nuts", *out])
    assert result.exit_code == 2 and "Laplace" in result.output
