"""Validation and applicability evidence, computed from the comparator data the COU names.

Validation: every patient of the comparator data set is personalized on its first ``k``
observations and the rest are forecast (:func:`medtwin.infer.validate.validate`): held-out coverage of the
central 90 % prediction interval, the calibration curve and the PIT histogram; and a visual predictive check
of the population model on the whole data set (:func:`medtwin.infer.diagnostics.vpc`).  No comparator data:
the section says so and nothing passes.

Applicability: the covariate range of the comparator data vs the COU population's; a COU range
reaching outside the validated one is flagged.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from medtwin.credibility.evidence import FAIL, NOT_AVAILABLE, PASS, Check, Figure
from medtwin.credibility.figures import new_figure, svg_text
from medtwin.credibility.sources import file_digest, source_path
from medtwin.errors import MedtwinError

__all__ = ["applicability_evidence", "validation_evidence"]

_VAL, _APP = "validation", "applicability"


def validation_evidence(model, spec: Mapping, goal: Mapping, *, access, seed: int = 0):
    """Validation checks and figures from the COU's ``validation`` section.

    ``spec``: ``data`` (a source, see :mod:`medtwin.credibility.sources`), ``population`` (shipped population
    file name), ``k`` (observations personalized on, default 1), ``n_draws`` (default 200), ``vpc_n_sim``
    (default 100), ``subjects`` (only the first N subjects).  Returns (checks, figures, dataset or None,
    sources {name: digest}).
    """
    from medtwin.infer.diagnostics import plot_vpc, vpc
    from medtwin.infer.validate import plot_calibration, validate
    from medtwin.io.nonmem import read_nonmem
    from medtwin.io.population_file import load_population, shipped_population_path

    if not spec or not spec.get("data"):
        return [Check(_VAL, "comparator data", NOT_AVAILABLE, "the context of use names no comparator data: "
                      "the model has no validation evidence for this context", "comparator data required")], \
            [], None, {}
    path = source_path(spec["data"])
    if path is None:
        return [Check(_VAL, "comparator data", NOT_AVAILABLE, f"{spec['data']} is not installed here: no "
                      "validation evidence", "comparator data required")], [], None, {}
    digest = file_digest(path)
    population = load_population(shipped_population_path(str(spec["population"])))
    dataset = read_nonmem(path, access=access, model=model)
    if spec.get("subjects"):  # the first N subjects only (a cheaper report; the count is stated)
        import dataclasses

        keep = dataset.subjects[: int(spec["subjects"])]
        ids = {s.id for s in keep}
        frame = dataset.frame[dataset.frame[dataset.columns.get("ID", "ID")].isin(ids)]
        dataset = dataclasses.replace(dataset, subjects=keep, frame=frame)
    k, n_draws = int(spec.get("k", 1)), int(spec.get("n_draws", 200))
    try:
        result = validate(population, dataset, k, n_draws=n_draws, seed=seed)
        vp = vpc(population, dataset, model=model, n_sim=int(spec.get("vpc_n_sim", 100)), seed=seed)
    except MedtwinError as exc:
        return [Check(_VAL, "held-out forecasts", FAIL, f"{type(exc).__name__}: {exc}", "runs")], [], dataset, \
            {spec["data"]: digest}
    sources = {spec["data"]: digest}
    n = result.n_observations
    cal = result.calibration
    at = cal[np.isclose(cal["nominal"], result.level)]
    lo, hi = (float(at["lo95"].iloc[0]), float(at["hi95"].iloc[0])) if len(at) else (np.nan, np.nan)
    coverage_ok = n >= goal["min_obs"] and lo <= result.coverage <= hi
    checks = [
        Check(_VAL, "comparator data", PASS, f"{spec['data']} ({digest[:19]}…): {len(dataset.subjects)} subjects, "
              f"{n} held-out observations of {result.n_patients} patients (k = {k} observations personalized on; "
              f"{len(result.skipped)} patients with ≤ k skipped, {len(result.failed)} failed)",
              f"≥ {goal['min_obs']} held-out observations", {"n_observations": n}),
        Check(_VAL, f"held-out {round(100 * result.level)} % interval coverage", PASS if coverage_ok else FAIL,
              f"{result.coverage:.3f} (binomial 95 % range for n = {n}: {lo:.3f}–{hi:.3f}); MAPE of the "
              f"predictive median {result.mape:.1f} %", "inside the binomial range",
              {"coverage": result.coverage, "lo95": lo, "hi95": hi, "mape": result.mape}),
    ]
    inside = (cal["empirical"] >= cal["lo95"]) & (cal["empirical"] <= cal["hi95"])
    status = PASS if bool(inside.all()) else (FAIL if goal["calibration"] else NOT_AVAILABLE)
    checks.append(Check(_VAL, "calibration (all levels)", status,
                        f"{int(inside.sum())} of {len(cal)} nominal levels inside their binomial 95 % range"
                        + ("" if goal["calibration"] or inside.all() else " (not required at this model risk)"),
                        "every level inside its range" if goal["calibration"] else "reported",
                        {"inside": int(inside.sum()), "levels": len(cal)}))
    figures = []
    fig = new_figure(4.2, 3.6)
    plot_calibration(result, ax=fig.add_subplot())
    figures.append(Figure("calibration", f"Calibration of held-out forecasts ({n} observations): empirical vs "
                          "nominal central-interval coverage, binomial 95 % band.", svg_text(fig), sources))
    fig = new_figure(4.2, 3.6)
    ax = fig.add_subplot()
    ax.hist(np.asarray(result.columns["PIT"], dtype=float), bins=10, range=(0.0, 1.0), color="#7a9cc6",
            edgecolor="white")
    ax.axhline(n / 10.0, color="k", ls="--", lw=1)
    ax.set_xlabel("PIT of the held-out observation")
    ax.set_ylabel("count")
    figures.append(Figure("pit", "Probability integral transform of the held-out observations (flat if "
                          "calibrated; dashed: uniform).", svg_text(fig), sources))
    fig = new_figure(6.0, 3.6)
    plot_vpc(vp, ax=fig.add_subplot())
    figures.append(Figure("vpc", "Visual predictive check of the population model on the comparator data "
                          f"({int(spec.get('vpc_n_sim', 100))} simulated replicates).", svg_text(fig), sources))
    return checks, figures, dataset, sources


def applicability_evidence(cou_ranges: Mapping, dataset, goal: Mapping) -> list[Check]:
    """Per COU covariate: its range vs the comparator data's (flagged when it reaches outside)."""
    if dataset is None:
        return [Check(_APP, "covariate ranges", NOT_AVAILABLE, "no comparator data: the COU population is not "
                      "covered by any validation data", "COU inside the validated ranges")]
    checks = []
    for name, bounds in dict(cou_ranges).items():
        lo, hi = (float(b) for b in bounds)
        values = np.array([s.covariates.get(name, np.nan) for s in dataset.subjects], dtype=float)
        if not np.any(np.isfinite(values)):
            checks.append(Check(_APP, f"covariate {name}", FAIL if goal["inside_required"] else NOT_AVAILABLE,
                                f"the comparator data do not record {name}", "recorded and covering the COU"))
            continue
        vlo, vhi = float(np.nanmin(values)), float(np.nanmax(values))
        inside = vlo <= lo and hi <= vhi
        status = PASS if inside else (FAIL if goal["inside_required"] else NOT_AVAILABLE)
        flag = "" if inside else " — OUTSIDE the validated range"
        checks.append(Check(_APP, f"covariate {name}", status,
                            f"COU {lo:g}–{hi:g}; validation data {vlo:g}–{vhi:g}{flag}",
                            "COU range inside the validation data's",
                            {"cou": [lo, hi], "validation": [vlo, vhi], "inside": inside}))
    return checks
