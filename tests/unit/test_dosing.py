"""Dose optimisation to clinical targets (medtwin.control.dosing, medtwin.control.targets).

References are independent of the optimiser: closed-form steady-state AUC24 =
daily dose / CL for a 1-compartment model, and Monte-Carlo target attainment
recomputed with ``simulate`` on the same posterior draws on a finer grid.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medtwin.control.dosing import DoseConstraints, recommend_dose
from medtwin.control.targets import (AUC24Window, AUCOverMIC, Exposure, OutputWindow, PeakWindow, Threshold,
                                     TimeAboveMIC, TroughWindow)
from medtwin.core.events import Regimen
from medtwin.core.observation import ResidualError
from medtwin.core.population import IndividualPrior
from medtwin.core.simulate import simulate
from medtwin.errors import DataError
from medtwin.core.data import PredictiveBand
from medtwin.infer.posterior import Posterior
from medtwin.models import get_model


def make_posterior(model: str, values: dict, sd: dict, fixed: dict | None = None) -> Posterior:
    """A Gaussian posterior of log-parameters built directly (no fit)."""
    names = tuple(values)
    z = np.log([values[n] for n in names])
    cov = np.diag([sd[n] ** 2 for n in names])
    prior = IndividualPrior(model, names, z, cov, dict(fixed or {}), ResidualError("additive", additive=1.0),
                            units={n: "" for n in names})
    return Posterior(get_model(model), prior, "laplace", names, z, cov, None, (), z, cov, "converged", "")


CL = 3.7
PK1 = make_posterior("pk1_iv", {"CL": CL, "V": 8.0}, {"CL": 1e-4, "V": 1e-4})   # t1/2 = 1.5 h: steady state fast
VANCO = make_posterior("vancomycin_goti2018", {"CL": 2.2, "V1": 45.0, "V2": 50.0},
                       {"CL": 0.3, "V1": 0.4, "V2": 0.4}, {"Q": 6.5})
HISTORY = Regimen.every(12.0, "h", 1000.0, "mg", n=4, duration=1.0)


def achievable_daily(doses, intervals, max_daily=math.inf):
    return sorted({d * 24.0 / i for d in doses for i in intervals if d * 24.0 / i <= max_daily + 1e-9})


# ---------------------------------------------------------------- targets

def test_target_metrics_on_known_curves():
    t = np.linspace(0.0, 24.0, 49)
    c = np.vstack([np.full(49, 20.0), 10.0 + t])                      # constant; a ramp from 10 to 34
    ex = Exposure(t, {"C": c})
    w = (0.0, 24.0)
    np.testing.assert_allclose(AUC24Window(400, 600).metric(ex, w), [480.0, 10 * 24 + 24 ** 2 / 2])
    np.testing.assert_allclose(AUC24Window().metric(ex, (0.0, 12.0)), [480.0, 2 * (120 + 72)])   # scaled to 24 h
    np.testing.assert_allclose(TroughWindow(10, 20).metric(ex, w), [20.0, 10.0])
    np.testing.assert_allclose(PeakWindow(20, 40).metric(ex, w), [20.0, 34.0])
    np.testing.assert_allclose(AUCOverMIC(2.0, 200.0).metric(ex, w), [240.0, (240.0 + 288.0) / 2.0])
    np.testing.assert_allclose(TimeAboveMIC(22.0, 0.5).metric(ex, w), [0.0, 12.0 / 24.0])
    np.testing.assert_allclose(OutputWindow("C", statistic="at", at=12.0).metric(ex, w), [20.0, 22.0])
    np.testing.assert_allclose(OutputWindow("C", statistic="mean").metric(ex, w), [20.0, 22.0])
    assert TimeAboveMIC(22.0, 0.5).attained([0.4, 0.5]).tolist() == [False, True]
    assert AUC24Window(400, 600).attained([399.0, 400.0, 600.0, np.nan]).tolist() == [False, True, True, False]
    tox = Threshold(AUC24Window(), above=600.0)
    assert tox.attained([600.0, 600.1, np.nan]).tolist() == [False, True, True]
    assert AUC24Window(400, 600).describe()["unit"] == "mg*h/L" and tox.describe()["above"] == 600.0


def test_targets_read_a_predictive_band():
    t = np.array([0.0, 12.0, 24.0])
    band = PredictiveBand(t, {"C": np.array([[10.0, 20.0, 10.0]])}, {}, {"C": "mg/L"})
    assert AUC24Window().metric(band, (0.0, 24.0)).tolist() == [360.0]


@pytest.mark.parametrize("make", [lambda: AUC24Window(600, 400), lambda: AUC24Window(np.nan, 1.0),
                                  lambda: TimeAboveMIC(0.0, 0.5), lambda: TimeAboveMIC(1.0, 1.5),
                                  lambda: AUCOverMIC(-1.0, 400.0), lambda: OutputWindow("E", statistic="median"),
                                  lambda: Threshold(AUC24Window())])
def test_bad_targets_raise_data_error(make):
    with pytest.raises(DataError):
        make()


def test_target_window_errors():
    ex = Exposure(np.array([0.0, 1.0]), {"C": [[1.0, 2.0]]})
    with pytest.raises(DataError, match="fewer than two"):
        AUC24Window().metric(ex, (5.0, 6.0))
    with pytest.raises(DataError, match="no output"):
        AUC24Window(output="E").metric(ex, (0.0, 1.0))


# ---------------------------------------------------------------- constraints

@pytest.mark.parametrize("kwargs, match", [
    ({"dose_step_mg": 0.0}, "dose_step_mg"), ({"min_dose_mg": 3000.0, "max_dose_mg": 2000.0}, "min_dose_mg"),
    ({"intervals_h": ()}, "interval"), ({"intervals_h": (12.0, -6.0)}, "interval"),
    ({"max_rate_mg_per_h": -1.0}, "max_rate"), ({"dose_step_mg": 300.0, "min_dose_mg": 310.0, "max_dose_mg": 590.0},
                                                 "no multiple"),
    ({"max_daily_mg": 100.0}, "max_daily_mg"), ({"loading": True, "max_loading_mg": 100.0}, "loading"),
])
def test_bad_constraints_raise_data_error(kwargs, match):
    with pytest.raises(DataError, match=match):
        DoseConstraints(**kwargs)


def test_bad_calls_raise_data_error():
    with pytest.raises(DataError, match="objective"):
        recommend_dose(PK1, AUC24Window(400, 600), objective="mean", n_draws=20)
    with pytest.raises(DataError, match="history"):
        recommend_dose(VANCO, AUC24Window(400, 600), history=HISTORY, start_time=24.0, n_draws=20)
    with pytest.raises(DataError, match="output"):
        recommend_dose(PK1, AUC24Window(400, 600, output="E"), n_draws=20)


# ---------------------------------------------------------------- closed form

@pytest.mark.parametrize("max_dose", [4000.0, 1500.0])
def test_median_objective_picks_the_closed_form_daily_dose(max_dose):
    constraints = DoseConstraints(dose_step_mg=250.0, max_dose_mg=max_dose, intervals_h=(6.0, 8.0, 12.0, 24.0))
    rec = recommend_dose(PK1, AUC24Window(400.0, 600.0), constraints=constraints, objective="median",
                         n_draws=50, sensitivity=False)
    # Steady-state AUC24 = daily dose / CL: the daily dose closest to 500 · CL among the achievable ones.
    daily = achievable_daily(np.arange(250.0, max_dose + 1, 250.0), (6, 8, 12, 24))
    expected = min(daily, key=lambda d: abs(d / CL - 500.0))
    assert rec.action["daily_mg"] == pytest.approx(expected)
    assert rec.target["median"] == pytest.approx(expected / CL, rel=2e-3)
    assert rec.status == "optimal"


def test_pta_objective_respects_the_toxicity_limit():
    rec = recommend_dose(VANCO, AUC24Window(400, 600), toxic=Threshold(AUC24Window(), above=600.0),
                         max_toxic_probability=0.1, history=HISTORY, n_draws=500, sensitivity=False,
                         constraints=DoseConstraints(max_dose_mg=2000.0, max_daily_mg=4000.0), objective="pta")
    assert rec.probabilities["toxic"] <= 0.1
    assert all(r["p_target"] <= rec.probabilities["target"] + 1e-12 for r in rec.runner_ups
               if r["p_toxic"] <= 0.1)
    assert len(rec.runner_ups) == 3


# ---------------------------------------------------------------- independent Monte Carlo

def reference_probability(post, regimen, window, metric, low, high, n_draws, seed, pre_at=None):
    """P(low <= metric <= high) recomputed with simulate on a 0.05-h grid and the same draws."""
    model = post.model
    z = post.sample(n_draws, seed)
    grid = np.round(np.arange(window[0], window[1] + 1e-9, 0.05), 9)
    conc = simulate(model, post.parameter_table(z), regimen, grid, keep_states=False).output("C")
    if metric == "auc24":
        values = np.trapezoid(conc, grid, axis=1) * 24.0 / (window[1] - window[0])
    else:
        values = conc.min(axis=1)
    return float(np.mean((values >= low) & (values <= high))), values


def test_pta_equals_independent_monte_carlo_auc():
    toxic = Threshold(AUC24Window(), above=600.0)
    rec = recommend_dose(VANCO, AUC24Window(400, 600), toxic=toxic, history=HISTORY, n_draws=1000, seed=3,
                         sensitivity=False, constraints=DoseConstraints(max_rate_mg_per_h=1000.0), aim="window")
    window = rec.target["window_h"]
    p, values = reference_probability(VANCO, HISTORY + rec.regimen, window, "auc24", 400, 600, 1000, 3)
    assert rec.probabilities["target"] == pytest.approx(p, abs=0.01)
    assert rec.probabilities["toxic"] == pytest.approx(float(np.mean(values > 600.0)), abs=0.01)
    # The predicted band uses the same draws: its AUC agrees draw by draw.
    band_auc = rec.predicted.auc("C", *window)
    np.testing.assert_allclose(band_auc, values, rtol=5e-3)


def test_pta_equals_independent_monte_carlo_trough():
    target = TroughWindow(10.0, 15.0)
    rec = recommend_dose(VANCO, target, toxic=Threshold(TroughWindow(), above=20.0), history=HISTORY,
                         n_draws=400, seed=5, sensitivity=False, constraints=DoseConstraints(max_dose_mg=2000.0),
                         aim="window")
    p, _ = reference_probability(VANCO, HISTORY + rec.regimen, rec.target["window_h"], "trough", 10.0, 15.0,
                                 400, 5)
    assert rec.probabilities["target"] == pytest.approx(p, abs=0.015)
    assert rec.probabilities["target"] > 0.3


# ---------------------------------------------------------------- hard constraints (property)

@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(step=st.sampled_from([50.0, 125.0, 250.0, 500.0]), lo=st.integers(1, 4), span=st.integers(0, 12),
       intervals=st.lists(st.sampled_from([4.0, 6.0, 8.0, 12.0, 24.0, 36.0, 48.0]), min_size=1, max_size=4),
       daily=st.one_of(st.none(), st.floats(1000.0, 8000.0)), rate=st.one_of(st.none(), st.floats(100.0, 3000.0)),
       loading=st.booleans(), objective=st.sampled_from(["pta", "median"]), target_auc=st.floats(100.0, 1500.0))
def test_recommendation_never_violates_a_hard_constraint(step, lo, span, intervals, daily, rate, loading, objective,
                                                         target_auc):
    min_dose, max_dose = lo * step, (lo + span) * step
    if daily is not None and daily < min_dose * 24.0 / max(intervals):
        return                                                   # no candidate at all: a DataError (tested above)
    kwargs = dict(dose_step_mg=step, min_dose_mg=min_dose, max_dose_mg=max_dose, max_daily_mg=daily,
                  intervals_h=tuple(intervals), max_rate_mg_per_h=rate, loading=loading, max_loading_mg=max_dose * 2)
    if rate is not None and not any(max(1.0, math.ceil(d / rate / 0.5 - 1e-9) * 0.5) <= i
                                    and (daily is None or d * 24.0 / i <= daily + 1e-9)
                                    for d in np.arange(lo, lo + span + 1) * step for i in intervals):
        with pytest.raises(DataError, match="within its interval"):   # no dose fits in any interval at this rate
            DoseConstraints(**kwargs)
        return
    c = DoseConstraints(**kwargs)
    rec = recommend_dose(PK1, AUC24Window(target_auc * 0.8, target_auc * 1.2), constraints=c, objective=objective,
                         toxic=Threshold(AUC24Window(), above=target_auc * 1.5), n_draws=20, sensitivity=False)
    a = rec.action
    assert a["dose_mg"] / step == pytest.approx(round(a["dose_mg"] / step), abs=1e-9)
    assert min_dose - 1e-9 <= a["dose_mg"] <= max_dose + 1e-9
    assert a["interval_h"] in intervals
    assert daily is None or a["dose_mg"] * 24.0 / a["interval_h"] <= daily + 1e-6
    assert a["loading_mg"] == 0.0 or (loading and a["loading_mg"] <= 2 * max_dose + 1e-9
                                      and a["loading_mg"] / step == pytest.approx(round(a["loading_mg"] / step)))
    assert a["infusion_h"] <= a["interval_h"] + 1e-9
    assert max_summed_rate(rec.regimen) <= (math.inf if rate is None else rate * (1 + 1e-9))
    for event in rec.regimen.expanded():                          # the regimen itself, not only the action
        assert event.rate > 0
        assert rate is None or event.rate <= rate * (1 + 1e-9)
        assert event.amount in (a["dose_mg"], a["loading_mg"])


def max_summed_rate(regimen: Regimen) -> float:
    """The largest total infusion rate over time (mg/h): every bag's [start, end) summed at every start."""
    bags = [(e.time, e.time + e.amount / e.rate, e.rate) for e in regimen.expanded() if e.rate > 0]
    return max((sum(r for s, e, r in bags if s <= t < e - 1e-9) for t, _, _ in bags), default=0.0)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(step=st.sampled_from([50.0, 125.0, 250.0, 500.0]), lo=st.integers(1, 4), span=st.integers(0, 12),
       intervals=st.lists(st.sampled_from([0.5, 2.0, 4.0, 6.0, 8.0, 12.0, 24.0]), min_size=1, max_size=4),
       rate=st.floats(20.0, 3000.0), min_infusion=st.sampled_from([0.0, 0.5, 1.0, 2.0]),
       infusion_step=st.sampled_from([0.25, 0.5, 1.0]), loading=st.booleans())
