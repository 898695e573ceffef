"""Model predictive control of one continuous input under posterior uncertainty.

At each decision time :meth:`MPCController.recommend` chooses a sequence of
H piecewise-constant input rates ``u`` (clinical units, e.g. U/h of insulin)
over ``step_h``-hour steps so that one model output follows a reference
trajectory, subject to

- hard constraints: bounds ``lo ≤ u_k ≤ hi`` and a rate-of-change limit
  ``|u_k − u_{k−1}| ≤ max_change`` with ``u_{−1}`` the rate running now;
- chance constraints on the output evaluated over ``n_draws`` posterior draws
  of the twin's belief, e.g. P(G < 4.4 mmol/L) ≤ 5 % at every step.

Only the first move is meant to be applied; the caller re-estimates and asks
again (receding horizon).

Predictions.  Each draw z = [states, log estimated parameters] of the belief
is rolled out through the model's own vector field (:mod:`medtwin.control.rollout`,
RK4 in JAX, float64) with the known background inputs of the regimen
(nutrition), optionally with one fixed realisation per draw of the observer's
process noise (so drifting insulin sensitivity widens the predictions as in
:meth:`medtwin.twin.Twin.forecast`).  Draws and noise come from
``numpy.random.default_rng(seed)``: for a given belief the answer is
reproducible.

Objective (minimised)::

    J(u) = w_track · mean_{draws, steps} (y_dk − r_k)² + w_move · mean_k (u_k − u_{k−1})²

Optimiser: SciPy's SLSQP (sequential quadratic programming) with exact
gradients from JAX.  The problem is small and dense (H ≈ 24 variables, box
bounds, 2(H−1) linear rate constraints, H smooth nonlinear chance constraints
per threshold), which is where SQP with a BFGS Hessian converges in few
iterations; SLSQP handles bounds, linear and nonlinear inequalities natively,
is deterministic and ships with SciPy (an interior-point code such as IPOPT
would be a new compiled dependency, ``trust-constr`` costs far more Python
overhead per iteration, and a projected-gradient method cannot take the
nonlinear chance constraints).  Derivatives: per step the Jacobian of the RK4
step map with respect to (state, input) is taken by forward-mode JAX
(n_states + 1 tangents), and the output sensitivities to every input are
chained from it (causality: dy_k/du_j = 0 for j > k), about 6× the cost of a
forward rollout instead of H×.

Chance constraints.  The empirical probability (a step function of u) is
smoothed for the optimiser: P̃_k = mean_d σ((L − y_dk)/τ) ≤ α_k for "below L"
(σ the logistic function, τ the smoothing width in output units).  The
solution is then CHECKED EXACTLY on the draws (share of draws with y_dk < L);
where the check fails α_k is tightened by the excess (back-off) and the
problem re-solved, at most ``backoff`` times.  If no feasible solution is
found the status is ``"infeasible-fallback"``: the action is the candidate
within the hard constraints with the smallest worst violation (ramp to the
lower bound as fast as the rate limit allows, ramp to the upper bound, hold
the current rate, the last optimiser iterate; for insulin against
hypoglycaemia that is 0 U/h reached at the maximal rate of change), and the
message names the violated constraint.  Every returned sequence is projected
onto the hard constraints, so an unconstrained answer is never returned.

Sensitivity.  The most influential entry of z (estimated parameter or state)
is the one with the largest |∂ mean ŷ / ∂ z_j| · sd_j (JAX forward mode at the
recommended inputs); the problem is then re-solved with that entry shifted to
its 5th and 95th belief percentile (all draws shifted by ∓1.645 sd), and the
first moves there are reported.

Use from a twin, at each decision time (receding horizon)::

    mpc = icu_insulin_controller(twin.space)          # build once: compiled functions are cached
    r = twin.recommend(mpc, reference=6.0, current_rate=running, warm_start=previous)   # the policy interface
    running = r.action["apply_now_u_per_h"]           # apply for step_h hours, then assimilate and repeat

(``twin.recommend(mpc, ...)`` is :meth:`MPCController.propose` checked against :attr:`MPCController.constraints`;
``mpc.recommend(belief, inputs, ...)`` is the same solve on a bare belief.)  The decision time is
``twin.belief.time`` (or ``time=``, the belief predicted to it); ``twin.inputs`` must already hold
the known nutrition over the horizon (insulin in it is ignored over the
horizon).  ``warm_start=previous`` (the last recommendation) cuts the
iterations.  Keep BLAS single-threaded (``OMP_NUM_THREADS=1``) next to JAX:
with oversubscribed BLAS threads SLSQP's small dense solves slow down ~100×.

Examples
--------
>>> import numpy as np
>>> from medtwin.assimilate.beliefs import GaussianBelief
>>> from medtwin.assimilate.statespace import StateSpace
>>> from medtwin.models import get_model
>>> space = StateSpace.build(get_model("pk1_iv"), {"CL": 2.0, "V": 20.0}, estimated=("CL",))
>>> mpc = MPCController(space, control="iv", output="C", step_h=1.0, horizon=8, bounds=(0.0, 100.0),
...                     max_change=50.0, n_draws=8, sensitivity=False, action_name="infusion_mg_per_h")
>>> belief = GaussianBelief(0.0, np.array([0.0, np.log(2.0)]), np.diag([0.0, 1e-6]), space.names)
>>> mpc.times[:3].tolist(), mpc.n_sub
([1.0, 2.0, 3.0], 1)
>>> # skipped: the first call compiles the JAX rollout (several seconds)
>>> r = mpc.recommend(belief, reference=5.0, current_rate=0.0)  # doctest: +SKIP
>>> r.kind, r.action["apply_now_mg_per_h"] > 10.0  # a loading rate above the steady 5 mg/L x 2 L/h  # doctest: +SKIP
('mpc', True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from medtwin.assimilate.statespace import StateSpace
from medtwin.control.recommendation import RateConstraints, Recommendation
from medtwin.control.rollout import background_inputs, rollout_functions, substeps
from medtwin.control.status import RecommendationStatus
from medtwin.errors import DataError, ModelError, ParameterError

Z95 = 1.6448536269514722


@dataclass(frozen=True)
class ChanceConstraint:
    """P(output < below) ≤ max_probability, or P(output > above) ≤ max_probability, at every step.

    Parameters
    ----------
    output : str
        Model output (must be the controlled output).
    below, above : float, optional
        Threshold in output units; exactly one of them.
    max_probability : float
        Largest allowed share of posterior draws beyond the threshold, in (0, 1).
    smoothing : float, optional
        Width τ of the logistic smoothing used by the optimiser (output units); default 5 % of |threshold|
        (0.22 mmol/L for 4.4 mmol/L).

    Examples
    --------
    >>> ChanceConstraint("G", below=4.4, max_probability=0.05).name
    'below_4.4'
    """

    output: str
    below: float | None = None
    above: float | None = None
    max_probability: float = 0.05
    smoothing: float | None = None

    def __post_init__(self):
        if (self.below is None) == (self.above is None):
            raise DataError(f"chance constraint on {self.output}: give exactly one of below= and above=")
        if not math.isfinite(self.threshold):
            raise DataError(f"chance constraint on {self.output}: the threshold must be finite")
        if not (0.0 < self.max_probability < 1.0):
            raise DataError(f"chance constraint {self.name}: max_probability must be in (0, 1), "
                            f"got {self.max_probability!r}")
        if self.smoothing is not None and not (math.isfinite(self.smoothing) and self.smoothing > 0):
            raise DataError(f"chance constraint {self.name}: smoothing must be > 0, got {self.smoothing!r}")

    @property
    def threshold(self) -> float:
        return float(self.below if self.below is not None else self.above)

    @property
    def sign(self) -> float:
        """+1 for "below" (violation when y < L), −1 for "above"."""
        return 1.0 if self.below is not None else -1.0

    @property
    def name(self) -> str:
        return f"{'below' if self.below is not None else 'above'}_{self.threshold:g}"

    @property
    def tau(self) -> float:
        return float(self.smoothing) if self.smoothing is not None else max(0.05 * abs(self.threshold), 1e-3)

    def describe(self, unit: str) -> str:
        relation = "<" if self.below is not None else ">"
        return f"P({self.output} {relation} {self.threshold:g} {unit}) <= {self.max_probability:g} at every step"

    def exact(self, y: np.ndarray) -> np.ndarray:
        """Empirical probability of violation per step, shape (H,), from outputs (D, H)."""
        return np.mean(y < self.threshold if self.below is not None else y > self.threshold, axis=0)

    def smoothed(self, y: np.ndarray, jac: np.ndarray | None = None):
        """Smoothed probability per step (H,) and, given dy/du (D, H, H), its Jacobian (H, H)."""
        from scipy.special import expit

        # clipped: far from the threshold s is 4e-18 or 1 - 4e-18 instead of a subnormal (which slows numpy 100x)
        s = expit(np.clip(self.sign * (self.threshold - y) / self.tau, -40.0, 40.0))
        if jac is None:
            return s.mean(axis=0), None
        weight = -self.sign * s * (1.0 - s) / self.tau
        return s.mean(axis=0), np.einsum("dk,dkj->kj", weight, jac) / y.shape[0]


@dataclass
class _Problem:
    """Everything one solve needs (arrays in model units except u, which is in clinical units)."""

    z: np.ndarray
    noise: np.ndarray
    rates: np.ndarray
    boluses: np.ndarray
    t0: float
    reference: np.ndarray
    current: float
    first_window: tuple[float, float]
    notes: list = field(default_factory=list)
    memo: dict = field(default_factory=dict)
    device: Any = None


@dataclass(frozen=True, eq=False)
class MPCController:
    """Receding-horizon controller of one infused input (immutable; compiles once per settings).

    Parameters
    ----------
    space : StateSpace
        The twin's state space (model, fixed parameters, estimated parameters, noise levels).
    control : str or int
        Dose target of the controlled input: route name (e.g. ``"iv_insulin"``) or CMT (1-based).
    output : str, optional
        Output that follows the reference (default: the model's first output).
    unit_scale : float
        Model units per clinical unit of the input (U/h -> mU/h: 1000).
    step_h : float
        Length of one control step, h.
    horizon : int
        Number of steps H.
    bounds : (float, float)
        Hard bounds on the input (clinical units); ``hi`` may be ``inf``.
    max_change : float
        Largest change between consecutive steps, including from the running rate to the first step.
    chance : sequence of ChanceConstraint
    tracking_weight, move_weight : float
        Weights of the tracking error (per (output unit)²) and of move suppression (per (clinical unit)²).
    n_draws : int
        Posterior draws used for predictions and chance constraints.
    seed : int
        Seed of the draws and of the process-noise realisation.
    process_noise : bool
        Add the observer's process noise (one fixed path per draw) to the predictions.
    max_step : float, optional
        Largest RK4 sub-step, h (default min(step_h, 4·space.max_step): the observer's step keeps
        ‖∂f/∂x‖∞·h ≤ 0.5; four times it stays inside RK4's stability interval, |λ|h ≤ 2 < 2.78.  On the
        ICU twin that is 5 sub-steps per 15 min, |λ_max|h ≈ 0.6, glucose within ~1e-4 mmol/L of 19 sub-steps).
    backoff : int
        Re-solves with tightened chance constraints when the exact check fails.
    maxiter : int
        SLSQP iterations per solve.
    ftol : float
        SLSQP's stopping tolerance on the objective scaled by its value at the start.  1e-4: on the ICU
        benchmark twin the first four moves equal those at 1e-5 (4, 6, 8, 10 U/h), the objective is 3 % higher
        (the far end of the plan, re-planned at the next step anyway) and the solve takes 25 instead of 53
        iterations (0.54 s instead of 1.16 s on a loaded 2-core machine).
    sensitivity : bool
        Compute the sensitivity of the first move to the most influential parameter (two extra solves).
    action_name : str
        Key of the input sequence in ``Recommendation.action`` (e.g. ``"insulin_u_per_h"``); the first move is
        under ``"apply_now_" + action_name.split("_", 1)[1]`` (e.g. ``"apply_now_u_per_h"``).
    unit_label : str
        Clinical unit of the input, for explanations (e.g. ``"U/h"``).
    reference : float or array_like (H,), optional
        Default reference of :meth:`propose` (the policy interface, :mod:`medtwin.control.policy`).
    """

    space: StateSpace
    control: Any
    output: str | None = None
    unit_scale: float = 1.0
    step_h: float = 0.25
    horizon: int = 24
    bounds: tuple[float, float] = (0.0, math.inf)
    max_change: float = math.inf
    chance: Sequence[ChanceConstraint] = ()
    tracking_weight: float = 1.0
    move_weight: float = 0.01
    n_draws: int = 200
    seed: int = 0
    process_noise: bool = True
    noise_steps: int | None = None
    max_step: float | None = None
    backoff: int = 3
    maxiter: int = 100
    ftol: float = 1e-4
    sensitivity: bool = True
    action_name: str = "rate"
    unit_label: str = ""
    reference: Any = None
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self):
        model = self.space.model
        object.__setattr__(self, "chance", tuple(self.chance))
        if self.output is None:
            object.__setattr__(self, "output", model.output_names[0])
        self.space.output_index(self.output)
        self._control_index()
        lo, hi = (float(b) for b in self.bounds)
        if not (math.isfinite(lo) and lo < hi):
            raise ParameterError(f"mpc: bounds must satisfy finite lo < hi, got {self.bounds!r}")
        object.__setattr__(self, "bounds", (lo, hi))
        checks = {"unit_scale": self.unit_scale, "step_h": self.step_h, "max_change": self.max_change,
                  "tracking_weight": self.tracking_weight, "ftol": self.ftol}
        for name, value in checks.items():
            if not (value > 0 and (math.isfinite(value) or name == "max_change")):
                raise ParameterError(f"mpc: {name} must be > 0 (and finite), got {value!r}")
        if not (self.move_weight >= 0 and math.isfinite(self.move_weight)):
            raise ParameterError(f"mpc: move_weight must be finite and >= 0, got {self.move_weight!r}")
        for name in ("horizon", "n_draws", "maxiter"):
            if int(getattr(self, name)) < 1:
                raise ParameterError(f"mpc: {name} must be a positive integer, got {getattr(self, name)!r}")
        if self.backoff < 0:
            raise ParameterError(f"mpc: backoff must be >= 0, got {self.backoff!r}")
        if self.max_step is not None and not (math.isfinite(self.max_step) and self.max_step > 0):
            raise ParameterError(f"mpc: max_step must be a positive number of hours, got {self.max_step!r}")
        if self.noise_steps is not None and not (int(self.noise_steps) == self.noise_steps >= 0):
            raise ParameterError(f"mpc: noise_steps must be an integer >= 0 (or None), got {self.noise_steps!r}")
        for c in self.chance:
            if not isinstance(c, ChanceConstraint):
                raise DataError(f"mpc: chance constraints must be ChanceConstraint values, got {c!r}")
            if c.output != self.output:
                raise DataError(f"mpc: chance constraint {c.name} is on {c.output!r}; only the controlled "
                                f"output {self.output!r} can be constrained")

    # ------------------------------------------------------------------ set-up
    def _control_index(self) -> int:
        targets = self.space.model.dose_targets
        for t in targets:
            if self.control == t.route or (isinstance(self.control, (int, np.integer))
                                           and not isinstance(self.control, bool) and int(self.control) == t.cmt):
                return t.cmt - 1
        raise ModelError(f"mpc: control {self.control!r} is not a dose target of {self.space.model.name}; "
                         f"targets: {[(t.cmt, t.route) for t in targets]}")

    @property
    def n_sub(self) -> int:
        step = self.max_step if self.max_step is not None else min(self.step_h, 4.0 * self.space.max_step)
        return substeps(self.step_h, step)

    def functions(self) -> dict:
        """The jitted rollout functions (compiled on first use, shared through the model's cache)."""
        if "functions" not in self._cache:
            self._cache["functions"] = rollout_functions(self.space, control=self._control_index(),
                                                         output=self.output, n_sub=self.n_sub)
        return self._cache["functions"]

    @property
    def times(self) -> np.ndarray:
        """Ends of the H steps relative to the decision time, h."""
        return self.step_h * np.arange(1, self.horizon + 1)

    def _problem(self, belief, inputs, time, reference, current_rate) -> _Problem:
        if tuple(belief.names) != tuple(self.space.names):
            raise DataError(f"mpc: belief over {list(belief.names)} does not match the state space "
                            f"{list(self.space.names)}")
        t0 = float(belief.time)
        if time is not None and abs(float(time) - t0) > 1e-9:
            raise DataError(f"mpc: decision time {time} h differs from the belief's time {t0} h; "
                            "predict the belief to the decision time first")
        H = self.horizon
        ref = np.broadcast_to(np.asarray(reference, dtype=float), (H,)).copy() if np.ndim(reference) == 0 \
            else np.asarray(reference, dtype=float)
        if ref.shape != (H,) or not np.all(np.isfinite(ref)):
            raise DataError(f"mpc: reference must be a finite number or an array of {H} values, got shape "
                            f"{np.shape(reference)}")
        current = float(current_rate)
        if not math.isfinite(current):
            raise DataError(f"mpc: current_rate must be finite, got {current_rate!r}")
        rng = np.random.default_rng(self.seed)
        z = np.asarray(belief.sample(self.n_draws, rng), dtype=float)
        if not np.all(np.isfinite(z)):
            raise DataError("mpc: the belief gives non-finite draws")
        noise = np.zeros((self.n_draws, H, self.space.n))
        if self.process_noise:
            noise = rng.standard_normal(noise.shape) * np.sqrt(self.space.process_variance(self.step_h))
            if self.noise_steps is not None:
                noise[:, int(self.noise_steps):] = 0.0  # later drift is left to the next re-plan (feedback)
        rates, boluses = background_inputs(self.space, inputs, t0, self.step_h, H, self._control_index())
        lo, hi = self.bounds
        a, b = max(lo, current - self.max_change), min(hi, current + self.max_change)
        notes = []
        # decided on the bounds themselves, not on a > b: current ± max_change can round onto a bound
        # (e.g. a running rate of -1e-308 with lo = max_change = 1)
        if current < lo - self.max_change or current > hi + self.max_change or a > b:
            a = b = lo if current < lo else hi
            notes.append(f"the running rate {current:g} {self.unit_label} is outside the bounds by more than the "
                         f"rate limit: the first step goes to the nearest bound {a:g}")
        return _Problem(z, noise, rates, boluses, t0, ref, current, (a, b), notes)

    # ------------------------------------------------------------------ evaluation
    def _args(self, p: _Problem, u):
        if p.device is None:  # moved to the JAX device once per problem, not at every optimiser iteration
            import jax

            p.device = tuple(jax.device_put(np.asarray(a, float)) for a in (p.z, p.rates, p.boluses, p.noise,
                                                                              self.space.theta))
        z, rates, boluses, noise, theta = p.device
        return (np.asarray(u, float), z, rates, boluses, noise, theta, p.t0, self.step_h, float(self.unit_scale))

    def predict(self, p: _Problem, u) -> np.ndarray:
        """Outputs (D, H) under the input sequence u (clinical units)."""
        raw = np.asarray(u, float).tobytes()
        if ("j", raw) in p.memo:
            return p.memo[("j", raw)][0]
        key = ("y", raw)
        if key not in p.memo:
            _bound(p.memo)
            p.memo[key] = np.asarray(self.functions()["outputs"](*self._args(p, u)))
        return p.memo[key]

    def _jacobian(self, p: _Problem, u) -> tuple[np.ndarray, np.ndarray]:
        key = ("j", np.asarray(u, float).tobytes())
        if key not in p.memo:
            _bound(p.memo)
            y, jac = self.functions()["jacobian"](*self._args(p, u))
            p.memo[key] = (np.asarray(y), np.asarray(jac))
        return p.memo[key]

    def _moves(self, p: _Problem, u) -> np.ndarray:
        return np.diff(np.concatenate([[p.current], u]))

    def objective(self, p: _Problem, u, y=None) -> float:
        """J(u) (see the module docstring)."""
        y = self.predict(p, u) if y is None else y
        return float(self.tracking_weight * np.mean((y - p.reference) ** 2)
                     + self.move_weight * np.mean(self._moves(p, u) ** 2))

    def objective_and_gradient(self, p: _Problem, u) -> tuple[float, np.ndarray]:
        """J(u) and its exact gradient (JAX sensitivities of the rollout), shape (H,)."""
        y, jac = self._jacobian(p, u)
        H = self.horizon
        resid = y - p.reference
        grad_track = 2.0 * self.tracking_weight * np.einsum("dk,dkj->j", resid, jac) / resid.size
        d = self._moves(p, u)
        grad_move = 2.0 * self.move_weight / H * (d - np.append(d[1:], 0.0))
        return self.objective(p, u, y), grad_track + grad_move

    def project(self, p: _Problem, u) -> np.ndarray:
        """The nearest-forward sequence meeting the bounds and the rate limit (clipping step by step)."""
        lo, hi = self.bounds
        out = np.empty(self.horizon)
        prev = None
        for k, value in enumerate(np.asarray(u, float)):
            a, b = p.first_window if prev is None else (max(lo, prev - self.max_change),
                                                        min(hi, prev + self.max_change))
            prev = out[k] = min(max(value, a), b)
        return out

    def _excess(self, y: np.ndarray) -> tuple[float, float, float]:
        """(worst exact excess, mean exact excess, mean smoothed excess) over every chance constraint."""
        worst, mean, smooth = 0.0, 0.0, 0.0
        for c in self.chance:
            e = c.exact(y) - c.max_probability
            worst = max(worst, float(e.max()))
            mean += float(np.clip(e, 0, None).mean())
            smooth += float(np.clip(c.smoothed(y)[0] - c.max_probability, 0, None).mean())
        return worst, mean, smooth

    def _violation(self, y: np.ndarray) -> tuple[float, float, float]:
        """(worst exact excess, mean exact excess, mean depth beyond the thresholds), for ranking fallbacks."""
        worst, mean, _ = self._excess(y)
        depth = sum(float(np.mean(np.clip(c.sign * (c.threshold - y), 0.0, None))) for c in self.chance)
        return round(worst, 9), round(mean, 9), depth

    # ------------------------------------------------------------------ optimisation
    def _slsqp(self, p: _Problem, u0, alphas, maxiter: int):
        from scipy.optimize import minimize

        H, lo, hi = self.horizon, *self.bounds
        bounds = [p.first_window] + [(lo, None if math.isinf(hi) else hi)] * (H - 1)
        constraints = []
        if math.isfinite(self.max_change) and H > 1:
            diff = np.diff(np.eye(H), axis=0)  # (H-1, H): u_{k} - u_{k-1}
            constraints += [{"type": "ineq", "fun": lambda u, s=s: self.max_change - s * (diff @ u),
                             "jac": lambda u, s=s: -s * diff} for s in (1.0, -1.0)]
        for c, alpha in zip(self.chance, alphas):
            def fun(u, c=c, alpha=alpha):
                return alpha - c.smoothed(self.predict(p, u))[0]

            def jac(u, c=c):
                y, j = self._jacobian(p, u)
                return -c.smoothed(y, j)[1]

            constraints.append({"type": "ineq", "fun": fun, "jac": jac})
        scale = max(self.objective(p, u0), 1e-8)

        def fun_grad(u):
            f, g = self.objective_and_gradient(p, u)
            return f / scale, g / scale

        history = []

        def stalled(intermediate_result):
            # stop an SLSQP run that no longer reduces the chance-constraint violation (an infeasible problem
            # would otherwise spend every iteration); the caller then falls back
            # scipy < 1.16 passes SLSQP's callback the bare x array, later versions an OptimizeResult
            last[:] = [np.array(getattr(intermediate_result, "x", intermediate_result), dtype=float)]
            y = self.predict(p, last[0])
            history.append(max([float(np.max(c.smoothed(y)[0] - a)) for c, a in zip(self.chance, alphas)] + [0.0]))
            if len(history) > 10 and history[-1] > 1e-6 and history[-11] - history[-1] < 1e-3 * history[-11]:
                raise StopIteration

        last = [np.asarray(u0, dtype=float)]
        try:
            res = minimize(fun_grad, u0, jac=True, method="SLSQP", bounds=bounds, constraints=constraints,
                           callback=stalled if self.chance else None,
                           options={"maxiter": int(maxiter), "ftol": self.ftol})
        except StopIteration:  # scipy < 1.16 (pulled in by econml) lets the callback's StopIteration through
            from scipy.optimize import OptimizeResult

            res = OptimizeResult(x=last[0], nit=len(history), success=False,
                                 message="`callback` raised `StopIteration`")
        return self.project(p, res.x), res

    def _optimise(self, p: _Problem, u0=None, maxiter: int | None = None, backoff: int | None = None):
        """Solve with back-off; returns (u, status, message, iterations)."""
        maxiter = self.maxiter if maxiter is None else maxiter
        backoff = self.backoff if backoff is None else backoff
        u = self.project(p, np.full(self.horizon, p.current) if u0 is None else u0)
        alphas = [np.full(self.horizon, c.max_probability) for c in self.chance]
        iterations, best = 0, None
        for attempt in range(backoff + 1):
            u, res = self._slsqp(p, u, alphas, maxiter)
            iterations += int(res.nit)
            y = self.predict(p, u)
            worst = self._excess(y)[0]
            if worst <= 0.0:
                status = RecommendationStatus.OPTIMAL if res.success else RecommendationStatus.FEASIBLE
                note = "" if res.success else f"SLSQP stopped early ({res.message}); the answer is feasible"
                return u, status, note, iterations
            best = u
            smoothed = max(float(np.max(c.smoothed(y)[0] - a)) for c, a in zip(self.chance, alphas))
            if smoothed > 1e-6:  # even the smoothed constraint could not be met: tightening cannot help
                break
            for k, c in enumerate(self.chance):  # back-off: tighten where the exact check failed
                excess = np.clip(c.exact(y) - c.max_probability, 0.0, None)
                alphas[k] = np.where(excess > 0, np.maximum(alphas[k] - excess - 0.5 / self.n_draws,
                                                            1e-3 * c.max_probability), alphas[k])
        return self._fallback(p, best, iterations)

    def _fallback(self, p: _Problem, last, iterations):
        lo, hi = self.bounds
        candidates = [("ramp to the lower bound", self.project(p, np.full(self.horizon, lo)))]
        if math.isfinite(hi):
            candidates.append(("ramp to the upper bound", self.project(p, np.full(self.horizon, hi))))
        candidates += [("hold the running rate", self.project(p, np.full(self.horizon, p.current))),
                       ("last optimiser iterate", self.project(p, last))]
        # ranked by (worst exact excess, mean exact excess, mean depth beyond the thresholds), the shares rounded so
        # that saturated candidates (every draw beyond at every step) tie and the depth decides: for insulin against
        # hypoglycaemia that is the ramp to 0 U/h, never a rounding-noise pick of the upper bound
        scored = [(self._violation(self.predict(p, u)), i, name, u) for i, (name, u) in enumerate(candidates)]
        (worst, _, _), _, name, u = min(scored, key=lambda s: (s[0], s[1]))
        y = self.predict(p, u)
        if worst <= 0.0:  # a simple candidate meets every constraint after all
            return u, "feasible", f"optimiser failed; fallback candidate '{name}' meets every constraint", iterations
        parts = []
        for c in self.chance:
            probs = c.exact(y)
            if probs.max() > c.max_probability:
                k = int(np.argmax(probs))
                parts.append(f"{c.name}: {c.describe(self._unit())} cannot be met; the safest feasible inputs "
                             f"still give P = {probs[k]:.3f} at step {k + 1} ({self.times[k]:g} h ahead)")
        message = ("INFEASIBLE: " + "; ".join(parts) + f". Fallback: {name} within the hard constraints "
                   "(bounds and rate limit); review the patient now")
        return u, RecommendationStatus.INFEASIBLE_FALLBACK, message, iterations

    def _unit(self) -> str:
        return self.space.model.output(self.output).unit

    # ------------------------------------------------------------------ public
    def recommend(self, belief, inputs=None, time: float | None = None, *, reference, current_rate: float,
                  warm_start=None) -> Recommendation:
        """Optimise the next H input rates and explain the proposal.

        Parameters
        ----------
        belief : GaussianBelief or ParticleBelief
            The twin's belief at the decision time (``twin.belief``).
        inputs : Regimen or InputSchedule, optional
            Known background inputs (model units), e.g. ``twin.inputs``; inputs into the controlled
            compartment are ignored over the horizon (the controller sets them).
        time : float, optional
            Decision time, h; must equal ``belief.time`` (the default).
        reference : float or array_like, shape (H,)
            Reference trajectory of the output at the ends of the steps (output units).
        current_rate : float
            The rate running now (clinical units); the first move respects the rate limit from it.
        warm_start : array_like (H,) or Recommendation, optional
            Starting plan for the optimiser (clinical units).  In a receding-horizon loop pass the previous
            recommendation: its plan shifted by one step (the last value repeated) usually cuts the SLSQP
            iterations severalfold.  Default: hold the running rate.

        Returns
        -------
        Recommendation
            ``kind="mpc"``; ``action = {action_name: [H rates], "step_h": ..., "apply_now_...": first}``.
        """
        p = self._problem(belief, inputs, time, reference, current_rate)
        u, status, message, iterations = self._optimise(p, self._start(warm_start))
        return self._explain(p, u, status, " ".join(p.notes + ([message] if message else [])), iterations)

    @property
    def constraints(self) -> RateConstraints:
        """The hard constraints every plan satisfies (bounds, rate of change), as the policy interface checks them."""
        return RateConstraints(self.action_name, self.bounds, self.max_change, self.unit_label)

    def running_rate(self, inputs, time: float) -> float:
        """Rate (clinical units) of the controlled input infusing just before ``time`` h in ``inputs``."""
        cmt = self._control_index() + 1
        default = self.space.model.default_cmt
        total = 0.0
        for e in inputs.expanded():
            if (e.cmt or default) == cmt and e.rate > 0 and e.time < time <= e.time + e.amount / e.rate + 1e-9:
                total += e.rate
        return total / self.unit_scale

    def propose(self, twin, *, reference=None, current_rate: float | None = None, time: float | None = None,
                warm_start=None) -> Recommendation:
        """MPC as a policy (:class:`medtwin.control.policy.Policy`): the plan for a live ``twin``.

        The twin's belief is predicted to ``time`` (default: the twin's time) by its own observer and the
        twin's inputs are the known background; ``current_rate`` defaults to the controlled input running
        just before ``time`` in the twin's inputs, ``reference`` to the controller's.  See :meth:`recommend`.
        """
        from medtwin.core.inputs import input_schedule

        if getattr(twin, "observer", None) is None:
            raise DataError("mpc: the twin has no live belief (observer) to plan from")
        if twin.model is not self.space.model and twin.model.digest() != self.space.model.digest():
            raise DataError(f"mpc: the twin's model {twin.model.name} is not the controller's "
                            f"{self.space.model.name}")
        reference = self.reference if reference is None else reference
        if reference is None:
            raise DataError("mpc: give a reference (here or as MPCController(reference=...))")
        time = twin.time if time is None else float(time)
        belief = twin.belief
        if time > belief.time:
            belief = twin.observer.predict(belief, time, input_schedule(twin.model, twin.inputs, twin.space.theta))
        if current_rate is None:
            current_rate = self.running_rate(twin.inputs, time)
        return self.recommend(belief, twin.inputs, time, reference=reference, current_rate=current_rate,
                              warm_start=warm_start)

    def _start(self, warm_start):
        if warm_start is None:
            return None
        if isinstance(warm_start, Recommendation):
            if warm_start.kind != "mpc" or self.action_name not in warm_start.action:
                raise DataError(f"mpc: warm_start recommendation has no {self.action_name!r} plan")
            plan = np.asarray(warm_start.action[self.action_name], float)
            plan = np.append(plan[1:], plan[-1])
        else:
            plan = np.asarray(warm_start, float)
        if plan.shape != (self.horizon,) or not np.all(np.isfinite(plan)):
            raise DataError(f"mpc: warm_start must hold {self.horizon} finite rates, got shape {plan.shape}")
        return plan

    # ------------------------------------------------------------------ explanation
    def _apply_key(self) -> str:
        return "apply_now" + ("_" + self.action_name.split("_", 1)[1] if "_" in self.action_name else "")

    def _explain(self, p: _Problem, u, status, message, iterations) -> Recommendation:
        from medtwin.core.data import PredictiveBand

        unit, lo, hi = self._unit(), *self.bounds
        hold = np.full(self.horizon, p.current)
        y, y_hold = self.predict(p, u), self.predict(p, hold)
        band = PredictiveBand(p.t0 + self.times, {self.output: y}, {}, {self.output: unit})
        current = PredictiveBand(p.t0 + self.times, {self.output: y_hold}, {}, {self.output: unit})
        constraints = {"bounds": f"{lo:g} <= {self.action_name} <= {hi:g} {self.unit_label}"}
        if math.isfinite(self.max_change):
            constraints["rate_of_change"] = (f"|change| <= {self.max_change:g} {self.unit_label} per {self.step_h:g} h"
                                             f" step, from the running {p.current:g}")
        probabilities = {}
        for c in self.chance:
            constraints[c.name] = (f"{c.describe(unit)} (exact share of {self.n_draws} posterior draws; "
                                   f"smoothed with tau = {c.tau:g} {unit} for the optimiser)")
            probabilities[c.name] = float(c.exact(y).max())
            probabilities[c.name + "_current"] = float(c.exact(y_hold).max())
        ref = float(p.reference[0]) if np.all(p.reference == p.reference[0]) else p.reference.tolist()
        target = {"output": self.output, "reference": ref, "unit": unit,
                  "objective": f"{self.tracking_weight:g} x mean squared tracking error + {self.move_weight:g} x "
                               "mean squared move", "horizon_h": self.horizon * self.step_h}
        action = {self.action_name: [float(v) for v in u], "step_h": float(self.step_h),
                  self._apply_key(): float(u[0])}
        runner = {"option": "hold the running rate", self.action_name: p.current,
                  "objective": self.objective(p, self.project(p, hold))}
        runner.update({f"P({c.name})": probabilities[c.name + "_current"] for c in self.chance})
        sensitivity = self._sensitivity(p, u) if self.sensitivity else {}
        note = f"SLSQP iterations: {iterations}; objective {self.objective(p, u, y):.4g}"
        return Recommendation(kind="mpc", action=action, status=status, target=target, constraints=constraints,
                              active_constraints=self._active(p, u, y), probabilities=probabilities,
                              predicted=band, current=current, sensitivity=sensitivity, runner_ups=(runner,),
                              message=(message + " " if message else "") + note)

    def _active(self, p: _Problem, u, y) -> tuple[str, ...]:
        lo, hi = self.bounds
        tol = 1e-6 * max(1.0, abs(lo), abs(hi) if math.isfinite(hi) else 1.0)
        moves = self._moves(p, u)
        out = []
        for label, mask in (("lower bound", np.abs(u - lo) <= tol), ("upper bound", np.abs(u - hi) <= tol),
                            ("rate-of-change limit", np.abs(moves) >= self.max_change - tol)):
            if mask.any():
                out.append(f"{label} at steps {_steps(mask)}")
        for c in self.chance:
            probs = c.exact(y)
            binding = probs >= c.max_probability - max(1.0 / self.n_draws, 0.1 * c.max_probability)
            if binding.any():
                out.append(f"{c.name}: P = {probs.max():.3f} (limit {c.max_probability:g}) at steps {_steps(binding)}")
        return tuple(out)

    def _sensitivity(self, p: _Problem, u) -> dict:
        grad = np.asarray(self.functions()["shift_gradient"](*self._args(p, u)))
        sd = p.z.std(axis=0)
        influence = np.abs(grad) * sd
        if not np.any(influence > 0):
            return {"note": "no uncertain parameter or state influences the prediction"}
        j = int(np.argmax(influence))
        n_x = self.space.n_states
        name = self.space.names[j].removeprefix("log ")
        moves = {}
        for label, shift in (("low", -Z95 * sd[j]), ("high", Z95 * sd[j])):
            z = p.z.copy()
            z[:, j] += shift
            q = _Problem(z, p.noise, p.rates, p.boluses, p.t0, p.reference, p.current, p.first_window)
            v, status, _, _ = self._optimise(q, u, maxiter=min(self.maxiter, 15), backoff=0)
            centre = float(np.mean(z[:, j]))
            moves[label] = (math.exp(centre) if j >= n_x else centre, float(v[0]), status)
        unit = (self.space.model.parameter(name).unit if j >= n_x else self.space.model.states[j].unit)
        return {"most_influential": name, "unit": unit,
                "effect_per_sd": float(grad[j] * sd[j]),
                "at_p05": moves["low"][0], "first_move_at_p05": moves["low"][1],
                "at_p95": moves["high"][0], "first_move_at_p95": moves["high"][1],
                "status_at_p05": moves["low"][2], "status_at_p95": moves["high"][2],
                "method": "ranked by |d mean prediction / dz| x sd; re-solved (warm start, <= 15 SLSQP iterations, no "
                          "back-off) with it at its 5th/95th percentile"}


def _bound(memo: dict, size: int = 16) -> None:
    """Keep the per-solve memo of rollouts small (a Jacobian is D·H² floats)."""
    if len(memo) >= size:
        memo.clear()


def _steps(mask: np.ndarray) -> str:
    """1-based step numbers as compact ranges, e.g. '1-3, 7'."""
    idx = np.flatnonzero(mask) + 1
    runs, start = [], idx[0]
    for a, b in zip(idx[:-1], idx[1:]):
        if b != a + 1:
            runs.append((start, a))
            start = b
    runs.append((start, idx[-1]))
    return ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in runs)


def icu_insulin_controller(space: StateSpace, *, step_h: float = 0.25, horizon: int = 24,
                           max_insulin_u_per_h: float = 10.0, max_change_u_per_h: float = 2.0,
                           hypo_mmol_per_l: float = 4.4, max_probability: float = 0.05, **options) -> MPCController:
    """The ICU glycaemic MPC: IV insulin (U/h) on the ICING twin, P(G < 4.4 mmol/L) ≤ 5 % at every step.

    Examples
    --------
    >>> from medtwin.assimilate.statespace import StateSpace
    >>> from medtwin.models import get_model
    >>> mpc = icu_insulin_controller(StateSpace.build(get_model("icing"), estimated=("SI",)))
    >>> mpc.bounds, mpc.chance[0].name, mpc.unit_scale
    ((0.0, 10.0), 'below_4.4', 1000.0)
    """
    settings = dict(control="iv_insulin", output="G", unit_scale=1000.0, step_h=step_h, horizon=horizon,
                    bounds=(0.0, max_insulin_u_per_h), max_change=max_change_u_per_h,
                    chance=(ChanceConstraint("G", below=hypo_mmol_per_l, max_probability=max_probability),),
                    action_name="insulin_u_per_h", unit_label="U/h")
    settings.update(options)
    return MPCController(space, **settings)
