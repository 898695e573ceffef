"""Estimators against statsmodels (propensity GLM, HC0 sandwich SEs), against known truth, and their errors."""

import numpy as np
import pandas as pd
import pytest

from medtwin.causal import aipw, estimate_effect, g_formula, ipw, propensity_scores, stratum_effects
from medtwin.causal.scm import SCM, Bernoulli, Linear, Noise, Variable
from medtwin.errors import AdjustmentError, DataError, DatasetError, EstimationError


def confounded(n, seed, effect=2.0):
    rng = np.random.default_rng(seed)
    c = rng.normal(size=n)
    s = (rng.uniform(size=n) < 0.4).astype(float)
    a = (rng.uniform(size=n) < 1 / (1 + np.exp(-(0.8 * c - 0.5 * s)))).astype(float)
    y = effect * a + 1.5 * c + s + rng.normal(size=n)
    return pd.DataFrame({"c": c, "s": s, "a": a, "y": y})


def test_propensity_and_sandwich_ses_match_statsmodels():
    sm = pytest.importorskip("statsmodels.api")
    frame = confounded(800, 1)
    x = frame[["c", "s"]].to_numpy()
    design = sm.add_constant(x)
    glm = sm.GLM(frame["a"], design, family=sm.families.Binomial()).fit(tol=1e-12)
    np.testing.assert_allclose(propensity_scores(x, frame["a"].to_numpy()), glm.fittedvalues, rtol=1e-7)
    # g-formula without interactions: the estimate is the OLS coefficient of a, the IF SE its HC0 SE
    est = g_formula(frame, "a", "y", ["c", "s"])
    ols = sm.OLS(frame["y"], sm.add_constant(frame[["a", "c", "s"]])).fit(cov_type="HC0")
    assert est.estimate == pytest.approx(ols.params["a"], rel=1e-10)
    assert est.se == pytest.approx(ols.bse["a"], rel=1e-8)
    # IPW: the Hajek estimate and its SE are the weighted regression y ~ a with an HC0 sandwich (Hernán & Robins)
    e = glm.fittedvalues.to_numpy()
    a = frame["a"].to_numpy()
    w = np.where(a == 1, a.mean() / e, (1 - a.mean()) / (1 - e))
    wls = sm.WLS(frame["y"], sm.add_constant(frame[["a"]]), weights=w).fit(cov_type="HC0")
    r = ipw(frame, "a", "y", ["c", "s"], propensity_se=False)
    assert r.estimate == pytest.approx(wls.params["a"], rel=1e-7)
    assert r.se == pytest.approx(wls.bse["a"], rel=1e-6)
    assert r.diagnostics["weights_mean"] == pytest.approx(w.mean(), rel=1e-7)


def test_estimators_recover_the_truth_and_aipw_is_doubly_robust():
    frame = confounded(20_000, 2)
    for est in (g_formula(frame, "a", "y", ["c", "s"]), ipw(frame, "a", "y", ["c", "s"]),
                aipw(frame, "a", "y", ["c", "s"]), g_formula(frame, "a", "y", ["c", "s"], estimand="ATT")):
        assert abs(est.estimate - 2.0) < 3 * est.se, est.summary()
        assert est.ci[0] < est.estimate < est.ci[1] and est.n == 20_000
    # outcome model misspecified (y depends on 2 c^3, the models are linear in c), the propensity right
    rng = np.random.default_rng(3)
    frame["y2"] = 2.0 * frame["a"] + 2.0 * frame["c"] ** 3 + rng.normal(size=len(frame))
    biased = g_formula(frame, "a", "y2", ["c", "s"])
    robust = aipw(frame, "a", "y2", ["c", "s"])
    assert abs(biased.estimate - 2.0) > 4 * biased.se     # measured: 4.7 SE off
    assert abs(robust.estimate - 2.0) < 2.5 * robust.se   # measured: 1.9 SE


