"""Closed-loop cohort evaluation: paired outcomes, hard constraints never violated by the twin-guided policies."""

import numpy as np
import pytest
from typer.testing import CliRunner

from medtwin.cli import app
from medtwin.scenarios.evaluation import evaluate_glucose, evaluate_vancomycin


@pytest.mark.slow
def test_vancomycin_evaluation_is_paired_and_the_twin_respects_every_hard_constraint():
    evaluation = evaluate_vancomycin(4, seed=11, n_draws=300)
    frame = evaluation.frame
    assert sorted(frame["policy"].unique()) == ["label", "twin"] and len(frame) == 8
    assert (frame["violations"] == 0).all()
    assert set(evaluation.summary.index) >= {"days_in_target", "days_above", "total_g", "violations"}
    twin = frame[frame.policy == "twin"].set_index("patient")
    label = frame[frame.policy == "label"].set_index("patient")
    np.testing.assert_array_equal(twin["crcl"], label["crcl"])  # the same virtual patients under both policies


@pytest.mark.slow
def test_glucose_evaluation_keeps_the_controller_inside_its_hard_limits(tmp_path):
    from medtwin.scenarios.glucose_loop import GlucoseScenario

    evaluation = evaluate_glucose(2, seed=3, scenario=GlucoseScenario(hours=24))
    twin = evaluation.frame[evaluation.frame.policy == "twin"]
    assert (twin["bound_violations"] == 0).all() and (twin["rate_violations"] == 0).all()
    assert (twin["time_below_2_2"] == 0).all()


def test_closed_loop_command_refuses_an_unknown_scenario(tmp_path):
    result = CliRunner().invoke(app, ["closed-loop", "warfarin", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "unknown scenario" in result.output
