"""The command line as a user runs it: models, simulate, demo."""

import json

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from medtwin.cli import app
from medtwin.models import list_models

runner = CliRunner()


def test_models_json_lists_every_model_with_units():
    result = runner.invoke(app, ["models", "--json"])
    assert result.exit_code == 0, result.output
    described = json.loads(result.stdout)
    assert sorted(m["name"] for m in described) == list_models()
    for model in described:
        assert model["compartments"] and model["outputs"]
        assert all(p["unit"] for p in model["parameters"])


def test_models_table_mentions_citation():
    result = runner.invoke(app, ["models", "vancomycin_goti2018"])
    assert result.exit_code == 0
    assert "Goti" in result.output and "CRCL" in result.output


def test_unknown_model_is_a_clear_error():
    result = runner.invoke(app, ["models", "nope"])
    assert result.exit_code == 2
    assert "unknown model" in result.output


def _write_dataset(path):
    path.write_text(
        "ID,TIME,AMT,DV,EVID,CMT,RATE\n"
        "1,0,1000,.,1,1,1000\n1,2,0,30,0,1,0\n1,12,0,10,0,1,0\n"
        "2,0,500,.,1,1,0\n2,1,0,20,0,1,0\n2,6,0,5,0,1,0\n"
    )


def test_simulate_writes_one_row_per_observation(tmp_path):
    data = tmp_path / "data.csv"
    _write_dataset(data)
    params = tmp_path / "params.csv"
    pd.DataFrame({"ID": [1, 2], "CL": [4.0, 2.0], "V": [40.0, 20.0]}).to_csv(params, index=False)
    out = tmp_path / "out.csv"
    result = runner.invoke(app, ["simulate", "pk1_iv", "--data", str(data), "--params", str(params), "--out",
                                 str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(out)
    assert list(frame.ID) == [1, 1, 2, 2]
    assert "C" in frame.columns and "TIME" in frame.columns
    k = 0.1
    # Subject 2: 500 mg bolus, V 20 L, CL 2 L/h (closed form).
    np.testing.assert_allclose(frame.C[2:], 25.0 * np.exp(-k * np.array([1.0, 6.0])), rtol=1e-9)
    # Subject 1: 1 h infusion of 1000 mg, V 40 L, CL 4 L/h.
    c_end = 1000.0 / 4.0 * (1 - np.exp(-k))
    np.testing.assert_allclose(frame.C[:2], c_end * np.exp(-k * np.array([1.0, 11.0])), rtol=1e-9)


def test_simulate_param_overrides_and_bad_input(tmp_path):
    data = tmp_path / "data.csv"
    _write_dataset(data)
    out = tmp_path / "out.csv"
    ok = runner.invoke(app, ["simulate", "pk1_iv", "--data", str(data), "--param", "CL=2", "--param", "V=20",
                             "--out", str(out), "--no-progress"])
    assert ok.exit_code == 0, ok.output
    bad = tmp_path / "bad.csv"
    bad.write_text("ID,TIME,AMT,DV\n1,0,100,.\n1,-2,0,3\n")
    result = runner.invoke(app, ["simulate", "pk1_iv", "--data", str(bad), "--out", str(out), "--no-progress"])
    assert result.exit_code == 2
    assert "row 2" in result.output and "TIME" in result.output


def test_demo_writes_csv_and_png(tmp_path):
    result = runner.invoke(app, ["demo", "--out", str(tmp_path), "--patients", "4"])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(tmp_path / "vancomycin_demo.csv")
    assert len(table) == 4 and (table.AUC24_mg_h_L > 0).all()
    png = (tmp_path / "vancomycin_demo.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    # rich wraps long lines at the console width (80 columns here) wherever they fall: a longer temporary
    # folder (e.g. a pytest-xdist worker's) splits the file name
    assert "vancomycin_demo.png" in result.output.replace("\n", "")
