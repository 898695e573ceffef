"""Evaluate a dosing policy on hidden virtual patients from truth models the twin was not built from.

:func:`evaluate` takes truth models (:mod:`medtwin.scenarios.truth`: published models the twin's prior does
not use, or any population file) and policies, and runs one decision scenario per hidden patient:

1. **day 1 on label dosing** (15 mg/kg actual weight rounded to 250 mg, at most 2 g, q12h, or q24h when
   CrCl < 50 mL/min, infused at <= 1 g/h: :func:`medtwin.scenarios.vanco_loop.label_dose`);
2. **two levels** drawn from the true concentrations with assay error (``proportional`` 10 % +
   ``additive`` 0.5 mg/L, normal, floored at ``lloq`` 0.5 mg/L; an assumption for a routine immunoassay):
   the peak 1 h after the end of the last day-1 infusion and the trough 0.5 h before the day-2 dose (23.5 h)
   by default (``EvaluationScenario.sampling``: the first level after the first infusion, or any two times);
3. **one decision** at 24 h: the policy's maintenance regimen (the label policy repeats the label regimen; the
   twin personalizes its prior on the two levels and asks :func:`medtwin.control.dosing.recommend_dose`).

Outcomes per (patient, policy), judged on the truth: the TRUE steady-state AUC24 of the chosen regimen
(:mod:`medtwin.control.steady`, the truth's own model and parameters), in 400-600 mg·h/L, above 600 or 800,
below 400; the twin's predicted steady-state AUC24 distribution for that regimen (its draws) gives the PIT
(the share of draws <= the truth), the 50 % and 90 % central interval coverage and |log(pred median /
true)|; hard-constraint violations.  The summary gives, per policy, attainment (with a Wilson 95 %
interval), counts above 800, calibration (PIT histogram, coverage, median |log error|) and, paired with the
label policy on the same patients, the attainment difference with an exact McNemar p-value and a Wilcoxon
signed-rank p-value on |log(AUC/500)|.  :func:`plot` draws them (PNG).

The policy interface (drug-agnostic): ``policy(patient_covariates, history, levels, start) -> Decision``
where ``levels`` is a list of (time h, value) and ``Decision`` holds the regimen from ``start`` and, for a
model-based policy, a callable giving its predictive draws of the judged metric for that regimen.  A glucose
policy plugs in with the same shape (actions instead of doses, mean glucose instead of AUC24).

Examples
--------
>>> import numpy as np
>>> [round(v, 4) for v in wilson(7, 10)]
[0.3968, 0.8922]
>>> round(pit_coverage(np.array([0.5, 0.1, 0.97]), 0.9), 3)       # central 90 %: PIT in [0.05, 0.95]
0.667
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np

from medtwin.control.dosing import DoseConstraints, _Candidate, candidate_regimen
from medtwin.control.steady import steady_candidate_metrics
from medtwin.control.targets import AUC24Window
from medtwin.core.events import Regimen
from medtwin.errors import DataError

__all__ = ["ASSAY_TWIN", "Decision", "EvaluationScenario", "PolicyResult", "SAMPLING_DESIGNS", "evaluate",
           "label_policy", "level_times", "miss_cause", "pit_coverage", "plot", "reachable", "twin_policy", "wilson"]

TARGET = (400.0, 600.0)
HIGH = 800.0
#: Where the two levels before the decision are drawn: ``"last-peak"`` 1 h after the end of the last infusion
#: before the decision and 0.5 h before it (the classic peak-trough pair); ``"first-peak"`` 1 h after the end of
#: the FIRST infusion and 0.5 h before the decision (the design chosen by :func:`medtwin.scenarios.sampling_design`).
SAMPLING_DESIGNS = ("last-peak", "first-peak")
#: The twin settings chosen by measurement on foreign patients (docs/decisions.md, "Vancomycin attainment on
#: foreign patients"): levels fitted with the laboratory's assay error, every prior's Ω × 4 (flattened), and
#: P(AUC24 > 800) <= 0.25 (the window objective's own tail bound) instead of 0.1.
ASSAY_TWIN = {"residual": "assay", "omega_scale": 4.0, "max_toxic_probability": 0.25}


@dataclass(frozen=True)
class EvaluationScenario:
    """The decision scenario (h, mg, mg/L): label day 1, two levels with assay error, one recommendation.

    ``sampling`` places the two levels: a design of :data:`SAMPLING_DESIGNS` or two times (h) before
    ``decision_h``.
    """

    decision_h: float = 24.0
    proportional: float = 0.10
    additive: float = 0.5
    lloq: float = 0.5
    max_single_mg: float = 3000.0
    max_daily_mg: float = 4500.0
    max_rate_mg_per_h: float = 1000.0
    intervals_h: tuple = (8.0, 12.0, 24.0)
    sampling: object = "last-peak"

    def __post_init__(self):
        if self.decision_h <= 0 or self.proportional < 0 or self.additive < 0 or self.lloq < 0:
            raise DataError("evaluation scenario: decision_h > 0 and non-negative assay error and LLOQ")
        if isinstance(self.sampling, str):
            if self.sampling not in SAMPLING_DESIGNS:
                raise DataError(f"evaluation scenario: sampling must be one of {SAMPLING_DESIGNS} or two times (h), "
                                f"not {self.sampling!r}")
        else:
            try:
                times = tuple(float(t) for t in self.sampling)
            except (TypeError, ValueError):
                times = ()
            if not (len(times) == 2 and all(0.0 < t < self.decision_h for t in times)):
                raise DataError(f"evaluation scenario: sampling times must be two times in (0, decision_h) h, "
                                f"got {self.sampling!r}")
            object.__setattr__(self, "sampling", times)

    def assay_error(self):
        """The laboratory's assay error as a residual error model (combined, ``additive`` mg/L, ``proportional``)."""
        from medtwin.core.observation import ResidualError

        return ResidualError("combined", self.additive, self.proportional)

    def constraints(self) -> DoseConstraints:
        """The hard constraints every policy's maintenance regimen must meet."""
        return DoseConstraints(dose_step_mg=250.0, min_dose_mg=250.0, max_dose_mg=self.max_single_mg,
                               max_daily_mg=self.max_daily_mg, intervals_h=self.intervals_h,
                               max_rate_mg_per_h=self.max_rate_mg_per_h)