def test_no_candidate_infusion_outlasts_its_interval_or_exceeds_the_max_rate(step, lo, span, intervals, rate,
                                                                              min_infusion, infusion_step, loading):
    from medtwin.control.dosing import _candidates, candidate_regimen

    kwargs = dict(dose_step_mg=step, min_dose_mg=lo * step, max_dose_mg=(lo + span) * step, intervals_h=intervals,
                  max_rate_mg_per_h=rate, min_infusion_h=min_infusion, infusion_step_h=infusion_step, loading=loading,
                  max_loading_mg=(lo + span) * step * 2)
    try:
        c = DoseConstraints(**kwargs)
    except DataError as exc:                                      # refused only when truly nothing fits
        assert "within its interval" in str(exc)
        probe = DoseConstraints(**{**kwargs, "max_rate_mg_per_h": None, "min_infusion_h": 0.0, "loading": False})
        assert all(max(min_infusion, math.ceil(d / rate / infusion_step - 1e-9) * infusion_step) > i
                   for d in probe.doses() for i in intervals)
        return
    candidates = _candidates(c)
    assert candidates
    for cand in candidates:
        assert cand.infusion <= cand.interval + 1e-9
        assert cand.loading == 0 or cand.loading_infusion <= cand.interval + 1e-9
        assert not c.violations(cand.action())
        assert max_summed_rate(candidate_regimen(cand, 5.0, 5.0 + 4 * max(intervals))) <= rate * (1 + 1e-9)


