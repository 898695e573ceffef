"""Continual adaptation: detector calibration, consolidation, rehearsal, forgetting, purity, comparison."""

from __future__ import annotations

import numpy as np
import pytest

from medtwin.twin.adaptation import (AdaptationState, Consolidation, Cusum, Forgetting, Rehearsal, _inflate,
                                           adapt, cap_covariance, siegmund_arl)
from medtwin.scenarios.continual import IvOralSwitch, evaluate_continual, summarize
from medtwin.errors import DataError
from medtwin.core.data import PatientData
from medtwin.infer.personalize import personalize


@pytest.fixture(scope="module")
def scenario():
    sc = IvOralSwitch()
    truth = sc.true_parameters(np.random.default_rng(3))
    batches, stream = sc.stream(truth, np.random.default_rng(4))
    return sc, sc.population(), truth, stream


def _run_length(detector, rng, shift=0.0, change=0, cap=20_000):
    state = detector.init()
    for n in range(1, cap + 1):
        state, alarm, _ = detector.update(state, rng.standard_normal() + (shift if n > change else 0.0))
        if alarm:
            return n
    return cap


# ------------------------------------------------------------------ detector
def test_cusum_false_alarm_rate_matches_calibration():
    detector = Cusum.calibrate(arl0=100.0)
    rng = np.random.default_rng(0)
    runs = [_run_length(detector, rng) for _ in range(600)]
    # run lengths are ~geometric (sd ≈ mean): the mean of 600 has a ~4 % standard error
    assert abs(np.mean(runs) / 100.0 - 1.0) < 0.15


def test_cusum_detects_known_shift_within_expected_delay():
    detector = Cusum()  # k = 0.5, h = 5
    rng = np.random.default_rng(1)
    change = 30
    delays, early = [], 0
    for _ in range(300):
        n = _run_length(detector, rng, shift=2.0, change=change)
        if n <= change:
            early += 1
        else:
            delays.append(n - change)
    expected = detector.delay(2.0)  # Siegmund, ≈ 3.9 observations
    assert 3.0 < expected < 5.0
    assert abs(np.mean(delays) - expected) < 1.0
    assert early / 300 < 2 * change / detector.arl0() + 0.03   # rare false alarms before the change
    assert max(delays) < 15


def test_cusum_change_point_and_validation():
    c = Cusum()
    state = c.init()
    for t, z in enumerate([0.0, -0.2, 3.0, 3.0, 3.0]):
        previous = state
        state, alarm, _ = c.update(state, z, time=float(t))
    assert alarm and c.onset_of(previous, 3.0, 4.0) == 2.0
    assert siegmund_arl(0.5, 4.0) == pytest.approx(338.1, abs=0.1)
    with pytest.raises(DataError):
        Cusum(h=-1.0)
    with pytest.raises(DataError):
        Cusum.calibrate(arl0=0.5)


# ------------------------------------------------------------------ Gaussian helpers
def test_covariance_cap_and_inflation():
    omega = np.array([[0.2, 0.05], [0.05, 0.1]])
    sigma = 0.1 * omega
    assert np.allclose(_inflate(Consolidation(), sigma, omega, 48.0), sigma)          # no forgetting: unchanged
    grown = _inflate(Consolidation(half_life=24.0), sigma, omega, 48.0)
    assert np.allclose(grown, 4 * sigma)                                              # two half-lives
    capped = _inflate(Consolidation(half_life=1.0), sigma, omega, 100.0)
    assert np.allclose(capped, omega)                                                 # bounded by the population
    assert np.linalg.eigvalsh(omega - cap_covariance(np.diag([5.0, 0.01]), omega)).min() > -1e-12
    with pytest.raises(DataError):
        Consolidation(half_life=0.0)


# ------------------------------------------------------------------ strategies
def test_consolidation_keeps_posterior_without_new_data(scenario):
    sc, pop, _, stream = scenario
    state = adapt(Consolidation(), AdaptationState(), stream.batches[0], pop)
    empty = PatientData(stream.batches[0].regimen, [], [], {})
    assert adapt(Consolidation(), state, empty, pop) is state
    # a batch whose prior is the previous posterior with no forgetting: nothing is lost from it
    same = adapt(Consolidation(), state, stream.batches[1], pop, detector=None)
    assert np.all(np.diag(same.posterior.covariance) <= np.diag(state.posterior.covariance) + 1e-12)