@dataclass(frozen=True, eq=False)
class Decision:
    """A policy's maintenance regimen from ``start`` and (model-based policies) its predictive draws."""

    dose_mg: float
    interval_h: float
    infusion_h: float
    predict: Callable | None = None  # () -> draws (n,) of the steady-state AUC24 the policy expects
    info: Mapping = field(default_factory=dict)

    def candidate(self) -> _Candidate:
        return _Candidate(float(self.dose_mg), float(self.interval_h), float(self.infusion_h), 0.0, 0.0)

    def action(self) -> dict:
        return self.candidate().action()


def label_day1(covariates, hours: float) -> Regimen:
    """Label dosing from 0 h up to ``hours`` (every dose before it)."""
    from medtwin.scenarios.vanco_loop import label_dose

    dose, interval = label_dose(covariates)
    return candidate_regimen(_Candidate(dose, interval, max(1.0, dose / 1000.0), 0.0, 0.0), 0.0, hours)


def label_policy(covariates, history, levels, start) -> Decision:
    """Standard of care: keep the label regimen whatever the levels say."""
    from medtwin.scenarios.vanco_loop import label_dose

    dose, interval = label_dose(covariates)
    return Decision(dose, interval, max(1.0, dose / 1000.0), info={"status": "label"})


def twin_policy(prior="vancomycin_goti2018", *, objective: str = "window", aim: str | None = "steady-state",
                n_draws: int = 1000, seed: int = 0, scenario: EvaluationScenario = EvaluationScenario(),
                toxic_auc: float | None = None, max_toxic_probability: float = 0.1, method: str = "laplace",
                residual="population", omega_scale: float = 1.0) -> Callable:
    """The twin: personalize ``prior`` on the levels (Laplace), then :func:`recommend_dose` for AUC24 400-600.

    ``prior`` is a shipped population name, a path, a Population, or a list of them: Bayesian model averaging
    over the candidates (``medtwin.infer.model_averaging.personalize_averaged``; the predictive draws are the
    mixture's, each component with its own model).  ``aim="window"`` with
    ``objective="pta"`` is the single-model baseline of issue 14 (day-3 window, P(AUC > 600) <= 0.1).
    ``toxic_auc`` (default: 600 mg·h/L for ``"pta"``, 800 otherwise, the AKI-risk exposure the harness counts)
    is the AUC24 above which a draw is toxic, with P(toxic) <= ``max_toxic_probability``.
    :data:`ASSAY_TWIN` holds the settings measured best on foreign patients (``twin_policy(prior, **ASSAY_TWIN)``).
    ``method="prior"`` doses from the population prior for the covariates alone (a-priori dosing, no levels).
    ``residual``: the residual error the levels are fitted with: ``"population"`` (each population file's
    published one, which also carries that study's model misfit), ``"assay"`` (the laboratory's assay error the
    scenario states, :meth:`EvaluationScenario.assay_error`), or a
    :class:`~medtwin.core.observation.ResidualError`.  ``omega_scale`` (>= 1) multiplies every prior's Ω: a
    flattened prior (Hughes et al., Clin Pharmacol Ther 2021;109(1):233-242) that lets the patient's levels pull
    further from a population the patient may not belong to.
    """
    from medtwin.control.dosing import recommend_dose
    from medtwin.control.targets import Threshold
    from medtwin.core.data import PatientData
    from medtwin.infer.personalize import personalize
    from medtwin.infer.posterior import Posterior

    if method not in ("laplace", "prior"):
        raise DataError(f"twin policy: method must be laplace or prior, not {method!r}")
    averaged = isinstance(prior, (list, tuple))
    population = [_population(p) for p in prior] if averaged else _population(prior)
    if not (isinstance(omega_scale, (int, float)) and math.isfinite(omega_scale) and omega_scale >= 1.0):
        raise DataError(f"twin policy: omega_scale must be a finite number >= 1, got {omega_scale!r}")
    population = ([_with_residual(p, residual, scenario, omega_scale) for p in population] if averaged
                  else _with_residual(population, residual, scenario, omega_scale))
    if averaged and method == "prior":
        raise DataError("twin policy: method='prior' takes one population, not a list")
    target = AUC24Window(*TARGET)
    toxic_auc = (TARGET[1] if objective == "pta" else HIGH) if toxic_auc is None else toxic_auc
    toxic = Threshold(AUC24Window(), above=toxic_auc)
    constraints = scenario.constraints()

    def policy(covariates, history, levels, start) -> Decision:
        if method == "prior":
            posterior = Posterior.from_prior(population.prior_for(covariates))
        else:
            data = PatientData(history, [t for t, _ in levels], [v for _, v in levels], covariates)
            posterior = (_personalize_averaged(population, data) if averaged
                         else personalize(population, data, method="laplace"))
        rec = recommend_dose(posterior, target, constraints=constraints, objective=objective, toxic=toxic,
                             max_toxic_probability=max_toxic_probability, history=history, start_time=start,
                             n_draws=n_draws, seed=seed, sensitivity=False, aim=aim)
        a = rec.action
        candidate = _Candidate(a["dose_mg"], a["interval_h"], a["infusion_h"], 0.0, 0.0)

        def predict():
            parts = (posterior.component_draws(n_draws, seed) if hasattr(posterior, "component_draws")
                     else [(0, posterior, posterior.sample(n_draws, seed))])
            values = [steady_candidate_metrics(p.model, p.parameter_table(z), AUC24Window(), None, [candidate],
                                               None, 0.25)[0][0] for _, p, z in parts]
            return np.concatenate(values)

        t90 = rec.target.get("time_to_90pct_steady_state", {}).get("median_h")
        t90 = math.inf if t90 is None else t90
        return Decision(a["dose_mg"], a["interval_h"], a["infusion_h"], predict,
                        {"status": str(rec.status), "p_target": rec.probabilities["target"],
                         "time_to_90pct_ss_h": t90})

    return policy


