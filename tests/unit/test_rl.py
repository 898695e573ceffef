"""medtwin.rl: environments, exact DP, OPE unbiasedness, shielding, Parquet round trip."""

import numpy as np
import pytest

gymnasium = pytest.importorskip("gymnasium")

from medtwin.control.policy import propose  # noqa: E402
from medtwin.errors import DataError  # noqa: E402
from medtwin.rl.data import Episodes  # noqa: E402
from medtwin.rl.envs import INSULIN_RATES, GlucoseBatch, shield_rate  # noqa: E402
from medtwin.rl.mdp import TabularMDP, policy_value, sample_episodes, value_iteration  # noqa: E402
from medtwin.rl.ope import evaluate_policy  # noqa: E402
from medtwin.rl.policy import RunningRateConstraints, insulin_policy  # noqa: E402


@pytest.mark.parametrize("env_id", ["medtwin/ICUGlucose-v0", "medtwin/Vancomycin-v0"])
def test_env_checker_passes(env_id):
    from gymnasium.utils.env_checker import check_env

    env = gymnasium.make(env_id)
    check_env(env.unwrapped, skip_render_check=True)
    vec = gymnasium.make_vec(env_id, num_envs=3, vectorization_mode="vector_entry_point")
    obs, _ = vec.reset(seed=1)
    assert obs.shape == (3, env.observation_space.shape[0]) and vec.observation_space.contains(obs)


def test_exact_dp_tiny_mdp_hand_solved():
    """Two live states, a terminal one.  s0: a0 -> s1 (reward 0), a1 -> terminal (reward 1);
    s1: a0 -> s0 (reward 2) w.p. 1/2 else terminal (reward 0), a1 -> terminal (reward 1.5).
    gamma = 0.9.  Optimal by hand: V(s1) = max(1.5, 0.5*2 + 0.5*0.9 V(s0)... ) solved below."""
    P = np.zeros((3, 2, 3))
    P[0, 0, 1] = 1.0
    P[0, 1, 2] = 1.0
    P[1, 0, 0] = 0.5
    P[1, 0, 2] = 0.5
    P[1, 1, 2] = 1.0
    P[2, :, 2] = 1.0
    r = np.array([[0.0, 1.0], [1.0, 1.5], [0.0, 0.0]])   # s1,a0: expected reward 0.5*2 = 1
    mdp = TabularMDP(P, r, np.array([1.0, 0.0, 0.0]), np.array([False, False, True]), gamma=0.9)
    # policy "always a0": V0 = 0.9 V1, V1 = 1 + 0.45 V0 -> V0 = 0.9 / (1 - 0.405) = 1.512605...
    pi = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    assert policy_value(mdp, pi) == pytest.approx(0.9 / 0.595, rel=1e-12)
    # optimal: V1 = max(1 + 0.45 V0, 1.5), V0 = max(0.9 V1, 1).  Trying V1 = 1.5 gives V0 = 1.35 and then
    # 1 + 0.45 * 1.35 = 1.6075 > 1.5, so a0 everywhere is optimal: V1 = 1 / 0.595, V0 = 0.9 / 0.595
    vi = value_iteration(mdp)
    np.testing.assert_allclose(vi.values, [0.9 / 0.595, 1.0 / 0.595, 0.0], atol=1e-10)


def _bandit(n, seed):
    rng = np.random.default_rng(seed)
    s = rng.integers(0, 2, n)
    b = np.array([[0.7, 0.295, 0.005], [0.1, 0.3, 0.6]])
    a = (rng.random(n)[:, None] > np.cumsum(b[s], axis=1)).sum(1)
    mean = np.array([[0.0, 1.0, 2.0], [1.0, 0.5, 0.0]])
    reward = mean[s, a] + rng.normal(0.0, 1.0, n)
    return Episodes(episode=np.arange(n), step=np.zeros(n, int), obs=s[:, None].astype(float), action=a,
                    reward=reward, next_obs=np.full((n, 1), 2.0), terminated=np.ones(n, bool),
                    truncated=np.zeros(n, bool), propensity=b[s, a], n_actions=3), mean