def _reference_map(pop, data):
    """Independent batch posterior: numba simulate + scipy BFGS on −log posterior, Hessian by differences."""
    from scipy.optimize import minimize
    from scipy.stats import norm

    from medtwin.core.simulate import simulate
    from medtwin.models import get_model

    prior = pop.prior_for({})
    model, prec = get_model(pop.model), np.linalg.inv(prior.covariance)

    def u(z):
        table = {p: np.array([np.exp(v)]) for p, v in zip(prior.parameters, z)}
        f = np.asarray(simulate(model, table, data.regimen, data.times, keep_states=False).output("C")).ravel()
        r = z - prior.log_mean
        return 0.5 * r @ prec @ r - norm.logpdf(data.values, f, np.sqrt(prior.residual.variance(f))).sum()

    res = minimize(u, np.array(prior.log_mean), method="BFGS", options={"gtol": 1e-7})
    n, h = res.x.size, 1e-4
    hess = np.empty((n, n))
    for i in range(n):
        for j in range(n):
            e_i, e_j = np.eye(n)[i] * h, np.eye(n)[j] * h
            hess[i, j] = (u(res.x + e_i + e_j) - u(res.x + e_i - e_j) - u(res.x - e_i + e_j)
                          + u(res.x - e_i - e_j)) / (4 * h * h)
    return res.x, np.linalg.inv(0.5 * (hess + hess.T))


def test_consolidation_sequential_matches_batch_posterior(scenario):
    sc, pop, _, stream = scenario
    state = AdaptationState()
    for batch in stream.batches[:3]:
        state = adapt(Consolidation(), state, batch, pop, detector=None)
    allb = stream.batches[:3]
    data = PatientData(allb[0].regimen, np.concatenate([b.times for b in allb]),
                       np.concatenate([b.values for b in allb]), {})
    batch = personalize(pop, data)
    ref_mean, ref_cov = _reference_map(pop, data)
    assert np.allclose(batch.mean, ref_mean, atol=2e-3)             # the batch Laplace fit vs the reference
    sd = np.sqrt(np.diag(ref_cov))
    assert np.all(np.abs(state.posterior.mean - ref_mean) < 0.1 * sd + 5e-3)
    assert np.allclose(np.sqrt(np.diag(state.posterior.covariance)), sd, rtol=0.1)
    assert state.posterior.parameters == ("KA", "CL", "V", "F1")


def test_rehearsal_memory_is_bounded_and_tagged(scenario):
    sc, pop, _, stream = scenario
    state, strategy = AdaptationState(), Rehearsal(memory_size=3)
    for batch in stream.batches[:4]:
        state = adapt(strategy, state, batch, pop, detector=None)
        assert len(state.memory) <= 3
    assert len(state.memory) == 3 and {r.regime for r in state.memory} == {0}
    assert all(t in np.concatenate([b.times for b in stream.batches[:4]]) for t in (r.time for r in state.memory))
    window = AdaptationState()
    for batch in stream.batches[:3]:
        window = adapt(Forgetting(window=3), window, batch, pop, detector=None)
    assert [r.time for r in window.memory] == list(np.concatenate([b.times for b in stream.batches[:3]])[-3:])


def test_strategies_are_pure(scenario):
    sc, pop, _, stream = scenario
    for strategy in (Consolidation(half_life=24.0), Rehearsal(memory_size=3), Forgetting(window=3)):
        start = adapt(strategy, AdaptationState(), stream.batches[0], pop)
        snapshot = (start.posterior.mean.copy(), start.memory, start.innovations)
        a = adapt(strategy, start, stream.batches[1], pop)
        b = adapt(strategy, start, stream.batches[1], pop)
        assert np.array_equal(a.posterior.mean, b.posterior.mean)
        assert np.array_equal(a.posterior.covariance, b.posterior.covariance)
        assert a.memory == b.memory and a.innovations == b.innovations and a.triggers == b.triggers
        assert np.array_equal(start.posterior.mean, snapshot[0]) and start.memory == snapshot[1]
        assert start.innovations == snapshot[2]


def test_adapt_rejects_bad_inputs(scenario):
    sc, pop, _, stream = scenario
    with pytest.raises(DataError):
        adapt("ewc", AdaptationState(), stream.batches[0], pop)
    with pytest.raises(DataError):
        Rehearsal(memory_size=0)


# ------------------------------------------------------------------ the comparison
@pytest.mark.slow
def test_forgetting_forgets_more_with_comparable_adaptation():
    frame = evaluate_continual(n_patients=10, seed=7)
    means, paired = summarize(frame)
    for other in ("consolidation", "rehearsal"):
        row = paired[(paired.other == other) & (paired.metric == "rmse_A_after")].iloc[0]
        assert row.mean_diff > 3.0 and row.wilcoxon_p < 0.05     # percent points of log-RMS error
        settle = paired[(paired.other == other) & (paired.metric == "settle_obs")].iloc[0]
        assert abs(settle.mean_diff) <= 2.0                         # adaptation speed comparable
    assert means.loc["forgetting", "bwt_rmse"] > means.loc["consolidation", "bwt_rmse"] + 3.0
    assert (frame.failures == 0).all()
