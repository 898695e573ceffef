"""Ready chunk functions for :func:`medtwin.trials.execution.map_patients` (benchmarks, tests, examples).

Each workload is a frozen dataclass; an instance is the chunk function (``workload(start, stop)``), picklable
because its class is module-level.  Patient ``i``'s covariates and random effects come from
:func:`~medtwin.trials.execution.patient_normals` keyed by ``(seed, i)``, so results do not depend on the
chunking.  Endpoints are on day ``day`` of a regimen stopped before the dose at the end of that day.

:class:`VancomycinWorkload` — linear PK (exact solution): vancomycin 2-compartment IV infusions, the Goti 2018
population (shipped population file: covariate effects of CrCl and weight, log-normal IIV on CL, V1, V2),
covariates weight and CrCl log-normal and correlated (ρ = 0.4).  Endpoints: ``auc24`` (mg·h/L, exact by mass
balance: AUC = (dose in − Δ amount in body) / CL, elimination being CL·C from the central compartment),
``cmax`` (mg/L, end of the day's infusions, where a linear infusion model peaks), ``ctrough`` (mg/L, end of
the day), ``attained`` (1 when auc24 is inside ``target``), ``crcl`` (mL/min), ``weight`` (kg).

:class:`NonlinearWorkload` — the engine benchmark's W2 model ``pk2_oral_mm_effect_idr3`` (Michaelis–Menten
elimination, effect compartment, indirect response III biomarker; adaptive Dormand–Prince), oral doses,
log-normal IIV (``cv``) on ten parameters.  Endpoints: ``auc24`` (Simpson's rule on a 0.25 h grid, dose
times on panel boundaries), ``cmax`` (grid maximum), ``ctrough``, ``r_end`` (biomarker at the end of the day)
and ``responder`` (1 when r_end >= ``response`` × R0).

Both have ``parameters(start, stop)`` (the draws, a dict name -> (n,) array) and ``endpoints(params)``:
patients whose parameters are non-finite or outside the model's bounds get status
:data:`~medtwin.trials.execution.INVALID_PARAMETERS` and NaN endpoints; the others are simulated.

Examples
--------
>>> w = VancomycinWorkload(seed=1)
>>> r = w(0, 3)
>>> sorted(r), r["status"].tolist()
(['attained', 'auc24', 'cmax', 'crcl', 'ctrough', 'status', 'weight'], [0, 0, 0])
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from medtwin.core.events import Regimen
from medtwin.core.simulate import simulate
from medtwin.errors import SimulationError
from medtwin.models import get_model
from medtwin.trials.execution import INVALID_PARAMETERS, NON_FINITE_ENDPOINT, patient_normals

__all__ = ["NonlinearWorkload", "VancomycinWorkload", "reference_endpoints", "valid_rows"]

W2_VARIED = ("KA", "VMAX", "KM", "V1", "Q", "V2", "KE0", "EC50", "KOUT", "SC50")


@lru_cache(maxsize=4)
def _population(name: str):
    """A shipped population, loaded once per process (workers reuse it from chunk to chunk)."""
    from medtwin.io.population_file import load_population, shipped_population_path

    return load_population(shipped_population_path(name))


@lru_cache(maxsize=8)
def _model(name: str):
    """A library model with its numba callbacks built once per process, from the on-disk cache when there.

    A worker process is a process edge: like the command line it reads compiled callbacks from
    ``$MEDTWIN_HOME`` (:func:`medtwin.io.jax_cache.warm_model_callbacks`) instead of compiling them again.
    """
    from medtwin.io.jax_cache import warm_model_callbacks

    model = get_model(name)
    warm_model_callbacks(model)
    return model


def _warm_blocks(model, n: int) -> None:
    """A chunk big enough for the block kernel: its callbacks from ``$MEDTWIN_HOME`` (compiled there once)."""
    from medtwin.core.block_dopri import MIN_PATIENTS
    from medtwin.io.jax_cache import warm_block_callbacks

    if n >= MIN_PATIENTS:
        warm_block_callbacks(model)


def valid_rows(model, params: dict) -> np.ndarray:
    """Boolean (n,): every parameter of the patient finite and inside the model's bounds.

    Examples
    --------
    >>> valid_rows(get_model("pk1_iv"), {"CL": np.array([1.0, np.nan, -2.0]), "V": np.array([1.0, 2.0, 3.0])})
    array([ True, False, False])
    """
    n = len(next(iter(params.values())))
    ok = np.ones(n, bool)
    for name, values in params.items():
        par = model.parameter(name)
        values = np.asarray(values, dtype=float)
        ok &= np.isfinite(values) & (values >= par.lower) & (values <= par.upper)
    return ok


def _check_day(day: int, interval: float, extra: str = "") -> None:
    if not (isinstance(day, int) and day >= 1):
        raise SimulationError(f"day must be an integer >= 1, got {day!r}")
    if not (interval > 0 and (24.0 / interval).is_integer()):
        raise SimulationError(f"interval must divide 24 h, got {interval!r} h{extra}")


def _finish(out: dict, status: np.ndarray, names) -> dict:
    """Patients with a non-finite endpoint get NON_FINITE_ENDPOINT; status goes last."""
    bad = (status == 0) & ~np.all([np.isfinite(out[k]) for k in names], axis=0)
    status[bad] = NON_FINITE_ENDPOINT
    out["status"] = status
    return out


@dataclass(frozen=True)
class VancomycinWorkload:
    """Linear PK chunk function: vancomycin (Goti 2018), ``dose`` mg every ``interval`` h infused over ``duration`` h.

    Attributes
    ----------
    seed : int
        Random seed of the cohort (covariates: stream 0; random effects: stream 1).
    dose, interval, duration : float
        mg, h, h (``interval`` divides 24; ``duration`` < ``interval``).
    day : int
        Endpoint day (1-based; day 3 is 48–72 h).
    target : (float, float)
        AUC24 window in mg·h/L (ASHP/IDSA 2020: 400–600).
    threads : int
        numba threads inside one chunk (1 on Dask workers; results do not depend on it).
    """

    seed: int = 2026
    dose: float = 1000.0
    interval: float = 12.0
    duration: float = 1.0
    day: int = 3
    target: tuple[float, float] = (400.0, 600.0)
    threads: int = 1

    def __post_init__(self):
        _check_day(self.day, self.interval)
        if not (0 < self.duration < self.interval) or not self.dose > 0:
            raise SimulationError(f"need dose > 0 mg and 0 < duration < interval h, got dose {self.dose}, "
                                  f"duration {self.duration}, interval {self.interval}")

    def parameters(self, start: int, stop: int) -> dict:
        """Covariates and individual parameters of patients ``start..stop-1`` (dict of (n,) arrays)."""
        z = patient_normals(self.seed, start, stop, 2, stream=0)
        log_wt = np.log(75.0) + 0.2 * z[:, 0]
        log_crcl = np.log(90.0) + 0.45 * (0.4 * z[:, 0] + np.sqrt(1 - 0.4**2) * z[:, 1])
        weight = np.clip(np.exp(log_wt), 40.0, 200.0)
        crcl = np.clip(np.exp(log_crcl), 10.0, 250.0)
        population = _population("vancomycin_goti2018")
        eta = patient_normals(self.seed, start, stop, len(population.iiv), stream=1) @ \
            np.linalg.cholesky(population.omega).T
        theta = population.individual_parameters({"CRCL": crcl, "WT": weight, "DIAL": np.zeros_like(crcl)}, eta)
        return {"crcl": crcl, "weight": weight, **{k: np.asarray(v, float) for k, v in theta.items()}}

    def endpoints(self, params: dict) -> dict:
        """Endpoints (module docstring) of patients with parameters ``params`` (CL, V1, Q, V2: (n,) arrays)."""
        model = _model("vancomycin_goti2018")
        names = model.parameter_names
        theta = dict(zip(names, np.broadcast_arrays(*(np.atleast_1d(np.asarray(params[k], float)) for k in names))))
        n = len(theta["CL"])
        t0, t1 = 24.0 * (self.day - 1), 24.0 * self.day
        per_day = int(round(24.0 / self.interval))
        peaks = t0 + np.arange(per_day) * self.interval + self.duration
        times = np.concatenate([[t0], peaks, [t1]])
        regimen = Regimen.every(self.interval, "h", self.dose, "mg", n=per_day * self.day, duration=self.duration)
        out = {k: np.full(n, np.nan) for k in ("auc24", "cmax", "ctrough")}
        status = np.full(n, INVALID_PARAMETERS, np.int64)
        ok = valid_rows(model, theta)
        if ok.any():
            tr = simulate(model, {k: v[ok] for k, v in theta.items()}, regimen, times, keep_states=True,
                          threads=self.threads)
            amount = tr.states.sum(axis=1).reshape(tr.shape)  # central + peripheral, mg
            given = self.dose * per_day
            out["auc24"][ok] = (given - (amount[:, -1] - amount[:, 0])) / theta["CL"][ok]
            conc = tr.output("C")
            out["cmax"][ok] = conc[:, 1:-1].max(axis=1)
            out["ctrough"][ok] = conc[:, -1]
            status[ok] = tr.status
        lo, hi = self.target
        out["attained"] = ((out["auc24"] >= lo) & (out["auc24"] <= hi)).astype(np.int8)
        out["crcl"] = np.asarray(params.get("crcl", np.full(n, np.nan)), float)
        out["weight"] = np.asarray(params.get("weight", np.full(n, np.nan)), float)
        return _finish(out, status, ("auc24", "cmax", "ctrough"))

    def __call__(self, start: int, stop: int) -> dict:
        return self.endpoints(self.parameters(start, stop))


@dataclass(frozen=True)
class NonlinearWorkload:
    """Nonlinear chunk function: ``pk2_oral_mm_effect_idr3`` (W2), ``dose`` mg orally every ``interval`` h.

    Attributes
    ----------
    seed : int
        Random seed (random effects: stream 2).
    dose, interval : float
        mg, h (``interval`` divides 24 and is a multiple of 0.5 h).
    day : int
        Endpoint day.
    cv : float
        Coefficient of variation of the log-normal IIV on the ten parameters of ``W2_VARIED``.
    response : float
        A responder has R(end of day) >= response × R0.
    rtol, atol : float
        Dormand–Prince tolerances.
    threads : int
        numba threads inside one chunk.
    """

    seed: int = 2026
    dose: float = 100.0
    interval: float = 12.0
    day: int = 3
    cv: float = 0.3
    response: float = 1.5
    rtol: float = 1e-7
    atol: float = 1e-9
    threads: int = 1

    def __post_init__(self):
        _check_day(self.day, self.interval)
        if not (2 * self.interval).is_integer():
            raise SimulationError(f"interval must be a multiple of 0.5 h, got {self.interval}")
        if not (self.dose > 0 and self.cv >= 0):
            raise SimulationError(f"need dose > 0 mg and cv >= 0, got dose {self.dose}, cv {self.cv}")

    def parameters(self, start: int, stop: int) -> dict:
        """Individual parameters of patients ``start..stop-1`` (the ten varied ones; the rest typical)."""
        model = get_model("pk2_oral_mm_effect_idr3")
        sd = np.sqrt(np.log1p(self.cv**2))
        z = patient_normals(self.seed, start, stop, len(W2_VARIED), stream=2)
        return {k: model.parameter(k).value * np.exp(sd * z[:, j]) for j, k in enumerate(W2_VARIED)}

    def endpoints(self, params: dict) -> dict:
        """Endpoints (module docstring) of patients with parameters ``params`` (dict of (n,) arrays)."""
        model = _model("pk2_oral_mm_effect_idr3")
        n = len(next(iter(params.values())))
        t0, t1 = 24.0 * (self.day - 1), 24.0 * self.day
        grid = t0 + 0.25 * np.arange(97)
        regimen = Regimen.every(self.interval, "h", self.dose, "mg", n=int(round(24.0 / self.interval)) * self.day)
        out = {k: np.full(n, np.nan) for k in ("auc24", "cmax", "ctrough", "r_end")}
        status = np.full(n, INVALID_PARAMETERS, np.int64)
        ok = valid_rows(model, params)
        if ok.any():
            _warm_blocks(model, int(ok.sum()))
            tr = simulate(model, {k: np.asarray(v, float)[ok] for k, v in params.items()}, regimen, grid,
                          rtol=self.rtol, atol=self.atol, keep_states=False, threads=self.threads)
            c = tr.output("C")
            weights = np.ones(97)
            weights[1:-1:2], weights[2:-1:2] = 4.0, 2.0
            out["auc24"][ok] = c @ weights * (0.25 / 3.0)
            out["cmax"][ok] = c.max(axis=1)
            out["ctrough"][ok] = c[:, -1]
            out["r_end"][ok] = tr.output("R")[:, -1]
            status[ok] = tr.status
        r0 = np.asarray(params.get("R0", model.parameter("R0").value), float)
        out["responder"] = (out["r_end"] >= self.response * r0).astype(np.int8)
        return _finish(out, status, ("auc24", "cmax", "ctrough", "r_end"))

    def __call__(self, start: int, stop: int) -> dict:
        return self.endpoints(self.parameters(start, stop))


def reference_endpoints(workload, params: dict, *, method: str = "RK45", rtol: float = 1e-7,
                        atol: float = 1e-9) -> dict:
    """The naive per-patient loop: ``scipy.integrate.solve_ivp`` on the model's own vector field, patient by patient.

    The baseline of ``benchmarks/trial.py`` and the independent reference of the tests: AUC24 is the exact
    integral of C (an extra state), not mass balance or Simpson's rule; the peaks and the trough are read at
    the workload's times.  Returns the endpoint columns of ``workload.endpoints`` (without ``status``,
    ``attained``/``responder``, covariates), for valid patients only (NaN otherwise).

    Examples
    --------
    >>> w = VancomycinWorkload(seed=1)
    >>> ref = reference_endpoints(w, w.parameters(0, 2), rtol=1e-10, atol=1e-10)
    >>> bool(np.allclose(ref["auc24"], w(0, 2)["auc24"], rtol=1e-6))
    True
    """
    from scipy.integrate import solve_ivp

    linear = isinstance(workload, VancomycinWorkload)
    model = get_model("vancomycin_goti2018" if linear else "pk2_oral_mm_effect_idr3")
    names = model.parameter_names
    n = len(next(iter(params.values())))
    table = np.column_stack([np.broadcast_to(np.asarray(params.get(k, model.parameter(k).value), float), (n,))
                             for k in names])
    rhs, init, conc = model.rhs(), model.init(), model.output_functions()[model.output_names.index("C")]
    t0, t1 = 24.0 * (workload.day - 1), 24.0 * workload.day
    doses = np.arange(int(round(24.0 / workload.interval)) * workload.day) * workload.interval
    if linear:
        duration = workload.duration
        read = t0 + np.arange(len(doses) // workload.day) * workload.interval + duration
        cmt = 0
    else:
        duration = 0.0
        read = t0 + 0.25 * np.arange(97)
        cmt = model.state_names.index("DEPOT")
    breaks = np.unique(np.concatenate([doses, doses + duration if duration else [], [t0, t1]]))
    breaks = breaks[breaks <= t1]
    keys = ("auc24", "cmax", "ctrough") + (() if linear else ("r_end",))
    out = {k: np.full(n, np.nan) for k in keys}
    ok = valid_rows(model, {k: table[:, j] for j, k in enumerate(names)})
    for i in np.flatnonzero(ok):
        p = tuple(table[i])

        def f(t, y, rate):
            dx = list(rhs(t, y[:-1], p))
            dx[cmt] += rate
            return dx + [conc(y[:-1], p)]

        y = np.array(list(init(p)) + [0.0])
        seen, auc_t0 = {}, 0.0
        for a, b in zip(breaks[:-1], breaks[1:]):
            if not linear and a in doses:
                y[cmt] += workload.dose
            rate = workload.dose / duration if linear and any(d <= a < d + duration for d in doses) else 0.0
            if a == t0:
                auc_t0 = y[-1]
            if a in read:  # after a bolus at the same time, as simulate reads
                seen[a] = conc(y[:-1], p)
            inside = read[(read > a) & (read < b)]
            sol = solve_ivp(f, (a, b), y, method=method, rtol=rtol, atol=atol, t_eval=np.append(inside, b),
                            args=(rate,))
            for t, col in zip(inside, sol.y.T):
                seen[t] = conc(col[:-1], p)
            y = sol.y[:, -1].copy()
        seen[t1] = conc(y[:-1], p)
        values = np.array([seen[t] for t in read])
        out["auc24"][i] = y[-1] - auc_t0
        out["cmax"][i] = values.max()
        out["ctrough"][i] = conc(y[:-1], p)
        if not linear:
            out["r_end"][i] = y[model.state_names.index("R")]
    return out
