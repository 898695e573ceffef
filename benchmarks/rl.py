"""The twin as an RL simulator: ICU-Sepsis offline RL + OPE, glucose/vancomycin OPE vs simulation, env stepping rate.

Run:  python benchmarks/rl.py --quick      (CI: small data, <= 30 s on one core)
      python benchmarks/rl.py              (the acceptance figures of issue 18)
      python benchmarks/rl.py --only sepsis,glucose,vanco,speed,harness

Sections
--------
sepsis   ICU-Sepsis (icu-sepsis 2.0.1 data file): exact DP values of the random, clinicians' and optimal policies
         beside the published 0.78 / 0.78 / 0.88; FQI, its count-pessimistic (LCB) and batch-constrained (BCQ)
         variants learned from episodes logged by the clinicians' policy, their true values by exact DP; OPE
         (PDIS, per-decision WIS, WIS, DR, FQE) of five policies on held-out clinician episodes: estimate, 95 % bootstrap interval,
         covers the true value?, ESS, interval width.
glucose  ICU glucose env (12 h, hourly decisions): behaviour = JBDS scale made epsilon-soft (0.5, neighbouring
vanco    rates); vancomycin env (5 days): behaviour = label dosing epsilon-soft (0.5).  Conservative FQI
         (ExtraTrees, BCQ tau 0.2 on the logged behaviour probabilities) on the training episodes; OPE of the
         learned policy and of the protocol on held-out episodes (PDIS, per-decision WIS, WIS, cross-fitted DR,
         FQE), beside their values by fresh closed-loop simulation on new virtual patients (mean ± SE, cost,
         P(unsafe)); "covers" = the 95 % interval of (OPE estimate - simulated value) contains 0, i.e. the
         simulation's own SE is allowed for in quadrature (OPEResult.covers(value, se)).
harness  Full mode: the learned policies, MPC/dose optimiser (the twin) and the standard protocol side by side
         in the closed-loop harnesses (few patients, short horizons).
speed    Environment steps per second, 1,000 patients in one vector env vs a naive loop over 1,000 single envs
         (the same code with one patient each); ratio of CPU times (time.process_time, one thread).
checks   gymnasium's env_checker on the registered envs (and make_vec with 1,000 patients); the cost signal
         (info["cost"], info["unsafe"]) under random actions; shielding (2,000 random states and running
         rates through the learned insulin policy and control.policy.propose, and the env's own shield on
         random requests: violations of the hard constraints); dataset format (logged episodes to Parquet
         with the episodes/1 schema and to Minari episode buffers, read back bit for bit).

The run ends with the acceptance table of issue 18 (each point, the figure measured in this run, MET / NOT
MET) for the sections it ran.  Full mode on the shared 2-core machine: see docs/decisions.md (issue 18, rl18).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
import warnings
from dataclasses import replace

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import numpy as np  # noqa: E402

warnings.filterwarnings("ignore", category=DeprecationWarning)


def _fmt_ope(name, res, truth, se=0.0):
    cover = "yes" if res.covers(truth, se) else "NO"
    line = (f"    {name:5s} {res.value:8.3f}  [{res.low:7.3f}, {res.high:7.3f}]  covers {truth:.3f}: {cover:3s}  "
            f"ESS {res.ess:8.1f}  width {res.width:.3f}")
    if "basic_low" in res.details:
        lo, hi = res.details["basic_low"], res.details["basic_high"]
        basic = replace(res, low=lo, high=hi)
        line += f"   basic [{lo:7.3f}, {hi:7.3f}] covers: {'yes' if basic.covers(truth, se) else 'NO'}"
    return line


def _basic_covers(res, truth) -> bool:
    return res.details["basic_low"] <= truth <= res.details["basic_high"]


def sepsis(quick: bool) -> dict:
    from medtwin.rl.fqi import TabularQ, fitted_q_iteration, tabular_policy, uniform_policy
    from medtwin.rl.mdp import ICU_SEPSIS_PUBLISHED, greedy_policy, icu_sepsis_mdp, policy_value, sample_episodes
    from medtwin.rl.mdp import value_iteration
    from medtwin.rl.ope import evaluate_policy

    print("== ICU-Sepsis (Choudhary, Gupta & Thomas 2024; exact DP on the known MDP, gamma = 1)")
    t0 = time.perf_counter()
    mdp, expert = icu_sepsis_mdp()
    S, A = mdp.n_states, mdp.n_actions
    states = np.arange(S, dtype=float)[:, None]
    vi = value_iteration(mdp, tol=1e-10)
    optimal = greedy_policy(vi.q)
    exact = {"random": policy_value(mdp, np.full((S, A), 1.0 / A)), "clinician": policy_value(mdp, expert),
             "optimal": float(mdp.d0 @ vi.values)}
    for k, v in exact.items():
        print(f"  {k:10s} exact {v:.4f}   published {ICU_SEPSIS_PUBLISHED[k]:.2f}   "
              f"{'reproduced' if round(v, 2) == ICU_SEPSIS_PUBLISHED[k] else 'DIFFERENT'}")
    n_train = 3_000 if quick else 200_000
    train = sample_episodes(mdp, expert, n_train, seed=1)
    print(f"  logged by the clinicians' policy: {n_train:,} training episodes ({len(train):,} transitions), "
          f"{time.perf_counter() - t0:.1f} s")
    learned = {}
    for name, kw in (("fqi", {}), ("lcb", {"pessimism": 0.2}), ("bcq", {"conservative": 0.3})):
        t = time.perf_counter()
        q = fitted_q_iteration(train, TabularQ(S), n_iter=1000, tol=1e-8, **kw)
        pi = q.greedy_policy()(states)
        learned[name] = pi
        print(f"  learned {name:4s} true value {policy_value(mdp, pi):.4f}  (target >= 0.85; {q.iterations} "
              f"iterations, {time.perf_counter() - t:.1f} s)")
    best_name = max(learned, key=lambda k: policy_value(mdp, learned[k]))
    best = policy_value(mdp, learned[best_name])
    policies = {"random": np.full((S, A), 1.0 / A), "fqi": learned["fqi"], "lcb": learned["lcb"],
                "bcq": learned["bcq"], "optimal": optimal}
    n_boot, n_boot_fqe = (50, 3) if quick else (500, 100)
    per_n = {}
    for n_ope in (1000,) if quick else (1000, 10_000):
        test = sample_episodes(mdp, expert, n_ope, seed=2)
        print(f"  OPE on {n_ope:,} held-out clinician episodes (bootstrap {n_boot} replicates; FQE/DR refitted "
              f"{n_boot_fqe} times):")
        covered = {e: 0 for e in ("pdis", "pdwis", "wis", "dr", "fqe", "dr basic", "fqe basic")}
        per_n[n_ope] = {"covered": covered, "wis_ess": {}, "width": {e: [] for e in ("wis", "dr", "fqe")}}
        for name, table in policies.items():
            truth = policy_value(mdp, table)
            res = evaluate_policy(test, tabular_policy(table) if name != "random" else uniform_policy(A),
                                  n_states=S, n_boot=n_boot, n_boot_fqe=n_boot_fqe, n_iter=500)
            print(f"  policy {name} (true {truth:.4f}):")
            per_n[n_ope]["wis_ess"][name] = res["wis"].ess
            for e, r in res.items():
                print(_fmt_ope(e, r, truth))
                covered[e] += r.covers(truth)
                if e in per_n[n_ope]["width"]:
                    per_n[n_ope]["width"][e].append(r.width)
                if e in ("dr", "fqe"):
                    covered[e + " basic"] += _basic_covers(r, truth)
            if res["wis"].warnings:
                print("    warnings: " + " | ".join(res["wis"].warnings))
        print(f"  N = {n_ope:,}: intervals covering the true value, of 5 policies: "
              + ", ".join(f"{e} {c}/5" for e, c in covered.items()))
    print(f"  best learned policy true value {best:.4f}; sepsis section {time.perf_counter() - t0:.1f} s")
    return {"best": best, "best_name": best_name, "n_train": n_train, "per_n": per_n}


def _shielded_greedy(qf, rates=None, max_change=2.0):
    """Greedy over allowed actions that are also within max_change of the running rate (obs[:, 2])."""
    from medtwin.rl.envs import INSULIN_RATES

    levels = np.asarray(INSULIN_RATES if rates is None else rates)

    def policy(obs):
        obs = np.asarray(obs, float)
        ok = qf._mask(obs) & (np.abs(levels[None, :] - obs[:, 2:3]) <= max_change + 1e-9)
        ok = np.where(ok.any(1, keepdims=True), ok, np.abs(levels[None, :] - obs[:, 2:3]) <= max_change + 1e-9)
        s = np.where(ok, qf.score(obs), -np.inf)
        out = np.zeros(s.shape)
        out[np.arange(len(obs)), np.argmax(s, 1)] = 1.0
        return out

    return policy


def _protocol_policy(protocol, n_actions, shield=None):
    def policy(obs):
        a = protocol(obs)
        if shield is not None:
            a = shield(obs, a)
        return np.eye(n_actions)[a]

    return policy


def twin_env(kind: str, quick: bool) -> dict:
    from medtwin.rl.envs import INSULIN_RATES, VANCO_DOSES_MG, GlucoseVectorEnv, VancoVectorEnv, shield_rate
    from medtwin.rl.fqi import TreeQ, fitted_q_iteration
    from medtwin.rl.trajectories import collect, epsilon_soft, glucose_protocol, rollout_value, vancomycin_protocol
    from medtwin.rl.ope import evaluate_policy

    t0 = time.perf_counter()
    if kind == "glucose":
        horizon = 4 if quick else 12
        make = lambda n: GlucoseVectorEnv(n, hours=horizon)  # noqa: E731
        protocol, A = glucose_protocol, len(INSULIN_RATES)

        def shield(obs, a):
            applied = shield_rate(np.asarray(INSULIN_RATES)[a], np.asarray(obs)[:, 2])
            return np.searchsorted(INSULIN_RATES, applied)
        print(f"== ICU glucose twin env ({horizon} h, hourly decisions; reward = time in 4.4-8.0 minus time < 4.0, h)")
    else:
        horizon = 4 if quick else 5
        make = lambda n: VancoVectorEnv(n, days=horizon)  # noqa: E731
        protocol, A, shield = vancomycin_protocol, len(VANCO_DOSES_MG), None
        print(f"== vancomycin twin env ({horizon} days, daily decisions; reward = days with AUC24 in 400-600)")
    n_train, n_ope, n_sim = (100, 300, 1000) if quick else (1500, 1000, 5000)
    behaviour = epsilon_soft(protocol, 0.5, A)
    train = collect(make(n_train), behaviour, seed=1)
    test = collect(make(n_ope), behaviour, seed=2)
    trees = TreeQ(lambda: __import__("sklearn.ensemble", fromlist=["x"]).ExtraTreesRegressor(
        n_estimators=10 if quick else 40, min_samples_leaf=10, n_jobs=1, random_state=0))
    # BCQ on the logged (known) behaviour probabilities, not a classifier's estimate of them: the estimate
    # gives never-taken actions a small probability, and the learned policy then put 5 % of its mass on
    # actions outside the logged support (biasing every OPE estimator, FQE by +0.5 h on glucose)
    qf = fitted_q_iteration(train, trees, n_iter=horizon, conservative=0.2, behaviour=behaviour)
    learned = _shielded_greedy(qf) if kind == "glucose" else qf.greedy_policy()
    standard = _protocol_policy(protocol, A, shield)
    print(f"  logged: {n_train} + {n_ope} patients under the epsilon-soft protocol; learned conservative FQI "
          f"(ExtraTrees, BCQ tau 0.2), {time.perf_counter() - t0:.1f} s")
    out = {}
    from medtwin.rl.fqi import TreeQ as _T

    fqe_trees = lambda: _T(lambda: __import__("sklearn.ensemble", fromlist=["x"]).ExtraTreesRegressor(  # noqa: E731
        n_estimators=10 if quick else 20, min_samples_leaf=10, n_jobs=1, random_state=0))
    covered = {}
    for name, pol in (("learned", learned), ("protocol", standard)):
        sim = rollout_value(make(n_sim), pol, seed=99)
        res = evaluate_policy(test, pol, q_factory=fqe_trees, n_iter=horizon, n_boot=200 if quick else 2000,
                              n_boot_fqe=3 if quick else 20, cross_fit=2)
        print(f"  {name}: fresh simulation on {n_sim} new patients {sim['value']:.3f} ± {sim['se']:.3f} (SE), "
              f"cost {sim['cost']:.3f}, P(unsafe) {sim['p_unsafe']:.3f}")
        for e, r in res.items():
            print(_fmt_ope(e, r, sim["value"], sim["se"]))
        if res["wis"].warnings:
            print("    warnings: " + " | ".join(res["wis"].warnings))
        out[name] = (sim, res)
        covered[name] = [e for e, r in res.items() if r.covers(sim["value"], sim["se"])]
    print("  covered (95 % interval of OPE estimate - simulated value contains 0): "
          + "; ".join(f"{k}: {', '.join(v) or 'none'}" for k, v in covered.items()))
    print(f"  {kind} section {time.perf_counter() - t0:.1f} s")
    out["covered"] = covered
    out["policy"] = learned
    out["q"] = qf
    return out


def speed(quick: bool) -> None:
    from medtwin.rl.envs import GlucoseEnv, GlucoseVectorEnv, VancoEnv, VancoVectorEnv

    print("== stepping rate: 1,000 patients in one vector env vs a naive loop over single-patient envs")
    ratios = {}
    for name, vec, single, steps in (("glucose", GlucoseVectorEnv, GlucoseEnv, 4),
                                     ("vancomycin", VancoVectorEnv, VancoEnv, 4)):
        n = 1000
        env = vec(n, hours=steps + 1) if name == "glucose" else vec(n, days=steps + 1)
        vec_s, reps = 0.0, 5   # the vector steps take ~1 ms: time several episodes (resets not timed)
        for rep in range(reps):
            env.reset(seed=rep)
            t = time.process_time()
            for _ in range(steps):
                env.step(np.full(n, 3))
            vec_s += (time.process_time() - t) / reps
        n_naive = 30 if quick else 1000
        envs = [single(hours=steps + 1) if name == "glucose" else single(days=steps + 1) for _ in range(n_naive)]
        for k, e in enumerate(envs):
            e.reset(seed=k)
        t = time.process_time()
        for _ in range(steps):
            for e in envs:
                e.step(3)
        naive_s = (time.process_time() - t) * n / n_naive
        note = "" if n_naive == n else f" (naive timed on {n_naive} patients, scaled to {n})"
        print(f"  {name:10s} vector {n * steps / vec_s:12,.0f} patient-steps/s   naive {n * steps / naive_s:10,.0f} "
              f"patient-steps/s   ratio {naive_s / vec_s:7.0f}x (target >= 100x; CPU time){note}")
        ratios[name] = naive_s / vec_s
    return ratios


def harness(env_results: dict, quick: bool) -> dict:
    """The learned policies, the twin (MPC / dose optimiser) and the protocol in the closed-loop harnesses."""
    from medtwin.rl.harness import glucose_harness_policy, vanco_harness_policy
    from medtwin.scenarios.evaluation import default_glucose_controller
    from medtwin.scenarios.glucose_loop import GlucoseScenario, run_glucose_patient, sliding_scale_policy
    from medtwin.scenarios.glucose_loop import twin_policy as glucose_twin
    from medtwin.scenarios.glucose_patients import sample_icu_patients
    from medtwin.scenarios.vanco_loop import VancoScenario, label_policy, run_vanco_patient, sample_vanco_patients
    from medtwin.scenarios.vanco_loop import twin_policy as vanco_twin

    n = 3 if quick else 5
    arms = {}
    if "glucose" in env_results:
        hours = 12
        scenario = GlucoseScenario(hours=hours)
        print(f"== glucose harness side by side ({n} patients, {hours} h; true glucose every 5 min)")
        policies = {"protocol (JBDS)": sliding_scale_policy,
                    "MPC (twin)": glucose_twin(scenario, default_glucose_controller(scenario)),
                    "learned (FQI)": glucose_harness_policy(env_results["glucose"]["policy"], hours=hours)}
        for name, pol in policies.items():
            t = time.perf_counter()
            outs = [run_glucose_patient(p, pol, scenario, name=name) for p in sample_icu_patients(n, hours=hours + 1,
                                                                                                  seed=7)]
            insulin = np.mean([o.insulin_units for o in outs])
            arms.setdefault("glucose", {})[name] = {
                "in range": float(np.mean([o.time_in_range for o in outs])),
                "violations": int(sum(o.bound_violations + o.rate_violations for o in outs))}
            print(f"  {name:16s} time in range {np.mean([o.time_in_range for o in outs]):.3f}  below 4.4 "
                  f"{np.mean([o.time_below_4_4 for o in outs]):.3f}  insulin {insulin:5.1f} U"
                  f"  violations {sum(o.bound_violations + o.rate_violations for o in outs)}  "
                  f"({time.perf_counter() - t:.1f} s)")
    if "vanco" in env_results:
        days = 5
        scenario = VancoScenario(days=days)
        print(f"== vancomycin harness side by side ({n} patients, {days} days; AUC24 of days 2-{days})")
        policies = {"protocol (label)": label_policy, "dose optimiser (twin)": vanco_twin(scenario, n_draws=300),
                    "learned (FQI)": vanco_harness_policy(env_results["vanco"]["policy"], days=days)}
        for name, pol in policies.items():
            t = time.perf_counter()
            outs = [run_vanco_patient(p, pol, scenario, name=name) for p in sample_vanco_patients(n, seed=7)]
            arms.setdefault("vanco", {})[name] = {"in range": float(np.mean([o.days_in_target for o in outs])),
                                                  "violations": int(sum(o.violations for o in outs))}
            print(f"  {name:22s} days in target {np.mean([o.days_in_target for o in outs]):.3f}  above "
                  f"{np.mean([o.days_above for o in outs]):.3f}  below {np.mean([o.days_below for o in outs]):.3f}  "
                  f"drug {np.mean([o.total_g for o in outs]):.1f} g  violations {sum(o.violations for o in outs)}  "
                  f"({time.perf_counter() - t:.1f} s)")
    return arms


def _check_env_ok(env_id: str) -> tuple[bool, str]:
    """gymnasium's env_checker on the registered single env; (passed, failure or warnings)."""
    import gymnasium
    from gymnasium.utils.env_checker import check_env

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            check_env(gymnasium.make(env_id).unwrapped, skip_render_check=True)
        except Exception as exc:  # noqa: BLE001 - the checker raises AssertionError and others on a failure
            return False, f"{type(exc).__name__}: {exc}"
    notes = sorted({re.sub(r"\x1b\[[0-9;]*m", "", str(w.message))[:100] for w in caught
                    if not issubclass(w.category, DeprecationWarning)})
    return True, "; ".join(notes) or "no warnings"


