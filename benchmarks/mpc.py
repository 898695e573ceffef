"""ICU glycaemic MPC benchmark (issue: MPC for continuous actions): one step, 24 steps x 200 posterior draws.

Run:  python benchmarks/mpc.py            (10 warm steps; FD baseline 3 runs)
      python benchmarks/mpc.py --quick    (3 warm steps; FD baseline 1 run; < 60 s)

The workload: the shipped ICU twin (ICING, SI tracked) after assimilating 6 h
of a synthetic patient's 5-minute glucose stream; enteral feed 3.5 g/h
continues over the horizon.  One MPC step: 24 x 15-min insulin rates (0-10
U/h, at most 2 U/h change per step), reference 6 mmol/L, P(G < 4.4 mmol/L)
<= 5 % at every step over 200 posterior draws (with the observer's process
noise).  Target: < 1 s warm.  Reported apart: the one-time JAX compilation;
the step with the explanation's sensitivity analysis (two extra warm-started
solves).  Baseline measured in the same process: the same SLSQP problem with
SciPy's finite-difference gradients of the same compiled JAX rollout (what one
gets without automatic differentiation).
"""

from __future__ import annotations

import argparse
import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("NUMBA_NUM_THREADS", str(min(2, os.cpu_count() or 1)))

import time  # noqa: E402

import numpy as np  # noqa: E402

from medtwin.scenarios.icu import icu_twin_spec, synthetic_stream  # noqa: E402
from medtwin.twin.codec import twin_from_spec  # noqa: E402
from medtwin.control.mpc import MPCController, icu_insulin_controller  # noqa: E402
from medtwin.scenarios.glucose_patients import icu_regimen, sample_icu_patients  # noqa: E402


def bedside_twin():
    """The twin at 6 h, its inputs with the feed continued, and the 5-min measurements of the next 15 minutes."""
    patient = sample_icu_patients(1, model="icing", hours=8, seed=1)[0]
    synthetic = synthetic_stream(patient, 7, seed=1)
    twin = twin_from_spec(icu_twin_spec(), inputs=synthetic.stream.regimen)
    twin = twin.assimilate([m for m in synthetic.stream.measurements if m.time <= 6.0 + 1e-9])
    later = [m for m in synthetic.stream.measurements if 6.0 + 1e-9 < m.time <= 6.25 + 1e-9]
    return twin, twin.inputs + icu_regimen(12, enteral_g_per_h=3.5, start=7.0), later


class FiniteDifferenceMPC(MPCController):
    """The same controller, with SciPy's 2-point finite differences instead of the JAX sensitivities."""

    def _slsqp(self, p, u0, alphas, maxiter):
        from scipy.optimize import minimize

        H, lo, hi = self.horizon, *self.bounds
        bounds = [p.first_window] + [(lo, hi)] * (H - 1)
        diff = np.diff(np.eye(H), axis=0)
        constraints = [{"type": "ineq", "fun": lambda u, s=s: self.max_change - s * (diff @ u)} for s in (1.0, -1.0)]
        constraints += [{"type": "ineq", "fun": lambda u, c=c, a=a: a - c.smoothed(self.predict(p, u))[0]}
                        for c, a in zip(self.chance, alphas)]
        scale = max(self.objective(p, u0), 1e-8)
        res = minimize(lambda u: self.objective(p, u) / scale, u0, method="SLSQP", bounds=bounds,
                       constraints=constraints, options={"maxiter": int(maxiter), "ftol": self.ftol})
        return self.project(p, res.x), res


def timed(controller, twin, inputs, runs):
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        r = controller.recommend(twin.belief, inputs, reference=6.0, current_rate=2.0)
        out.append(time.perf_counter() - t0)
    return float(np.median(out)), max(out), r


def main(quick: bool) -> None:
    print("threads:", {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                                       "NUMBA_NUM_THREADS")}, "cpus:", os.cpu_count())
    twin, inputs, later = bedside_twin()
    state = twin.state()
    print(f"twin at {twin.time:g} h: G = {state.states['GLU']['mean'] / 13.3:.2f} mmol/L, SI median "
          f"{state.parameters['SI']['median']:.4f} (90 % {state.parameters['SI']['p05']:.4f}-"
          f"{state.parameters['SI']['p95']:.4f}) L/(mU h)")
    core = icu_insulin_controller(twin.space, sensitivity=False)
    full = icu_insulin_controller(twin.space, sensitivity=True)
    t0 = time.perf_counter()
    core.recommend(twin.belief, inputs, reference=6.0, current_rate=2.0)
    first = time.perf_counter() - t0
    warm, worst, r = timed(core, twin, inputs, 3 if quick else 10)
    print(f"MPC step (H = {core.horizon} x {core.step_h:g} h, {core.n_draws} draws, {core.n_sub} RK4 sub-steps per "
          f"step): first call {first:.1f} s (JAX compile + solve), warm median {warm * 1e3:.0f} ms (max "
          f"{worst * 1e3:.0f} ms) = {warm:.2f} x the 1 s target [{'MET' if warm < 1.0 else 'NOT MET'}]")
    print(f"  status {r.status}; apply now {r.action['apply_now_u_per_h']:.3f} U/h; P(G<4.4) max over steps "
          f"{r.probabilities['below_4.4']:.3f} (holding 2 U/h: {r.probabilities['below_4.4_current']:.3f}); "
          f"{r.message}")
    full.recommend(twin.belief, inputs, reference=6.0, current_rate=2.0)  # compiles the sensitivity gradient
    warm_full, _, rf = timed(full, twin, inputs, 1 if quick else 5)
    print(f"with the sensitivity explanation (2 extra solves): warm median {warm_full * 1e3:.0f} ms; "
          f"{rf.sensitivity.get('most_influential')}: first move {rf.sensitivity.get('first_move_at_p05', 0):.2f} "
          f"U/h at p05 {rf.sensitivity.get('at_p05', 0):.4f}, {rf.sensitivity.get('first_move_at_p95', 0):.2f} U/h "
          f"at p95 {rf.sensitivity.get('at_p95', 0):.4f}")
    nxt = twin.assimilate(later)  # the next decision, 15 min later, after three more measurements
    shifted = []
    for _ in range(3 if quick else 10):
        t0 = time.perf_counter()
        rn = core.recommend(nxt.belief, inputs, reference=6.0, current_rate=r.action["apply_now_u_per_h"],
                            warm_start=r)
        shifted.append(time.perf_counter() - t0)
    ws = float(np.median(shifted))
    print(f"next decision ({nxt.time:g} h) warm-started from the previous plan (receding horizon): "
          f"{ws * 1e3:.0f} ms [{'MET' if ws < 1.0 else 'NOT MET'}]; status {rn.status}, "
          f"apply now {rn.action['apply_now_u_per_h']:.3f} U/h; {rn.message}")
    baseline = FiniteDifferenceMPC(**{f: getattr(core, f) for f in core.__dataclass_fields__ if f != "_cache"})
    fd, _, rb = timed(baseline, twin, inputs, 1 if quick else 3)
    print(f"baseline, finite-difference gradients of the same rollout: {fd * 1e3:.0f} ms (ratio {fd / warm:.1f}x); "
          f"status {rb.status}, first move {rb.action['apply_now_u_per_h']:.3f} U/h; {rb.message}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 warm steps, one baseline run (a smoke run)")
    main(parser.parse_args().quick)