def _with_residual(population, residual, scenario: EvaluationScenario, omega_scale: float = 1.0):
    """``population`` with the residual error the levels are fitted with and Ω · ``omega_scale``."""
    from medtwin.core.observation import ResidualError

    if omega_scale != 1.0:
        population = population.with_values(omega=np.asarray(population.omega, float) * float(omega_scale))
    if isinstance(residual, str) and residual == "population":
        return population
    if isinstance(residual, str) and residual == "assay":
        residual = scenario.assay_error()
    if not isinstance(residual, ResidualError):
        raise DataError(f"twin policy: residual must be 'population', 'assay' or a ResidualError, not {residual!r}")
    own = population.residual
    return population.with_values(residual=ResidualError(residual.model, residual.additive, residual.proportional,
                                                         own.output, own.unit))


def _personalize_averaged(populations, data):
    """Bayesian model averaging over ``populations`` (``medtwin.infer.model_averaging``, Uster et al. 2021)."""
    from medtwin.infer.model_averaging import personalize_averaged

    return personalize_averaged(populations, data)


def _population(prior):
    from medtwin.io.population_file import load_population, shipped_population_path

    if isinstance(prior, str):
        path = prior if prior.endswith((".yaml", ".yml", ".json")) else shipped_population_path(prior)
        return load_population(path)
    return prior