def test_issue_example_six_hourly_at_120_mg_per_h_never_overlaps_bags():
    c = DoseConstraints(dose_step_mg=250.0, min_dose_mg=250.0, max_dose_mg=3000.0, max_daily_mg=4500.0,
                        intervals_h=(6.0,), max_rate_mg_per_h=120.0)
    rec = recommend_dose(VANCO, AUC24Window(400, 600), constraints=c, history=HISTORY,
                         toxic=Threshold(AUC24Window(), above=600.0), n_draws=50, sensitivity=False)
    assert rec.action["infusion_h"] <= 6.0 and rec.action["dose_mg"] <= 500.0    # 750 mg takes 6.5 h at 120 mg/h
    assert max_summed_rate(rec.regimen) <= 120.0 * (1 + 1e-9)
    assert all(row["infusion_h"] <= 6.0 for row in rec.runner_ups)
    assert c.violations({"dose_mg": 750.0, "interval_h": 6.0, "infusion_h": 6.5}) == [
        "infusion over 6.5 h outlasts the 6.0 h interval (bags would overlap)"]


# ---------------------------------------------------------------- infeasible

def test_impossible_toxicity_limit_gives_the_least_toxic_fallback():
    # Everything above 150 mg·h/L is "toxic": the least-toxic regimen is the smallest daily dose (AUC ∝ daily dose).
    constraints = DoseConstraints(dose_step_mg=250.0, max_dose_mg=2000.0, intervals_h=(8.0, 12.0, 24.0))
    rec = recommend_dose(VANCO, AUC24Window(400, 600), toxic=Threshold(AUC24Window(), above=150.0),
                         max_toxic_probability=0.05, history=HISTORY, n_draws=300, sensitivity=False,
                         constraints=constraints)
    assert rec.status == "infeasible-fallback" and not rec.feasible
    assert rec.action["daily_mg"] == min(achievable_daily(np.arange(250.0, 2001.0, 250.0), (8, 12, 24)))
    assert rec.probabilities["toxic"] > 0.05
    assert "P(toxic)" in rec.message and any("cannot be met" in a for a in rec.active_constraints)
    assert all(r["p_toxic"] >= rec.probabilities["toxic"] - 1e-12 for r in rec.runner_ups)


