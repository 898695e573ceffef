"""Arm runners: one scenario's patients under one arm's policy, endpoints out (trajectories dropped).

=============  ===============  =======================================================================
scenario       policy           what the arm does
=============  ===============  =======================================================================
``pk``         ``fixed``        a fixed regimen (``dose_mg``, ``interval_h``, ``n``, ``duration_h``) on the
                                truth population's linear model, all patients of the chunk in one batched
                                ``simulate``; endpoints over ``settings.window`` [h]
``vancomycin`` ``label``        label dosing, 15 mg/kg q12h (q24h if CrCl < 50)
                                (:func:`medtwin.scenarios.vanco_loop.label_policy`)
``vancomycin`` ``twin``         the twin personalizes on simulated measured troughs/peaks and recommends
                                (:func:`medtwin.scenarios.vanco_loop.twin_policy`; options ``n_draws``,
                                ``max_toxic_probability``)
``vancomycin`` ``fixed``        ``dose_mg`` every ``interval_h`` whatever the levels
``glucose``    ``protocol``     the JBDS variable-rate insulin scale
                                (:func:`medtwin.scenarios.glucose_loop.sliding_scale_policy`)
``glucose``    ``twin_mpc``     twin (UKF) + MPC (:func:`medtwin.scenarios.glucose_loop.twin_policy` with
                                :func:`medtwin.scenarios.evaluation.default_glucose_controller`; options
                                ``n_draws``, ``horizon``)
=============  ===============  =======================================================================

The vancomycin truth is the population of ``truth`` (one compartment, ``pk1_iv``: CL in L/h, V in L), the
twin's prior the Goti (2018) two-compartment model: a deliberate misspecification, as in
:mod:`medtwin.scenarios.vanco_loop`.  The glucose truth is a Bergman-minimal-model patient whose
parameters come from ``truth`` and whose hourly insulin-sensitivity walk
(:func:`medtwin.scenarios.glucose_patients.si_walk`) reads the patient's own stream.

A patient whose simulation or policy raises gets status ``"failed: <error>"`` and NaN endpoints: the
trial goes on.

Examples
--------
>>> _fixed_regimen({"dose_mg": 1000.0, "interval_h": 12.0, "duration_h": 1.0}, 0.0, 24.0).total_amount()
2000.0
>>> _failed(FloatingPointError("overflow"))
'failed: FloatingPointError: overflow'
"""

from __future__ import annotations

import math

import numpy as np

from medtwin.errors import DataError
from medtwin.trials.cohort import normals
from medtwin.trials.endpoints import glucose_endpoints, pk_endpoints, scenario_endpoints, vanco_endpoints

__all__ = ["POLICIES", "run_arm"]

POLICIES = {"pk": ("fixed",), "vancomycin": ("label", "twin", "fixed"), "glucose": ("protocol", "twin_mpc")}
_VANCO_SETTINGS = ("days", "decision_every_h", "level_delay_h", "proportional_error", "additive_error")
_GLUCOSE_SETTINGS = ("hours", "measure_every_h", "delay_h", "enteral_g_per_h", "insulin_max", "max_change",
                     "target_low", "target_high", "reference", "measurement_cv")


def check_arms(spec) -> None:
    """Raise DataError naming the arm whose policy the scenario does not know."""
    for arm in spec.arms:
        if arm.policy not in POLICIES[spec.scenario]:
            raise DataError(f"trial.arms {arm.name}: policy {arm.policy!r} is not one of {POLICIES[spec.scenario]} "
                            f"for scenario {spec.scenario!r}")


def _failed(exc: Exception) -> str:
    return f"failed: {type(exc).__name__}: {exc}"[:160]


def _fixed_regimen(options: dict, start: float = 0.0, until: float | None = None):
    from medtwin.core.events import Regimen

    dose, interval = float(options["dose_mg"]), float(options.get("interval_h", 24.0))
    n = int(options.get("n", 1)) if until is None else max(1, int(math.ceil((until - start) / interval - 1e-9)))
    extra = {"duration": float(options["duration_h"])} if options.get("duration_h") else {}
    return Regimen.every(interval, "h", dose, "mg", n=n, start=start, **extra)


def _run_pk(spec, arm, covariates, theta, ids, seed):
    from medtwin.core.simulate import simulate
    from medtwin.models import get_model

    population = spec_truth(spec)
    window = tuple(float(v) for v in spec.settings.get("window", (0.0, 24.0)))
    target = tuple(float(v) for v in spec.settings.get("target", (400.0, 600.0)))
    grid = np.arange(0.0, window[1] + 1e-9, float(spec.settings.get("step_h", 0.05)))
    n = len(ids)
    status = np.array(["ok"] * n, dtype=object)
    try:
        trajectory = simulate(get_model(population.model), theta, _fixed_regimen(arm.options), grid)
        c = np.asarray(trajectory.output(population.residual.output), float).reshape(n, len(grid))
        out = pk_endpoints(grid, c, window, target)
        bad = ~np.isfinite(out["auc"])
        status[bad] = "failed: non-finite concentrations"
    except Exception as exc:  # the whole arm of this chunk failed numerically: every patient says so
        out = {k: np.full(n, np.nan) for k in scenario_endpoints("pk")}
        status[:] = _failed(exc)
    return out, status


