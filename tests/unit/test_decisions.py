"""Clinician decisions (pure): validation, override analysis, discrepancy term, data under the twin's advice."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medtwin.core.stream import Measurement
from medtwin.control.decisions import (
    MIN_EFFECT, Decision, DiscrepancyTerm, decide, mark_under_advice, override_analysis, recommendation_id,
)
from medtwin.control.recommendation import Recommendation
from medtwin.errors import DataError

REC = Recommendation(kind="regimen", action={"dose_mg": 1000.0, "interval_h": 12.0}, status="optimal",
                     target={"name": "AUC24", "low": 400.0, "high": 600.0})


REC_ID = recommendation_id(REC)


def _fast(choice="accept", given=None, reason="", patient="p1", subgroup=None):
    """Decision(...) without re-hashing the recommendation (the false-flag tests build tens of thousands)."""
    return Decision(patient, REC_ID, dict(REC.action), choice, dict(given or REC.action), reason, "dr.who", 0.0,
                    subgroup=dict(subgroup or {}))


def _d(choice="accept", given=None, reason="", patient="p1", time=0.0, subgroup=None, until=None, rec=REC):
    return decide(rec, choice, given=given, reason=reason, patient=patient, clinician="dr.who", time=time,
                  subgroup=subgroup, in_force_until=until)


# ------------------------------------------------------------------------------ decide
def test_accept_gives_the_proposal_and_needs_no_reason():
    d = _d()
    assert d.given == d.proposed == {"dose_mg": 1000.0, "interval_h": 12.0}
    assert d.recommendation_id == recommendation_id(REC) and d.recommendation_id.startswith("sha256:")
    assert d.twin_guided and d.log_ratio() == 0.0 and d.timestamp is None
    assert Decision.from_dict(d.as_dict()) == d


@pytest.mark.parametrize("choice", ["modify", "override"])
def test_modify_and_override_need_a_reason_and_an_action(choice):
    with pytest.raises(DataError, match="reason is required"):
        _d(choice, given={"dose_mg": 750.0, "interval_h": 12.0})
    with pytest.raises(DataError, match="reason is required"):
        _d(choice, given={"dose_mg": 750.0, "interval_h": 12.0}, reason="   ")
    with pytest.raises(DataError, match="needs the given action"):
        _d(choice, reason="renal")
    d = _d(choice, given={"dose_mg": 750.0, "interval_h": 12.0}, reason="renal")
    assert d.choice == choice and d.twin_guided == (choice == "modify")
    assert math.isclose(d.log_ratio(), math.log(0.75))


def test_invalid_decisions_are_refused():
    with pytest.raises(DataError, match="choice must be one of"):
        _d("ignore")
    with pytest.raises(DataError, match="given as proposed"):
        _d("accept", given={"dose_mg": 900.0, "interval_h": 12.0})
    with pytest.raises(DataError, match="differs from the proposal"):
        _d("modify", given=dict(REC.action), reason="same")
    with pytest.raises(DataError, match="in_force_until"):
        _d(time=10.0, until=10.0)
    with pytest.raises(DataError, match="finite"):
        _d(time=float("nan"))
    with pytest.raises(DataError, match="patient"):
        _d(patient="")
    with pytest.raises(DataError, match="subgroup labels must be text"):
        _d(subgroup={"crcl": 25.0})
    with pytest.raises(DataError, match="finite number"):
        _d("override", given={"dose_mg": float("inf")}, reason="x")


def test_numpy_values_and_tuples_are_recorded_as_plain_json():
    rec = Recommendation(kind="mpc", action={"insulin_u_per_h": (np.float64(2.0), 3.0), "step_h": 0.25},
                         status="feasible", target={})
    d = decide(rec, "modify", given={"insulin_u_per_h": np.array([1.0, 3.0]), "step_h": 0.25}, reason="low G",
               patient="i1", clinician="rn", time=1.0)
    assert d.proposed == {"insulin_u_per_h": [2.0, 3.0], "step_h": 0.25}
    assert type(d.given["insulin_u_per_h"][0]) is float
    assert math.isclose(d.log_ratio("insulin_u_per_h"), math.log(0.5))  # the first input is the applied one


# ------------------------------------------------------------------------------ override analysis
def _cohort(rng, n_per_group=20, planted=0.75, null_groups=("CrCl30-60", "CrCl>=60", "dialysis")):
    """20 patients with CrCl<30 given ``planted`` x the proposal (+-3 %), and null subgroups with +-10 % noise."""
    out = []
    for i in range(n_per_group):
        factor = planted * math.exp(rng.uniform(-0.03, 0.03))
        out.append(_fast("modify", {"dose_mg": 1000.0 * factor, "interval_h": 12.0}, "renal", f"low{i}",
                      subgroup={"renal": "CrCl<30", "unit": "ICU"}))
    for g in null_groups:
        for i in range(n_per_group):
            if rng.uniform() < 0.3:
                out.append(_fast(patient=f"{g}{i}", subgroup={"renal": g, "unit": "ward"}))
                continue
            factor = math.exp(rng.uniform(math.log(1 / 1.1), math.log(1.1)))
            choice = "modify" if rng.uniform() < 0.7 else "override"
            out.append(_fast(choice, {"dose_mg": 1000.0 * factor, "interval_h": 12.0}, "judgement", f"{g}{i}",
                          subgroup={"renal": g, "unit": "ward"}))
    return out


def test_planted_systematic_override_is_flagged_and_noise_is_not(rng):
    report = override_analysis(_cohort(rng), by=["renal"])
    row = report.set_index("renal").loc["CrCl<30"]
    assert row["flag"] == "systematic" and row["direction"] == "lower"
    assert row["n"] == 20 and row["share_modified"] == 1.0 and row["n_lower"] == 20
    assert row["ci_low"] < math.log(0.75) < row["ci_high"] and math.isclose(row["ratio"], 0.75, rel_tol=0.02)
    assert row["p_holm"] < 1e-4
    others = report[report["renal"] != "CrCl<30"]
    assert (others["flag"] == "none").all() and (others["direction"] == "").all()
    assert (others["share_modified"] + others["share_overridden"] < 1.0).all()
    assert "log(1.1)" in report.attrs["rule"] and report.attrs["by"] == ["renal"]


def test_false_flag_rate_under_noise_is_at_most_alpha():
    """Only +-10 % random deviations everywhere: over 300 seeds the tests reject (Holm) in at most ~alpha of
    the reports, and the effect-size rule flags none."""
    alpha, seeds, rejected, flagged = 0.05, 300, 0, 0
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        ds = _cohort(rng, n_per_group=12, null_groups=("a", "b", "c", "d"))
        report = override_analysis([d for d in ds if d.subgroup["renal"] != "CrCl<30"], by=["renal"],
                                   alpha=alpha, cluster="decision")
        rejected += bool((report["p_holm"] < alpha).any())
        flagged += bool((report["flag"] == "systematic").any())
    # family-wise rate <= alpha; binomial slack of 3 sd over 300 reports
    assert rejected / seeds <= alpha + 3 * math.sqrt(alpha * (1 - alpha) / seeds)
    assert flagged == 0


def test_false_flag_rate_of_the_tests_alone_with_a_shifted_null_is_controlled():
    """A +-25 % random null (so the effect threshold alone cannot hide a false rejection): still <= alpha."""
    alpha, seeds, flagged = 0.05, 300, 0
    for seed in range(seeds):
        rng = np.random.default_rng(10_000 + seed)
        ds = [_fast("modify", {"dose_mg": 1000.0 * math.exp(rng.normal(0.0, 0.25)), "interval_h": 12.0}, "x",
                 f"{g}{i}", subgroup={"g": g}) for g in "abc" for i in range(8)]
        flagged += bool((override_analysis(ds, by="g", alpha=alpha)["p_holm"] < alpha).any())
    assert flagged / seeds <= alpha + 3 * math.sqrt(alpha * (1 - alpha) / seeds)


def test_small_subgroups_missing_labels_and_unusable_ratios():
    ds = [_d("override", {"dose_mg": 500.0, "interval_h": 12.0}, "bleeding", f"p{i}", subgroup={"renal": "x"})
          for i in range(3)]
    ds += [_d("override", {"interval_h": 24.0}, "hold", "q1", subgroup={"renal": "x"}),
           _d("override", {"dose_mg": 0.0, "interval_h": 12.0}, "withheld", "q2"),
           _d(patient="q3", subgroup={"renal": "y"})]
    report = override_analysis(ds, by=["renal"]).set_index("renal")
    assert report.loc["x", "flag"] == "insufficient-data" and math.isnan(report.loc["x", "p_holm"])
    assert report.loc["x", "n"] == 4 and report.loc["x", "n_excluded"] == 1 and report.loc["x", "n_units"] == 3
    assert report.loc["<missing>", "n_excluded"] == 1 and report.loc["<missing>", "n_units"] == 0
    with pytest.raises(DataError, match="cluster"):
        override_analysis(ds, by=["renal"], cluster="ward")
    with pytest.raises(DataError, match="at least one"):
        override_analysis(ds, by=[])


def test_repeated_decisions_on_one_patient_are_not_a_recurring_pattern():
    ds = [_d("modify", {"dose_mg": 700.0, "interval_h": 12.0}, "her usual", "p1", time=12.0 * i,
             subgroup={"renal": "x"}) for i in range(10)]
    ds += [_d(patient=f"q{i}", subgroup={"renal": "x"}) for i in range(4)]
    by_patient = override_analysis(ds, by=["renal"]).iloc[0]
    assert by_patient["n"] == 14 and by_patient["n_units"] == 5 and by_patient["flag"] == "none"
    by_decision = override_analysis(ds, by=["renal"], cluster="decision").iloc[0]
    assert by_decision["n_units"] == 14 and by_decision["flag"] == "systematic"


# ------------------------------------------------------------------------------ discrepancy term
def test_discrepancy_factor_shrinks_as_documented(rng):
    report = override_analysis(_cohort(rng), by=["renal"])
    mean = float(report.set_index("renal").loc["CrCl<30", "mean_log_ratio"])
    for k, w in ((10.0, 20 / 30), (0.0, 1.0), (20.0, 0.5), (math.inf, 0.0)):
        term = DiscrepancyTerm.from_analysis(report, k=k)
        assert math.isclose(term.factor({"renal": "CrCl<30", "unit": "ICU"}), math.exp(w * mean))
        assert term.factor({"renal": "CrCl>=60"}) == 1.0  # not systematic: no term
    term = DiscrepancyTerm.from_analysis(report, k=10.0)
    adjusted = term.adjust({"dose_mg": 1000.0, "interval_h": 12.0}, {"renal": "CrCl<30"})
    assert adjusted["interval_h"] == 12.0
    assert math.isclose(adjusted["dose_mg"], 1000.0 * math.exp(mean * 2 / 3), rel_tol=1e-5)
    assert term.adjust({"dose_mg": 1000.0}, {"renal": "CrCl>=60"}) == {"dose_mg": 1000.0}
    assert "renal=CrCl<30" in term.note({"renal": "CrCl<30"}) and "k=10" in term.note({"renal": "CrCl<30"})
    rec = term.adjust_recommendation(REC, {"renal": "CrCl<30"})
    assert rec.action["dose_mg"] == adjusted["dose_mg"] and "adjusted:" in rec.message
    assert term.adjust_recommendation(REC, {"renal": "CrCl>=60"}) is REC
    described = term.as_dict()
    assert described["k"] == 10.0 and described["terms"][0]["subgroup"] == {"renal": "CrCl<30"}
    everyone = DiscrepancyTerm.from_analysis(report, only_flagged=False)
    assert len(everyone.factors) == 4 and DiscrepancyTerm.none().factor({"renal": "CrCl<30"}) == 1.0
    with pytest.raises(DataError, match="k must be"):
        DiscrepancyTerm.from_analysis(report, k=-1.0)


def test_more_decisions_give_more_weight():
    def term(n):
        ds = [_d("modify", {"dose_mg": 800.0, "interval_h": 12.0}, "r", f"p{i}", subgroup={"g": "a"})
              for i in range(n)]
        return DiscrepancyTerm.from_analysis(override_analysis(ds, by="g"), k=10.0).factor({"g": "a"})

    factors = [term(n) for n in (6, 10, 40)]
    assert 0.8 < factors[2] < factors[1] < factors[0] < 1.0
    assert term(5) == 1.0  # five of five lower: the exact sign test cannot reach p < 0.05 (documented)
    assert math.isclose(factors[1], math.exp(0.5 * math.log(0.8)))
    assert abs(math.log(0.8)) >= MIN_EFFECT


# ------------------------------------------------------------------------------ under advice
def test_mark_under_advice_marks_exactly_the_twin_guided_windows():
    ds = [_d("accept", time=10.0, until=20.0),
          _d("modify", {"dose_mg": 800.0, "interval_h": 12.0}, "renal", time=30.0),
          _d("override", {"dose_mg": 400.0, "interval_h": 12.0}, "bleeding", time=50.0, until=60.0),
          _d("accept", time=70.0)]
    times = [0.0, 9.99, 10.0, 15.0, 19.99, 20.0, 25.0, 30.0, 49.99, 50.0, 59.0, 65.0, 70.0, 500.0]
    ms = [Measurement(t, "C", 10.0, "mg/L") for t in times]
    marked = mark_under_advice(list(reversed(ms)), list(reversed(ds)))  # any order in, input order out
    flags = dict((m.time, m.under_advice) for m in marked)
    assert [flags[t] for t in times] == [False, False, True, True, True, False, False, True, True, False, False,
                                         False, True, True]
    assert [m.time for m in marked] == list(reversed(times))
    already = Measurement(0.0, "C", 1.0, "mg/L", under_advice=True)
    assert mark_under_advice([already], ds)[0] is already
    assert mark_under_advice(ms, []) == tuple(ms)
    with pytest.raises(DataError, match="one patient"):
        mark_under_advice(ms, [ds[0], _d(patient="p2", time=5.0)])


def test_marked_data_feed_learning_weights():
    from types import SimpleNamespace

    from medtwin.assimilate.alarms import feedback_loop, learning_weights

    ms = [Measurement(float(t), "C", 10.0, "mg/L") for t in range(6)]
    marked = mark_under_advice(ms, [_d(time=2.0, until=4.0)])
    history = [SimpleNamespace(measurement=m) for m in marked]
    assert learning_weights(history).tolist() == [1.0, 1.0, 0.0, 0.0, 1.0, 1.0]
    assert feedback_loop(history).statistic["n_flagged"] == 2.0