def level_times(history: Regimen, scenario: EvaluationScenario) -> list[float]:
    """The two level times (h) of ``scenario.sampling`` for the day-1 ``history`` (see :data:`SAMPLING_DESIGNS`)."""
    if not isinstance(scenario.sampling, str):
        return sorted(float(t) for t in scenario.sampling)
    doses = [e for e in history.expanded() if e.amount > 0 and e.time < scenario.decision_h]
    dose = doses[0] if scenario.sampling == "first-peak" else doses[-1]
    peak = dose.time + (dose.amount / dose.rate if dose.rate > 0 else 0.0) + 1.0
    return sorted({round(peak, 9), round(scenario.decision_h - 0.5, 9)})


def _levels(patient, history: Regimen, scenario: EvaluationScenario, rng) -> list[tuple[float, float]]:
    times = level_times(history, scenario)
    true = patient.outputs(history, times)["C"]
    noisy = true * (1.0 + scenario.proportional * rng.standard_normal(len(times))) \
        + scenario.additive * rng.standard_normal(len(times))
    return [(float(t), float(max(v, scenario.lloq))) for t, v in zip(times, noisy)]


def reachable(patient, constraints: DoseConstraints) -> bool:
    """True when some allowed maintenance regimen puts the patient's TRUE steady-state AUC24 in 400-600."""
    from medtwin.control.dosing import _candidates

    model = patient.model()
    table = {k: np.array([v]) for k, v in patient.params.items()}
    values = [v[0] for v, _ in steady_candidate_metrics(model, table, AUC24Window(), None, _candidates(constraints),
                                                          None, 0.05)]
    return bool(np.any((np.asarray(values) >= TARGET[0]) & (np.asarray(values) <= TARGET[1])))


def miss_cause(row) -> str:
    """Why a (patient, policy) row missed 400-600 (``""`` when it did not miss).

    ``"unreachable"``: no allowed regimen puts the TRUE steady-state AUC24 in 400-600 (dose limits);
    ``"aim"``: the policy's own predicted median under its regimen lies outside the margin window 420-580
    (the objective did not centre it); ``"prediction"``: the predicted median was inside 420-580 but the truth
    was not (prediction error); ``"no prediction"``: a policy without predictive draws (label).
    """
    if row["in_target"]:
        return ""
    if not row["reachable"]:
        return "unreachable"
    median = row.get("pred_median", math.nan)
    if median is None or not np.isfinite(median):
        return "no prediction"
    return "aim" if not 420.0 <= median <= 580.0 else "prediction"


def true_steady_auc(patient, decision: Decision) -> float:
    """The patient's TRUE steady-state AUC24 (mg·h/L) under the decision's maintenance regimen."""
    model = patient.model()
    table = {k: np.array([v]) for k, v in patient.params.items()}
    (values, _), = steady_candidate_metrics(model, table, AUC24Window(), None, [decision.candidate()], None, 0.05)
    return float(values[0])


@dataclass(frozen=True, eq=False)
class PolicyResult:
    """Per-(patient, policy) rows (``frame``), the per-policy ``summary`` and the paired statistics."""

    frame: object
    summary: object
    pit: Mapping[str, np.ndarray]

    def table(self) -> str:
        return self.summary.to_string(float_format=lambda v: f"{v:.3f}")


