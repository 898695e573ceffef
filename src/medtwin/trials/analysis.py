"""Trial analysis: ATE with CIs, effects by pre-treatment strata only, CATE (EconML), forest plots.

- :func:`ate`: difference in means (continuous) or proportions (binary) treatment − control, with a Wald
  CI (Welch standard error, normal quantile) and optionally a percentile bootstrap CI.
- :func:`stratum_effects`: the same within bands of *baseline* covariates (CrCl, age, weight, ...).
  Randomisation balances the arms within a baseline stratum, so a stratum effect is causal; a stratum
  defined on anything computed after randomisation (an endpoint, an exposure, a dose) is not — the
  treatment changes who falls in it (conditioning on a post-treatment variable) — and is refused with
  :class:`~medtwin.errors.PostRandomisationError`.
- :func:`cate`: conditional effects τ(x) on baseline covariates by EconML's ``LinearDRLearner``
  (doubly-robust pseudo-outcomes, known randomisation probabilities, a linear final stage with
  asymptotic-normal CIs).
- :func:`forest_plot`: the overall and stratum effects with their CIs (matplotlib, imported lazily).

Examples
--------
>>> import numpy as np
>>> r = ate(np.array([3.0, 4.0, 5.0]), np.array([1.0, 2.0, 3.0]))
>>> r["estimate"], round(r["low"], 3), round(r["high"], 3)
(2.0, 0.4, 3.6)
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from scipy.special import ndtri

from medtwin.errors import DataError
from medtwin.trials.endpoints import ENDPOINTS, check_strata, endpoint_kind

__all__ = ["ate", "ate_table", "stratum_effects", "check_strata", "cate", "forest_plot"]


def ate(treated, control, *, binary: bool = False, level: float = 0.95, bootstrap: int = 0,
        seed: int = 0) -> dict:
    """Difference in means (or proportions) ``treated − control`` with a ``level`` CI.

    Wald CI: estimate ± z·sqrt(s²_t/n_t + s²_c/n_c) (sample variances; for proportions p(1 − p)).  With
    ``bootstrap`` > 0 resamples, also ``boot_low``/``boot_high``: percentile CI of the arms resampled
    independently (seeded).  NaN entries are dropped.
    """
    t, c = np.asarray(treated, float), np.asarray(control, float)
    t, c = t[np.isfinite(t)], c[np.isfinite(c)]
    out = {"n_treated": int(t.size), "n_control": int(c.size), "mean_treated": float(np.mean(t)) if t.size else np.nan,
           "mean_control": float(np.mean(c)) if c.size else np.nan}
    out["estimate"] = out["mean_treated"] - out["mean_control"]
    if t.size < 2 or c.size < 2:
        out.update(se=np.nan, low=np.nan, high=np.nan)
        return out
    if binary:
        var_t, var_c = out["mean_treated"] * (1 - out["mean_treated"]), out["mean_control"] * (1 - out["mean_control"])
    else:
        var_t, var_c = np.var(t, ddof=1), np.var(c, ddof=1)
    se = float(np.sqrt(var_t / t.size + var_c / c.size))
    z = float(ndtri(0.5 + level / 2))
    out.update(se=se, low=out["estimate"] - z * se, high=out["estimate"] + z * se)
    if bootstrap:
        rng = np.random.default_rng([int(seed), 77])
        diffs = (t[rng.integers(0, t.size, (int(bootstrap), t.size))].mean(axis=1)
                 - c[rng.integers(0, c.size, (int(bootstrap), c.size))].mean(axis=1))
        out["boot_low"], out["boot_high"] = (float(v) for v in np.quantile(diffs, [(1 - level) / 2, (1 + level) / 2]))
    return out


def _arms(result, treatment: str | None, control: str | None):
    spec = result.spec
    return treatment or spec.primary["treatment"], control or spec.primary["control"]


def ate_table(result, endpoints: Sequence[str] | None = None, *, treatment=None, control=None, bootstrap: int = 0):
    """One row per endpoint: arm means, ATE (treatment − control), SE, CI (and bootstrap CI) on analysed rows."""
    import pandas as pd

    treatment, control = _arms(result, treatment, control)
    data = result.analysed
    names = endpoints or [c for c in data.columns if c in ENDPOINTS]
    rows = {}
    for name in names:
        rows[name] = ate(data.loc[data["arm_name"] == treatment, name], data.loc[data["arm_name"] == control, name],
                         binary=endpoint_kind(name) == "binary", bootstrap=bootstrap, seed=result.spec.seed)
        rows[name]["unit"] = ENDPOINTS.get(name, ("", ""))[1]
    return pd.DataFrame.from_dict(rows, orient="index")


def stratum_effects(result, strata: Mapping | None = None, endpoint: str | None = None, *, treatment=None,
                    control=None, bootstrap: int = 0):
    """ATE of ``endpoint`` within each band of each baseline covariate in ``strata`` (name -> band edges).

    Returns a DataFrame with columns ``variable``, ``stratum``, ``n_treated``, ``n_control``, ``estimate``,
    ``low``, ``high``, ... and a first row ``overall``.  Defaults: the spec's strata and primary endpoint.
    """
    import pandas as pd

    from medtwin.trials.engine import stratum_labels

    strata = result.spec.strata if strata is None else dict(strata)
    check_strata(strata, result.spec.baseline)
    endpoint = endpoint or result.spec.primary["endpoint"]
    if endpoint not in result.table.columns:
        raise DataError(f"endpoint {endpoint!r} is not a column of this trial ({list(result.table.columns)})")
    treatment, control = _arms(result, treatment, control)
    data = result.analysed
    binary = endpoint_kind(endpoint) == "binary"

    def one(frame, variable, label):
        arm = frame["arm_name"]
        row = ate(frame.loc[arm == treatment, endpoint], frame.loc[arm == control, endpoint],
                  binary=binary, bootstrap=bootstrap, seed=result.spec.seed)
        return {"variable": variable, "stratum": label, **row}

    rows = [one(data, "overall", "all")]
    for name, edges in strata.items():
        labels = stratum_labels(data[name].to_numpy(), edges)
        for label in dict.fromkeys(stratum_labels(np.asarray(edges[:-1], float), edges)):
            rows.append(one(data[labels == label], name, label))
    return pd.DataFrame(rows)


def cate(result, endpoint: str | None = None, covariates: Sequence[str] = ("CRCL", "AGE", "WT"), *,
         treatment=None, control=None, seed: int = 0, level: float = 0.95):
    """CATE τ(x) of ``endpoint`` on baseline ``covariates`` by EconML's LinearDRLearner.

    The propensity is the randomisation's (estimated as the arm share: a prior-only classifier), the outcome
    regression a linear model of (x, arm); the final stage is linear in x with asymptotic-normal CIs.
    Returns (DataFrame of the final-stage coefficients with CIs, effect per analysed patient with CI).
    """
    import pandas as pd
    from econml.dr import LinearDRLearner  # ~3 s to import: only here
    from sklearn.dummy import DummyClassifier
    from sklearn.linear_model import LinearRegression

    check_strata(covariates, result.spec.baseline)
    endpoint = endpoint or result.spec.primary["endpoint"]
    treatment, control = _arms(result, treatment, control)
    data = result.analysed
    data = data[data["arm_name"].isin([treatment, control]) & np.isfinite(data[endpoint])]
    x = data[list(covariates)].to_numpy(float)
    t = (data["arm_name"] == treatment).to_numpy(int)
    learner = LinearDRLearner(model_regression=LinearRegression(), model_propensity=DummyClassifier(strategy="prior"),
                              random_state=int(seed), cv=2)
    learner.fit(data[endpoint].to_numpy(float), t, X=x)
    low, high = learner.effect_interval(x, alpha=1 - level)
    effects = pd.DataFrame({"patient": data["patient"].to_numpy(), "effect": learner.effect(x), "low": low,
                            "high": high})
    names = ["intercept", *covariates]
    coef = np.concatenate([np.atleast_1d(learner.intercept_(T=1)), np.atleast_1d(learner.coef_(T=1))])
    c_low = np.concatenate([np.atleast_1d(v) for v in (learner.intercept__interval(T=1, alpha=1 - level)[0],
                                                       learner.coef__interval(T=1, alpha=1 - level)[0])])
    c_high = np.concatenate([np.atleast_1d(v) for v in (learner.intercept__interval(T=1, alpha=1 - level)[1],
                                                        learner.coef__interval(T=1, alpha=1 - level)[1])])
    return pd.DataFrame({"term": names, "estimate": coef, "low": c_low, "high": c_high}), effects


def forest_plot(strata_table, path, *, title: str = "", xlabel: str = "effect (treatment − control)",
                dpi: int = 110) -> None:
    """Forest plot of a :func:`stratum_effects` table: one row per stratum, point and CI, overall first."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = strata_table.reset_index(drop=True)
    n = len(rows)
    fig, ax = plt.subplots(figsize=(6.4, 0.9 + 0.32 * n))
    y = np.arange(n)[::-1]
    for k, row in rows.iterrows():
        overall = row["variable"] == "overall"
        ax.errorbar(row["estimate"], y[k], xerr=[[row["estimate"] - row["low"]], [row["high"] - row["estimate"]]],
                    fmt="D" if overall else "s", color="black" if overall else "tab:blue", ms=6 if overall else 4,
                    capsize=2)
    ax.axvline(0.0, color="grey", lw=0.8, ls="--")
    if n:
        ax.axvline(float(rows.loc[0, "estimate"]), color="black", lw=0.6, ls=":")
    labels = [("overall" if r["variable"] == "overall" else f"{r['variable']} {r['stratum']}")
              + f"  (n={int(r['n_treated'])}/{int(r['n_control'])})" for _, r in rows.iterrows()]
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