def _random_rollout(env_id: str, n: int, seed: int) -> dict:
    """n patients of the registered vector env under uniformly random actions: cost, unsafe, space, shield."""
    import gymnasium

    from medtwin.rl.envs import INSULIN_RATES

    vec = gymnasium.make_vec(env_id, num_envs=n, vectorization_mode="vector_entry_point")
    obs, _ = vec.reset(seed=seed)
    rng = np.random.default_rng(seed)
    cost, unsafe, in_space, shielded, broken, steps = np.zeros(n), np.zeros(n, bool), True, 0, 0, 0
    while True:
        in_space &= bool(vec.observation_space.contains(obs))
        a = rng.integers(0, vec.single_action_space.n, n)
        prev = np.asarray(obs, float)
        obs, _, term, trunc, info = vec.step(a)
        cost += info["cost"]
        unsafe |= info["unsafe"]
        shielded += int(np.sum(info["shielded"]))
        if "ICUGlucose" in env_id:   # applied rate within 2 U/h of the running one (obs column 2) and in [0, 10]
            applied = np.asarray(INSULIN_RATES)[info["applied_action"]]
            broken += int(np.sum((np.abs(applied - prev[:, 2]) > 2.0 + 1e-6) | (applied < 0) | (applied > 10)))
        steps += n
        if np.all(term | trunc):
            return {"cost": float(cost.mean()), "p_unsafe": float(unsafe.mean()), "in_space": in_space,
                    "shielded": shielded / steps, "broken": broken, "steps": steps}