def _row(patient, name, decision: Decision, true_auc, constraints, can_reach: bool = True) -> dict:
    row = {"truth": patient.truth, "patient": patient.id, "policy": name, **{k.lower(): patient.covariates[k]
           for k in ("CRCL", "WT", "AGE")}, **decision.action(), "true_ss_auc24": true_auc,
           "in_target": float(TARGET[0] <= true_auc <= TARGET[1]), "above_600": float(true_auc > TARGET[1]),
           "above_800": float(true_auc > HIGH), "below_400": float(true_auc < TARGET[0]),
           "violations": len(constraints.violations(decision.action())), "status": decision.info.get("status", ""),
           "time_to_90pct_ss_h": decision.info.get("time_to_90pct_ss_h", math.nan), "reachable": can_reach}
    if decision.predict is not None:
        draws = np.asarray(decision.predict(), float)
        draws = draws[np.isfinite(draws)]
        median = float(np.median(draws))
        row.update(pred_median=median, pit=float(np.mean(draws <= true_auc)),
                   abs_log_error=abs(math.log(median / true_auc)),
                   pred_p05=float(np.quantile(draws, 0.05)), pred_p95=float(np.quantile(draws, 0.95)))
    row["miss_cause"] = miss_cause(row)
    return row


def evaluate(truths: Sequence, policies: Mapping[str, Callable], *, n_patients: int = 30, seed: int = 0,
             scenario: EvaluationScenario = EvaluationScenario(), progress=None) -> PolicyResult:
    """Run every policy on ``n_patients`` hidden patients split over ``truths`` (paired: same patient, same levels).

    Parameters
    ----------
    truths : sequence
        Truth models (``sample(n, seed) -> list[TruePatient]``) or names/paths for
        :func:`medtwin.scenarios.truth.truth_model`.
    policies : mapping
        Policy name -> ``policy(covariates, history, levels, start) -> Decision``; include ``"label"`` for the
        paired statistics.
    n_patients : int
        Patients in all (split as evenly as possible over the truths, >= 1 each).
    """
    import pandas as pd

    from medtwin.scenarios.truth import truth_model

    if not truths:
        raise DataError("evaluate: give at least one truth model")
    if not policies:
        raise DataError("evaluate: give at least one policy")
    if int(n_patients) < len(truths):
        raise DataError(f"evaluate: n_patients ({n_patients}) must be >= the number of truth models ({len(truths)})")
    models = [truth_model(t) for t in truths]
    counts = [int(n_patients) // len(models) + (1 if k < int(n_patients) % len(models) else 0)
              for k in range(len(models))]
    constraints = scenario.constraints()
    rows, done, total = [], 0, int(n_patients) * len(policies)
    for m, (truth, count) in enumerate(zip(models, counts)):
        for patient in truth.sample(count, seed=seed + 1000 * m):
            history = label_day1(patient.covariates, scenario.decision_h)
            levels = _levels(patient, history, scenario, np.random.default_rng([seed, m, patient.id, 5]))
            can_reach = reachable(patient, constraints)
            for name, policy in policies.items():
                decision = policy(dict(patient.covariates), history, levels, scenario.decision_h)
                rows.append(_row(patient, name, decision, true_steady_auc(patient, decision), constraints,
                                 can_reach))
                done += 1
                if progress is not None:
                    progress(done, total)
    frame = pd.DataFrame(rows)
    frame["patient"] = frame["truth"] + ":" + frame["patient"].astype(str)
    pit = {p: frame.loc[frame.policy == p, "pit"].to_numpy(float) for p in policies if "pit" in frame
           and frame.loc[frame.policy == p, "pit"].notna().any()}
    return PolicyResult(frame, summarize(frame, list(policies)), pit)