def test_is_wis_dr_unbiased_on_a_bandit():
    """Contextual bandit with known values: mean over 150 data sets within 4 standard errors of the truth
    (PDIS and DR are unbiased; WIS is consistent, its bias O(1/n) is far below the tolerance at n = 400)."""
    target = np.array([[0.2, 0.8, 0.0], [0.1, 0.1, 0.8], [1.0, 0.0, 0.0]])
    policy = lambda obs: target[obs[:, 0].astype(int)]  # noqa: E731
    _, mean = _bandit(1, 0)
    truth = 0.5 * (target[0] @ mean[0]) + 0.5 * (target[1] @ mean[1])
    est = {"pdis": [], "wis": [], "dr": []}
    for k in range(150):
        data, _ = _bandit(400, k)
        res = evaluate_policy(data, policy, estimators=("pdis", "wis", "dr"), n_states=3, n_boot=10,
                              n_boot_fqe=1, n_iter=2)
        for name in est:
            est[name].append(res[name].value)
    for name, values in est.items():
        values = np.asarray(values)
        se = values.std(ddof=1) / np.sqrt(len(values))
        assert abs(values.mean() - truth) < 4 * se + 1e-3, (name, values.mean(), truth, se)


def test_ope_interval_covers_and_support_warning():
    """One data set: the 95 % intervals cover the true value; a target far from the data is warned about."""
    data, mean = _bandit(3000, 99)
    target = np.array([[0.2, 0.8, 0.0], [0.1, 0.1, 0.8], [1.0, 0.0, 0.0]])
    truth = 0.5 * (target[0] @ mean[0]) + 0.5 * (target[1] @ mean[1])
    res = evaluate_policy(data, lambda o: target[o[:, 0].astype(int)], n_states=3, n_boot=200, n_boot_fqe=50,
                          n_iter=2)
    assert all(r.covers(truth) for r in res.values())
    # s0 -> a2: an action the behaviour takes 0.5 % of the time
    far = np.array([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    res = evaluate_policy(data, lambda o: far[o[:, 0].astype(int)], estimators=("wis",), n_states=3, n_boot=50)
    assert any("support" in w for w in res["wis"].warnings)


def test_shield_never_breaks_hard_constraints():
    """Random Q scores and running rates: every proposal passes control.policy.propose's check and is within
    2 U/h of the running rate and within [0, 10] U/h; the environment's shield as well."""
    rng = np.random.default_rng(0)

    class RandomQ:
        def score(self, obs):
            return rng.normal(size=(len(obs), len(INSULIN_RATES)))

    policy = insulin_policy(RandomQ(), features=lambda twin, **o: np.zeros(4))
    for current in rng.choice(INSULIN_RATES, 300).tolist() + rng.uniform(0, 10, 100).tolist():
        r = propose(policy, None, current_rate=current)
        rate = r.action["apply_now_u_per_h"]
        assert 0.0 <= rate <= 10.0 and abs(rate - current) <= 2.0 + 1e-9
    requested = rng.choice(INSULIN_RATES, 1000)
    current = rng.choice(INSULIN_RATES, 1000)
    applied = shield_rate(requested, current)
    assert np.all(np.abs(applied - current) <= 2.0 + 1e-9) and np.all((applied >= 0) & (applied <= 10))
    # no feasible action: the fallback still breaks the constraints here, so propose refuses (never shown)
    tight = insulin_policy(RandomQ(), features=lambda twin, **o: np.zeros(4),
                           constraints=RunningRateConstraints(bounds=(0.0, 10.0), max_change=2.0))
    with pytest.raises(DataError, match="hard constraints"):
        propose(tight, None, current_rate=13.0)


def test_parquet_round_trip(tmp_path):
    data, _ = _bandit(50, 1)
    data = Episodes(**{**{k: getattr(data, k) for k in ("episode", "step", "obs", "action", "reward", "next_obs",
                                                          "terminated", "truncated", "propensity", "n_actions")},
                       "cost": np.linspace(0, 1, 50), "obs_names": ("context",), "metadata": {"behaviour": "b"}})
    path = tmp_path / "episodes.parquet"
    data.to_parquet(path)
    back = Episodes.from_parquet(path)
    for name in ("episode", "step", "obs", "action", "reward", "next_obs", "terminated", "truncated", "propensity",
                 "cost"):
        np.testing.assert_array_equal(getattr(back, name), getattr(data, name))
    assert back.n_actions == 3 and back.obs_names == ("context",) and back.metadata == {"behaviour": "b"}
    import pyarrow.parquet as pq

    assert "obs_context" in pq.read_schema(path).names


@pytest.mark.slow
def test_icu_sepsis_published_values():
    """Exact DP on the ICU-Sepsis MDP reproduces the published 0.78 / 0.78 / 0.88 (two decimals)."""
    pytest.importorskip("icu_sepsis")
    from medtwin.rl.mdp import ICU_SEPSIS_PUBLISHED, icu_sepsis_mdp

    mdp, expert = icu_sepsis_mdp()
    uniform = np.full((mdp.n_states, mdp.n_actions), 1.0 / mdp.n_actions)
    assert round(policy_value(mdp, uniform), 2) == ICU_SEPSIS_PUBLISHED["random"]
    assert round(policy_value(mdp, expert), 2) == ICU_SEPSIS_PUBLISHED["clinician"]
    assert round(float(mdp.d0 @ value_iteration(mdp).values), 2) == ICU_SEPSIS_PUBLISHED["optimal"]
    data = sample_episodes(mdp, expert, 300, seed=0)
    assert np.all(data.propensity > 0) and data.n_episodes == 300


def test_make_env_and_next_step_autoreset():
    from medtwin.rl.envs import VancoVectorEnv, make_env
    from medtwin.scenarios.vanco_loop import sample_vanco_patients

    patients = sample_vanco_patients(4, seed=2)
    env = make_env(patients, days=2)
    assert isinstance(env, VancoVectorEnv) and env.num_envs == 4
    obs, _ = env.reset(seed=0)
    np.testing.assert_allclose(obs[:, 2], [p.crcl / 100 for p in patients], rtol=1e-6)
    for day in range(2):
        obs, reward, term, trunc, info = env.step(np.full(4, 3))
        assert np.all(trunc == (day == 1)) and set(info) >= {"cost", "unsafe", "auc24"}
    obs, reward, term, trunc, _ = env.step(np.full(4, 3))          # the step after the end resets
    assert np.all(reward == 0) and not np.any(term | trunc) and np.all(obs[:, 5] == 0)
    with pytest.raises(DataError):
        make_env("insulin-pump")


def test_cross_fitted_dr_and_pdwis_cover_at_the_nominal_rate():
    """Cross-fitted DR (no refits) and per-decision WIS: their 95 % intervals cover the true bandit value in
    at least 85 of 100 independent data sets (expected 95; binomial SD 2.2, so 85 is 4.5 SD below)."""
    target = np.array([[0.2, 0.8, 0.0], [0.1, 0.1, 0.8], [1.0, 0.0, 0.0]])
    _, mean = _bandit(1, 0)
    truth = 0.5 * (target[0] @ mean[0]) + 0.5 * (target[1] @ mean[1])
    hits = {"dr": 0, "pdwis": 0}
    for k in range(100):
        data, _ = _bandit(300, 1000 + k)
        res = evaluate_policy(data, lambda o: target[o[:, 0].astype(int)], estimators=("pdwis", "dr"), n_states=3,
                              n_boot=200, n_boot_fqe=1, n_iter=2, cross_fit=2, seed=k)
        for name in hits:
            hits[name] += res[name].covers(truth)
    assert min(hits.values()) >= 85, hits


def test_covers_with_the_simulations_standard_error():
    """covers(value, se): |estimate - value| <= sqrt(h^2 + (1.96 se)^2) with h the half-width on value's side."""
    from medtwin.rl.ope import OPEResult

    r = OPEResult("dr", 1.0, 0.8, 1.1, 10.0, 100, 0.95, 200)
    assert not r.covers(1.15) and r.covers(1.15, se=0.06)           # high side, h = 0.1: hypot(0.1, 0.118) = 0.154
    assert not r.covers(1.15, se=0.05)                              # hypot(0.1, 0.098) = 0.140 < 0.15
    assert r.covers(0.78, se=0.05) and not r.covers(0.75, se=0.05)  # low side, h = 0.2: hypot = 0.223


def test_pdwis_with_episodes_of_different_lengths():
    """Episodes that end early stay in the per-step normalisers (absorbing state, ratio 1).  On-policy every
    weight is 1, so per-decision WIS is the mean return exactly; off-policy, on a chain MDP with random
    episode lengths, it agrees with the exact value by dynamic programming (100,000 episodes)."""
    # chain 0 -> 1 -> 2 (terminal); a0: stop now (terminal, reward 1 from s0, 0.5 from s1); a1: go on (reward 0.2)
    P = np.zeros((3, 2, 3))
    P[0, 0, 2] = P[1, 0, 2] = P[1, 1, 2] = 1.0
    P[0, 1, 1] = 1.0
    P[2, :, 2] = 1.0
    r = np.array([[1.0, 0.2], [0.5, 0.2], [0.0, 0.0]])
    mdp = TabularMDP(P, r, np.array([1.0, 0.0, 0.0]), np.array([False, False, True]), gamma=1.0)
    behaviour = np.array([[0.5, 0.5], [0.5, 0.5], [0.5, 0.5]])
    target = np.array([[0.2, 0.8], [0.9, 0.1], [0.5, 0.5]])
    on = sample_episodes(mdp, behaviour, 2000, seed=3)
    res = evaluate_policy(on, lambda o: behaviour[o[:, 0].astype(int)], estimators=("pdwis",), n_boot=10)
    assert res["pdwis"].value == pytest.approx(np.mean(on.returns()), rel=1e-12)
    off = sample_episodes(mdp, behaviour, 100_000, seed=4)
    truth = policy_value(mdp, target)                                   # 0.2 + 0.8 * 0.2 + ... by DP
    res = evaluate_policy(off, lambda o: target[o[:, 0].astype(int)], estimators=("pdwis", "wis"), n_boot=10)
    assert abs(res["pdwis"].value - truth) < 0.01 and abs(res["wis"].value - truth) < 0.01
    # no episode keeps any weight (the target always takes the action the behaviour never does): undefined,
    # not a sum that silently drops the unsupported steps
    never = sample_episodes(mdp, np.array([[1.0, 0.0], [0.5, 0.5], [0.5, 0.5]]), 200, seed=5)
    res = evaluate_policy(never, lambda o: np.tile([0.0, 1.0], (len(o), 1)), estimators=("pdwis", "wis"), n_boot=10)
    assert np.isnan(res["pdwis"].value) and np.isnan(res["wis"].value)
    assert any("no support" in w for w in res["pdwis"].warnings)


def test_minari_buffers_round_trip():
    """Logged glucose episodes as Minari episode buffers: T + 1 observations chaining obs -> next_obs, the
    propensity and cost in the stacked infos (entry 0 the reset's), and back to the same table."""
    from medtwin.rl.trajectories import collect, epsilon_soft, glucose_protocol
    from medtwin.rl.envs import GlucoseVectorEnv

    data = collect(GlucoseVectorEnv(4, hours=3), epsilon_soft(glucose_protocol, 0.5, len(INSULIN_RATES)), seed=5)
    buffers = data.to_minari_buffers()
    assert len(buffers) == 4
    for i, b in enumerate(buffers):
        rows = data.episode == i
        assert b["observations"].shape == (4, 4) and b["observations"].dtype == np.float32
        np.testing.assert_array_equal(b["observations"][1:], data.next_obs[rows])
        np.testing.assert_array_equal(b["actions"], data.action[rows])
        assert np.isnan(b["infos"]["propensity"][0]) and len(b["infos"]["cost"]) == 4
        assert b["truncations"][-1] and not b["terminations"].any()
    back = Episodes.from_minari_buffers(buffers, n_actions=data.n_actions, obs_names=data.obs_names)
    for name in ("episode", "step", "obs", "action", "reward", "next_obs", "terminated", "truncated", "propensity",
                 "cost"):
        np.testing.assert_array_equal(getattr(back, name), getattr(data, name))
    broken = dict(buffers[0], actions=buffers[0]["actions"][:2])
    with pytest.raises(DataError, match="T \\+ 1"):
        Episodes.from_minari_buffers([broken], n_actions=data.n_actions)