def _shield_via_propose(q, n: int, seed: int) -> dict:
    """n random (observation, running rate) pairs through the learned insulin policy and propose()."""
    from medtwin.control.policy import propose
    from medtwin.errors import DataError
    from medtwin.rl.envs import INSULIN_RATES
    from medtwin.rl.policy import RunningRateConstraints, insulin_policy

    rng = np.random.default_rng(seed)
    rates = np.concatenate([rng.choice(INSULIN_RATES, n // 2), rng.uniform(0.0, 10.0, n - n // 2)])
    obs = np.column_stack([rng.uniform(2, 20, n), rng.uniform(2, 20, n), rates, rng.uniform(0, 1, n)])
    if q is None:   # no learned policy in this run: adversarial random scores
        class _RandomQ:
            def score(self, o):
                return rng.normal(size=(len(o), len(INSULIN_RATES)))
        q = _RandomQ()
    limits = RunningRateConstraints()
    broken = refused = moved = 0
    for x, rate in zip(obs, rates):
        policy = insulin_policy(q, features=lambda twin, _x=x, **o: _x)
        try:
            rec = propose(policy, None, current_rate=float(rate))
        except DataError:
            refused += 1
            continue
        broken += bool(limits.violations(rec.action))
        moved += rec.status != "optimal"
    return {"n": n, "broken": broken, "refused": refused, "shielded": moved}


def _dataset_round_trip(quick: bool) -> dict:
    """Logged glucose episodes to Parquet (episodes/1 schema) and Minari buffers, read back, compared."""
    import tempfile
    from pathlib import Path

    import pyarrow.parquet as pq

    from medtwin.rl.data import Episodes
    from medtwin.rl.envs import INSULIN_RATES, GlucoseVectorEnv
    from medtwin.rl.trajectories import collect, epsilon_soft, glucose_protocol

    data = collect(GlucoseVectorEnv(20 if quick else 200, hours=12),
                   epsilon_soft(glucose_protocol, 0.5, len(INSULIN_RATES)), seed=3,
                   metadata={"env": "medtwin/ICUGlucose-v0", "behaviour": "JBDS epsilon-soft 0.5"})
    cols = ("episode", "step", "obs", "action", "reward", "next_obs", "terminated", "truncated", "propensity", "cost")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "episodes.parquet"
        data.to_parquet(path)
        back = Episodes.from_parquet(path)
        schema = pq.read_schema(path)
        size = path.stat().st_size
    parquet_ok = all(np.array_equal(getattr(back, c), getattr(data, c), equal_nan=c == "propensity") for c in cols)
    parquet_ok &= back.metadata == data.metadata and back.n_actions == data.n_actions
    minari = Episodes.from_minari_buffers(data.to_minari_buffers(), n_actions=data.n_actions,
                                          obs_names=data.obs_names)
    minari_ok = all(np.array_equal(getattr(minari, c), getattr(data, c), equal_nan=c == "propensity") for c in cols)
    return {"rows": len(data), "episodes": data.n_episodes, "bytes": size, "columns": len(schema.names),
            "format": _schema_format(schema), "parquet": parquet_ok, "minari": minari_ok}


def _schema_format(schema) -> str:
    import json

    return json.loads(schema.metadata[b"medtwin.rl"])["format"]


def checks(env_results: dict, quick: bool) -> dict:
    """env_checker, cost signal, shielding and the dataset format (see the module docstring)."""
    import medtwin.rl.envs  # noqa: F401 - registers the ids

    print("== checks: gymnasium env_checker, cost signal (constrained RL), shielding, dataset format")
    out = {"env_checker": {}, "rollout": {}}
    n = 200 if quick else 1000
    for env_id in ("medtwin/ICUGlucose-v0", "medtwin/Vancomycin-v0"):
        ok, notes = _check_env_ok(env_id)
        roll = _random_rollout(env_id, n, seed=5)
        out["env_checker"][env_id], out["rollout"][env_id] = ok, roll
        print(f"  {env_id}: env_checker {'passes' if ok else 'FAILS'} ({notes}); make_vec {n} patients, random "
              f"actions: observations in the space {roll['in_space']}, info['cost'] {roll['cost']:.3f} per patient, "
              f"P(unsafe) {roll['p_unsafe']:.3f}, shielded {100 * roll['shielded']:.1f} % of steps, applied "
              f"actions breaking the limits {roll['broken']}")
    q = env_results.get("glucose", {}).get("q")
    sh = _shield_via_propose(q, 500 if quick else 2000, seed=6)
    out["shield"] = sh
    print(f"  shielding ({'learned glucose Q' if q is not None else 'random Q scores'}): {sh['n']} random states "
          f"and running rates through insulin_policy + control.policy.propose: {sh['broken']} proposals break the "
          f"hard constraints, {sh['shielded']} moved to a lower-ranked feasible action, {sh['refused']} refused")
    ds = _dataset_round_trip(quick)
    out["dataset"] = ds
    print(f"  dataset: {ds['episodes']} logged glucose episodes ({ds['rows']} transitions) -> Parquet "
          f"({ds['columns']} columns, schema metadata format {ds['format']}, {ds['bytes']:,} bytes) read back "
          f"identical: {ds['parquet']}; -> Minari episode buffers and back identical: {ds['minari']}")
    return out


def _verdict(ok: bool) -> str:
    return "MET" if ok else "NOT MET"


def acceptance(res: dict, quick: bool) -> None:
    """The acceptance table of issue 18 from this run's figures (sections not run are skipped)."""
    rows = []
    if "sepsis" in res:
        s = res["sepsis"]
        rows.append(("ICU-Sepsis: learned policy >= 0.85 true value (exact DP)",
                     f"{s['best_name']} {s['best']:.4f} from {s['n_train']:,} clinician episodes", s["best"] >= 0.85))
        for n_ope, r in s["per_n"].items():
            good = [f"{e} {c}/5" for e, c in r["covered"].items() if c >= 4]
            rows.append((f"ICU-Sepsis: OPE 95 % intervals cover >= 4 of 5 true values ({n_ope:,} episodes)",
                         ", ".join(good) or "best " + str(max(r["covered"].values())) + "/5", bool(good)))
            ess = ", ".join(f"{v:.1f}" for v in r["wis_ess"].values())
            w = {e: float(np.median(v)) for e, v in r["width"].items()}
            rows.append((f"ICU-Sepsis: WIS ESS reported, DR/FQE compared ({n_ope:,} episodes)",
                         f"ESS {ess} of {n_ope:,}; median width WIS {w['wis']:.3f}, DR {w['dr']:.3f}, FQE "
                         f"{w['fqe']:.3f}; covered WIS {r['covered']['wis']}/5, DR {r['covered']['dr']}/5 "
                         f"(basic {r['covered']['dr basic']}/5), FQE {r['covered']['fqe']}/5 "
                         f"(basic {r['covered']['fqe basic']}/5)", True))
    for key, label in (("glucose", "glucose"), ("vanco", "vancomycin")):
        if key in res:
            cov = res[key]["covered"]
            sim = res[key]["learned"][0]
            rows.append((f"{label}: OPE CI of the learned policy covers its simulated value",
                         f"simulated {sim['value']:.3f} +- {sim['se']:.3f}; covering: learned "
                         f"{', '.join(cov['learned']) or 'none'}; protocol {', '.join(cov['protocol']) or 'none'}",
                         "dr" in cov["learned"] and "dr" in cov["protocol"]))
    if "harness" in res:
        for key, label in (("glucose", "glucose"), ("vanco", "vancomycin")):
            arms = res["harness"].get(key, {})
            if arms:
                fig = "; ".join(f"{k} {v['in range']:.3f} ({v['violations']} violations)" for k, v in arms.items())
                rows.append((f"{label}: learned vs the twin (MPC / dose optimiser) vs protocol, side by side", fig,
                             len(arms) == 3 and not any(v["violations"] for v in arms.values())))
    if "speed" in res:
        for name, ratio in res["speed"].items():
            rows.append((f"stepping rate, 1,000 patients vector vs naive loop ({name})", f"{ratio:,.0f}x",
                         ratio >= 100))
    if "checks" in res:
        c = res["checks"]
        for env_id, ok in c["env_checker"].items():
            roll = c["rollout"][env_id]
            rows.append((f"gymnasium env_checker + cost signal: {env_id}",
                         f"passes {ok}; info['cost'] {roll['cost']:.3f}/patient, P(unsafe) {roll['p_unsafe']:.3f} "
                         f"(random actions)", ok and roll["in_space"]))
        sh, env_broken = c["shield"], sum(r["broken"] for r in c["rollout"].values())
        rows.append(("shielding: no proposal / applied action breaks the hard constraints",
                     f"{sh['broken']} of {sh['n']} proposals, {env_broken} applied env actions",
                     sh["broken"] == 0 and env_broken == 0))
        ds = c["dataset"]
        rows.append(("dataset format: Parquet with schema, Minari buffers", f"{ds['format']}, round trips "
                     f"{ds['parquet']} / {ds['minari']}", ds["parquet"] and ds["minari"]))
    print("== acceptance (issue 18), this run" + (" (QUICK MODE: small data, not the acceptance figures; run the "
                                                    "full mode)" if quick else ""))
    for point, fig, ok in rows:
        print(f"  {_verdict(ok):7s}  {point}: {fig}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", default="")
    args = parser.parse_args(argv)
    only = set(filter(None, args.only.split(","))) or {"sepsis", "glucose", "vanco", "speed", "harness", "checks"}
    if args.quick and not args.only:
        only.discard("harness")
    print(f"threads: OMP {os.environ['OMP_NUM_THREADS']} OPENBLAS {os.environ['OPENBLAS_NUM_THREADS']} "
          f"NUMBA {os.environ['NUMBA_NUM_THREADS']}; mode {'quick' if args.quick else 'full'}")
    t0, c0 = time.perf_counter(), time.process_time()
    env_results, res = {}, {}
    if "speed" in only:
        res["speed"] = speed(args.quick)
    if "sepsis" in only:
        res["sepsis"] = sepsis(args.quick)
    for kind, key in (("glucose", "glucose"), ("vancomycin", "vanco")):
        if key in only:
            env_results[key] = res[key] = twin_env(kind, args.quick)
    if "harness" in only:
        res["harness"] = harness(env_results, args.quick)
    if "checks" in only:
        res["checks"] = checks(env_results, args.quick)
    acceptance(res, args.quick)
    print(f"total {time.perf_counter() - t0:.1f} s wall, {time.process_time() - c0:.1f} s CPU")
    return 0


if __name__ == "__main__":
    sys.exit(main())
