"""Joint model: parameter recovery on simulated data, dynamic prediction against a Monte Carlo reference,
the live predictor's updates, and the landmark AUC against scikit-learn's."""

import numpy as np
import pytest

from medtwin.errors import DataError
from medtwin.prognosis.dynamic import DynamicPredictor, dynamic_probabilities, landmark_metrics
from medtwin.prognosis.joint import JointFit, JointParameters, fit_joint, joint_data, simulate_joint

TRUE = JointParameters.example()


@pytest.fixture(scope="module")
def fitted():
    data = simulate_joint(TRUE, 300, seed=11, pad_to=20)
    return data, fit_joint(data, breaks=TRUE.breaks)


def _true_fit(params=TRUE):
    n = params.to_vector().size
    return JointFit(params, params.to_vector(), np.eye(n), (), 0.0, True, 9)


def test_simulated_joint_model_recovers_its_parameters(fitted):
    data, fit = fitted
    assert fit.converged
    z = (fit.theta - TRUE.to_vector()) / fit.se
    assert np.all(np.abs(z) < 3.5), dict(zip(fit.names, np.round(z, 2)))
    assert fit.params.alpha == pytest.approx(TRUE.alpha, abs=4 * fit.se[fit.names.index("alpha")])


def _survival_on_grid(p, b, w, t_end, n_grid=401):
    """S(t_end | b) by trapezoidal integration of the hazard (independent of the closed form)."""
    s = np.linspace(0.0, t_end, n_grid)
    slope = p.beta[1] + p.beta[3] * w + b[:, 1:]
    m = (p.beta[0] + p.beta[2] * w + b[:, :1]) + slope * s
    lam = p.rates[np.searchsorted(p.breaks, s, side="right")]
    h = lam * np.exp(p.gamma[0] * w + p.alpha * m + (p.alpha_slope or 0.0) * slope)
    return np.exp(-np.trapezoid(h, s, axis=1))


@pytest.mark.parametrize("alpha_slope", [None, 1.5])
def test_dynamic_prediction_matches_importance_sampling_reference(alpha_slope):
    from dataclasses import replace

    p = replace(TRUE, alpha_slope=alpha_slope)
    w, times, ys, t, horizon = 1.0, [0.0, 0.5, 1.0, 1.5], [2.2, 2.5, 2.4, 2.9], 1.5, 2.0
    predictor = DynamicPredictor(_true_fit(p), w_long=[w], w_surv=[w])
    for ti, yi in zip(times, ys):
        predictor = predictor.observe(ti, yi)
    ours = predictor.probability(t, horizon)
    rng = np.random.default_rng(0)
    b = rng.multivariate_normal(np.zeros(2), p.D, 20000)
    m = (p.beta[0] + p.beta[2] * w + b[:, :1]) + (p.beta[1] + p.beta[3] * w + b[:, 1:]) * np.array(times)
    log_lik = -0.5 * np.sum((np.array(ys) - m) ** 2, axis=1) / p.sigma ** 2
    s_t, s_h = _survival_on_grid(p, b, w, t), _survival_on_grid(p, b, w, t + horizon)
    weight = np.exp(log_lik - log_lik.max()) * s_t
    terms = 1.0 - s_h / s_t
    ref = np.sum(weight * terms) / np.sum(weight)
    ess = weight.sum() ** 2 / np.sum(weight ** 2)
    mc_se = np.sqrt(np.sum(weight ** 2 * (terms - ref) ** 2)) / np.sum(weight)
    assert ess > 1000
    assert abs(ours - ref) < 4 * mc_se + 2e-3, (ours, ref, mc_se)


def test_predictor_updates_and_agrees_with_cohort_path(fitted):
    data, fit = fitted
    i = int(np.argmax(data.time > 3.0))
    p = DynamicPredictor(fit, w_long=data.w_long[i], w_surv=data.w_surv[i])
    for tj, yj, mj in zip(data.t_obs[i], data.y[i], data.mask[i]):
        if mj and tj <= 2.0:
            p = p.observe(tj, yj)
    cohort = dynamic_probabilities(fit, data, 2.0, 1.5)[i]
    assert p.probability(2.0, 1.5) == pytest.approx(cohort, abs=1e-10)
    # with alpha > 0, a higher new measurement raises the risk; a lower one lowers it
    base = p.probability(2.5, 1.5)
    assert p.observe(2.5, 4.0).probability(2.5, 1.5) > base > p.observe(2.5, 0.5).probability(2.5, 1.5)
    # a late measurement (older than the last) lands in time order: the same predictor as fed in order
    assert len(p.times) >= 2
    first_t, first_y = p.times[0], p.values[0]
    in_order = DynamicPredictor(fit, w_long=data.w_long[i], w_surv=data.w_surv[i])
    late = DynamicPredictor(fit, w_long=data.w_long[i], w_surv=data.w_surv[i])
    for tj, yj in zip(p.times[1:], p.values[1:]):
        late = late.observe(tj, yj)
    late = late.observe(first_t, first_y)
    for tj, yj in zip(p.times, p.values):
        in_order = in_order.observe(tj, yj)
    assert late.times == in_order.times == p.times and late.values == p.values
    assert late.probability(2.0, 1.5) == in_order.probability(2.0, 1.5)
    with pytest.raises(DataError, match="finite"):
        p.observe(float("nan"), 1.0)


def test_landmark_auc_equals_scikit_learn_without_censoring_in_the_window():
    from sklearn.metrics import roc_auc_score

    data = simulate_joint(TRUE, 300, seed=5, censor_range=(9.0, 10.0), pad_to=20)  # the fixture's shapes
    metrics = landmark_metrics(_true_fit(), data, 2.0, 3.0)
    at_risk = data.time > 2.0
    p = dynamic_probabilities(_true_fit(), data, 2.0, 3.0)[at_risk]
    outcome = (data.time[at_risk] <= 5.0) & (data.event[at_risk] == 1)
    assert metrics.auc == pytest.approx(roc_auc_score(outcome, p), abs=1e-12)
    assert metrics.brier == pytest.approx(np.mean((p - outcome) ** 2), abs=1e-12)
    assert metrics.auc > 0.65
    assert metrics.calibration.shape[1] == 3


def test_joint_data_validation():
    with pytest.raises(DataError):
        joint_data([1, 1], [0.0, 1.0], [1.0, np.nan], [2.0, 2.0], [1, 1])
    with pytest.raises(DataError):
        joint_data([1, 1], [0.0, 1.0], [1.0, 2.0], [2.0, 2.0], [1, 1], pad_to=1)
    with pytest.raises(DataError):
        DynamicPredictor(_true_fit(), w_long=[1.0, 2.0], w_surv=[1.0])
