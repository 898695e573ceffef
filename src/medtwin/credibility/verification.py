"""Verification evidence, computed now for the model under test: code verification and calculation verification.

Code verification (is the model implemented as specified?):

* **closed form**: the model's default solution vs the independent reference of its name
  (:mod:`medtwin.credibility.references`), maximum relative error over the scenario;
* **mass balance**: dose in = amount held in the conserved states + ∫ outflow (the reference's flux applied to
  the simulated states, integrated by Simpson's rule between dose breakpoints);
* **convergence order**: the observed order log2(e(h)/e(h/2)) of the fixed-step methods (Euler 1, Heun 2,
  RK4 4) against a tight adaptive solve;
* **NONMEM conformance** (when the COU names a NONMEM run): PRED and IPRED on every record of the run's data
  set with its final THETAs and ETAs vs NONMEM's printed table, in units of half the last printed digit.

Calculation verification (numerical error of the solutions used): the production solver
(``simulate`` defaults, tolerances stated) vs a solve with tolerances 10⁴ times tighter.

Examples
--------
>>> from medtwin.models import get_model
>>> scenario = {"params": {"CL": 2.0, "V": 20.0}, "regimen": [{"time": 0.0, "amount": 100.0}],
...             "times": {"end": 24.0, "step": 1.0}}
>>> checks, _ = verification_evidence(get_model("pk1_iv"), scenario, goals_for(1), figures=False)
>>> [(c.name, c.status) for c in checks][:2]
[('closed form (reference solution)', 'pass'), ('mass balance', 'pass')]
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from medtwin.core.simulate import simulate
from medtwin.credibility.context import goals_for, regimen_from_spec
from medtwin.credibility.evidence import FAIL, NOT_AVAILABLE, PASS, Check, Figure
from medtwin.credibility.figures import new_figure, svg_text
from medtwin.credibility.references import REFERENCES, dose_pulses
from medtwin.errors import DataError, MedtwinError

__all__ = ["DEFAULT_STEPS", "NOMINAL_ORDERS", "TIGHT", "nonmem_conformance", "verification_evidence"]

#: Nominal orders of the fixed-step methods.
NOMINAL_ORDERS = {"euler": 1, "heun": 2, "rk4": 4}
#: Largest step (h) of each method's halving sequence, unless the COU gives ``order_steps``.
DEFAULT_STEPS = {"euler": 0.02, "heun": 0.2, "rk4": 0.4}
#: The tight reference solve.
TIGHT = {"method": "dopri5", "rtol": 1e-12, "atol": 1e-14}
_HALVINGS = 4
_ORDER_TOLERANCE = 0.15
_CODE, _CALC = "code verification", "calculation verification"


def _scenario(model, spec: Mapping):
    params = {p.name: float(p.value) for p in model.parameters}
    unknown = sorted(set(spec.get("params", {})) - set(params))
    if unknown:
        raise DataError(f"context of use: verification.params names unknown parameter(s) {unknown} of "
                        f"{model.name}")
    params.update({k: float(v) for k, v in dict(spec.get("params", {})).items()})
    regimen = regimen_from_spec(spec.get("regimen"))
    grid = dict(spec.get("times", {"end": 24.0, "step": 0.5}))
    end, step = float(grid["end"]), float(grid["step"])
    times = np.round(np.arange(0.0, end + 1e-9, step), 10)
    return params, regimen, times


def _run(model, params, regimen, times, **options):
    return simulate(model, {k: [v] for k, v in params.items()}, regimen, times, **options)


def _states(trajectory, names) -> dict:
    return {n: np.asarray(trajectory.state(n), dtype=float).reshape(-1) for n in names}


def _closed_form(model, reference, params, regimen, times, goal) -> tuple[Check, dict]:
    name = "closed form (reference solution)"
    expected = reference.closed_form(params, regimen, times)
    tr = _run(model, params, regimen, times)
    got = _states(tr, expected)
    if reference.validity is not None and not reference.validity(got, params):
        return Check(_CODE, name, NOT_AVAILABLE, "the scenario leaves the closed form's domain",
                     reference.source), {}
    scale = {n: max(float(np.max(np.abs(v))), 1e-300) for n, v in expected.items()}
    errors = {n: float(np.max(np.abs(got[n] - expected[n]))) / scale[n] for n in expected}
    worst = max(errors.values())
    bound = goal["closed_form_rtol"]
    status = PASS if tr.ok and worst <= bound else FAIL
    measured = (f"max |model − reference| / max |reference| = {worst:.2e} over {times.size} times "
                f"({', '.join(f'{n} {e:.1e}' for n, e in errors.items())}; solver {tr.solver.method})")
    return Check(_CODE, name, status, measured, f"≤ {bound:.0e} ({reference.source})",
                 {"max_relative_error": worst, **{f"error_{n}": e for n, e in errors.items()}}), \
        {"times": times, "model": got, "reference": expected}


def _mass_balance(model, reference, params, regimen, times, goal) -> Check:
    from scipy.integrate import cumulative_simpson

    pulses = dose_pulses(regimen, reference.inflow_cmts)
    end = float(times[-1])
    breaks = sorted({0.0, end} | {t for s, _, d in pulses for t in (s, s + d) if 0.0 < t < end})
    boluses = {s for s, _, d in pulses if d == 0.0}
    pieces = [np.linspace(a, b, 201) for a, b in zip(breaks[:-1], breaks[1:])]
    dense = np.concatenate(pieces)
    # the last point of a piece ending at a bolus is read before that dose (the next piece starts after it)
    pre = np.concatenate([np.r_[np.zeros(200, bool), b in boluses] for b in breaks[1:]])
    tr = simulate(model, {k: [v] for k, v in params.items()}, regimen, dense, method=TIGHT["method"],
                  rtol=TIGHT["rtol"], atol=TIGHT["atol"], pre_dose=[pre])
    x = _states(tr, reference.conserved)
    flux = np.asarray(reference.outflow(x, params), dtype=float)
    held = sum(x.values())
    eliminated, so_far, ends = np.zeros(dense.size), 0.0, []
    for k in range(len(pieces)):
        part = slice(201 * k, 201 * (k + 1))
        eliminated[part] = so_far + np.r_[0.0, cumulative_simpson(flux[part], x=dense[part])]
        so_far = float(eliminated[part][-1])
        ends.append(201 * (k + 1) - 1)
    given = np.zeros(dense.size)
    for start, amount, duration in pulses:
        if duration > 0:
            given += amount * np.clip((dense - start) / duration, 0.0, 1.0)
        else:
            given += amount * ((dense > start) | ((dense == start) & ~pre))
    total = max(float(given[-1]), 1e-300)
    ends = np.array(ends)
    error = float(np.max(np.abs(held + eliminated - given)[ends])) / total
    bound = max(goal["closed_form_rtol"], 1e-6)
    status = PASS if tr.ok and error <= bound else FAIL
    return Check(_CODE, "mass balance", status,
                 f"max |held + eliminated − dosed| / total dose = {error:.2e} at {ends.size} breakpoints "
                 f"(held: {' + '.join(reference.conserved)}; eliminated: ∫ outflow by Simpson's rule)",
                 f"≤ {bound:.0e}", {"max_relative_imbalance": error})


def _order(model, params, regimen, times, steps, draw: bool = True) -> tuple[list[Check], Figure | None]:
    output = model.outputs[0].name
    end = np.array([float(times[-1])])
    reference = float(_run(model, params, regimen, end, **TIGHT).output(output)[0, 0])
    checks, curves = [], {}
    for method, nominal in NOMINAL_ORDERS.items():
        hs = float(steps.get(method, DEFAULT_STEPS[method])) / 2.0 ** np.arange(_HALVINGS)
        errors = np.array([abs(float(_run(model, params, regimen, end, method=method, dt=h).output(output)[0, 0])
                               - reference) for h in hs])
        with np.errstate(divide="ignore", invalid="ignore"):
            orders = np.log2(errors[:-1] / errors[1:])
        ok = bool(np.all(np.isfinite(orders)) and abs(orders[-1] - nominal) <= _ORDER_TOLERANCE)
        curves[method] = (hs, errors)
        checks.append(Check(_CODE, f"convergence order ({method})", PASS if ok else FAIL,
                            f"observed orders {', '.join(f'{o:.3f}' for o in orders)} (steps "
                            f"{hs[0]:g}…{hs[-1]:g} h, error of {output} at t = {end[0]:g} h)",
                            f"|observed − {nominal}| ≤ {_ORDER_TOLERANCE} at the two finest steps",
                            {"orders": [float(o) for o in orders], "errors": [float(e) for e in errors]}))
    if not draw:
        return checks, None
    fig = new_figure(5.2, 3.4)
    ax = fig.add_subplot()
    for method, (hs, errors) in curves.items():
        ax.loglog(hs, np.maximum(errors, 1e-300), "o-", label=f"{method} (nominal {NOMINAL_ORDERS[method]})")
    ax.set_xlabel("step h (h)")
    ax.set_ylabel(f"|error| of {output} at {end[0]:g} h")
    ax.legend(fontsize=8)
    return checks, Figure("convergence", "Observed convergence of the fixed-step methods (error vs step) against "
                          "a dopri5 solve at rtol 1e-12.", svg_text(fig), {"reference": dict(TIGHT)})


def _calculation(model, params, regimen, times, goal) -> Check:
    output = model.outputs[0].name
    production = _run(model, params, regimen, times)
    tight = _run(model, params, regimen, times, **TIGHT)
    a, b = production.output(output)[0], tight.output(output)[0]
    error = float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-300))
    s = production.solver
    bound = goal["solver_rtol"]
    status = PASS if production.ok and tight.ok and error <= bound else FAIL
    return Check(_CALC, f"solver error of {output}", status,
                 f"production solver {s.method} (rtol {s.rtol:g}, atol {s.atol:g}, max_steps {s.max_steps}): "
                 f"max |error| / max |{output}| = {error:.2e} vs dopri5 at rtol 1e-12",
                 f"≤ {bound:.0e}", {"relative_error": error, "method": s.method, "rtol": s.rtol, "atol": s.atol})


def verification_evidence(model, spec: Mapping, goals: Mapping | None = None, *, access=None,
                          figures: bool = True):
    """Run every verification check of ``model`` on the COU's ``verification`` scenario.

    Parameters
    ----------
    model : Model
        The model under test (its ``name`` selects the reference it claims to implement).
    spec : mapping
        ``params`` (model units; others typical), ``regimen`` (dose events), ``times`` (``end``, ``step``, h),
        optional ``order_steps`` (largest step per fixed-step method, h) and ``nonmem`` (see
        :func:`nonmem_conformance`).
    goals : mapping, optional
        :func:`~medtwin.credibility.context.goals_for` the COU's risk (default: risk 3).
    access : DataAccess, optional
        How the NONMEM run's data set is read (consent gate); needed with ``nonmem``.
    figures : bool
        Draw the figures (False: the checks only).

    Returns
    -------
    (list of Check, list of Figure)
    """
    goals = goals or goals_for(3)
    params, regimen, times = _scenario(model, spec)
    checks, drawn = [], []
    reference = REFERENCES.get(model.name)
    if reference is None:
        checks.append(Check(_CODE, "closed form (reference solution)", NOT_AVAILABLE,
                            f"no independent reference solution for a model called {model.name}", "—"))
    else:
        check, curves = _closed_form(model, reference, params, regimen, times, goals["code verification"])
        checks.append(check)
        checks.append(_mass_balance(model, reference, params, regimen, times, goals["code verification"]))
        if curves and figures:
            drawn.append(_closed_form_figure(curves))
    if goals["code verification"]["order"] or spec.get("order_steps"):
        order_checks, figure = _order(model, params, regimen, times, dict(spec.get("order_steps", {})), figures)
        checks += order_checks
        drawn += [figure] if figure is not None else []
    if spec.get("nonmem"):
        checks.append(nonmem_conformance(model, dict(spec["nonmem"]), access))
    checks.append(_calculation(model, params, regimen, times, goals["calculation verification"]))
    return checks, drawn


def _closed_form_figure(curves) -> Figure:
    fig = new_figure(5.2, 3.2)
    ax = fig.add_subplot()
    for name, ref in curves["reference"].items():
        ax.plot(curves["times"], ref, "-", lw=2.5, alpha=0.5, label=f"{name} reference")
        ax.plot(curves["times"], curves["model"][name], "k:", lw=1.2)
    ax.set_xlabel("time (h)")
    ax.set_ylabel("amount")
    ax.legend(fontsize=8, title="dotted: model", title_fontsize=8)
    return Figure("closed_form", "Model states (dotted) against the independent closed form.", svg_text(fig))


# ------------------------------------------------------------------------------- NONMEM conformance
def _nonmem_table(path):
    import io
    import re

    import pandas as pd

    last = re.split(r"^TABLE NO\..*$", path.read_text(), flags=re.MULTILINE)[-1]
    return pd.read_csv(io.StringIO(last.strip() + "\n"), sep=r"\s+")


def _half_unit(values, digits: int) -> np.ndarray:
    values = np.abs(np.asarray(values, dtype=float))
    return 0.5 * 10.0 ** (np.floor(np.log10(values)) - (digits - 1))


def nonmem_conformance(model, spec: Mapping, access) -> Check:
    """PRED and IPRED of a NONMEM run reproduced on every record (see the module docstring).

    ``spec``: ``run`` (source prefix, e.g. ``pharmpy:pheno``: files ``.dta``, ``.ext``, ``.phi``, ``.tab``),
    ``population`` (shipped population whose thetas and IIV are the run's THETAs and ETAs, in order),
    ``ipred`` (table column of the individual prediction, default ``CIPREDI``).  Agreement: every row within
    half a unit of the table's 5th significant digit, allowing 2 % for the 6-digit printing of the estimates.
    """
    import pandas as pd

    from medtwin.credibility.sources import source_path
    from medtwin.io.dataset_simulation import simulate_dataset
    from medtwin.io.nonmem import read_nonmem
    from medtwin.io.population_file import load_population, shipped_population_path

    name = f"NONMEM conformance ({spec.get('run')})"
    paths = {ext: source_path(f"{spec['run']}.{ext}") for ext in ("dta", "ext", "phi", "tab")}
    missing = [f"{spec['run']}.{ext}" for ext, p in paths.items() if p is None]
    if missing:
        return Check(_CODE, name, NOT_AVAILABLE, f"the run's files are not installed ({', '.join(missing)})", "—")
    try:
        population = load_population(shipped_population_path(str(spec["population"])))
        ext = _nonmem_table(paths["ext"])
        final = ext[ext["ITERATION"] == -1000000000]
        theta = final[[f"THETA{k + 1}" for k in range(len(population.thetas))]].to_numpy(dtype=float)[0]
        phi = _nonmem_table(paths["phi"])
        eta = phi[[f"ETA({k + 1})" for k in range(len(population.iiv))]].to_numpy(dtype=float)
        table = _nonmem_table(paths["tab"])
        dataset = read_nonmem(paths["dta"], access=access, model=model)
        thetas = {t.name: v for t, v in zip(population.thetas, theta)}
        covariates = {c: np.array([s.covariates[c] for s in dataset.subjects]) for c in population.covariates}
        deviations = {}
        for column, etas in (("PRED", None), (spec.get("ipred", "CIPREDI"), eta)):
            values = population.individual_parameters(covariates, etas, theta=thetas)
            frame = {"ID": np.array([s.id for s in dataset.subjects]), **values}
            tr = simulate_dataset(model, dataset, pd.DataFrame(frame), records="all")
            nonmem = table[column].to_numpy(dtype=float)
            ours = np.asarray(tr.outputs[model.outputs[0].name], dtype=float).reshape(-1)
            if ours.shape != nonmem.shape or not tr.ok:
                return Check(_CODE, name, FAIL, f"{column}: {ours.size} records simulated, NONMEM has "
                             f"{nonmem.size} (status ok: {tr.ok})", "every record")
            deviations[column] = (np.abs(ours - nonmem) / _half_unit(nonmem, 5), np.abs(ours - nonmem) / nonmem)
    except (MedtwinError, KeyError, ValueError) as exc:
        return Check(_CODE, name, FAIL, f"{type(exc).__name__}: {exc}", "the run reproduces")
    worst = {c: float(np.max(d[0])) for c, d in deviations.items()}
    rel = {c: float(np.max(d[1])) for c, d in deviations.items()}
    ok = all(v <= 1.02 for v in worst.values())
    measured = "; ".join(f"{c}: max |ours − NONMEM| = {worst[c]:.3f} half-units of the 5th digit (max rel. "
                         f"{rel[c]:.1e}) over {deviations[c][0].size} records" for c in worst)
    return Check(_CODE, name, PASS if ok else FAIL, measured, "≤ 1.02 half-units on every record",
                 {"max_half_units": worst, "max_relative": rel})