def test_influence_ci_coverage_small_monte_carlo():
    """200 replicates of the OLS g-formula (n = 150): 95 % CI coverage in the binomial band [0.905, 0.99]."""
    hits = [g_formula(confounded(150, 100 + r), "a", "y", ["c", "s"]).ci for r in range(200)]
    coverage = np.mean([lo < 2.0 < hi for lo, hi in hits])
    assert 0.905 <= coverage <= 0.99, coverage


def test_bootstrap_is_seeded_and_trimming_is_reported():
    frame = confounded(400, 4)
    b1 = ipw(frame, "a", "y", ["c", "s"], ci="bootstrap", n_boot=100, seed=9)
    b2 = ipw(frame, "a", "y", ["c", "s"], ci="bootstrap", n_boot=100, seed=9)
    assert b1 == b2 and b1.diagnostics["bootstrap_replicates"] == 100
    influence = ipw(frame, "a", "y", ["c", "s"])
    known = ipw(frame, "a", "y", ["c", "s"], propensity_se=False)
    assert b1.estimate == influence.estimate == known.estimate
    # the M-estimation SE agrees with the bootstrap; treating the weights as known is conservative
    assert 0.8 < b1.se / influence.se < 1.25 and known.se > 1.5 * influence.se
    trimmed = ipw(frame, "a", "y", ["c", "s"], trim=(5, 95))
    assert trimmed.n == 400 - trimmed.diagnostics["trimmed"] and trimmed.diagnostics["trimmed"] >= 36
    with pytest.raises(AttributeError):
        b1.estimate = 0.0


def test_bad_input_is_named():
    frame = confounded(100, 5)
    with pytest.raises(DatasetError, match="column weight: no such column"):
        g_formula(frame, "a", "y", ["c", "weight"])
    bad = frame.assign(a=frame["a"] * 2)
    with pytest.raises(DatasetError, match=r"column a: treatment must be binary 0/1, found values \[0.0, 2.0\]"):
        ipw(bad, "a", "y", ["c"])
    missing = frame.copy()
    missing.loc[[3, 17], "c"] = np.nan
    with pytest.raises(DatasetError, match=r"column c: 2 missing value\(s\), at row labels \[3, 17\]"):
        aipw(missing, "a", "y", ["c"])
    # a covariate that (almost) decides treatment: positivity
    sep = frame.assign(z=frame["a"] * 50.0 + np.random.default_rng(0).normal(size=100))
    with pytest.raises(EstimationError, match="positivity|separation"):
        ipw(sep, "a", "y", ["z"])
    with pytest.raises(DataError, match="estimand"):
        ipw(frame, "a", "y", ["c"], estimand="ATC")


def test_graph_guard_and_strata():
    scm = SCM([
        Variable("s", Bernoulli({}, intercept=-0.4), Noise.uniform()),
        Variable("c", Linear({}), Noise.normal(1.0)),
        Variable("a", Bernoulli({"c": 0.8, "s": -0.5}), Noise.uniform()),
        Variable("m", Linear({"a": 1.0}), Noise.normal(1.0)),
        Variable("y", Linear({"m": 1.0, "a": 1.0, "c": 1.5, "s": 1.0}), Noise.normal(1.0)),
        Variable("post", Linear({"a": 1.0, "y": 1.0}), Noise.normal(1.0)),
    ])
    frame = scm.sample(4000, seed=1)
    est = estimate_effect(scm, frame, "a", "y", method="g-formula")
    assert est.covariates == ("c", "s") and abs(est.estimate - 2.0) < 3 * est.se
    with pytest.raises(AdjustmentError, match=r"cannot adjust for m: .*path a -> m"):
        estimate_effect(scm, frame, "a", "y", adjust=["c", "s", "m"])
    with pytest.raises(AdjustmentError, match=r"cannot adjust for post: .*path a -> post"):
        estimate_effect(scm, frame, "a", "y", adjust=["c", "s", "post"])
    by = stratum_effects(scm, frame, "a", "y", "s")
    assert set(by) == {0.0, 1.0} and all(abs(e.estimate - 2.0) < 3 * e.se for e in by.values())
    with pytest.raises(AdjustmentError, match=r"subgroups by m: .*path a -> m"):
        stratum_effects(scm, frame, "a", "y", "m")
