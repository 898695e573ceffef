"""The evaluation harness (scenarios/robustness.py) and ``medtwin evaluate`` (issue 14, item 5)."""

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from medtwin.cli import app
from medtwin.control.targets import AUC24Window
from medtwin.errors import DataError
from medtwin.scenarios.robustness import (Decision, EvaluationScenario, evaluate, label_policy, pit_coverage,
                                          true_steady_auc, twin_policy, wilson)
from medtwin.scenarios.truth import truth_model


@pytest.fixture(scope="module")
def result():
    # a-priori twin (the population prior for the covariates): the same mechanics without a Laplace compile
    policies = {"label": label_policy, "twin": twin_policy(n_draws=60, method="prior")}
    return evaluate(["roberts2011", "revilla2010"], policies, n_patients=2, seed=3)


def test_rows_are_paired_and_pit_is_a_probability(result):
    frame = result.frame
    assert len(frame) == 4 and set(frame.policy) == {"label", "twin"}
    assert set(frame.truth) == {"roberts2011", "revilla2010"}
    wide = frame.pivot(index="patient", columns="policy", values="crcl")
    np.testing.assert_array_equal(wide["label"], wide["twin"])          # the same patients under both policies
    twin = frame[frame.policy == "twin"]
    assert twin.pit.between(0.0, 1.0).all() and frame[frame.policy == "label"].pit.isna().all()
    assert (frame.violations == 0).all()
    assert twin.abs_log_error.to_numpy() == pytest.approx(np.abs(np.log(twin.pred_median / twin.true_ss_auc24)))
    summary = result.summary
    assert summary.loc["twin", "n"] == 2 and 0.0 <= summary.loc["twin", "coverage_90"] <= 1.0
    assert sum(summary.loc["twin", "pit_histogram"]) == 2
    assert "paired_attainment_difference" in summary and np.isnan(summary.loc["label"].get("mcnemar_p", np.nan))


def test_true_steady_auc_is_daily_dose_over_true_clearance():
    patient = truth_model("revilla2010").sample(1, seed=9)[0]
    decision = Decision(1250.0, 12.0, 1.5)
    assert true_steady_auc(patient, decision) == pytest.approx(2500.0 / patient.params["CL"], rel=1e-3)


def test_label_policy_and_levels_follow_the_label():
    patient = truth_model("roberts2011").sample(1, seed=2)[0]
    decision = label_policy(patient.covariates, None, [], 24.0)
    expected_interval = 12.0 if patient.covariates["CRCL"] >= 50 else 24.0
    assert decision.interval_h == expected_interval and decision.dose_mg % 250 == 0
    assert decision.predict is None


def test_statistics_helpers_against_references():
    from scipy.stats import binomtest

    lo, hi = wilson(7, 10)
    ci = binomtest(7, 10).proportion_ci(method="wilson")               # scipy's Wilson interval
    assert (lo, hi) == pytest.approx((ci.low, ci.high), abs=1e-12)
    assert pit_coverage(np.array([0.24, 0.26, 0.5, 0.74, 0.76]), 0.5) == pytest.approx(0.6)


def test_bad_inputs_raise_data_errors():
    with pytest.raises(DataError, match="truth"):
        evaluate([], {"label": label_policy})
    with pytest.raises(DataError, match="policy"):
        evaluate(["roberts2011"], {})
    with pytest.raises(DataError, match="unknown truth model"):
        evaluate(["nobody2020"], {"label": label_policy}, n_patients=1)
    with pytest.raises(DataError, match="n_patients"):
        evaluate(["roberts2011", "revilla2010"], {"label": label_policy}, n_patients=1)
    with pytest.raises(DataError):
        EvaluationScenario(decision_h=-1.0)
    with pytest.raises(DataError, match="method"):
        twin_policy(method="oracle")


# ---------------------------------------------------------------- CLI

runner = CliRunner()


def test_cli_evaluate_label_only_writes_the_outputs(tmp_path):
    out = tmp_path / "ev"
    res = runner.invoke(app, ["evaluate", "--policy", "label", "--patients", "2", "--out", str(out),
                              "--no-progress"])
    assert res.exit_code == 0, res.output
    assert {p.name for p in out.iterdir()} == {"rows.csv", "summary.csv", "evaluation.png"}
    rows = pd.read_csv(out / "rows.csv")
    assert len(rows) == 2 and set(rows.truth) == {"roberts2011", "revilla2010"}
    assert "attainment" in res.output


@pytest.mark.parametrize("args, message", [
    (["--truth", "nobody2020"], "unknown truth model"),
    (["--policy", "twin:fastest"], "objective must be one of"),
    (["--policy", "twin:window:tomorrow"], "aim must be one of"),
    (["--policy", "oracle"], "use label or twin"),
    (["--patients", "1"], "at least one patient per truth model"),
    (["--prior", "aspirin", "--policy", "twin"], "aspirin"),
])
def test_cli_evaluate_bad_input_is_one_error_line(tmp_path, args, message):
    res = runner.invoke(app, ["evaluate", *args, "--out", str(tmp_path / "x"), "--no-progress"])
    assert res.exit_code == 2 and message in res.output
    assert not (tmp_path / "x").exists()


def test_cli_evaluate_refuses_a_non_empty_out_folder(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    res = runner.invoke(app, ["evaluate", "--policy", "label", "--out", str(tmp_path), "--no-progress"])
    assert res.exit_code == 2 and "not empty" in res.output
    assert (tmp_path / "keep.txt").read_text() == "mine"


def test_steady_metric_of_a_decision_uses_the_truths_model():
    # a population file as truth (the twin's own model): 2 compartments, the steady state is still Dose/CL
    from medtwin.io.population_file import shipped_population_path

    patient = truth_model(str(shipped_population_path("vancomycin_goti2018"))).sample(1, seed=1)[0]
    assert patient.model_name == "vancomycin_goti2018"
    auc = true_steady_auc(patient, Decision(1000.0, 8.0, 1.0))
    assert auc == pytest.approx(3000.0 / patient.params["CL"], rel=2e-3)
    assert AUC24Window(400, 600).attained([auc]).dtype == bool
