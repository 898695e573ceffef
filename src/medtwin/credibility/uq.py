"""Uncertainty quantification for the decision: parameter posterior, Sobol indices, P(safe).

* parameter uncertainty: the posterior of the COU's patient (``uncertainty.population`` prior times the
  likelihood of ``uncertainty.patient``'s observations, MAP + Laplace) or, without a population model,
  independent log-normal distributions (``uncertainty.parameters``: ``median``, ``log_sd``);
* P(safe): the fraction of parameter draws whose predicted output meets the decision's safety criterion
  (``decision.safe``: ``output``, ``statistic`` max | min | auc, ``window`` [t0, t1] h, ``upper`` and/or
  ``lower``) under the decision's regimen, with its Monte Carlo standard error;
* global sensitivity: Sobol first-order and total indices of the same statistic
  (:func:`medtwin.infer.sensitivity.model_sobol`, ``uncertainty.sobol``).
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from medtwin.core.simulate import simulate
from medtwin.credibility.context import regimen_from_spec
from medtwin.credibility.evidence import FAIL, NOT_AVAILABLE, PASS, Check, Figure
from medtwin.credibility.figures import new_figure, svg_text
from medtwin.errors import DataError

__all__ = ["statistic", "uq_evidence"]

_UQ = "uncertainty"


def statistic(times: np.ndarray, values: np.ndarray, kind: str, window) -> np.ndarray:
    """Per row of ``values`` (n, T): max, min or AUC (trapezoid, unit·h) over ``window`` [t0, t1] h."""
    t0, t1 = (float(w) for w in window)
    inside = (times >= t0 - 1e-9) & (times <= t1 + 1e-9)
    if inside.sum() < 2:
        raise DataError(f"decision.safe.window {window}: fewer than two output times inside")
    v, t = values[:, inside], times[inside]
    if kind == "max":
        return v.max(axis=1)
    if kind == "min":
        return v.min(axis=1)
    if kind == "auc":
        return np.trapezoid(v, t, axis=1)
    raise DataError(f"decision.safe.statistic must be max, min or auc, not {kind!r}")


def _grid(spec: Mapping) -> np.ndarray:
    end, step = float(spec["end"]), float(spec["step"])
    return np.round(np.arange(0.0, end + 1e-9, step), 10)


def _patient(spec: Mapping, population):
    from medtwin.core.data import PatientData

    obs = np.asarray(spec.get("observations", []), dtype=float).reshape(-1, 2)
    return PatientData(regimen_from_spec(spec["regimen"]), obs[:, 0], obs[:, 1], dict(spec["covariates"]),
                       population.residual.output, patient=str(spec.get("id", "COU patient")))


def _draws(model, uncertainty: Mapping, n: int, seed: int):
    """(parameter table of n draws, summary rows, posterior-or-None, note)."""
    if uncertainty.get("population"):
        from medtwin.infer.personalize import personalize
        from medtwin.io.population_file import load_population, shipped_population_path

        population = load_population(shipped_population_path(str(uncertainty["population"])))
        data = _patient(uncertainty["patient"], population)
        posterior = personalize(population, data, model=model, method="laplace", seed=seed)
        table = posterior.parameter_table(posterior.sample(n, seed))
        summary = posterior.summary(n=n, seed=seed)
        rows = [(r.parameter, model.parameter(r.parameter).unit, r.prior_median, r.median, r.p05, r.p95)
                for r in summary.itertuples()]
        note = (f"posterior of the COU patient ({data.n_observations} observations, {population.name} prior, "
                f"MAP + Laplace: {posterior.status})")
        return table, rows, posterior, note
    spec = dict(uncertainty.get("parameters") or {})
    if not spec:
        raise DataError("context of use: uncertainty needs population (+ patient) or parameters")
    rng = np.random.default_rng(seed)
    table = {p.name: np.full(n, float(p.value)) for p in model.parameters}
    rows = []
    for name, d in spec.items():
        if name not in table:
            raise DataError(f"context of use: uncertainty.parameters names unknown parameter {name!r}")
        median, sd = float(d["median"]), float(d["log_sd"])
        table[name] = median * np.exp(sd * rng.standard_normal(n))
        q = median * np.exp(sd * np.array([-1.6448536269514722, 0.0, 1.6448536269514722]))
        rows.append((name, model.parameter(name).unit, median, q[1], q[0], q[2]))
    return table, rows, None, "prior distributions of the context (no patient data: the posterior is the prior)"


def uq_evidence(model, uncertainty: Mapping, decision: Mapping, *, seed: int = 0):
    """(checks, figures, facts): the parameter table rows, P(safe) and the Sobol indices."""
    n = int(uncertainty.get("n_draws", 500))
    table, rows, posterior, note = _draws(model, uncertainty, n, seed)
    regimen, times = regimen_from_spec(decision["regimen"]), _grid(decision["times"])
    safe = dict(decision["safe"])
    output = str(safe.get("output", model.outputs[0].name))
    known = set(getattr(model, "covariates", ()) or ()) | set(getattr(model, "covariate_units", {}) or {})
    covariates = {k: float(v) for k, v in dict((uncertainty.get("patient") or {}).get("covariates", {})).items()
                  if k in known}
    tr = simulate(model, table, regimen, times, keep_states=False)
    values = np.asarray(tr.output(output), dtype=float).reshape(n, times.size)
    stat = statistic(times, values, str(safe["statistic"]), safe["window"])
    ok = np.isfinite(stat) & (np.asarray(tr.status) == 0)
    meets = ok.copy()
    if "upper" in safe:
        meets &= stat <= float(safe["upper"])
    if "lower" in safe:
        meets &= stat >= float(safe["lower"])
    p = float(np.mean(meets))
    se = float(np.sqrt(p * (1 - p) / n))
    bounds = " and ".join(f"{'≤' if k == 'upper' else '≥'} {float(safe[k]):g}" for k in ("upper", "lower")
                          if k in safe)
    unit = next(o.unit for o in model.outputs if o.name == output)
    wanted = float(decision.get("min_p_safe", 0.9))
    checks = [Check(_UQ, "P(safe) for the decision", PASS if p >= wanted else FAIL,
                    f"P({safe['statistic']} {output} over {safe['window'][0]:g}–{safe['window'][1]:g} h {bounds} "
                    f"{unit}{'·h' if safe['statistic'] == 'auc' else ''}) = {p:.3f} ± {se:.3f} (MC SE, {n} draws; "
                    f"{int((~ok).sum())} failed simulations)", f"≥ {wanted:g} (decision.min_p_safe)",
                    {"p_safe": p, "mc_se": se, "n_draws": n})]
    figures = [_band_figure(times, values, safe, output, unit), _parameter_figure(table, rows)]
    sobol_spec = dict(uncertainty.get("sobol") or {})
    sobol = None
    if sobol_spec:
        from medtwin.infer.sensitivity import model_sobol, plot_sobol

        kind, window = str(safe["statistic"]), safe["window"]

        def safety_statistic(t, v):
            return statistic(t, v, kind, window)

        safety_statistic.__name__ = f"{kind} over {float(window[0]):g}-{float(window[1]):g} h"
        sobol = model_sobol(model, regimen, times, {k: tuple(v) for k, v in sobol_spec["parameters"].items()},
                            output=output, summary=safety_statistic,
                            summary_unit=unit, covariates=covariates or None, n=int(sobol_spec.get("n", 256)),
                            seed=seed, n_bootstrap=int(sobol_spec.get("n_bootstrap", 50)))
        fig = new_figure(5.0, 3.2)
        plot_sobol(sobol, ax=fig.add_subplot())
        figures.append(Figure("sobol", f"Sobol indices of the safety statistic ({safe['statistic']} {output}) "
                              "over the stated parameter ranges (bootstrap 95 % intervals).", svg_text(fig)))
        checks.append(Check(_UQ, "Sobol indices", PASS, "; ".join(
            f"{name}: S1 {s1:.2f}, ST {st:.2f}" for name, s1, st in zip(sobol.names, sobol.S1, sobol.ST)),
            "computed", {"S1": [float(v) for v in sobol.S1], "ST": [float(v) for v in sobol.ST]}))
    else:
        checks.append(Check(_UQ, "Sobol indices", NOT_AVAILABLE, "the context names no parameter ranges", "—"))
    return checks, figures, {"rows": rows, "note": note}


def _band_figure(times, values, safe, output, unit) -> Figure:
    fig = new_figure(6.0, 3.4)
    ax = fig.add_subplot()
    q = np.nanquantile(values, [0.05, 0.25, 0.5, 0.75, 0.95], axis=0)
    ax.fill_between(times, q[0], q[4], color="#9ecae1", label="90 % of draws")
    ax.fill_between(times, q[1], q[3], color="#4292c6", label="50 %")
    ax.plot(times, q[2], "k-", lw=1, label="median")
    for key, style in (("upper", "r--"), ("lower", "m--")):
        if key in safe and safe["statistic"] != "auc":
            ax.axhline(float(safe[key]), color=style[0], ls="--", lw=1, label=f"safety bound ({key})")
    ax.axvspan(*[float(w) for w in safe["window"]], color="0.9", zorder=-1)
    ax.set_xlabel("time (h)")
    ax.set_ylabel(f"{output} ({unit})")
    ax.legend(fontsize=7, loc="best")
    return Figure("decision_band", "Predicted output under the decision's regimen (parameter uncertainty; grey: "
                  "the safety window).", svg_text(fig))


def _parameter_figure(table, rows) -> Figure:
    names = [r[0] for r in rows]
    fig = new_figure(2.2 * max(len(names), 1) + 0.6, 2.6)
    for k, name in enumerate(names):
        ax = fig.add_subplot(1, len(names), k + 1)
        ax.hist(np.log(table[name]), bins=30, color="#74a9cf", density=True)
        ax.axvline(np.log(rows[k][2]), color="k", ls="--", lw=1)
        ax.set_xlabel(f"log {name}")
        ax.set_yticks([])
    return Figure("parameters", "Parameter draws used for P(safe) (log scale; dashed: prior median).",
                  svg_text(fig))
