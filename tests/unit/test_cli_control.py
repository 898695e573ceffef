"""`medtwin recommend` on a small synthetic vancomycin patient."""

import json

from typer.testing import CliRunner

from medtwin.cli import app
from medtwin.io.population_file import shipped_population_path
from test_cli_infer import _vancomycin_csv

runner = CliRunner()
POP = str(shipped_population_path("vancomycin_goti2018"))


def test_recommend_prints_the_proposal_and_writes_the_exposure_plot(tmp_path):
    data = tmp_path / "patient.csv"
    _vancomycin_csv(data)
    out = tmp_path / "rec"
    result = runner.invoke(app, ["recommend", "--population", POP, "--data", str(data), "--out", str(out),
                                 "--draws", "300", "--max-daily", "3000", "--open-data", "synthetic test patient"])
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "recommendation.json").read_text())
    action = saved["action"]
    assert action["dose_mg"] % 250 == 0 and action["daily_mg"] <= 3000 and action["interval_h"] in (6, 8, 12, 24)
    assert 0.0 <= saved["probabilities"]["target"] <= 1.0 and "toxic" in saved["probabilities"]
    assert saved["sensitivity"]["parameter"] in ("CL", "V1", "V2")
    assert "recommended (" in result.output and "runner-up 1" in result.output
    assert (out / "exposure.png").stat().st_size > 10_000


def test_recommend_refuses_a_malformed_target(tmp_path):
    data = tmp_path / "patient.csv"
    _vancomycin_csv(data)
    result = runner.invoke(app, ["recommend", "--population", POP, "--data", str(data), "--out", str(tmp_path / "r"),
                                 "--target", "auc24-400-600", "--open-data", "synthetic"])
    assert result.exit_code == 2 and "KIND:LOW-HIGH" in result.output


def test_recommend_refuses_a_negative_level_and_warns_far_from_the_population(tmp_path):
    import pandas as pd

    def patient(path, levels):
        rows = [dict(ID=1, TIME=12.0 * k, AMT=1000.0, RATE=1000.0, DV=".", EVID=1, CRCL=60, WT=75, DIAL=0)
                for k in range(4)]
        rows += [dict(ID=1, TIME=t, AMT=0, RATE=0, DV=v, EVID=0, CRCL=60, WT=75, DIAL=0) for t, v in levels]
        pd.DataFrame(rows).sort_values("TIME", kind="stable").to_csv(path, index=False)

    patient(tmp_path / "neg.csv", [(35.5, -4.2), (38.0, 31.0)])
    result = runner.invoke(app, ["recommend", "--population", POP, "--data", str(tmp_path / "neg.csv"), "--out",
                                 str(tmp_path / "n"), "--draws", "50", "--open-data", "synthetic"])
    text = " ".join(result.output.split())
    assert result.exit_code == 2 and "data row 4 (t = 35.5 h): C = -4.2 mg/L is negative" in text and "BLQ" in text
    assert not (tmp_path / "n" / "recommendation.json").exists()
    patient(tmp_path / "far.csv", [(35.5, 150.0), (38.0, 170.0)])
    result = runner.invoke(app, ["recommend", "--population", POP, "--data", str(tmp_path / "far.csv"), "--out",
                                 str(tmp_path / "f"), "--draws", "50", "--open-data", "synthetic", "--objective",
                                 "pta"])
    text = " ".join(result.output.split())
    # CL ~4 SD below the population: even the smallest allowed dose risks AUC24 > 600, so the labelled
    # fallback comes with exit status 3 (and the warning says why the twin is so far from the population).
    assert "warning: CL = " in text and "SD from the population" in text
    assert result.exit_code == 3 and "FALLBACK, NOT A RECOMMENDATION" in text
