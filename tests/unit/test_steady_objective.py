"""Steady-state scoring, the "window" objective and the foreign vancomycin truth models (issue 14)."""

import math

import numpy as np
import pytest

from medtwin.control.dosing import DoseConstraints, _Candidate, _rank, _summarise, margin_window, recommend_dose
from medtwin.control.steady import steady_candidate_metrics, time_to_steady_state
from medtwin.control.targets import AUC24Window, Threshold, TroughWindow
from medtwin.core.events import Regimen
from medtwin.core.observation import ResidualError
from medtwin.core.population import IndividualPrior
from medtwin.errors import DataError
from medtwin.infer.posterior import Posterior
from medtwin.models import get_model
from medtwin.scenarios.truth.vancomycin import (RevillaICU2010, RobertsICU2011, cockcroft_gault, dubois_bsa,
                                                sample_hospital_adults)

PK2 = get_model("pk2_iv")


def _cands(*rows):
    return [_Candidate(d, i, h, 0.0, 0.0) for d, i, h in rows]


# ---------------------------------------------------------------- steady state vs closed form

def test_steady_state_auc_equals_dose_over_clearance_for_a_two_compartment_model():
    table = {"CL": np.array([2.0, 5.0, 9.0]), "V1": np.array([20.0, 40.0, 15.0]), "Q": np.array([6.5, 1.0, 12.0]),
             "V2": np.array([38.0, 300.0, 60.0])}
    candidates = _cands((1000.0, 12.0, 1.0), (750.0, 8.0, 1.5), (2000.0, 24.0, 2.0))
    values = steady_candidate_metrics(PK2, table, AUC24Window(), None, candidates, None, 0.1)
    for c, (auc, _) in zip(candidates, values):
        closed = c.dose / table["CL"] * 24.0 / c.interval          # AUC24,ss = Dose / CL · 24 / tau
        np.testing.assert_allclose(auc, closed, rtol=2e-3)


def test_steady_state_trough_equals_the_one_compartment_closed_form():
    cl, v, dose, tau, tinf = 4.0, 50.0, 1000.0, 12.0, 1.0
    k = cl / v
    # infusion at steady state: C_end = R/CL (1 - e^{-k tinf}) / (1 - e^{-k tau}); trough = C_end e^{-k (tau - tinf)}
    c_end = dose / tinf / cl * (1 - math.exp(-k * tinf)) / (1 - math.exp(-k * tau))
    trough = c_end * math.exp(-k * (tau - tinf))
    (values, _), = steady_candidate_metrics(get_model("pk1_iv"), {"CL": np.array([cl]), "V": np.array([v])},
                                           TroughWindow(), None, _cands((dose, tau, tinf)), None, 0.25)
    assert values[0] == pytest.approx(trough, rel=1e-6)


def test_time_to_steady_state_matches_the_one_compartment_accumulation():
    # q24h bolus-like infusion, k = 0.1/h: AUC of day n (from empty) = SS AUC · (1 - e^{-k·24·n}) exactly, so the
    # first day within 10 % is the smallest n with e^{-2.4 n} <= 0.1, i.e. n = 1 (0.0907); with k = 0.02: n = 5.
    for cl, expected_days in ((5.0, 1), (1.0, 5)):
        table = {"CL": np.array([cl]), "V": np.array([50.0])}
        cand = _cands((1000.0, 24.0, 0.5))
        (ss, _), = steady_candidate_metrics(get_model("pk1_iv"), table, AUC24Window(), None, cand, None, 0.05)
        from medtwin.control.dosing import candidate_regimen

        regimen = candidate_regimen(cand[0], 0.0, 24.0 * 40, None)
        hours = time_to_steady_state(get_model("pk1_iv"), table, Regimen(), regimen, 0.0, 24.0, AUC24Window(), ss,
                                     horizon_days=30, grid_h=0.05)
        assert hours[0] == pytest.approx(24.0 * expected_days)


def test_time_to_steady_state_refuses_a_bad_tolerance():
    with pytest.raises(DataError, match="tolerance"):
        time_to_steady_state(PK2, {}, Regimen(), Regimen(), 0.0, 12.0, AUC24Window(), np.ones(1), tolerance=1.5)


# ---------------------------------------------------------------- the objective's ranking on constructed draws

def _scored(draws_by_candidate, target=AUC24Window(400.0, 600.0), toxic=None):
    cands = _cands(*[(250.0 * (k + 1), 12.0, 1.0) for k in range(len(draws_by_candidate))])
    metrics = [(np.asarray(d, float), None if toxic is None else np.asarray(d, float)) for d in draws_by_candidate]
    return _summarise(cands, metrics, target, toxic)