# ---------------------------------------------------------------- explanations

def test_explanations_are_present():
    constraints = DoseConstraints(dose_step_mg=250.0, min_dose_mg=1500.0, max_dose_mg=1500.0, intervals_h=(12.0,),
                                  max_rate_mg_per_h=1000.0, max_daily_mg=3000.0)
    rec = recommend_dose(VANCO, AUC24Window(1000, 1500), toxic=Threshold(AUC24Window(), above=2500.0),
                         history=HISTORY, n_draws=300, constraints=constraints)
    assert rec.kind == "regimen" and rec.target["name"] == "AUC24" and rec.target["unit"] == "mg*h/L"
    assert rec.action == {"dose_mg": 1500.0, "interval_h": 12.0, "infusion_h": 1.5, "loading_mg": 0.0,
                          "daily_mg": 3000.0}
    active = " ".join(rec.active_constraints)
    for text in ("250 mg steps", "max daily dose 3000 mg binding", "infusion limited to 1000 mg/h -> 1.5 h",
                 "max single dose 1500 mg binding"):
        assert text in active
    assert isinstance(rec.predicted, PredictiveBand) and isinstance(rec.current, PredictiveBand)
    assert rec.current.times[-1] == rec.predicted.times[-1] == rec.target["window_h"][1]
    assert rec.sensitivity["parameter"] in VANCO.parameters
    assert rec.sensitivity["parameter"] == "CL"                   # AUC is driven by clearance
    assert {"recommended_at_p05", "recommended_at_p95", "spearman"} <= set(rec.sensitivity)
    assert set(rec.constraints) >= {"dose_step", "single_dose", "intervals", "daily_dose", "infusion_rate",
                                    "toxicity"}
    assert rec.summary().startswith("recommended (optimal): dose_mg=1500")
    assert rec.regimen.expanded()[0].time == 48.0                 # the next dose of the history