def wilson(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson score 95 % interval of a proportion k/n."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (centre - half, centre + half)


def pit_coverage(pit: np.ndarray, level: float) -> float:
    """Share of PIT values inside the central ``level`` interval, i.e. in [(1 − level)/2, (1 + level)/2]."""
    lo, hi = (1.0 - level) / 2.0, (1.0 + level) / 2.0
    pit = np.asarray(pit, float)
    return float(np.mean((pit >= lo) & (pit <= hi)))


def _mcnemar(a: np.ndarray, b: np.ndarray) -> float:
    """Exact two-sided McNemar p-value of paired binary outcomes."""
    from scipy.stats import binomtest

    up, down = int(np.sum((a == 1) & (b == 0))), int(np.sum((a == 0) & (b == 1)))
    return float(binomtest(up, up + down, 0.5).pvalue) if up + down else 1.0


def summarize(frame, policies: Sequence[str], reference: str = "label"):
    """Per policy: attainment (Wilson CI), safety counts, calibration and the paired comparison with ``reference``."""
    import pandas as pd
    from scipy.stats import wilcoxon

    out = {}
    wide = {m: frame.pivot(index="patient", columns="policy", values=m) for m in ("in_target", "true_ss_auc24")}
    for policy in policies:
        part = frame[frame.policy == policy]
        n, k = len(part), int(part.in_target.sum())
        lo, hi = wilson(k, n)
        row = {"n": n, "attainment": k / n, "attainment_lo95": lo, "attainment_hi95": hi,
               "n_above_800": int(part.above_800.sum()), "share_above_600": float(part.above_600.mean()),
               "share_below_400": float(part.below_400.mean()), "violations": int(part.violations.sum()),
               "median_true_auc": float(part.true_ss_auc24.median()),
               **{f"miss_{c}": int((part.miss_cause == c).sum()) for c in ("unreachable", "aim", "prediction")}}
        if "pit" in part and part.pit.notna().any():
            pit = part.pit.to_numpy(float)
            row.update(median_abs_log_error=float(part.abs_log_error.median()), coverage_50=pit_coverage(pit, 0.5),
                       coverage_90=pit_coverage(pit, 0.9), pit_histogram=np.histogram(pit, bins=5,
                                                                                       range=(0, 1))[0].tolist())
        if reference in wide["in_target"] and policy != reference:
            a, b = wide["in_target"][policy].to_numpy(), wide["in_target"][reference].to_numpy()
            row["paired_attainment_difference"] = float(np.mean(a - b))
            row["mcnemar_p"] = _mcnemar(a, b)
            da = np.abs(np.log(wide["true_ss_auc24"][policy].to_numpy() / 500.0))
            db = np.abs(np.log(wide["true_ss_auc24"][reference].to_numpy() / 500.0))
            diff = (da - db)[np.abs(da - db) > 1e-12]
            row["wilcoxon_p_abs_log_auc500"] = float(wilcoxon(diff).pvalue) if diff.size >= 6 else math.nan
        out[policy] = row
    return pd.DataFrame.from_dict(out, orient="index")


def plot(result: PolicyResult, path) -> None:
    """Attainment per policy, true steady-state AUC24 per patient, PIT histograms, predicted vs true (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frame, summary = result.frame, result.summary
    policies = list(summary.index)
    fig, axes = plt.subplots(2, 2, figsize=(12, 9))
    ax = axes[0, 0]
    attained = summary["attainment"].to_numpy(float)
    ax.bar(policies, attained, yerr=[attained - summary["attainment_lo95"].to_numpy(float),
                                     summary["attainment_hi95"].to_numpy(float) - attained], capsize=4)
    ax.set_ylabel("share with true SS AUC24 in 400-600")
    ax.set_ylim(0, 1)
    ax.tick_params(axis="x", labelrotation=20)
    ax = axes[0, 1]
    for k, policy in enumerate(policies):
        values = frame.loc[frame.policy == policy, "true_ss_auc24"].to_numpy(float)
        ax.scatter(np.full(values.size, k) + np.linspace(-0.2, 0.2, values.size), values, s=12)
    ax.axhspan(*TARGET, color="green", alpha=0.12)
    ax.axhline(HIGH, color="red", lw=0.8, ls="--")
    ax.set_xticks(range(len(policies)), policies, rotation=20)
    ax.set_yscale("log")
    ax.set_ylabel("true steady-state AUC24 (mg·h/L)")
    ax = axes[1, 0]
    for policy, pit in result.pit.items():
        ax.hist(pit, bins=10, range=(0, 1), histtype="step", lw=1.5, label=policy)
    ax.axhline(max((len(p) for p in result.pit.values()), default=0) / 10, color="k", lw=0.8, ls=":")
    ax.set_xlabel("PIT of the true SS AUC24 in the twin's predictive draws")
    if result.pit:
        ax.legend(fontsize=8)
    ax = axes[1, 1]
    for policy in result.pit:
        part = frame[frame.policy == policy]
        ax.scatter(part.true_ss_auc24, part.pred_median, s=14, label=policy)
    lims = [100, 3000]
    ax.plot(lims, lims, "k--", lw=0.8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("true SS AUC24")
    ax.set_ylabel("predicted median SS AUC24")
    if result.pit:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