def test_window_objective_prefers_a_centred_median_over_a_higher_pta_at_the_bottom_edge():
    rng = np.random.default_rng(0)
    z = rng.standard_normal(4000)
    low_edge = 410.0 * np.exp(0.03 * z)          # P(target) ≈ 0.79, median at the bottom (outside the margin 420-580)
    centred = 490.0 * np.exp(0.25 * z)           # P(target) ≈ 0.57, median centred, both tails ≈ 0.2
    scored = _scored([low_edge, centred])
    assert scored[0].p_target > scored[1].p_target
    ranked, feasible = _rank(scored, "window", 0.1)
    assert feasible and ranked[0].candidate.dose == 500.0
    ranked_pta, _ = _rank(scored, "pta", 0.1)
    assert ranked_pta[0].candidate.dose == 250.0        # the old objective picks the edge


def test_window_objective_bounds_both_tails_then_maximises_pta():
    z = np.random.default_rng(1).standard_normal(4000)
    skew_high = 560.0 * np.exp(0.3 * z)          # median inside the margin window but P(above 600) ≈ 0.41
    balanced = 500.0 * np.exp(0.3 * z)           # both tails ≈ 0.27 / 0.27 ... just above 0.25
    tight = 500.0 * np.exp(0.2 * z)              # both tails ≈ 0.18: bounded
    scored = _scored([skew_high, balanced, tight])
    assert scored[2].p_below <= 0.25 and scored[2].p_above <= 0.25
    ranked, _ = _rank(scored, "window", 0.1)
    assert [s.candidate.dose for s in ranked] == [750.0, 500.0, 250.0]


def test_window_objective_falls_back_to_the_median_closest_to_the_margin_window():
    z = np.random.default_rng(2).standard_normal(2000)
    scored = _scored([300.0 * np.exp(0.1 * z), 380.0 * np.exp(0.1 * z), 900.0 * np.exp(0.1 * z)])
    ranked, _ = _rank(scored, "window", 0.1)
    assert ranked[0].candidate.dose == 500.0            # median 380: nearest to 420
    assert margin_window(AUC24Window(400.0, 600.0)) == (420.0, 580.0)


def test_window_objective_keeps_the_toxicity_limit():
    z = np.random.default_rng(3).standard_normal(2000)
    toxic = Threshold(AUC24Window(), above=550.0)
    scored = _scored([500.0 * np.exp(0.1 * z), 430.0 * np.exp(0.05 * z)], toxic=toxic)
    ranked, feasible = _rank(scored, "window", 0.1)
    assert feasible and ranked[0].candidate.dose == 500.0 and ranked[0].p_toxic <= 0.1


# ---------------------------------------------------------------- recommend_dose reports both horizons

def _posterior(cl, v1, q, v2):
    z = np.log([cl, v1, q, v2])
    cov = np.eye(4) * 1e-8
    prior = IndividualPrior("pk2_iv", ("CL", "V1", "Q", "V2"), z, cov, {}, ResidualError("additive", 1.0))
    return Posterior(PK2, prior, "laplace", ("CL", "V1", "Q", "V2"), z, cov, None, (), z, cov, "converged", "")


def test_recommendation_aims_at_steady_state_and_reports_the_window_and_the_time_to_it():
    # A slowly equilibrating peripheral volume: day 3 is far below steady state.
    post = _posterior(3.0, 30.0, 0.8, 400.0)
    c = DoseConstraints(dose_step_mg=250.0, max_dose_mg=3000.0, intervals_h=(12.0, 24.0))
    rec = recommend_dose(post, AUC24Window(400.0, 600.0), constraints=c, n_draws=50, sensitivity=False)
    assert rec.target["aim"] == "steady-state" and rec.target["objective"] == "window"
    assert 420.0 <= rec.target["steady_state"]["median"] <= 580.0
    assert rec.target["steady_state"]["median"] == pytest.approx(rec.action["daily_mg"] / 3.0, rel=2e-3)
    assert rec.target["window"]["median"] < 0.9 * rec.target["steady_state"]["median"]
    assert rec.target["time_to_90pct_steady_state"]["median_h"] > 72.0
    assert rec.probabilities["target"] == rec.target["expected_attainment"]
    day3 = recommend_dose(post, AUC24Window(400.0, 600.0), constraints=c, n_draws=50, sensitivity=False, aim="window")
    assert day3.action["daily_mg"] > rec.action["daily_mg"]         # aiming at day 3 overdoses at steady state
    with pytest.raises(DataError, match="aim"):
        recommend_dose(post, AUC24Window(400.0, 600.0), n_draws=20, aim="someday")


# ---------------------------------------------------------------- truth models vs the papers' equations