def _vanco_runner(spec, arm, seed):
    from medtwin.scenarios import vanco_loop

    scenario = vanco_loop.VancoScenario(**{k: spec.settings[k] for k in _VANCO_SETTINGS if k in spec.settings})
    if arm.policy == "label":
        policy = vanco_loop.label_policy
    elif arm.policy == "twin":
        policy = vanco_loop.twin_policy(scenario, n_draws=int(arm.options.get("n_draws", 1000)),
                                        max_toxic_probability=float(arm.options.get("max_toxic_probability", 0.1)),
                                        seed=seed)
    else:
        def policy(covariates, now, history, levels, until):
            return _fixed_regimen(arm.options, now, until), "fixed"
    return scenario, policy


def _run_vancomycin(spec, arm, covariates, theta, ids, seed):
    from medtwin.scenarios.vanco_loop import VancoPatient, run_vanco_patient

    scenario, policy = _vanco_runner(spec, arm, seed)
    rows, status = [], []
    for k, pid in enumerate(ids):
        patient = VancoPatient(int(pid), float(covariates["CRCL"][k]), float(covariates["WT"][k]),
                               float(theta["CL"][k]), float(theta["V"][k]))
        try:
            outcome = run_vanco_patient(patient, policy, scenario, name=arm.name, seed=seed)
            rows.append(vanco_endpoints(outcome.auc24, outcome.total_g, low=scenario.target_low,
                                        high=scenario.target_high))
            status.append("ok")
        except Exception as exc:
            rows.append({})
            status.append(_failed(exc))
    return _columns(rows, "vancomycin"), np.array(status, dtype=object)


class _Innovations:
    """Hands :func:`si_walk` a patient's own pre-drawn normals (so the walk depends on (seed, patient) only)."""

    def __init__(self, values):
        self.values = values

    def standard_normal(self, n):
        return self.values[:n]


def _run_glucose(spec, arm, covariates, theta, ids, seed):
    from medtwin.scenarios import glucose_loop
    from medtwin.scenarios.glucose_patients import SyntheticICUPatient, si_walk

    scenario = glucose_loop.GlucoseScenario(**{k: spec.settings[k] for k in _GLUCOSE_SETTINGS
                                               if k in spec.settings})
    hours = int(math.ceil(scenario.hours)) + 1
    if arm.policy == "protocol":
        policy = glucose_loop.sliding_scale_policy
    else:
        from medtwin.scenarios.evaluation import default_glucose_controller
        from medtwin.scenarios.icu import control_twin_spec

        factory = default_glucose_controller(scenario, n_draws=int(arm.options.get("n_draws", 100)),
                                             horizon=int(arm.options.get("horizon", 8)))
        policy = glucose_loop.twin_policy(scenario, factory, control_twin_spec(), stop_below=scenario.target_low)
    truth = spec_truth(spec)
    from medtwin.models import get_model

    typical = {p.name: p.value for p in get_model(truth.model).parameters}
    step_sd = float(spec.settings.get("si_step_sd", 0.2))
    reversion = float(spec.settings.get("si_reversion", 0.95))
    rows, status = [], []
    for k, pid in enumerate(ids):
        try:
            eps = normals(seed, "siwalk", int(pid), int(pid) + 1, hours)[0]
            walk = si_walk(_Innovations(eps), hours, step_sd=step_sd, reversion=reversion)
            params = {**typical, **{p: float(v[k]) for p, v in theta.items()}}
            patient = SyntheticICUPatient(int(pid), truth.model, params, walk, scenario.measurement_cv)
            outcome = glucose_loop.run_glucose_patient(patient, policy, scenario, name=arm.name, seed=seed)
            rows.append(glucose_endpoints(outcome.glucose, outcome.insulin_units,
                                          (scenario.target_low, scenario.target_high)))
            status.append("ok")
        except Exception as exc:
            rows.append({})
            status.append(_failed(exc))
    return _columns(rows, "glucose"), np.array(status, dtype=object)


def _columns(rows: list, scenario: str) -> dict:
    return {name: np.array([r.get(name, np.nan) for r in rows], dtype=float) for name in scenario_endpoints(scenario)}


_TRUTH: dict = {}


def spec_truth(spec):
    """The truth Population of a spec (a shipped population's name or an inline mapping), cached per spec name."""
    from medtwin.core.population import Population

    source = spec.data["truth"]["population"]
    key = (spec.name, repr(source))
    if key not in _TRUTH:
        if isinstance(source, str):
            from medtwin.io.population_file import load_population, shipped_population_path

            _TRUTH[key] = load_population(shipped_population_path(source))
        else:
            _TRUTH[key] = Population.from_dict(source)
    return _TRUTH[key]


def run_arm(spec, arm, covariates: dict, theta: dict, ids, seed: int):
    """Endpoints (name -> array (n,)) and statuses (n,) of patients ``ids`` under ``arm``."""
    runner = {"pk": _run_pk, "vancomycin": _run_vancomycin, "glucose": _run_glucose}[spec.scenario]
    return runner(spec, arm, covariates, theta, np.asarray(ids), seed)
