"""Published numbers from data no one here wrote (the causaldata package).

NHEFS (Hernán & Robins, *Causal Inference: What If*, ch. 12-13): the effect of quitting smoking (qsmk) on
weight gain 1971-1982 (wt82_71, kg) with the book's covariates.  As in the book, the analysis uses the 1,566
participants whose 1982 weight is known (``nhefs_complete``; the 63 censored are dropped — the book's
IP-weighting program 12.x does the same; its standardisation program 13.x fits the outcome model on the 1,566
and standardises over all 1,629, which gives 3.52 against our 3.52 over the 1,566).

Book: IPW (stabilised) 3.4 kg (95 % CI 2.4-4.5, robust SE of the weighted regression), weights mean 0.999,
min 0.33, max 4.30; standardisation 3.5 kg (bootstrap 95 % CI 2.6-4.5).

LaLonde NSW (Dehejia-Wahba subsample, ``nsw_mixtape``): the experimental benchmark 1,794 $ (re78).  NSW
treated against the CPS comparison group (``cps_mixtape``; causaldata ships no PSID set): the naive difference
is badly biased; adjusted ATT estimates with the Dehejia-Wahba covariates move to the benchmark.
"""

import numpy as np
import pandas as pd
import pytest

from medtwin.causal import aipw, difference_in_means, g_formula, ipw

pytest.importorskip("causaldata")

NHEFS_NUMERIC = ["sex", "race", "age", "age2", "smokeintensity", "smokeintensity2", "smokeyrs", "smokeyrs2",
                 "wt71", "wt712"]
NHEFS_CATEGORICAL = ["education", "exercise", "active"]


@pytest.fixture(scope="module")
def nhefs():
    from causaldata import nhefs_complete

    d = nhefs_complete.load_pandas().data.copy()
    for c in ("age", "smokeintensity", "smokeyrs", "wt71"):
        d[c] = d[c].astype(float)
        d[c + "2"] = d[c] ** 2
    return d


def test_nhefs_ipw_and_standardisation_reproduce_what_if(nhefs):
    assert len(nhefs) == 1566
    book = ipw(nhefs, "qsmk", "wt82_71", NHEFS_NUMERIC, categorical=NHEFS_CATEGORICAL, propensity_se=False)
    assert book.estimate == pytest.approx(3.4, abs=0.15)                # measured 3.441
    assert book.ci[0] == pytest.approx(2.4, abs=0.3) and book.ci[1] == pytest.approx(4.5, abs=0.3)  # 2.41, 4.47
    assert book.diagnostics["weights_mean"] == pytest.approx(0.999, abs=0.002)
    assert book.diagnostics["weights_min"] == pytest.approx(0.33, abs=0.01)
    assert book.diagnostics["weights_max"] == pytest.approx(4.30, abs=0.01)
    # the SE that also counts the propensity model's estimation (smaller, as the book says)
    stacked = ipw(nhefs, "qsmk", "wt82_71", NHEFS_NUMERIC, categorical=NHEFS_CATEGORICAL)
    assert stacked.se < book.se and stacked.ci[0] == pytest.approx(2.4, abs=0.3)
    assert stacked.ci[1] == pytest.approx(4.5, abs=0.3)
    std = g_formula(nhefs, "qsmk", "wt82_71", NHEFS_NUMERIC, categorical=NHEFS_CATEGORICAL,
                    interactions=["smokeintensity"])                   # the book's qsmk x smokeintensity term
    assert std.estimate == pytest.approx(3.5, abs=0.15)                 # measured 3.517
    assert std.ci[0] == pytest.approx(2.6, abs=0.3) and std.ci[1] == pytest.approx(4.5, abs=0.3)
    boot = g_formula(nhefs, "qsmk", "wt82_71", NHEFS_NUMERIC, categorical=NHEFS_CATEGORICAL,
                     interactions=["smokeintensity"], ci="bootstrap", n_boot=200, seed=2026)
    assert boot.ci[0] == pytest.approx(2.6, abs=0.3) and boot.ci[1] == pytest.approx(4.5, abs=0.3)
    dr = aipw(nhefs, "qsmk", "wt82_71", NHEFS_NUMERIC, categorical=NHEFS_CATEGORICAL)
    assert dr.estimate == pytest.approx(3.4, abs=0.15)                  # measured 3.373


def _lalonde():
    from causaldata import cps_mixtape, nsw_mixtape

    nsw = nsw_mixtape.load_pandas().data.drop(columns="data_id").astype(float)
    cps = cps_mixtape.load_pandas().data.drop(columns="data_id").astype(float)
    obs = pd.concat([nsw[nsw.treat == 1], cps], ignore_index=True)
    for c in ("age", "educ"):
        obs[c + "2"] = obs[c] ** 2
    obs["u74"] = (obs.re74 == 0).astype(float)
    obs["u75"] = (obs.re75 == 0).astype(float)
    obs["educ_re74"] = obs.educ * obs.re74
    return nsw, obs


LALONDE_COVARIATES = ["age", "age2", "educ", "educ2", "marr", "nodegree", "black", "hisp", "re74", "re75", "u74",
                      "u75", "educ_re74"]


def test_lalonde_naive_is_badly_biased_adjusted_moves_to_the_benchmark():
    nsw, obs = _lalonde()
    benchmark = difference_in_means(nsw, "treat", "re78")
    assert (benchmark.n, round(benchmark.estimate)) == (445, 1794)
    naive = difference_in_means(obs, "treat", "re78")
    assert naive.estimate < -8000 and naive.ci[1] < 0                   # measured -8,498 $
    adjusted = {
        "regression": g_formula(obs, "treat", "re78", LALONDE_COVARIATES, estimand="ATT", interactions="all"),
        "ipw": ipw(obs, "treat", "re78", LALONDE_COVARIATES, estimand="ATT", common_support=True),
        "aipw": aipw(obs, "treat", "re78", LALONDE_COVARIATES, estimand="ATT", common_support=True),
    }
    # measured: regression 1,482, IPW (common support) 1,852, AIPW (common support) 1,424 $
    for name, est in adjusted.items():
        assert abs(est.estimate - benchmark.estimate) < 500, (name, est.summary())
        assert est.ci[0] < benchmark.estimate < est.ci[1], name
        assert abs(est.estimate - benchmark.estimate) < 0.1 * abs(naive.estimate - benchmark.estimate)
    assert adjusted["ipw"].diagnostics["trimmed"] > 10_000                 # CPS controls off the common support