def test_roberts_2011_equations():
    cov = {"CRCL_BSA": np.array([100.0, 60.0]), "WT": np.array([70.0, 90.0])}
    typical = RobertsICU2011.typical(cov)
    # Roberts 2011 Eq. 4: TVCL = 4.58 · CrCl/100 (L/h); Eq. 3: TVV = 1.53 · TBW (L)
    np.testing.assert_allclose(typical["CL"], [4.58, 4.58 * 0.6])
    np.testing.assert_allclose(typical["V"], [1.53 * 70.0, 1.53 * 90.0])


def test_revilla_2010_equations():
    cov = {"CRCL": np.array([80.0, 30.0]), "WT": np.array([70.0, 100.0]), "AGE": np.array([60.0, 80.0]),
           "SCR": np.array([0.9, 1.6])}
    typical = RevillaICU2010.typical(cov)
    # Revilla 2010 Table 4: CL (mL/min/kg) = 0.67 CLcr/TBW + AGE^-0.24;  V (L/kg) = 0.82 · 2.49^(SCr > 1)
    cl_ml_min_kg = [0.67 * 80.0 / 70.0 + 60.0 ** -0.24, 0.67 * 30.0 / 100.0 + 80.0 ** -0.24]
    np.testing.assert_allclose(typical["CL"], np.array(cl_ml_min_kg) * [70.0, 100.0] * 60.0 / 1000.0)
    np.testing.assert_allclose(typical["V"], [0.82 * 70.0, 0.82 * 2.49 * 100.0])


def test_covariates_are_correlated_through_cockcroft_gault():
    cov = sample_hospital_adults(2000, seed=4)
    expected = np.clip(cockcroft_gault(cov["AGE"], cov["WT"], cov["SCR"], cov["SEX"] > 0.5), 10.0, 200.0)
    np.testing.assert_allclose(cov["CRCL"], expected)
    assert np.corrcoef(cov["AGE"], cov["CRCL"])[0, 1] < -0.3         # older: lower CrCl
    assert np.corrcoef(cov["WT"], cov["CRCL"])[0, 1] > 0.1           # heavier: higher CrCl
    assert dubois_bsa(70.0, 170.0) == pytest.approx(1.8097, abs=1e-3)  # Du Bois 1916
    assert 55.0 < cov["AGE"].mean() < 65.0 and 0.3 < cov["SEX"].mean() < 0.42


def test_a_loading_dose_is_chosen_for_the_asked_day_without_changing_the_steady_state():
    post = _posterior(3.0, 30.0, 0.8, 400.0)
    common = dict(dose_step_mg=250.0, max_dose_mg=3000.0, intervals_h=(12.0, 24.0), max_rate_mg_per_h=1000.0)
    plain = recommend_dose(post, AUC24Window(400.0, 600.0), constraints=DoseConstraints(**common), n_draws=40,
                           sensitivity=False, evaluation_window=(24.0, 48.0), aim="steady-state")
    loaded = recommend_dose(post, AUC24Window(400.0, 600.0), n_draws=40, sensitivity=False,
                            constraints=DoseConstraints(loading=True, max_loading_mg=3000.0, **common),
                            evaluation_window=(24.0, 48.0), aim="steady-state")
    assert loaded.action["daily_mg"] == plain.action["daily_mg"]                 # the same steady state
    assert loaded.action["loading_mg"] > 0
    gap = [abs(r.target["window"]["median"] - 500.0) for r in (plain, loaded)]
    assert gap[1] < gap[0]                                                         # day 2 closer to the target


def test_a_model_averaged_posterior_is_scored_at_steady_state_component_by_component():
    from medtwin.infer.model_averaging import ModelAveragedPosterior
    from medtwin.io.population_file import load_population, shipped_population_path

    pops = [load_population(shipped_population_path(n)) for n in ("vancomycin_goti2018", "vancomycin_thomson2009")]
    mix = ModelAveragedPosterior.from_priors(pops, {"CRCL": 70.0, "WT": 80.0, "DIAL": 0.0})
    c = DoseConstraints(max_dose_mg=3000.0, max_daily_mg=4500.0, intervals_h=(12.0, 24.0))
    rec = recommend_dose(mix, AUC24Window(400.0, 600.0), constraints=c, n_draws=200, sensitivity=False)
    # independent: AUC24,ss = daily dose / CL for every draw of every component (both are linear models)
    cl = np.concatenate([p.parameter_table(z)["CL"] for _, p, z in mix.component_draws(200, 0)])
    values = rec.action["daily_mg"] / cl
    assert rec.target["steady_state"]["median"] == pytest.approx(float(np.median(values)), rel=3e-3)
    assert rec.target["steady_state"]["p_target"] == pytest.approx(float(np.mean((values >= 400) & (values <= 600))),
                                                                   abs=0.011)
    assert rec.target["time_to_90pct_steady_state"]["median_h"] is not None