def test_sensitivity_moves_with_clearance_and_loading_dose_is_used_early():
    rec = recommend_dose(VANCO, AUC24Window(400, 600), objective="median", n_draws=300,
                         constraints=DoseConstraints(loading=True, max_loading_mg=3000.0, max_dose_mg=2000.0),
                         evaluation_window=(0.0, 24.0))
    assert rec.action["loading_mg"] > rec.action["dose_mg"]         # first-day target: a loading dose helps
    low, high = rec.sensitivity["recommended_at_p05"], rec.sensitivity["recommended_at_p95"]
    assert low != high                                              # higher clearance, a different regimen


def test_spearman_matches_scipy_and_brute_force_ranks_with_ties():
    """The sensitivity's rank correlation (numpy, no scipy.stats import) against scipy.stats.spearmanr and against
    average ranks counted by brute force (rank of v = #{u < v} + (#{u == v} + 1) / 2)."""
    from scipy.stats import spearmanr

    from medtwin.control.dosing import average_ranks, spearman

    rng = np.random.default_rng(13)
    for n, rounding in ((2, None), (7, 0), (50, 1), (400, None), (400, 0)):
        x, y = rng.normal(size=n), rng.normal(size=n) + 0.5 * np.arange(n) / n
        if rounding is not None:  # many ties
            x, y = np.round(x, rounding), np.round(2 * y, rounding)
        if np.ptp(x) == 0 or np.ptp(y) == 0:
            continue
        brute = np.array([np.sum(x < v) + (np.sum(x == v) + 1) / 2 for v in x])
        np.testing.assert_array_equal(average_ranks(x), brute)
        assert spearman(x, y) == pytest.approx(float(spearmanr(x, y)[0]), abs=1e-13)
    assert spearman(np.arange(5.0), -np.arange(5.0) ** 3) == pytest.approx(-1.0, abs=1e-15)
