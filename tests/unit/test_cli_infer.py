"""`medtwin personalize`, `forecast` and `fit` on small synthetic files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from medtwin.cli import app
from medtwin.io.population_file import shipped_population_path

runner = CliRunner()
POP = str(shipped_population_path("vancomycin_goti2018"))
SYNTH = ["--open-data", "synthetic test patients"]


def _vancomycin_csv(path, ids=(1,)):
    rows = []
    for i in ids:
        for k in range(4):
            rows.append(dict(ID=i, TIME=12.0 * k, AMT=1000.0, RATE=1000.0, DV=".", EVID=1, CRCL=60, WT=75, DIAL=0))
        rows.append(dict(ID=i, TIME=35.5, AMT=0, RATE=0, DV=11.0 + i, EVID=0, CRCL=60, WT=75, DIAL=0))
        rows.append(dict(ID=i, TIME=38.0, AMT=0, RATE=0, DV=30.0 + i, EVID=0, CRCL=60, WT=75, DIAL=0))
    pd.DataFrame(rows).sort_values(["ID", "TIME"], kind="stable").to_csv(path, index=False)


def test_personalize_and_forecast(tmp_path):
    data = tmp_path / "patient.csv"
    _vancomycin_csv(data)
    out = tmp_path / "p"
    result = runner.invoke(app, ["personalize", "--population", POP, "--data", str(data), "--out", str(out), *SYNTH])
    assert result.exit_code == 0, result.output
    summary = pd.read_csv(out / "posterior.csv")
    assert list(summary.parameter) == ["CL", "V1", "V2"] and (out / "fit.png").stat().st_size > 10_000
    assert "posterior median" in result.output
    out = tmp_path / "f"
    result = runner.invoke(app, ["forecast", "--population", POP, "--data", str(data), "--hours", "48", "--out",
                                 str(out), *SYNTH])
    assert result.exit_code == 0, result.output
    assert "P(AUC24 in 400–600)" in result.output
    frame = pd.read_csv(out / "forecast.csv")
    assert frame.TIME.max() == pytest.approx(86.0) and {"median", "p05", "p95"} <= set(frame.columns)


def test_personalize_needs_an_id_for_several_subjects_and_consent(tmp_path):
    data = tmp_path / "two.csv"
    _vancomycin_csv(data, ids=(1, 2))
    result = runner.invoke(app, ["personalize", "--population", POP, "--data", str(data), "--out",
                                 str(tmp_path / "o"), *SYNTH])
    assert result.exit_code == 2 and "--id" in result.output
    denied = runner.invoke(app, ["personalize", "--population", POP, "--data", str(data), "--id", "2",
                                 "--purpose", "research", "--out", str(tmp_path / "o")])
    assert denied.exit_code == 2 and "denied" in denied.output


def _pk1_population_and_data(tmp_path):
    from medtwin.core.events import Regimen
    from medtwin.core.observation import ResidualError
    from medtwin.core.population import Population, Theta
    from medtwin.core.simulate import simulate
    from medtwin.io.population_file import save_population
    from medtwin.models import get_model

    pop = Population(name="pk1-test", model="pk1_iv",
                     thetas=(Theta("TVCL", 2.0, "L/h", lower=0.0), Theta("TVV", 20.0, "L", lower=0.0)),
                     typical={"CL": "TVCL", "V": "TVV"}, iiv=("CL", "V"), omega=((0.09, 0.0), (0.0, 0.04)),
                     residual=ResidualError("proportional", proportional=0.1))
    save_population(pop, tmp_path / "pop.yaml")
    rng = np.random.default_rng(1)
    n, times = 16, np.array([1.0, 4.0, 8.0, 16.0])
    params = pop.individual_parameters({}, rng.multivariate_normal([0, 0], pop.omega, size=n))
    f = simulate(get_model("pk1_iv"), params, Regimen.single(100.0), times).output("C")
    rows = []
    for i in range(n):
        rows.append(dict(ID=i + 1, TIME=0.0, AMT=100.0, DV="."))
        rows += [dict(ID=i + 1, TIME=t, AMT=0.0, DV=round(float(c * (1 + 0.1 * rng.normal())), 4))
                 for t, c in zip(times, f[i])]
    pd.DataFrame(rows).to_csv(tmp_path / "data.csv", index=False)


def test_fit_foce_writes_the_report(tmp_path):
    _pk1_population_and_data(tmp_path)
    out = tmp_path / "fit"
    result = runner.invoke(app, ["fit", "pk1_iv", "--data", str(tmp_path / "data.csv"), "--population",
                                 str(tmp_path / "pop.yaml"), "--out", str(out), *SYNTH])
    assert result.exit_code == 0, result.output
    estimates = pd.read_csv(out / "estimates.csv")
    assert {"estimate", "SE", "RSE_percent"} <= set(estimates.columns)
    assert (out / "gof.png").exists() and (out / "vpc.png").exists() and (out / "fitted_population.yaml").exists()
    run_id = result.output.split("recorded with signed provenance")[0].split("run ")[-1].split()[0]
    again = runner.invoke(app, ["reproduce", run_id])
    assert again.exit_code == 0 and "bit-identical" in again.output, again.output
    wrong = runner.invoke(app, ["fit", "pk2_iv", "--data", str(tmp_path / "data.csv"), "--population",
                                str(tmp_path / "pop.yaml"), "--out", str(out), *SYNTH])
    assert wrong.exit_code == 2 and "population is for model 'pk1_iv'" in wrong.output


@pytest.mark.slow
def test_fit_nuts_writes_the_posterior(tmp_path):
    _pk1_population_and_data(tmp_path)
    out = tmp_path / "nuts"
    result = runner.invoke(app, ["fit", "pk1_iv", "--data", str(tmp_path / "data.csv"), "--population",
                                 str(tmp_path / "pop.yaml"), "--method", "nuts", "--chains", "2", "--draws", "50",
                                 "--warmup", "50", "--out", str(out), *SYNTH])  # the CLI's plumbing: few draws
    assert result.exit_code == 0, result.output
    summary = pd.read_csv(out / "posterior_summary.csv")
    assert "THETA:TVCL" in set(summary.parameter) and {"rhat", "ess_bulk"} <= set(summary.columns) and (out / "fitted_population.yaml").exists()
